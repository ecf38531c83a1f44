/*
 * sched.c: the scheduler's queue and step loop.
 *
 * Tasks wait in one list; the next job is the highest (aged) priority task's
 * next ready stage or page: a task gains a level for every aging_s it waits,
 * so low priorities cannot starve, and a retried page waits out its backoff.
 * A step dispatches what can run (dispatch.c), waits for one supervisor
 * event, hands it to what it is about (outcome.c for a probe, page or merge,
 * model_manager.c for a load or unload), and dispatches again. A task that
 * ends during a step is only marked; its on_task callback runs after the
 * step, from the ended list, when nothing here refers to it any more.
 */
#include "core/sched_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/fs.h"
#include "util/log.h"

const char *const op_sched_end_names[OP_SCHED_END_REASONS] = {"crash", "timeout", "out_of_memory", "recycle", "room"};

void op_sched_config_init(op_sched_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->scratch_root = "/tmp";
  cfg->page_timeout_ms = 300000;
  cfg->max_attempts = 3;
  cfg->max_crash_attempts = 3;
  cfg->retry_backoff_s = 0.5;
  cfg->aging_s = 60;
  cfg->warning_share = 0.8;
  cfg->critical_share = 0.95;
  cfg->defer_below = 5;
  cfg->cooldown_s = 5;
  cfg->render_bytes = UINT64_C(128) << 20;
}

op_sched_t *op_sched_create(const op_sched_config_t *cfg, op_supervisor_t *sup) {
  op_sched_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->cfg = *cfg;
  s->sup = sup;
  op_model_policy_init(&s->default_policy);
  op_pressure_init(&s->pressure, cfg->warning_share, cfg->critical_share, cfg->cooldown_s);
  s->estimates = op_estimates_create(0);
  s->n_workers = op_supervisor_size(sup);
  s->workers = calloc(s->n_workers ? s->n_workers : 1, sizeof *s->workers);
  if (s->estimates == NULL || s->workers == NULL || op_budget_init(&s->budget, cfg->budget_bytes, s->n_workers) < 0) {
    op_sched_destroy(s);
    return NULL;
  }
  s->oom_source = op_mem_oom_kills(&s->oom_kills);
  s->oom_start = s->oom_kills; /* kills before we started are none of ours */
  return s;
}

void op_sched_destroy(op_sched_t *s) {
  if (s == NULL)
    return;
  op_estimates_destroy(s->estimates);
  op_budget_dispose(&s->budget);
  free(s->workers);
  free(s->mstats);
  free(s->tasks);
  free(s->ended);
  free(s);
}

size_t op_sched_active(const op_sched_t *s) {
  return s->n_tasks;
}

void op_sched_pause(op_sched_t *s, int paused) {
  s->paused = paused;
}

size_t op_sched_running(const op_sched_t *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n_tasks; i++) {
    n += s->tasks[i]->stage_running != 0;
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++)
      n += s->tasks[i]->pages[k].state == OP_PAGE_RUNNING;
  }
  return n;
}

/* Its model's policy: preset by the caller, or named, or the first declared
 * for its engine and languages, or the defaults. */
static int bind_policy(op_sched_t *s, op_task_t *t, op_error_t *err) {
  const op_model_policy_t *pol = t->policy;
  if (pol == NULL && t->opts.model_name != NULL) {
    pol = op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->opts.model_name);
    if (pol == NULL)
      return op_error_set(err, OP_EUSAGE, "bad_options", "no model named \"%s\" is declared", t->opts.model_name);
  }
  if (pol == NULL)
    pol = op_model_policy_find(s->cfg.policies, s->cfg.n_policies, t->opts.model.engine, t->opts.model.lang);
  if (pol != NULL) {
    snprintf(t->opts.model.engine, sizeof t->opts.model.engine, "%s", pol->engine);
    snprintf(t->opts.model.lang, sizeof t->opts.model.lang, "%s", pol->lang);
  }
  t->policy = pol != NULL ? pol : &s->default_policy;
  return 0;
}

static int grow(void *array, size_t *cap, size_t n, size_t size) {
  if (n < *cap)
    return 0;
  size_t c = *cap ? *cap * 2 : 16;
  void *grown = realloc(*(void **)array, c * size);
  if (grown == NULL)
    return OP_ENOMEM;
  *(void **)array = grown;
  *cap = c;
  return 0;
}

