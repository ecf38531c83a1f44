/*
 * recycle.c: the per-worker record, and recycling.
 *
 * Killing a worker is the only cleanup that returns all of its memory, so
 * workers are retired by their model's policy: after max_tasks tasks, after
 * growing max_memory_growth past their size after their first page, after
 * idle_exit idle, after their task (isolate: per_task). Only idle workers
 * are retired: a page in flight is never cut short. The record of a slot
 * starts afresh when a new process takes it.
 */
#include "core/sched_internal.h"

#include <string.h>

#include "util/log.h"

op__worker_t *op__worker_of(op_sched_t *s, unsigned slot, pid_t pid) {
  op__worker_t *w = &s->workers[slot];
  if (w->pid != pid) {
    memset(w, 0, sizeof *w);
    w->pid = pid;
    op_budget_release(&s->budget, slot);
  }
  return w;
}

op__worker_t *op__idle_worker(op_sched_t *s, unsigned slot, op_worker_info_t *info) {
  op_supervisor_worker(s->sup, slot, info);
  return info->idle ? op__worker_of(s, slot, info->pid) : NULL;
}

uint64_t op__worker_reserved(op_sched_t *s, unsigned slot) {
  op_worker_info_t info;
  op_supervisor_worker(s->sup, slot, &info);
  if (info.pid == 0)
    return 0;
  op__worker_t *w = op__worker_of(s, slot, info.pid);
  return op_budget_count(op__held_bytes(s, w), info.busy ? op_budget_job(&s->budget, slot) : 0, w->pss);
}

uint64_t op__total_reserved(op_sched_t *s) {
  uint64_t r = s->server_pss;
  for (unsigned i = 0; i < s->n_workers; i++)
    r += op__worker_reserved(s, i);
  return r;
}

static const op_task_t *task_by_id(const op_sched_t *s, uint64_t id) {
  for (size_t i = 0; i < s->n_tasks; i++)
    if (s->tasks[i]->id == id && !s->tasks[i]->ended)
      return s->tasks[i];
  return NULL;
}

int op__task_has_queued(const op_task_t *t) {
  if (t == NULL || t->ended)
    return 0;
  if (t->stage == OP_STAGE_PROBE || t->stage == OP_STAGE_MERGE)
    return !t->stage_running;
  for (size_t k = 0; k < t->n_pages; k++)
    if (t->pages[k].state == OP_PAGE_QUEUED)
      return 1;
  return (t->opts.formats & OP_FMT_PDF) && t->stage == OP_STAGE_PAGES; /* its merge is still to come */
}

static int any_queued(const op_sched_t *s) {
  for (size_t i = 0; i < s->n_tasks; i++)
    if (op__task_has_queued(s->tasks[i]))
      return 1;
  return 0;
}

int op__may_serve(const op_sched_t *s, const op__worker_t *w, const op_worker_info_t *info, const op_task_t *t) {
  if (w->retire)
    return 0;
  if (w->bound_task != 0)
    return w->bound_task == t->id;
  if (t->policy->isolate_per_task) {
    for (unsigned i = 0; i < s->n_workers; i++) {
      op_worker_info_t other;
      op_supervisor_worker(s->sup, i, &other);
      if (other.pid > 0 && s->workers[i].pid == other.pid && s->workers[i].bound_task == t->id && !s->workers[i].retire)
        return 0; /* the task has its worker; it waits for it */
    }
    return info->jobs_done == 0;
  }
  const op_model_policy_t *pol = w->policy;
  return pol == NULL || pol->max_tasks == 0 || w->tasks_run < pol->max_tasks || w->last_task_id == t->id;
}

static void retired(op_sched_t *s, op__worker_t *w, int end, op__unload_t unload) {
  s->worker_ends[end]++;
  op__drop_models(s, w, unload);
}

