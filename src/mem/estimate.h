/*
 * estimate.h: how much memory a page or a model load will take, learned.
 *
 * A page's working set is modelled as bytes per pixel, per model and per
 * pixel depth class (bilevel, grey, colour), times the page's pixels. Before
 * any measurement a conservative prior for the engine is used (Tesseract: an
 * 81 MP colour page peaks near 1.3 GB, a 3300x2550 bilevel page near 35 MB
 * above the loaded model). Each measured page moves the figure: up at once,
 * down slowly, so one light page cannot make the next heavy one look cheap.
 * What is handed out carries a safety margin.
 */
#ifndef OCRPOOL_MEM_ESTIMATE_H
#define OCRPOOL_MEM_ESTIMATE_H

#include <stdint.h>

typedef struct op_estimates_s op_estimates_t;

/** A table of estimates; margin multiplies every page estimate (1.25 if <= 1). NULL when out of memory. */
op_estimates_t *op_estimates_create(double margin);
void op_estimates_destroy(op_estimates_t *est);

/** The working set of a page of pixels at depth bits per pixel (0 = unknown: colour), for engine's model. */
uint64_t op_estimate_page(op_estimates_t *est, const char *engine, const char *model, uint64_t pixels, int depth);

/** The resident memory loading the model adds to a worker (unmeasured: the
 * engine's prior, or its largest measured model when that is more). */
uint64_t op_estimate_model(op_estimates_t *est, const char *engine, const char *model);

/** A worker process before any model: its own code and heap. */
uint64_t op_estimate_worker(const op_estimates_t *est);

/** Learns from a measured page: bytes its worker grew by while it ran. */
void op_estimates_learn_page(op_estimates_t *est, const char *engine, const char *model, uint64_t pixels, int depth,
                             uint64_t bytes);

/** Learns a model's measured load footprint. */
void op_estimates_learn_model(op_estimates_t *est, const char *engine, const char *model, uint64_t bytes);

/** Learns a fresh worker's measured size. */
void op_estimates_learn_worker(op_estimates_t *est, uint64_t bytes);

#endif
