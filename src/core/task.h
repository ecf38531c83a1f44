/*
 * task.h: a task (one document plus options) and its page jobs.
 *
 * A task goes through three stages, each a job on a worker: a probe (page
 * count and sizes, limits enforced before any decoding), one job per
 * selected page, and for PDF output a merge. The scheduler (sched.h) runs
 * them; these types are what it and its callers share.
 */
#ifndef OCRPOOL_CORE_TASK_H
#define OCRPOOL_CORE_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/options.h"
#include "core/policy.h"
#include "doc/doc.h"
#include "engine/engine.h"
#include "store/store.h"
#include "util/error.h"

/** "queued", "running", "succeeded", "failed", "cancelled". */
const char *op_task_status_name(op_task_status_t status);

/** The status named name; -1 for a name that is none. */
int op_task_status_parse(const char *name);

typedef enum { OP_PAGE_QUEUED = 0, OP_PAGE_RUNNING, OP_PAGE_DONE, OP_PAGE_FAILED } op_page_state_t;

struct op_task_s;

/** One page of a task. */
typedef struct op_page_job_s {
  struct op_task_s *task;
  uint32_t index; /**< 0-based page number in the document */
  uint32_t width_px, height_px;
  op_page_state_t state;
  unsigned attempts;         /**< runs started */
  unsigned crash_attempts;   /**< runs lost to a dying worker */
  unsigned timeout_attempts; /**< runs killed at the page timeout */
  op_error_t error;          /**< why it failed */
  long peak_rss_kb;          /**< the worker's peak resident memory when it finished */
  double started_s;          /**< when its last run started (wall clock) */
  double not_before_s;       /**< a retried page waits until then (exponential backoff) */
  unsigned worker_id;        /**< the worker that ran it last */
  pid_t worker_pid;          /**< ... and its process */
  double ocr_ms;
  int rotated_deg;
  int depth;                /**< bits per pixel as decoded (from the probe), 0 = unknown */
  uint64_t estimate_bytes;  /**< the working set its admission reserves */
  int waited_memory;        /**< it has waited for memory (reported once) */
  unsigned batch;           /**< the batch size of its next run: the policy's, halved after each OOM */
  int on_fallback;          /**< runs on its model's fallback (after out-of-memory failures, or its GPU was full) */
  char device[16];          /**< where its last run went: "cpu" or "cuda:N" */
  char model[64];           /**< the model of its last run (a declared name, else the languages) */
  const char *fallback_why; /**< why it went to its fallback (static text), NULL if it did not */
  int restored_failed;      /**< failed as it was restored (its crashes spent): its end is yet to be recorded */
} op_page_job_t;

/** The stages of a task, in order. */
typedef enum { OP_STAGE_PROBE = 0, OP_STAGE_PAGES, OP_STAGE_MERGE, OP_STAGE_DONE } op_task_stage_t;

typedef struct op_task_s {
  uint64_t id;
  char *input_path;   /**< the document (read by workers only) */
  char *title;        /**< the name shown in results */
  op_doc_type_t type; /**< sniffed before the task is added */
  op_task_opts_t opts;
  char *scratch_dir; /**< fragments and results; the scheduler makes one unless the caller set it */
  int keep_scratch;  /**< op_task_destroy leaves scratch_dir alone (the server keeps results there) */
  op_task_status_t status;
  op_page_job_t *pages; /**< the selected pages, in page order */
  size_t n_pages, pages_done, pages_failed;
  uint32_t page_count; /**< pages in the document */
  op_error_t error;    /**< the first failure */
  long peak_rss_kb;    /**< the largest worker peak seen by its jobs */
  double queued_s, started_s, finished_s;
  void *user;      /**< for the caller */
  char log_id[40]; /**< how logs name it: the caller's id, else the scheduler's number */
  /* the scheduler's */
  op_task_stage_t stage;
  int ended; /* its end is decided (once): its callback runs after the step */
  unsigned stage_attempts, stage_crashes, stage_timeouts;
  double run_s; /* its page runs' seconds added up, retries and timeouts included: its CPU, at a core a run */
  int stage_running;
  int resumed;                     /* added with its pages already known: a restart */
  int deferred;                    /* it waited under memory pressure (counted once) */
  const op_model_policy_t *policy; /* its model's policy (the scheduler's default when none matched) */
} op_task_t;

/**
 * A task for the document at path (already sniffed as type). Copies what it
 * needs. NULL when out of memory.
 */
op_task_t *op_task_create(const char *path, const char *title, op_doc_type_t type, const op_task_opts_t *opts);

/** Removes the task's scratch directory and frees it. */
void op_task_destroy(op_task_t *task);

/** The path of the assembled result for one format (valid after success); caller frees. */
char *op_task_result_path(const op_task_t *task, op_format_t fmt);

/** The fragment prefix of a page ("DIR/p000001"; the worker appends ".<ext>"); caller frees. */
char *op_task_page_prefix(const op_task_t *task, uint32_t index);

#endif
