/*
 * recover.c: tasks from the store into the scheduler, and out of the store.
 *
 * On every scan (each store.poll, and at once when woken: a local
 * submission, a NOTIFY from another node, a task's end) the service claims the
 * tasks no live node holds, in priority order, store.claim_batch at a time and
 * no more than one unfinished task per worker, and gives them to the
 * scheduler, with those it holds but does not run (one whose end could not be
 * written while the store was out of reach). A task claimed from a node that
 * died keeps its done pages (their fragments are fetched from the store where
 * this node lacks them); a page that was running when its node died counts a
 * crash attempt, so a page that kills every node ends failed instead of going
 * round forever. The same scan sees cancels requested on any node, and tasks
 * another node claimed after this one's lease lapsed. Tasks that waited past
 * the queue timeout fail; finished tasks past their retention are removed
 * with their files; at start, files no task owns go.
 */
#include "core/service_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "worker/supervisor.h"

static void log_store_error(const char *what, const op_error_t *e) {
  op_log_error("store: %s: %s", what, e->message);
}

/* ---- options: from the stored JSON to the scheduler's ---- */

/* The stored options, checked by the codec as strictly as at the edge; text
 * that does not read at all (cut, edited by hand) is bad options too. */
static int task_opts_from_json(const char *text, op_task_opts_t *o, op_error_t *err) {
  int rc = op_task_opts_from_json(text, o, err);
  if (rc == OP_EINTERNAL) { /* a copy: vsnprintf may not read what it writes */
    char why[sizeof err->message];
    snprintf(why, sizeof why, "%s", err->message);
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "its stored options cannot be read (%.500s)", why);
  }
  return rc;
}

/* ---- loading tasks from the store ---- */

/* The pages a resumed task already has: done ones keep their fragments (run
 * again if the store has lost them); one that was running when its node died
 * counts a crash attempt, and fails as worker_crashed after max_attempts. */
static void restore_pages(op_service_t *svc, op__active_t *a) {
  op_page_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (a->row.status == OP_TASK_QUEUED) /* never started: the page list is written with the first start */
    return;
  if (op_store_pages(svc->store, a->row.id, &rows, &n, &e) < 0 || n == 0) {
    free(rows);
    return;
  }
  op_task_t *t = a->task;
  /* Every result here (or fetched): a task that ended just before a kill, its end unrecorded, needs no fragments. */
  int results = op__task_blobs(svc, t, a->row.id, -1, 0, &e) == 0;
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
      if (!results && op__task_blobs(svc, t, a->row.id, (int)p->index, 0, &e) < 0) {
        op_log_task(OP_LOG_WARN, a->row.id, 0, "task %s: page %u's results are missing: it runs again", a->row.id,
                    p->index + 1);
        p->state = OP_PAGE_QUEUED;
      }
    } else if (strcmp(rows[i].state, "running") == 0 &&
               ++p->crash_attempts >= (svc->cfg.max_attempts ? svc->cfg.max_attempts : 3)) {
      p->state = OP_PAGE_FAILED;
      p->restored_failed = 1;
      op_error_set(&p->error, OP_ECRASH, "worker_crashed",
                   "page %u was running on a node or worker that died, %u times", p->index + 1, p->crash_attempts);
    } else if (strcmp(rows[i].state, "failed") == 0) {
      /* Its reason as it failed; a row from before the reason column says none. */
      p->state = OP_PAGE_FAILED;
      op_error_set(&p->error, OP_EINTERNAL, rows[i].reason[0] ? rows[i].reason : "internal", "%s", rows[i].error);
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
  /* Accepted by another node: the document comes from the store. */
  if (access(input, F_OK) != 0) {
    op_error_t e;
    int rc =
        mkdir(dir, 0700) < 0 && errno != EEXIST ? OP_EIO : op_store_blob_get(svc->store, row->id, "input", input, &e);
    if (rc < 0) {
      op_task_opts_dispose(&opts);
      op_error_set(err, rc == OP_ENOTFOUND ? OP_EUSAGE : OP_ENOMEM, rc == OP_ENOTFOUND ? "internal" : NULL,
                   "its document cannot be read from the store (%s)", rc == OP_ENOTFOUND ? "it is gone" : e.message);
      goto out;
    }
  }
  /* The server's limit, or the lower quota its token stored with it. */
  if (opts.limits.max_pages > svc->cfg.limits.max_pages)
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
      return; /* tried again at the next scan: the task is this node's */
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
    if (op_sched_add(svc->sched, a->task, &e) == 0) {
      for (size_t i = 0; i < a->task->n_pages; i++) /* as a page failed while running would be */
        if (a->task->pages[i].restored_failed)
          op__record_page_end(svc, a, &a->task->pages[i]);
      if (row->cancel_requested) { /* asked on a node that did not hold it */
        a->cancel_seen = 1;
        op_sched_cancel(svc->sched, a->task);
      }
      return;
    }
    svc->n_active--;
  }
  if (e.code == OP_ENOMEM)
    op_log_task(OP_LOG_ERROR, row->id, 0, "task %s cannot be scheduled now: %s", row->id, e.message);
  else
    fail_unschedulable(svc, row, &e);
  op_task_destroy(a->task);
  free(a);
}

