/*
 * store.h: the durable record of tasks, pages, events and memory samples.
 *
 * One interface for every database: SQLite (embedded, the default: a WAL-mode
 * database in the data directory) and PostgreSQL (several nodes), each a table
 * of methods behind these functions (store_impl.h). A connection belongs
 * to one thread: each thread that needs the store opens its own. Every call
 * commits before it returns, so a state change is durable before anyone is
 * told of it. Never carry a connection across fork/posix_spawn.
 *
 * Blobs (uploads, page fragments, results) are files under the data directory
 * whose names the server makes from task ids; no path ever comes from a
 * request. A store that keeps blobs itself (PostgreSQL) holds them too, in
 * chunks, so that a node can fetch what another node wrote.
 */
#ifndef OCRPOOL_STORE_STORE_H
#define OCRPOOL_STORE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/** OP_ENOTFOUND: no such task (an extra code beside util/error.h's). */
#define OP_ENOTFOUND (-20)
/** OP_ESTALE: the node no longer holds the task under that claim (its lease lapsed and another node claimed it). */
#define OP_ESTALE (-21)

typedef struct op_store_s op_store_t;

/**
 * A task's status: queued -> running -> succeeded | failed | cancelled.
 * Inside the program it is this enum; its name (op_store_statuses) is only
 * stored and shown.
 */
typedef enum {
  OP_TASK_QUEUED = 0,
  OP_TASK_RUNNING,
  OP_TASK_SUCCEEDED,
  OP_TASK_FAILED,
  OP_TASK_CANCELLED,
} op_task_status_t;

/** Whether a task in status s has ended (succeeded, failed or cancelled). */
#define OP_TASK_STATUS_ENDED(s) ((s) >= OP_TASK_SUCCEEDED)

/** A task as stored. Strings are fixed-size and NUL-terminated; "" when unset. */
typedef struct op_task_row_s {
  char id[40]; /**< made by the server: 32 hex characters */
  op_task_status_t status;
  int priority;                               /**< 0-9 */
  double created_at, started_at, finished_at; /**< unix seconds; 0 = not yet */
  int pages_total, pages_done;
  int attempts;    /**< page runs started in all */
  char device[16]; /**< assigned_device */
  char worker[32]; /**< worker_id of the last page run */
  int64_t estimated_memory_bytes, peak_memory_bytes;
  char failure_reason[32];
  char error[768];    /**< a sentence for a person */
  char owner[64];     /**< the token name that created it, "" when auth is off */
  char title[256];    /**< the uploaded file's name, for results */
  char input_type[8]; /**< png, jpeg, tiff, pdf */
  char options[1024]; /**< the task options as JSON text */
  int cancel_requested;
  int resource_cleanup_completed;
  /* The lease, read only: written by op_store_tasks_claim and the lease calls, never by op_store_task_update. */
  char node[40];      /**< the node that holds the task, "" when none does */
  double lease_until; /**< unix seconds on the store's clock: the holder's claim lapses then */
  int claim;          /**< how many times a node claimed it: a holder's writes name their claim */
} op_task_row_t;

/** A page job as stored. */
typedef struct op_page_row_s {
  int index;      /**< 0-based page number in the document */
  char state[16]; /**< queued, running, done, failed */
  int attempts, crash_attempts;
  double started_at, finished_at;
  int64_t estimated_memory_bytes, peak_memory_bytes;
  char error[768];
  char reason[32]; /**< a failed page's reason (op_reason_name: worker_crashed, timeout, ...); "" otherwise */
} op_page_row_t;

/**
 * Opens a connection, creating and migrating the schema. where is a store URL
 * ("postgresql://..." or "postgres://..." for PostgreSQL, "sqlite:PATH" for an
 * SQLite file) or a data directory (ocrpool.db in it, the embedded default).
 */
int op_store_open(const char *where, op_store_t **store, op_error_t *err);

/** Whether where is a store URL rather than a data directory. */
int op_store_is_url(const char *where);

/**
 * where as it may be shown in logs and `ocrpool config`: a URL's password
 * (user:PASSWORD@ or password=...) replaced by "***".
 */
void op_store_describe(const char *where, char *buf, size_t len);

/**
 * Whether the last failure left the store out of reach (the database is
 * down or restarting, the link is lost): a state that passes, unlike a
 * statement's or a disk's error. The next call tries to reconnect.
 */
int op_store_unreachable(const op_store_t *store);

/** "sqlite" or "postgresql". */
const char *op_store_kind(const op_store_t *store);

