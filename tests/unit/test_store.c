/*
 * test_store.c: the store on real databases: every check that takes a store
 * runs on SQLite (in a temporary directory) and, when OCRPOOL_TEST_PG names a
 * running throwaway cluster (its directory's file "url"), on PostgreSQL in a
 * fresh database of its own. Then what is particular to each: SQLite's file
 * durability, PostgreSQL's migrations from several connections, reconnecting.
 */
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/task.h"
#include "store/store.h"

static char data_dir[64];
/* What the generic checks open: data_dir, or a PostgreSQL URL. */
static const char *store_where;

static void make_task(op_task_row_t *t, const char *id, const char *status, double created_at) {
  memset(t, 0, sizeof *t);
  snprintf(t->id, sizeof t->id, "%s", id);
  t->status = (op_task_status_t)op_task_status_parse(status);
  t->created_at = created_at;
  snprintf(t->input_type, sizeof t->input_type, "png");
  snprintf(t->options, sizeof t->options, "{}");
}

/* Field by field: bytes after a string's NUL are not part of the value. */
static int task_equal(const op_task_row_t *a, const op_task_row_t *b) {
  return strcmp(a->id, b->id) == 0 && a->status == b->status && a->priority == b->priority &&
         a->created_at == b->created_at && a->started_at == b->started_at && a->finished_at == b->finished_at &&
         a->pages_total == b->pages_total && a->pages_done == b->pages_done && a->attempts == b->attempts &&
         strcmp(a->device, b->device) == 0 && strcmp(a->worker, b->worker) == 0 &&
         a->estimated_memory_bytes == b->estimated_memory_bytes && a->peak_memory_bytes == b->peak_memory_bytes &&
         strcmp(a->failure_reason, b->failure_reason) == 0 && strcmp(a->error, b->error) == 0 &&
         strcmp(a->owner, b->owner) == 0 && strcmp(a->title, b->title) == 0 &&
         strcmp(a->input_type, b->input_type) == 0 && strcmp(a->options, b->options) == 0 &&
         a->cancel_requested == b->cancel_requested && a->resource_cleanup_completed == b->resource_cleanup_completed;
}

static int page_equal(const op_page_row_t *a, const op_page_row_t *b) {
  return a->index == b->index && strcmp(a->state, b->state) == 0 && a->attempts == b->attempts &&
         a->crash_attempts == b->crash_attempts && a->started_at == b->started_at && a->finished_at == b->finished_at &&
         a->estimated_memory_bytes == b->estimated_memory_bytes && a->peak_memory_bytes == b->peak_memory_bytes &&
         strcmp(a->error, b->error) == 0 && strcmp(a->reason, b->reason) == 0;
}

static op_store_t *open_store(void) {
  op_store_t *s = NULL;
  op_error_t e;
  int rc = op_store_open(store_where, &s, &e);
  if (rc != 0)
    fprintf(stderr, "open %s: %s\n", store_where, e.message);
  CHECK(rc == 0 && s != NULL);
  return s;
}

static void test_open_reopen(void) {
  op_store_t *s = open_store();
  int v = op_store_schema_version(s);
  CHECK(v >= 1);
  op_task_row_t t;
  make_task(&t, "reopen", "queued", 1.0);
  CHECK(op_store_task_insert(s, &t, NULL) == 0);
  op_store_close(s);
  s = open_store();
  CHECK(op_store_schema_version(s) == v);
  op_task_row_t got;
  CHECK(op_store_task_get(s, "reopen", &got, NULL) == 0);
  CHECK(got.status == OP_TASK_QUEUED);
  CHECK(op_store_task_delete(s, "reopen", NULL) == 0);
  op_store_close(s);
}

static void test_round_trip(op_store_t *s) {
  op_task_row_t t, got;
  make_task(&t, "0123456789abcdef0123456789abcdef", "queued", 1700000000.25);
  t.priority = 7;
  t.pages_total = 12;
  snprintf(t.owner, sizeof t.owner, "alice");
  snprintf(t.title, sizeof t.title, "scan \"1\" h\xc3\xa9.pdf");
  snprintf(t.input_type, sizeof t.input_type, "pdf");
  snprintf(t.options, sizeof t.options, "{\"model\":\"eng\",\"dpi\":300}");
  t.estimated_memory_bytes = INT64_C(5) << 32;
  op_error_t e;
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(op_store_task_get(s, t.id, &got, &e) == 0);
  CHECK(task_equal(&t, &got));

  /* Every field changed, then read back. */
  t.status = OP_TASK_FAILED;
  t.priority = 2;
  t.created_at = 1700000001.5;
  t.started_at = 1700000002.125;
  t.finished_at = 1700000003.75;
  t.pages_total = 13;
  t.pages_done = 11;
  t.attempts = 14;
  snprintf(t.device, sizeof t.device, "cuda:0");
  snprintf(t.worker, sizeof t.worker, "w-42");
  t.estimated_memory_bytes = 123456789;
  t.peak_memory_bytes = INT64_C(9000000000);
  snprintf(t.failure_reason, sizeof t.failure_reason, "out_of_memory");
  snprintf(t.error, sizeof t.error, "page 3 needed more memory than the budget");
  snprintf(t.owner, sizeof t.owner, "bob");
  snprintf(t.title, sizeof t.title, "other.tiff");
  snprintf(t.input_type, sizeof t.input_type, "tiff");
  snprintf(t.options, sizeof t.options, "{\"model\":\"deu\"}");
  t.cancel_requested = 1;
  t.resource_cleanup_completed = 1;
  CHECK(op_store_task_update(s, &t, &e) == 0);
  CHECK(op_store_task_get(s, t.id, &got, &e) == 0);
  CHECK(task_equal(&t, &got));

  /* A second insert of the same id is refused, with a message. */
  CHECK(op_store_task_insert(s, &t, &e) == OP_EINTERNAL);
  CHECK(strstr(e.message, "already exists") != NULL);
  CHECK(op_store_task_delete(s, t.id, &e) == 0);
}

static void test_not_found(op_store_t *s) {
  op_task_row_t t;
  op_error_t e;
  CHECK(op_store_task_get(s, "nope", &t, &e) == OP_ENOTFOUND);
  CHECK_STR_EQ(e.message, "no task nope");
  make_task(&t, "nope", "queued", 1);
  CHECK(op_store_task_update(s, &t, &e) == OP_ENOTFOUND);
  CHECK(op_store_task_delete(s, "nope", &e) == OP_ENOTFOUND);
  CHECK(op_store_event_add(s, "nope", "x", NULL, &e) == OP_ENOTFOUND);
  CHECK(op_store_metric_add(s, "nope", 1, "cpu", "ocr", &e) == OP_ENOTFOUND);
  op_page_row_t p = {.index = 0, .state = "queued"};
  CHECK(op_store_page_put(s, "nope", &p, &e) == OP_ENOTFOUND);
  op_task_row_t *rows = NULL;
  size_t n = 9;
  CHECK(op_store_task_list(s, "", NULL, "nope", 10, &rows, &n, &e) == OP_ENOTFOUND);
  CHECK(rows == NULL && n == 0);
}

