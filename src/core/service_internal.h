/*
 * service_internal.h: what the service's files share, and nothing else sees.
 *
 * The service is one object split by idea: its life and loop (service.c),
 * what other threads call (front.c), the mailbox they post to (mailbox.c),
 * recording the scheduler's callbacks in the store (record.c), restarting
 * from the store (recover.c), the typed snapshot of memory and models and its
 * JSON (snapshot.c), memory reports (reports.c), the settings (settings.c)
 * and this server as a node of those sharing the store (node.c).
 */
#ifndef OCRPOOL_CORE_SERVICE_INTERNAL_H
#define OCRPOOL_CORE_SERVICE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/mailbox.h"
#include "core/metrics.h"
#include "core/service.h"
#include "core/settings.h"
#include "core/snapshot.h"

#define OP__STORE_POOL_MAX 16 /* connections kept for other threads; more are opened and closed */

/* A task the scheduler runs, with its row as the store has it. */
typedef struct op__active_s {
  op_task_t *task;
  op_task_row_t row;
  int pages_recorded;    /* page rows written after the probe */
  int store_failed;      /* a record of it could not be written: it fails, or resumes after a restart */
  int store_unreachable; /* ... because the store was out of reach: no end is recorded; the next scan resumes it */
  int lost;              /* another node claimed it (this one's lease lapsed): it stops here, recording nothing */
  int cancel_seen;       /* its stored cancel request was passed to the scheduler */
} op__active_t;

/* This server as one node of those sharing the store (node.c). */
typedef struct op__node_s {
  char id[40];      /* made at start, 32 hex characters */
  char host[64];    /* gethostname(), ASCII */
  int lock_fd;      /* data_dir/node.lock, locked while this node runs; -1 when not held */
  int in_store;     /* a beat wrote the row: a clean stop deletes it */
  int beat_failing; /* the last beat failed (logged once until one succeeds) */
  double next_beat; /* CLOCK_MONOTONIC seconds */
} op__node_t;

struct op_service_s {
  op_service_config_t cfg;
  char data_dir[512];
  char tasks_dir[600];
  char worker_tmp[608];   /* tasks_dir/.tmp: the workers' /tmp */
  char store_where[1024]; /* the store's URL, or data_dir for the embedded default */
  op_store_t *store;      /* the service thread's own */
  op_supervisor_t *sup;
  op_sched_t *sched;
  int wake[2];
  op__active_t **active;
  size_t n_active, cap_active;
  op_mailbox_t mailbox;
  pthread_mutex_t lock; /* guards pool, snapshot, history, n_finished */
  op_store_t *pool[OP__STORE_POOL_MAX];
  size_t pool_n;
  pthread_cond_t finished;  /* broadcast under lock when a task's end is committed */
  unsigned long n_finished; /* how many ends were, under lock */
  atomic_int draining;      /* read by HTTP threads */
  atomic_int ready;         /* a worker has started: work can run */
  atomic_int refusing;      /* critical with nothing left to free: submissions get 503 */
  double last_retention, last_memory, last_history;
  op_settings_t settings;
  op_nvml_t *nvml; /* NULL without GPUs */
  unsigned n_gpus;
  uint64_t gpu_budget[OP_SCHED_MAX_GPUS];
  op_snapshot_t *snapshot; /* the last one, under lock */
  json_t *history;         /* the cpu's last five minutes, a sample a second, under lock */
  op_mem_level_t level;
  const char *report_reason;     /* a memory report to write: "critical" (set by the service thread) */
  op_metrics_t *metrics;         /* GET /metrics */
  volatile sig_atomic_t *reload; /* set by SIGHUP: read the configuration again */
  void (*on_reload)(void *arg);  /* ... and tell the HTTP layer */
  void *on_reload_arg;
  op__node_t node;
  double aging_s; /* the scheduler's: claims age tasks the same way */
};

/* record.c: the scheduler's callbacks, written to the store */
void op__record_install(op_service_t *svc, op_sched_config_t *qcfg);
op__active_t *op__find_active(op_service_t *svc, const op_task_t *t);
/* A page's end (done or failed) and its event, as the scheduler reports it. */
void op__record_page_end(op_service_t *svc, op__active_t *a, op_page_job_t *p);
/* A task's blobs, one per format: page's fragments ("p000001.txt"), or with
 * page -1 its results ("result.txt"); put to the store, or got from it where
 * this node lacks them. 0 when every one was put or is here. */
int op__task_blobs(op_service_t *svc, const op_task_t *t, const char *id, int page, int put, op_error_t *e);
void op__remove_fragments(const char *dir);

/* recover.c: from the store to the scheduler, and back out */
void op__review_tasks(op_service_t *svc); /* resumes its own tasks, sees cancels and lost leases (each store.poll) */
void op__claim_tasks(op_service_t *svc);  /* claims tasks no node holds, as far as this node has room */
void op__wake(op_service_t *svc);         /* the service's loop turns at once (record.c: room to claim) */
void op__drop_lost(op_service_t *svc, op__active_t *a); /* another node holds it now: stop, recording nothing */
void op__expire_queued(op_service_t *svc);
void op__apply_retention(op_service_t *svc);
void op__clean_leftovers(op_service_t *svc);

/* snapshot.c */
void op__snapshot_refresh(op_service_t *svc);

/* reports.c */
void op__write_report(op_service_t *svc, const char *reason);

/* node.c: the node's id and row, its heartbeat (which renews its leases) */
int op__node_start(op_service_t *svc, op_error_t *err); /* OP_EUSAGE: another server uses the data directory */
void op__node_beat(op_service_t *svc, int force);       /* when one is due, or now with force */
void op__node_stop(op_service_t *svc);                  /* a clean stop: the row goes */

#endif
