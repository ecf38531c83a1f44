/*
 * postgres_open.c: connecting to PostgreSQL, the schema's migrations, and
 * reconnecting after the server dropped the connection.
 *
 * The schema is a list of migrations; the one-row table ocrpool_schema counts
 * the ones applied. Each step runs in its own transaction that first takes an
 * advisory lock and then reads the version again, so that several nodes
 * starting at once against one database migrate it once, one after another.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_internal.h"
#include "util/log.h"

/* Each string brings the schema from version i to i + 1 and says so itself,
 * so that no SQL is ever built at run time. Append; never edit a shipped step.
 * The columns mirror sqlite_open.c's one for one; what several nodes need
 * (who holds a task, leases) comes as a later step. Ids sort bytewise
 * (COLLATE "C"), as SQLite sorts them, whatever the database's locale. */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE tasks ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  status text NOT NULL,"
    "  priority integer NOT NULL DEFAULT 0,"
    "  created_at double precision NOT NULL,"
    "  started_at double precision NOT NULL DEFAULT 0,"
    "  finished_at double precision NOT NULL DEFAULT 0,"
    "  pages_total integer NOT NULL DEFAULT 0,"
    "  pages_done integer NOT NULL DEFAULT 0,"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  assigned_device text NOT NULL DEFAULT '',"
    "  worker_id text NOT NULL DEFAULT '',"
    "  estimated_memory_bytes bigint NOT NULL DEFAULT 0,"
    "  peak_memory_bytes bigint NOT NULL DEFAULT 0,"
    "  failure_reason text NOT NULL DEFAULT '',"
    "  error text NOT NULL DEFAULT '',"
    "  owner text NOT NULL DEFAULT '',"
    "  title text NOT NULL DEFAULT '',"
    "  input_type text NOT NULL DEFAULT '',"
    "  options text NOT NULL DEFAULT '{}',"
    "  cancel_requested integer NOT NULL DEFAULT 0,"
    "  resource_cleanup_completed integer NOT NULL DEFAULT 0"
    ");"
    /* id closes both indexes so that paging (created_at, id) is one range scan. */
    "CREATE INDEX tasks_status_created ON tasks(status, created_at, id);"
    "CREATE INDEX tasks_created ON tasks(created_at, id);"
    "CREATE TABLE pages ("
    "  task_id text COLLATE \"C\" NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  page_index integer NOT NULL,"
    "  state text NOT NULL,"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  crash_attempts integer NOT NULL DEFAULT 0,"
    "  started_at double precision NOT NULL DEFAULT 0,"
    "  finished_at double precision NOT NULL DEFAULT 0,"
    "  estimated_memory_bytes bigint NOT NULL DEFAULT 0,"
    "  peak_memory_bytes bigint NOT NULL DEFAULT 0,"
    "  error text NOT NULL DEFAULT '',"
    "  PRIMARY KEY (task_id, page_index)"
    ");"
    "CREATE TABLE task_events ("
    "  id bigserial PRIMARY KEY,"
    "  task_id text COLLATE \"C\" NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  time double precision NOT NULL,"
    "  type text NOT NULL,"
    "  details jsonb"
    ");"
    "CREATE INDEX task_events_task ON task_events(task_id, id);"
    "CREATE TABLE task_metrics ("
    "  id bigserial PRIMARY KEY,"
    "  task_id text COLLATE \"C\" NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  time double precision NOT NULL,"
    "  memory_bytes bigint NOT NULL,"
    "  device text NOT NULL DEFAULT '',"
    "  stage text NOT NULL DEFAULT ''"
    ");"
    "CREATE INDEX task_metrics_task ON task_metrics(task_id);"
    /* The nodes sharing the database, each row written by its own heartbeat;
     * times on the database's clock. */
    "CREATE TABLE nodes ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  host text NOT NULL DEFAULT '',"
    "  started_at double precision NOT NULL,"
    "  heartbeat_at double precision NOT NULL,"
    "  draining integer NOT NULL DEFAULT 0,"
    "  workers integer NOT NULL DEFAULT 0,"
    "  pages_running integer NOT NULL DEFAULT 0,"
    "  memory text NOT NULL DEFAULT '{}'"
    ");"
    /* Documents, page fragments and results, in chunks of at most 1 MB, so
     * that nodes share nothing but the database and no blob is ever held
     * whole in memory. EXTERNAL: stored out of line, uncompressed (scans and
     * PDFs are compressed already). */
    "CREATE TABLE blobs ("
    "  task_id text COLLATE \"C\" NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  name text NOT NULL,"
    "  chunk integer NOT NULL,"
    "  data bytea NOT NULL,"
    "  PRIMARY KEY (task_id, name, chunk)"
    ");"
    "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE ocrpool_schema (version integer NOT NULL);"
    "INSERT INTO ocrpool_schema (version) VALUES (1);",
    /* 2: leases: the node that holds a task, until when (the database's
     * clock), and how many claims it has had, so that a holder whose lease
     * lapsed cannot write over the node that claimed it next. */
    "ALTER TABLE tasks ADD COLUMN node_id text COLLATE \"C\" NOT NULL DEFAULT '',"
    "  ADD COLUMN lease_until double precision NOT NULL DEFAULT 0,"
    "  ADD COLUMN claim integer NOT NULL DEFAULT 0;"
    "CREATE INDEX tasks_claimable ON tasks(priority DESC, created_at, id) WHERE status IN ('queued', 'running');"
    "CREATE INDEX tasks_node ON tasks(node_id) WHERE status IN ('queued', 'running');"
    "UPDATE ocrpool_schema SET version = 2;",
    /* 3: a failed page's reason, so that a task resumed after a restart
     * ends with its pages' reasons (not "internal"). */
    "ALTER TABLE pages ADD COLUMN reason text NOT NULL DEFAULT '';"
    "UPDATE ocrpool_schema SET version = 3;",
};
enum { SCHEMA_VERSION = (int)(sizeof migrations / sizeof migrations[0]) };

