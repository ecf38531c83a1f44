/*
 * front.c: what other threads (the HTTP server's) call on the service.
 *
 * They read and write the store through a small pool of their own
 * connections, post requests to the service thread's mailbox, and read the
 * snapshot it refreshes every 200 ms; they never touch the scheduler.
 */
#include "core/service_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/utf8.h"

const op_service_config_t *op_service_config(const op_service_t *svc) {
  return &svc->cfg;
}

int op_service_ready(const op_service_t *svc) {
  return atomic_load(&((op_service_t *)svc)->ready);
}

int op_service_refusing(const op_service_t *svc) {
  return atomic_load(&((op_service_t *)svc)->refusing);
}

int op_service_draining(const op_service_t *svc) {
  return atomic_load(&((op_service_t *)svc)->draining);
}

unsigned long op_service_finished_count(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  unsigned long n = svc->n_finished;
  pthread_mutex_unlock(&svc->lock);
  return n;
}

void op_service_wait_finished(op_service_t *svc, unsigned long seen, unsigned max_ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_nsec += (long)(max_ms % 1000) * 1000000L;
  until.tv_sec += max_ms / 1000 + until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  pthread_mutex_lock(&svc->lock);
  while (svc->n_finished == seen && pthread_cond_timedwait(&svc->finished, &svc->lock, &until) == 0)
    ;
  pthread_mutex_unlock(&svc->lock);
}

void op_service_new_id(char id[40]) {
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
    /* getrandom cannot fail for 16 bytes once the pool is ready; be safe anyway */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (size_t i = 0; i < sizeof raw; i++)
      raw[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() >> (i % 4)) ^ rand());
  }
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(id + 2 * i, 3, "%02x", raw[i]);
}

char *op_service_task_dir(const op_service_t *svc, const char *id) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", svc->tasks_dir, id) < 0)
    return NULL;
  return p;
}

/* ---- the store pool ---- */

int op_service_store_get(op_service_t *svc, op_store_t **store, op_error_t *err) {
  pthread_mutex_lock(&svc->lock);
  op_store_t *st = svc->pool_n > 0 ? svc->pool[--svc->pool_n] : NULL;
  pthread_mutex_unlock(&svc->lock);
  if (st == NULL && op_store_open(svc->store_where, &st, err) < 0)
    return err ? err->code : OP_EIO;
  *store = st;
  return 0;
}

void op_service_store_put(op_service_t *svc, op_store_t *store) {
  if (store == NULL)
    return;
  pthread_mutex_lock(&svc->lock);
  if (svc->pool_n < OP__STORE_POOL_MAX) {
    svc->pool[svc->pool_n++] = store;
    store = NULL;
  }
  pthread_mutex_unlock(&svc->lock);
  op_store_close(store);
}

int op_service_submit(op_service_t *svc, op_task_row_t *task, op_error_t *err) {
  op_store_t *st = NULL;
  int rc = op_service_store_get(svc, &st, err);
  if (rc < 0)
    return rc;
  task->status = OP_TASK_QUEUED;
  task->created_at = op_wall_time_s();
  char *input = op_service_task_dir(svc, task->id);
  char path[1024];
  snprintf(path, sizeof path, "%s/input", input ? input : ".");
  free(input);
  /* The task, its first event and its document (for whichever node claims
   * it), or none of them; the other nodes hear of it at the commit. */
  rc = op_store_begin(st, err);
  if (rc == 0) {
    rc = op_store_task_insert(st, task, err);
    rc = rc < 0 ? rc : op_store_event_add(st, task->id, "queued", NULL, err);
    rc = rc < 0 ? rc : op_store_blob_put(st, task->id, "input", path, err);
    rc = rc < 0 || svc->cfg.poll_only ? rc : op_store_notify(st, err);
    rc = op_store_end(st, rc, err);
  }
  op_service_store_put(svc, st);
  if (rc == 0)
    op__wake(svc); /* this node claims at once, the others on the NOTIFY */
  return rc;
}

