/*
 * sqlite_internal.h: what the SQLite store's two files share: the
 * connection (sqlite.c runs the queries, sqlite_open.c opens and migrates).
 */
#ifndef OCRPOOL_STORE_SQLITE_INTERNAL_H
#define OCRPOOL_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>

#include "store/store_impl.h"

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
