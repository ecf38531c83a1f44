/*
 * recover.c: tasks from the store into the scheduler, and out of the store.
 *
 * The service lists the store's unfinished tasks at start and on every scan
 * (a task another thread recorded, or one whose end could not be written),
 * and gives the scheduler those it does not run yet: a restarted task keeps
 * its done pages (their fragments are on disk) and runs the rest again.
 * Tasks that waited past the queue timeout fail; finished tasks past their
 * retention are removed with their files; at start, files no task owns go.
 */
#include "core/service_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/log.h"

static void log_store_error(const char *what, const op_error_t *e) {
  op_log_error("store: %s: %s", what, e->message);
}

/* ---- options: from the stored JSON to the scheduler's ---- */

/* The stored options, checked by the codec as strictly as at the edge; text
 * that does not read at all (cut, edited by hand) is bad options too. */
static int task_opts_from_json(const char *text, op_task_opts_t *o, op_error_t *err) {
  int rc = op_task_opts_from_json(text, o, err);
  if (rc == OP_EINTERNAL)
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "its stored options cannot be read (%.500s)", err->message);
  return rc;
}

/* ---- loading tasks from the store ---- */

static int is_active(const op_service_t *svc, const char *id) {
  for (size_t i = 0; i < svc->n_active; i++)
    if (strcmp(svc->active[i]->row.id, id) == 0)
      return 1;
  return 0;
}

/* The pages a restarted task already has: done ones keep their fragments. */
static void restore_pages(op_service_t *svc, op__active_t *a) {
  op_page_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_pages(svc->store, a->row.id, &rows, &n, &e) < 0 || n == 0) {
    free(rows);
    return;
  }
  op_task_t *t = a->task;
  t->pages = calloc(n, sizeof *t->pages);
  if (t->pages == NULL) {
    free(rows);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    op_page_job_t *p = &t->pages[i];
    p->task = t;
    p->index = (uint32_t)rows[i].index;
    p->attempts = (unsigned)rows[i].attempts;
    p->crash_attempts = (unsigned)rows[i].crash_attempts;
    p->estimate_bytes = (uint64_t)rows[i].estimated_memory_bytes;
    if (strcmp(rows[i].state, "done") == 0) {
      p->state = OP_PAGE_DONE;
    } else if (strcmp(rows[i].state, "failed") == 0) {
      p->state = OP_PAGE_FAILED;
      op_error_set(&p->error, OP_EINTERNAL, "internal", "%s", rows[i].error);
    } else {
      p->state = OP_PAGE_QUEUED;
    }
  }
  t->n_pages = n;
  a->pages_recorded = 1;
  free(rows);
}

/* A stored task the scheduler can never run (its options do not read, its
 * model is gone): it fails with the reason, instead of waiting forever. */
static void fail_unschedulable(op_service_t *svc, const op_task_row_t *row, const op_error_t *why) {
  op_task_row_t failed = *row;
  op_error_t e;
  op_log_task(OP_LOG_ERROR, row->id, 0, "task %s cannot be scheduled: %s", row->id, why->message);
  failed.status = OP_TASK_FAILED;
  failed.finished_at = op_wall_time_s();
  snprintf(failed.failure_reason, sizeof failed.failure_reason, "%s", op_reason_name(why->why));
  snprintf(failed.error, sizeof failed.error, "%s", why->message);
  failed.resource_cleanup_completed = 1;
  int rc = op_store_begin(svc->store, &e);
  if (rc == 0) {
    rc = op_store_task_update(svc->store, &failed, &e);
    json_t *details = json_pack("{s:s, s:s}", "reason", failed.failure_reason, "error", failed.error);
    rc = rc < 0 ? rc : op_store_event_add(svc->store, row->id, "failed", details, &e);
    json_decref(details);
    rc = op_store_end(svc->store, rc, &e);
  }
  if (rc < 0)
    log_store_error("recording a task that cannot be scheduled", &e);
}

