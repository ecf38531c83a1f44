/*
 * postgres_blob.c: blobs on PostgreSQL (see store.h). Several nodes share
 * nothing but the database, so documents, page fragments and results live in
 * the table blobs, one row per chunk of BLOB_CHUNK_BYTES (the last one
 * shorter; an empty file is one empty chunk, so that "empty" is not "absent").
 *
 * Neither direction holds a blob whole. Put reads the file into one reused
 * chunk buffer and inserts chunk after chunk, in one transaction that first
 * deletes the old chunks. Get asks for the chunks in order in libpq's
 * single-row mode and appends each, as it arrives, to a temporary file beside
 * the target, renamed over it at the end. Bytes travel as binary parameters
 * and binary results, never escaped into SQL text.
 *
 * The statements are unnamed (PQexecParams): postgres.c's prepared-statement
 * table is its own, and parsing a short statement costs nothing beside the
 * megabyte it carries.
 */
#include "store/postgres_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One row's bytes: few rows per blob, and little memory per row on either
 * side (libpq holds one chunk at a time, sending or receiving). */
enum { BLOB_CHUNK_BYTES = 1 << 20 };

#define SQL_DELETE "DELETE FROM blobs WHERE task_id = $1 AND name = $2"
#define SQL_INSERT "INSERT INTO blobs (task_id, name, chunk, data) VALUES ($1, $2, $3::integer, $4::bytea)"
/* The primary key's order: an index scan, no sort. */
#define SQL_SELECT "SELECT chunk, data FROM blobs WHERE task_id = $1 AND name = $2 ORDER BY chunk"

static int no_task(const char *task_id, op_error_t *err) {
  return op_error_set(err, OP_ENOTFOUND, "not_found", "no task %.40s", task_id);
}

/* ---- put ---- */

/* Reads until buf is full or the file ends: the bytes read, or -1 (errno). */
static ssize_t read_full(int fd, unsigned char *buf, size_t size) {
  size_t n = 0;
  while (n < size) {
    ssize_t r = read(fd, buf + n, size - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    n += (size_t)r;
  }
  return (ssize_t)n;
}

/* Runs one write statement of a put (inside its transaction). The test's
 * fault picks it before it is sent; a foreign key failure means the task is
 * not there. */
static int blob_write(pg_store_t *store, const char *sql, int n, const char *const *values, const int *lengths,
                      const int *formats, const char *task_id, const char *what, op_error_t *err) {
  store->sqlstate[0] = '\0';
  int ret = op__postgres_ready(store, store->base.tx_depth == 0, err);
  if (ret < 0)
    return ret;
  if (op__store_fault(&store->base))
    return op_error_set(err, OP_EIO, "internal", "%s: I/O error (a test's fault)", what);
  PGresult *res = PQexecParams(store->conn, sql, n, NULL, values, lengths, formats, 0);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    ret = op__postgres_error(store, res, what, err);
    if (strcmp(store->sqlstate, "23503") == 0) /* foreign_key_violation */
      ret = no_task(task_id, err);
  }
  PQclear(res);
  return ret;
}

int op__postgres_blob_put(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err) {
  pg_store_t *store = pg(base);
  unsigned char *buf = NULL;
  struct stat st;
  char what[160];
  snprintf(what, sizeof what, "storing blob %s of task %.40s", name, task_id);
  int ret = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ret = op_error_set(err, OP_EIO, "internal", "%s: cannot open %s: %s", what, path, strerror(errno));
    goto out;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ret = op_error_set(err, OP_EIO, "internal", "%s: %s is not a regular file", what, path);
    goto out;
  }
  if ((buf = malloc(BLOB_CHUNK_BYTES)) == NULL) {
    ret = op_error_set(err, OP_ENOMEM, NULL, "%s: out of memory", what);
    goto out;
  }
  if ((ret = op_store_begin(base, err)) < 0)
    goto out;

  const char *values[4] = {task_id, name, NULL, NULL};
  int lengths[4] = {0, 0, 0, 0}, formats[4] = {0, 0, 0, 1}; /* the data in binary */
  char chunk_text[16];
  ret = blob_write(store, SQL_DELETE, 2, values, NULL, NULL, task_id, what, err);
  for (int chunk = 0; ret == 0; chunk++) {
    ssize_t n = read_full(fd, buf, BLOB_CHUNK_BYTES);
    if (n < 0) {
      ret = op_error_set(err, OP_EIO, "internal", "%s: reading %s: %s", what, path, strerror(errno));
      break;
    }
    if (n == 0 && chunk > 0) /* the end, after a full chunk */
      break;
    if (chunk == INT_MAX) {
      ret = op_error_set(err, OP_ELIMIT, NULL, "%s: %s has more chunks than the table can number", what, path);
      break;
    }
    snprintf(chunk_text, sizeof chunk_text, "%d", chunk);
    values[2] = chunk_text;
    values[3] = (const char *)buf;
    lengths[3] = (int)n;
    ret = blob_write(store, SQL_INSERT, 4, values, lengths, formats, task_id, what, err);
    if (n < BLOB_CHUNK_BYTES)
      break;
  }
  ret = op_store_end(base, ret, err);
