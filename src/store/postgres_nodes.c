/*
 * postgres_nodes.c: the nodes table on PostgreSQL (see store.h): the servers
 * that share the database, each row written by its own heartbeat.
 *
 * Every time is the database's clock, so that nodes whose own clocks disagree
 * still agree on who is alive: a heartbeat is stamped by the database, and an
 * age is computed in the query. These statements run a few times a minute,
 * so they are sent unnamed (PQexecParams) rather than prepared on the
 * connection as postgres.c's are; values are bound, never formatted into SQL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_internal.h"

/* The database's clock in unix seconds, as postgres.c reads it. */
#define DB_NOW "extract(epoch from clock_timestamp())::double precision"

/* A fixed-size field as a parameter: at most size - 1 bytes, and ASCII, since
 * the server refuses a byte that is not UTF-8 (ids, host names and the memory
 * JSON are ASCII; anything else becomes '?'). */
static const char *ascii_param(const char *field, size_t size, char *buf) {
  size_t n = strnlen(field, size);
  if (n >= size)
    n = size - 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)field[i] < 0x80 ? field[i] : '?';
  buf[n] = '\0';
  return buf;
}

/*
 * op__postgres_exec_params. As postgres.c's statements: a connection lost earlier is
 * reset first when no transaction is open on it, a write picked by the test's
 * fault fails as an I/O error would, and a read that found the connection
 * gone outside a transaction is tried once more on a fresh session.
 */
int op__postgres_exec_params(pg_store_t *store, const char *sql, int n, const char *const *values, int writes,
                             PGresult **out, const char *what, op_error_t *err) {
  *out = NULL;
  for (int attempt = 0;; attempt++) {
    store->sqlstate[0] = '\0';
    int ret = op__postgres_ready(store, store->base.tx_depth == 0, err);
    if (ret == 0 && writes && op__store_fault(&store->base))
      return op_error_set(err, OP_EIO, "internal", "%s: I/O error (a test's fault)", what);
    if (ret == 0) {
      PGresult *res = PQexecParams(store->conn, sql, n, NULL, values, NULL, NULL, 0);
      ExecStatusType status = PQresultStatus(res);
      if (res != NULL && (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)) {
        *out = res;
        return 0;
      }
      ret = op__postgres_error(store, res, what, err);
      PQclear(res);
    }
    if (writes || attempt > 0 || store->base.tx_depth > 0 || PQstatus(store->conn) != CONNECTION_BAD)
      return ret;
  }
}

int op__postgres_node_beat(op_store_t *base, const op_node_row_t *node, op_error_t *err) {
  char id[sizeof node->id], host[sizeof node->host], memory[sizeof node->memory];
  char started[32], draining[16], workers[16], running[16];
  snprintf(started, sizeof started, "%.17g", node->started_at);
  snprintf(draining, sizeof draining, "%d", node->draining ? 1 : 0);
  snprintf(workers, sizeof workers, "%d", node->workers);
  snprintf(running, sizeof running, "%d", node->pages_running);
  const char *values[] = {ascii_param(node->id, sizeof node->id, id),
                          ascii_param(node->host, sizeof node->host, host),
                          started,
                          draining,
                          workers,
                          running,
                          node->memory[0] ? ascii_param(node->memory, sizeof node->memory, memory) : "{}"};
  /* A new row starts at node->started_at, or now; an existing one keeps its start. */
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(
      pg(base),
      "INSERT INTO nodes (id, host, started_at, heartbeat_at, draining, workers, pages_running, "
      "memory) VALUES ($1, $2, COALESCE(NULLIF($3::double precision, 0), " DB_NOW "), " DB_NOW ", $4, $5, $6, $7) "
      "ON CONFLICT (id) DO UPDATE SET host = excluded.host, heartbeat_at = excluded.heartbeat_at, "
      "draining = excluded.draining, workers = excluded.workers, "
      "pages_running = excluded.pages_running, memory = excluded.memory",
      7, values, 1, &res, "writing the node's heartbeat", err);
  PQclear(res);
  return ret;
}

int op__postgres_nodes(op_store_t *base, op_node_row_t **rows, size_t *n, op_error_t *err) {
  PGresult *res = NULL;
  *rows = NULL;
  *n = 0;
  int ret = op__postgres_exec_params(pg(base),
                                     "SELECT id, host, started_at, heartbeat_at, " DB_NOW
                                     " - heartbeat_at, draining, workers, "
                                     "pages_running, memory FROM nodes ORDER BY started_at, id",
                                     0, NULL, 0, &res, "reading the nodes", err);
  if (ret < 0)
    return ret;
  int count = PQntuples(res);
  op_node_row_t *out = count > 0 ? calloc((size_t)count, sizeof *out) : NULL;
  if (count > 0 && out == NULL)
    ret = op_error_set(err, OP_ENOMEM, NULL, "reading the nodes: out of memory");
  for (int r = 0; out != NULL && r < count; r++) {
    op_node_row_t *row = &out[r];
    op__postgres_get_text(res, r, 0, row->id, sizeof row->id);
    op__postgres_get_text(res, r, 1, row->host, sizeof row->host);
    row->started_at = strtod(PQgetvalue(res, r, 2), NULL);
    row->heartbeat_at = strtod(PQgetvalue(res, r, 3), NULL);
    row->age_s = strtod(PQgetvalue(res, r, 4), NULL);
    row->draining = atoi(PQgetvalue(res, r, 5));
    row->workers = atoi(PQgetvalue(res, r, 6));
    row->pages_running = atoi(PQgetvalue(res, r, 7));
    op__postgres_get_text(res, r, 8, row->memory, sizeof row->memory);
  }
  PQclear(res);
  if (ret == 0) {
    *rows = out;
    *n = (size_t)count;
  }
  return ret;
}

int op__postgres_node_forget(op_store_t *base, const char *id, double forget_after_s, op_error_t *err) {
  char key[40], after[32];
  snprintf(after, sizeof after, "%.17g", forget_after_s);
  /* No id (SQL NULL) forgets only the silent rows: id = NULL is never true. */
  const char *values[] = {id != NULL && id[0] ? ascii_param(id, sizeof key, key) : NULL, after};
  PGresult *res = NULL;
  int ret = op__postgres_exec_params(
      pg(base),
      "DELETE FROM nodes WHERE id = $1::text OR ($2::double precision > 0 AND heartbeat_at < " DB_NOW
      " - $2::double precision)",
      2, values, 1, &res, "forgetting nodes", err);
  PQclear(res);
  return ret;
}
