/*
 * store.c: the store's front: chooses the implementation from the URL and
 * dispatches to its methods, nesting transactions the same way for all.
 */
#include "store/store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const op_store_statuses[OP_STORE_STATUSES] = {"queued", "running", "succeeded", "failed", "cancelled"};

static int has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int op_store_is_url(const char *where) {
  return where != NULL &&
         (has_prefix(where, "postgresql://") || has_prefix(where, "postgres://") || has_prefix(where, "sqlite:"));
}

int op_store_open(const char *where, op_store_t **store, op_error_t *err) {
  *store = NULL;
  if (has_prefix(where, "postgresql://") || has_prefix(where, "postgres://"))
    return op__postgres_open(where, store, err);
  if (has_prefix(where, "sqlite:")) {
    const char *path = where + strlen("sqlite:");
    if (has_prefix(path, "//")) /* sqlite:///abs/path, as URLs write it */
      path += 2;
    if (path[0] == '\0')
      return op_error_set(err, OP_EUSAGE, "bad_options", "the store URL %s names no database file", where);
    return op__sqlite_open(path, store, err);
  }
  /* A data directory: the embedded default, ocrpool.db in it. */
  if (mkdir(where, 0700) != 0 && errno != EEXIST)
    return op_error_set(err, OP_EIO, "internal", "cannot create the data directory %s: %s", where, strerror(errno));
  char *path = NULL;
  if (asprintf(&path, "%s/ocrpool.db", where) < 0)
    return op_error_set(err, OP_ENOMEM, NULL, "opening the store: out of memory");
  int ret = op__sqlite_open(path, store, err);
  free(path);
  return ret;
}

void op_store_describe(const char *where, char *buf, size_t len) {
  size_t n = 0;
  const char *at = strchr(where, '@'), *scheme = strstr(where, "://");
  const char *colon = scheme && at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
  for (const char *p = where; *p && n + 1 < len; p++) {
    if (p == colon + 1 && colon != NULL) { /* user:PASSWORD@host */
      n += (size_t)snprintf(buf + n, len - n, "***");
      p = at - 1;
      continue;
    }
    if (strncmp(p, "password=", 9) == 0 && (p == where || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ')) {
      n += (size_t)snprintf(buf + n, len - n, "password=***");
      p += 9;
      while (*p && *p != '&' && *p != ' ')
        p++;
      p--;
      continue;
    }
    buf[n++] = *p;
  }
  if (n >= len)
    n = len - 1;
  buf[len > 0 ? n : 0] = '\0';
}

void op_store_close(op_store_t *store) {
  if (store != NULL)
    store->ops->close(store);
}

const char *op_store_kind(const op_store_t *store) {
  return store->ops->name;
}

int op_store_unreachable(const op_store_t *store) {
  return store->ops->unreachable != NULL && store->ops->unreachable(store);
}

int op_store_schema_version(op_store_t *store) {
  return store->schema_version;
}

void op_store_test_fail_every(op_store_t *store, unsigned n) {
  store->fail_every = n;
  store->writes = 0;
}

int op__store_fault(op_store_t *store) {
  return store->fail_every > 0 && ++store->writes % store->fail_every == 0;
}

int op_store_begin(op_store_t *store, op_error_t *err) {
  if (store->tx_depth++ > 0)
    return 0;
  int ret = store->ops->tx(store, OP_STORE_BEGIN, err);
  if (ret < 0)
    store->tx_depth = 0;
  return ret;
}

/* Commits when ret is 0 (and no inner part failed), else rolls back; returns
 * ret or the commit's error. Inside another transaction it only notes a failure. */
int op_store_end(op_store_t *store, int ret, op_error_t *err) {
  if (store->tx_depth == 0) /* its begin failed, and said so */
    return ret;
  if (store->tx_depth > 1) {
    store->tx_depth--;
    store->tx_failed |= ret < 0;
    return ret;
  }
  store->tx_depth = 0;
  if (ret == 0 && store->tx_failed)
    ret = op_error_set(err, OP_EIO, "internal", "a part of the transaction failed; nothing of it was recorded");
  store->tx_failed = 0;
  if (ret == 0) {
    ret = store->ops->tx(store, OP_STORE_COMMIT, err);
    if (ret == 0)
      return 0;
  }
  store->ops->tx(store, OP_STORE_ROLLBACK, NULL);
  return ret;
}

int op_store_task_insert(op_store_t *store, const op_task_row_t *task, op_error_t *err) {
  return store->ops->task_insert(store, task, err);
}

int op_store_task_get(op_store_t *store, const char *id, op_task_row_t *task, op_error_t *err) {
  return store->ops->task_get(store, id, task, err);
}

int op_store_task_update(op_store_t *store, const op_task_row_t *task, op_error_t *err) {
  return store->ops->task_update(store, task, err);
}

int op_store_task_list(op_store_t *store, const char *status, const char *owner, const char *after, int limit,
                       op_task_row_t **rows, size_t *n, op_error_t *err) {
  return store->ops->task_list(store, status, owner, after, limit, rows, n, err);
}

int op_store_tasks_unfinished(op_store_t *store, op_task_row_t **rows, size_t *n, op_error_t *err) {
  return store->ops->tasks_unfinished(store, rows, n, err);
}

int op_store_count_status(op_store_t *store, const char *status, int *count, op_error_t *err) {
  return store->ops->count_status(store, status, count, err);
}

int op_store_count_tasks(op_store_t *store, op_store_counts_t *counts, op_error_t *err) {
  return store->ops->count_tasks(store, counts, err);
}

int op_store_tasks_finished_before(op_store_t *store, double before, op_task_row_t **rows, size_t *n, op_error_t *err) {
  return store->ops->tasks_finished_before(store, before, rows, n, err);
}

int op_store_task_delete(op_store_t *store, const char *id, op_error_t *err) {
  return store->ops->task_delete(store, id, err);
}

int op_store_page_put(op_store_t *store, const char *task_id, const op_page_row_t *page, op_error_t *err) {
  return store->ops->page_put(store, task_id, page, err);
}

int op_store_pages_put(op_store_t *store, const char *task_id, const op_page_row_t *pages, size_t n, op_error_t *err) {
  int ret = op_store_begin(store, err);
  for (size_t i = 0; ret == 0 && i < n; i++)
    ret = store->ops->page_put(store, task_id, &pages[i], err);
  return op_store_end(store, ret, err);
}

int op_store_pages(op_store_t *store, const char *task_id, op_page_row_t **rows, size_t *n, op_error_t *err) {
  return store->ops->pages(store, task_id, rows, n, err);
}

int op_store_event_add(op_store_t *store, const char *task_id, const char *type, json_t *details, op_error_t *err) {
  return store->ops->event_add(store, task_id, type, details, err);
}

int op_store_events(op_store_t *store, const char *task_id, json_t **events, op_error_t *err) {
  return store->ops->events(store, task_id, events, err);
}

int op_store_node_beat(op_store_t *store, const op_node_row_t *node, op_error_t *err) {
  return store->ops->node_beat(store, node, err);
}

int op_store_nodes(op_store_t *store, op_node_row_t **rows, size_t *n, op_error_t *err) {
  return store->ops->nodes(store, rows, n, err);
}

int op_store_node_forget(op_store_t *store, const char *id, double forget_after_s, op_error_t *err) {
  return store->ops->node_forget(store, id, forget_after_s, err);
}

int op_store_tasks_claim(op_store_t *store, const char *node_id, double lease_s, double aging_s, int limit,
                         op_task_row_t **rows, size_t *n, op_error_t *err) {
  *rows = NULL;
  *n = 0;
  if (limit <= 0)
    return 0;
  return store->ops->tasks_claim(store, node_id, lease_s, aging_s, limit, NULL, rows, n, err);
}

int op_store_task_claim(op_store_t *store, const char *task_id, const char *node_id, double lease_s,
                        op_task_row_t *task, op_error_t *err) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  int ret = store->ops->tasks_claim(store, node_id, lease_s, 0, 1, task_id, &rows, &n, err);
  if (ret == 0 && n == 0)
    ret = op_error_set(err, OP_ENOTFOUND, "not_found", "task %.40s is not claimable", task_id);
  if (ret == 0)
    *task = rows[0];
  free(rows);
  return ret;
}

