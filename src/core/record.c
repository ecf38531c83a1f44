/*
 * record.c: the scheduler's callbacks, written to the store.
 *
 * Each callback's writes (a page's state, the task's row, their events) are
 * one transaction: a kill -9 leaves all of them or none. A failed statement
 * rolls the whole transaction back, and the callback is written again from
 * the row as it was before (RECORD_TRIES times in all). When it still cannot
 * be written, the task fails with store_failed, and if even that end cannot
 * be recorded, or the store was out of reach (a database restarting), the
 * store keeps the task unfinished: the next scan (or the next start) resumes
 * it from what was committed. Nothing is half-recorded,
 * and nothing a client was told of is lost.
 *
 * Every transaction first checks, and locks, this node's claim on the task
 * (op_store_task_hold): a node whose lease lapsed while it was paused finds
 * the task claimed by another and records nothing more of it. A done page's
 * fragments and a task's results go to the store in the same transaction as
 * their record, so that whichever node resumes the task, or answers for its
 * result, finds them (with SQLite they are the local files already).
 */
#include "core/service_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"

#define RECORD_TRIES 3

op__active_t *op__find_active(op_service_t *svc, const op_task_t *t) {
  for (size_t i = 0; i < svc->n_active; i++)
    if (svc->active[i]->task == t)
      return svc->active[i];
  return NULL;
}

/* What one callback writes: its arguments, and the writes themselves. */
typedef struct writes_s {
  const char *what; /* for the log: "a page's start" */
  int (*write)(op_service_t *svc, op__active_t *a, const struct writes_s *w, op_error_t *e);
  const op_page_job_t *page;
  const char *text; /* a retry's reason */
  uint64_t need, free_bytes;
  op_mem_level_t level;
  uint64_t used, budget;
} writes_t;

/* Writes w as one transaction, tried again from the same row on failure.
 * Returns 0, or <0 when every try failed (a->row is as it was before). */
static int record(op_service_t *svc, op__active_t *a, const writes_t *w) {
  op_task_row_t before = a->row;
  op_error_t e;
  for (int i = 0; i < RECORD_TRIES; i++) {
    int rc = op_store_begin(svc->store, &e);
    if (rc == 0) {
      rc = op_store_task_hold(svc->store, a->row.id, svc->node.id, a->row.claim, &e);
      rc = op_store_end(svc->store, rc < 0 ? rc : w->write(svc, a, w, &e), &e);
    }
    if (rc == 0)
      return 0;
    a->row = before;
    if (rc == OP_ESTALE) {
      op__drop_lost(svc, a);
      return -1;
    }
    op_log_task(OP_LOG_WARN, a->row.id, 0, "store: recording %s of task %s failed (try %d of %d): %s", w->what,
                a->row.id, i + 1, RECORD_TRIES, e.message);
  }
  return -1;
}

/* A record that could not be written: the task fails with store_failed (its
 * end is recorded, or it stays unfinished in the store and resumes). When the
 * store is out of reach (the database restarting) the failure passes: the
 * task stops here without recording an end, and the next scan after the store
 * is back resumes it from what was committed. */
static void record_failed(op_service_t *svc, op__active_t *a, const char *what) {
  if (a->store_failed) /* it already stops (its lease lost, a record failed) */
    return;
  a->store_failed = 1;
  a->store_unreachable = op_store_unreachable(svc->store);
  op_error_t e;
  op_error_set(&e, OP_EIO, "store_failed", "the store could not record %s of this task", what);
  if (a->store_unreachable)
    op_log_task(OP_LOG_WARN, a->row.id, 0,
                "task %s: the store is out of reach: the task stops here and resumes from "
                "what was committed once the store is back",
                a->row.id);
  else
    op_log_task(OP_LOG_ERROR, a->row.id, 0, "task %s: %s", a->row.id, e.message);
  op_sched_fail(svc->sched, a->task, &e);
}

static void record_or_fail(op_service_t *svc, op__active_t *a, const writes_t *w) {
  if (record(svc, a, w) < 0)
    record_failed(svc, a, w->what);
}

static int event(op_service_t *svc, op__active_t *a, const char *type, json_t *details, op_error_t *e) {
  int rc = op_store_event_add(svc->store, a->row.id, type, details, e);
  json_decref(details);
  return rc;
}