/* Ids with the same created_at sort bytewise ('a' after 'B'), whatever the
 * database's locale would say. */
static void test_id_order(op_store_t *s) {
  op_task_row_t t;
  make_task(&t, "B1", "queued", 50);
  CHECK(op_store_task_insert(s, &t, NULL) == 0);
  make_task(&t, "a1", "queued", 50);
  CHECK(op_store_task_insert(s, &t, NULL) == 0);
  op_task_row_t *rows = NULL;
  size_t n = 0;
  CHECK(op_store_task_list(s, "", NULL, "", 10, &rows, &n, NULL) == 0);
  CHECK(n == 2 && strcmp(rows[0].id, "a1") == 0 && strcmp(rows[1].id, "B1") == 0);
  free(rows);
  CHECK(op_store_task_list(s, "", NULL, "a1", 10, &rows, &n, NULL) == 0);
  CHECK(n == 1 && strcmp(rows[0].id, "B1") == 0);
  free(rows);
  CHECK(op_store_task_delete(s, "a1", NULL) == 0 && op_store_task_delete(s, "B1", NULL) == 0);
}

/* 25 tasks L00..L24 with created_at 100..124: queued when even, succeeded
 * when odd; owner alice for multiples of 3, else bob. L24 has a twin L24b
 * with the same created_at to check the id tiebreak. */
static void make_list_tasks(op_store_t *s) {
  op_task_row_t t;
  char id[16];
  for (int i = 0; i < 25; i++) {
    snprintf(id, sizeof id, "L%02d", i);
    make_task(&t, id, i % 2 ? "succeeded" : "queued", 100 + i);
    snprintf(t.owner, sizeof t.owner, "%s", i % 3 == 0 ? "alice" : "bob");
    if (i % 2)
      t.finished_at = 200 + i;
    CHECK(op_store_task_insert(s, &t, NULL) == 0);
  }
  make_task(&t, "L24b", "queued", 124);
  snprintf(t.owner, sizeof t.owner, "alice");
  CHECK(op_store_task_insert(s, &t, NULL) == 0);
}

static void test_list(op_store_t *s) {
  make_list_tasks(s);
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;

  CHECK(op_store_task_list(s, "", NULL, "", 1000, &rows, &n, &e) == 0);
  CHECK(n == 26);
  CHECK(n == 26 && strcmp(rows[0].id, "L24b") == 0 && strcmp(rows[1].id, "L24") == 0 &&
        strcmp(rows[25].id, "L00") == 0);
  free(rows);

  CHECK(op_store_task_list(s, "queued", NULL, NULL, 100, &rows, &n, &e) == 0);
  CHECK(n == 14);
  int ok = 1;
  for (size_t i = 0; i < n; i++)
    ok &= rows[i].status == OP_TASK_QUEUED;
  CHECK(ok);
  free(rows);

  CHECK(op_store_task_list(s, "", "alice", "", 100, &rows, &n, &e) == 0);
  CHECK(n == 10); /* 0,3,...,24 and L24b */
  ok = 1;
  for (size_t i = 0; i < n; i++)
    ok &= strcmp(rows[i].owner, "alice") == 0;
  CHECK(ok);
  free(rows);

  CHECK(op_store_task_list(s, "succeeded", "alice", "", 100, &rows, &n, &e) == 0);
  CHECK(n == 4); /* 3, 9, 15, 21 */
  free(rows);

  /* Paging by 7 visits every task once, in order. */
  char after[40] = "";
  char seen[26][40];
  size_t total = 0;
  int pages = 0;
  for (;;) {
    CHECK(op_store_task_list(s, "", NULL, after, 7, &rows, &n, &e) == 0);
    if (n == 0) {
      free(rows);
      break;
    }
    for (size_t i = 0; i < n && total < 26; i++)
      snprintf(seen[total++], sizeof seen[0], "%s", rows[i].id);
    snprintf(after, sizeof after, "%s", rows[n - 1].id);
    free(rows);
    pages++;
  }
  CHECK(total == 26 && pages == 4);
  CHECK_STR_EQ(seen[0], "L24b");
  CHECK_STR_EQ(seen[1], "L24");
  CHECK_STR_EQ(seen[7], "L18");
  CHECK_STR_EQ(seen[25], "L00");

  /* Paging with a status filter; limit is clamped to at least 1. */
  CHECK(op_store_task_list(s, "queued", NULL, "L24", 3, &rows, &n, &e) == 0);
  CHECK(n == 3 && strcmp(rows[0].id, "L22") == 0 && strcmp(rows[2].id, "L18") == 0);
  free(rows);
  CHECK(op_store_task_list(s, "", NULL, "", 0, &rows, &n, &e) == 0);
  CHECK(n == 1);
  free(rows);
  CHECK(op_store_task_list(s, "", NULL, "", 5000, &rows, &n, &e) == 0);
  CHECK(n == 26);
  free(rows);

  /* Unfinished: the queued ones, oldest first. */
  CHECK(op_store_tasks_unfinished(s, &rows, &n, &e) == 0);
  CHECK(n == 14 && strcmp(rows[0].id, "L00") == 0 && strcmp(rows[13].id, "L24b") == 0);
  free(rows);

  int count = -1;
  CHECK(op_store_count_status(s, "queued", &count, &e) == 0 && count == 14);
  CHECK(op_store_count_status(s, "running", &count, &e) == 0 && count == 0);
  CHECK(op_store_count_status(s, "succeeded", &count, &e) == 0 && count == 12);
}

