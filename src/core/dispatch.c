/*
 * dispatch.c: where the next job goes, and sending it there.
 *
 * Without a budget a job goes to any idle worker. Under one, the scheduler
 * copies its worker records into a ledger, asks admission (admit.c) and
 * carries out the verdict: run on a slot, start a worker, make room, wait,
 * or refuse the job for good. A page of a GPU model is routed first: its GPU,
 * its fallback, or it waits. The head of the queue waits rather than being
 * jumped, so a large page is not starved by small ones.
 */
#include "core/sched_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admit.h"
#include "util/log.h"

/* The job waits for memory: said once per page. */
static void memory_wait(op_sched_t *s, op_task_t *t, op_page_job_t *p, uint64_t need, uint64_t free_bytes) {
  if (p == NULL || p->waited_memory)
    return;
  p->waited_memory = 1;
  s->waiting_pages++;
  if (s->cfg.on_memory_wait)
    s->cfg.on_memory_wait(s->cfg.cb_ctx, t, p, need, free_bytes);
}

/* The GPU of a model's device ("cuda:N"), or -1 for the CPU. */
static int device_gpu(const char *device) {
  return strncmp(device, "cuda:", 5) == 0 ? atoi(device + 5) : -1;
}

/* Where page p runs: 0 for the CPU, 1 + N for cuda:N; -1: it waits; -2: it failed. */
static int route(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  const op_model_policy_t *pol = op__page_policy(s, t, p);
  int g = p != NULL ? device_gpu(pol->device) : -1;
  if (g < 0)
    return 0;
  op_model_key_t key;
  op__job_key(s, t, p, &key);
  op_admit_gpu_t gpu = {0};
  int held = 0;
  if ((unsigned)g < s->cfg.n_gpus && g < OP_SCHED_MAX_GPUS) {
    gpu = (op_admit_gpu_t){1,
                           s->gpu[g].level,
                           s->gpu[g].ours,
                           s->cfg.gpu_budget[g],
                           s->gpu[g].info.total_bytes,
                           s->gpu[g].info.used_bytes};
    for (unsigned i = 0; i < s->n_workers && !held; i++)
      held = s->workers[i].pid > 0 && s->workers[i].gpu == g + 1 && op__holds_model(&s->workers[i], &key);
  }
  int may_fallback =
      !p->on_fallback && op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->policy->fallback) != NULL;
  const char *why;
  uint64_t need = op_admit_gpu_need(held, pol->memory_limit);
  switch (op_admit_route(&gpu, need, may_fallback, &why)) {
  case OP_ROUTE_HERE:
    return 1 + g;
  case OP_ROUTE_FALLBACK:
    p->on_fallback = 1;
    p->fallback_why = why;
    p->estimate_bytes = 0; /* estimated again for the fallback's model */
    if (g < OP_SCHED_MAX_GPUS)
      s->gpu[g].fallbacks++;
    op_log_task(OP_LOG_INFO, t->log_id, p->index + 1, "page %u of task %s goes to %s instead of %s: %s", p->index + 1,
                t->log_id, t->policy->fallback, pol->device, why);
    return route(s, t, p); /* the fallback's own device */
  case OP_ROUTE_WAIT:
    memory_wait(s, t, p, need, 0);
    return -1;
  case OP_ROUTE_FAIL:
    break;
  }
  op_error_t e;
  char text[OP_MODEL_KEY_TEXT];
  op_error_set(&e, OP_EUSAGE, "device_unavailable",
               "model %s runs on %s, and this machine has %u GPU%s that NVML reports; declare a fallback model to "
               "run it elsewhere",
               pol->name[0] ? pol->name : op_model_key_text(&key, text), pol->device, s->cfg.n_gpus,
               s->cfg.n_gpus == 1 ? "" : "s");
  op__page_fail(s, p, &e);
  return -2;
}

/* The page's working set; pages restored without their sizes count as a
 * colour letter page at 300 dpi, the common large case. */
static uint64_t page_estimate(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  if (p->estimate_bytes == 0) {
    uint64_t pixels = p->width_px && p->height_px ? (uint64_t)p->width_px * p->height_px : 2550u * 3300u;
    p->estimate_bytes =
        op_estimate_page(s->estimates, t->opts.model.engine, t->opts.model.lang, pixels, p->width_px ? p->depth : 24);
  }
  return p->estimate_bytes;
}

