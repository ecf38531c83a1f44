/*
 * sqlite.c: the store on SQLite, the embedded default (see store.h).
 *
 * One WAL-mode database, data_dir/ocrpool.db, with one connection per thread.
 * WAL lets readers run beside the one writer, synchronous=FULL puts every
 * commit on the disk before it returns (a power cut loses no acknowledged
 * commit; NORMAL would be safe against a killed process only), and busy_timeout makes concurrent writers wait for each other
 * instead of failing. Several-row changes run in BEGIN IMMEDIATE transactions:
 * taking the write lock up front means the busy handler applies, where a
 * deferred transaction that upgrades later would fail at once with SQLITE_BUSY.
 *
 * Opening and the schema's migrations are in sqlite_open.c.
 *
 * Statements are prepared on first use and kept for the life of the
 * connection; values are only ever bound, never formatted into SQL.
 */
#include "store/sqlite_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Paging: the four shapes of the list query, so each one is an index range
 * scan rather than one query full of "?x IS NULL OR ..." the planner cannot use. */
#define LIST_OWNER "(?2 IS NULL OR owner = ?2)"
#define LIST_AFTER "(created_at, id) < (?3, ?4)"
#define LIST_ORDER " ORDER BY created_at DESC, id DESC LIMIT ?5"

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TASK_INSERT] =
        "INSERT INTO tasks (" TASK_COLS_WRITTEN ") VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    [ST_TASK_GET] = "SELECT " TASK_COLS " FROM tasks WHERE id = ?1",
    [ST_TASK_UPDATE] = "UPDATE tasks SET status = ?2, priority = ?3, created_at = ?4, started_at = ?5, "
                       "finished_at = ?6, pages_total = ?7, pages_done = ?8, attempts = ?9, assigned_device = ?10, "
                       "worker_id = ?11, estimated_memory_bytes = ?12, peak_memory_bytes = ?13, failure_reason = ?14, "
                       "error = ?15, owner = ?16, title = ?17, input_type = ?18, options = ?19, "
                       "cancel_requested = ?20, resource_cleanup_completed = ?21 WHERE id = ?1",
    [ST_TASK_CREATED_AT] = "SELECT created_at FROM tasks WHERE id = ?1",
    [ST_LIST_ANY] = "SELECT " TASK_COLS " FROM tasks WHERE " LIST_OWNER LIST_ORDER,
    [ST_LIST_ANY_AFTER] = "SELECT " TASK_COLS " FROM tasks WHERE " LIST_AFTER " AND " LIST_OWNER LIST_ORDER,
    [ST_LIST_STATUS] = "SELECT " TASK_COLS " FROM tasks WHERE status = ?1 AND " LIST_OWNER LIST_ORDER,
    [ST_LIST_STATUS_AFTER] =
        "SELECT " TASK_COLS " FROM tasks WHERE status = ?1 AND " LIST_AFTER " AND " LIST_OWNER LIST_ORDER,
    [ST_UNFINISHED] = "SELECT " TASK_COLS " FROM tasks WHERE status IN ('queued', 'running') "
                      "ORDER BY created_at, id",
    [ST_COUNT_STATUS] = "SELECT count(*) FROM tasks WHERE status = ?1",
    [ST_COUNT_GROUPS] = "SELECT status, priority, count(*) FROM tasks GROUP BY status, priority",
    [ST_FINISHED_BEFORE] = "SELECT " TASK_COLS " FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled') "
                           "AND finished_at < ?1 ORDER BY finished_at, id",
    [ST_TASK_DELETE] = "DELETE FROM tasks WHERE id = ?1",
    [ST_PAGE_PUT] = "INSERT INTO pages (task_id, page_index, state, attempts, crash_attempts, started_at, "
                    "finished_at, estimated_memory_bytes, peak_memory_bytes, error, reason) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
                    "ON CONFLICT (task_id, page_index) DO UPDATE SET state = excluded.state, "
                    "attempts = excluded.attempts, crash_attempts = excluded.crash_attempts, "
                    "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                    "estimated_memory_bytes = excluded.estimated_memory_bytes, "
                    "peak_memory_bytes = excluded.peak_memory_bytes, error = excluded.error, reason = excluded.reason",
    [ST_PAGES] = "SELECT page_index, state, attempts, crash_attempts, started_at, finished_at, "
                 "estimated_memory_bytes, peak_memory_bytes, error, reason FROM pages WHERE task_id = ?1 "
                 "ORDER BY page_index",
    [ST_EVENT_ADD] = "INSERT INTO task_events (task_id, time, type, details) VALUES (?1, ?2, ?3, ?4)",
    [ST_EVENTS] = "SELECT time, type, details FROM task_events WHERE task_id = ?1 ORDER BY id",
    [ST_METRIC_ADD] = "INSERT INTO task_metrics (task_id, time, memory_bytes, device, stage) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
};

