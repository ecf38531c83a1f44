/*
 * sched_internal.h: what the scheduler's files share, and nothing else sees.
 *
 * The scheduler is one object split by idea: the queue and step loop
 * (sched.c), where a job goes (dispatch.c over admit.c), what a job's end
 * means (outcome.c), the jobs' messages (jobs.c), results (assemble.c), the
 * per-worker record and recycling (recycle.c), the model manager
 * (model_manager.c), and sampling memory (monitor.c).
 */
#ifndef OCRPOOL_CORE_SCHED_INTERNAL_H
#define OCRPOOL_CORE_SCHED_INTERNAL_H

#include "core/sched.h"
#include "mem/budget.h"
#include "mem/estimate.h"
#include "mem/pressure.h"
#include "util/fs.h"

#define OP__MB (UINT64_C(1) << 20)
#define OP__PROBE_ESTIMATE (16 * OP__MB) /* a probe reads headers only */
#define OP__MERGE_ESTIMATE (64 * OP__MB) /* grafting page PDFs, their images stay compressed */
#define OP__WORKER_MODELS 4              /* a worker's own model cache holds this many */
#define OP__MAX_MODEL_STATS 1024         /* models the manager keeps figures of (declared ones first) */
#define OP__MODEL_RETRY_S 30.0           /* a model that failed to load is not tried again for this long */

/* ---- the model manager (model_manager.c) ---- */

/** Why a model left a worker. */
typedef enum {
  OP__UNLOAD_KEEP_ALIVE,
  OP__UNLOAD_BUDGET,
  OP__UNLOAD_RECYCLE,
  OP__UNLOAD_CRASH,
  OP__UNLOAD_ADMIN
} op__unload_t;
#define OP__UNLOAD_REASONS 5

/* What the manager has seen of one model. */
typedef struct op__mstat_s {
  op_model_key_t key;
  unsigned loads;
  unsigned unloads[OP__UNLOAD_REASONS];
  double last_use_s;
  int load_wanted;   /* preload or an admin's load: once a worker holds it, done */
  double failed_s;   /* when it last failed to load: not tried again for OP__MODEL_RETRY_S */
  char failure[256]; /* ... and why */
  int unload_wanted; /* an admin's unload: from every idle worker */
} op__mstat_t;

/* ---- the per-worker record (recycle.c) ---- */

/* What the scheduler knows of one worker slot's process. */
typedef struct op__worker_s {
  pid_t pid; /* the process these figures are about; a new one starts afresh */
  uint64_t pss;
  op_model_key_t models[OP__WORKER_MODELS]; /* most recent first, as the worker's own cache */
  double model_used[OP__WORKER_MODELS];     /* when each last ran a page */
  unsigned n_models;
  op_model_key_t control_key; /* the model its load or unload job is about */
  int control_busy;           /* such a job runs */
  int control_load;           /* that job loads (else unloads) */
  op__unload_t control_reason;
  int learned_base; /* its size before any model has been learned */
  double last_used_s;
  /* recycling */
  const op_model_policy_t *policy; /* of its last job's model */
  uint64_t first_rss;              /* resident size after its first page */
  uint64_t last_rss;               /* after its last page */
  unsigned tasks_run;
  uint64_t last_task_id;
  uint64_t bound_task; /* isolate: per_task: the only task it serves; 0 = none */
  int retire;          /* retire it once idle (why: retire_why) */
  const char *retire_why;
  int killed_for_memory; /* the monitor killed it past its cap */
  int oom_killed;        /* the kernel's OOM killer ended it (monitor.c's op__oom_killed) */
  uint64_t oom_base;     /* the kernel's OOM kill count when its job was sent */
  int gpu;               /* 1 + the GPU it runs pages on; 0 = none */
  uint64_t vram;         /* its VRAM there (NVML) */
} op__worker_t;