/* The scheduler's task for a stored row (NULL: *err says why). */
static op_task_t *task_of_row(op_service_t *svc, const op_task_row_t *row, op_error_t *err) {
  op_task_opts_t opts;
  char *dir = op_service_task_dir(svc, row->id), *input = NULL;
  op_task_t *t = NULL;
  if (dir == NULL || asprintf(&input, "%s/input", dir) < 0) {
    input = NULL;
    op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    goto out;
  }
  if (task_opts_from_json(row->options, &opts, err) < 0)
    goto out;
  opts.limits.max_pages = svc->cfg.limits.max_pages;
  opts.limits.max_page_pixels = svc->cfg.limits.max_page_pixels;
  t = op_task_create(input, row->title[0] ? row->title : "document", op_doc_type_from_name(row->input_type), &opts);
  op_task_opts_dispose(&opts);
  if (t == NULL) {
    op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    goto out;
  }
  snprintf(t->log_id, sizeof t->log_id, "%s", row->id);
  json_t *o = json_loads(row->options, 0, NULL);
  const char *model = json_string_value(json_object_get(o, "model"));
  if (model != NULL)
    t->policy = op_model_policy_named(svc->settings.policies, svc->settings.n_policies, model);
  if (model != NULL && t->policy == NULL)
    t->opts.model_name = "(no longer declared)"; /* op_sched_add refuses it with a sentence */
  json_decref(o);
  t->scratch_dir = dir;
  dir = NULL;
  t->keep_scratch = 1;
  t->started_s = row->started_at;
  t->queued_s = row->created_at;
out:
  free(dir);
  free(input);
  return t;
}

static void schedule_row(op_service_t *svc, const op_task_row_t *row) {
  op_error_t e;
  op__active_t *a = NULL;
  if (svc->n_active == svc->cap_active) {
    size_t cap = svc->cap_active ? svc->cap_active * 2 : 64;
    op__active_t **na = realloc(svc->active, cap * sizeof *na);
    if (na == NULL)
      return; /* tried again at the next scan */
    svc->active = na;
    svc->cap_active = cap;
  }
  if ((a = calloc(1, sizeof *a)) == NULL)
    return;
  a->row = *row;
  a->task = task_of_row(svc, row, &e);
  if (a->task != NULL) {
    restore_pages(svc, a);
    svc->active[svc->n_active++] = a;
    if (op_sched_add(svc->sched, a->task, &e) == 0)
      return;
    svc->n_active--;
  }
  if (e.code == OP_ENOMEM)
    op_log_task(OP_LOG_ERROR, row->id, 0, "task %s cannot be scheduled now: %s", row->id, e.message);
  else
    fail_unschedulable(svc, row, &e);
  op_task_destroy(a->task);
  free(a);
}

void op__load_tasks(op_service_t *svc) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_tasks_unfinished(svc->store, &rows, &n, &e) < 0) {
    log_store_error("listing unfinished tasks", &e);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (!is_active(svc, rows[i].id))
      schedule_row(svc, &rows[i]);
  free(rows);
}

void op__expire_queued(op_service_t *svc) {
  double now = op_wall_time_s();
  for (size_t i = 0; i < svc->n_active; i++) {
    op__active_t *a = svc->active[i];
    if (a->row.status == OP_TASK_QUEUED && !a->task->ended && svc->cfg.queue_timeout_s > 0 &&
        now - a->row.created_at > svc->cfg.queue_timeout_s) {
      op_error_t e;
      op_error_set(&e, OP_ETIMEOUT, "queue_timeout", "the task waited %u s in the queue without starting",
                   svc->cfg.queue_timeout_s);
      op_sched_fail(svc->sched, a->task, &e); /* it ends after the step: the list stays as it is */
    }
  }
}

void op__apply_retention(op_service_t *svc) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_tasks_finished_before(svc->store, op_wall_time_s() - svc->cfg.retention_s, &rows, &n, &e) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    char *dir = op_service_task_dir(svc, rows[i].id);
    if (dir != NULL)
      op_remove_tree(dir);
    free(dir);
    if (op_store_task_delete(svc->store, rows[i].id, &e) < 0)
      log_store_error("removing an old task", &e);
  }
  if (n > 0)
    op_log_info("retention: removed %zu finished tasks", n);
  free(rows);
}

/* At start: directories of tasks the store does not know, and fragments of
 * finished tasks whose cleanup a crash interrupted, are removed. */
void op__clean_leftovers(op_service_t *svc) {
  DIR *d = opendir(svc->tasks_dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    op_task_row_t row;
    op_error_t e;
    char *dir = op_service_task_dir(svc, de->d_name);
    if (dir == NULL)
      continue;
    int rc = op_store_task_get(svc->store, de->d_name, &row, &e);
    if (rc == OP_ENOTFOUND) {
      op_log_info("removing the files of unknown task %s", de->d_name);
      op_remove_tree(dir);
    } else if (rc == 0 && !row.resource_cleanup_completed && OP_TASK_STATUS_ENDED(row.status)) {
      op__remove_fragments(dir);
      row.resource_cleanup_completed = 1;
      op_store_task_update(svc->store, &row, &e);
    }
    free(dir);
  }
  closedir(d);
}
