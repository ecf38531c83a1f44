/*
 * postgres.c: the store on PostgreSQL, for several nodes on one database (see
 * store.h); the queries. Connecting, the schema and reconnecting are in
 * postgres_open.c.
 *
 * Each statement is prepared by name on its connection at first use and run
 * with text parameters: values are only ever bound, never formatted into SQL.
 * Every string sent is valid UTF-8 (a byte that is not becomes '?'), because
 * the server refuses what SQLite would keep; times the store stamps itself
 * come from the database's clock, so that every node agrees on them.
 *
 * A failed statement aborts PostgreSQL's transaction; store.c rolls back at
 * the outermost end, and COMMIT checks first that nothing was lost.
 */
#include "store/postgres_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Paging: the four shapes of the list query, so each one is an index range
 * scan. $1 is the owner (NULL = any), $2 the limit, then the status if any,
 * then the cursor's (created_at, id) if any. */
#define LIST_OWNER "($1::text IS NULL OR owner = $1::text)"
#define LIST_ORDER " ORDER BY created_at DESC, id DESC LIMIT $2"

/* The database's clock in unix seconds: one clock for every node. */
#define DB_NOW "extract(epoch from clock_timestamp())::double precision"

static const struct {
  const char *sql;
  int writes; /* the test's fault applies to it */
} stmts[PST_COUNT_] = {
    [PST_TASK_INSERT] =
        {"INSERT INTO tasks (" TASK_COLS_WRITTEN ") VALUES "
         "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
         1},
    [PST_TASK_GET] = {"SELECT " TASK_COLS " FROM tasks WHERE id = $1", 0},
    [PST_TASK_UPDATE] = {"UPDATE tasks SET status = $2, priority = $3, created_at = $4, started_at = $5, "
                         "finished_at = $6, pages_total = $7, pages_done = $8, attempts = $9, assigned_device = $10, "
                         "worker_id = $11, estimated_memory_bytes = $12, peak_memory_bytes = $13, "
                         "failure_reason = $14, error = $15, owner = $16, title = $17, input_type = $18, "
                         "options = $19, cancel_requested = $20, resource_cleanup_completed = $21 WHERE id = $1",
                         1},
    [PST_TASK_CREATED_AT] = {"SELECT created_at FROM tasks WHERE id = $1", 0},
    [PST_LIST_ANY] = {"SELECT " TASK_COLS " FROM tasks WHERE " LIST_OWNER LIST_ORDER, 0},
    [PST_LIST_ANY_AFTER] = {"SELECT " TASK_COLS
                            " FROM tasks WHERE (created_at, id) < ($3, $4) AND " LIST_OWNER LIST_ORDER,
                            0},
    [PST_LIST_STATUS] = {"SELECT " TASK_COLS " FROM tasks WHERE status = $3 AND " LIST_OWNER LIST_ORDER, 0},
    [PST_LIST_STATUS_AFTER] = {"SELECT " TASK_COLS " FROM tasks WHERE status = $3 AND (created_at, id) < ($4, $5) "
                               "AND " LIST_OWNER LIST_ORDER,
                               0},
    [PST_UNFINISHED] = {"SELECT " TASK_COLS " FROM tasks WHERE status IN ('queued', 'running') "
                        "ORDER BY created_at, id",
                        0},
    [PST_COUNT_STATUS] = {"SELECT count(*) FROM tasks WHERE status = $1", 0},
    [PST_COUNT_GROUPS] = {"SELECT status, priority, count(*) FROM tasks GROUP BY status, priority", 0},
    [PST_FINISHED_BEFORE] = {"SELECT " TASK_COLS " FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled') "
                             "AND finished_at < $1 ORDER BY finished_at, id",
                             0},
    [PST_TASK_DELETE] = {"DELETE FROM tasks WHERE id = $1", 1},
    [PST_PAGE_PUT] = {"INSERT INTO pages (task_id, page_index, state, attempts, crash_attempts, started_at, "
                      "finished_at, estimated_memory_bytes, peak_memory_bytes, error, reason) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                      "ON CONFLICT (task_id, page_index) DO UPDATE SET state = excluded.state, "
                      "attempts = excluded.attempts, crash_attempts = excluded.crash_attempts, "
                      "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                      "estimated_memory_bytes = excluded.estimated_memory_bytes, "
                      "peak_memory_bytes = excluded.peak_memory_bytes, error = excluded.error, "
                      "reason = excluded.reason",
                      1},
    [PST_PAGES] = {"SELECT page_index, state, attempts, crash_attempts, started_at, finished_at, "
                   "estimated_memory_bytes, peak_memory_bytes, error, reason FROM pages WHERE task_id = $1 "
                   "ORDER BY page_index",
                   0},
    /* $2 NULL: now, by the database's clock. */
    [PST_EVENT_ADD] = {"INSERT INTO task_events (task_id, time, type, details) "
                       "VALUES ($1, COALESCE($2::double precision, " DB_NOW "), $3, $4::jsonb)",
                       1},
    [PST_EVENTS] = {"SELECT time, type, details::text FROM task_events WHERE task_id = $1 ORDER BY id", 0},
    [PST_METRIC_ADD] = {"INSERT INTO task_metrics (task_id, time, memory_bytes, device, stage) "
                        "VALUES ($1, " DB_NOW ", $2, $3, $4)",
                        1},
};

