/* estimate.c: page and model memory estimates, from priors and measurements. */
#include "mem/estimate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MB (UINT64_C(1) << 20)
#define MAX_MODELS 64
#define CLASSES 3 /* bilevel, grey, colour */

typedef struct entry_s {
  char key[96]; /* engine:model */
  double bpp[CLASSES];
  unsigned samples[CLASSES];
  uint64_t footprint; /* 0 = not measured yet */
} entry_t;

struct op_estimates_s {
  double margin;
  uint64_t worker; /* 0 = not measured yet */
  entry_t entries[MAX_MODELS];
  unsigned n;
};

/* Priors per engine: bytes per pixel for each class, a fixed part, a model. */
typedef struct prior_s {
  const char *engine;
  double bpp[CLASSES];
  uint64_t fixed, model;
} prior_t;

static const prior_t priors[] = {
    /* Tesseract keeps grey and binary copies beside the page and its layout
     * analysis: ~4.2 B/px bilevel (8.4 MP -> 35 MB), ~16 B/px colour (81 MP -> 1.3 GB). */
    {"tesseract", {4.2, 8.0, 16.0}, 4 * MB, 40 * MB},
    /* The null engine only decodes: Leptonica's 1, 8 or 32 bits per pixel, and a copy. */
    {"null", {0.5, 2.0, 8.0}, 1 * MB, 1 * MB},
    /* Anything else (an external engine): assume the worst of the above. */
    {NULL, {4.2, 8.0, 16.0}, 8 * MB, 64 * MB},
};

static const prior_t *prior_for(const char *engine) {
  size_t i = 0;
  while (priors[i].engine != NULL && (engine == NULL || strcmp(priors[i].engine, engine) != 0))
    i++;
  return &priors[i];
}

static int depth_class(int depth) {
  return depth == 1 ? 0 : depth > 0 && depth <= 16 ? 1 : 2;
}

op_estimates_t *op_estimates_create(double margin) {
  op_estimates_t *est = calloc(1, sizeof *est);
  if (est != NULL)
    est->margin = margin > 1 ? margin : 1.25;
  return est;
}

void op_estimates_destroy(op_estimates_t *est) {
  free(est);
}

/* The entry for engine:model; NULL when the table is full and it is not there
 * (the priors are used then). */
static entry_t *entry(op_estimates_t *est, const char *engine, const char *model, int create) {
  char key[96];
  snprintf(key, sizeof key, "%s:%s", engine ? engine : "", model ? model : "");
  for (unsigned i = 0; i < est->n; i++)
    if (strcmp(est->entries[i].key, key) == 0)
      return &est->entries[i];
  if (!create || est->n == MAX_MODELS)
    return NULL;
  entry_t *e = &est->entries[est->n++];
  memset(e, 0, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  const prior_t *p = prior_for(engine);
  memcpy(e->bpp, p->bpp, sizeof e->bpp);
  return e;
}

uint64_t op_estimate_page(op_estimates_t *est, const char *engine, const char *model, uint64_t pixels, int depth) {
  const prior_t *p = prior_for(engine);
  entry_t *e = entry(est, engine, model, 0);
  int c = depth_class(depth);
  double bpp = e != NULL ? e->bpp[c] : p->bpp[c];
  return (uint64_t)(((double)p->fixed + bpp * (double)pixels) * est->margin);
}

uint64_t op_estimate_model(op_estimates_t *est, const char *engine, const char *model) {
  entry_t *e = entry(est, engine, model, 0);
  if (e != NULL && e->footprint > 0)
    return e->footprint;
  /* Not measured yet: the prior, or the largest model of the same engine
   * measured so far when that is more (languages of one engine weigh alike). */
  uint64_t guess = prior_for(engine)->model;
  char prefix[40];
  size_t n = (size_t)snprintf(prefix, sizeof prefix, "%.31s:", engine ? engine : "");
  for (unsigned i = 0; i < est->n; i++)
    if (strncmp(est->entries[i].key, prefix, n) == 0 && est->entries[i].footprint > guess)
      guess = est->entries[i].footprint;
  return guess;
}

uint64_t op_estimate_worker(const op_estimates_t *est) {
  return est->worker > 0 ? est->worker : 16 * MB;
}

void op_estimates_learn_page(op_estimates_t *est, const char *engine, const char *model, uint64_t pixels, int depth,
                             uint64_t bytes) {
  entry_t *e = entry(est, engine, model, 1);
  if (e == NULL || pixels == 0)
    return;
  const prior_t *p = prior_for(engine);
  int c = depth_class(depth);
  double bpp = bytes > p->fixed ? (double)(bytes - p->fixed) / (double)pixels : 0;
  /* A measurement above the figure raises it at once; one below lowers it by
   * a tenth of the difference, so the prior gives way only to many pages. */
  if (bpp > e->bpp[c])
    e->bpp[c] = bpp;
  else
    e->bpp[c] = e->bpp[c] * 0.9 + bpp * 0.1;
  e->samples[c]++;
}

void op_estimates_learn_model(op_estimates_t *est, const char *engine, const char *model, uint64_t bytes) {
  entry_t *e = entry(est, engine, model, 1);
  if (e != NULL && bytes > 0)
    e->footprint = bytes > e->footprint ? bytes : (e->footprint * 9 + bytes) / 10;
}

void op_estimates_learn_worker(op_estimates_t *est, uint64_t bytes) {
  if (bytes > 0)
    est->worker = bytes > est->worker ? bytes : (est->worker * 9 + bytes) / 10;
}
