/*
 * service.h: the durable task service behind `ocrpool serve`.
 *
 * The service owns the worker pool, the scheduler and the store connection of
 * the thread that runs it (op_service_run). Other threads (the HTTP server's)
 * create, read and cancel tasks through the functions below, which use a
 * small pool of their own store connections and wake the service up. Every
 * state change is committed to the store before it is acknowledged; after a
 * crash, op_service_create picks up what the previous run left.
 */
#ifndef OCRPOOL_CORE_SERVICE_H
#define OCRPOOL_CORE_SERVICE_H

#include <jansson.h>
#include <signal.h>

#include "core/sched.h"
#include "store/store.h"
#include "util/config.h"
#include "util/error.h"

typedef struct op_service_s op_service_t;

/** How the service runs. */
typedef struct op_service_config_s {
  const char *data_dir;       /**< default "./var" */
  const char *store_url;      /**< "postgresql://..." or "sqlite:PATH"; NULL = SQLite in data_dir */
  unsigned workers;           /**< default: usable cores */
  unsigned max_queue;         /**< tasks waiting before submissions get 429; default 100 */
  unsigned queue_timeout_s;   /**< a task not started by then fails with queue_timeout; default 300 */
  unsigned page_timeout_s;    /**< default 300 */
  unsigned retention_s;       /**< finished tasks and their files are removed after this; default 7 days */
  unsigned max_attempts;      /**< runs of one page in all; default 3 */
  unsigned drain_timeout_s;   /**< on stop, running pages get this long to finish; default 30 */
  unsigned task_cpu_budget_s; /**< a task's page runs add up to at most this; default 2 h; 0 = none */
  unsigned render_cpu_s;      /**< CPU a PDF page's drawing may take; default 0 = half the page timeout */
  const char *sandbox;        /**< "on" (default) or "off": workers confined (worker/sandbox.h) */
  const char *worker_user;    /**< run as root, workers become this user; default "nobody"; "" = stay root */
  uint64_t min_free_bytes;    /**< uploads are refused (507) rather than leave less free in data_dir; default 512 MB */
  op_doc_limits_t limits;
  const char *log_level;     /**< passed to workers */
  const char *memory_budget; /**< the CPU budget: a size or a share of capacity; NULL = "80%" */
  const char *config_file;   /**< YAML: devices.cpu.budget and models (see docs/configuration.md); NULL = none */
  double heartbeat_s;        /**< store.heartbeat: how often the node's row is written; default 10, at least 0.1 */
  double lease_s;            /**< store.lease: a node silent this long is dead; default 30, more than 2 x heartbeat_s */
  double poll_s;             /**< store.poll: how often the store is asked for claimable work; default 1 */
  int poll_only;             /**< store.poll_only: no LISTEN/NOTIFY (PgBouncer in transaction mode) */
  unsigned claim_batch;      /**< store.claim_batch: tasks claimed per query; default 16 */
} op_service_config_t;

/** Fills cfg with the defaults above. */
void op_service_config_init(op_service_config_t *cfg);

/** Opens the store, recovers unfinished tasks, starts the workers. */
int op_service_create(const op_service_config_t *cfg, op_service_t **svc, op_error_t *err);

/**
 * Runs tasks until *stop becomes non-zero, then drains: no new submissions
 * (503) and no new pages, while running pages get drain_timeout_s to finish
 * and be recorded (or until *stop reaches 2). What is left stays queued in the
 * store for the next start. Call from one thread only.
 */
int op_service_run(op_service_t *svc, volatile sig_atomic_t *stop, op_error_t *err);

/** Stops the workers, closes the store, frees. Unfinished tasks stay queued in the store. */
void op_service_destroy(op_service_t *svc);

/** The service's configuration. */
const op_service_config_t *op_service_config(const op_service_t *svc);

/* ---- for other threads ---- */

/** A store connection for the calling thread, from the pool; give it back with op_service_store_put. */
int op_service_store_get(op_service_t *svc, op_store_t **store, op_error_t *err);

/** Returns a connection to the pool. */
void op_service_store_put(op_service_t *svc, op_store_t *store);

/** The directory of a task's files (input, fragments, results): caller frees. */
char *op_service_task_dir(const op_service_t *svc, const char *id);

/**
 * Writes the task's blob name ("result.txt") from the store to path, in the
 * task's directory (made if missing): a task another node ran. OP_ENOTFOUND
 * when the store has no such blob.
 */