static void test_pages_events_delete(op_store_t *s) {
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "P1", "running", 500);
  CHECK(op_store_task_insert(s, &t, &e) == 0);

  /* Pages put out of order, one replaced. */
  op_page_row_t p;
  memset(&p, 0, sizeof p);
  for (int i = 2; i >= 0; i--) {
    p.index = i;
    snprintf(p.state, sizeof p.state, "queued");
    CHECK(op_store_page_put(s, "P1", &p, &e) == 0);
  }
  p.index = 1;
  snprintf(p.state, sizeof p.state, "done");
  p.attempts = 2;
  p.crash_attempts = 1;
  p.started_at = 501.5;
  p.finished_at = 502.25;
  p.estimated_memory_bytes = 1000;
  p.peak_memory_bytes = INT64_C(7000000000);
  snprintf(p.error, sizeof p.error, "first try crashed");
  snprintf(p.reason, sizeof p.reason, "worker_crashed"); /* read back: a resumed task keeps its pages' reasons */
  CHECK(op_store_page_put(s, "P1", &p, &e) == 0);
  op_page_row_t *pages = NULL;
  size_t n = 0;
  CHECK(op_store_pages(s, "P1", &pages, &n, &e) == 0);
  CHECK(n == 3);
  if (n == 3) {
    CHECK(pages[0].index == 0 && pages[1].index == 1 && pages[2].index == 2);
    CHECK(page_equal(&pages[1], &p));
    CHECK_STR_EQ(pages[2].state, "queued");
  }
  free(pages);

  /* Events: "created" first, then ours in order with their details. */
  json_t *d = json_pack("{s:s, s:i}", "device", "cpu", "page", 1);
  CHECK(op_store_event_add(s, "P1", "page_started", d, &e) == 0);
  CHECK(op_store_event_add(s, "P1", "page_done", NULL, &e) == 0);
  json_t *events = NULL;
  CHECK(op_store_events(s, "P1", &events, &e) == 0);
  CHECK(json_array_size(events) == 3);
  CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(events, 0), "type")), "created");
  CHECK(json_real_value(json_object_get(json_array_get(events, 0), "time")) == 500);
  json_t *ev1 = json_array_get(events, 1);
  CHECK_STR_EQ(json_string_value(json_object_get(ev1, "type")), "page_started");
  CHECK(json_equal(json_object_get(ev1, "details"), d));
  CHECK(json_real_value(json_object_get(ev1, "time")) > 1e9);
  CHECK(json_is_null(json_object_get(json_array_get(events, 2), "details")));
  json_decref(events);
  json_decref(d);

  CHECK(op_store_metric_add(s, "P1", 123456, "cpu", "ocr", &e) == 0);
  CHECK(op_store_metric_add(s, "P1", 654321, NULL, NULL, &e) == 0);

  /* Finished before: only finished tasks, only before the cutoff. */
  op_task_row_t *rows = NULL;
  CHECK(op_store_tasks_finished_before(s, 210, &rows, &n, &e) == 0);
  CHECK(n == 5); /* L01..L09, finished at 201..209 */
  free(rows);
  t.finished_at = 300;
  t.status = OP_TASK_CANCELLED;
  CHECK(op_store_task_update(s, &t, &e) == 0);
  CHECK(op_store_tasks_finished_before(s, 301, &rows, &n, &e) == 0);
  CHECK(n == 13 && strcmp(rows[n - 1].id, "P1") == 0);
  free(rows);

  /* Delete takes the pages, events and metrics along. */
  CHECK(op_store_task_delete(s, "P1", &e) == 0);
  CHECK(op_store_task_get(s, "P1", &t, &e) == OP_ENOTFOUND);
  CHECK(op_store_pages(s, "P1", &pages, &n, &e) == 0 && n == 0);
  free(pages);
  CHECK(op_store_events(s, "P1", &events, &e) == 0 && json_array_size(events) == 0);
  json_decref(events);
  /* Metrics have no reader; re-creating the task shows none are orphaned by
   * a foreign key error on the next sample, and the events start afresh. */
  make_task(&t, "P1", "queued", 600);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(op_store_events(s, "P1", &events, &e) == 0 && json_array_size(events) == 1);
  json_decref(events);
  CHECK(op_store_task_delete(s, "P1", &e) == 0);
}

/* What a scheduler callback records goes in together or not at all: the
 * server's restart after a kill -9 relies on a page's state and its event
 * never being split. */
static void test_transactions(op_store_t *s) {
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "TX1", "running", 700);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  op_store_t *other = open_store();
  op_page_row_t pages[3];
  memset(pages, 0, sizeof pages);
  for (int i = 0; i < 3; i++) {
    pages[i].index = i;
    snprintf(pages[i].state, sizeof pages[i].state, "queued");
  }
  json_t *events = NULL;
  op_page_row_t *rows = NULL;
  size_t n = 9;

  /* Rolled back: neither the page list (a nested transaction) nor the event. */
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_pages_put(s, "TX1", pages, 3, &e) == 0);
  CHECK(op_store_event_add(s, "TX1", "page_started", NULL, &e) == 0);
  CHECK(op_store_end(s, OP_EIO, &e) == OP_EIO);
  CHECK(op_store_pages(s, "TX1", &rows, &n, &e) == 0 && n == 0);
  free(rows);
  CHECK(op_store_events(s, "TX1", &events, &e) == 0 && json_array_size(events) == 1); /* "created" */
  json_decref(events);

  /* An inner part that fails rolls the whole back, though the outer says 0. */
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_event_add(s, "TX1", "page_started", NULL, &e) == 0);
  CHECK(op_store_pages_put(s, "nope", pages, 3, &e) == OP_ENOTFOUND);
  CHECK(op_store_end(s, 0, &e) < 0);
  CHECK(op_store_events(s, "TX1", &events, &e) == 0 && json_array_size(events) == 1);
  json_decref(events);

  /* Committed: a second connection sees all of it, and nothing before the end. */
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_pages_put(s, "TX1", pages, 3, &e) == 0);
  CHECK(op_store_event_add(s, "TX1", "page_started", NULL, &e) == 0);
  if (other != NULL) {
    CHECK(op_store_pages(other, "TX1", &rows, &n, &e) == 0 && n == 0);
    free(rows);
  }
  CHECK(op_store_end(s, 0, &e) == 0);
  if (other != NULL) {
    CHECK(op_store_pages(other, "TX1", &rows, &n, &e) == 0 && n == 3);
    free(rows);
    CHECK(op_store_events(other, "TX1", &events, &e) == 0 && json_array_size(events) == 2);
    json_decref(events);
  }
  op_store_close(other);
  CHECK(op_store_task_delete(s, "TX1", &e) == 0);
}

/* The test's fault (op_store_test_fail_every): a write picked by it fails
 * with OP_EIO and takes its whole transaction with it; reads are not writes. */
static void test_fault(op_store_t *s) {
  op_error_t e;
  op_task_row_t t, got;
  make_task(&t, "F1", "queued", 800);
  op_store_test_fail_every(s, 1);
  CHECK(op_store_task_insert(s, &t, &e) == OP_EIO);
  op_store_test_fail_every(s, 0);
  CHECK(op_store_task_get(s, "F1", &got, &e) == OP_ENOTFOUND);

  /* The second write (the "created" event) fails: the task goes too. */
  op_store_test_fail_every(s, 2);
  CHECK(op_store_task_insert(s, &t, &e) == OP_EIO);
  op_store_test_fail_every(s, 0);
  CHECK(op_store_task_get(s, "F1", &got, &e) == OP_ENOTFOUND);
  CHECK(op_store_task_insert(s, &t, &e) == 0);

  /* The third page of three fails: none is recorded. */
  op_page_row_t pages[3];
  memset(pages, 0, sizeof pages);
  for (int i = 0; i < 3; i++) {
    pages[i].index = i;
    snprintf(pages[i].state, sizeof pages[i].state, "queued");
  }
  op_store_test_fail_every(s, 3);
  CHECK(op_store_pages_put(s, "F1", pages, 3, &e) == OP_EIO);
  CHECK(op_store_task_get(s, "F1", &got, &e) == 0); /* a read, never failed */
  op_store_test_fail_every(s, 0);
  op_page_row_t *rows = NULL;
  size_t n = 9;
  CHECK(op_store_pages(s, "F1", &rows, &n, &e) == 0 && n == 0);
  free(rows);
  CHECK(op_store_pages_put(s, "F1", pages, 3, &e) == 0);
  CHECK(op_store_pages(s, "F1", &rows, &n, &e) == 0 && n == 3);
  free(rows);
  CHECK(op_store_task_delete(s, "F1", &e) == 0);
}