int op_service_fetch_blob(op_service_t *svc, const char *id, const char *name, const char *path, op_error_t *err) {
  op_store_t *st = NULL;
  int rc = op_service_store_get(svc, &st, err);
  if (rc < 0)
    return rc;
  char *dir = op_service_task_dir(svc, id);
  if (dir == NULL || (mkdir(dir, 0700) < 0 && errno != EEXIST))
    rc = op_error_set(err, OP_EIO, "internal", "cannot create the task's directory");
  free(dir);
  rc = rc < 0 ? rc : op_store_blob_get(st, id, name, path, err);
  op_service_store_put(svc, st);
  return rc;
}

/* ---- the mailbox ---- */

int op_service_cancel(op_service_t *svc, const char *id) {
  /* In the store, for whichever node holds it (it sees it at its next scan);
   * by mail too, for this node's scheduler at once. */
  op_store_t *st = NULL;
  op_error_t e;
  if (op_service_store_get(svc, &st, &e) == 0) {
    if (op_store_task_cancel_request(st, id, &e) < 0 && e.code != OP_ENOTFOUND)
      op_log_warn("task %s: the cancel could not be stored (%s); only this node sees it", id, e.message);
    op_service_store_put(svc, st);
  }
  op_mail_t m = {.kind = OP_MAIL_CANCEL};
  snprintf(m.task_id, sizeof m.task_id, "%s", id);
  return op_mailbox_post(&svc->mailbox, &m);
}

const op_model_policy_t *op_service_model(const op_service_t *svc, const char *name) {
  return op_model_policy_named(svc->settings.policies, svc->settings.n_policies, name);
}

int op_service_model_request(op_service_t *svc, const char *name, int load) {
  const op_model_policy_t *pol = op_service_model(svc, name);
  if (pol == NULL)
    return OP_ENOTFOUND;
  op_mail_t m = {.kind = load ? OP_MAIL_MODEL_LOAD : OP_MAIL_MODEL_UNLOAD, .model = pol};
  return op_mailbox_post(&svc->mailbox, &m);
}

int op_service_report_request(op_service_t *svc) {
  op_mail_t m = {.kind = OP_MAIL_REPORT};
  return op_mailbox_post(&svc->mailbox, &m);
}

/* ---- the snapshot, rendered ---- */

json_t *op_service_memory_json(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *j = svc->snapshot ? op_snapshot_memory_json(svc->snapshot) : NULL;
  pthread_mutex_unlock(&svc->lock);
  return j;
}

json_t *op_service_models_json(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *j = svc->snapshot ? op_snapshot_models_json(svc->snapshot) : NULL;
  pthread_mutex_unlock(&svc->lock);
  return j;
}

json_t *op_service_memory_history(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *copy = svc->history ? json_deep_copy(svc->history) : json_array();
  pthread_mutex_unlock(&svc->lock);
  return copy;
}

op_metrics_t *op_service_metrics(op_service_t *svc) {
  return svc->metrics;
}

char *op_service_metrics_text(op_service_t *svc) {
  op_store_counts_t counts;
  op_store_t *st = NULL;
  op_error_t e;
  int have = 0;
  if (op_service_store_get(svc, &st, &e) == 0) {
    have = op_store_count_tasks(st, &counts, &e) == 0;
    op_service_store_put(svc, st);
  }
  if (!have)
    op_log_warn("metrics: cannot count tasks: %s", e.message);
  pthread_mutex_lock(&svc->lock);
  char *text = op_metrics_render(svc->metrics, have ? &counts : NULL, svc->snapshot, svc->node.id, svc->node.host);
  pthread_mutex_unlock(&svc->lock);
  return text;
}

/* ---- the task as JSON ---- */

static json_t *str_or_null(const char *s) {
  return s[0] ? op_utf8_json(s) : json_null();
}

