/*
 * sqlite_nodes.c: the nodes table on SQLite (see store.h): the servers that
 * share the store, each row written by its own heartbeat.
 *
 * Times are this machine's clock, which every user of an SQLite file shares;
 * ages are computed in the query against the time bound as ?1, the same way
 * for every row. These statements run a few times a minute, so each one is
 * prepared for its call and finalized after it, rather than kept in the
 * connection's cache (sqlite.c).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/sqlite_internal.h"

#define NODE_COLS "id, host, started_at, heartbeat_at, ?1 - heartbeat_at, draining, workers, pages_running, memory"

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies a text column into a fixed-size field, cut short at a UTF-8
 * character boundary when it does not fit; NULL reads as "". */
static void read_text(sqlite3_stmt *st, int col, char *dst, size_t size) {
  const char *s = (const char *)sqlite3_column_text(st, col);
  size_t n = s ? (size_t)sqlite3_column_bytes(st, col) : 0;
  if (n >= size) {
    n = size - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
  }
  if (n > 0)
    memcpy(dst, s, n);
  dst[n] = '\0';
}

/* Binds a fixed-size field: never reads past its end, even without a NUL. */
static int bind_field(sqlite3_stmt *st, int idx, const char *field, size_t size) {
  return sqlite3_bind_text(st, idx, field, (int)strnlen(field, size), SQLITE_TRANSIENT);
}

/* Steps a bound write statement once, unless the test's fault picks it, and finalizes it. */
static int run_write(sq_store_t *store, sqlite3_stmt *st, int rc, const char *what, op_error_t *err) {
  if (rc == SQLITE_OK)
    rc = op__store_fault(&store->base) ? SQLITE_IOERR : sqlite3_step(st);
  int ret = rc == SQLITE_DONE ? 0 : op__sqlite_error(store, rc, what, err);
  sqlite3_finalize(st);
  return ret;
}

static int prepare(sq_store_t *store, const char *sql, sqlite3_stmt **st, const char *what, op_error_t *err) {
  int rc = sqlite3_prepare_v2(store->db, sql, -1, st, NULL);
  return rc == SQLITE_OK ? 0 : op__sqlite_error(store, rc, what, err);
}

int op__sqlite_node_beat(op_store_t *base, const op_node_row_t *node, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  /* A new row starts at node->started_at, or now; an existing one keeps its start. */
  int ret = prepare(store,
                    "INSERT INTO nodes (id, host, started_at, heartbeat_at, draining, workers, pages_running, memory) "
                    "VALUES (?1, ?2, CASE WHEN ?3 > 0 THEN ?3 ELSE ?4 END, ?4, ?5, ?6, ?7, ?8) "
                    "ON CONFLICT (id) DO UPDATE SET host = excluded.host, heartbeat_at = excluded.heartbeat_at, "
                    "draining = excluded.draining, workers = excluded.workers, "
                    "pages_running = excluded.pages_running, memory = excluded.memory",
                    &st, "writing the node's heartbeat", err);
  if (ret < 0)
    return ret;
  int rc = bind_field(st, 1, node->id, sizeof node->id);
  rc = rc ? rc : bind_field(st, 2, node->host, sizeof node->host);
  rc = rc ? rc : sqlite3_bind_double(st, 3, node->started_at);
  rc = rc ? rc : sqlite3_bind_double(st, 4, now_unix());
  rc = rc ? rc : sqlite3_bind_int(st, 5, node->draining ? 1 : 0);
  rc = rc ? rc : sqlite3_bind_int(st, 6, node->workers);
  rc = rc ? rc : sqlite3_bind_int(st, 7, node->pages_running);
  rc = rc ? rc
          : (node->memory[0] ? bind_field(st, 8, node->memory, sizeof node->memory)
                             : sqlite3_bind_text(st, 8, "{}", -1, SQLITE_STATIC));
  return run_write(store, st, rc, "writing the node's heartbeat", err);
}

int op__sqlite_nodes(op_store_t *base, op_node_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  op_node_row_t *out = NULL;
  size_t count = 0, cap = 0;
  *rows = NULL;
  *n = 0;
  int ret = prepare(store, "SELECT " NODE_COLS " FROM nodes ORDER BY started_at, id", &st, "reading the nodes", err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_double(st, 1, now_unix());
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      op_node_row_t *grown = realloc(out, ncap * sizeof *out);
      if (grown == NULL) {
        ret = op_error_set(err, OP_ENOMEM, NULL, "reading the nodes: out of memory");
        goto out;
      }
      out = grown;
      cap = ncap;
    }
    op_node_row_t *r = &out[count++];
    memset(r, 0, sizeof *r);
    read_text(st, 0, r->id, sizeof r->id);
    read_text(st, 1, r->host, sizeof r->host);
    r->started_at = sqlite3_column_double(st, 2);
    r->heartbeat_at = sqlite3_column_double(st, 3);
    r->age_s = sqlite3_column_double(st, 4);
    r->draining = sqlite3_column_int(st, 5);
    r->workers = sqlite3_column_int(st, 6);
    r->pages_running = sqlite3_column_int(st, 7);
    read_text(st, 8, r->memory, sizeof r->memory);
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "reading the nodes", err);
out:
  sqlite3_finalize(st);
  if (ret < 0) {
    free(out);
    return ret;
  }
  *rows = out;
  *n = count;
  return 0;
}

int op__sqlite_node_forget(op_store_t *base, const char *id, double forget_after_s, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  /* id = NULL is never true: no id forgets only the silent rows. */
  int ret = prepare(store, "DELETE FROM nodes WHERE id = ?1 OR (?2 > 0 AND heartbeat_at < ?3 - ?2)", &st,
                    "forgetting nodes", err);
  if (ret < 0)
    return ret;
  int rc = id != NULL && id[0] ? sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, 1);
  rc = rc ? rc : sqlite3_bind_double(st, 2, forget_after_s);
  rc = rc ? rc : sqlite3_bind_double(st, 3, now_unix());
  return run_write(store, st, rc, "forgetting nodes", err);
}