int op_sched_add(op_sched_t *s, op_task_t *t, op_error_t *err) {
  /* Room on the ended list too, reserved now: a task's end cannot fail for memory. */
  if (grow(&s->tasks, &s->cap_tasks, s->n_tasks, sizeof *s->tasks) < 0 ||
      grow(&s->ended, &s->cap_ended, s->n_tasks, sizeof *s->ended) < 0)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory queueing a task");
  int rc = bind_policy(s, t, err);
  if (rc < 0)
    return rc;
  t->id = ++s->next_task_id;
  if (t->log_id[0] == '\0')
    snprintf(t->log_id, sizeof t->log_id, "%llu", (unsigned long long)t->id);
  if (t->scratch_dir == NULL &&
      asprintf(&t->scratch_dir, "%s/task-%llu", s->cfg.scratch_root, (unsigned long long)t->id) < 0) {
    t->scratch_dir = NULL;
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory queueing a task");
  }
  if (mkdir(t->scratch_dir, 0700) < 0 && errno != EEXIST)
    return op_error_set(err, OP_EIO, "internal", "cannot create scratch directory: %s", strerror(errno));
  t->status = t->started_s > 0 ? OP_TASK_RUNNING : OP_TASK_QUEUED;
  if (t->queued_s == 0)
    t->queued_s = op_wall_time_s();
  t->stage = t->n_pages > 0 ? OP_STAGE_PAGES : OP_STAGE_PROBE;
  t->resumed = t->n_pages > 0;
  t->pages_done = t->pages_failed = 0;
  for (size_t i = 0; i < t->n_pages; i++) {
    t->pages[i].task = t;
    if (t->pages[i].state == OP_PAGE_RUNNING)
      t->pages[i].state = OP_PAGE_QUEUED; /* its run died with the previous process */
    t->pages_done += t->pages[i].state == OP_PAGE_DONE;
    t->pages_failed += t->pages[i].state == OP_PAGE_FAILED;
  }
  s->tasks[s->n_tasks++] = t;
  return 0;
}

void op__task_ended(op_sched_t *s, op_task_t *t) {
  if (t->ended)
    return;
  t->ended = 1;
  t->stage = OP_STAGE_DONE;
  t->finished_s = op_wall_time_s();
  s->ended[s->n_ended++] = t; /* room was reserved when it was added */
}

/* After a step: ended tasks leave the list, then their callbacks run (which may free them). */
static void reap_ended(op_sched_t *s) {
  if (s->n_ended == 0)
    return;
  size_t kept = 0;
  for (size_t i = 0; i < s->n_tasks; i++)
    if (!s->tasks[i]->ended)
      s->tasks[kept++] = s->tasks[i];
  s->n_tasks = kept;
  for (size_t i = 0; i < s->n_ended; i++)
    if (s->cfg.on_task)
      s->cfg.on_task(s->cfg.cb_ctx, s->ended[i]);
  s->n_ended = 0;
}

/* Stops a task's running jobs (their workers are killed; no event comes for them). */
static void stop_jobs(op_sched_t *s, op_task_t *t) {
  for (size_t i = 0; i < t->n_pages; i++) {
    if (t->pages[i].state == OP_PAGE_RUNNING) {
      op_supervisor_cancel(s->sup, &t->pages[i]);
      t->pages[i].state = OP_PAGE_FAILED;
    }
  }
  if (t->stage_running)
    op_supervisor_cancel(s->sup, (void *)((uintptr_t)t | 1u));
  t->stage_running = 0;
}

void op_sched_cancel(op_sched_t *s, op_task_t *t) {
  if (t->ended)
    return;
  stop_jobs(s, t);
  for (size_t i = 0; i < t->n_pages; i++)
    if (t->pages[i].state == OP_PAGE_QUEUED)
      t->pages[i].state = OP_PAGE_FAILED;
  op_error_set(&t->error, OP_EINTERNAL, "cancelled", "the task was cancelled");
  t->status = OP_TASK_CANCELLED;
  op__task_ended(s, t);
}

void op_sched_fail(op_sched_t *s, op_task_t *t, const op_error_t *error) {
  if (t->ended)
    return;
  stop_jobs(s, t);
  op__task_fail(s, t, error);
}

/* ---- the next job ---- */

/* A task's priority with aging: one level more for every aging_s it has waited. */
static double effective_priority(const op_sched_t *s, const op_task_t *t, double now) {
  double waited = now - t->queued_s;
  return t->opts.priority + (s->cfg.aging_s > 0 && waited > 0 ? waited / s->cfg.aging_s : 0);
}

/* Pages of a policy's model running now. */
static unsigned policy_running(const op_sched_t *s, const op_model_policy_t *pol) {
  unsigned n = 0;
  for (size_t i = 0; i < s->n_tasks; i++)
    for (size_t k = 0; s->tasks[i]->policy == pol && k < s->tasks[i]->n_pages; k++)
      n += s->tasks[i]->pages[k].state == OP_PAGE_RUNNING;
  return n;
}

/* Whether a task waits out memory pressure: low priorities do not start under warning. */
static int deferred(op_sched_t *s, op_task_t *t) {
  if (s->pressure.level < OP_MEM_WARNING || t->opts.priority >= s->cfg.defer_below || t->status == OP_TASK_RUNNING)
    return 0;
  if (!t->deferred) {
    t->deferred = 1;
    s->deferred_tasks++;
    op_log_task(OP_LOG_INFO, t->log_id, 0, "memory: task %s (priority %d) waits while memory is under pressure",
                t->log_id, t->opts.priority);
  }
  return 1;
}