struct writer_arg {
  int thread;
  int failures;
};

static void *writer_main(void *p) {
  struct writer_arg *a = p;
  op_store_t *s = NULL;
  op_error_t e;
  if (op_store_open(store_where, &s, &e) != 0) {
    fprintf(stderr, "thread open: %s\n", e.message);
    a->failures = 1000;
    return NULL;
  }
  for (int i = 0; i < 200; i++) {
    op_task_row_t t;
    char id[40];
    snprintf(id, sizeof id, "T%d-%03d", a->thread, i);
    make_task(&t, id, "queued", 1000 + i);
    if (op_store_task_insert(s, &t, &e) != 0) {
      fprintf(stderr, "thread insert: %s\n", e.message);
      a->failures++;
    }
    if (op_store_event_add(s, id, "noted", NULL, &e) != 0)
      a->failures++;
  }
  op_store_close(s);
  return NULL;
}

static void test_threads(void) {
  pthread_t th[2];
  struct writer_arg args[2] = {{.thread = 0}, {.thread = 1}};
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&th[i], NULL, writer_main, &args[i]) == 0);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  CHECK(args[0].failures == 0 && args[1].failures == 0);
  op_store_t *s = open_store();
  op_task_row_t *rows = NULL;
  size_t n = 0;
  int count = 0;
  CHECK(op_store_count_status(s, "queued", &count, NULL) == 0);
  CHECK(count == 14 + 400);
  CHECK(op_store_tasks_unfinished(s, &rows, &n, NULL) == 0 && n == 414);
  free(rows);
  op_store_close(s);
}

/* A child writes a task and is killed before it can close anything: the
 * commit must already be on disk. No store is open across the fork. */
static void test_durability(void) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    op_store_t *s = NULL;
    op_task_row_t t;
    make_task(&t, "survivor", "queued", 42);
    if (op_store_open(data_dir, &s, NULL) != 0 || op_store_task_insert(s, &t, NULL) != 0)
      _exit(1);
    kill(getpid(), SIGKILL);
    _exit(2);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    ;
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  op_store_t *s = open_store();
  op_task_row_t got;
  CHECK(op_store_task_get(s, "survivor", &got, NULL) == 0);
  CHECK(got.created_at == 42);
  op_store_close(s);
}

/* Values too long for a row field (written by another tool, or a later
 * version) come back cut at a character boundary; fields filled to the last
 * byte without a NUL are never read past. A database from a newer schema is
 * refused. Raw SQLite plays the other writer. */
static void test_truncation_and_version(void) {
  op_store_t *s = open_store();
  op_task_row_t t, got;
  make_task(&t, "long", "queued", 7);
  memset(t.device, 'x', sizeof t.device); /* no NUL */
  CHECK(op_store_task_insert(s, &t, NULL) == 0);
  op_store_close(s);

  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/ocrpool.db", data_dir);
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  /* 254 ASCII bytes, then a 2-byte character that does not fit in title[256]. */
  CHECK(sqlite3_exec(db, "UPDATE tasks SET title = printf('%.254c', 'a') || '\xc3\xa9' || 'zz' WHERE id = 'long'", NULL,
                     NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);

  s = open_store();
  CHECK(op_store_task_get(s, "long", &got, NULL) == 0);
  CHECK(strlen(got.device) == sizeof got.device - 1);
  CHECK(strlen(got.title) == 254);
  CHECK(op_store_task_delete(s, "long", NULL) == 0);
  op_store_close(s);

  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  op_error_t e;
  s = NULL;
  CHECK(op_store_open(data_dir, &s, &e) == OP_EUSAGE && s == NULL);
  CHECK(strstr(e.message, "newer") != NULL);
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *ent;
  char path[512];
  while ((ent = readdir(d)) != NULL) {
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* ---- blobs ---- */

enum { MIB = 1 << 20 };

/* A deterministic pseudo-random byte stream (xorshift64*), for files in
 * which every byte matters. */
static void fill_random(unsigned char *buf, size_t n, uint64_t *state) {
  for (size_t i = 0; i < n; i++) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    buf[i] = (unsigned char)((x * UINT64_C(0x2545F4914F6CDD1D)) >> 56);
  }
}

static int write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL)
    return -1;
  int ok = n == 0 || fwrite(data, 1, n, f) == n;
  ok &= fclose(f) == 0;
  return ok ? 0 : -1;
}

/* Whether the file at path holds exactly the n bytes at data. */
static int file_holds(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0;
  unsigned char *buf = malloc(n + 1);
  int ok = buf != NULL && fread(buf, 1, n + 1, f) == n && (n == 0 || memcmp(buf, data, n) == 0);
  free(buf);
  fclose(f);
  return ok;
}

static int file_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* SQLite: a blob is the server's own file; the store has nothing to copy. */
static void test_blobs_files(op_store_t *s, const char *dir) {
  char src[PATH_MAX], dst[PATH_MAX], missing[PATH_MAX];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  snprintf(missing, sizeof missing, "%s/missing", dir);
  op_error_t e;
  CHECK(op_store_keeps_blobs(s) == 0);
  CHECK(op_store_blob_put(s, "B1", "input", src, &e) == 0);
  CHECK(op_store_blob_put(s, "B1", "input", missing, &e) == OP_EIO);
  CHECK(op_store_blob_put(s, "B1", "input", dir, &e) == OP_EIO); /* not a regular file */
  /* The file is the blob: found, and left as it is. */
  CHECK(op_store_blob_get(s, "B1", "input", src, &e) == 0);
  CHECK(file_holds(src, "hello", 5));
  CHECK(op_store_blob_get(s, "B1", "input", dst, &e) == OP_ENOTFOUND);
  CHECK_STR_EQ(e.reason, "not_found");
  CHECK_STR_EQ(e.message, "task B1 has no blob input");
  CHECK(!file_exists(dst));
  CHECK(op_store_blob_get(s, "B1", "input", dir, &e) == OP_ENOTFOUND);
}

/* PostgreSQL: the bytes themselves, in chunks, whatever the size around the
 * chunks' edges; replaced whole; all or nothing under the test's fault. */