int op_store_task_hold(op_store_t *store, const char *task_id, const char *node_id, int claim, op_error_t *err) {
  return store->ops->task_hold(store, task_id, node_id, claim, err);
}

int op_store_leases_renew(op_store_t *store, const char *node_id, double lease_s, op_error_t *err) {
  return store->ops->leases_renew(store, node_id, lease_s, err);
}

int op_store_leases_release(op_store_t *store, const char *node_id, op_error_t *err) {
  return store->ops->leases_release(store, node_id, err);
}

int op_store_task_cancel_request(op_store_t *store, const char *task_id, op_error_t *err) {
  return store->ops->task_cancel_request(store, task_id, err);
}

int op_store_listen(op_store_t *store, op_error_t *err) {
  return store->ops->listen ? store->ops->listen(store, err) : 0;
}

int op_store_notify(op_store_t *store, op_error_t *err) {
  return store->ops->notify ? store->ops->notify(store, err) : 0;
}

int op_store_notified(op_store_t *store) {
  return store->ops->notified ? store->ops->notified(store) : 0;
}

int op_store_keeps_blobs(const op_store_t *store) {
  return store->ops->keeps_blobs;
}

/* Blob names become file names and keys: a short, plain set of characters. */
static int blob_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64 || name[0] == '.')
    return 0;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
          *p == '-'))
      return 0;
  return 1;
}

int op_store_blob_put(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err) {
  if (!blob_name_ok(name))
    return op_error_set(err, OP_EINTERNAL, NULL, "bad blob name \"%.80s\"", name);
  return store->ops->blob_put(store, task_id, name, path, err);
}

int op_store_blob_get(op_store_t *store, const char *task_id, const char *name, const char *path, op_error_t *err) {
  if (!blob_name_ok(name))
    return op_error_set(err, OP_EINTERNAL, NULL, "bad blob name \"%.80s\"", name);
  return store->ops->blob_get(store, task_id, name, path, err);
}

int op_store_metric_add(op_store_t *store, const char *task_id, int64_t memory_bytes, const char *device,
                        const char *stage, op_error_t *err) {
  return store->ops->metric_add(store, task_id, memory_bytes, device, stage, err);
}
