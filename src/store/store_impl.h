/*
 * store_impl.h: what a store implementation provides: a table of methods, one
 * file (or two) per database, as curl's connection filters are one file per
 * protocol. store.c dispatches op_store_* calls to it and does what every
 * implementation shares (nesting transactions, the test's fault, choosing the
 * implementation from a URL); the core includes only store.h.
 */
#ifndef OCRPOOL_STORE_STORE_IMPL_H
#define OCRPOOL_STORE_STORE_IMPL_H

#include "store/store.h"

/** The three statements of an outermost transaction. */
typedef enum { OP_STORE_BEGIN, OP_STORE_COMMIT, OP_STORE_ROLLBACK } op_store_tx_t;

/**
 * The methods; each has the contract of the op_store_* function of the same
 * name in store.h. tx runs one transaction statement (store.c nests them);
 * ROLLBACK must be harmless when the database already ended the transaction.
 */
typedef struct op_store_ops_s {
  const char *name; /**< "sqlite", "postgresql" */
  void (*close)(op_store_t *store);
  int (*tx)(op_store_t *store, op_store_tx_t what, op_error_t *err);
  int (*task_insert)(op_store_t *store, const op_task_row_t *task, op_error_t *err);
  int (*task_get)(op_store_t *store, const char *id, op_task_row_t *task, op_error_t *err);
  int (*task_update)(op_store_t *store, const op_task_row_t *task, op_error_t *err);
  int (*task_list)(op_store_t *store, const char *status, const char *owner, const char *after, int limit,
                   op_task_row_t **rows, size_t *n, op_error_t *err);
  int (*tasks_unfinished)(op_store_t *store, op_task_row_t **rows, size_t *n, op_error_t *err);
  int (*count_status)(op_store_t *store, const char *status, int *count, op_error_t *err);
  int (*count_tasks)(op_store_t *store, op_store_counts_t *counts, op_error_t *err);
  int (*tasks_finished_before)(op_store_t *store, double before, op_task_row_t **rows, size_t *n, op_error_t *err);
  int (*task_delete)(op_store_t *store, const char *id, op_error_t *err);
  int (*page_put)(op_store_t *store, const char *task_id, const op_page_row_t *page, op_error_t *err);
  int (*pages)(op_store_t *store, const char *task_id, op_page_row_t **rows, size_t *n, op_error_t *err);
  int (*event_add)(op_store_t *store, const char *task_id, const char *type, json_t *details, op_error_t *err);
  int (*events)(op_store_t *store, const char *task_id, json_t **events, op_error_t *err);
  int (*metric_add)(op_store_t *store, const char *task_id, int64_t memory_bytes, const char *device, const char *stage,
                    op_error_t *err);
  int (*node_beat)(op_store_t *store, const op_node_row_t *node, op_error_t *err);
  int (*nodes)(op_store_t *store, op_node_row_t **rows, size_t *n, op_error_t *err);
  int (*node_forget)(op_store_t *store, const char *id, double forget_after_s, op_error_t *err);
  /* only_id: NULL for any claimable task, else that one alone (limit 1) */
  int (*tasks_claim)(op_store_t *store, const char *node_id, double lease_s, double aging_s, int limit,
                     const char *only_id, op_task_row_t **rows, size_t *n, op_error_t *err);
  int (*task_hold)(op_store_t *store, const char *task_id, const char *node_id, int claim, op_error_t *err);
  int (*leases_renew)(op_store_t *store, const char *node_id, double lease_s, op_error_t *err);
  int (*leases_release)(op_store_t *store, const char *node_id, op_error_t *err);
  int (*task_cancel_request)(op_store_t *store, const char *task_id, op_error_t *err);
  int (*listen)(op_store_t *store, op_error_t *err); /**< NULL: no news; the poll finds new work */
  int (*notify)(op_store_t *store, op_error_t *err);
  int (*notified)(op_store_t *store);
  int (*unreachable)(const op_store_t *store); /**< NULL: the store is never out of reach (a local file) */
  int keeps_blobs; /**< blobs live in the database; else blob_put and blob_get see local files */
  int (*blob_put)(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err);
  int (*blob_get)(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err);
} op_store_ops_t;

/** What every connection has; an implementation's struct starts with it. */
struct op_store_s {
  const op_store_ops_t *ops;
  int schema_version;  /**< set by the implementation's migrations */
  int tx_depth;        /**< transactions nest: only the outermost one commits */
  int tx_failed;       /**< an inner part failed: the outermost rolls back */
  unsigned fail_every; /**< a test's fault: every Nth write statement fails (0 = never) */
  unsigned writes;     /**< write statements run, for fail_every */
};

/** Whether the write statement about to run should fail (the test's fault); counts it. */
int op__store_fault(op_store_t *store);

/** Opens the SQLite database file at path (sqlite_open.c). */
int op__sqlite_open(const char *path, op_store_t **store, op_error_t *err);

/** Opens a PostgreSQL connection from a libpq URL (postgres.c). */
int op__postgres_open(const char *url, op_store_t **store, op_error_t *err);

#endif
