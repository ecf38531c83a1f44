/* log.c: stderr logging, logfmt or JSON, with a level filter; one write() per line so lines from workers do not
 * interleave. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile op_log_level_t min_level = OP_LOG_WARN;
static op_log_format_t format = OP_LOG_LOGFMT;
static char role_name[16] = "ocrpool";

void op_log_init(op_log_level_t level, const char *role) {
  min_level = level;
  if (role != NULL)
    snprintf(role_name, sizeof role_name, "%s", role);
  const char *f = getenv("OCRPOOL_LOG_FORMAT");
  format = f != NULL && op_log_format_parse(f) == OP_LOG_JSON ? OP_LOG_JSON : OP_LOG_LOGFMT;
}

void op_log_set_level(op_log_level_t level) {
  min_level = level;
}

int op_log_format_parse(const char *s) {
  return strcmp(s, "logfmt") == 0 ? OP_LOG_LOGFMT : strcmp(s, "json") == 0 ? OP_LOG_JSON : -1;
}

void op_log_set_format(op_log_format_t f) {
  format = f;
  setenv("OCRPOOL_LOG_FORMAT", f == OP_LOG_JSON ? "json" : "logfmt", 1);
}

op_log_level_t op_log_level(void) {
  return min_level;
}

int op_log_level_parse(const char *s) {
  static const char *const names[] = {"debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 5; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

/* Appends text to line (at *n, capacity len) as a quoted value: JSON's
 * escapes, which logfmt readers accept too. */
static void quoted(char *line, size_t len, int *n, const char *text) {
  if ((size_t)*n + 2 >= len)
    return;
  line[(*n)++] = '"';
  for (const unsigned char *c = (const unsigned char *)text; *c && (size_t)*n + 8 < len; c++) {
    if (*c == '"' || *c == '\\') {
      line[(*n)++] = '\\';
      line[(*n)++] = (char)*c;
    } else if (*c == '\n') {
      line[(*n)++] = '\\';
      line[(*n)++] = 'n';
    } else if (*c < 0x20) {
      *n += snprintf(line + *n, len - (size_t)*n, "\\u%04x", *c);
    } else {
      line[(*n)++] = (char)*c;
    }
  }
  line[(*n)++] = '"';
}

static void emit(op_log_level_t level, const char *task, unsigned page, const char *fmt, va_list ap) {
  static const char *const tags[] = {"debug", "info", "warn", "error"};
  if (level < min_level || level >= OP_LOG_OFF)
    return;
  char msg[1536], line[2048], when[64];
  vsnprintf(msg, sizeof msg, fmt, ap);
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  int n;
  if (format == OP_LOG_JSON) {
    n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"pid\":%d", when,
                 tags[level], role_name, (int)getpid());
    if (task != NULL && (size_t)n < sizeof line) {
      n += snprintf(line + n, sizeof line - (size_t)n, ",\"task\":");
      quoted(line, sizeof line, &n, task);
    }
    if (page > 0 && (size_t)n < sizeof line)
      n += snprintf(line + n, sizeof line - (size_t)n, ",\"page\":%u", page);
    if ((size_t)n < sizeof line)
      n += snprintf(line + n, sizeof line - (size_t)n, ",\"msg\":");
    quoted(line, sizeof line, &n, msg);
    if ((size_t)n < sizeof line - 1)
      line[n++] = '}';
  } else {
    n = snprintf(line, sizeof line, "time=%s level=%s component=%s pid=%d ", when, tags[level], role_name,
                 (int)getpid());
    if (task != NULL && (size_t)n < sizeof line) {
      n += snprintf(line + n, sizeof line - (size_t)n, "task=");
      quoted(line, sizeof line, &n, task);
      n += snprintf(line + n, sizeof line - (size_t)n, " ");
    }
    if (page > 0 && (size_t)n < sizeof line)
      n += snprintf(line + n, sizeof line - (size_t)n, "page=%u ", page);
    if ((size_t)n < sizeof line)
      n += snprintf(line + n, sizeof line - (size_t)n, "msg=");
    quoted(line, sizeof line, &n, msg);
  }
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line - 1)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}

void op_log(op_log_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, NULL, 0, fmt, ap);
  va_end(ap);
}

void op_log_task(op_log_level_t level, const char *task, unsigned page, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, task, page, fmt, ap);
  va_end(ap);
}