/* Fails a job that cannot fit even alone in an otherwise empty budget. */
static void refuse(op_sched_t *s, op_task_t *t, op_page_job_t *p, const op_admit_job_t *job, const op_admit_t *a) {
  char al[32], b[32], j[32], m[32], w[32];
  op_mem_format(a->alone_bytes, al, sizeof al);
  op_mem_format(s->cfg.budget_bytes, b, sizeof b);
  op_mem_format(job->job_bytes, j, sizeof j);
  op_mem_format(job->model_bytes, m, sizeof m);
  op_mem_format(op_estimate_worker(s->estimates) + s->server_pss, w, sizeof w);
  op_error_t e;
  op_error_set(&e, OP_ELIMIT, "memory_limit_exceeded",
               "%s needs about %s (%s for its work, %s for the model, %s for the server and a worker) and the "
               "memory budget is %s",
               p ? "the page" : "the document", al, j, m, w, b);
  s->refused_pages++;
  if (p != NULL)
    op__page_fail(s, p, &e);
  else
    op__task_fail(s, t, &e);
}

/* The ledger of every worker slot, as the job on device dev (0 = CPU) sees it. */
static void fill_ledger(op_sched_t *s, op_task_t *t, const op_model_key_t *key, int dev, op_admit_worker_t *ws,
                        op_ledger_t *l) {
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    op__worker_t *w = op__worker_of(s, i, info.pid);
    op_admit_worker_t *a = &ws[i];
    a->exists = info.pid > 0;
    a->idle = info.idle;
    a->busy = info.busy;
    a->starting = info.starting;
    a->exiting = info.exiting;
    a->unloading = info.busy && w->control_busy && !w->control_load;
    /* A worker runs on one GPU at most: its context lives there. */
    a->may_take = info.idle && op__may_serve(s, w, &info, t) && !(dev > 0 && w->gpu != 0 && w->gpu != dev);
    a->has_model = key != NULL && op__holds_model(w, key);
    a->reserved_bytes = op__worker_reserved(s, i);
    a->job_bytes = info.busy ? op_budget_job(&s->budget, i) : 0;
  }
  l->budget_bytes = s->cfg.budget_bytes;
  l->server_bytes = s->server_pss;
  l->worker_bytes = op_estimate_worker(s->estimates);
  l->level = s->pressure.level;
  l->workers = ws;
  l->n_workers = s->n_workers;
}

/*
 * Under a budget: where the next job may run, if its memory fits now.
 * Returns the idle slot to send it to (*reserve: what it reserves); -1 when
 * it waits (a worker may have been started or retired for it); -2 when it
 * was refused or failed for good.
 */
static int admit(op_sched_t *s, op_task_t *t, op_page_job_t *p, uint64_t *reserve, int *device) {
  op__sample(s, 0);
  if (p != NULL && op__model_failed(s, t, p))
    return -2;
  int dev = route(s, t, p);
  if (dev < 0)
    return dev;
  *device = dev;
  op_model_key_t key;
  op__job_key(s, t, p, &key);
  op_admit_job_t job = {p != NULL, 0, 0};
  job.job_bytes = p != NULL                    ? page_estimate(s, t, p)
                  : t->stage == OP_STAGE_PROBE ? OP__PROBE_ESTIMATE
                                               : OP__MERGE_ESTIMATE;
  job.model_bytes = p != NULL ? op_estimate_model(s->estimates, key.engine, key.lang) : 0;
  op_admit_worker_t *ws = calloc(s->n_workers ? s->n_workers : 1, sizeof *ws);
  if (ws == NULL)
    return -1; /* tried again at the next step */
  op_ledger_t l;
  op_admit_t a;
  fill_ledger(s, t, p != NULL ? &key : NULL, dev, ws, &l);
  op_admit_decide(&l, &job, &a);
  free(ws);
  switch (a.verdict) {
  case OP_ADMIT_RUN:
    *reserve = job.job_bytes;
    return a.slot;
  case OP_ADMIT_START_WORKER:
    op_supervisor_start_worker(s->sup); /* the job goes to it once it is ready */
    return -1;
  case OP_ADMIT_REFUSE:
    refuse(s, t, p, &job, &a);
    return -2;
  case OP_ADMIT_RETIRE_IDLE:
    op__retire_idle(s, -1);
    return -1;
  case OP_ADMIT_MAKE_ROOM:
    if (!op__unload_lru(s, p != NULL ? &key : NULL, 0, "to make room"))
      op__retire_idle(s, a.slot);
    break;
  case OP_ADMIT_WAIT:
    break;
  }
  if (a.waits_for_memory)
    memory_wait(s, t, p, a.need_bytes, a.free_bytes);
  return -1;
}