int op__retire_idle(op_sched_t *s, int keep) {
  int best = -1;
  uint64_t best_bytes = 0;
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    uint64_t r = info.idle && (int)i != keep ? op__worker_reserved(s, i) : 0;
    if (r > best_bytes) {
      best = (int)i;
      best_bytes = r;
    }
  }
  if (best < 0 || op_supervisor_retire(s->sup, (unsigned)best) < 0)
    return 0;
  op_log_info("memory: retiring idle worker %d to make room", best);
  retired(s, &s->workers[best], OP_SCHED_END_ROOM, OP__UNLOAD_BUDGET);
  return 1;
}

int op__retire_due(op_sched_t *s, const char *why_prefix) {
  int n = 0;
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op__worker_t *w = op__idle_worker(s, i, &info);
    if (w != NULL && w->retire && op_supervisor_retire(s->sup, i) == 0) {
      op_log_info("recycling worker %u (pid %d) %s: %s", i, (int)info.pid, why_prefix, w->retire_why);
      retired(s, w, OP_SCHED_END_RECYCLE, OP__UNLOAD_RECYCLE);
      n++;
    }
  }
  return n;
}

void op__after_job(op_sched_t *s, unsigned slot, const op_sup_event_t *ev) {
  op__worker_t *w = op__worker_of(s, slot, ev->pid);
  op_budget_release(&s->budget, slot);
  if (ev->job_ctx == &s->control)
    return; /* a model's load or unload is no use of the worker: idle_exit still counts */
  w->last_used_s = op_wall_time_s();
  if (((uintptr_t)ev->job_ctx & 1u) == 0 && w->n_models > 0)
    w->model_used[0] = w->last_used_s; /* the page's model: keep_alive counts from the page's end */
  if (ev->type != OP_SUP_EV_REPLY || !json_is_integer(json_object_get(ev->reply, "page_base_rss_kb")))
    return;
  w->last_rss = (uint64_t)json_integer_value(json_object_get(ev->reply, "rss_kb")) * 1024u;
  if (w->first_rss == 0)
    w->first_rss = w->last_rss;
  const op_model_policy_t *pol = w->policy;
  if (pol != NULL && pol->max_memory_growth > 0 && w->last_rss > w->first_rss + pol->max_memory_growth) {
    w->retire = 1;
    w->retire_why = "it grew past max_memory_growth";
  }
}

/* Why an idle worker should go now, or NULL. */
static const char *recycle_why(op_sched_t *s, const op__worker_t *w, const op_worker_info_t *info, double now) {
  const op_model_policy_t *pol = w->policy;
  if (w->retire)
    return w->retire_why;
  if (w->bound_task != 0 && task_by_id(s, w->bound_task) == NULL)
    return "its task ended (isolate: per_task)";
  if (pol != NULL && pol->max_tasks > 0 && w->tasks_run >= pol->max_tasks &&
      !op__task_has_queued(task_by_id(s, w->last_task_id)))
    return "it ran max_tasks tasks";
  if (pol != NULL && pol->idle_exit_s > 0 && now - w->last_used_s >= pol->idle_exit_s)
    return "it was idle past idle_exit";
  if (pol == NULL && info->jobs_done == 0 && !any_queued(s))
    return "it was started for work that another worker took, or that never came"; /* on demand only */
  return NULL;
}

void op__sweep(op_sched_t *s) {
  double now = op_wall_time_s();
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op__worker_t *w = op__idle_worker(s, i, &info);
    if (w == NULL)
      continue;
    if (w->last_used_s == 0)
      w->last_used_s = now; /* first seen idle: its idle time starts now */
    const char *why = recycle_why(s, w, &info, now);
    if (why != NULL && op_supervisor_retire(s->sup, i) == 0) {
      op_log_info("recycling worker %u (pid %d): %s", i, (int)info.pid, why);
      retired(s, w, OP_SCHED_END_RECYCLE, OP__UNLOAD_RECYCLE);
      continue;
    }
    op__sweep_models(s, i, w, now);
  }
  op__manage_models(s);
}