static void test_blobs_kept(op_store_t *s, const char *dir) {
  char src[PATH_MAX], dst[PATH_MAX], part[PATH_MAX], name[32];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  snprintf(part, sizeof part, "%s/dst.part", dir);
  op_error_t e;
  CHECK(op_store_keeps_blobs(s) == 1);
  static const size_t sizes[] = {0, 11, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB + MIB / 2};
  enum { NSIZES = sizeof sizes / sizeof sizes[0] };
  size_t most = sizes[NSIZES - 1];
  unsigned char *data = malloc(most), *other = malloc(most);
  if (data == NULL || other == NULL) {
    CHECK(!"memory for the blobs' contents");
    goto out;
  }
  uint64_t seed = 42;
  fill_random(data, most, &seed);
  fill_random(other, most, &seed);

  /* All put, then all read back: blobs of one task keep to themselves. */
  for (size_t i = 0; i < NSIZES; i++) {
    snprintf(name, sizeof name, "size-%zu", sizes[i]);
    CHECK(write_file(src, data, sizes[i]) == 0);
    CHECK(op_store_blob_put(s, "B1", name, src, &e) == 0);
  }
  for (size_t i = 0; i < NSIZES; i++) {
    snprintf(name, sizeof name, "size-%zu", sizes[i]);
    int rc = op_store_blob_get(s, "B1", name, dst, &e);
    CHECK(rc == 0);
    if (rc != 0)
      fprintf(stderr, "blob %s: %s\n", name, e.message);
    CHECK(file_holds(dst, data, sizes[i])); /* the empty one exists, empty */
    CHECK(!file_exists(part));
  }

  /* Replaced by a shorter one: nothing of the longer one is left. */
  snprintf(name, sizeof name, "size-%zu", most);
  CHECK(write_file(src, "short", 5) == 0);
  CHECK(op_store_blob_put(s, "B1", name, src, &e) == 0);
  CHECK(op_store_blob_get(s, "B1", name, dst, &e) == 0 && file_holds(dst, "short", 5));

  /* No such blob (or task): OP_ENOTFOUND, and the target is left as it was. */
  CHECK(write_file(dst, "keep", 4) == 0);
  CHECK(op_store_blob_get(s, "B1", "absent", dst, &e) == OP_ENOTFOUND);
  CHECK_STR_EQ(e.reason, "not_found");
  CHECK_STR_EQ(e.message, "task B1 has no blob absent");
  CHECK(file_holds(dst, "keep", 4) && !file_exists(part));
  CHECK(op_store_blob_get(s, "nope", "input", dst, &e) == OP_ENOTFOUND);
  CHECK(file_holds(dst, "keep", 4) && !file_exists(part));

  /* A put that fails at its delete, its first chunk or its second leaves the
   * blob before it whole; a get is a read, which the fault spares. */
  CHECK(write_file(src, data, most) == 0);
  CHECK(op_store_blob_put(s, "B1", "frag", src, &e) == 0);
  CHECK(write_file(src, other, most) == 0);
  for (unsigned every = 1; every <= 3; every++) {
    op_store_test_fail_every(s, every);
    CHECK(op_store_blob_put(s, "B1", "frag", src, &e) == OP_EIO);
    op_store_test_fail_every(s, 0);
    CHECK(op_store_blob_get(s, "B1", "frag", dst, &e) == 0 && file_holds(dst, data, most));
  }
  op_store_test_fail_every(s, 1);
  CHECK(op_store_blob_get(s, "B1", "frag", dst, &e) == 0 && file_holds(dst, data, most));
  op_store_test_fail_every(s, 0);

  /* Deleting a task deletes its blobs: a task of the same id has none. */
  op_task_row_t t;
  make_task(&t, "B2", "running", 951);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(op_store_blob_put(s, "B2", "input", src, &e) == 0);
  CHECK(op_store_task_delete(s, "B2", &e) == 0);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(op_store_blob_get(s, "B2", "input", dst, &e) == OP_ENOTFOUND);
  CHECK(op_store_task_delete(s, "B2", &e) == 0);
out:
  free(data);
  free(other);
}

/* Blobs on either store: the names refused before the store is asked, a
 * task that is not there, then the store's own contract. */
static void test_blobs(op_store_t *s) {
  char dir[] = "/tmp/ocrpool-blobs-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    CHECK(!"a directory for blob files");
    return;
  }
  char src[PATH_MAX], dst[PATH_MAX], long_name[66];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  memset(long_name, 'x', 65);
  long_name[65] = '\0';
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "B1", "running", 950);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(write_file(src, "hello", 5) == 0);

  const char *const bad[] = {"", ".", "..", ".hidden", "../x", "a/b", "sp ace", "caf\xc3\xa9", long_name};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(op_store_blob_put(s, "B1", bad[i], src, &e) == OP_EINTERNAL);
    CHECK(op_store_blob_get(s, "B1", bad[i], dst, &e) == OP_EINTERNAL);
  }
  CHECK(!file_exists(dst));
  long_name[64] = '\0'; /* 64 characters: the longest allowed */
  CHECK(op_store_blob_put(s, "B1", long_name, src, &e) == 0);
  CHECK(op_store_blob_put(s, "nope", "input", src, &e) == OP_ENOTFOUND);
  CHECK_STR_EQ(e.reason, "not_found");
  CHECK_STR_EQ(e.message, "no task nope");

  if (op_store_keeps_blobs(s))
    test_blobs_kept(s, dir);
  else
    test_blobs_files(s, dir);
  CHECK(op_store_task_delete(s, "B1", &e) == 0);
  remove_dir(dir);
}

/* The checks that take a store, in an order whose counts build on each other. */
static void run_generic(void) {
  test_open_reopen();
  op_store_t *s = open_store();
  if (s != NULL) {
    test_round_trip(s);
    test_not_found(s);
    test_id_order(s);
    test_list(s);
    test_pages_events_delete(s);
    test_transactions(s);
    test_fault(s);
    test_blobs(s);
    op_store_close(s);
  }
  test_threads();
}

/* ---- PostgreSQL ---- */

/* Runs SQL on a raw connection (the test's other writer); 0, or -1 saying why. */
static int pg_sql(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  return ok ? 0 : -1;
}

/* The one value a raw query answers, into buf ("" on failure). */
static const char *pg_value(PGconn *c, const char *sql, char *buf, size_t len) {
  PGresult *r = PQexec(c, sql);
  buf[0] = '\0';
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
  else
    fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  return buf;
}