enum { LIST_LIMIT_MAX = 1000, PARAMS_MAX = 21 };

/* ---- parameters ---- */

/* A statement's text parameters. Strings are used in place when they are
 * valid UTF-8 and end inside their field; else a fixed copy is owned here. */
typedef struct params_s {
  int n;
  int nomem;
  const char *values[PARAMS_MAX];
  char *owned[PARAMS_MAX];
  char numbers[PARAMS_MAX][32];
} params_t;

/* The length of the valid UTF-8 character at s (at most n bytes), 0 if none. */
static size_t utf8_char(const unsigned char *s, size_t n) {
  if (s[0] < 0x80)
    return 1;
  size_t len = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;
  if (len == 0 || len > n)
    return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
  if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
      (s[0] == 0xf4 && s[1] >= 0x90))
    return 0;
  return len;
}

static int utf8_valid(const char *s, size_t n) {
  for (size_t i = 0, len; i < n; i += len)
    if ((len = utf8_char((const unsigned char *)s + i, n - i)) == 0)
      return 0;
  return 1;
}

/* Adds the string s, read up to max bytes (a fixed field may lack its NUL);
 * NULL is SQL NULL. */
static void p_text(params_t *p, const char *s, size_t max) {
  int i = p->n++;
  p->values[i] = s;
  if (s == NULL)
    return;
  size_t n = strnlen(s, max);
  if (n < max && utf8_valid(s, n))
    return;
  char *copy = malloc(n + 1);
  if (copy == NULL) {
    p->nomem = 1;
    return;
  }
  for (size_t k = 0, len; k < n; k += len) {
    len = utf8_char((const unsigned char *)s + k, n - k);
    if (len == 0) {
      copy[k] = '?';
      len = 1;
    } else {
      memcpy(copy + k, s + k, len);
    }
  }
  copy[n] = '\0';
  p->owned[i] = copy;
  p->values[i] = copy;
}
#define P_FIELD(p, field) p_text((p), (field), sizeof(field))

static void p_str(params_t *p, const char *s) {
  p_text(p, s, SIZE_MAX);
}

static void p_int64(params_t *p, int64_t v) {
  snprintf(p->numbers[p->n], sizeof p->numbers[0], "%" PRId64, v);
  p->values[p->n] = p->numbers[p->n];
  p->n++;
}

/* %.17g: every double reads back as itself. */
static void p_double(params_t *p, double v) {
  snprintf(p->numbers[p->n], sizeof p->numbers[0], "%.17g", v);
  p->values[p->n] = p->numbers[p->n];
  p->n++;
}

static void params_free(params_t *p) {
  for (int i = 0; i < p->n; i++)
    free(p->owned[i]);
}

