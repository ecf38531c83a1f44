/*
 * sqlite_blob.c: blobs on SQLite (see store.h): one machine, so a blob is the
 * file the server wrote in its data directory and the database holds none.
 * Put only checks that there is a task and a file to speak of; get finds the
 * local file or reports that there is none.
 */
#include "store/sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the task exists. Prepared per call rather than cached in the
 * connection's statement table: a put is rare beside the file it names, and
 * the table's ids belong to sqlite.c. */
static int task_exists(sq_store_t *store, const char *task_id, op_error_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(store->db, "SELECT 1 FROM tasks WHERE id = ?1", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_DONE)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "no task %.40s", task_id);
  else if (rc != SQLITE_ROW)
    ret = op__sqlite_error(store, rc, "storing a blob", err);
  sqlite3_finalize(st);
  return ret;
}

int op__sqlite_blob_put(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err) {
  int ret = task_exists(sq(base), task_id, err);
  if (ret < 0)
    return ret;
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return op_error_set(err, OP_EIO, "internal", "storing blob %s of task %.40s: cannot open %s: %s", name, task_id,
                        path, strerror(errno));
  if (fstat(fd, &st) != 0)
    ret = op_error_set(err, OP_EIO, "internal", "storing blob %s of task %.40s: cannot stat %s: %s", name, task_id,
                       path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    ret = op_error_set(err, OP_EIO, "internal", "storing blob %s of task %.40s: %s is not a regular file", name,
                       task_id, path);
  close(fd);
  return ret;
}

int op__sqlite_blob_get(op_store_t *base, const char *task_id, const char *name, const char *path, op_error_t *err) {
  (void)base;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
    return 0;
  return op_error_set(err, OP_ENOTFOUND, "not_found", "task %.40s has no blob %s", task_id, name);
}