/** Closes the connection. */
void op_store_close(op_store_t *store);

/** The schema version after migrations. */
int op_store_schema_version(op_store_t *store);

/** Inserts a new task (with a "created" event). */
int op_store_task_insert(op_store_t *store, const op_task_row_t *task, op_error_t *err);

/** Reads a task; OP_ENOTFOUND when there is none. */
int op_store_task_get(op_store_t *store, const char *id, op_task_row_t *task, op_error_t *err);

/** Writes every field of an existing task. */
int op_store_task_update(op_store_t *store, const op_task_row_t *task, op_error_t *err);

/**
 * Lists tasks newest first (created_at, then id): status "" = any, owner NULL
 * = any, after = "" or the id of the last task of the previous page. *rows is
 * malloc'd, the caller frees it. limit is capped at 1000.
 */
int op_store_task_list(op_store_t *store, const char *status, const char *owner, const char *after, int limit,
                       op_task_row_t **rows, size_t *n, op_error_t *err);

/** Tasks whose status is queued or running, oldest first (for recovery and scheduling). */
int op_store_tasks_unfinished(op_store_t *store, op_task_row_t **rows, size_t *n, op_error_t *err);

/** How many tasks are queued (not started). */
int op_store_count_status(op_store_t *store, const char *status, int *count, op_error_t *err);

#define OP_STORE_STATUSES 5
/** "queued", "running", "succeeded", "failed", "cancelled": the indexes of op_store_counts_t. */
extern const char *const op_store_statuses[OP_STORE_STATUSES];

/** Tasks in the store by status and priority (0-9). */
typedef struct op_store_counts_s {
  int counts[OP_STORE_STATUSES][10];
} op_store_counts_t;

/** Counts every task by status and priority, in one query. */
int op_store_count_tasks(op_store_t *store, op_store_counts_t *counts, op_error_t *err);

/** Finished tasks (succeeded, failed, cancelled) that finished before the given time. */
int op_store_tasks_finished_before(op_store_t *store, double before, op_task_row_t **rows, size_t *n, op_error_t *err);

/** Deletes a task with its pages, events and metrics. */
int op_store_task_delete(op_store_t *store, const char *id, op_error_t *err);

/**
 * Starts a transaction: the changes until op_store_end are recorded all
 * together or not at all (a kill -9 in between leaves none of them).
 * Transactions nest; only the outermost one commits.
 */
int op_store_begin(op_store_t *store, op_error_t *err);

/** Ends op_store_begin's transaction: commits when ret is 0, else rolls back. Returns ret or the commit's error. */
int op_store_end(op_store_t *store, int ret, op_error_t *err);

/** Inserts or replaces one page row of a task. */
int op_store_page_put(op_store_t *store, const char *task_id, const op_page_row_t *page, op_error_t *err);

/** Inserts or replaces n page rows of a task in one transaction: all of them, or none. */
int op_store_pages_put(op_store_t *store, const char *task_id, const op_page_row_t *pages, size_t n, op_error_t *err);

/** A task's pages in page order; *rows malloc'd. */
int op_store_pages(op_store_t *store, const char *task_id, op_page_row_t **rows, size_t *n, op_error_t *err);

/** Appends an event; details is a JSON object or NULL. */
int op_store_event_add(op_store_t *store, const char *task_id, const char *type, json_t *details, op_error_t *err);

/** A task's events in order as a JSON array of {"time","type","details"}; *events is a new reference. */
int op_store_events(op_store_t *store, const char *task_id, json_t **events, op_error_t *err);

/** Records a memory sample for a task. */
int op_store_metric_add(op_store_t *store, const char *task_id, int64_t memory_bytes, const char *device,
                        const char *stage, op_error_t *err);

/* ---- nodes: the servers sharing the store ---- */

/** A node as stored: written by its own heartbeat. */
typedef struct op_node_row_s {
  char id[40];         /**< made at start: 32 hex characters */
  char host[64];       /**< gethostname() */
  double started_at;   /**< unix seconds, the store's clock */
  double heartbeat_at; /**< unix seconds, the store's clock; set by op_store_node_beat */
  double age_s;        /**< read only: seconds since heartbeat_at, on the store's clock */
  int draining;        /**< stopping: takes no new pages */
  int workers;         /**< worker processes configured */
  int pages_running;   /**< pages it runs now */
  char memory[1024];   /**< JSON: per device {"used_bytes","budget_bytes"}, as GET /v1/memory has them */
} op_node_row_t;

