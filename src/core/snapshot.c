/*
 * snapshot.c: the typed snapshot of memory, workers and models, and its JSON
 * (GET /v1/memory, GET /v1/models). metrics.c renders the same struct as
 * Prometheus text.
 */
#include "core/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/service_internal.h"
#include "util/fs.h"

op_snapshot_t *op_snapshot_take(op_sched_t *sched, uint64_t capacity, double warning_share, double critical_share) {
  op_snapshot_t *snap = calloc(1, sizeof *snap);
  if (snap == NULL)
    return NULL;
  snap->taken_s = op_wall_time_s();
  snap->capacity_bytes = capacity;
  snap->warning_share = warning_share;
  snap->critical_share = critical_share;
  snap->n_workers = op_sched_worker_slots(sched);
  snap->workers = calloc(snap->n_workers ? snap->n_workers : 1, sizeof *snap->workers);
  if (snap->workers == NULL) {
    op_snapshot_free(snap);
    return NULL;
  }
  op_sched_memory(sched, &snap->mem, snap->workers);
  snap->models = op_sched_models(sched, &snap->n_models);
  return snap;
}

void op_snapshot_free(op_snapshot_t *snap) {
  if (snap == NULL)
    return;
  free(snap->workers);
  free(snap->models);
  free(snap);
}

const char *op_snapshot_worker_device(const op_sched_worker_mem_t *w, char buf[16]) {
  if (w->gpu >= 0)
    snprintf(buf, 16, "cuda:%u", (unsigned)w->gpu % OP_SCHED_MAX_GPUS);
  else
    snprintf(buf, 16, "cpu");
  return buf;
}

static json_t *workers_json(const op_snapshot_t *snap) {
  json_t *workers = json_array();
  for (unsigned i = 0; i < snap->n_workers; i++) {
    const op_sched_worker_mem_t *w = &snap->workers[i];
    if (w->pid == 0)
      continue;
    json_t *models = json_array();
    char text[OP_MODEL_KEY_TEXT], device[16];
    for (unsigned k = 0; k < w->n_models; k++)
      json_array_append_new(models, json_string(op_model_key_text(&w->models[k], text)));
    json_t *wj = json_pack("{s:i, s:i, s:s, s:s, s:I, s:I, s:o, s:I}", "id", (int)i, "pid", (int)w->pid, "device",
                           op_snapshot_worker_device(w, device), "state", w->busy ? "busy" : "idle", "used_bytes",
                           (json_int_t)w->used_bytes, "reserved_bytes", (json_int_t)w->reserved_bytes, "models", models,
                           "pages_done", (json_int_t)w->pages_done);
    if (w->gpu >= 0)
      json_object_set_new(wj, "vram_bytes", json_integer((json_int_t)w->vram_bytes));
    json_object_set_new(wj, "sandbox", op_sandbox_status_json(&w->sandbox));
    json_array_append_new(workers, wj);
  }
  return workers;
}

static json_t *devices_json(const op_snapshot_t *snap) {
  const op_sched_mem_t *m = &snap->mem;
  json_t *cpu = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:i, s:i, s:b, s:i, s:i, s:i}", "name", "cpu",
                          "capacity_bytes", (json_int_t)snap->capacity_bytes, "budget_bytes",
                          (json_int_t)m->budget_bytes, "reserved_bytes", (json_int_t)m->reserved_bytes, "used_bytes",
                          (json_int_t)m->used_bytes, "level", op_mem_level_name(m->level), "warning_bytes",
                          (json_int_t)((double)m->budget_bytes * snap->warning_share), "critical_bytes",
                          (json_int_t)((double)m->budget_bytes * snap->critical_share), "server_bytes",
                          (json_int_t)m->server_bytes, "pages_waited", (int)m->waiting_pages, "pages_refused",
                          (int)m->refused_pages, "refusing_submissions", m->refusing, "warnings", (int)m->warnings,
                          "criticals", (int)m->criticals, "deferred_tasks", (int)m->deferred_tasks);
  json_t *devices = json_pack("[o]", cpu);
  for (unsigned g = 0; g < m->n_gpus; g++) {
    char name[16];
    snprintf(name, sizeof name, "cuda:%u", g);
    json_array_append_new(
        devices, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:i}", "name", name, "card",
                           m->gpus[g].name, "capacity_bytes", (json_int_t)m->gpus[g].capacity_bytes, "budget_bytes",
                           (json_int_t)m->gpus[g].budget_bytes, "reserved_bytes", (json_int_t)m->gpus[g].reserved_bytes,
                           "used_bytes", (json_int_t)m->gpus[g].used_bytes, "all_processes_bytes",
                           (json_int_t)m->gpus[g].all_used_bytes, "level", op_mem_level_name(m->gpus[g].level),
                           "warning_bytes", (json_int_t)((double)m->gpus[g].budget_bytes * snap->warning_share),
                           "critical_bytes", (json_int_t)((double)m->gpus[g].budget_bytes * snap->critical_share),
                           "fallbacks", (int)m->gpus[g].fallbacks));
  }
  return devices;
}