static void task_params(params_t *p, const op_task_row_t *t) {
  P_FIELD(p, t->id);
  p_str(p, (unsigned)t->status < OP_STORE_STATUSES ? op_store_statuses[t->status] : "failed");
  p_int64(p, t->priority);
  p_double(p, t->created_at);
  p_double(p, t->started_at);
  p_double(p, t->finished_at);
  p_int64(p, t->pages_total);
  p_int64(p, t->pages_done);
  p_int64(p, t->attempts);
  P_FIELD(p, t->device);
  P_FIELD(p, t->worker);
  p_int64(p, t->estimated_memory_bytes);
  p_int64(p, t->peak_memory_bytes);
  P_FIELD(p, t->failure_reason);
  P_FIELD(p, t->error);
  P_FIELD(p, t->owner);
  P_FIELD(p, t->title);
  P_FIELD(p, t->input_type);
  P_FIELD(p, t->options);
  p_int64(p, t->cancel_requested);
  p_int64(p, t->resource_cleanup_completed);
}

/* ---- running statements ---- */

static int not_found(const char *id, op_error_t *err) {
  return op_error_set(err, OP_ENOTFOUND, "not_found", "no task %.40s", id);
}

static int prepare(pg_store_t *store, enum pg_stmt_id id, const char *name, const char *what, op_error_t *err) {
  if (store->prepared[id])
    return 0;
  PGresult *res = PQprepare(store->conn, name, stmts[id].sql, 0, NULL);
  int ret = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : op__postgres_error(store, res, what, err);
  PQclear(res);
  store->prepared[id] = ret == 0;
  return ret;
}

/*
 * Runs statement id with p's parameters (and frees them). On success *out is
 * its result, which the caller PQclears. A connection lost earlier is reset
 * first when no transaction is open on it. A write picked by the test's fault
 * does not run and fails as an I/O error would.
 */