/* The task's job that can start now, if any: its stage, or its first ready page (*page). */
static int ready_job(const op_sched_t *s, op_task_t *t, double now, op_page_job_t **page) {
  *page = NULL;
  if (t->stage == OP_STAGE_PROBE || t->stage == OP_STAGE_MERGE)
    return !t->stage_running;
  if (t->stage != OP_STAGE_PAGES)
    return 0;
  /* max_concurrent is a real semaphore: the model's other pages stay queued. */
  if (t->policy->max_concurrent > 0 && policy_running(s, t->policy) >= t->policy->max_concurrent)
    return 0;
  for (size_t k = 0; k < t->n_pages; k++) {
    if (t->pages[k].state == OP_PAGE_QUEUED && t->pages[k].not_before_s <= now) {
      *page = &t->pages[k];
      return 1;
    }
  }
  return 0;
}

/* The next job to run: the highest (aged) priority, oldest task with work ready. */
int op__next_job(op_sched_t *s, op_task_t **task, op_page_job_t **page) {
  double best_priority = 0, now = op_wall_time_s();
  *task = NULL;
  *page = NULL;
  for (size_t i = 0; i < s->n_tasks; i++) {
    op_task_t *t = s->tasks[i];
    op_page_job_t *candidate;
    if (t->ended || deferred(s, t) || !ready_job(s, t, now, &candidate))
      continue;
    double priority = effective_priority(s, t, now);
    if (*task == NULL || priority > best_priority) {
      *task = t;
      *page = candidate;
      best_priority = priority;
    }
  }
  return *task != NULL;
}

/* ---- the step ---- */

/* Tasks restored after a restart with every page already ended: only the results remain. */
static void finish_restored(op_sched_t *s) {
  for (size_t i = 0; i < s->n_tasks; i++) {
    op_task_t *t = s->tasks[i];
    if (!t->ended && t->stage == OP_STAGE_PAGES && t->n_pages > 0 && t->pages_done + t->pages_failed == t->n_pages)
      op__pages_ended(s, t); /* an end is only marked: the list stays as it is during the walk */
  }
}

/* Hands one supervisor event to what it is about. */
static void handle_event(op_sched_t *s, op_sup_event_t *ev) {
  if (ev->worker_id < s->n_workers) {
    op__after_job(s, ev->worker_id, ev);
    if (ev->type == OP_SUP_EV_LOST) {
      op__worker_t *w = &s->workers[ev->worker_id];
      w->oom_killed = w->pid == ev->pid && op__oom_killed(s, w, ev);
      op__drop_models(s, w, OP__UNLOAD_CRASH);
      s->worker_ends[w->killed_for_memory || w->oom_killed ? OP_SCHED_END_MEMORY
                     : ev->code == OP_ETIMEOUT             ? OP_SCHED_END_TIMEOUT
                                                           : OP_SCHED_END_CRASH]++;
    }
  }
  uintptr_t ctx = (uintptr_t)ev->job_ctx;
  if (ev->job_ctx == &s->control)
    op__on_control_event(s, ev);
  else if (ctx & 1u)
    op__on_stage_event(s, (op_task_t *)(ctx & ~(uintptr_t)1u), ev);
  else
    op__on_page_event(s, (op_page_job_t *)ev->job_ctx, ev);
}

int op_sched_step(op_sched_t *s, int timeout_ms, op_error_t *err) {
  reap_ended(s); /* what op_sched_cancel and op_sched_fail ended */
  finish_restored(s);
  if (s->cfg.budget_bytes > 0)
    op__sweep(s);
  op__dispatch(s);
  op_sup_event_t ev;
  int rc = op_supervisor_poll(s->sup, timeout_ms, &ev, err);
  if (rc > 0) {
    handle_event(s, &ev);
    op_sup_event_dispose(&ev);
    if (s->cfg.budget_bytes > 0)
      op__sweep(s); /* before dispatch: a worker due to retire goes for its own reason */
    op__dispatch(s);
  }
  reap_ended(s);
  return rc < 0 ? rc : rc > 0;
}

void op_sched_set_limits(op_sched_t *s, uint64_t budget_bytes, double warning_share, double critical_share,
                         double cooldown_s, int defer_below) {
  if (s->cfg.budget_bytes > 0 && budget_bytes > 0) { /* admission stays on (the pool is lazy) */
    s->cfg.budget_bytes = budget_bytes;
    s->budget.limit_bytes = budget_bytes;
  }
  s->cfg.warning_share = s->pressure.warning_share = warning_share;
  s->cfg.critical_share = s->pressure.critical_share = critical_share;
  s->cfg.cooldown_s = s->pressure.cooldown_s = cooldown_s;
  s->cfg.defer_below = defer_below;
}