/* Notes on the worker's record what it was sent. */
static void note_sent(op_sched_t *s, unsigned slot, op_task_t *t, op_page_job_t *p, uint64_t reserve, int device) {
  op_worker_info_t info;
  op_supervisor_worker(s->sup, slot, &info);
  op__worker_t *w = op__worker_of(s, slot, info.pid);
  op_budget_reserve(&s->budget, slot, 0, s->cfg.budget_bytes > 0 ? reserve : 0); /* admission decided it fits */
  w->last_used_s = op_wall_time_s();
  if (s->cfg.budget_bytes == 0)
    op__read_oom_kills(s); /* without a budget nothing samples (ocrpool ocr) */
  w->oom_base = s->oom_kills;
  w->policy = op__page_policy(s, t, p); /* a fallback page runs under its own model */
  if (device > 0)
    w->gpu = device;
  if (w->last_task_id != t->id) {
    w->tasks_run++;
    w->last_task_id = t->id;
  }
  if (t->policy->isolate_per_task)
    w->bound_task = t->id;
  if (p != NULL) {
    op_model_key_t key;
    op__job_key(s, t, p, &key);
    op__note_model(w, &key);
    op__model_used(s, &key);
  }
}

/* Marks a page as running on slot and tells the callback. */
static void page_started(op_sched_t *s, op_task_t *t, op_page_job_t *p, unsigned slot, int device) {
  op_worker_info_t info;
  op_supervisor_worker(s->sup, slot, &info);
  p->state = OP_PAGE_RUNNING;
  p->worker_id = slot;
  p->worker_pid = info.pid;
  const op_model_policy_t *pol = op__page_policy(s, t, p);
  if (p->batch == 0)
    p->batch = pol->batch;
  if (device > 0)
    snprintf(p->device, sizeof p->device, "cuda:%u", (unsigned)(device - 1) % OP_SCHED_MAX_GPUS);
  else
    snprintf(p->device, sizeof p->device, "cpu");
  snprintf(p->model, sizeof p->model, "%.63s",
           pol->name[0]       ? pol->name
           : pol == t->policy ? t->opts.model.lang
                              : pol->lang);
  p->started_s = op_wall_time_s();
  if (s->cfg.on_page_start)
    s->cfg.on_page_start(s->cfg.cb_ctx, t, p);
}

/* Sends job (t's stage, or page p) to slot (-1: any idle worker). Returns 0, or <0 when no worker took it. */
static int send_job(op_sched_t *s, op_task_t *t, op_page_job_t *p, int slot, uint64_t reserve, int device) {
  if (p != NULL)
    p->attempts++;
  else
    t->stage_attempts++;
  json_t *job = p != NULL                    ? op__page_job(s, t, p)
                : t->stage == OP_STAGE_PROBE ? op__probe_job(s, t)
                                             : op__merge_job(s, t);
  if (job == NULL) {
    op_error_t e;
    op_error_set(&e, OP_ENOMEM, NULL, "out of memory building a job");
    op__task_fail(s, t, &e);
    return 0;
  }
  void *ctx = p != NULL ? (void *)p : (void *)((uintptr_t)t | 1u);
  int w = slot >= 0 ? op_supervisor_dispatch_to(s->sup, (unsigned)slot, job, s->cfg.page_timeout_ms, ctx)
                    : op_supervisor_dispatch(s->sup, job, s->cfg.page_timeout_ms, ctx);
  json_decref(job);
  if (w < 0) {
    if (p != NULL)
      p->attempts--;
    else
      t->stage_attempts--;
    return w;
  }
  if ((unsigned)w < s->n_workers)
    note_sent(s, (unsigned)w, t, p, reserve, device);
  if (t->status == OP_TASK_QUEUED) {
    t->status = OP_TASK_RUNNING;
    t->started_s = op_wall_time_s();
  }
  if (p != NULL)
    page_started(s, t, p, (unsigned)w, device);
  else
    t->stage_running = 1;
  return 0;
}

void op__dispatch(op_sched_t *s) {
  int budgeted = s->cfg.budget_bytes > 0;
  while (!s->paused) {
    if (!budgeted && op_supervisor_idle_count(s->sup) == 0)
      return;
    op_task_t *t;
    op_page_job_t *p;
    if (!op__next_job(s, &t, &p))
      return;
    int slot = -1, device = 0;
    uint64_t reserve = 0;
    if (budgeted) {
      slot = admit(s, t, p, &reserve, &device);
      if (slot == -2)
        continue; /* refused: the next job may fit */
      if (slot < 0)
        return; /* the head of the queue waits; nothing jumps it */
    }
    if (send_job(s, t, p, slot, reserve, device) < 0)
      return;
  }
}
