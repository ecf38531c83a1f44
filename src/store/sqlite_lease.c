/*
 * sqlite_lease.c: leases on SQLite (see store.h). One machine uses an SQLite
 * file, so one node holds its tasks; the calls are the same as PostgreSQL's
 * so that the core never asks which store it has. Times are this machine's
 * clock, bound as a parameter. SQLite writers take turns on the whole
 * database, so a claim needs no row locks; nothing here listens or notifies
 * (the core's poll, and its own wake-up on a local submission, find new work).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/sqlite_internal.h"

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int prepare(sq_store_t *store, const char *sql, sqlite3_stmt **st, const char *what, op_error_t *err) {
  int rc = sqlite3_prepare_v2(store->db, sql, -1, st, NULL);
  return rc == SQLITE_OK ? 0 : op__sqlite_error(store, rc, what, err);
}

/* Steps a bound write once, unless the test's fault picks it; *changed: rows it changed. */
static int run_write(sq_store_t *store, sqlite3_stmt *st, int rc, int *changed, const char *what, op_error_t *err) {
  if (rc == SQLITE_OK)
    rc = op__store_fault(&store->base) ? SQLITE_IOERR : sqlite3_step(st);
  int ret = rc == SQLITE_DONE ? 0 : op__sqlite_error(store, rc, what, err);
  if (changed != NULL)
    *changed = ret == 0 ? sqlite3_changes(store->db) : 0;
  sqlite3_finalize(st);
  return ret;
}

int op__sqlite_tasks_claim(op_store_t *base, const char *node_id, double lease_s, double aging_s, int limit,
                           const char *only_id, op_task_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = prepare(store,
                    "UPDATE tasks SET node_id = ?1, lease_until = ?2 + ?3, claim = claim + 1 "
                    "WHERE id IN (SELECT id FROM tasks WHERE status IN ('queued', 'running') "
                    "AND (node_id = '' OR (node_id <> ?1 AND lease_until < ?2)) AND (?5 IS NULL OR id = ?5) "
                    "ORDER BY priority + CASE WHEN ?6 > 0 THEN max(0, ?2 - created_at) / ?6 ELSE 0 END DESC, "
                    "created_at, id LIMIT ?4) RETURNING " TASK_COLS,
                    &st, "claiming tasks", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_text(st, 1, node_id, -1, SQLITE_TRANSIENT);
  rc = rc ? rc : sqlite3_bind_double(st, 2, now_unix());
  rc = rc ? rc : sqlite3_bind_double(st, 3, lease_s);
  rc = rc ? rc : sqlite3_bind_int(st, 4, limit);
  rc = rc ? rc : (only_id ? sqlite3_bind_text(st, 5, only_id, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, 5));
  rc = rc ? rc : sqlite3_bind_double(st, 6, aging_s);
  if (rc != SQLITE_OK)
    ret = op__sqlite_error(store, rc, "claiming tasks", err);
  else
    ret = op__sqlite_collect_tasks(store, st, rows, n, err);
  sqlite3_finalize(st);
  return ret;
}

int op__sqlite_task_hold(op_store_t *base, const char *task_id, const char *node_id, int claim, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = prepare(store, "SELECT node_id, claim FROM tasks WHERE id = ?1", &st, "checking the task's lease", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_text(st, 1, task_id, -1, SQLITE_TRANSIENT);
  rc = rc ? rc : sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no task %s", task_id);
  } else if (rc != SQLITE_ROW) {
    ret = op__sqlite_error(store, rc, "checking the task's lease", err);
  } else {
    const char *holder = (const char *)sqlite3_column_text(st, 0);
    int now = sqlite3_column_int(st, 1);
    if (holder == NULL || strcmp(holder, node_id) != 0 || now != claim)
      ret = op_error_set(err, OP_ESTALE, "lease_lost", "task %s is held by node %.32s under claim %d now, not this one",
                         task_id, holder ? holder : "", now);
  }
  sqlite3_finalize(st);
  return ret;
}

int op__sqlite_leases_renew(op_store_t *base, const char *node_id, double lease_s, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret =
      prepare(store, "UPDATE tasks SET lease_until = ?2 + ?3 WHERE node_id = ?1 AND status IN ('queued', 'running')",
              &st, "renewing the node's leases", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_text(st, 1, node_id, -1, SQLITE_TRANSIENT);
  rc = rc ? rc : sqlite3_bind_double(st, 2, now_unix());
  rc = rc ? rc : sqlite3_bind_double(st, 3, lease_s);
  return run_write(store, st, rc, NULL, "renewing the node's leases", err);
}

int op__sqlite_leases_release(op_store_t *base, const char *node_id, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = prepare(store,
                    "UPDATE tasks SET node_id = '', lease_until = 0 WHERE node_id = ?1 AND status IN "
                    "('queued', 'running')",
                    &st, "letting go of the node's tasks", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_text(st, 1, node_id, -1, SQLITE_TRANSIENT);
  return run_write(store, st, rc, NULL, "letting go of the node's tasks", err);
}

int op__sqlite_task_cancel_request(op_store_t *base, const char *task_id, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int changed = 0;
  int ret = prepare(store, "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1 AND status IN ('queued', 'running')",
                    &st, "requesting a cancel", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_text(st, 1, task_id, -1, SQLITE_TRANSIENT);
  ret = run_write(store, st, rc, &changed, "requesting a cancel", err);
  if (ret == 0 && changed == 0)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no unfinished task %s", task_id);
  return ret;
}