int op_service_fetch_blob(op_service_t *svc, const char *id, const char *name, const char *path, op_error_t *err);

/** Makes a new random task id (32 hex characters) into id[40]. */
void op_service_new_id(char id[40]);

/** Records a new queued task (its input already in its directory) and wakes the service. */
int op_service_submit(op_service_t *svc, op_task_row_t *task, op_error_t *err);

/**
 * Devices and workers as memory admission sees them, for GET /v1/memory (a
 * new reference; refreshed by the service thread every 200 ms).
 */
json_t *op_service_memory_json(op_service_t *svc);

/** The models as the model manager sees them, for GET /v1/models (a new reference; refreshed every 200 ms). */
json_t *op_service_models_json(op_service_t *svc);

/** Asks for a declared model's load (1) or unload (0); OP_ENOTFOUND for an unknown name, OP_ELIMIT when the mailbox is
 * full. */
int op_service_model_request(op_service_t *svc, const char *name, int load);

/** The declared model named name, or NULL. The list does not change while the service runs. */
const op_model_policy_t *op_service_model(const op_service_t *svc, const char *name);

/**
 * Asks the service to cancel a task; it is done within one scheduling step.
 * OP_ELIMIT when the service's mailbox is full (tell the client to retry).
 */
int op_service_cancel(op_service_t *svc, const char *id);

/** The task as the API shows it (a new reference). */
json_t *op_service_task_json(const op_task_row_t *task);

/** Every scalar key of the configuration, dotted ("devices.cpu.budget"); each is also OCRPOOL_<KEY> in the environment.
 */
extern const char *const op_service_config_keys[];

/** Reads the file (NULL: none) and overlays the environment (see op_config_env). */
int op_service_config_load(const char *path, op_config_t **cfg, op_error_t *err);

/** Checks the configuration cfg names as the service would read it, without starting anything. */
int op_service_check_config(const op_service_config_t *cfg, unsigned *n_models, op_error_t *err);

/** The cpu device's last five minutes, [unix time, used, reserved] a second (a new array). */
json_t *op_service_memory_history(op_service_t *svc);

/** How many tasks this service has finished: a mark for op_service_wait_finished. */
unsigned long op_service_finished_count(op_service_t *svc);

/**
 * Waits until a task finishes here after the mark seen, or max_ms pass (a
 * task another node runs ends unseen: callers look at the store again).
 */
void op_service_wait_finished(op_service_t *svc, unsigned long seen, unsigned max_ms);

/** Whether a worker has started since the service did: until then /readyz says not ready. */
int op_service_ready(const op_service_t *svc);

/** Whether memory is critical with nothing left to free: new tasks get 503 until it passes. */
int op_service_refusing(const op_service_t *svc);

/** Asks for a memory report (written by the service's thread within 200 ms); OP_ELIMIT when the mailbox is full. */
int op_service_report_request(op_service_t *svc);

/** {"reports": [{name, created_at, bytes}]}, newest first. */
json_t *op_service_reports_json(const op_service_t *svc);

/** The file of the report called name; NULL for a name no report could have. Caller frees. */
char *op_service_report_path(const op_service_t *svc, const char *name);

/** The server's counters (HTTP requests, pages); owned by the service. */
struct op_metrics_s *op_service_metrics(op_service_t *svc);

/** GET /metrics: the Prometheus text (a new string), or NULL when out of memory. */
char *op_service_metrics_text(op_service_t *svc);

/**
 * GET /v1/tasks/metrics: active and queued tasks (by priority), finished ones,
 * memory by device, the pool's use and the average wait before a task's first
 * page. NULL when the store does not answer.
 */
json_t *op_service_tasks_summary(op_service_t *svc);

/**
 * The flag (set by a SIGHUP handler) on which op_service_run reads the
 * configuration again; on_reload (may be NULL) is called then too, from the
 * service's thread, for what the service does not own (the HTTP tokens).
 */
void op_service_watch_reload(op_service_t *svc, volatile sig_atomic_t *flag, void (*on_reload)(void *arg), void *arg);

/** Whether the service is draining (shutting down): new tasks get 503. */
int op_service_draining(const op_service_t *svc);

/** This node's id among those sharing the store (32 hex characters, made at start). */
const char *op_service_node_id(const op_service_t *svc);

#endif
