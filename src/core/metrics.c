/* metrics.c: counters, histograms and the Prometheus text format. */
#include "core/metrics.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 512 /* route x method x status rows; past it, requests count under route="(other)" */

static const double page_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double wait_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900};
#define N_PAGE_BOUNDS (sizeof page_bounds / sizeof page_bounds[0])
#define N_WAIT_BOUNDS (sizeof wait_bounds / sizeof wait_bounds[0])

typedef struct hist_s {
  unsigned long long buckets[16]; /* per bound, not cumulative; the last is +Inf */
  unsigned long long count;
  double sum;
} hist_t;

struct op_metrics_s {
  pthread_mutex_t lock;
  struct {
    char route[48], method[8];
    unsigned status;
    unsigned long long count;
  } http[MAX_ROUTES];
  unsigned n_http;
  unsigned long long pages_ok;
  unsigned long long failed[OP_REASON_COUNT]; /* pages failed, by reason */
  hist_t page, wait;
};

op_metrics_t *op_metrics_create(void) {
  op_metrics_t *m = calloc(1, sizeof *m);
  if (m != NULL)
    pthread_mutex_init(&m->lock, NULL);
  return m;
}

void op_metrics_destroy(op_metrics_t *m) {
  if (m == NULL)
    return;
  pthread_mutex_destroy(&m->lock);
  free(m);
}

void op_metrics_http(op_metrics_t *m, const char *route, const char *method, unsigned status) {
  pthread_mutex_lock(&m->lock);
  unsigned i = 0;
  while (i < m->n_http && (m->http[i].status != status || strcmp(m->http[i].route, route) != 0 ||
                           strcmp(m->http[i].method, method) != 0))
    i++;
  if (i == m->n_http && i == MAX_ROUTES - 1) { /* the last row is the overflow's */
    route = "(other)";
    method = "";
    status = 0;
    i = 0;
    while (i < m->n_http && strcmp(m->http[i].route, route) != 0)
      i++;
  }
  if (i == m->n_http && i < MAX_ROUTES) {
    snprintf(m->http[i].route, sizeof m->http[i].route, "%s", route);
    snprintf(m->http[i].method, sizeof m->http[i].method, "%s", method);
    m->http[i].status = status;
    m->n_http++;
  }
  if (i < m->n_http)
    m->http[i].count++;
  pthread_mutex_unlock(&m->lock);
}

static void observe(hist_t *h, const double *bounds, size_t n, double v) {
  size_t b = 0;
  while (b < n && v > bounds[b])
    b++;
  h->buckets[b]++;
  h->count++;
  h->sum += v;
}

void op_metrics_page(op_metrics_t *m, int ok, op_reason_t reason, double seconds) {
  pthread_mutex_lock(&m->lock);
  if (ok)
    m->pages_ok++;
  else
    m->failed[(unsigned)reason < OP_REASON_COUNT && reason != OP_REASON_NONE ? reason : OP_REASON_INTERNAL]++;
  observe(&m->page, page_bounds, N_PAGE_BOUNDS, seconds > 0 ? seconds : 0);
  pthread_mutex_unlock(&m->lock);
}

void op_metrics_queue_wait(op_metrics_t *m, double seconds) {
  pthread_mutex_lock(&m->lock);
  observe(&m->wait, wait_bounds, N_WAIT_BOUNDS, seconds > 0 ? seconds : 0);
  pthread_mutex_unlock(&m->lock);
}

double op_metrics_average_wait(op_metrics_t *m) {
  pthread_mutex_lock(&m->lock);
  double avg = m->wait.count ? m->wait.sum / (double)m->wait.count : 0;
  pthread_mutex_unlock(&m->lock);
  return avg;
}

/* A label value as the format wants it: backslash, quote and newline escaped. */
static void label(FILE *f, const char *v) {
  for (; v != NULL && *v; v++) {
    if (*v == '\\' || *v == '"')
      fputc('\\', f);
    if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  }
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(FILE *f, const char *name, const char *help, const hist_t *h, const double *bounds, size_t n) {
  head(f, name, "histogram", help);
  unsigned long long cum = 0;
  for (size_t b = 0; b < n; b++) {
    cum += h->buckets[b];
    fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], cum);
  }
  fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->count, name, h->sum, name, h->count);
}

/* The devices of a snapshot: the cpu, then each GPU. */
typedef struct device_row_s {
  char name[16];
  uint64_t capacity, budget, reserved, used;
  op_mem_level_t level;
  int gpu; /* -1 for the cpu */
} device_row_t;

