/* mem.c: capacity, usage and budgets from /proc and the cgroup file system. */
#include "mem/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/parse.h"

const char *op_mem_level_name(op_mem_level_t level) {
  return level == OP_MEM_CRITICAL ? "critical" : level == OP_MEM_WARNING ? "warning" : "ok";
}

/* The number on the first "<key> <number>" line of a /proc or cgroup file:
 * 1, or 0 when the file or the line is not there. */
static int proc_field(const char *path, const char *key, uint64_t *v) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return 0;
  char line[256];
  size_t klen = strlen(key);
  int found = 0;
  while (!found && fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, key, klen) == 0) {
      *v = strtoull(line + klen, NULL, 10);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

/* A "<key> <number> kB" line, in bytes; 0 if none. */
static uint64_t proc_kb(const char *path, const char *key) {
  uint64_t v = 0;
  return proc_field(path, key, &v) ? v * 1024u : 0;
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

/* root + the longest tail of rest ("/a/b", then "/b", then none) under which
 * the file NAME exists: without a cgroup namespace, a container reads its
 * group's host path in /proc/self/cgroup while the mount's root is that group. */
static int cgroup_tail(const char *root, const char *rest, const char *name, char *path, size_t len) {
  for (const char *tail = rest; tail != NULL && *tail != '\0'; tail = strchr(tail + 1, '/')) {
    snprintf(path, len, "%s%s/%s", root, tail, name);
    if (access(path, R_OK) == 0)
      return 1;
  }
  snprintf(path, len, "%s/%s", root, name);
  return access(path, R_OK) == 0;
}

/* The path of a file of our memory cgroup: v2's NAME2 (the unified hierarchy,
 * at /sys/fs/cgroup or its unified/) or v1's NAME1 (the memory controller's
 * hierarchy); the first that exists, in /proc/self/cgroup's order. 0 when
 * none does. */
static int cgroup_file(const char *name2, const char *name1, char *path, size_t len) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (f == NULL)
    return 0;
  char line[1024];
  int found = 0;
  while (!found && fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    const char *rest = NULL;
    if (strncmp(line, "0::", 3) == 0) {
      rest = line + 3;
      found = cgroup_tail("/sys/fs/cgroup", rest, name2, path, len) ||
              cgroup_tail("/sys/fs/cgroup/unified", rest, name2, path, len);
    } else if ((rest = strstr(line, ":memory:")) != NULL) {
      found = cgroup_tail("/sys/fs/cgroup/memory", rest + 8, name1, path, len);
    }
  }
  fclose(f);
  return found;
}

uint64_t op_mem_cgroup_limit(void) {
  char path[1200];
  uint64_t v = 0;
  if (cgroup_file("memory.max", "memory.limit_in_bytes", path, sizeof path))
    v = read_limit(path);
  /* v1 says "no limit" with a huge page-rounded number. */
  return v < (UINT64_C(1) << 62) ? v : 0;
}

int op_mem_oom_kills(uint64_t *count) {
  char path[1200];
  if (cgroup_file("memory.events", "memory.oom_control", path, sizeof path) && proc_field(path, "oom_kill ", count))
    return OP_MEM_OOM_CGROUP;
  if (proc_field("/proc/vmstat", "oom_kill ", count))
    return OP_MEM_OOM_MACHINE;
  return OP_MEM_OOM_UNKNOWN;
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
