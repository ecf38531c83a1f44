/*
 * test_store_nodes.c: the store's nodes (op_store_node_beat, op_store_nodes,
 * op_store_node_forget) on SQLite and, when OCRPOOL_TEST_PG names a running
 * throwaway cluster (its directory's file "url"), on PostgreSQL in a fresh
 * database of its own: the upsert keeps a row's start, ages come from the
 * store's clock, forgetting takes one id and the silent rows, and the test's
 * fault fails the writes.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static op_node_row_t make_node(const char *id, double started_at) {
  op_node_row_t n;
  memset(&n, 0, sizeof n);
  snprintf(n.id, sizeof n.id, "%s", id);
  snprintf(n.host, sizeof n.host, "host-%s", id);
  n.started_at = started_at;
  n.workers = 4;
  snprintf(n.memory, sizeof n.memory, "{\"cpu\":{\"used_bytes\":1,\"budget_bytes\":2}}");
  return n;
}

/* The store's rows, by id (NULL when absent); *n their number. */
static const op_node_row_t *find(const op_node_row_t *rows, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(rows[i].id, id) == 0)
      return &rows[i];
  return NULL;
}

static void test_nodes(const char *where) {
  op_store_t *s = NULL;
  op_error_t e;
  if (op_store_open(where, &s, &e) != 0) {
    fprintf(stderr, "open %s: %s\n", where, e.message);
    CHECK(!"the store opens");
    return;
  }
  op_node_row_t *rows = NULL;
  size_t n = 99;
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 0);
  free(rows);

  /* A new row: started now when no start is given, the fields as written. */
  op_node_row_t a = make_node("a", 0);
  CHECK(op_store_node_beat(s, &a, &e) == 0);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 1);
  const op_node_row_t *r = find(rows, n, "a");
  CHECK(r != NULL && strcmp(r->host, "host-a") == 0 && r->workers == 4 && r->draining == 0);
  CHECK(r != NULL && r->started_at > 1e9 && r->started_at <= r->heartbeat_at && r->heartbeat_at - r->started_at < 1);
  CHECK(r != NULL && r->age_s >= 0 && r->age_s < 5);
  CHECK(r != NULL && strcmp(r->memory, a.memory) == 0);
  double started = r ? r->started_at : 0, beat = r ? r->heartbeat_at : 0;
  free(rows);

  /* Again: the start is kept, the heartbeat moves, the state is replaced. */
  sleep_ms(20);
  a.draining = 1;
  a.pages_running = 3;
  a.workers = 2;
  a.memory[0] = '\0'; /* none: "{}" */
  CHECK(op_store_node_beat(s, &a, &e) == 0);
  a.started_at = 12345; /* an existing row keeps its start whatever is given */
  CHECK(op_store_node_beat(s, &a, &e) == 0);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 1);
  r = find(rows, n, "a");
  CHECK(r != NULL && r->started_at == started && r->heartbeat_at > beat);
  CHECK(r != NULL && r->draining == 1 && r->pages_running == 3 && r->workers == 2 && strcmp(r->memory, "{}") == 0);
  free(rows);

  /* A row with a given start sorts by it (oldest first); a host without its NUL is never read past. */
  op_node_row_t b = make_node("b", 1000);
  memset(b.host, 'h', sizeof b.host);
  sleep_ms(1000);
  CHECK(op_store_node_beat(s, &b, &e) == 0);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 2);
  CHECK(n == 2 && strcmp(rows[0].id, "b") == 0 && rows[0].started_at == 1000 && strcmp(rows[1].id, "a") == 0);
  CHECK(n == 2 && strlen(rows[0].host) == sizeof rows[0].host - 1);
  /* Ages on the store's clock: a's last beat was a second ago, b's just now. */
  CHECK(n == 2 && rows[1].age_s > 0.9 && rows[1].age_s < 30 && rows[0].age_s < rows[1].age_s);
  free(rows);

  /* Forgetting: no id and no age forget nothing; silent rows go; then an id. */
  CHECK(op_store_node_forget(s, NULL, 0, &e) == 0);
  CHECK(op_store_node_forget(s, "", 0, &e) == 0);
  CHECK(op_store_node_forget(s, "nobody", 0, &e) == 0);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 2);
  free(rows);
  CHECK(op_store_node_forget(s, NULL, 0.5, &e) == 0); /* a is a second silent, b is not */
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 1 && strcmp(rows[0].id, "b") == 0);
  free(rows);

  /* The test's fault fails the writes, never the reads. */
  op_store_test_fail_every(s, 1);
  CHECK(op_store_node_beat(s, &a, &e) == OP_EIO);
  CHECK(op_store_node_forget(s, "b", 0, &e) == OP_EIO);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 1);
  free(rows);
  op_store_test_fail_every(s, 0);

  CHECK(op_store_node_forget(s, "b", 0, &e) == 0);
  CHECK(op_store_nodes(s, &rows, &n, &e) == 0 && n == 0);
  free(rows);
  op_store_close(s);
}

/* PostgreSQL: a database of its own on OCRPOOL_TEST_PG's cluster, dropped after. */
static void run_pg(void) {
  const char *dir = getenv("OCRPOOL_TEST_PG");
  if (dir == NULL || dir[0] == '\0') {
    printf("test_store_nodes: the PostgreSQL part is skipped: OCRPOOL_TEST_PG is not set\n");
    return;
  }
  char path[1024], url[1024] = "";
  snprintf(path, sizeof path, "%s/url", dir);
  FILE *f = fopen(path, "r");
  if (f == NULL || fgets(url, sizeof url, f) == NULL) {
    CHECK(!"OCRPOOL_TEST_PG names a directory with a url file");
    if (f != NULL)
      fclose(f);
    return;
  }
  fclose(f);
  url[strcspn(url, "\n")] = '\0';
  PGconn *admin = PQconnectdb(url);
  if (PQstatus(admin) != CONNECTION_OK) {
    fprintf(stderr, "%s: %s", url, PQerrorMessage(admin));
    CHECK(!"PostgreSQL named by OCRPOOL_TEST_PG is reachable");
    PQfinish(admin);
    return;
  }
  char db[64], sql[128], db_url[1200];
  snprintf(db, sizeof db, "ocrpool_unit_nodes_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  PGresult *res = PQexec(admin, sql);
  int made = PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  CHECK(made);
  if (made) {
    /* The cluster's URL names its maintenance database: the same URL with ours. */
    const char *q = strchr(url, '?');
    const char *slash = url;
    for (const char *p = url; *p && (q == NULL || p < q); p++)
      if (*p == '/')
        slash = p;
    snprintf(db_url, sizeof db_url, "%.*s/%s%s", (int)(slash - url), url, db, q ? q : "");
    test_nodes(db_url);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    PQclear(PQexec(admin, sql));
  }
  PQfinish(admin);
}

int main(void) {
  char dir[] = "/tmp/ocrpool-nodes-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  test_nodes(dir);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  run_pg();
  return CHECK_DONE();
}
