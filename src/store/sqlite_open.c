/*
 * sqlite_open.c: opening the SQLite store: the connection's settings (WAL,
 * synchronous=FULL, a busy timeout, foreign keys) and the schema.
 *
 * The schema is a list of migrations; PRAGMA user_version counts the ones
 * applied, and each runs in its own transaction, so a new version appends a
 * step and old databases catch up when they are opened.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/sqlite_internal.h"
#include "util/fs.h"

/* Each string brings the schema from version i to i + 1 and says so itself,
 * so that no SQL is ever built at run time. Append; never edit a shipped step. */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE tasks ("
    "  id TEXT PRIMARY KEY,"
    "  status TEXT NOT NULL,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL,"
    "  started_at REAL NOT NULL DEFAULT 0,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  pages_total INTEGER NOT NULL DEFAULT 0,"
    "  pages_done INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  assigned_device TEXT NOT NULL DEFAULT '',"
    "  worker_id TEXT NOT NULL DEFAULT '',"
    "  estimated_memory_bytes INTEGER NOT NULL DEFAULT 0,"
    "  peak_memory_bytes INTEGER NOT NULL DEFAULT 0,"
    "  failure_reason TEXT NOT NULL DEFAULT '',"
    "  error TEXT NOT NULL DEFAULT '',"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  title TEXT NOT NULL DEFAULT '',"
    "  input_type TEXT NOT NULL DEFAULT '',"
    "  options TEXT NOT NULL DEFAULT '{}',"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
    "  resource_cleanup_completed INTEGER NOT NULL DEFAULT 0"
    ");"
    /* id closes both indexes so that paging (created_at, id) is one range scan. */
    "CREATE INDEX tasks_status_created ON tasks(status, created_at, id);"
    "CREATE INDEX tasks_created ON tasks(created_at, id);"
    "CREATE TABLE pages ("
    "  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  page_index INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  crash_attempts INTEGER NOT NULL DEFAULT 0,"
    "  started_at REAL NOT NULL DEFAULT 0,"
    "  finished_at REAL NOT NULL DEFAULT 0,"
    "  estimated_memory_bytes INTEGER NOT NULL DEFAULT 0,"
    "  peak_memory_bytes INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (task_id, page_index)"
    ");"
    "CREATE TABLE task_events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  time REAL NOT NULL,"
    "  type TEXT NOT NULL,"
    "  details TEXT"
    ");"
    "CREATE INDEX task_events_task ON task_events(task_id, id);"
    "CREATE TABLE task_metrics ("
    "  id INTEGER PRIMARY KEY,"
    "  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  time REAL NOT NULL,"
    "  memory_bytes INTEGER NOT NULL,"
    "  device TEXT NOT NULL DEFAULT '',"
    "  stage TEXT NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX task_metrics_task ON task_metrics(task_id);"
    "PRAGMA user_version = 1;",
    /* 2: the nodes (on SQLite, this one), as PostgreSQL has them. */
    "CREATE TABLE nodes ("
    "  id TEXT PRIMARY KEY,"
    "  host TEXT NOT NULL DEFAULT '',"
    "  started_at REAL NOT NULL,"
    "  heartbeat_at REAL NOT NULL,"
    "  draining INTEGER NOT NULL DEFAULT 0,"
    "  workers INTEGER NOT NULL DEFAULT 0,"
    "  pages_running INTEGER NOT NULL DEFAULT 0,"
    "  memory TEXT NOT NULL DEFAULT '{}'"
    ");"
    "PRAGMA user_version = 2;",
    /* 3: leases, as PostgreSQL has them (one node holds every task here). */
    "ALTER TABLE tasks ADD COLUMN node_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX tasks_claimable ON tasks(priority DESC, created_at, id) WHERE status IN ('queued', 'running');"
    "PRAGMA user_version = 3;",
    /* 4: a failed page's reason, so that a task resumed after a restart
     * ends with its pages' reasons (not "internal"). */
    "ALTER TABLE pages ADD COLUMN reason TEXT NOT NULL DEFAULT '';"
    "PRAGMA user_version = 4;",
};
enum { SCHEMA_VERSION = (int)(sizeof migrations / sizeof migrations[0]) };