enum { LIST_LIMIT_MAX = 1000 };

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int op__sqlite_error(sq_store_t *store, int rc, const char *what, op_error_t *err) {
  const char *msg = store->db ? sqlite3_errmsg(store->db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return op_error_set(err, OP_EIO, "internal", "%s: the database stayed busy past the timeout (%s)", what, msg);
  case SQLITE_NOMEM:
    return op_error_set(err, OP_ENOMEM, NULL, "%s: out of memory", what);
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_PERM:
    return op_error_set(err, OP_EIO, "internal", "%s: %s", what, msg);
  default:
    return op_error_set(err, OP_EINTERNAL, NULL, "%s: %s", what, msg);
  }
}

static int not_found(const char *id, op_error_t *err) {
  return op_error_set(err, OP_ENOTFOUND, "not_found", "no task %s", id);
}

/* The cached statement, prepared on first use. Reset by stmt_done. */
static int stmt_get(sq_store_t *store, enum stmt_id which, sqlite3_stmt **out, op_error_t *err) {
  if (store->stmts[which] == NULL) {
    int rc = sqlite3_prepare_v3(store->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &store->stmts[which], NULL);
    if (rc != SQLITE_OK)
      return op__sqlite_error(store, rc, "preparing a statement", err);
  }
  *out = store->stmts[which];
  return 0;
}

static void stmt_done(sqlite3_stmt *st) {
  if (st == NULL)
    return;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* sqlite3_step, with the test's fault (store.h's op_store_test_fail_every):
 * a write statement picked by it fails as a disk error would, without running. */
static int step(sq_store_t *store, sqlite3_stmt *st) {
  int control = st == store->stmts[ST_BEGIN] || st == store->stmts[ST_COMMIT] || st == store->stmts[ST_ROLLBACK];
  if (!control && !sqlite3_stmt_readonly(st) && op__store_fault(&store->base))
    return SQLITE_IOERR;
  return sqlite3_step(st);
}

/* Runs a statement that returns no rows (BEGIN, INSERT, ...); binds are done. */
static int stmt_exec(sq_store_t *store, sqlite3_stmt *st, const char *what, op_error_t *err) {
  int rc = step(store, st);
  int ret = rc == SQLITE_DONE ? 0 : op__sqlite_error(store, rc, what, err);
  stmt_done(st);
  return ret;
}

/* The outermost transaction's statements; store.c does the nesting. */
static int sq_tx(op_store_t *base, op_store_tx_t what, op_error_t *err) {
  sq_store_t *store = sq(base);
  /* A failed statement may already have ended the transaction: then there is nothing to roll back. */
  if (what == OP_STORE_ROLLBACK && sqlite3_get_autocommit(store->db))
    return 0;
  static const enum stmt_id ids[] = {
      [OP_STORE_BEGIN] = ST_BEGIN, [OP_STORE_COMMIT] = ST_COMMIT, [OP_STORE_ROLLBACK] = ST_ROLLBACK};
  static const char *const whats[] = {[OP_STORE_BEGIN] = "starting a transaction",
                                      [OP_STORE_COMMIT] = "committing",
                                      [OP_STORE_ROLLBACK] = "rolling back"};
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ids[what], &st, err);
  return ret < 0 ? ret : stmt_exec(store, st, whats[what], err);
}

