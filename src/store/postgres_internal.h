/*
 * postgres_internal.h: what the PostgreSQL store's two files share: the
 * connection (postgres.c runs the queries, postgres_open.c connects, migrates
 * and reconnects).
 */
#ifndef OCRPOOL_STORE_POSTGRES_INTERNAL_H
#define OCRPOOL_STORE_POSTGRES_INTERNAL_H

#include <libpq-fe.h>

#include "store/store_impl.h"

/* The task columns in the order op_task_row_t lists them: those a task's
 * insert and update write ($1 / ?1 is always the id), then the lease's, which
 * only the lease statements write. Every read takes them all. */
#define TASK_COLS_WRITTEN                                                                                              \
  "id, status, priority, created_at, started_at, finished_at, pages_total, pages_done, attempts, "                     \
  "assigned_device, worker_id, estimated_memory_bytes, peak_memory_bytes, failure_reason, error, owner, title, "       \
  "input_type, options, cancel_requested, resource_cleanup_completed"
#define TASK_COLS TASK_COLS_WRITTEN ", node_id, lease_until, claim"

/* The named statements, prepared on a connection at first use. */
enum pg_stmt_id {
  PST_TASK_INSERT,
  PST_TASK_GET,
  PST_TASK_UPDATE,
  PST_TASK_CREATED_AT,
  PST_LIST_ANY,
  PST_LIST_ANY_AFTER,
  PST_LIST_STATUS,
  PST_LIST_STATUS_AFTER,
  PST_UNFINISHED,
  PST_COUNT_STATUS,
  PST_COUNT_GROUPS,
  PST_FINISHED_BEFORE,
  PST_TASK_DELETE,
  PST_PAGE_PUT,
  PST_PAGES,
  PST_EVENT_ADD,
  PST_EVENTS,
  PST_METRIC_ADD,
  PST_COUNT_ /* not a statement */
};

typedef struct pg_store_s {
  op_store_t base; /* first: an op_store_t * to it is a pg_store_t * */
  PGconn *conn;
  unsigned char prepared[PST_COUNT_]; /* on this session; cleared by a reconnect */
  char sqlstate[6];                   /* of the last failed statement, "" if none */
  char where[256];                    /* the URL as op_store_describe shows it (no password) */
  int listening;                      /* LISTEN asked for: a reconnect listens again */
} pg_store_t;

static inline pg_store_t *pg(op_store_t *base) {
  return (pg_store_t *)base;
}

/* The methods (postgres.c). */
extern const op_store_ops_t op__postgres_ops;

/* Closes the connection and frees the store (postgres_open.c). */
void op__postgres_close(op_store_t *base);

/*
 * Makes sure the connection is up before a statement: when it was lost, and
 * may_reset (no transaction is open on it), reconnects once with PQreset and
 * forgets the prepared statements; else fails with OP_EIO (postgres_open.c).
 */
int op__postgres_ready(pg_store_t *store, int may_reset, op_error_t *err);

/*
 * Maps a failed result (NULL too) to our codes with "what: message", and keeps
 * its SQLSTATE in store->sqlstate for callers that tell some apart.
 */
int op__postgres_error(pg_store_t *store, const PGresult *res, const char *what, op_error_t *err);

/*
 * Runs constant SQL without parameters (BEGIN, migrations). With out, the
 * result is kept there on success (the caller PQclears it).
 */
int op__postgres_exec(pg_store_t *store, const char *sql, const char *what, PGresult **out, op_error_t *err);

/* Copies a result's text value into a fixed-size field, cut short at a UTF-8
 * character boundary when it does not fit; NULL reads as "" (postgres_open.c). */
void op__postgres_get_text(const PGresult *res, int row, int col, char *dst, size_t size);

/* A task row from a result that selected TASK_COLS (postgres.c). */
void op__postgres_read_task(const PGresult *res, int r, op_task_row_t *t);

/* The channel of news of new work (LISTEN/NOTIFY). */
#define OP__PG_CHANNEL "ocrpool_work"

/* ---- leases and waking (postgres_lease.c): which node runs a task ---- */

int op__postgres_tasks_claim(op_store_t *base, const char *node_id, double lease_s, double aging_s, int limit,
                             const char *only_id, op_task_row_t **rows, size_t *n, op_error_t *err);
int op__postgres_task_hold(op_store_t *base, const char *task_id, const char *node_id, int claim, op_error_t *err);
int op__postgres_leases_renew(op_store_t *base, const char *node_id, double lease_s, op_error_t *err);
int op__postgres_leases_release(op_store_t *base, const char *node_id, op_error_t *err);
int op__postgres_task_cancel_request(op_store_t *base, const char *task_id, op_error_t *err);
int op__postgres_listen(op_store_t *base, op_error_t *err);
int op__postgres_notify(op_store_t *base, op_error_t *err);
int op__postgres_notified(op_store_t *base);

/* Runs sql with n text parameters, unprepared (statements that run a few
 * times a minute); *out is the result on success, which the caller PQclears.
 * writes: the test's fault applies, and it is never sent twice (postgres_nodes.c). */
int op__postgres_exec_params(pg_store_t *store, const char *sql, int n, const char *const *values, int writes,
                             PGresult **out, const char *what, op_error_t *err);

/* ---- blobs (postgres_blob.c): chunks in the table blobs ---- */

/* op_store_blob_put: the file in 1 MiB chunks, in one transaction. */
int op__postgres_blob_put(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err);

/* op_store_blob_get: the chunks in order to path + ".part", renamed over path. */
int op__postgres_blob_get(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err);

/* ---- nodes (postgres_nodes.c): the servers sharing the database ---- */

/* op_store_node_beat, op_store_nodes, op_store_node_forget: times on the database's clock. */
int op__postgres_node_beat(op_store_t *base, const op_node_row_t *node, op_error_t *err);
int op__postgres_nodes(op_store_t *base, op_node_row_t **rows, size_t *n, op_error_t *err);
int op__postgres_node_forget(op_store_t *base, const char *id, double forget_after_s, op_error_t *err);

#endif
