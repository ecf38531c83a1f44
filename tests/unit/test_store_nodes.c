/*
 * test_store_nodes.c: the store's nodes (op_store_node_beat, op_store_nodes,
 * op_store_node_forget) and their leases on tasks (op_store_tasks_claim and
 * the calls around it) on SQLite and, when OCRPOOL_TEST_PG names a running
 * throwaway cluster (its directory's file "url"), on PostgreSQL in a fresh
 * database of its own: the upsert keeps a row's start, ages come from the
 * store's clock, forgetting takes one id and the silent rows, and the test's
 * fault fails the writes; claims go in priority order, never to two nodes,
 * a lapsed lease lets another node claim and refuses the old holder, and on
 * PostgreSQL a claim skips rows another connection holds and a NOTIFY
 * reaches a listener.
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

static op_task_row_t make_task(const char *id, int priority, double created_at) {
  op_task_row_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.id, sizeof t.id, "%s", id);
  t.priority = priority;
  t.created_at = created_at;
  snprintf(t.options, sizeof t.options, "{}");
  return t;
}

/* The ids of rows, sorted, joined by ','. */
static const char *ids_of(const op_task_row_t *rows, size_t n, char *buf, size_t size) {
  char sorted[16][40];
  size_t k = n < 16 ? n : 16;
  for (size_t i = 0; i < k; i++)
    snprintf(sorted[i], sizeof sorted[i], "%s", rows[i].id);
  for (size_t i = 1; i < k; i++)
    for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
      char tmp[40];
      memcpy(tmp, sorted[j], 40);
      memcpy(sorted[j], sorted[j - 1], 40);
      memcpy(sorted[j - 1], tmp, 40);
    }
  buf[0] = '\0';
  for (size_t i = 0; i < k; i++)
    snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? "," : "", sorted[i]);
  return buf;
}

static int claim_ids(op_store_t *s, const char *node, double lease, int limit, char *buf, size_t size) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  int rc = op_store_tasks_claim(s, node, lease, 0, limit, &rows, &n, &e);
  if (rc < 0)
    fprintf(stderr, "claim: %s\n", e.message);
  ids_of(rows, n, buf, size);
  free(rows);
  return rc;
}

static int hold(op_store_t *s, const char *id, const char *node, int claim) {
  op_error_t e;
  int rc = op_store_begin(s, &e);
  if (rc == 0)
    rc = op_store_end(s, op_store_task_hold(s, id, node, claim, &e), &e);
  return rc;
}

