/* metrics.c: counters, histograms and the Prometheus text format. */
#include "core/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 128
#define MAX_REASONS 16

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
  struct {
    char reason[32];
    unsigned long long count;
  } failed[MAX_REASONS];
  unsigned n_failed;
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

void op_metrics_page(op_metrics_t *m, int ok, const char *reason, double seconds) {
  pthread_mutex_lock(&m->lock);
  if (ok) {
    m->pages_ok++;
  } else {
    unsigned i = 0;
    while (i < m->n_failed && strcmp(m->failed[i].reason, reason) != 0)
      i++;
    if (i == m->n_failed && i < MAX_REASONS)
      snprintf(m->failed[m->n_failed++].reason, sizeof m->failed[i].reason, "%s", reason);
    if (i < m->n_failed)
      m->failed[i].count++;
  }
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

static json_int_t num(json_t *obj, const char *key) {
  return json_integer_value(json_object_get(obj, key));
}

/* One gauge per device from the /v1/memory snapshot's devices. */
static void device_gauge(FILE *f, json_t *devices, const char *name, const char *key, const char *help) {
  head(f, name, "gauge", help);
  size_t i;
  json_t *d;
  json_array_foreach(devices, i, d) {
    fputs(name, f);
    fputs("{device=\"", f);
    label(f, json_string_value(json_object_get(d, "name")));
    fprintf(f, "\"} %lld\n", (long long)num(d, key));
  }
}

static void memory_metrics(FILE *f, json_t *memory) {
  json_t *devices = json_object_get(memory, "devices");
  device_gauge(f, devices, "ocrpool_device_memory_capacity_bytes", "capacity_bytes",
               "Memory of the device (cgroup limit or MemTotal; a GPU's VRAM).");
  device_gauge(f, devices, "ocrpool_device_memory_budget_bytes", "budget_bytes", "What ocrpool may use on the device.");
  device_gauge(f, devices, "ocrpool_device_memory_reserved_bytes", "reserved_bytes",
               "What memory admission has promised on the device.");
  device_gauge(f, devices, "ocrpool_device_memory_used_bytes", "used_bytes",
               "Measured use by the server and its workers (PSS; VRAM on a GPU).");
  head(f, "ocrpool_device_memory_pressure_level", "gauge", "Pressure on the device: 0 ok, 1 warning, 2 critical.");
  size_t i;
  json_t *d;
  json_array_foreach(devices, i, d) {
    const char *level = json_string_value(json_object_get(d, "level"));
    fputs("ocrpool_device_memory_pressure_level{device=\"", f);
    label(f, json_string_value(json_object_get(d, "name")));
    fprintf(f, "\"} %d\n", level == NULL ? 0 : strcmp(level, "critical") == 0 ? 2 : strcmp(level, "warning") == 0);
  }
  /* Workers by device and state, then their memory by device: each family's samples together. */
  json_t *workers = json_object_get(memory, "workers");
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0)
      head(f, "ocrpool_workers", "gauge", "Worker processes by device and state.");
    else
      head(f, "ocrpool_worker_memory_bytes", "gauge", "Measured memory (PSS) of the workers, by device.");
    json_array_foreach(devices, i, d) {
      const char *dev = json_string_value(json_object_get(d, "name"));
      unsigned long long idle = 0, busy = 0, bytes = 0;
      size_t k;
      json_t *w;
      json_array_foreach(workers, k, w) {
        const char *wdev = json_string_value(json_object_get(w, "device"));
        if (dev == NULL || wdev == NULL || strcmp(dev, wdev) != 0)
          continue;
        const char *state = json_string_value(json_object_get(w, "state"));
        busy += state != NULL && strcmp(state, "busy") == 0;
        idle += state == NULL || strcmp(state, "busy") != 0;
        bytes += (unsigned long long)num(w, "used_bytes");
      }
      if (pass == 0) {
        fputs("ocrpool_workers{device=\"", f);
        label(f, dev);
        fprintf(f, "\",state=\"idle\"} %llu\nocrpool_workers{device=\"", idle);
        label(f, dev);
        fprintf(f, "\",state=\"busy\"} %llu\n", busy);
      } else {
        fputs("ocrpool_worker_memory_bytes{device=\"", f);
        label(f, dev);
        fprintf(f, "\"} %llu\n", bytes);
      }
    }
  }
  head(f, "ocrpool_worker_restarts_total", "counter", "Workers that ended and were replaced when needed, by reason.");
  const char *reason;
  json_t *v;
  json_object_foreach(json_object_get(memory, "workers_ended"), reason, v)
      fprintf(f, "ocrpool_worker_restarts_total{reason=\"%s\"} %lld\n", reason, (long long)json_integer_value(v));
  head(f, "ocrpool_oom_events_total", "counter", "Pages that ran out of memory (each attempt).");
  fprintf(f, "ocrpool_oom_events_total %lld\n", (long long)num(memory, "oom_events"));
}

static void model_metrics(FILE *f, json_t *models) {
  json_t *list = json_object_get(models, "models");
  size_t i;
  json_t *x;
  head(f, "ocrpool_model_loaded", "gauge", "Whether a worker holds the model (1) or none does (0).");
  json_array_foreach(list, i, x) {
    fputs("ocrpool_model_loaded{model=\"", f);
    label(f, json_string_value(json_object_get(x, "name")));
    fprintf(f, "\"} %d\n", json_integer_value(json_object_get(x, "workers")) > 0);
  }
  head(f, "ocrpool_model_loads_total", "counter", "Loads of the model into a worker.");
  json_array_foreach(list, i, x) {
    fputs("ocrpool_model_loads_total{model=\"", f);
    label(f, json_string_value(json_object_get(x, "name")));
    fprintf(f, "\"} %lld\n", (long long)num(x, "loads"));
  }
  head(f, "ocrpool_model_unloads_total", "counter", "Unloads of the model, by reason.");
  json_array_foreach(list, i, x) {
    const char *reason;
    json_t *v;
    json_object_foreach(json_object_get(x, "unloads"), reason, v) {
      fputs("ocrpool_model_unloads_total{model=\"", f);
      label(f, json_string_value(json_object_get(x, "name")));
      fprintf(f, "\",reason=\"%s\"} %lld\n", reason, (long long)json_integer_value(v));
    }
  }
}

char *op_metrics_render(op_metrics_t *m, const op_store_counts_t *counts, json_t *memory, json_t *models) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return NULL;
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
  for (unsigned i = 0; i < m->n_failed; i++) {
    fputs("ocrpool_pages_failed_total{reason=\"", f);
    label(f, m->failed[i].reason);
    fprintf(f, "\"} %llu\n", m->failed[i].count);
  }
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
  if (memory != NULL)
    memory_metrics(f, memory);
  if (models != NULL)
    model_metrics(f, models);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
