/*
 * snapshot.h: a typed snapshot of memory, workers and models, taken by the
 * service thread every 200 ms for the other threads. GET /v1/memory and
 * GET /v1/models render it as JSON (snapshot.c), GET /metrics as Prometheus
 * text (metrics.c): two renderers of one struct, neither parsing the other.
 */
#ifndef OCRPOOL_CORE_SNAPSHOT_H
#define OCRPOOL_CORE_SNAPSHOT_H

#include <jansson.h>

#include "core/sched.h"

typedef struct op_snapshot_s {
  double taken_s;
  uint64_t capacity_bytes;              /**< the CPU's */
  double warning_share, critical_share; /**< of each budget */
  op_sched_mem_t mem;
  op_sched_worker_mem_t *workers; /**< every slot; pid 0 = empty */
  unsigned n_workers;
  op_sched_model_t *models;
  size_t n_models;
} op_snapshot_t;

/** Takes a snapshot of sched (a new one; NULL when out of memory). */
op_snapshot_t *op_snapshot_take(op_sched_t *sched, uint64_t capacity, double warning_share, double critical_share);

/** Frees a snapshot (NULL is fine). */
void op_snapshot_free(op_snapshot_t *snap);

/** The device a worker runs on: "cpu" or "cuda:N", into buf[16]. */
const char *op_snapshot_worker_device(const op_sched_worker_mem_t *w, char buf[16]);

/** GET /v1/memory: devices, workers, ends by reason (a new object). */
json_t *op_snapshot_memory_json(const op_snapshot_t *snap);

/** GET /v1/models: {"models": [...]} (a new object). */
json_t *op_snapshot_models_json(const op_snapshot_t *snap);

#endif