static unsigned device_rows(const op_snapshot_t *snap, device_row_t *rows) {
  const op_sched_mem_t *m = &snap->mem;
  rows[0] =
      (device_row_t){"cpu", snap->capacity_bytes, m->budget_bytes, m->reserved_bytes, m->used_bytes, m->level, -1};
  for (unsigned g = 0; g < m->n_gpus; g++) {
    rows[g + 1] = (device_row_t){"",
                                 m->gpus[g].capacity_bytes,
                                 m->gpus[g].budget_bytes,
                                 m->gpus[g].reserved_bytes,
                                 m->gpus[g].used_bytes,
                                 m->gpus[g].level,
                                 (int)g};
    snprintf(rows[g + 1].name, sizeof rows[g + 1].name, "cuda:%u", g);
  }
  return 1 + m->n_gpus;
}

static void device_gauge(FILE *f, const device_row_t *rows, unsigned n, const char *name, size_t field,
                         const char *help) {
  head(f, name, "gauge", help);
  for (unsigned i = 0; i < n; i++)
    fprintf(f, "%s{device=\"%s\"} %llu\n", name, rows[i].name,
            (unsigned long long)*(const uint64_t *)((const char *)&rows[i] + field));
}

static void worker_metrics(FILE *f, const op_snapshot_t *snap, const device_row_t *rows, unsigned n) {
  head(f, "ocrpool_workers", "gauge", "Worker processes by device and state.");
  for (unsigned d = 0; d < n; d++) {
    unsigned long long idle = 0, busy = 0;
    for (unsigned i = 0; i < snap->n_workers; i++) {
      const op_sched_worker_mem_t *w = &snap->workers[i];
      if (w->pid > 0 && w->gpu == rows[d].gpu) {
        busy += w->busy != 0;
        idle += w->busy == 0;
      }
    }
    fprintf(f, "ocrpool_workers{device=\"%s\",state=\"idle\"} %llu\n", rows[d].name, idle);
    fprintf(f, "ocrpool_workers{device=\"%s\",state=\"busy\"} %llu\n", rows[d].name, busy);
  }
  head(f, "ocrpool_worker_memory_bytes", "gauge", "Measured memory (PSS) of the workers, by device.");
  for (unsigned d = 0; d < n; d++) {
    unsigned long long bytes = 0;
    for (unsigned i = 0; i < snap->n_workers; i++)
      if (snap->workers[i].pid > 0 && snap->workers[i].gpu == rows[d].gpu)
        bytes += snap->workers[i].used_bytes;
    fprintf(f, "ocrpool_worker_memory_bytes{device=\"%s\"} %llu\n", rows[d].name, bytes);
  }
}

static void memory_metrics(FILE *f, const op_snapshot_t *snap) {
  device_row_t rows[1 + OP_SCHED_MAX_GPUS];
  unsigned n = device_rows(snap, rows);
  device_gauge(f, rows, n, "ocrpool_device_memory_capacity_bytes", offsetof(device_row_t, capacity),
               "Memory of the device (cgroup limit or MemTotal; a GPU's VRAM).");
  device_gauge(f, rows, n, "ocrpool_device_memory_budget_bytes", offsetof(device_row_t, budget),
               "What ocrpool may use on the device.");
  device_gauge(f, rows, n, "ocrpool_device_memory_reserved_bytes", offsetof(device_row_t, reserved),
               "What memory admission has promised on the device.");
  device_gauge(f, rows, n, "ocrpool_device_memory_used_bytes", offsetof(device_row_t, used),
               "Measured use by the server and its workers (PSS; VRAM on a GPU).");
  head(f, "ocrpool_device_memory_pressure_level", "gauge", "Pressure on the device: 0 ok, 1 warning, 2 critical.");
  for (unsigned i = 0; i < n; i++)
    fprintf(f, "ocrpool_device_memory_pressure_level{device=\"%s\"} %d\n", rows[i].name, (int)rows[i].level);
  worker_metrics(f, snap, rows, n);
  head(f, "ocrpool_worker_restarts_total", "counter", "Workers that ended and were replaced when needed, by reason.");
  for (int r = 0; r < OP_SCHED_END_REASONS; r++)
    fprintf(f, "ocrpool_worker_restarts_total{reason=\"%s\"} %u\n", op_sched_end_names[r], snap->mem.worker_ends[r]);
  head(f, "ocrpool_oom_events_total", "counter", "Pages that ran out of memory (each attempt).");
  fprintf(f, "ocrpool_oom_events_total %u\n", snap->mem.oom_events);
}

