/*
 * admit.c: memory admission as pure functions over a ledger snapshot.
 *
 * A job runs only when its reservation fits the budget: on an idle worker
 * that holds its model (nothing to load), else on the idle worker holding
 * least, else on a new worker when the worker itself fits too. A job that
 * cannot fit even alone is refused at once; one that does not fit now waits,
 * and when the running jobs' ends could not make enough room, idle holders
 * are asked to make it (an idle model unloaded, or an idle worker retired).
 */
#include "core/admit.h"

#include <stddef.h>

#define GPU_PAGE_PRIOR (UINT64_C(64) << 20) /* a page's VRAM beyond its model: no engine reports its own */
#define GPU_MODEL_PRIOR (UINT64_C(1) << 30) /* a GPU model's VRAM before a memory_limit declares it */

uint64_t op_admit_reserved(const op_ledger_t *l) {
  uint64_t r = l->server_bytes;
  for (unsigned i = 0; i < l->n_workers; i++)
    r += l->workers[i].exists ? l->workers[i].reserved_bytes : 0;
  return r;
}

void op_admit_decide(const op_ledger_t *l, const op_admit_job_t *job, op_admit_t *out) {
  out->slot = -1;
  out->need_bytes = 0;
  out->waits_for_memory = 0;
  out->alone_bytes = l->server_bytes + l->worker_bytes + job->model_bytes + job->job_bytes;
  uint64_t reserved = op_admit_reserved(l);
  out->free_bytes = l->budget_bytes > reserved ? l->budget_bytes - reserved : 0;
  if (out->alone_bytes > l->budget_bytes) {
    out->verdict = OP_ADMIT_REFUSE;
    return;
  }
  int pick = -1, with_model = 0, free_slot = 0;
  unsigned starting = 0, freeing = 0, other_idle = 0, busy = 0;
  uint64_t pick_bytes = 0, running = 0;
  for (unsigned i = 0; i < l->n_workers; i++) {
    const op_admit_worker_t *w = &l->workers[i];
    starting += w->starting;
    free_slot |= !w->exists;
    busy += w->busy;
    running += w->busy ? w->job_bytes : 0;
    /* Room being made (a worker exiting, a model unloading): nothing more is
     * freed or started until it is done and measured, so that one job's need
     * never evicts twice. */
    freeing += w->exiting || w->unloading;
    if (!w->idle)
      continue;
    if (!w->may_take) {
      other_idle++;
      continue;
    }
    int has = job->is_page && w->has_model;
    if (pick < 0 || (has && !with_model) || (has == with_model && w->reserved_bytes < pick_bytes)) {
      pick = (int)i;
      with_model = has;
      pick_bytes = w->reserved_bytes;
    }
  }
  out->verdict = OP_ADMIT_WAIT;
  if (pick < 0 && freeing > 0)
    return;
  if (pick < 0 && !free_slot && starting == 0 && other_idle > 0) {
    out->verdict = OP_ADMIT_RETIRE_IDLE;
    return;
  }
  if (pick < 0 && (!free_slot || starting > 0))
    return; /* waiting for a worker, not for memory; one starts at a time */
  if (job->is_page && !with_model && l->level >= OP_MEM_WARNING && busy > 0)
    return; /* under pressure no model loads while other work may still free memory */
  /* A new worker starts only when it could take the job too, else it would be started to be retired. */
  out->need_bytes = pick >= 0 ? job->job_bytes + (with_model ? 0 : job->model_bytes)
                              : l->worker_bytes + job->model_bytes + job->job_bytes;
  if (reserved + out->need_bytes <= l->budget_bytes) {
    out->verdict = pick >= 0 ? OP_ADMIT_RUN : OP_ADMIT_START_WORKER;
    out->slot = pick;
    return;
  }
  /* It does not fit now. When the running jobs' ends cannot make room, idle
   * workers hold what waiting will not free. */
  out->waits_for_memory = job->is_page;
  if (freeing == 0 && reserved - running + out->need_bytes > l->budget_bytes) {
    out->verdict = OP_ADMIT_MAKE_ROOM;
    out->slot = pick >= 0 && with_model ? pick : -1;
  }
}

uint64_t op_admit_gpu_need(int model_held, uint64_t model_limit_bytes) {
  return GPU_PAGE_PRIOR + (model_held ? 0 : model_limit_bytes > 0 ? model_limit_bytes : GPU_MODEL_PRIOR);
}

op_route_t op_admit_route(const op_admit_gpu_t *gpu, uint64_t need_bytes, int may_fallback, const char **why) {
  uint64_t free_all = 0;
  if (gpu != NULL && gpu->present)
    free_all = gpu->total_bytes > gpu->used_all_bytes ? gpu->total_bytes - gpu->used_all_bytes : 0;
  *why = gpu == NULL || !gpu->present                                                ? "its GPU is not on this machine"
         : gpu->level == OP_MEM_CRITICAL                                             ? "its GPU's memory is critical"
         : gpu->ours_bytes + need_bytes > gpu->budget_bytes || need_bytes > free_all ? "its GPU has no room for it now"
                                                                                     : NULL;
  if (*why == NULL)
    return OP_ROUTE_HERE;
  if (may_fallback)
    return OP_ROUTE_FALLBACK;
  return gpu == NULL || !gpu->present ? OP_ROUTE_FAIL : OP_ROUTE_WAIT;
}