/* The advisory lock that serializes migrations: "ocrpool" in ASCII, a key
 * unlikely to collide with another program's on a shared database. */
#define MIGRATION_LOCK "SELECT pg_advisory_xact_lock(31353065578655596)"

/* Copies a libpq message onto one line: newlines and runs of blanks become
 * one space, the ends are trimmed. */
static void one_line(const char *src, char *dst, size_t size) {
  size_t n = 0;
  int blank = 1; /* drops leading blanks */
  for (const char *p = src ? src : ""; *p && n + 1 < size; p++) {
    int is_blank = *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t';
    if (is_blank && blank)
      continue;
    dst[n++] = is_blank ? ' ' : *p;
    blank = is_blank;
  }
  while (n > 0 && dst[n - 1] == ' ')
    n--;
  dst[n] = '\0';
}

/* The classes of SQLSTATE that say the server or the link failed, not the
 * statement: connection (08), rolled back by the server (40), resources such
 * as disk or connections (53), operator intervention (57), system (58). */
static int state_is_io(const char *state) {
  static const char *const classes[] = {"08", "40", "53", "57", "58"};
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if (strncmp(state, classes[i], 2) == 0)
      return 1;
  return strcmp(state, "55P03") == 0; /* lock_not_available */
}

int op__postgres_error(pg_store_t *store, const PGresult *res, const char *what, op_error_t *err) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *text = res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(store->conn);
  char msg[512];
  one_line(text, msg, sizeof msg);
  snprintf(store->sqlstate, sizeof store->sqlstate, "%s", state ? state : "");
  if (PQstatus(store->conn) == CONNECTION_BAD)
    return op_error_set(err, OP_EIO, "internal", "%s: lost the connection to PostgreSQL (%s): %s", what, store->where,
                        msg);
  if (state == NULL) /* no answer from the server: libpq itself failed */
    return res == NULL ? op_error_set(err, OP_ENOMEM, NULL, "%s: out of memory (%s)", what, msg)
                       : op_error_set(err, OP_EIO, "internal", "%s: %s", what, msg);
  if (strcmp(state, "53200") == 0) /* out_of_memory, on the server */
    return op_error_set(err, OP_ENOMEM, NULL, "%s: %s", what, msg);
  if (state_is_io(state))
    return op_error_set(err, OP_EIO, "internal", "%s: %s", what, msg);
  return op_error_set(err, OP_EINTERNAL, NULL, "%s: %s", what, msg);
}