/* Binds a fixed-size field: never reads past its end, even without a NUL. */
static int bind_field(sqlite3_stmt *st, int idx, const char *field, size_t size) {
  return sqlite3_bind_text(st, idx, field, (int)strnlen(field, size), SQLITE_TRANSIENT);
}
#define BIND_FIELD(st, idx, field) bind_field((st), (idx), (field), sizeof(field))

/* Binds a C string, or NULL as SQL NULL. */
static int bind_str(sqlite3_stmt *st, int idx, const char *s) {
  return s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, idx);
}

static int bind_task(sqlite3_stmt *st, const op_task_row_t *t) {
  int rc = BIND_FIELD(st, 1, t->id);
  rc = rc ? rc : bind_str(st, 2, (unsigned)t->status < OP_STORE_STATUSES ? op_store_statuses[t->status] : "failed");
  rc = rc ? rc : sqlite3_bind_int(st, 3, t->priority);
  rc = rc ? rc : sqlite3_bind_double(st, 4, t->created_at);
  rc = rc ? rc : sqlite3_bind_double(st, 5, t->started_at);
  rc = rc ? rc : sqlite3_bind_double(st, 6, t->finished_at);
  rc = rc ? rc : sqlite3_bind_int(st, 7, t->pages_total);
  rc = rc ? rc : sqlite3_bind_int(st, 8, t->pages_done);
  rc = rc ? rc : sqlite3_bind_int(st, 9, t->attempts);
  rc = rc ? rc : BIND_FIELD(st, 10, t->device);
  rc = rc ? rc : BIND_FIELD(st, 11, t->worker);
  rc = rc ? rc : sqlite3_bind_int64(st, 12, t->estimated_memory_bytes);
  rc = rc ? rc : sqlite3_bind_int64(st, 13, t->peak_memory_bytes);
  rc = rc ? rc : BIND_FIELD(st, 14, t->failure_reason);
  rc = rc ? rc : BIND_FIELD(st, 15, t->error);
  rc = rc ? rc : BIND_FIELD(st, 16, t->owner);
  rc = rc ? rc : BIND_FIELD(st, 17, t->title);
  rc = rc ? rc : BIND_FIELD(st, 18, t->input_type);
  rc = rc ? rc : BIND_FIELD(st, 19, t->options);
  rc = rc ? rc : sqlite3_bind_int(st, 20, t->cancel_requested);
  rc = rc ? rc : sqlite3_bind_int(st, 21, t->resource_cleanup_completed);
  return rc;
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
  snprintf(dst, size, "%.*s", (int)n, s ? s : "");
}
#define READ_TEXT(st, col, field) read_text((st), (col), (field), sizeof(field))

/* A stored status; a name that is none (a hand-edited database) reads as failed, which nothing runs again. */
static op_task_status_t read_status(sqlite3_stmt *st, int col) {
  const char *text = (const char *)sqlite3_column_text(st, col);
  for (int i = 0; text != NULL && i < OP_STORE_STATUSES; i++)
    if (strcmp(text, op_store_statuses[i]) == 0)
      return (op_task_status_t)i;
  return OP_TASK_FAILED;
}