struct op_sched_s {
  op_sched_config_t cfg;
  op_supervisor_t *sup;
  op_task_t **tasks; /* added and not ended; ended ones are compacted out after each step */
  size_t n_tasks, cap_tasks;
  op_task_t **ended; /* ended this step: their on_task runs after it, as libuv runs exit callbacks */
  size_t n_ended, cap_ended;
  uint64_t next_task_id;
  int paused;
  op_estimates_t *estimates;
  op__worker_t *workers;
  unsigned n_workers;
  op_budget_t budget;
  uint64_t server_pss;
  double last_sample_s;
  unsigned waiting_pages, refused_pages;
  op_model_policy_t default_policy;
  int control; /* the job context of load and unload jobs: its address */
  op__mstat_t *mstats;
  unsigned n_mstats, cap_mstats;
  op_pressure_t pressure;
  unsigned deferred_tasks;
  unsigned worker_ends[OP_SCHED_END_REASONS], oom_events;
  int oom_source;         /* where the kernel's OOM kill count is read (OP_MEM_OOM_*) */
  uint64_t oom_kills;     /* that count at the last reading */
  uint64_t oom_start;     /* ... and when the scheduler started */
  uint64_t oom_explained; /* kills since then taken to explain a worker's end */
  struct {
    op_gpu_info_t info; /* the last reading */
    uint64_t ours;      /* VRAM of the server and its workers */
    op_mem_level_t level;
    unsigned fallbacks;
    double last_action_s;
  } gpu[OP_SCHED_MAX_GPUS];
};

/* jobs.c: the messages a job sends to a worker */
const op_model_policy_t *op__page_policy(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p);
void op__job_key(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p, op_model_key_t *key);
json_t *op__probe_job(const op_sched_t *s, const op_task_t *t);
json_t *op__page_job(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p);
json_t *op__merge_job(const op_sched_t *s, const op_task_t *t);

/* assemble.c: a task's results in page order */
int op__assemble(op_task_t *t, op_error_t *err);
int op__results_written(const op_task_t *t);

/* outcome.c: what a job's end means */
void op__task_ended(op_sched_t *s, op_task_t *t);
void op__task_fail(op_sched_t *s, op_task_t *t, const op_error_t *e);
void op__page_fail(op_sched_t *s, op_page_job_t *p, const op_error_t *e);
void op__pages_ended(op_sched_t *s, op_task_t *t);
void op__on_stage_event(op_sched_t *s, op_task_t *t, const op_sup_event_t *ev);
void op__on_page_event(op_sched_t *s, op_page_job_t *p, const op_sup_event_t *ev);

/* sched.c: the queue */
int op__next_job(op_sched_t *s, op_task_t **task, op_page_job_t **page);

/* dispatch.c: where the next job goes, and sending it */
void op__dispatch(op_sched_t *s);

/* monitor.c: the kernel's count of OOM kills now, and whether its OOM killer
 * ended a worker lost during a job */
void op__read_oom_kills(op_sched_t *s);
int op__oom_killed(op_sched_t *s, const op__worker_t *w, const op_sup_event_t *ev);

/* recycle.c: the per-worker record and recycling */
op__worker_t *op__worker_of(op_sched_t *s, unsigned slot, pid_t pid);
op__worker_t *op__idle_worker(op_sched_t *s, unsigned slot, op_worker_info_t *info);
uint64_t op__worker_reserved(op_sched_t *s, unsigned slot);
uint64_t op__total_reserved(op_sched_t *s);
int op__may_serve(const op_sched_t *s, const op__worker_t *w, const op_worker_info_t *info, const op_task_t *t);
int op__retire_idle(op_sched_t *s, int keep);
int op__retire_due(op_sched_t *s, const char *why_prefix);
void op__after_job(op_sched_t *s, unsigned slot, const op_sup_event_t *ev);
void op__sweep(op_sched_t *s);
int op__task_has_queued(const op_task_t *t);

/* model_manager.c */
op__mstat_t *op__mstat(op_sched_t *s, const op_model_key_t *key);
int op__holds_model(const op__worker_t *w, const op_model_key_t *key);
void op__note_model(op__worker_t *w, const op_model_key_t *key);
void op__forget_model(op__worker_t *w, const op_model_key_t *key);
void op__drop_models(op_sched_t *s, op__worker_t *w, op__unload_t reason);
uint64_t op__held_bytes(op_sched_t *s, const op__worker_t *w);
int op__unload_lru(op_sched_t *s, const op_model_key_t *keep, int gpu, const char *why);
void op__model_used(op_sched_t *s, const op_model_key_t *key);
int op__model_failed(op_sched_t *s, op_task_t *t, op_page_job_t *p);
void op__model_load_failed(op_sched_t *s, unsigned slot, const op_model_key_t *key, const char *message);
void op__model_loaded(op_sched_t *s, const op_model_key_t *key, json_t *reply);
void op__on_control_event(op_sched_t *s, const op_sup_event_t *ev);
void op__sweep_models(op_sched_t *s, unsigned slot, op__worker_t *w, double now);
void op__manage_models(op_sched_t *s);

/* monitor.c: sampling memory, caps and pressure */
void op__sample(op_sched_t *s, int force);

#endif
