/* mem.c: capacity, usage and budgets from /proc and the cgroup file system. */
#include "mem/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"

const char *op_mem_level_name(op_mem_level_t level) {
  return level == OP_MEM_CRITICAL ? "critical" : level == OP_MEM_WARNING ? "warning" : "ok";
}

/* The first "<key> <number> kB" line of a /proc file, in bytes; 0 if none. */
static uint64_t proc_kb(const char *path, const char *key) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return 0;
  char line[256];
  size_t klen = strlen(key);
  uint64_t v = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, key, klen) == 0) {
      v = strtoull(line + klen, NULL, 10) * 1024u;
      break;
    }
  }
  fclose(f);
  return v;
}

uint64_t op_mem_total(void) {
  return proc_kb("/proc/meminfo", "MemTotal:");
}

/* A limit file's value: a number, or "max" (none, 0). */
static uint64_t read_limit(const char *path) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return 0;
  char buf[64] = "";
  uint64_t v = 0;
  if (fgets(buf, sizeof buf, f) != NULL && buf[0] >= '0' && buf[0] <= '9')
    v = strtoull(buf, NULL, 10);
  fclose(f);
  return v;
}

uint64_t op_mem_cgroup_limit(void) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (f == NULL)
    return 0;
  char line[1024], path[1200];
  uint64_t limit = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    char *rest = NULL;
    if (strncmp(line, "0::", 3) == 0) {
      rest = line + 3; /* v2: one hierarchy, mounted at /sys/fs/cgroup or its unified/ */
      snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", strcmp(rest, "/") == 0 ? "" : rest);
      uint64_t v = read_limit(path);
      if (v == 0) {
        snprintf(path, sizeof path, "/sys/fs/cgroup/unified%s/memory.max", strcmp(rest, "/") == 0 ? "" : rest);
        v = read_limit(path);
      }
      if (v > 0 && (limit == 0 || v < limit))
        limit = v;
    } else if ((rest = strstr(line, ":memory:")) != NULL) {
      rest += 8; /* v1: the memory controller's own hierarchy */
      snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", strcmp(rest, "/") == 0 ? "" : rest);
      uint64_t v = read_limit(path);
      if (v == 0) {
        /* In a container the controller's root is often our own group. */
        v = read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
      }
      /* v1 says "no limit" with a huge page-rounded number. */
      if (v > 0 && v < (UINT64_C(1) << 62) && (limit == 0 || v < limit))
        limit = v;
    }
  }
  fclose(f);
  return limit;
}

uint64_t op_mem_cpu_capacity(void) {
  uint64_t total = op_mem_total(), limit = op_mem_cgroup_limit();
  return limit > 0 && (total == 0 || limit < total) ? limit : total;
}

uint64_t op_mem_pss(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  return proc_kb(path, "Pss:");
}

uint64_t op_mem_rss(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  return proc_kb(path, "VmRSS:");
}

int op_mem_budget_parse(const char *text, uint64_t capacity, uint64_t *budget, op_error_t *err) {
  if (text == NULL || text[0] == '\0')
    return op_error_set(err, OP_EUSAGE, "invalid_request", "an empty memory budget");
  size_t len = strlen(text);
  char *end = NULL;
  double share = -1;
  if (text[len - 1] == '%') {
    share = strtod(text, &end) / 100.0;
    if (end != text + len - 1)
      share = -1;
  } else if (text[0] == '0' && text[1] == '.' && strpbrk(text, "kKmMgGbB") == NULL) {
    share = strtod(text, &end);
    if (*end != '\0')
      share = -1;
  }
  char cap[32];
  op_mem_format(capacity, cap, sizeof cap);
  if (share >= 0 || strchr(text, '%') != NULL) {
    if (!(share > 0 && share <= 1))
      return op_error_set(err, OP_EUSAGE, "invalid_request",
                          "memory budget \"%s\": a share must be above 0 and at most 100%%", text);
    *budget = (uint64_t)((double)capacity * share);
    return 0;
  }
  uint64_t v;
  if (op_parse_size(text, UINT64_C(1) << 60, &v) < 0 || v == 0)
    return op_error_set(err, OP_EUSAGE, "invalid_request",
                        "memory budget \"%s\": expected a size (\"300MB\", \"2G\") or a share (\"80%%\")", text);
  if (capacity > 0 && v > capacity)
    return op_error_set(err, OP_EUSAGE, "invalid_request", "memory budget \"%s\" is more than this device has (%s)",
                        text, cap);
  *budget = v;
  return 0;
}

op_mem_level_t op_mem_level(uint64_t used, uint64_t budget, double warning, double critical) {
  if (budget == 0)
    return OP_MEM_OK;
  double share = (double)used / (double)budget;
  return share >= critical ? OP_MEM_CRITICAL : share >= warning ? OP_MEM_WARNING : OP_MEM_OK;
}

void op_mem_format(uint64_t bytes, char *buf, unsigned len) {
  static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = (double)bytes;
  unsigned u = 0;
  while (v >= 1024 && u < 4)
    v /= 1024, u++;
  if (u == 0 || v >= 100 || v == (double)(uint64_t)v)
    snprintf(buf, len, "%.0f %s", v, units[u]);
  else
    snprintf(buf, len, "%.1f %s", v, units[u]);
}