json_t *op_service_task_json(const op_task_row_t *t) {
  json_error_t je;
  json_t *opts = json_loads(t->options, 0, &je);
  json_t *j = json_pack("{s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o}", "id",
                        t->id, "status", op_task_status_name(t->status), "priority", t->priority, "created_at",
                        op_time_json(t->created_at), "started_at", op_time_json(t->started_at), "finished_at",
                        op_time_json(t->finished_at), "pages_total", t->pages_total, "pages_done", t->pages_done,
                        "attempts", t->attempts, "device", str_or_null(t->device), "worker", str_or_null(t->worker),
                        "estimated_memory_bytes", (json_int_t)t->estimated_memory_bytes, "peak_memory_bytes",
                        (json_int_t)t->peak_memory_bytes, "failure_reason", str_or_null(t->failure_reason), "error",
                        str_or_null(t->error), "title", str_or_null(t->title), "formats", json_array());
  const char *names = json_string_value(json_object_get(opts, "format"));
  char buf[64];
  snprintf(buf, sizeof buf, "%s", names ? names : "txt");
  for (char *save = NULL, *f = strtok_r(buf, ",", &save); f != NULL; f = strtok_r(NULL, ",", &save))
    json_array_append_new(json_object_get(j, "formats"), json_string(f));
  json_decref(opts);
  return j;
}

json_t *op_service_tasks_summary(op_service_t *svc) {
  op_store_counts_t counts;
  op_store_t *st = NULL;
  op_error_t e;
  int rc = op_service_store_get(svc, &st, &e);
  if (rc == 0) {
    rc = op_store_count_tasks(st, &counts, &e);
    op_service_store_put(svc, st);
  }
  if (rc < 0)
    return NULL;
  int by[OP_STORE_STATUSES] = {0};
  for (int i = 0; i < OP_STORE_STATUSES; i++)
    for (int p = 0; p < 10; p++)
      by[i] += counts.counts[i][p];
  json_t *memory = json_object(), *queued = json_object();
  for (int p = 9; p >= 0; p--) {
    char key[4];
    snprintf(key, sizeof key, "%d", p);
    if (counts.counts[0][p] > 0)
      json_object_set_new(queued, key, json_integer(counts.counts[0][p]));
  }
  unsigned workers = 0, busy = 0;
  pthread_mutex_lock(&svc->lock);
  const op_snapshot_t *snap = svc->snapshot;
  if (snap != NULL) {
    json_object_set_new(memory, "cpu",
                        json_pack("{s:I, s:I, s:s}", "used_bytes", (json_int_t)snap->mem.used_bytes, "budget_bytes",
                                  (json_int_t)snap->mem.budget_bytes, "level", op_mem_level_name(snap->mem.level)));
    for (unsigned g = 0; g < snap->mem.n_gpus; g++) {
      char name[16];
      snprintf(name, sizeof name, "cuda:%u", g);
      json_object_set_new(memory, name,
                          json_pack("{s:I, s:I, s:s}", "used_bytes", (json_int_t)snap->mem.gpus[g].used_bytes,
                                    "budget_bytes", (json_int_t)snap->mem.gpus[g].budget_bytes, "level",
                                    op_mem_level_name(snap->mem.gpus[g].level)));
    }
    for (unsigned i = 0; i < snap->n_workers; i++) {
      workers += snap->workers[i].pid > 0;
      busy += snap->workers[i].pid > 0 && snap->workers[i].busy;
    }
  }
  pthread_mutex_unlock(&svc->lock);
  unsigned slots = svc->cfg.workers ? svc->cfg.workers : op_usable_cores();
  return json_pack("{s:i, s:i, s:o, s:{s:i, s:i, s:i, s:i, s:i}, s:o, s:{s:i, s:i, s:i, s:f}, s:f}", "active_tasks",
                   by[1], "queued_tasks", by[0], "queued_by_priority", queued, "finished_tasks", "succeeded", by[2],
                   "failed", by[3], "cancelled", by[4], "running", by[1], "queued", by[0], "memory", memory, "pool",
                   "workers_allowed", (int)slots, "workers", (int)workers, "busy", (int)busy, "utilisation",
                   slots ? (double)busy / slots : 0.0, "average_wait_seconds", op_metrics_average_wait(svc->metrics));
}
