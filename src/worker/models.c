/* models.c: the worker's loaded models, kept between pages, least recently used closed first. */
#include "worker/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "worker/worker.h"

typedef struct entry_s {
  char id[192];
  const op_engine_t *engine;
  op_model_t *model;
  uint64_t last_use; /* a counter, not a clock: only the order matters */
  long footprint_kb;
} entry_t;

struct op_model_cache_s {
  entry_t *entries;
  unsigned n, max;
  uint64_t tick;
};

op_model_cache_t *op_model_cache_create(unsigned max_models) {
  op_model_cache_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->max = max_models ? max_models : 1;
  c->entries = calloc(c->max, sizeof *c->entries);
  if (c->entries == NULL) {
    free(c);
    return NULL;
  }
  return c;
}

void op_model_cache_destroy(op_model_cache_t *c) {
  if (c == NULL)
    return;
  for (unsigned i = 0; i < c->n; i++)
    c->entries[i].engine->close(c->entries[i].model);
  free(c->entries);
  free(c);
}

static void fill_ref(const entry_t *e, int loaded_now, op_model_ref_t *ref) {
  ref->engine = e->engine;
  ref->model = e->model;
  ref->footprint_kb = e->footprint_kb;
  ref->loaded_now = loaded_now;
}

int op_model_cache_get(op_model_cache_t *c, const op_model_spec_t *spec, op_model_ref_t *ref, op_error_t *err) {
  char id[192];
  op_model_spec_id(spec, id, sizeof id);
  for (unsigned i = 0; i < c->n; i++) {
    if (strcmp(c->entries[i].id, id) == 0) {
      c->entries[i].last_use = ++c->tick;
      fill_ref(&c->entries[i], 0, ref);
      return 0;
    }
  }
  const op_engine_t *eng = op_engine_find(spec->engine);
  if (eng == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "unknown engine \"%s\" (known: tesseract, null)", spec->engine);
  if (c->n == c->max) {
    unsigned lru = 0;
    for (unsigned i = 1; i < c->n; i++)
      if (c->entries[i].last_use < c->entries[lru].last_use)
        lru = i;
    op_log_info("unloading model %s (least recently used)", c->entries[lru].id);
    c->entries[lru].engine->close(c->entries[lru].model);
    c->entries[lru] = c->entries[--c->n];
  }
  long before_kb, after_kb, peak;
  op_self_memory_kb(&before_kb, &peak);
  op_model_t *m = NULL;
  int rc = eng->open(spec, &m, err);
  if (rc < 0)
    return rc;
  op_self_memory_kb(&after_kb, &peak);
  entry_t *e = &c->entries[c->n++];
  snprintf(e->id, sizeof e->id, "%s", id);
  e->engine = eng;
  e->model = m;
  e->last_use = ++c->tick;
  e->footprint_kb = after_kb - before_kb;
  op_log_info("loaded model %s (+%ld kB resident)", id, e->footprint_kb);
  fill_ref(e, 1, ref);
  return 0;
}

int op_model_cache_unload(op_model_cache_t *c, const op_model_spec_t *spec) {
  char id[192];
  op_model_spec_id(spec, id, sizeof id);
  for (unsigned i = 0; i < c->n; i++) {
    if (strcmp(c->entries[i].id, id) == 0) {
      op_log_info("unloading model %s (asked by the server)", id);
      c->entries[i].engine->close(c->entries[i].model);
      c->entries[i] = c->entries[--c->n];
      return 1;
    }
  }
  return 0;
}