static PGconn *pg_connect(const char *url) {
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "PostgreSQL at %s: %s", url, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

/* The URL of database db on url's cluster: a dbname parameter last, which
 * libpq lets win over the path's (postgresql:///postgres?host=/dir&user=x). */
static void pg_url_for(const char *url, const char *db, char *out, size_t len) {
  snprintf(out, len, "%s%cdbname=%s", url, strchr(url, '?') ? '&' : '?', db);
}

/* A fresh database db on the cluster (the name is the test's own, never a value from outside). */
static int pg_create(PGconn *admin, const char *db) {
  char sql[160];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
  if (pg_sql(admin, sql) != 0)
    return -1;
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  return pg_sql(admin, sql);
}

static void pg_drop(PGconn *admin, const char *db) {
  char sql[160];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
  CHECK(pg_sql(admin, sql) == 0);
}

/* A URL that cannot connect fails with OP_EIO and a reason, and never shows its password. */
static void test_pg_open_error(const char *url) {
  char bad[1200], with_password[1300];
  pg_url_for(url, "ocrpool_unit_missing", bad, sizeof bad);
  snprintf(with_password, sizeof with_password, "%s&password=sekrit", bad);
  op_store_t *s = NULL;
  op_error_t e;
  CHECK(op_store_open(with_password, &s, &e) == OP_EIO && s == NULL);
  CHECK(strstr(e.message, "cannot connect") != NULL);
  CHECK(strstr(e.message, "ocrpool_unit_missing") != NULL);
  CHECK(strstr(e.message, "sekrit") == NULL && strstr(e.message, "password=***") != NULL);
  CHECK_STR_EQ(e.reason, "internal");
}

struct opener_arg {
  const char *url;
  pthread_barrier_t *start;
  int rc, version;
};

static void *opener_main(void *p) {
  struct opener_arg *a = p;
  op_store_t *s = NULL;
  op_error_t e;
  pthread_barrier_wait(a->start);
  a->rc = op_store_open(a->url, &s, &e);
  if (a->rc != 0)
    fprintf(stderr, "concurrent open: %s\n", e.message);
  else
    a->version = op_store_schema_version(s);
  op_store_close(s);
  return NULL;
}

/* Opening migrates once: again changes nothing, two connections migrating a
 * fresh database at the same moment both succeed, a newer schema is refused. */
static void test_pg_migrations(PGconn *admin, const char *url, const char *db_url) {
  char buf[64];
  op_store_t *s = open_store();
  int v = s ? op_store_schema_version(s) : -1;
  op_store_close(s);
  s = open_store();
  CHECK(v >= 1 && s != NULL && op_store_schema_version(s) == v);
  op_store_close(s);
  PGconn *raw = pg_connect(db_url);
  CHECK(raw != NULL);
  if (raw != NULL) {
    CHECK_STR_EQ(pg_value(raw, "SELECT count(*) FROM ocrpool_schema", buf, sizeof buf), "1");
    CHECK(atoi(pg_value(raw, "SELECT version FROM ocrpool_schema", buf, sizeof buf)) == v);
    PQfinish(raw);
  }

  char db[64], fresh_url[1200];
  snprintf(db, sizeof db, "ocrpool_unit_%d_m", (int)getpid());
  if (pg_create(admin, db) != 0) {
    CHECK(!"a second database for the migration checks");
    return;
  }
  pg_url_for(url, db, fresh_url, sizeof fresh_url);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2);
  pthread_t th[2];
  struct opener_arg args[2] = {{.url = fresh_url, .start = &start}, {.url = fresh_url, .start = &start}};
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&th[i], NULL, opener_main, &args[i]) == 0);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  CHECK(args[0].rc == 0 && args[1].rc == 0);
  CHECK(args[0].version == v && args[1].version == v);

  raw = pg_connect(fresh_url);
  CHECK(raw != NULL);
  if (raw != NULL) {
    CHECK_STR_EQ(pg_value(raw, "SELECT count(*) FROM ocrpool_schema", buf, sizeof buf), "1");
    CHECK(pg_sql(raw, "UPDATE ocrpool_schema SET version = 99") == 0);
    PQfinish(raw);
  }
  op_error_t e;
  s = NULL;
  CHECK(op_store_open(fresh_url, &s, &e) == OP_EUSAGE && s == NULL);
  CHECK(strstr(e.message, "newer") != NULL);
  op_store_close(s);
  pg_drop(admin, db);
}

/* Too long for a row field: cut at a character boundary; a field without
 * its NUL is never read past; bytes that are not UTF-8 (which PostgreSQL
 * refuses) are stored as '?'. */
static void test_pg_text(const char *db_url) {
  op_store_t *s = open_store();
  op_task_row_t t, got;
  make_task(&t, "long", "queued", 7);
  memset(t.device, 'x', sizeof t.device); /* no NUL */
  snprintf(t.title, sizeof t.title, "bad\xff\xc3");
  CHECK(s != NULL && op_store_task_insert(s, &t, NULL) == 0);
  CHECK(s != NULL && op_store_task_get(s, "long", &got, NULL) == 0);
  CHECK(strlen(got.device) == sizeof got.device - 1);
  CHECK_STR_EQ(got.title, "bad??");
  PGconn *raw = pg_connect(db_url);
  CHECK(raw != NULL);
  if (raw != NULL) {
    CHECK(pg_sql(raw, "UPDATE tasks SET title = repeat('a', 254) || '\xc3\xa9' || 'zz' WHERE id = 'long'") == 0);
    PQfinish(raw);
  }
  CHECK(s != NULL && op_store_task_get(s, "long", &got, NULL) == 0);
  CHECK(strlen(got.title) == 254);
  /* A lookup by an id that is not UTF-8 finds nothing, as on SQLite. */
  op_error_t e;
  CHECK(s != NULL && op_store_task_get(s, "\xff", &got, &e) == OP_ENOTFOUND);
  CHECK(s != NULL && op_store_task_delete(s, "long", NULL) == 0);
  op_store_close(s);
}

/* A statement that fails inside a transaction aborts PostgreSQL's: the end
 * must say so rather than report a COMMIT that rolled back. */
static void test_pg_failed_commit(void) {
  op_store_t *s = open_store();
  if (s == NULL)
    return;
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "FC", "queued", 900);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_event_add(s, "FC", "one", NULL, &e) == 0);
  CHECK(op_store_event_add(s, "nope", "two", NULL, &e) == OP_ENOTFOUND);
  CHECK(op_store_end(s, 0, &e) < 0);
  json_t *events = NULL;
  CHECK(op_store_events(s, "FC", &events, &e) == 0 && json_array_size(events) == 1);
  json_decref(events);
  CHECK(op_store_task_delete(s, "FC", &e) == 0);
  op_store_close(s);
}

/* Ends the store's server session (every connection named ocrpool on db, of
 * which the test has one open), waiting until it is gone. */
static int pg_kill_sessions(PGconn *admin, const char *db) {
  const char *params[] = {db};
  PGresult *r = PQexecParams(admin,
                             "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                             "WHERE datname = $1 AND application_name = 'ocrpool'",
                             1, NULL, params, NULL, NULL, 0);
  int n = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : -1;
  if (n < 0)
    fprintf(stderr, "terminating: %s", PQerrorMessage(admin));
  PQclear(r);
  return n;
}

/* The server drops the connection: the next call may fail (OP_EIO, saying
 * so), the one after reconnects, prepares its statements again and works.
 * Inside a transaction nothing is retried: the transaction fails whole. */