void op__postgres_get_text(const PGresult *res, int row, int col, char *dst, size_t size) {
  const char *s = PQgetvalue(res, row, col);
  size_t n = (size_t)PQgetlength(res, row, col);
  if (n >= size) {
    n = size - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
  }
  memcpy(dst, s, n);
  dst[n] = '\0';
}

int op__postgres_exec(pg_store_t *store, const char *sql, const char *what, PGresult **out, op_error_t *err) {
  store->sqlstate[0] = '\0';
  PGresult *res = PQexec(store->conn, sql);
  ExecStatusType status = PQresultStatus(res);
  if (res != NULL && (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)) {
    if (out != NULL)
      *out = res;
    else
      PQclear(res);
    return 0;
  }
  int ret = op__postgres_error(store, res, what, err);
  PQclear(res);
  return ret;
}

/* What each session needs: times read back exactly (shortest-exact float
 * output, whatever the server's default says), and LISTEN where it was asked. */
static int session_setup(pg_store_t *store, op_error_t *err) {
  int ret = op__postgres_exec(store, "SET extra_float_digits = 3", "setting up the session", NULL, err);
  if (ret == 0 && store->listening) /* a new session after a reset listens again */
    ret = op__postgres_exec(store, "LISTEN " OP__PG_CHANNEL, "listening for new work", NULL, err);
  return ret;
}

int op__postgres_ready(pg_store_t *store, int may_reset, op_error_t *err) {
  if (PQstatus(store->conn) == CONNECTION_OK)
    return 0;
  /* Inside a transaction its earlier statements died with the session:
   * carrying on in a new one would commit half of it. */
  if (!may_reset)
    return op_error_set(err, OP_EIO, "internal",
                        "the connection to PostgreSQL (%s) was lost inside a transaction, which is rolled back",
                        store->where);
  PQreset(store->conn);
  memset(store->prepared, 0, sizeof store->prepared); /* they went with the old session */
  if (PQstatus(store->conn) != CONNECTION_OK) {
    char msg[512];
    one_line(PQerrorMessage(store->conn), msg, sizeof msg);
    return op_error_set(err, OP_EIO, "internal", "cannot reconnect to PostgreSQL (%s): %s", store->where, msg);
  }
  return session_setup(store, err);
}

/* The schema's version; 0 when there is no ocrpool_schema table yet. */
static int read_version(pg_store_t *store, int *version, op_error_t *err) {
  PGresult *res = NULL;
  int ret = op__postgres_exec(store, "SELECT to_regclass('ocrpool_schema') IS NOT NULL", "reading the schema version",
                              &res, err);
  if (ret < 0)
    return ret;
  int exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  PQclear(res);
  *version = 0;
  if (!exists)
    return 0;
  ret = op__postgres_exec(store, "SELECT max(version) FROM ocrpool_schema", "reading the schema version", &res, err);
  if (ret < 0)
    return ret;
  if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
    ret = op_error_set(err, OP_EINTERNAL, NULL, "the table ocrpool_schema has no row: the database is damaged");
  else
    *version = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  return ret;
}

/* Applies the migrations the database lacks, one transaction each. The
 * version is read again after the lock because another node may have
 * migrated while this one waited for it. */