static void test_leases(const char *where) {
  op_store_t *s = NULL, *other = NULL;
  op_error_t e;
  if (op_store_open(where, &s, &e) != 0 || op_store_open(where, &other, &e) != 0) {
    fprintf(stderr, "open %s: %s\n", where, e.message);
    CHECK(!"the store opens twice");
    op_store_close(s);
    return;
  }
  int pg = strcmp(op_store_kind(s), "postgresql") == 0;
  const op_task_row_t tasks[] = {make_task("t1", 0, 100), make_task("t2", 5, 200), make_task("t3", 0, 50),
                                 make_task("t4", 0, 300)};
  for (size_t i = 0; i < 4; i++)
    CHECK(op_store_task_insert(s, &tasks[i], &e) == 0);
  op_task_row_t done = make_task("t4", 0, 300);
  done.status = OP_TASK_SUCCEEDED;
  CHECK(op_store_task_update(s, &done, &e) == 0);
  char got[256];

  /* Highest priority first, then oldest; a node claims only what no one holds; finished tasks never. */
  CHECK(claim_ids(s, "na", 30, 2, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "t2,t3");
  CHECK(claim_ids(other, "nb", 30, 10, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "t1");
  CHECK(claim_ids(s, "na", 30, 10, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "");
  op_task_row_t t;
  CHECK(op_store_task_get(s, "t2", &t, &e) == 0 && strcmp(t.node, "na") == 0 && t.claim == 1);
  CHECK(t.lease_until > t.created_at);

  /* A task's update (every field it writes) leaves the lease alone. */
  op_task_row_t plain = make_task("t2", 5, 200);
  plain.status = OP_TASK_RUNNING;
  CHECK(op_store_task_update(s, &plain, &e) == 0);
  CHECK(op_store_task_get(s, "t2", &t, &e) == 0 && strcmp(t.node, "na") == 0 && t.claim == 1);

  /* The holder under its claim may write; anyone else, or an old claim, may not. */
  CHECK(hold(s, "t2", "na", 1) == 0);
  CHECK(hold(s, "t2", "nb", 1) == OP_ESTALE);
  CHECK(hold(s, "t2", "na", 2) == OP_ESTALE);
  CHECK(hold(s, "nope", "na", 1) == OP_ENOTFOUND);

  /* A lease that lapsed (renewed into the past) lets another node claim: the claim number rises, the old holder is
   * refused. */
  CHECK(op_store_leases_renew(s, "na", -1, &e) == 0);
  CHECK(claim_ids(other, "nb", 30, 10, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "t2,t3");
  CHECK(op_store_task_get(s, "t2", &t, &e) == 0 && strcmp(t.node, "nb") == 0 && t.claim == 2);
  CHECK(hold(s, "t2", "na", 1) == OP_ESTALE);
  CHECK(hold(other, "t2", "nb", 2) == 0);
  /* A renewed lease keeps its tasks: no one claims them. */
  CHECK(op_store_leases_renew(other, "nb", 30, &e) == 0);
  CHECK(claim_ids(s, "na", 30, 10, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "");

  /* Let go (a clean stop): any node claims them at once. */
  CHECK(op_store_leases_release(other, "nb", &e) == 0);
  CHECK(op_store_task_get(s, "t1", &t, &e) == 0 && t.node[0] == '\0');
  CHECK(claim_ids(s, "na", 30, 10, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "t1,t2,t3");

  /* One task by its id: not while it is held; once the lease lapsed, that one alone. */
  CHECK(op_store_task_claim(other, "t3", "nb", 30, &t, &e) == OP_ENOTFOUND);
  CHECK(op_store_leases_renew(s, "na", -1, &e) == 0);
  CHECK(op_store_task_claim(other, "t3", "nb", 30, &t, &e) == 0 && strcmp(t.id, "t3") == 0 &&
        strcmp(t.node, "nb") == 0);
  CHECK(op_store_task_get(s, "t1", &t, &e) == 0 && strcmp(t.node, "na") == 0);
  CHECK(op_store_task_claim(other, "t4", "nb", 30, &t, &e) == OP_ENOTFOUND); /* finished */
  CHECK(op_store_leases_renew(s, "na", 30, &e) == 0);

  /* A cancel request is stored for the holder to see; a finished or unknown task has none to take. */
  CHECK(op_store_task_cancel_request(other, "t1", &e) == 0);
  CHECK(op_store_task_get(s, "t1", &t, &e) == 0 && t.cancel_requested == 1);
  CHECK(op_store_task_cancel_request(other, "t4", &e) == OP_ENOTFOUND);
  CHECK(op_store_task_cancel_request(other, "nope", &e) == OP_ENOTFOUND);

  if (pg) {
    /* SKIP LOCKED: a task being claimed (or held) in another transaction is
     * skipped, not waited for, and never claimed twice. */
    CHECK(op_store_leases_release(s, "na", &e) == 0 && op_store_leases_release(s, "nb", &e) == 0);
    CHECK(op_store_begin(s, &e) == 0);
    CHECK(claim_ids(s, "na", 30, 1, got, sizeof got) == 0);
    CHECK_STR_EQ(got, "t2");
    CHECK(claim_ids(other, "nb", 30, 10, got, sizeof got) == 0);
    CHECK_STR_EQ(got, "t1,t3");
    CHECK(op_store_end(s, 0, &e) == 0);
    CHECK(op_store_task_get(s, "t2", &t, &e) == 0 && strcmp(t.node, "na") == 0);

    /* News of work: one connection listens, another notifies. */
    CHECK(op_store_listen(other, &e) == 0);
    CHECK(op_store_notified(other) == 0);
    CHECK(op_store_notify(s, &e) == 0);
    int heard = 0;
    for (int i = 0; i < 500 && !heard; i++) { /* up to 5 s: delivery is asynchronous */
      heard = op_store_notified(other);
      if (!heard)
        sleep_ms(10);
    }
    CHECK(heard);
    CHECK(op_store_notified(other) == 0); /* consumed */
  } else {
    /* One node on a file: nothing listens, nothing is heard, and neither fails. */
    CHECK(op_store_listen(other, &e) == 0 && op_store_notify(s, &e) == 0 && op_store_notified(other) == 0);
  }

  /* Aging: a task gains a level for every aging_s it has waited, so an old
   * task of priority 0 goes before a new one of priority 9 once it has waited
   * more than 9 of them; without aging, priority first. */
  const char *old_ids[] = {"t1", "t2", "t3"};
  for (size_t i = 0; i < 3; i++) {
    op_task_row_t end = make_task(old_ids[i], 0, 1);
    end.status = OP_TASK_SUCCEEDED;
    CHECK(op_store_task_update(s, &end, &e) == 0);
  }
  double now = (double)time(NULL);
  op_task_row_t aged = make_task("a-old", 0, now - 100), fresh = make_task("a-new", 9, now);
  CHECK(op_store_task_insert(s, &aged, &e) == 0 && op_store_task_insert(s, &fresh, &e) == 0);
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(claim_ids(s, "na", 30, 1, got, sizeof got) == 0);
  CHECK_STR_EQ(got, "a-new");
  CHECK(op_store_end(s, -1, &e) == -1); /* rolled back: both claimable again */
  op_task_row_t *rows = NULL;
  size_t n = 0;
  CHECK(op_store_tasks_claim(s, "na", 30, 10, 1, &rows, &n, &e) == 0 && n == 1 && strcmp(rows[0].id, "a-old") == 0);
  free(rows);

  /* The test's fault fails the lease writes as a disk error would. */
  op_store_test_fail_every(s, 1);
  CHECK(op_store_leases_renew(s, "na", 30, &e) < 0);
  CHECK(op_store_leases_release(s, "na", &e) < 0);
  op_store_test_fail_every(s, 0);
  op_store_close(other);
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
    test_leases(db_url);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    PQclear(PQexec(admin, sql));
  }
  PQfinish(admin);
}

int main(void) {
  char dir[] = "/tmp/ocrpool-nodes-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  test_nodes(dir);
  test_leases(dir);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  run_pg();
  return CHECK_DONE();
}