static void test_pg_reconnect(PGconn *admin, const char *db) {
  op_store_t *s = open_store();
  if (s == NULL)
    return;
  op_error_t e;
  op_task_row_t t, got;
  make_task(&t, "R1", "queued", 1000);
  CHECK(op_store_task_insert(s, &t, &e) == 0);

  CHECK(pg_kill_sessions(admin, db) == 1); /* also: application_name is ocrpool */
  int rc = op_store_task_get(s, "R1", &got, &e);
  CHECK(rc == 0 || rc == OP_EIO);
  if (rc == OP_EIO)
    CHECK(strstr(e.message, "connection") != NULL && strcmp(e.reason, "internal") == 0);
  CHECK(op_store_task_get(s, "R1", &got, &e) == 0 && got.created_at == 1000);
  CHECK(op_store_event_add(s, "R1", "after_reset", NULL, &e) == 0);

  /* A write outside a transaction fails once and is not run twice. */
  CHECK(pg_kill_sessions(admin, db) == 1);
  rc = op_store_event_add(s, "R1", "maybe", NULL, &e);
  CHECK(rc == 0 || rc == OP_EIO);
  json_t *events = NULL;
  CHECK(op_store_events(s, "R1", &events, &e) == 0);
  CHECK(json_array_size(events) == (rc == 0 ? 3u : 2u));
  json_decref(events);
  CHECK(op_store_task_delete(s, "R1", &e) == 0);
  CHECK(op_store_task_insert(s, &t, &e) == 0);

  /* Inside a transaction: the call fails, the transaction with it. */
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_event_add(s, "R1", "in_tx", NULL, &e) == 0);
  CHECK(pg_kill_sessions(admin, db) == 1);
  rc = op_store_event_add(s, "R1", "in_tx_2", NULL, &e);
  CHECK(rc == OP_EIO);
  rc = op_store_event_add(s, "R1", "in_tx_3", NULL, &e);
  CHECK(rc == OP_EIO && strstr(e.message, "inside a transaction") != NULL);
  CHECK(op_store_end(s, rc, &e) == OP_EIO);
  CHECK(op_store_events(s, "R1", &events, &e) == 0 && json_array_size(events) == 1); /* "created" */
  json_decref(events);

  /* Lost between BEGIN and COMMIT with nothing failing in between. */
  CHECK(op_store_begin(s, &e) == 0);
  CHECK(op_store_event_add(s, "R1", "in_tx", NULL, &e) == 0);
  CHECK(pg_kill_sessions(admin, db) == 1);
  CHECK(op_store_end(s, 0, &e) == OP_EIO);
  CHECK(op_store_events(s, "R1", &events, &e) == 0 && json_array_size(events) == 1);
  json_decref(events);
  CHECK(op_store_task_delete(s, "R1", &e) == 0);
  op_store_close(s);
}

/* Blobs as PostgreSQL holds them: full chunks and then the rest, an empty
 * file as one empty chunk; a gap between chunks is reported and leaves the
 * connection usable; a dropped session is a pause for a read; deleting the
 * task leaves no row behind. */
static void test_pg_blobs(PGconn *admin, const char *db, const char *db_url) {
  char dir[] = "/tmp/ocrpool-blobs-XXXXXX";
  op_store_t *s = open_store();
  PGconn *raw = pg_connect(db_url);
  unsigned char *data = malloc(3 * MIB + MIB / 2);
  if (s == NULL || raw == NULL || data == NULL || mkdtemp(dir) == NULL) {
    CHECK(!"a store, a raw connection, memory and a directory");
    goto out;
  }
  char src[PATH_MAX], dst[PATH_MAX], part[PATH_MAX], buf[256];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  snprintf(part, sizeof part, "%s/dst.part", dir);
  uint64_t seed = 7;
  fill_random(data, 3 * MIB + MIB / 2, &seed);
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "BL", "running", 960);
  CHECK(op_store_task_insert(s, &t, &e) == 0);
  static const struct {
    const char *name;
    size_t size;
    const char *layout;
  } blobs[] = {
      {"doc", 3 * MIB + MIB / 2, "0:1048576,1:1048576,2:1048576,3:524288"},
      {"two", 2 * MIB, "0:1048576,1:1048576"},
      {"none", 0, "0:0"},
  };
  for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++) {
    CHECK(write_file(src, data, blobs[i].size) == 0);
    CHECK(op_store_blob_put(s, "BL", blobs[i].name, src, &e) == 0);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(chunk || ':' || octet_length(data), ',' ORDER BY chunk) FROM blobs "
             "WHERE task_id = 'BL' AND name = '%s'",
             blobs[i].name);
    CHECK_STR_EQ(pg_value(raw, sql, buf, sizeof buf), blobs[i].layout);
  }

  /* Chunk 1 of 4 gone: the blob is damaged, said so; nothing is written. */
  CHECK(pg_sql(raw, "DELETE FROM blobs WHERE task_id = 'BL' AND name = 'doc' AND chunk = 1") == 0);
  CHECK(write_file(dst, "keep", 4) == 0);
  CHECK(op_store_blob_get(s, "BL", "doc", dst, &e) == OP_EINTERNAL);
  CHECK(strstr(e.message, "chunk 2 where 1 was expected") != NULL && strstr(e.message, "damaged") != NULL);
  CHECK(file_holds(dst, "keep", 4) && !file_exists(part));
  op_task_row_t got;
  CHECK(op_store_task_get(s, "BL", &got, &e) == 0); /* every result was drained */
  char nowhere[PATH_MAX];
  snprintf(nowhere, sizeof nowhere, "%s/no-such-dir/dst", dir);
  CHECK(op_store_blob_get(s, "BL", "two", nowhere, &e) == OP_EIO && strstr(e.message, "cannot create") != NULL);
  CHECK(op_store_task_get(s, "BL", &got, &e) == 0);

  /* The session dropped under an idle connection: a read may fail once,
   * saying so, and leaves no part behind; the next one reconnects. */
  CHECK(pg_kill_sessions(admin, db) == 1);
  int rc = op_store_blob_get(s, "BL", "two", dst, &e);
  CHECK(rc == 0 || rc == OP_EIO);
  CHECK(!file_exists(part));
  CHECK(op_store_blob_get(s, "BL", "two", dst, &e) == 0 && file_holds(dst, data, 2 * MIB));

  CHECK(op_store_task_delete(s, "BL", &e) == 0);
  CHECK_STR_EQ(pg_value(raw, "SELECT count(*) FROM blobs WHERE task_id = 'BL'", buf, sizeof buf), "0");
  remove_dir(dir);
out:
  free(data);
  PQfinish(raw);
  op_store_close(s);
}

/* A streaming checksum (FNV-1a over 8-byte words, then the odd bytes) of
 * blocks fed whole: the same blocks give the same sum. */
static void sum_block(uint64_t *sum, const unsigned char *p, size_t n) {
  size_t i = 0;
  for (uint64_t w; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    *sum = (*sum ^ w) * UINT64_C(0x100000001b3);
  }
  for (; i < n; i++)
    *sum = (*sum ^ p[i]) * UINT64_C(0x100000001b3);
}