void op__sqlite_read_task(sqlite3_stmt *st, op_task_row_t *t) {
  memset(t, 0, sizeof *t);
  READ_TEXT(st, 0, t->id);
  t->status = read_status(st, 1);
  t->priority = sqlite3_column_int(st, 2);
  t->created_at = sqlite3_column_double(st, 3);
  t->started_at = sqlite3_column_double(st, 4);
  t->finished_at = sqlite3_column_double(st, 5);
  t->pages_total = sqlite3_column_int(st, 6);
  t->pages_done = sqlite3_column_int(st, 7);
  t->attempts = sqlite3_column_int(st, 8);
  READ_TEXT(st, 9, t->device);
  READ_TEXT(st, 10, t->worker);
  t->estimated_memory_bytes = sqlite3_column_int64(st, 11);
  t->peak_memory_bytes = sqlite3_column_int64(st, 12);
  READ_TEXT(st, 13, t->failure_reason);
  READ_TEXT(st, 14, t->error);
  READ_TEXT(st, 15, t->owner);
  READ_TEXT(st, 16, t->title);
  READ_TEXT(st, 17, t->input_type);
  READ_TEXT(st, 18, t->options);
  t->cancel_requested = sqlite3_column_int(st, 19);
  t->resource_cleanup_completed = sqlite3_column_int(st, 20);
  READ_TEXT(st, 21, t->node);
  t->lease_until = sqlite3_column_double(st, 22);
  t->claim = sqlite3_column_int(st, 23);
}

/* Steps a bound task query to the end into a malloc'd array (caller frees). */
int op__sqlite_collect_tasks(sq_store_t *store, sqlite3_stmt *st, op_task_row_t **rows, size_t *n, op_error_t *err) {
  op_task_row_t *out = NULL;
  size_t count = 0, cap = 0;
  int ret = 0, rc;
  while ((rc = step(store, st)) == SQLITE_ROW) {
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      op_task_row_t *grown = realloc(out, ncap * sizeof *out);
      if (grown == NULL) {
        ret = op_error_set(err, OP_ENOMEM, NULL, "listing tasks: out of memory");
        goto out;
      }
      out = grown;
      cap = ncap;
    }
    op__sqlite_read_task(st, &out[count++]);
  }
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "listing tasks", err);
out:
  stmt_done(st);
  if (ret < 0) {
    free(out);
    out = NULL;
    count = 0;
  }
  *rows = out;
  *n = count;
  return ret;
}

/* A foreign key failure on a child row means the task is not there. */
static int child_error(sq_store_t *store, int rc, const char *task_id, const char *what, op_error_t *err) {
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
    return not_found(task_id, err);
  return op__sqlite_error(store, rc, what, err);
}

/* Appends an event inside the caller's transaction, or as its own statement. */
static int event_add(sq_store_t *store, const char *task_id, double time, const char *type, json_t *details,
                     op_error_t *err) {
  sqlite3_stmt *st = NULL;
  char *text = NULL;
  int ret = stmt_get(store, ST_EVENT_ADD, &st, err);
  if (ret < 0)
    return ret;
  if (details != NULL) {
    text = json_dumps(details, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
      ret = op_error_set(err, OP_ENOMEM, NULL, "adding an event: cannot encode its details");
      goto out;
    }
  }
  int rc = bind_str(st, 1, task_id);
  rc = rc ? rc : sqlite3_bind_double(st, 2, time);
  rc = rc ? rc : bind_str(st, 3, type);
  rc = rc ? rc : bind_str(st, 4, text);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc != SQLITE_DONE)
    ret = child_error(store, rc, task_id, "adding an event", err);
out:
  stmt_done(st);
  free(text);
  return ret;
}

static int sq_task_insert(op_store_t *base, const op_task_row_t *task, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = op_store_begin(base, err);
  if (ret < 0)
    return ret;
  ret = stmt_get(store, ST_TASK_INSERT, &st, err);
  if (ret < 0)
    goto out;
  int rc = bind_task(st, task);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    ret = op_error_set(err, OP_EINTERNAL, NULL, "task %.40s already exists", task->id);
  else if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "inserting a task", err);
  if (ret < 0)
    goto out;
  ret = event_add(store, task->id, task->created_at > 0 ? task->created_at : now_unix(), "created", NULL, err);
