/*
 * postgres_lease.c: leases and waking on PostgreSQL (see store.h): which node
 * runs a task, and news of new work for the others.
 *
 * A claim is one statement: it picks the claimable tasks in priority order
 * with FOR UPDATE SKIP LOCKED, so nodes claiming at once each get other
 * tasks and none waits for another, and stamps holder, lease and claim
 * number on them. Every time is the database's clock, so nodes whose own
 * clocks disagree still agree on whose lease has lapsed. A holder's writes
 * first lock the task's row and check their claim (task_hold): a node that
 * was paused past its lease finds the task claimed by another and records
 * nothing. News of new work is LISTEN/NOTIFY on one channel: a NOTIFY inside
 * the submitting transaction is delivered at its commit, once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_internal.h"

#define DB_NOW "extract(epoch from clock_timestamp())::double precision"

/* Ids and node ids are ASCII made by the server; anything else becomes '?'. */
static const char *ascii(const char *s, char *buf, size_t size) {
  size_t n = 0;
  for (; s[n] && n + 1 < size; n++)
    buf[n] = (unsigned char)s[n] < 0x80 ? s[n] : '?';
  buf[n] = '\0';
  return buf;
}

int op__postgres_tasks_claim(op_store_t *base, const char *node_id, double lease_s, double aging_s, int limit,
                             const char *only_id, op_task_row_t **rows, size_t *n, op_error_t *err) {
  char node[40], lease[32], lim[16], id[40], aging[32];
  snprintf(lease, sizeof lease, "%.17g", lease_s);
  snprintf(aging, sizeof aging, "%.17g", aging_s);
  snprintf(lim, sizeof lim, "%d", limit);
  const char *values[] = {ascii(node_id, node, sizeof node), lease, lim, only_id ? ascii(only_id, id, sizeof id) : NULL,
                          aging};
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(
      pg(base),
      "UPDATE tasks SET node_id = $1, lease_until = " DB_NOW " + $2::double precision, claim = claim + 1 "
      "WHERE id IN (SELECT id FROM tasks WHERE status IN ('queued', 'running') "
      "AND (node_id = '' OR (node_id <> $1 AND lease_until < " DB_NOW ")) AND ($4::text IS NULL OR id = $4::text) "
      "ORDER BY priority + CASE WHEN $5::double precision > 0 THEN greatest(0, " DB_NOW " - created_at) / "
      "$5::double precision ELSE 0 END DESC, created_at, id LIMIT $3::integer FOR UPDATE SKIP LOCKED) "
      "RETURNING " TASK_COLS,
      5, values, 1, &res, "claiming tasks", err);
  if (ret < 0)
    return ret;
  int count = PQntuples(res);
  op_task_row_t *out = count > 0 ? calloc((size_t)count, sizeof *out) : NULL;
  if (count > 0 && out == NULL)
    ret = op_error_set(err, OP_ENOMEM, NULL, "claiming tasks: out of memory");
  for (int r = 0; out != NULL && r < count; r++)
    op__postgres_read_task(res, r, &out[r]);
  PQclear(res);
  if (ret == 0) {
    *rows = out;
    *n = (size_t)count;
  }
  return ret;
}

int op__postgres_task_hold(op_store_t *base, const char *task_id, const char *node_id, int claim, op_error_t *err) {
  char id[40], node[40];
  const char *values[] = {ascii(task_id, id, sizeof id)};
  PGresult *res = NULL;
  /* FOR NO KEY UPDATE: the row stays locked until the holder's transaction
   * ends, so a claim skips it meanwhile; events and pages may still refer to it. */
  int ret = op__postgres_exec_params(pg(base), "SELECT node_id, claim FROM tasks WHERE id = $1 FOR NO KEY UPDATE", 1,
                                     values, 0, &res, "checking the task's lease", err);
  if (ret < 0)
    return ret;
  if (PQntuples(res) != 1)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no task %s", id);
  else if (strcmp(PQgetvalue(res, 0, 0), ascii(node_id, node, sizeof node)) != 0 ||
           atoi(PQgetvalue(res, 0, 1)) != claim)
    ret = op_error_set(err, OP_ESTALE, "lease_lost", "task %s is held by node %.32s under claim %d now, not this one",
                       id, PQgetvalue(res, 0, 0), atoi(PQgetvalue(res, 0, 1)));
  PQclear(res);
  return ret;
}

int op__postgres_leases_renew(op_store_t *base, const char *node_id, double lease_s, op_error_t *err) {
  char node[40], lease[32];
  snprintf(lease, sizeof lease, "%.17g", lease_s);
  const char *values[] = {ascii(node_id, node, sizeof node), lease};
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(pg(base),
                                     "UPDATE tasks SET lease_until = " DB_NOW " + $2::double precision "
                                     "WHERE node_id = $1 AND status IN ('queued', 'running')",
                                     2, values, 1, &res, "renewing the node's leases", err);
  PQclear(res);
  return ret;
}

int op__postgres_leases_release(op_store_t *base, const char *node_id, op_error_t *err) {
  char node[40];
  const char *values[] = {ascii(node_id, node, sizeof node)};
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(pg(base),
                                     "UPDATE tasks SET node_id = '', lease_until = 0 "
                                     "WHERE node_id = $1 AND status IN ('queued', 'running')",
                                     1, values, 1, &res, "letting go of the node's tasks", err);
  PQclear(res);
  /* The others claim them at their next poll; tell them now. */
  return ret < 0 ? ret : op__postgres_notify(base, err);
}

int op__postgres_task_cancel_request(op_store_t *base, const char *task_id, op_error_t *err) {
  char id[40];
  const char *values[] = {ascii(task_id, id, sizeof id)};
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(pg(base),
                                     "UPDATE tasks SET cancel_requested = 1 WHERE id = $1 AND status IN "
                                     "('queued', 'running')",
                                     1, values, 1, &res, "requesting a cancel", err);
  if (ret == 0 && atoi(PQcmdTuples(res)) == 0)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no unfinished task %s", id);
  PQclear(res);
  return ret < 0 ? ret : op__postgres_notify(base, err);
}

int op__postgres_listen(op_store_t *base, op_error_t *err) {
  pg_store_t *store = pg(base);
  store->listening = 1; /* from now on every new session listens too */
  int ret = op__postgres_ready(store, base->tx_depth == 0, err);
  return ret < 0 ? ret : op__postgres_exec(store, "LISTEN " OP__PG_CHANNEL, "listening for new work", NULL, err);
}

int op__postgres_notify(op_store_t *base, op_error_t *err) {
  /* Outside a transaction it is delivered at once; inside, at the commit, and
   * PostgreSQL folds equal notifications of one transaction into one. */
  return op__postgres_exec(pg(base), "NOTIFY " OP__PG_CHANNEL, "telling the nodes of new work", NULL, err);
}

int op__postgres_notified(op_store_t *base) {
  pg_store_t *store = pg(base);
  if (store->conn == NULL || PQstatus(store->conn) != CONNECTION_OK || !PQconsumeInput(store->conn))
    return 0;
  int any = 0;
  PGnotify *n;
  while ((n = PQnotifies(store->conn)) != NULL) {
    any = 1;
    PQfreemem(n);
  }
  return any;
}
