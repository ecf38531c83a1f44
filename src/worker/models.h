/*
 * models.h: the models a worker has loaded.
 *
 * A model is loaded on first use and kept for the next page (never reloaded
 * per page). Up to a small number stay loaded; past that the least recently
 * used idle one is closed. Each entry records its identity, when it was last
 * used and what loading it cost in resident memory.
 */
#ifndef OCRPOOL_WORKER_MODELS_H
#define OCRPOOL_WORKER_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

typedef struct op_model_cache_s op_model_cache_t;

/** A cache holding at most max_models loaded models. NULL when out of memory. */
op_model_cache_t *op_model_cache_create(unsigned max_models);

/** Closes every model and frees the cache. */
void op_model_cache_destroy(op_model_cache_t *cache);

/** A loaded model as the cache hands it out. */
typedef struct op_model_ref_s {
  const op_engine_t *engine;
  op_model_t *model;
  long footprint_kb; /**< resident memory its load added, as the kernel counted it */
  int loaded_now;    /**< this call loaded it */
} op_model_ref_t;

/** The loaded model for spec, loading it if needed. Fails as the engine's open. */
int op_model_cache_get(op_model_cache_t *cache, const op_model_spec_t *spec, op_model_ref_t *ref, op_error_t *err);

/** Closes the model for spec if it is loaded: 1 if it was, 0 if not. */
int op_model_cache_unload(op_model_cache_t *cache, const op_model_spec_t *spec);

#endif