out:
  stmt_done(st);
  return op_store_end(base, ret, err);
}

static int sq_task_get(op_store_t *base, const char *id, op_task_row_t *task, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_TASK_GET, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, id);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc == SQLITE_ROW)
    op__sqlite_read_task(st, task);
  else if (rc == SQLITE_DONE)
    ret = not_found(id, err);
  else
    ret = op__sqlite_error(store, rc, "reading a task", err);
  stmt_done(st);
  return ret;
}

static int sq_task_update(op_store_t *base, const op_task_row_t *task, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_TASK_UPDATE, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_task(st, task);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "updating a task", err);
  else if (sqlite3_changes(store->db) == 0)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no task %.40s", task->id);
  stmt_done(st);
  return ret;
}

static int sq_task_list(op_store_t *base, const char *status, const char *owner, const char *after, int limit,
                        op_task_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  double after_created = 0;
  int have_status = status != NULL && status[0] != '\0';
  int have_after = after != NULL && after[0] != '\0';
  *rows = NULL;
  *n = 0;
  if (limit < 1)
    limit = 1;
  if (limit > LIST_LIMIT_MAX)
    limit = LIST_LIMIT_MAX;

  /* The cursor is an id; the order is (created_at, id), so find its place. */
  int ret = 0, rc;
  if (have_after) {
    ret = stmt_get(store, ST_TASK_CREATED_AT, &st, err);
    if (ret < 0)
      return ret;
    rc = bind_str(st, 1, after);
    if (rc == SQLITE_OK)
      rc = step(store, st);
    if (rc == SQLITE_ROW)
      after_created = sqlite3_column_double(st, 0);
    else if (rc == SQLITE_DONE)
      ret = not_found(after, err);
    else
      ret = op__sqlite_error(store, rc, "listing tasks", err);
    stmt_done(st);
    if (ret < 0)
      return ret;
  }

  enum stmt_id which = have_status ? (have_after ? ST_LIST_STATUS_AFTER : ST_LIST_STATUS)
                                   : (have_after ? ST_LIST_ANY_AFTER : ST_LIST_ANY);
  ret = stmt_get(store, which, &st, err);
  if (ret < 0)
    return ret;
  rc = have_status ? bind_str(st, 1, status) : SQLITE_OK;
  rc = rc ? rc : bind_str(st, 2, owner);
  if (have_after) {
    rc = rc ? rc : sqlite3_bind_double(st, 3, after_created);
    rc = rc ? rc : bind_str(st, 4, after);
  }
  rc = rc ? rc : sqlite3_bind_int(st, 5, limit);
  if (rc != SQLITE_OK) {
    ret = op__sqlite_error(store, rc, "listing tasks", err);
    stmt_done(st);
    return ret;
  }
  return op__sqlite_collect_tasks(store, st, rows, n, err);
}

static int sq_tasks_unfinished(op_store_t *base, op_task_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  *rows = NULL;
  *n = 0;
  int ret = stmt_get(store, ST_UNFINISHED, &st, err);
  return ret < 0 ? ret : op__sqlite_collect_tasks(store, st, rows, n, err);
}

static int sq_count_status(op_store_t *base, const char *status, int *count, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_COUNT_STATUS, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, status);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc == SQLITE_ROW)
    *count = sqlite3_column_int(st, 0);
  else
    ret = op__sqlite_error(store, rc, "counting tasks", err);
  stmt_done(st);
  return ret;
}

static int sq_count_tasks(op_store_t *base, op_store_counts_t *out, op_error_t *err) {
  sq_store_t *store = sq(base);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_COUNT_GROUPS, &st, err);
  if (ret < 0)
    return ret;
  int rc;
  while ((rc = step(store, st)) == SQLITE_ROW) {
    const char *status = (const char *)sqlite3_column_text(st, 0);
    int priority = sqlite3_column_int(st, 1);
    for (int i = 0; status != NULL && i < OP_STORE_STATUSES; i++)
      if (strcmp(status, op_store_statuses[i]) == 0 && priority >= 0 && priority <= 9)
        out->counts[i][priority] = sqlite3_column_int(st, 2);
  }
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "counting tasks", err);
  stmt_done(st);
  return ret;
}