/* A line of /proc/self/status in KiB ("VmHWM", "VmRSS"); -1 if none. */
static long status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  size_t n = strlen(key);
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, key, n) == 0 && line[n] == ':')
      kib = strtol(line + n + 1, NULL, 10);
  if (f != NULL)
    fclose(f);
  return kib;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#if defined(__SANITIZE_ADDRESS__)
#define BLOB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOB_ASAN 1
#endif
#endif

/* A 200 MiB blob (and an odd tail) round-trips byte for byte, while the
 * process's peak memory grows by a few chunks, not by the blob: neither put
 * nor get ever holds it whole. The file is a 1 MiB pseudo-random pattern with
 * each chunk's index stamped in it, so that a chunk out of place shows. */
static void test_pg_blob_large(void) {
  enum { CHUNKS = 200, TAIL = 777, GROWTH_MAX_KIB = 64 * 1024 };
  char dir[] = "/tmp/ocrpool-blobs-XXXXXX", src[PATH_MAX], dst[PATH_MAX];
  unsigned char *pattern = malloc(MIB), *buf = malloc(MIB);
  op_store_t *s = NULL;
  int have_dir = mkdtemp(dir) != NULL;
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(dst, sizeof dst, "%s/dst", dir);
  if (pattern == NULL || buf == NULL || !have_dir) {
    CHECK(!"memory and a directory for the large blob");
    goto out;
  }
  uint64_t seed = 99, sum_in = UINT64_C(0xcbf29ce484222325), sum_out = sum_in;
  fill_random(pattern, MIB, &seed);
  FILE *f = fopen(src, "wb");
  int ok = f != NULL;
  for (uint64_t i = 0; ok && i <= CHUNKS; i++) {
    size_t n = i < CHUNKS ? MIB : TAIL;
    memcpy(pattern + 100, &i, sizeof i);
    sum_block(&sum_in, pattern, n);
    ok = fwrite(pattern, 1, n, f) == n;
  }
  if (f != NULL)
    ok &= fclose(f) == 0;
  CHECK(ok);

  s = open_store();
  op_error_t e;
  op_task_row_t t;
  make_task(&t, "HUGE", "running", 970);
  CHECK(s != NULL && op_store_task_insert(s, &t, &e) == 0);
  if (s == NULL || !ok)
    goto out;

  /* The peak is reset to the present (clear_refs 5) where the kernel lets
   * it, so that an earlier one does not hide this one; where it does not,
   * the growth measured is too big, never too small. */
  f = fopen("/proc/self/clear_refs", "w");
  if (f != NULL) {
    fputs("5", f);
    fclose(f);
  }
  long rss_before = status_kib("VmRSS");
  double t0 = now_s();
  int put = op_store_blob_put(s, "HUGE", "input", src, &e);
  if (put != 0)
    fprintf(stderr, "large put: %s\n", e.message);
  double t1 = now_s();
  int get = op_store_blob_get(s, "HUGE", "input", dst, &e);
  if (get != 0)
    fprintf(stderr, "large get: %s\n", e.message);
  double t2 = now_s();
  long growth = status_kib("VmHWM") - rss_before;
  CHECK(put == 0 && get == 0);

  f = fopen(dst, "rb");
  size_t total = 0, n;
  while (f != NULL && (n = fread(buf, 1, MIB, f)) > 0) {
    sum_block(&sum_out, buf, n);
    total += n;
  }
  if (f != NULL)
    fclose(f);
  CHECK(total == (size_t)CHUNKS * MIB + TAIL);
  CHECK(sum_out == sum_in);
  printf("test_store: a %d MiB blob on PostgreSQL: put %.2f s, get %.2f s; peak memory grew by %ld KiB\n", CHUNKS,
         t1 - t0, t2 - t1, growth);
#ifdef BLOB_ASAN
  /* AddressSanitizer keeps freed memory in quarantine (256 MiB): the peak
   * says nothing about the code there. */
  printf("test_store: the memory check is skipped under AddressSanitizer (its quarantine holds freed chunks)\n");
#else
  CHECK(rss_before > 0 && growth >= 0 && growth < GROWTH_MAX_KIB);
#endif
  CHECK(op_store_task_delete(s, "HUGE", &e) == 0);
out:
  op_store_close(s);
  if (have_dir) {
    unlink(src);
    unlink(dst);
    rmdir(dir);
  }
  free(pattern);
  free(buf);
}

/* Reads OCRPOOL_TEST_PG's url; 0, or -1 saying why. */
static int pg_read_url(const char *dir, char *url, size_t len) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/url", dir);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "OCRPOOL_TEST_PG: cannot read %s: %s\n", path, strerror(errno));
    return -1;
  }
  int ok = fgets(url, (int)len, f) != NULL;
  fclose(f);
  url[ok ? strcspn(url, "\r\n") : 0] = '\0';
  if (url[0] == '\0') {
    fprintf(stderr, "OCRPOOL_TEST_PG: %s has no URL\n", path);
    return -1;
  }
  return 0;
}

/* Every generic check on PostgreSQL, then its own; a cluster named but not
 * reachable is a failure, not a skip. */
static void run_pg(void) {
  const char *dir = getenv("OCRPOOL_TEST_PG");
  if (dir == NULL || dir[0] == '\0') {
    printf("test_store: the PostgreSQL part is skipped: OCRPOOL_TEST_PG is not set "
           "(it names a directory whose file \"url\" reaches a throwaway cluster; see tests/pg.sh)\n");
    return;
  }
  char url[1024], db[64], db_url[1200];
  PGconn *admin = NULL;
  if (pg_read_url(dir, url, sizeof url) != 0 || (admin = pg_connect(url)) == NULL) {
    CHECK(!"PostgreSQL named by OCRPOOL_TEST_PG is reachable");
    return;
  }
  snprintf(db, sizeof db, "ocrpool_unit_%d", (int)getpid());
  if (pg_sql(admin, "SET client_min_messages = warning") != 0 || pg_create(admin, db) != 0) {
    CHECK(!"a fresh database on PostgreSQL");
    PQfinish(admin);
    return;
  }
  pg_url_for(url, db, db_url, sizeof db_url);
  store_where = db_url;
  run_generic();
  test_pg_open_error(url);
  test_pg_migrations(admin, url, db_url);
  test_pg_text(db_url);
  test_pg_failed_commit();
  test_pg_blobs(admin, db, db_url);
  test_pg_blob_large();
  test_pg_reconnect(admin, db);
  pg_drop(admin, db);
  PQfinish(admin);
}

int main(void) {
  char base[] = "/tmp/ocrpool-store-XXXXXX";
  if (mkdtemp(base) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  /* A subdirectory, so that open's mkdir is exercised too. */
  snprintf(data_dir, sizeof data_dir, "%s/data", base);

  store_where = data_dir;
  run_generic();
  test_durability();
  test_truncation_and_version();

  remove_dir(data_dir);
  rmdir(base);

  run_pg();
  return CHECK_DONE();
}