static op__active_t *find_active_id(op_service_t *svc, const char *id) {
  for (size_t i = 0; i < svc->n_active; i++)
    if (strcmp(svc->active[i]->row.id, id) == 0)
      return svc->active[i];
  return NULL;
}

void op__drop_lost(op_service_t *svc, op__active_t *a) {
  if (a->lost)
    return;
  a->lost = a->store_failed = a->store_unreachable = 1; /* its end is not recorded */
  op_error_t e;
  op_error_set(&e, OP_EIO, "lease_lost", "another node holds this task now");
  op_log_task(OP_LOG_WARN, a->row.id, 0,
              "task %s: another node claimed it after this node's lease lapsed: it stops here, recording nothing",
              a->row.id);
  op_sched_fail(svc->sched, a->task, &e);
}

/* Whether a task that no node runs should be claimed out of turn: a cancel
 * asked for it, or it waited past the queue timeout (it then ends at once). */
static int due_out_of_turn(const op_service_t *svc, const op_task_row_t *row, double now) {
  if (row->node[0] != '\0' && row->lease_until > now) /* held (this clock's guess; the claim decides) */
    return 0;
  return row->cancel_requested || (row->status == OP_TASK_QUEUED && svc->cfg.queue_timeout_s > 0 &&
                                   now - row->created_at > svc->cfg.queue_timeout_s);
}

/* The unfinished tasks in the store against those this node runs: its own
 * that it does not run (resumed), cancels asked on any node, tasks another
 * node claimed since (dropped), and tasks no node runs that must end now. */
void op__review_tasks(op_service_t *svc) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_tasks_unfinished(svc->store, &rows, &n, &e) < 0) {
    log_store_error("listing unfinished tasks", &e);
    return;
  }
  double now = op_wall_time_s();
  int draining = atomic_load(&svc->draining);
  for (size_t i = 0; i < n; i++) {
    const op_task_row_t *row = &rows[i];
    op__active_t *a = find_active_id(svc, row->id);
    int mine = strcmp(row->node, svc->node.id) == 0;
    op_task_row_t claimed;
    if (a == NULL) {
      if (mine && !draining)
        schedule_row(svc, row);
      else if (!mine && !draining && due_out_of_turn(svc, row, now) &&
               op_store_task_claim(svc->store, row->id, svc->node.id, svc->cfg.lease_s, &claimed, &e) == 0)
        schedule_row(svc, &claimed); /* cancelled or expired by the scan at once */
    } else if (!mine || row->claim != a->row.claim) {
      op__drop_lost(svc, a);
    } else if (row->cancel_requested && !a->cancel_seen) {
      a->cancel_seen = 1;
      op_sched_cancel(svc->sched, a->task);
    }
  }
  free(rows);
}

#define CLAIM_ROUNDS 8 /* claim queries per scan at most: the next scan claims the rest */

/* How many more tasks this node may claim now: it holds at most one
 * unfinished task per worker, and claims the next when one ends. The queue
 * stays in the store, in its global order: a task of a higher priority that
 * arrives later goes before those no node has started, on whichever node has
 * room first, and a busy node leaves the queue to nodes with room. */
static int claim_room(const op_service_t *svc) {
  int held = 0;
  for (size_t i = 0; i < svc->n_active; i++)
    held += !svc->active[i]->task->ended;
  int workers = (int)(svc->cfg.workers ? svc->cfg.workers : op_usable_cores());
  return workers > held ? workers - held : 0;
}

void op__claim_tasks(op_service_t *svc) {
  if (atomic_load(&svc->draining))
    return;
  int batch = (int)(svc->cfg.claim_batch ? svc->cfg.claim_batch : 16);
  for (int round = 0; round < CLAIM_ROUNDS; round++) {
    int room = claim_room(svc), limit = room < batch ? room : batch;
    if (limit <= 0)
      break;
    op_task_row_t *rows = NULL;
    size_t n = 0;
    op_error_t e;
    if (op_store_tasks_claim(svc->store, svc->node.id, svc->cfg.lease_s, svc->aging_s, limit, &rows, &n, &e) < 0) {
      log_store_error("claiming tasks", &e);
      return;
    }
    for (size_t i = 0; i < n; i++)
      schedule_row(svc, &rows[i]);
    free(rows);
    if ((int)n < limit)
      break;
  }
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
 * finished tasks whose cleanup a crash interrupted, are removed (also where
 * the end was committed, cleanup flag and all, and the process was killed
 * before it removed them). */
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
    } else if (rc == 0 && OP_TASK_STATUS_ENDED(row.status)) {
      op__remove_fragments(dir);
      if (!row.resource_cleanup_completed) {
        row.resource_cleanup_completed = 1;
        op_store_task_update(svc->store, &row, &e);
      }
    }
    free(dir);
  }
  closedir(d);
}