static int sq_tasks_finished_before(op_store_t *base, double before, op_task_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  *rows = NULL;
  *n = 0;
  int ret = stmt_get(store, ST_FINISHED_BEFORE, &st, err);
  if (ret < 0)
    return ret;
  int rc = sqlite3_bind_double(st, 1, before);
  if (rc != SQLITE_OK) {
    stmt_done(st);
    return op__sqlite_error(store, rc, "listing finished tasks", err);
  }
  return op__sqlite_collect_tasks(store, st, rows, n, err);
}

static int sq_task_delete(op_store_t *base, const char *id, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  /* One statement, so one implicit transaction: foreign_keys=ON makes the
   * pages, events and metrics go with the task, atomically. */
  int ret = stmt_get(store, ST_TASK_DELETE, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, id);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "deleting a task", err);
  else if (sqlite3_changes(store->db) == 0)
    ret = not_found(id, err);
  stmt_done(st);
  return ret;
}

static int sq_page_put(op_store_t *base, const char *task_id, const op_page_row_t *page, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_PAGE_PUT, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, task_id);
  rc = rc ? rc : sqlite3_bind_int(st, 2, page->index);
  rc = rc ? rc : BIND_FIELD(st, 3, page->state);
  rc = rc ? rc : sqlite3_bind_int(st, 4, page->attempts);
  rc = rc ? rc : sqlite3_bind_int(st, 5, page->crash_attempts);
  rc = rc ? rc : sqlite3_bind_double(st, 6, page->started_at);
  rc = rc ? rc : sqlite3_bind_double(st, 7, page->finished_at);
  rc = rc ? rc : sqlite3_bind_int64(st, 8, page->estimated_memory_bytes);
  rc = rc ? rc : sqlite3_bind_int64(st, 9, page->peak_memory_bytes);
  rc = rc ? rc : BIND_FIELD(st, 10, page->error);
  rc = rc ? rc : BIND_FIELD(st, 11, page->reason);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc != SQLITE_DONE)
    ret = child_error(store, rc, task_id, "writing a page", err);
  stmt_done(st);
  return ret;
}

static int sq_pages(op_store_t *base, const char *task_id, op_page_row_t **rows, size_t *n, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  op_page_row_t *out = NULL;
  size_t count = 0, cap = 0;
  *rows = NULL;
  *n = 0;
  int ret = stmt_get(store, ST_PAGES, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, task_id);
  while (rc == SQLITE_OK && (rc = step(store, st)) == SQLITE_ROW) {
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      op_page_row_t *grown = realloc(out, ncap * sizeof *out);
      if (grown == NULL) {
        ret = op_error_set(err, OP_ENOMEM, NULL, "reading pages: out of memory");
        goto out;
      }
      out = grown;
      cap = ncap;
    }
    op_page_row_t *p = &out[count++];
    memset(p, 0, sizeof *p);
    p->index = sqlite3_column_int(st, 0);
    READ_TEXT(st, 1, p->state);
    p->attempts = sqlite3_column_int(st, 2);
    p->crash_attempts = sqlite3_column_int(st, 3);
    p->started_at = sqlite3_column_double(st, 4);
    p->finished_at = sqlite3_column_double(st, 5);
    p->estimated_memory_bytes = sqlite3_column_int64(st, 6);
    p->peak_memory_bytes = sqlite3_column_int64(st, 7);
    READ_TEXT(st, 8, p->error);
    READ_TEXT(st, 9, p->reason);
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "reading pages", err);
out:
  stmt_done(st);
  if (ret < 0) {
    free(out);
    return ret;
  }
  *rows = out;
  *n = count;
  return 0;
}