static int migrate(pg_store_t *store, op_error_t *err) {
  for (;;) {
    int version = 0, ret = op_store_begin(&store->base, err);
    if (ret < 0)
      return ret;
    ret = op__postgres_exec(store, MIGRATION_LOCK, "waiting for the migration lock", NULL, err);
    if (ret == 0)
      ret = read_version(store, &version, err);
    if (ret == 0 && version > SCHEMA_VERSION)
      ret = op_error_set(err, OP_EUSAGE, "bad_options",
                         "the database's schema version %d is newer than this ocrpool's (%d): upgrade ocrpool", version,
                         SCHEMA_VERSION);
    if (ret == 0 && version == SCHEMA_VERSION) {
      store->base.schema_version = version;
      return op_store_end(&store->base, 0, err);
    }
    if (ret == 0)
      ret = op__postgres_exec(store, migrations[version], "migrating the database", NULL, err);
    int after = 0;
    if (ret == 0)
      ret = read_version(store, &after, err);
    if (ret == 0 && after != version + 1)
      ret = op_error_set(err, OP_EINTERNAL, NULL, "migration %d left the schema at version %d", version + 1, after);
    ret = op_store_end(&store->base, ret, err);
    if (ret < 0)
      return ret;
  }
}

/* Why connecting failed, in libpq's words, unless they could quote the
 * password: libpq echoes a piece of a URL it cannot parse, such as a bad
 * %-escape in the password. */
static void connect_message(pg_store_t *store, const char *url, char *msg, size_t size) {
  char *parse_error = NULL;
  PQconninfoOption *options = PQconninfoParse(url, &parse_error);
  if (options == NULL && strcmp(url, store->where) != 0)
    snprintf(msg, size, "the URL does not parse (libpq's message is not shown: it may quote the password)");
  else
    one_line(PQerrorMessage(store->conn), msg, size);
  PQconninfoFree(options);
  PQfreemem(parse_error);
}

/* The server's notices (a NOTICE from a migration, "terminating connection
 * due to ..." as it shuts down) go to the log, not raw to stderr. */
static void notice_to_log(void *arg, const char *message) {
  (void)arg;
  char line[512];
  one_line(message, line, sizeof line);
  op_log_debug("postgresql: %s", line);
}

int op__postgres_open(const char *url, op_store_t **store_out, op_error_t *err) {
  *store_out = NULL;
  pg_store_t *store = calloc(1, sizeof *store);
  if (store == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "opening the store: out of memory");
  store->base.ops = &op__postgres_ops;
  op_store_describe(url, store->where, sizeof store->where);
  /* With expand_dbname the URL's settings replace the ones before it (a
   * name for pg_stat_activity, a connect timeout) but not the one after: the
   * store reads and writes UTF-8. */
  static const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname", "client_encoding", NULL};
  const char *const values[] = {"ocrpool", "10", url, "UTF8", NULL};
  int ret = 0;
  store->conn = PQconnectdbParams(keys, values, 1);
  if (store->conn == NULL) {
    ret = op_error_set(err, OP_ENOMEM, NULL, "connecting to PostgreSQL: out of memory");
    goto out;
  }
  PQsetNoticeProcessor(store->conn, notice_to_log, NULL); /* kept across PQreset */
  if (PQstatus(store->conn) != CONNECTION_OK) {
    char msg[512];
    connect_message(store, url, msg, sizeof msg);
    ret = op_error_set(err, OP_EIO, "internal", "cannot connect to PostgreSQL (%s): %s", store->where, msg);
    goto out;
  }
  ret = session_setup(store, err);
  if (ret == 0)
    ret = migrate(store, err);
out:
  if (ret < 0)
    op__postgres_close(&store->base);
  else
    *store_out = &store->base;
  return ret;
}

void op__postgres_close(op_store_t *base) {
  pg_store_t *store = pg(base);
  PQfinish(store->conn); /* NULL is fine */
  free(store);
}
