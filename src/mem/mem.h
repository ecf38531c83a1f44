/*
 * mem.h: a device's memory: how much there is, how much ocrpool uses, and the
 * budget it may use.
 *
 * Capacity on the CPU is our cgroup's limit where one is set (cgroup v2
 * memory.max, or v1 memory.limit_in_bytes), else the machine's MemTotal.
 * Usage is proportional set size (PSS, /proc/PID/smaps_rollup): pages shared
 * between the server and its workers (the libraries, mostly) are counted
 * once in the sum, not once per process as RSS would.
 */
#ifndef OCRPOOL_MEM_MEM_H
#define OCRPOOL_MEM_MEM_H

#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

typedef enum { OP_MEM_OK = 0, OP_MEM_WARNING, OP_MEM_CRITICAL } op_mem_level_t;

/** "ok", "warning" or "critical". */
const char *op_mem_level_name(op_mem_level_t level);

/** The machine's memory (MemTotal), in bytes; 0 if /proc cannot tell. */
uint64_t op_mem_total(void);

/** The memory limit of our own cgroup, in bytes; 0 when none is set. */
uint64_t op_mem_cgroup_limit(void);

/** Where op_mem_oom_kills read its count from. */
enum { OP_MEM_OOM_UNKNOWN = 0, OP_MEM_OOM_CGROUP, OP_MEM_OOM_MACHINE };

/** The kernel's count of OOM kills: our cgroup's (v2 memory.events, which
 * counts its descendants too, or v1 memory.oom_control), else the machine's
 * (/proc/vmstat, Linux 4.13+). Returns where it came from; OP_MEM_OOM_UNKNOWN
 * (count untouched) when neither is readable. */
int op_mem_oom_kills(uint64_t *count);

/** What the CPU device may hold: the cgroup limit when set and smaller, else MemTotal. */
uint64_t op_mem_cpu_capacity(void);

/** A process's proportional set size in bytes; 0 when it is gone or unreadable. */
uint64_t op_mem_pss(pid_t pid);

/** A process's resident set size in bytes (VmRSS); 0 when it is gone. */
uint64_t op_mem_rss(pid_t pid);

/**
 * A budget from text: a share of capacity ("80%", "0.8") or a size ("300MB",
 * "2G"; see op_parse_size). A budget over capacity is refused: it could not be
 * honoured. OP_EUSAGE with a sentence on bad text.
 */
int op_mem_budget_parse(const char *text, uint64_t capacity, uint64_t *budget, op_error_t *err);

/** The level of used against budget, with the warning and critical shares (0.8, 0.95). */
op_mem_level_t op_mem_level(uint64_t used, uint64_t budget, double warning, double critical);

/** Writes bytes as "1.5 GB", "300 MB", "12 KB" into buf. */
void op_mem_format(uint64_t bytes, char *buf, unsigned len);

#endif
