/*
 * metrics.h: the server's counters and histograms, and GET /metrics in the
 * Prometheus text format (0.0.4).
 *
 * Counters that only the server's own threads see (pages, HTTP requests)
 * live here under one mutex; figures that are a state (tasks by status,
 * memory, workers, models) are read at scrape time from the store and from
 * the service's snapshots, so a scrape never waits for the scheduler.
 */
#ifndef OCRPOOL_CORE_METRICS_H
#define OCRPOOL_CORE_METRICS_H

#include <jansson.h>

#include "core/snapshot.h"
#include "store/store.h"

typedef struct op_metrics_s op_metrics_t;

op_metrics_t *op_metrics_create(void);
void op_metrics_destroy(op_metrics_t *m);

/** One answered HTTP request: its route template ("/v1/tasks/{id}"), method and status. */
void op_metrics_http(op_metrics_t *m, const char *route, const char *method, unsigned status);

/** One page ended: ok, else its failure reason; how long it ran. */
void op_metrics_page(op_metrics_t *m, int ok, op_reason_t reason, double seconds);

/** A task's first page started this long after the task was created. */
void op_metrics_queue_wait(op_metrics_t *m, double seconds);

/** The mean of the queue waits observed so far (0 before any). */
double op_metrics_average_wait(op_metrics_t *m);

/**
 * The exposition text (a new string): the counters above, tasks by status
 * and queued by priority from counts (NULL when the store could not answer),
 * and devices, workers and models from the service's snapshot (NULL: none yet),
 * labelled as this node's by ocrpool_node_info (node_id, host: ASCII).
 */
char *op_metrics_render(op_metrics_t *m, const op_store_counts_t *counts, const op_snapshot_t *snap,
                        const char *node_id, const char *host);

#endif