/**
 * Inserts or updates the node's row with the store's current time as
 * heartbeat_at. A new row starts at node->started_at, or at that same time
 * when it is 0; an existing row keeps its started_at.
 */
int op_store_node_beat(op_store_t *store, const op_node_row_t *node, op_error_t *err);

/** Every node's row, oldest start first, age_s on the store's clock; *rows malloc'd. */
int op_store_nodes(op_store_t *store, op_node_row_t **rows, size_t *n, op_error_t *err);

/** Deletes the node's row (a clean stop), and rows silent for more than forget_after_s seconds. */
int op_store_node_forget(op_store_t *store, const char *id, double forget_after_s, op_error_t *err);

/* ---- leases: which node runs a task ---- */

/**
 * Claims up to limit unfinished tasks that no node holds: never claimed, let
 * go, or held by another node whose lease lapsed (on the store's clock).
 * Highest priority first, a task gaining one level for every aging_s it has
 * waited since it was created (0: no aging), then oldest. Each gets node_id as holder, a lease
 * until now + lease_s and its claim number one higher; *rows are the claimed
 * tasks as they are now (malloc'd). Nodes claiming at once never get the same
 * task: a task being claimed or held (op_store_task_hold) is skipped.
 */
int op_store_tasks_claim(op_store_t *store, const char *node_id, double lease_s, double aging_s, int limit,
                         op_task_row_t **rows, size_t *n, op_error_t *err);

/**
 * Claims the one task task_id as op_store_tasks_claim would (when no live
 * node holds it); *task is it as it is now. OP_ENOTFOUND when it is not
 * claimable (held, being claimed, finished, gone).
 */
int op_store_task_claim(op_store_t *store, const char *task_id, const char *node_id, double lease_s,
                        op_task_row_t *task, op_error_t *err);

/**
 * Inside a transaction, before a holder's writes: 0 when node_id still holds
 * the task under claim, OP_ESTALE when another node claimed it since (the
 * holder's lease lapsed), OP_ENOTFOUND when it is gone. The task's row stays
 * locked until the transaction ends: no claim takes it in between.
 */
int op_store_task_hold(op_store_t *store, const char *task_id, const char *node_id, int claim, op_error_t *err);

/** Extends the lease of every unfinished task node_id holds to now + lease_s (the heartbeat). */
int op_store_leases_renew(op_store_t *store, const char *node_id, double lease_s, op_error_t *err);

/** Lets go of every unfinished task node_id holds, for any node to claim at once (a clean stop, a restart). */
int op_store_leases_release(op_store_t *store, const char *node_id, op_error_t *err);

/** Marks an unfinished task for cancelling, for the node that holds it to see; OP_ENOTFOUND when none. */
int op_store_task_cancel_request(op_store_t *store, const char *task_id, op_error_t *err);

/* ---- waking: a submission tells the other nodes at once ---- */

/** Subscribes this connection to news of new work (PostgreSQL's LISTEN); 0 and nothing where none exists. */
int op_store_listen(op_store_t *store, op_error_t *err);

/** Inside the transaction that queues work: tells the listeners once it commits (one NOTIFY per transaction). */
int op_store_notify(op_store_t *store, op_error_t *err);

/** Whether news arrived on a listening connection since the last call (never blocks); 0 without. */
int op_store_notified(op_store_t *store);

/* ---- blobs: documents, page fragments, results ---- */

/**
 * Whether blobs live in the store itself (PostgreSQL: several nodes share
 * nothing but the database) rather than as files in the server's data
 * directory (SQLite: one machine). Either way the core calls the two below;
 * with files only, put has nothing to do and get finds the local file or none.
 */
int op_store_keeps_blobs(const op_store_t *store);

/**
 * Stores the file at path as the task's blob name ("input", "page-3.json",
 * "result.pdf"; [A-Za-z0-9._-], at most 64 characters), replacing any blob of
 * that name, in chunks: memory stays bounded whatever the size. One
 * transaction: the whole blob or none. OP_ENOTFOUND when the task is gone.
 */
int op_store_blob_put(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err);

/**
 * Writes the task's blob name to path (created or truncated, 0600), streamed
 * chunk by chunk; 0 when path already holds it (files only). OP_ENOTFOUND
 * when there is no such blob; path is then left as it was.
 */
int op_store_blob_get(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err);

/**
 * A test's fault: from now on every nth write statement on this connection
 * fails as a disk error would (0 turns it off). For tests of what a failed
 * write does to a transaction; nothing else calls it.
 */
void op_store_test_fail_every(op_store_t *store, unsigned n);

#endif