static void page_row(const op_page_job_t *p, const char *state, op_page_row_t *row) {
  memset(row, 0, sizeof *row);
  row->index = (int)p->index;
  snprintf(row->state, sizeof row->state, "%s", state);
  row->attempts = (int)p->attempts;
  row->crash_attempts = (int)p->crash_attempts;
  row->peak_memory_bytes = (int64_t)p->peak_rss_kb * 1024;
  row->estimated_memory_bytes = (int64_t)p->estimate_bytes;
  row->started_at = p->started_s;
  if (p->state == OP_PAGE_DONE || p->state == OP_PAGE_FAILED)
    row->finished_at = op_wall_time_s();
  if (p->state == OP_PAGE_FAILED) {
    snprintf(row->error, sizeof row->error, "%s", p->error.message);
    snprintf(row->reason, sizeof row->reason, "%s", op_reason_name(p->error.why));
  }
}

static int save_page(op_service_t *svc, op__active_t *a, const op_page_job_t *p, const char *state, op_error_t *e) {
  op_page_row_t row;
  page_row(p, state, &row);
  return op_store_page_put(svc->store, a->row.id, &row, e);
}

/* The page list, the first time a page of the task starts (the probe is
 * done): in the same transaction, so a restart sees every page or none. */
static int save_page_list(op_service_t *svc, op__active_t *a, const op_page_job_t *running, op_error_t *e) {
  const op_task_t *t = a->task;
  op_page_row_t *rows = calloc(t->n_pages, sizeof *rows);
  if (rows == NULL)
    return op_error_set(e, OP_ENOMEM, NULL, "out of memory recording %zu pages", t->n_pages);
  for (size_t i = 0; i < t->n_pages; i++) {
    const op_page_job_t *p = &t->pages[i];
    page_row(p, p == running ? "running" : p->state == OP_PAGE_DONE ? "done" : "queued", &rows[i]);
  }
  int rc = op_store_pages_put(svc->store, a->row.id, rows, t->n_pages, e);
  free(rows);
  return rc;
}

/* ---- a page starts ---- */

static int write_page_start(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  const op_page_job_t *p = w->page;
  int rc = a->pages_recorded ? save_page(svc, a, p, "running", e) : save_page_list(svc, a, p, e);
  a->row.pages_total = (int)a->task->n_pages;
  if (rc == 0 && a->row.status == OP_TASK_QUEUED) {
    a->row.status = OP_TASK_RUNNING;
    a->row.started_at = op_wall_time_s();
    rc = event(svc, a, "started", NULL, e);
  }
  if (rc == 0 && strcmp(a->row.device, p->device) != 0) { /* the task's device: where its pages went, last */
    snprintf(a->row.device, sizeof a->row.device, "%s", p->device);
    rc = event(svc, a, "resource_acquired", json_pack("{s:s}", "device", p->device), e);
  }
  a->row.attempts++;
  if ((int64_t)p->estimate_bytes > a->row.estimated_memory_bytes)
    a->row.estimated_memory_bytes = (int64_t)p->estimate_bytes;
  snprintf(a->row.worker, sizeof a->row.worker, "worker%u", p->worker_id);
  if (rc == 0)
    rc = op_store_task_update(svc->store, &a->row, e);
  json_t *details =
      json_pack("{s:i, s:i, s:s, s:s, s:i, s:i, s:s, s:s, s:I}", "page", (int)p->index + 1, "attempt", (int)p->attempts,
                "node", svc->node.id, "worker", a->row.worker, "pid", (int)p->worker_pid, "batch", (int)p->batch,
                "model", p->model, "device", p->device, "estimated_memory_bytes", (json_int_t)p->estimate_bytes);
  if (details != NULL && p->fallback_why != NULL)
    json_object_set_new(details, "fallback_reason", json_string(p->fallback_why));
  return rc == 0 ? event(svc, a, "page_started", details, e) : (json_decref(details), rc);
}

static void on_page_start(void *ctx, op_task_t *t, op_page_job_t *p) {
  op_service_t *svc = ctx;
  op__active_t *a = op__find_active(svc, t);
  if (a == NULL)
    return;
  int first = a->row.status == OP_TASK_QUEUED;
  writes_t w = {.what = "a page's start", .write = write_page_start, .page = p};
  if (record(svc, a, &w) < 0) {
    record_failed(svc, a, w.what);
    return;
  }
  a->pages_recorded = 1;
  if (first)
    op_metrics_queue_wait(svc->metrics, a->row.started_at - a->row.created_at);
}

/* ---- a page is queued again ---- */

static int write_retry(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  int rc = save_page(svc, a, w->page, "queued", e);
  return rc < 0 ? rc
                : event(svc, a, "retried",
                        json_pack("{s:i, s:i, s:s}", "page", (int)w->page->index + 1, "attempt", (int)w->page->attempts,
                                  "reason", w->text ? w->text : ""),
                        e);
}

