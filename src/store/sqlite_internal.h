/*
 * sqlite_internal.h: what the SQLite store's two files share: the
 * connection (sqlite.c runs the queries, sqlite_open.c opens and migrates).
 */
#ifndef OCRPOOL_STORE_SQLITE_INTERNAL_H
#define OCRPOOL_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>

#include "store/store_impl.h"

/* The task columns in the order op_task_row_t lists them: those a task's
 * insert and update write ($1 / ?1 is always the id), then the lease's, which
 * only the lease statements write. Every read takes them all. */
#define TASK_COLS_WRITTEN                                                                                              \
  "id, status, priority, created_at, started_at, finished_at, pages_total, pages_done, attempts, "                     \
  "assigned_device, worker_id, estimated_memory_bytes, peak_memory_bytes, failure_reason, error, owner, title, "       \
  "input_type, options, cancel_requested, resource_cleanup_completed"
#define TASK_COLS TASK_COLS_WRITTEN ", node_id, lease_until, claim"

enum stmt_id {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_TASK_INSERT,
  ST_TASK_GET,
  ST_TASK_UPDATE,
  ST_TASK_CREATED_AT,
  ST_LIST_ANY,
  ST_LIST_ANY_AFTER,
  ST_LIST_STATUS,
  ST_LIST_STATUS_AFTER,
  ST_UNFINISHED,
  ST_COUNT_STATUS,
  ST_COUNT_GROUPS,
  ST_FINISHED_BEFORE,
  ST_TASK_DELETE,
  ST_PAGE_PUT,
  ST_PAGES,
  ST_EVENT_ADD,
  ST_EVENTS,
  ST_METRIC_ADD,
  ST_COUNT_ /* not a statement */
};

typedef struct sq_store_s {
  op_store_t base; /* first: an op_store_t * to it is a sq_store_t * */
  sqlite3 *db;
  sqlite3_stmt *stmts[ST_COUNT_]; /* prepared on first use */
} sq_store_t;

static inline sq_store_t *sq(op_store_t *base) {
  return (sq_store_t *)base;
}

/* The methods (sqlite.c). */
extern const op_store_ops_t op__sqlite_ops;

/* Closes the connection and frees the store (sqlite_open.c). */
void op__sqlite_close(op_store_t *base);

/* Maps an SQLite result code to ours, with the connection's message. */
int op__sqlite_error(sq_store_t *store, int rc, const char *what, op_error_t *err);

/* A task row from a statement that selected TASK_COLS (sqlite.c). */
void op__sqlite_read_task(sqlite3_stmt *st, op_task_row_t *t);

/* Steps a bound TASK_COLS query to the end into a malloc'd array (caller frees). */
int op__sqlite_collect_tasks(sq_store_t *store, sqlite3_stmt *st, op_task_row_t **rows, size_t *n, op_error_t *err);

/* ---- leases (sqlite_lease.c): which node runs a task; one node on SQLite, but the same calls ---- */

int op__sqlite_tasks_claim(op_store_t *base, const char *node_id, double lease_s, double aging_s, int limit,
                           const char *only_id, op_task_row_t **rows, size_t *n, op_error_t *err);
int op__sqlite_task_hold(op_store_t *base, const char *task_id, const char *node_id, int claim, op_error_t *err);
int op__sqlite_leases_renew(op_store_t *base, const char *node_id, double lease_s, op_error_t *err);
int op__sqlite_leases_release(op_store_t *base, const char *node_id, op_error_t *err);
int op__sqlite_task_cancel_request(op_store_t *base, const char *task_id, op_error_t *err);

/* ---- blobs (sqlite_blob.c): files in the data directory, none in the database ---- */

/* op_store_blob_put: checks that the task and the file are there; nothing to copy. */
int op__sqlite_blob_put(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err);

/* op_store_blob_get: 0 when path is a regular file, else OP_ENOTFOUND. */
int op__sqlite_blob_get(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err);

/* ---- nodes (sqlite_nodes.c): the servers sharing the store ---- */

/* op_store_node_beat, op_store_nodes, op_store_node_forget: times on this machine's clock. */
int op__sqlite_node_beat(op_store_t *base, const op_node_row_t *node, op_error_t *err);
int op__sqlite_nodes(op_store_t *base, op_node_row_t **rows, size_t *n, op_error_t *err);
int op__sqlite_node_forget(op_store_t *base, const char *id, double forget_after_s, op_error_t *err);

#endif