static int run_once(pg_store_t *store, enum pg_stmt_id id, params_t *p, PGresult **out, const char *what,
                    op_error_t *err) {
  char name[24];
  *out = NULL;
  store->sqlstate[0] = '\0';
  int ret = op__postgres_ready(store, store->base.tx_depth == 0, err);
  if (ret == 0 && p->nomem)
    ret = op_error_set(err, OP_ENOMEM, NULL, "%s: out of memory", what);
  if (ret == 0 && stmts[id].writes && op__store_fault(&store->base))
    ret = op_error_set(err, OP_EIO, "internal", "%s: I/O error (a test's fault)", what);
  snprintf(name, sizeof name, "ocrpool_%d", (int)id);
  if (ret == 0)
    ret = prepare(store, id, name, what, err);
  if (ret == 0) {
    PGresult *res = PQexecPrepared(store->conn, name, p->n, p->values, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(res);
    if (res != NULL && (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK))
      *out = res;
    else
      ret = op__postgres_error(store, res, what, err);
    if (ret < 0)
      PQclear(res);
  }
  return ret;
}

/* run_once, and once more on a fresh session when a read outside a
 * transaction found the connection gone (the database restarted): idle
 * connections then see a restart as a pause, not an error. A write is never
 * repeated: it may have committed before the connection broke. */
static int run(pg_store_t *store, enum pg_stmt_id id, params_t *p, PGresult **out, const char *what, op_error_t *err) {
  int ret = run_once(store, id, p, out, what, err);
  if (ret < 0 && !stmts[id].writes && store->base.tx_depth == 0 && PQstatus(store->conn) == CONNECTION_BAD)
    ret = run_once(store, id, p, out, what, err);
  params_free(p);
  return ret;
}

/* A write that must touch one row: none means there is no such task. */
static int run_one_row(pg_store_t *store, enum pg_stmt_id id, params_t *p, const char *task_id, const char *what,
                       op_error_t *err) {
  PGresult *res = NULL;
  int ret = run(store, id, p, &res, what, err);
  if (ret == 0 && strcmp(PQcmdTuples(res), "0") == 0)
    ret = not_found(task_id, err);
  PQclear(res);
  return ret;
}

/* A write of a task's child row (page, event, metric): a foreign key failure
 * means the task is not there. */
static int run_child(pg_store_t *store, enum pg_stmt_id id, params_t *p, const char *task_id, const char *what,
                     op_error_t *err) {
  PGresult *res = NULL;
  int ret = run(store, id, p, &res, what, err);
  PQclear(res);
  if (ret < 0 && strcmp(store->sqlstate, "23503") == 0) /* foreign_key_violation */
    ret = not_found(task_id, err);
  return ret;
}

/* ---- reading results ---- */

#define GET_TEXT(res, row, col, field) op__postgres_get_text((res), (row), (col), (field), sizeof(field))

static int64_t get_int64(const PGresult *res, int row, int col) {
  return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static int get_int(const PGresult *res, int row, int col) {
  return (int)get_int64(res, row, col);
}

static double get_double(const PGresult *res, int row, int col) {
  return strtod(PQgetvalue(res, row, col), NULL);
}

/* A stored status; a name that is none (a hand-edited database) reads as failed, which nothing runs again. */
static op_task_status_t get_status(const PGresult *res, int row, int col) {
  const char *text = PQgetvalue(res, row, col);
  for (int i = 0; i < OP_STORE_STATUSES; i++)
    if (strcmp(text, op_store_statuses[i]) == 0)
      return (op_task_status_t)i;
  return OP_TASK_FAILED;
}

void op__postgres_read_task(const PGresult *res, int r, op_task_row_t *t) {
  memset(t, 0, sizeof *t);
  GET_TEXT(res, r, 0, t->id);
  t->status = get_status(res, r, 1);
  t->priority = get_int(res, r, 2);
  t->created_at = get_double(res, r, 3);
  t->started_at = get_double(res, r, 4);
  t->finished_at = get_double(res, r, 5);
  t->pages_total = get_int(res, r, 6);
  t->pages_done = get_int(res, r, 7);
  t->attempts = get_int(res, r, 8);
  GET_TEXT(res, r, 9, t->device);
  GET_TEXT(res, r, 10, t->worker);
  t->estimated_memory_bytes = get_int64(res, r, 11);
  t->peak_memory_bytes = get_int64(res, r, 12);
  GET_TEXT(res, r, 13, t->failure_reason);
  GET_TEXT(res, r, 14, t->error);
  GET_TEXT(res, r, 15, t->owner);
  GET_TEXT(res, r, 16, t->title);
  GET_TEXT(res, r, 17, t->input_type);
  GET_TEXT(res, r, 18, t->options);
  t->cancel_requested = get_int(res, r, 19);
  t->resource_cleanup_completed = get_int(res, r, 20);
  GET_TEXT(res, r, 21, t->node);
  t->lease_until = get_double(res, r, 22);
  t->claim = get_int(res, r, 23);
}

/* Runs a task query into a malloc'd array (caller frees; NULL when empty). */
static int list_tasks(pg_store_t *store, enum pg_stmt_id id, params_t *p, op_task_row_t **rows, size_t *n,
                      op_error_t *err) {
  PGresult *res = NULL;
  *rows = NULL;
  *n = 0;
  int ret = run(store, id, p, &res, "listing tasks", err);
  if (ret < 0)
    return ret;
  int count = PQntuples(res);
  op_task_row_t *out = count > 0 ? malloc((size_t)count * sizeof *out) : NULL;
  if (count > 0 && out == NULL)
    ret = op_error_set(err, OP_ENOMEM, NULL, "listing tasks: out of memory");
  for (int i = 0; out != NULL && i < count; i++)
    op__postgres_read_task(res, i, &out[i]);
  PQclear(res);
  if (ret == 0) {
    *rows = out;
    *n = (size_t)count;
  }
  return ret;
}

/* ---- the methods ---- */

/* The outermost transaction's statements; store.c does the nesting. */
static int pg_tx(op_store_t *base, op_store_tx_t what, op_error_t *err) {
  pg_store_t *store = pg(base);
  PGTransactionStatusType in = PQtransactionStatus(store->conn);
  switch (what) {
  case OP_STORE_BEGIN: {
    /* Not in a transaction yet: a lost connection may be reset, and a BEGIN
     * that found it gone may be sent again on a fresh session. */
    int ret = op__postgres_ready(store, 1, err);
    ret = ret < 0 ? ret : op__postgres_exec(store, "BEGIN", "starting a transaction", NULL, err);
    if (ret < 0 && PQstatus(store->conn) == CONNECTION_BAD && op__postgres_ready(store, 1, err) == 0)
      ret = op__postgres_exec(store, "BEGIN", "starting a transaction", NULL, err);
    return ret;
  }
  case OP_STORE_COMMIT: {
    /* A statement failed and PostgreSQL aborted the transaction: its COMMIT
     * would answer "ROLLBACK" as if all were well. */
    if (in == PQTRANS_INERROR)
      return op_error_set(err, OP_EIO, "internal", "committing: a statement failed; nothing of it was recorded");
    int ret = op__postgres_ready(store, 0, err);
    PGresult *res = NULL;
    ret = ret < 0 ? ret : op__postgres_exec(store, "COMMIT", "committing", &res, err);
    if (ret == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0)
      ret = op_error_set(err, OP_EIO, "internal", "committing: PostgreSQL rolled the transaction back");
    PQclear(res);
    return ret;
  }
  case OP_STORE_ROLLBACK:
    /* Nothing is open (a lost connection ended it on the server). */
    if (in == PQTRANS_IDLE || in == PQTRANS_UNKNOWN)
      return 0;
    return op__postgres_exec(store, "ROLLBACK", "rolling back", NULL, err);
  }
  return op_error_set(err, OP_EINTERNAL, NULL, "no such transaction statement %d", (int)what);
}

/* Appends an event; time 0 means now by the database's clock. */
static int event_add(pg_store_t *store, const char *task_id, double time, const char *type, json_t *details,
                     op_error_t *err) {
  char *text = NULL;
  if (details != NULL && (text = json_dumps(details, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "adding an event: cannot encode its details");
  params_t p = {0};
  p_str(&p, task_id);
  if (time > 0)
    p_double(&p, time);
  else
    p_str(&p, NULL);
  p_str(&p, type);
  p_str(&p, text);
  int ret = run_child(store, PST_EVENT_ADD, &p, task_id, "adding an event", err);
  free(text);
  return ret;
}

/* The task and its "created" event, in one transaction. */
static int pg_task_insert(op_store_t *base, const op_task_row_t *task, op_error_t *err) {
  pg_store_t *store = pg(base);
  int ret = op_store_begin(base, err);
  if (ret < 0)
    return ret;
  params_t p = {0};
  task_params(&p, task);
  PGresult *res = NULL;
  ret = run(store, PST_TASK_INSERT, &p, &res, "inserting a task", err);
  PQclear(res);
  if (ret < 0 && strcmp(store->sqlstate, "23505") == 0) /* unique_violation */
    ret = op_error_set(err, OP_EINTERNAL, NULL, "task %.40s already exists", task->id);
  if (ret == 0)
    ret = event_add(store, task->id, task->created_at, "created", NULL, err);
  return op_store_end(base, ret, err);
}

static int pg_task_get(op_store_t *base, const char *id, op_task_row_t *task, op_error_t *err) {
  params_t p = {0};
  p_str(&p, id);
  PGresult *res = NULL;
  int ret = run(pg(base), PST_TASK_GET, &p, &res, "reading a task", err);
  if (ret < 0)
    return ret;
  if (PQntuples(res) > 0)
    op__postgres_read_task(res, 0, task);
  else
    ret = not_found(id, err);
  PQclear(res);
  return ret;
}

static int pg_task_update(op_store_t *base, const op_task_row_t *task, op_error_t *err) {
  params_t p = {0};
  task_params(&p, task);
  return run_one_row(pg(base), PST_TASK_UPDATE, &p, task->id, "updating a task", err);
}

/* The cursor is an id; the order is (created_at, id), so find its place. */
static int cursor_created_at(pg_store_t *store, const char *after, double *created_at, op_error_t *err) {
  params_t p = {0};
  p_str(&p, after);
  PGresult *res = NULL;
  int ret = run(store, PST_TASK_CREATED_AT, &p, &res, "listing tasks", err);
  if (ret < 0)
    return ret;
  if (PQntuples(res) > 0)
    *created_at = get_double(res, 0, 0);
  else
    ret = not_found(after, err);
  PQclear(res);
  return ret;
}

static int pg_task_list(op_store_t *base, const char *status, const char *owner, const char *after, int limit,
                        op_task_row_t **rows, size_t *n, op_error_t *err) {
  pg_store_t *store = pg(base);
  double after_created = 0;
  int have_status = status != NULL && status[0] != '\0';
  int have_after = after != NULL && after[0] != '\0';
  *rows = NULL;
  *n = 0;
  if (limit < 1)
    limit = 1;
  if (limit > LIST_LIMIT_MAX)
    limit = LIST_LIMIT_MAX;
  if (have_after) {
    int ret = cursor_created_at(store, after, &after_created, err);
    if (ret < 0)
      return ret;
  }
  params_t p = {0};
  p_str(&p, owner);
  p_int64(&p, limit);
  if (have_status)
    p_str(&p, status);
  if (have_after) {
    p_double(&p, after_created);
    p_str(&p, after);
  }
  enum pg_stmt_id which = have_status ? (have_after ? PST_LIST_STATUS_AFTER : PST_LIST_STATUS)
                                      : (have_after ? PST_LIST_ANY_AFTER : PST_LIST_ANY);
  return list_tasks(store, which, &p, rows, n, err);
}

static int pg_tasks_unfinished(op_store_t *base, op_task_row_t **rows, size_t *n, op_error_t *err) {
  params_t p = {0};
  return list_tasks(pg(base), PST_UNFINISHED, &p, rows, n, err);
}

static int pg_count_status(op_store_t *base, const char *status, int *count, op_error_t *err) {
  params_t p = {0};
  p_str(&p, status);
  PGresult *res = NULL;
  int ret = run(pg(base), PST_COUNT_STATUS, &p, &res, "counting tasks", err);
  if (ret < 0)
    return ret;
  *count = PQntuples(res) > 0 ? get_int(res, 0, 0) : 0;
  PQclear(res);
  return 0;
}

static int pg_count_tasks(op_store_t *base, op_store_counts_t *out, op_error_t *err) {
  memset(out, 0, sizeof *out);
  params_t p = {0};
  PGresult *res = NULL;
  int ret = run(pg(base), PST_COUNT_GROUPS, &p, &res, "counting tasks", err);
  if (ret < 0)
    return ret;
  for (int r = 0; r < PQntuples(res); r++) {
    const char *status = PQgetvalue(res, r, 0);
    int priority = get_int(res, r, 1);
    for (int i = 0; i < OP_STORE_STATUSES; i++)
      if (strcmp(status, op_store_statuses[i]) == 0 && priority >= 0 && priority <= 9)
        out->counts[i][priority] = get_int(res, r, 2);
  }
  PQclear(res);
  return 0;
}

static int pg_tasks_finished_before(op_store_t *base, double before, op_task_row_t **rows, size_t *n, op_error_t *err) {
  params_t p = {0};
  p_double(&p, before);
  return list_tasks(pg(base), PST_FINISHED_BEFORE, &p, rows, n, err);
}

/* One statement: ON DELETE CASCADE takes the pages, events and metrics along. */
static int pg_task_delete(op_store_t *base, const char *id, op_error_t *err) {
  params_t p = {0};
  p_str(&p, id);
  return run_one_row(pg(base), PST_TASK_DELETE, &p, id, "deleting a task", err);
}

static int pg_page_put(op_store_t *base, const char *task_id, const op_page_row_t *page, op_error_t *err) {
  params_t p = {0};
  p_str(&p, task_id);
  p_int64(&p, page->index);
  P_FIELD(&p, page->state);
  p_int64(&p, page->attempts);
  p_int64(&p, page->crash_attempts);
  p_double(&p, page->started_at);
  p_double(&p, page->finished_at);
  p_int64(&p, page->estimated_memory_bytes);
  p_int64(&p, page->peak_memory_bytes);
  P_FIELD(&p, page->error);
  P_FIELD(&p, page->reason);
  return run_child(pg(base), PST_PAGE_PUT, &p, task_id, "writing a page", err);
}

static int pg_pages(op_store_t *base, const char *task_id, op_page_row_t **rows, size_t *n, op_error_t *err) {
  params_t p = {0};
  p_str(&p, task_id);
  PGresult *res = NULL;
  *rows = NULL;
  *n = 0;
  int ret = run(pg(base), PST_PAGES, &p, &res, "reading pages", err);
  if (ret < 0)
    return ret;
  int count = PQntuples(res);
  op_page_row_t *out = count > 0 ? calloc((size_t)count, sizeof *out) : NULL;
  if (count > 0 && out == NULL)
    ret = op_error_set(err, OP_ENOMEM, NULL, "reading pages: out of memory");
  for (int r = 0; out != NULL && r < count; r++) {
    op_page_row_t *pr = &out[r];
    pr->index = get_int(res, r, 0);
    GET_TEXT(res, r, 1, pr->state);
    pr->attempts = get_int(res, r, 2);
    pr->crash_attempts = get_int(res, r, 3);
    pr->started_at = get_double(res, r, 4);
    pr->finished_at = get_double(res, r, 5);
    pr->estimated_memory_bytes = get_int64(res, r, 6);
    pr->peak_memory_bytes = get_int64(res, r, 7);
    GET_TEXT(res, r, 8, pr->error);
    GET_TEXT(res, r, 9, pr->reason);
  }
  PQclear(res);
  if (ret == 0) {
    *rows = out;
    *n = (size_t)count;
  }
  return ret;
}

static int pg_event_add(op_store_t *base, const char *task_id, const char *type, json_t *details, op_error_t *err) {
  return event_add(pg(base), task_id, 0, type, details, err);
}

static int pg_events(op_store_t *base, const char *task_id, json_t **events, op_error_t *err) {
  params_t p = {0};
  p_str(&p, task_id);
  PGresult *res = NULL;
  *events = NULL;
  int ret = run(pg(base), PST_EVENTS, &p, &res, "reading events", err);
  if (ret < 0)
    return ret;
  json_t *arr = json_array();
  for (int r = 0; arr != NULL && r < PQntuples(res); r++) {
    /* Details we wrote ourselves; should one not parse, null beats failing
     * the whole history. */
    json_t *details = PQgetisnull(res, r, 2) ? NULL : json_loads(PQgetvalue(res, r, 2), JSON_DECODE_ANY, NULL);
    json_t *ev = json_pack("{s:f, s:s, s:o}", "time", get_double(res, r, 0), "type", PQgetvalue(res, r, 1), "details",
                           details ? details : json_null());
    if (ev == NULL || json_array_append_new(arr, ev) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  PQclear(res);
  if (arr == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "reading events: out of memory");
  *events = arr;
  return 0;
}

static int pg_metric_add(op_store_t *base, const char *task_id, int64_t memory_bytes, const char *device,
                         const char *stage, op_error_t *err) {
  params_t p = {0};
  p_str(&p, task_id);
  p_int64(&p, memory_bytes);
  p_str(&p, device ? device : "");
  p_str(&p, stage ? stage : "");
  return run_child(pg(base), PST_METRIC_ADD, &p, task_id, "recording a memory sample", err);
}

static int pg_unreachable(const op_store_t *base) {
  return PQstatus(((const pg_store_t *)base)->conn) != CONNECTION_OK;
}

const op_store_ops_t op__postgres_ops = {
    .name = "postgresql",
    .close = op__postgres_close,
    .tx = pg_tx,
    .task_insert = pg_task_insert,
    .task_get = pg_task_get,
    .task_update = pg_task_update,
    .task_list = pg_task_list,
    .tasks_unfinished = pg_tasks_unfinished,
    .count_status = pg_count_status,
    .count_tasks = pg_count_tasks,
    .tasks_finished_before = pg_tasks_finished_before,
    .task_delete = pg_task_delete,
    .page_put = pg_page_put,
    .pages = pg_pages,
    .event_add = pg_event_add,
    .events = pg_events,
    .metric_add = pg_metric_add,
    .node_beat = op__postgres_node_beat,
    .nodes = op__postgres_nodes,
    .node_forget = op__postgres_node_forget,
    .tasks_claim = op__postgres_tasks_claim,
    .task_hold = op__postgres_task_hold,
    .leases_renew = op__postgres_leases_renew,
    .leases_release = op__postgres_leases_release,
    .task_cancel_request = op__postgres_task_cancel_request,
    .listen = op__postgres_listen,
    .notify = op__postgres_notify,
    .notified = op__postgres_notified,
    .keeps_blobs = 1,
    .blob_put = op__postgres_blob_put,
    .blob_get = op__postgres_blob_get,
    .unreachable = pg_unreachable,
};