static void on_retry(void *ctx, op_task_t *t, op_page_job_t *p, const char *why) {
  op_service_t *svc = ctx;
  op__active_t *a = op__find_active(svc, t);
  writes_t w = {.what = "a page's retry", .write = write_retry, .page = p, .text = why};
  if (a != NULL)
    record_or_fail(svc, a, &w);
}

/* ---- a page waits for memory ---- */

static int write_memory_wait(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  return event(svc, a, "waiting_for_memory",
               json_pack("{s:i, s:I, s:I, s:I}", "page", (int)w->page->index + 1, "needed_bytes", (json_int_t)w->need,
                         "free_bytes", (json_int_t)w->free_bytes, "budget_bytes", (json_int_t)svc->settings.budget),
               e);
}

static void on_memory_wait(void *ctx, op_task_t *t, op_page_job_t *p, uint64_t need, uint64_t free_bytes) {
  op_service_t *svc = ctx;
  op__active_t *a = op__find_active(svc, t);
  writes_t w = {.what = "a page's wait for memory",
                .write = write_memory_wait,
                .page = p,
                .need = need,
                .free_bytes = free_bytes};
  if (a != NULL)
    record(svc, a, &w); /* an event only: the task goes on without it */
}

/* ---- pressure ---- */

static int write_memory_warning(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  return event(svc, a, "memory_warning",
               json_pack("{s:s, s:s, s:I, s:I}", "device", "cpu", "level", op_mem_level_name(w->level), "used_bytes",
                         (json_int_t)w->used, "budget_bytes", (json_int_t)w->budget),
               e);
}

/* The level changed: running tasks record a memory_warning when it rises;
 * entering critical writes a memory report. */
static void on_pressure(void *ctx, op_mem_level_t level, int refusing, uint64_t used, uint64_t budget) {
  op_service_t *svc = ctx;
  atomic_store(&svc->refusing, refusing);
  writes_t w = {
      .what = "a memory warning", .write = write_memory_warning, .level = level, .used = used, .budget = budget};
  for (size_t i = 0; level > svc->level && i < svc->n_active; i++)
    if (svc->active[i]->task != NULL && svc->active[i]->task->status == OP_TASK_RUNNING)
      record(svc, svc->active[i], &w); /* an event only */
  if (level == OP_MEM_CRITICAL && svc->level != OP_MEM_CRITICAL)
    svc->report_reason = "critical";
  svc->level = level;
}

/* ---- a page ends ---- */

int op__task_blobs(op_service_t *svc, const op_task_t *t, const char *id, int page, int put, op_error_t *e) {
  char *prefix = page >= 0 ? op_task_page_prefix(t, (uint32_t)page) : NULL;
  const char *base = prefix ? strrchr(prefix, '/') : NULL;
  int rc = page < 0 || base ? 0 : op_error_set(e, OP_ENOMEM, NULL, "out of memory");
  for (unsigned f = 1; rc == 0 && f <= OP_FMT_PDF; f <<= 1) {
    if (!(t->opts.formats & f))
      continue;
    const char *ext = op_format_ext((op_format_t)f);
    char name[80], *path = NULL;
    snprintf(name, sizeof name, "%s.%s", page >= 0 ? base + 1 : "result", ext);
    if (page >= 0 ? asprintf(&path, "%s.%s", prefix, ext) < 0
                  : (path = op_task_result_path(t, (op_format_t)f)) == NULL) {
      path = NULL;
      rc = op_error_set(e, OP_ENOMEM, NULL, "out of memory");
      break;
    }
    rc = put ? op_store_blob_put(svc->store, id, name, path, e) : op_store_blob_get(svc->store, id, name, path, e);
    free(path);
  }
  free(prefix);
  return rc;
}

static int write_page_end(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  const op_page_job_t *p = w->page;
  const op_task_t *t = a->task;
  int done = p->state == OP_PAGE_DONE;
  int rc = save_page(svc, a, p, done ? "done" : "failed", e);
  a->row.pages_done = (int)t->pages_done;
  a->row.pages_total = (int)t->n_pages;
  int64_t peak = (int64_t)p->peak_rss_kb * 1024;
  if (peak > a->row.peak_memory_bytes)
    a->row.peak_memory_bytes = peak;
  rc = rc < 0 ? rc : op_store_task_update(svc->store, &a->row, e);
  rc = rc < 0 ? rc : op_store_metric_add(svc->store, a->row.id, peak, "cpu", "page", e);
  if (rc == 0 && done)
    rc = op__task_blobs(svc, a->task, a->row.id, (int)p->index, 1, e);
  if (rc < 0)
    return rc;
  if (done)
    return event(svc, a, "page_done",
                 json_pack("{s:i, s:s, s:I}", "page", (int)p->index + 1, "node", svc->node.id, "peak_memory_bytes",
                           (json_int_t)peak),
                 e);
  return event(svc, a, "page_failed",
               json_pack("{s:i, s:s, s:s, s:s}", "page", (int)p->index + 1, "node", svc->node.id, "reason",
                         op_reason_name(p->error.why), "error", p->error.message),
               e);
}