static int sq_event_add(op_store_t *base, const char *task_id, const char *type, json_t *details, op_error_t *err) {
  sq_store_t *store = sq(base);
  return event_add(store, task_id, now_unix(), type, details, err);
}

static int sq_events(op_store_t *base, const char *task_id, json_t **events, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  json_t *arr = NULL;
  *events = NULL;
  int ret = stmt_get(store, ST_EVENTS, &st, err);
  if (ret < 0)
    return ret;
  arr = json_array();
  if (arr == NULL) {
    ret = op_error_set(err, OP_ENOMEM, NULL, "reading events: out of memory");
    goto out;
  }
  int rc = bind_str(st, 1, task_id);
  while (rc == SQLITE_OK && (rc = step(store, st)) == SQLITE_ROW) {
    const char *type = (const char *)sqlite3_column_text(st, 1);
    const char *text = (const char *)sqlite3_column_text(st, 2);
    /* Details we wrote ourselves; should one not parse, null beats failing
     * the whole history. */
    json_t *details = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    json_t *ev = json_pack("{s:f, s:s, s:o}", "time", sqlite3_column_double(st, 0), "type", type ? type : "", "details",
                           details ? details : json_null());
    if (ev == NULL || json_array_append_new(arr, ev) != 0) {
      ret = op_error_set(err, OP_ENOMEM, NULL, "reading events: out of memory");
      goto out;
    }
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    ret = op__sqlite_error(store, rc, "reading events", err);
out:
  stmt_done(st);
  if (ret < 0) {
    json_decref(arr);
    return ret;
  }
  *events = arr;
  return 0;
}

static int sq_metric_add(op_store_t *base, const char *task_id, int64_t memory_bytes, const char *device,
                         const char *stage, op_error_t *err) {
  sq_store_t *store = sq(base);
  sqlite3_stmt *st = NULL;
  int ret = stmt_get(store, ST_METRIC_ADD, &st, err);
  if (ret < 0)
    return ret;
  int rc = bind_str(st, 1, task_id);
  rc = rc ? rc : sqlite3_bind_double(st, 2, now_unix());
  rc = rc ? rc : sqlite3_bind_int64(st, 3, memory_bytes);
  rc = rc ? rc : sqlite3_bind_text(st, 4, device ? device : "", -1, SQLITE_TRANSIENT);
  rc = rc ? rc : sqlite3_bind_text(st, 5, stage ? stage : "", -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK)
    rc = step(store, st);
  if (rc != SQLITE_DONE)
    ret = child_error(store, rc, task_id, "recording a memory sample", err);
  stmt_done(st);
  return ret;
}

const op_store_ops_t op__sqlite_ops = {
    .name = "sqlite",
    .close = op__sqlite_close,
    .tx = sq_tx,
    .task_insert = sq_task_insert,
    .task_get = sq_task_get,
    .task_update = sq_task_update,
    .task_list = sq_task_list,
    .tasks_unfinished = sq_tasks_unfinished,
    .count_status = sq_count_status,
    .count_tasks = sq_count_tasks,
    .tasks_finished_before = sq_tasks_finished_before,
    .task_delete = sq_task_delete,
    .page_put = sq_page_put,
    .pages = sq_pages,
    .event_add = sq_event_add,
    .events = sq_events,
    .metric_add = sq_metric_add,
    .node_beat = op__sqlite_node_beat,
    .nodes = op__sqlite_nodes,
    .node_forget = op__sqlite_node_forget,
    .tasks_claim = op__sqlite_tasks_claim,
    .task_hold = op__sqlite_task_hold,
    .leases_renew = op__sqlite_leases_renew,
    .leases_release = op__sqlite_leases_release,
    .task_cancel_request = op__sqlite_task_cancel_request,
    .keeps_blobs = 0,
    .blob_put = op__sqlite_blob_put,
    .blob_get = op__sqlite_blob_get,
};