/* Reads PRAGMA user_version (its value cannot be bound, and needs none). */
static int read_user_version(sq_store_t *store, int *version, op_error_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(store->db, "PRAGMA user_version", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *version = sqlite3_column_int(st, 0);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_OK ? 0 : op__sqlite_error(store, rc, "reading the schema version", err);
}

/* Applies the migrations the database lacks, one transaction each. The
 * version is read again inside each transaction because another connection
 * may have migrated while this one waited for the lock. */
static int migrate(sq_store_t *store, op_error_t *err) {
  for (;;) {
    int version = 0, ret = op_store_begin(&store->base, err);
    if (ret < 0)
      return ret;
    ret = read_user_version(store, &version, err);
    if (ret == 0 && version > SCHEMA_VERSION)
      ret = op_error_set(err, OP_EUSAGE, "bad_options",
                         "the database's schema version %d is newer than this ocrpool's (%d): upgrade ocrpool", version,
                         SCHEMA_VERSION);
    if (ret == 0 && version == SCHEMA_VERSION) {
      store->base.schema_version = version;
      return op_store_end(&store->base, 0, err);
    }
    if (ret == 0) {
      int rc = sqlite3_exec(store->db, migrations[version], NULL, NULL, NULL);
      if (rc != SQLITE_OK)
        ret = op__sqlite_error(store, rc, "migrating the database", err);
    }
    int after = 0;
    if (ret == 0)
      ret = read_user_version(store, &after, err);
    if (ret == 0 && after != version + 1)
      ret = op_error_set(err, OP_EINTERNAL, NULL, "migration %d left the schema at version %d", version + 1, after);
    ret = op_store_end(&store->base, ret, err);
    if (ret < 0)
      return ret;
  }
}

/* Runs a PRAGMA that sets a connection setting and checks its answer, if any. */
static int set_pragma(sq_store_t *store, const char *sql, const char *expect, op_error_t *err) {
  sqlite3_stmt *st = NULL;
  int ret = 0;
  int rc = sqlite3_prepare_v2(store->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    ret = op__sqlite_error(store, rc, sql, err);
    goto out;
  }
  if (expect != NULL) {
    const char *got = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (got == NULL || strcmp(got, expect) != 0)
      ret = op_error_set(err, OP_EIO, "internal", "%s: the database answered \"%s\", not \"%s\"", sql, got ? got : "",
                         expect);
  }
out:
  sqlite3_finalize(st);
  return ret;
}

int op__sqlite_open(const char *path, op_store_t **store_out, op_error_t *err) {
  *store_out = NULL;
  sq_store_t *store = calloc(1, sizeof *store);
  if (store == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "opening the store: out of memory");
  store->base.ops = &op__sqlite_ops;
  int ret = 0;
  int rc = sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    ret = op__sqlite_error(store, rc, path, err);
    goto out;
  }
  sqlite3_extended_result_codes(store->db, 1);
  /* busy_timeout first: switching to WAL takes a lock another opener may hold. */
  sqlite3_busy_timeout(store->db, 5000);
  ret = set_pragma(store, "PRAGMA journal_mode = WAL", "wal", err);
  if (ret == 0) { /* each commit on the disk unless the operator chose speed: docs/security.md */
    ret = set_pragma(store, op_sync_full() ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", NULL, err);
  }
  if (ret == 0)
    ret = set_pragma(store, "PRAGMA foreign_keys = ON", NULL, err);
  if (ret == 0)
    ret = migrate(store, err);
out:
  if (ret < 0)
    op__sqlite_close(&store->base);
  else
    *store_out = &store->base;
  return ret;
}

void op__sqlite_close(op_store_t *base) {
  sq_store_t *store = sq(base);
  for (int i = 0; i < ST_COUNT_; i++)
    sqlite3_finalize(store->stmts[i]);
  /* Every statement is finalized, so close cannot be refused for busy ones. */
  sqlite3_close(store->db);
  free(store);
}