/* The label of a model: its declared name, else engine:languages. */
static void model_label(FILE *f, const op_sched_model_t *v) {
  char text[OP_MODEL_KEY_TEXT];
  label(f, v->policy && v->policy->name[0] ? v->policy->name : op_model_key_text(&v->key, text));
}

static void model_metrics(FILE *f, const op_snapshot_t *snap) {
  head(f, "ocrpool_model_loaded", "gauge", "Whether a worker holds the model (1) or none does (0).");
  for (size_t i = 0; i < snap->n_models; i++) {
    fputs("ocrpool_model_loaded{model=\"", f);
    model_label(f, &snap->models[i]);
    fprintf(f, "\"} %d\n", snap->models[i].workers > 0);
  }
  head(f, "ocrpool_model_loads_total", "counter", "Loads of the model into a worker.");
  for (size_t i = 0; i < snap->n_models; i++) {
    fputs("ocrpool_model_loads_total{model=\"", f);
    model_label(f, &snap->models[i]);
    fprintf(f, "\"} %u\n", snap->models[i].loads);
  }
  head(f, "ocrpool_model_unloads_total", "counter", "Unloads of the model, by reason.");
  for (size_t i = 0; i < snap->n_models; i++) {
    for (int r = 0; r < OP_SCHED_UNLOAD_REASONS; r++) {
      fputs("ocrpool_model_unloads_total{model=\"", f);
      model_label(f, &snap->models[i]);
      fprintf(f, "\",reason=\"%s\"} %u\n", op_sched_unload_names[r], snap->models[i].unloads[r]);
    }
  }
}

char *op_metrics_render(op_metrics_t *m, const op_store_counts_t *counts, const op_snapshot_t *snap,
                        const char *node_id, const char *host) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return NULL;
  /* Which node this is, for joining the per-node figures of several nodes (node ids and host names are ASCII without
   * quotes). */
  head(f, "ocrpool_node_info", "gauge", "This node: its id and host (several nodes may share one store).");
  fprintf(f, "ocrpool_node_info{node=\"%s\",host=\"%s\"} 1\n", node_id ? node_id : "", host ? host : "");
  if (counts != NULL) {
    head(f, "ocrpool_tasks", "gauge", "Tasks in the store by status (finished ones until their retention ends).");
    for (int s = 0; s < OP_STORE_STATUSES; s++) {
      long long n = 0;
      for (int p = 0; p < 10; p++)
        n += counts->counts[s][p];
      fprintf(f, "ocrpool_tasks{status=\"%s\"} %lld\n", op_store_statuses[s], n);
    }
    head(f, "ocrpool_queue_depth", "gauge", "Tasks waiting to start, by priority.");
    for (int p = 0; p < 10; p++)
      fprintf(f, "ocrpool_queue_depth{priority=\"%d\"} %d\n", p, counts->counts[0][p]);
  }
  pthread_mutex_lock(&m->lock);
  head(f, "ocrpool_pages_processed_total", "counter", "Pages that ended with a result.");
  fprintf(f, "ocrpool_pages_processed_total %llu\n", m->pages_ok);
  head(f, "ocrpool_pages_failed_total", "counter", "Pages that failed, by reason.");
  for (unsigned r = 0; r < OP_REASON_COUNT; r++)
    if (m->failed[r] > 0)
      fprintf(f, "ocrpool_pages_failed_total{reason=\"%s\"} %llu\n", op_reason_name((op_reason_t)r), m->failed[r]);
  histogram(f, "ocrpool_page_duration_seconds", "Time from a page's start on a worker to its end.", &m->page,
            page_bounds, N_PAGE_BOUNDS);
  histogram(f, "ocrpool_queue_wait_seconds", "Time from a task's submission to its first page's start.", &m->wait,
            wait_bounds, N_WAIT_BOUNDS);
  head(f, "ocrpool_http_requests_total", "counter", "HTTP requests answered, by route, method and status.");
  for (unsigned i = 0; i < m->n_http; i++) {
    fputs("ocrpool_http_requests_total{route=\"", f);
    label(f, m->http[i].route);
    fprintf(f, "\",method=\"%s\",status=\"%u\"} %llu\n", m->http[i].method, m->http[i].status, m->http[i].count);
  }
  pthread_mutex_unlock(&m->lock);
  if (snap != NULL) {
    memory_metrics(f, snap);
    model_metrics(f, snap);
  }
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
