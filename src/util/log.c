/* log.c: stderr logging with a level filter; one write() per line so lines from workers do not interleave. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static op_log_level_t min_level = OP_LOG_WARN;
static char role_name[16] = "ocrpool";

void op_log_init(op_log_level_t level, const char *role) {
  min_level = level;
  if (role != NULL)
    snprintf(role_name, sizeof role_name, "%s", role);
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

void op_log(op_log_level_t level, const char *fmt, ...) {
  static const char *const tags[] = {"debug", "info", "warn", "error"};
  if (level < min_level || level >= OP_LOG_OFF)
    return;
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, tags[level],
                   role_name, (int)getpid());
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof line)
    n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line - 1)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}