static void on_page_end(void *ctx, op_task_t *t, op_page_job_t *p) {
  op_service_t *svc = ctx;
  op__active_t *a = op__find_active(svc, t);
  if (a != NULL)
    op__record_page_end(svc, a, p);
}

void op__record_page_end(op_service_t *svc, op__active_t *a, op_page_job_t *p) {
  writes_t w = {.what = "a page's end", .write = write_page_end, .page = p};
  if (record(svc, a, &w) < 0) {
    record_failed(svc, a, w.what);
    return;
  }
  int done = p->state == OP_PAGE_DONE;
  op_metrics_page(svc->metrics, done, p->error.why, p->started_s > 0 ? op_wall_time_s() - p->started_s : 0);
}

/* ---- a task ends ---- */

void op__remove_fragments(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == 'p' && strspn(de->d_name + 1, "0123456789") == 6) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

static int write_task_end(op_service_t *svc, op__active_t *a, const writes_t *w, op_error_t *e) {
  (void)w;
  const op_task_t *t = a->task;
  const char *status = op_task_status_name(t->status);
  a->row.status = t->status;
  a->row.finished_at = op_wall_time_s();
  a->row.pages_done = (int)t->pages_done;
  a->row.pages_total = (int)t->n_pages;
  if (t->status != OP_TASK_SUCCEEDED) {
    snprintf(a->row.failure_reason, sizeof a->row.failure_reason, "%s",
             op_reason_name(t->error.why ? t->error.why : OP_REASON_INTERNAL));
    snprintf(a->row.error, sizeof a->row.error, "%s", t->error.message);
  }
  a->row.resource_cleanup_completed = 1;
  int rc = event(svc, a, "cleanup_started", NULL, e);
  rc = rc < 0 ? rc
              : event(svc, a, "resource_released",
                      json_pack("{s:s}", "device", a->row.device[0] ? a->row.device : "cpu"), e);
  rc = rc < 0 ? rc : event(svc, a, "cleanup_completed", NULL, e);
  rc = rc < 0 ? rc : op_store_task_update(svc->store, &a->row, e);
  if (rc == 0 && t->status == OP_TASK_SUCCEEDED)
    rc = op__task_blobs(svc, t, a->row.id, -1, 1, e);
  if (rc < 0)
    return rc;
  if (t->status == OP_TASK_SUCCEEDED)
    return event(svc, a, "succeeded", json_pack("{s:i}", "pages", (int)t->pages_done), e);
  return event(svc, a, status, json_pack("{s:s, s:s}", "reason", a->row.failure_reason, "error", a->row.error), e);
}

static void on_task_end(void *ctx, op_task_t *t) {
  op_service_t *svc = ctx;
  op__active_t *a = op__find_active(svc, t);
  if (a == NULL)
    return;
  writes_t w = {.what = "the end", .write = write_task_end};
  if (!a->store_unreachable && record(svc, a, &w) == 0) {
    /* Fragments go only after every result is written (assembled before
     * this callback) and the end is committed: a kill before the commit
     * leaves pages "done" with their fragments, or the results whole, and the
     * next start does not assemble again. */
    op__remove_fragments(t->scratch_dir);
    pthread_mutex_lock(&svc->lock);
    svc->n_finished++;
    pthread_cond_broadcast(&svc->finished);
    pthread_mutex_unlock(&svc->lock);
  } else if (!a->lost) {
    op_log_task(OP_LOG_ERROR, a->row.id, 0,
                "task %s: its end could not be recorded; it stays unfinished in the store and resumes", a->row.id);
  }
  /* The scheduler is done with it; forget it (its files stay for the results). */
  for (size_t i = 0; i < svc->n_active; i++) {
    if (svc->active[i] == a) {
      svc->active[i] = svc->active[--svc->n_active];
      break;
    }
  }
  op_task_destroy(t);
  free(a);
  op__wake(svc); /* room to claim another */
}

void op__record_install(op_service_t *svc, op_sched_config_t *qcfg) {
  qcfg->on_page_start = on_page_start;
  qcfg->on_retry = on_retry;
  qcfg->on_page = on_page_end;
  qcfg->on_task = on_task_end;
  qcfg->on_memory_wait = on_memory_wait;
  qcfg->on_pressure = on_pressure;
  qcfg->cb_ctx = svc;
}
