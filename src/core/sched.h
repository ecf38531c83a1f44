/*
 * sched.h: the scheduler that runs tasks (task.h) on a worker pool.
 *
 * The scheduler hands queued jobs to idle workers by task priority, then
 * age, admitting each against the memory budget, and decides what a job's
 * end means: a page whose worker crashed runs again on another worker until
 * its crash attempts run out; a bad page fails alone and the other pages
 * still complete. When every page has ended, the results are assembled in
 * page order into the task's scratch directory (result.<ext>), and the
 * task's done callback fires after the step in which it ended.
 */
#ifndef OCRPOOL_CORE_SCHED_H
#define OCRPOOL_CORE_SCHED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/model_manager.h"
#include "core/policy.h"
#include "core/task.h"
#include "mem/mem.h"
#include "mem/nvml.h"
#include "util/error.h"
#include "worker/supervisor.h"

typedef struct op_sched_s op_sched_t;

/** Called when a page starts or ends (done or failed). */
typedef void (*op_page_cb)(void *ctx, op_task_t *task, op_page_job_t *page);
/** Called when a page is queued again after a lost or failed run. */
typedef void (*op_retry_cb)(void *ctx, op_task_t *task, op_page_job_t *page, const char *why);
/**
 * The last thing the scheduler does with a task, once the step in which it
 * ended (or the next one, after op_sched_cancel or op_sched_fail) is over:
 * nothing of the scheduler's refers to it then, and the callback may free it.
 */
typedef void (*op_task_cb)(void *ctx, op_task_t *task);

#define OP_SCHED_MAX_GPUS 8

/** Why a worker ended: crashed, killed for its page's timeout, past its memory
 * cap, recycled by its model's policy, retired to make room. */
enum { OP_SCHED_END_CRASH, OP_SCHED_END_TIMEOUT, OP_SCHED_END_MEMORY, OP_SCHED_END_RECYCLE, OP_SCHED_END_ROOM };
#define OP_SCHED_END_REASONS 5
extern const char *const op_sched_end_names[OP_SCHED_END_REASONS];

typedef struct op_sched_config_s {
  const char *scratch_root; /**< parent of the tasks' scratch directories */
  /** Workers that changed user (their sandbox's worker_user) are given each
   * task's directory and input before a job names them: chown to these. */
  int give_files;
  uid_t worker_uid;
  gid_t worker_gid;
  unsigned page_timeout_ms;    /**< default 300000 */
  unsigned max_attempts;       /**< runs of one page in all, default 3 */
  unsigned max_crash_attempts; /**< runs lost to a crash before the page fails, default 3 */
  /** Runs killed at the page timeout before the page fails: 2, since a
   * second timeout on a fresh worker says the page itself is the cost, and a
   * third run would only spend another page timeout of CPU on it. */
#define OP_SCHED_MAX_TIMEOUTS 2u
  double retry_backoff_s; /**< the first retry waits this long, each next one twice as long; default 0.5 */
  /** A task whose page runs add up to more seconds fails as a timeout: what
   * one small hostile file can cost (pages x attempts x page timeout) is
   * bounded whatever its page count. 0 = no budget. */
  double task_cpu_budget_s;
  /** The CPU a PDF page's drawing may take, in ms; 0 = half the page
   * timeout (server.render_cpu). */
  unsigned render_cpu_ms;
  /** What MuPDF may allocate for a PDF's structure, or for one page beyond
   * what its size explains (server.render_memory); default 128 MB; 0 = no cap. */
  uint64_t render_bytes;
  double aging_s;           /**< a waiting task gains one priority level per aging_s; default 60 */
  op_page_cb on_page_start; /**< may be NULL */
  op_retry_cb on_retry;     /**< may be NULL */
  op_page_cb on_page;
  op_task_cb on_task;
  /** Called once when a page first waits because its memory does not fit; may be NULL. */
  void (*on_memory_wait)(void *ctx, op_task_t *task, op_page_job_t *page, uint64_t need, uint64_t free_bytes);
  void *cb_ctx;
  /**
   * The CPU memory budget in bytes; 0 = no admission. With one, the
   * supervisor must be lazy: the scheduler starts and retires workers so that
   * the server, its workers, their models and the pages running on them stay
   * within it, and a page that could never fit fails with
   * memory_limit_exceeded.
   */
  uint64_t budget_bytes;
  /** Declared models (not owned): their recycling, isolation, concurrency,
   * memory cap, batch and fallback apply under a budget. */
  const op_model_policy_t *policies;
  unsigned n_policies;
  /**
   * Pressure, measured against the budget every 200 ms: warning and critical
   * at these shares (0.8, 0.95). Under warning no model is loaded while other
   * work runs and tasks of a priority below defer_below (5) wait; under
   * critical idle models are unloaded and idle workers due to recycle exit,
   * and when nothing is left to free the service refuses submissions until
   * the level has been below critical for cooldown_s (5 s), which is also the
   * least time between two rounds of actions.
   */
  double warning_share, critical_share;
  int defer_below;
  double cooldown_s;
  /**
   * GPUs (NVML, not owned; NULL without): each cuda:N device's budget of our
   * processes' VRAM. A page of a model on cuda:N runs there when its VRAM
   * fits and the GPU is not critical, else on its fallback model when one is
   * declared, else it waits; a device that does not exist sends it to its
   * fallback or fails it with device_unavailable.
   */
  op_nvml_t *nvml;
  unsigned n_gpus;
  uint64_t gpu_budget[OP_SCHED_MAX_GPUS];
  /** Called when the level or the refusal changes; may be NULL. */
  void (*on_pressure)(void *ctx, op_mem_level_t level, int refusing, uint64_t used, uint64_t budget);
} op_sched_config_t;