json_t *op_snapshot_memory_json(const op_snapshot_t *snap) {
  json_t *ends = json_object();
  for (int r = 0; r < OP_SCHED_END_REASONS; r++)
    json_object_set_new(ends, op_sched_end_names[r], json_integer(snap->mem.worker_ends[r]));
  return json_pack("{s:o, s:o, s:o, s:i}", "devices", devices_json(snap), "workers", workers_json(snap),
                   "workers_ended", ends, "oom_events", (int)snap->mem.oom_events);
}

static const char *const model_states[] = {"unloaded", "loaded", "failed"};

static json_t *model_json(const op_sched_model_t *v) {
  const op_model_policy_t *pol = v->policy;
  char text[OP_MODEL_KEY_TEXT];
  json_t *unloads = json_object();
  for (int r = 0; r < OP_SCHED_UNLOAD_REASONS; r++)
    json_object_set_new(unloads, op_sched_unload_names[r], json_integer(v->unloads[r]));
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:i, s:o, s:i, s:o, s:f, s:b, s:i, s:I, s:s?, s:i, "
      "s:{s:i, s:I, s:f, s:s}}",
      "name", pol && pol->name[0] ? pol->name : op_model_key_text(&v->key, text), "engine", v->key.engine, "languages",
      v->key.lang, "device", pol ? pol->device : "cpu", "state", model_states[v->state], "workers", (int)v->workers,
      "memory_bytes", (json_int_t)v->memory_bytes, "refcount", (int)v->refcount, "last_used",
      op_time_json(v->last_used_s), "loads", (int)v->loads, "unloads", unloads, "keep_alive_s",
      pol ? pol->keep_alive_s : 300.0, "preload", pol ? pol->preload : 0, "max_concurrent",
      pol ? (int)pol->max_concurrent : 0, "memory_limit_bytes", (json_int_t)(pol ? pol->memory_limit : 0), "fallback",
      pol && pol->fallback[0] ? pol->fallback : NULL, "batch", pol ? (int)pol->batch : 1, "recycle", "max_tasks",
      pol ? (int)pol->max_tasks : 0, "max_memory_growth_bytes", (json_int_t)(pol ? pol->max_memory_growth : 0),
      "idle_exit_s", pol ? pol->idle_exit_s : 0.0, "isolate", pol && pol->isolate_per_task ? "per_task" : "none");
  if (j != NULL && v->last_error[0]) /* the last load failure, kept after its cooldown */
    json_object_set_new(j, "last_error", json_string(v->last_error));
  return j;
}

json_t *op_snapshot_models_json(const op_snapshot_t *snap) {
  json_t *list = json_array();
  for (size_t i = 0; i < snap->n_models; i++)
    json_array_append_new(list, model_json(&snap->models[i]));
  return json_pack("{s:o}", "models", list);
}

/* The service thread's refresh: a new snapshot, and a history sample a second. */
void op__snapshot_refresh(op_service_t *svc) {
  const op_settings_t *st = &svc->settings;
  op_snapshot_t *snap = op_snapshot_take(svc->sched, st->capacity, st->warning_share, st->critical_share);
  json_t *history = NULL;
  if (op_wall_time_s() - svc->last_history >= 1) { /* a sample a second is what a chart needs */
    history = op_sched_history_json(svc->sched, 5, 1500);
    svc->last_history = op_wall_time_s();
  }
  pthread_mutex_lock(&svc->lock);
  if (history != NULL) {
    json_decref(svc->history);
    svc->history = history;
  }
  op_snapshot_t *old = NULL;
  if (snap != NULL) { /* out of memory: the last one stands */
    old = svc->snapshot;
    svc->snapshot = snap;
  }
  pthread_mutex_unlock(&svc->lock);
  op_snapshot_free(old);
}