out:
  free(buf);
  if (fd >= 0)
    close(fd);
  return ret;
}

/* ---- get ---- */

/* Where get writes before the rename: path + ".part", beside path so that
 * the rename stays within one file system. */
typedef struct fetch_s {
  const char *task_id, *name;
  const char *part;
  int fd;     /* the .part file, -1 until the first chunk arrives */
  int chunks; /* chunks written */
} fetch_t;

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One row (chunk, data), both binary: checks that it is the next chunk and
 * appends its bytes. */
static int fetch_row(fetch_t *f, const PGresult *res, op_error_t *err) {
  if (PQnfields(res) != 2 || PQgetlength(res, 0, 0) != 4 || PQgetisnull(res, 0, 1))
    return op_error_set(err, OP_EINTERNAL, NULL, "reading blob %s of task %.40s: an unexpected row", f->name,
                        f->task_id);
  const unsigned char *be = (const unsigned char *)PQgetvalue(res, 0, 0);
  int chunk = (int32_t)((uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 | (uint32_t)be[2] << 8 | be[3]);
  if (chunk != f->chunks)
    return op_error_set(err, OP_EINTERNAL, NULL,
                        "reading blob %s of task %.40s: chunk %d where %d was expected: the blob is damaged", f->name,
                        f->task_id, chunk, f->chunks);
  if (f->fd < 0 && (f->fd = open(f->part, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600)) < 0)
    return op_error_set(err, OP_EIO, "internal", "reading blob %s of task %.40s: cannot create %s: %s", f->name,
                        f->task_id, f->part, strerror(errno));
  if (write_all(f->fd, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1)) != 0)
    return op_error_set(err, OP_EIO, "internal", "reading blob %s of task %.40s: writing %s: %s", f->name, f->task_id,
                        f->part, strerror(errno));
  f->chunks++;
  return 0;
}

/* One try: sends the query and writes each row as it comes. Every result is
 * drained, after an error too, so that the connection stays usable. */
static int fetch(pg_store_t *store, fetch_t *f, op_error_t *err) {
  const char *what = "reading a blob";
  if (f->fd >= 0) { /* a second try: what the first one wrote goes */
    close(f->fd);
    unlink(f->part);
    f->fd = -1;
  }
  f->chunks = 0;
  store->sqlstate[0] = '\0';
  int ret = op__postgres_ready(store, store->base.tx_depth == 0, err);
  if (ret < 0)
    return ret;
  const char *values[2] = {f->task_id, f->name};
  if (!PQsendQueryParams(store->conn, SQL_SELECT, 2, NULL, values, NULL, NULL, 1))
    return op__postgres_error(store, NULL, what, err);
  if (!PQsetSingleRowMode(store->conn))
    ret = op_error_set(err, OP_EINTERNAL, NULL, "%s: libpq refused single-row mode", what);
  PGresult *res;
  while ((res = PQgetResult(store->conn)) != NULL) {
    ExecStatusType status = PQresultStatus(res);
    if (ret == 0 && status == PGRES_SINGLE_TUPLE)
      ret = fetch_row(f, res, err);
    else if (ret == 0 && status != PGRES_TUPLES_OK) /* TUPLES_OK: the end, no row of its own */
      ret = op__postgres_error(store, res, what, err);
    PQclear(res);
  }
  return ret;
}

int op__postgres_blob_get(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err) {
  pg_store_t *store = pg(base);
  char part[PATH_MAX];
  if (snprintf(part, sizeof part, "%s.part", path) >= (int)sizeof part)
    return op_error_set(err, OP_EINTERNAL, NULL, "reading blob %s of task %.40s: the path %s is too long", name,
                        task_id, path);
  fetch_t f = {.task_id = task_id, .name = name, .part = part, .fd = -1};
  int ret = fetch(store, &f, err);
  /* As postgres.c's reads: once more on a fresh session when the database
   * restarted under an idle connection. */
  if (ret < 0 && store->base.tx_depth == 0 && PQstatus(store->conn) == CONNECTION_BAD)
    ret = fetch(store, &f, err);
  if (ret == 0 && f.chunks == 0)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "task %.40s has no blob %s", task_id, name);
  int made = f.fd >= 0;
  if (made && close(f.fd) != 0 && ret == 0)
    ret = op_error_set(err, OP_EIO, "internal", "reading blob %s of task %.40s: writing %s: %s", name, task_id, part,
                       strerror(errno));
  if (ret == 0 && rename(part, path) != 0)
    ret = op_error_set(err, OP_EIO, "internal", "reading blob %s of task %.40s: renaming %s: %s", name, task_id, part,
                       strerror(errno));
  if (ret < 0 && made)
    unlink(part);
  return ret;
}