/** Fills cfg with the defaults. */
void op_sched_config_init(op_sched_config_t *cfg);

/** A scheduler over sup (not owned). */
op_sched_t *op_sched_create(const op_sched_config_t *cfg, op_supervisor_t *sup);

/** Frees the scheduler (not its tasks or supervisor). */
void op_sched_destroy(op_sched_t *sched);

/**
 * Queues a task (not owned; it must outlive its done callback). Creates its
 * scratch directory unless task->scratch_dir is set. A task whose pages are
 * already known (restored after a restart: task->pages set, done pages marked
 * OP_PAGE_DONE) skips the probe and runs only its unfinished pages.
 */
int op_sched_add(op_sched_t *sched, op_task_t *task, op_error_t *err);

/** Cancels a task: queued pages are dropped, running ones killed with their workers; on_task fires in the next step. */
void op_sched_cancel(op_sched_t *sched, op_task_t *task);

/** Fails a task now (queue timeout and the like), stopping its running jobs; on_task fires in the next step. */
void op_sched_fail(op_sched_t *sched, op_task_t *task, const op_error_t *error);

/** Dispatches what can run and waits up to timeout_ms for one event. <0 on a fatal error. */
int op_sched_step(op_sched_t *sched, int timeout_ms, op_error_t *err);

/** Paused, the scheduler starts no new job; jobs already running go on and are recorded. */
void op_sched_pause(op_sched_t *sched, int paused);

/** Jobs running on workers now. */
size_t op_sched_running(const op_sched_t *sched);

/** Tasks added whose on_task has not fired yet. */
size_t op_sched_active(const op_sched_t *sched);

/** One worker's memory, as admission sees it. */
typedef struct op_sched_worker_mem_s {
  pid_t pid; /**< 0: the slot has no process */
  int busy;
  uint64_t used_bytes;     /**< its PSS at the last sample */
  uint64_t reserved_bytes; /**< what admission counts for it now */
  uint64_t pages_done;
  unsigned n_models;
  op_model_key_t models[4]; /**< the models loaded in it, most recent first */
  int gpu;                  /**< the GPU it runs pages on, -1 for none */
  uint64_t vram_bytes;      /**< its VRAM there */
  op_sandbox_status_t sandbox;
} op_sched_worker_mem_t;

/** The CPU device's memory as admission sees it. */
typedef struct op_sched_mem_s {
  uint64_t budget_bytes;   /**< 0 = no admission */
  uint64_t reserved_bytes; /**< the server's own use plus every worker's reservation */
  uint64_t used_bytes;     /**< the server's and its workers' PSS at the last sample */
  uint64_t server_bytes;   /**< the server's own PSS */
  unsigned waiting_pages;  /**< pages that waited for memory since the start */
  unsigned refused_pages;  /**< pages failed with memory_limit_exceeded */
  op_mem_level_t level;    /**< pressure now */
  int refusing;            /**< critical and nothing left to free: submissions are refused */
  unsigned warnings;       /**< times the level rose to warning */
  unsigned criticals;      /**< times it rose to critical */
  unsigned deferred_tasks; /**< tasks that waited because of pressure */
  /** Workers that ended, by reason: OP_SCHED_END_... */
  unsigned worker_ends[OP_SCHED_END_REASONS];
  unsigned oom_events; /**< pages that ran out of memory (each attempt) */
  unsigned n_gpus;
  struct {
    char name[96];           /**< the card's, from NVML */
    uint64_t capacity_bytes; /**< its memory */
    uint64_t budget_bytes;
    uint64_t used_bytes;     /**< by the server and its workers (NVML's per-process figures) */
    uint64_t all_used_bytes; /**< by every process on it */
    uint64_t reserved_bytes; /**< what admission counts: ours, or more while pages start */
    op_mem_level_t level;
    unsigned fallbacks; /**< pages sent to their fallback model instead */
  } gpus[OP_SCHED_MAX_GPUS];
} op_sched_mem_t;

/**
 * For a memory report: the last minute of samples ([time, used, reserved]),
 * the largest pages in flight, the level and its counters (a new object).
 */
json_t *op_sched_report_json(op_sched_t *sched);

/** Why a model left its workers, counted per model: keep_alive, budget, recycle, crash, admin. */
#define OP_SCHED_UNLOAD_REASONS 5
extern const char *const op_sched_unload_names[OP_SCHED_UNLOAD_REASONS];

typedef enum { OP_MODEL_UNLOADED = 0, OP_MODEL_LOADED, OP_MODEL_FAILED } op_model_state_t;

/** One model as the model manager sees it. */
typedef struct op_sched_model_s {
  op_model_key_t key;
  const op_model_policy_t *policy; /**< its declaration; NULL for one used without */
  op_model_state_t state;
  unsigned workers;      /**< workers holding it */
  unsigned refcount;     /**< pages running on it */
  uint64_t memory_bytes; /**< its estimated footprint in all its workers */
  double last_used_s;    /**< 0 = never */
  unsigned loads;
  unsigned unloads[OP_SCHED_UNLOAD_REASONS];
  char last_error[256]; /**< its last load failure, "" for none */
} op_sched_model_t;

/** The models, declared first, then those used without a declaration: a new array of *n (caller frees). */
op_sched_model_t *op_sched_models(op_sched_t *sched, size_t *n);

/** The CPU's last samples (up to last of them, one in every), [time, used, reserved] each (a new array). */
json_t *op_sched_history_json(op_sched_t *sched, unsigned every, unsigned last);

/**
 * Asks for a declared model to be loaded into a worker (as memory allows) or
 * unloaded from every worker (idle ones now, busy ones when their keep_alive
 * runs out: never while in use).
 */
int op_sched_model_request(op_sched_t *sched, const op_model_policy_t *model, int load);

/** A reload: the CPU budget and the pressure settings (see op_sched_config_t). */
void op_sched_set_limits(op_sched_t *sched, uint64_t budget_bytes, double warning_share, double critical_share,
                         double cooldown_s, int defer_below);

/** How many worker slots there are (the size op_sched_memory's workers[] needs). */
unsigned op_sched_worker_slots(const op_sched_t *sched);

/** Fills *mem, and every worker slot into workers[] (op_sched_worker_slots entries; NULL for none). */
void op_sched_memory(op_sched_t *sched, op_sched_mem_t *mem, op_sched_worker_mem_t *workers);

#endif
