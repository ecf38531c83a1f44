/*
 * service.c: tasks from the store, run by the scheduler, recorded back.
 *
 * The service thread loops: it loads tasks that are queued in the store and
 * not yet scheduled, applies cancellations other threads asked for, fails
 * tasks that waited past the queue timeout, runs one scheduler step, and now
 * and then removes tasks past their retention. The scheduler's callbacks
 * write every page start, end and retry, and every task end, to the store
 * (with an event) before anything else happens, so a kill -9 at any moment
 * leaves a record that the next start resumes from: pages that were done stay
 * done (their fragments are on disk), pages that were running run again.
 */
#include "core/service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "mem/mem.h"
#include "util/config.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/notify.h"
#include "worker/supervisor.h"

#define POOL_MAX 16
#define MAX_CANCELS 256

typedef struct active_s {
  op_task_t *task;
  op_task_row_t row;
  int pages_recorded; /* page rows written after the probe */
} active_t;

struct op_service_s {
  op_service_config_t cfg;
  char data_dir[512];
  char tasks_dir[600];
  op_store_t *store; /* the service thread's own */
  op_supervisor_t *sup;
  op_sched_t *sched;
  int wake[2];
  active_t **active;
  size_t n_active, cap_active;
  pthread_mutex_t lock; /* guards pool and cancels */
  op_store_t *pool[POOL_MAX];
  size_t pool_n;
  char cancels[MAX_CANCELS][40];
  size_t n_cancels;
  pthread_cond_t finished;  /* broadcast under lock when a task's end is committed */
  unsigned long n_finished; /* how many ends were, under lock */
  volatile int draining;
  volatile int ready; /* a worker has started: work can run */
  double last_retention;
  uint64_t capacity, budget;   /* the CPU device's */
  op_model_policy_t *policies; /* from the configuration's models: list */
  char budget_text[64];        /* devices.cpu.budget as the file gave it */
  unsigned n_policies;
  json_t *memory;  /* the last /v1/memory snapshot, under lock */
  json_t *models;  /* the last /v1/models snapshot, under lock */
  json_t *history; /* the cpu's last five minutes, a sample a second, under lock */
  double last_history;
  struct {
    const op_model_policy_t *model;
    int load;
  } model_requests[16]; /* from other threads, under lock */
  unsigned n_model_requests;
  double last_memory;
  /* pressure */
  double warning_share, critical_share, cooldown_s;
  unsigned defer_below;
  op_mem_level_t level;
  volatile int refusing;         /* critical with nothing left to free: submissions get 503 */
  const char *report_reason;     /* a memory report to write ("critical", "requested"), under lock */
  op_metrics_t *metrics;         /* GET /metrics */
  volatile sig_atomic_t *reload; /* set by SIGHUP: read the configuration again */
  char log_level_text[16];       /* log.level from the file */
  op_nvml_t *nvml;               /* NULL without GPUs */
  unsigned n_gpus;
  uint64_t gpu_budget[OP_SCHED_MAX_GPUS];
  char gpu_budget_text[64]; /* devices.cuda.budget */
};

void op_service_config_init(op_service_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->data_dir = "./var";
  cfg->workers = op_usable_cores();
  if (cfg->workers > OP_SUPERVISOR_MAX_WORKERS)
    cfg->workers = OP_SUPERVISOR_MAX_WORKERS; /* a default never fails the start */
  cfg->max_queue = 100;
  cfg->queue_timeout_s = 300;
  cfg->page_timeout_s = 300;
  cfg->retention_s = 7 * 24 * 3600;
  cfg->max_attempts = 3;
  cfg->drain_timeout_s = 30;
  op_doc_limits_init(&cfg->limits);
}

const op_service_config_t *op_service_config(const op_service_t *svc) {
  return &svc->cfg;
}

unsigned long op_service_finished_count(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  unsigned long n = svc->n_finished;
  pthread_mutex_unlock(&svc->lock);
  return n;
}

void op_service_wait_finished(op_service_t *svc, unsigned long seen, unsigned max_ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_nsec += (long)(max_ms % 1000) * 1000000L;
  until.tv_sec += max_ms / 1000 + until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  pthread_mutex_lock(&svc->lock);
  while (svc->n_finished == seen && pthread_cond_timedwait(&svc->finished, &svc->lock, &until) == 0)
    ;
  pthread_mutex_unlock(&svc->lock);
}

int op_service_ready(const op_service_t *svc) {
  return svc->ready;
}

int op_service_refusing(const op_service_t *svc) {
  return svc->refusing;
}

int op_service_draining(const op_service_t *svc) {
  return svc->draining;
}

void op_service_new_id(char id[40]) {
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
    /* getrandom cannot fail for 16 bytes once the pool is ready; be safe anyway */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (size_t i = 0; i < sizeof raw; i++)
      raw[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() >> (i % 4)) ^ rand());
  }
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(id + 2 * i, 3, "%02x", raw[i]);
}

char *op_service_task_dir(const op_service_t *svc, const char *id) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", svc->tasks_dir, id) < 0)
    return NULL;
  return p;
}

static void wake(op_service_t *svc) {
  char c = 1;
  ssize_t w = write(svc->wake[1], &c, 1); /* a full pipe already means "wake up" */
  (void)w;
}

/* ---- the store pool for other threads ---- */

int op_service_store_get(op_service_t *svc, op_store_t **store, op_error_t *err) {
  pthread_mutex_lock(&svc->lock);
  op_store_t *st = svc->pool_n > 0 ? svc->pool[--svc->pool_n] : NULL;
  pthread_mutex_unlock(&svc->lock);
  if (st == NULL && op_store_open(svc->data_dir, &st, err) < 0)
    return err ? err->code : OP_EIO;
  *store = st;
  return 0;
}

void op_service_store_put(op_service_t *svc, op_store_t *store) {
  if (store == NULL)
    return;
  pthread_mutex_lock(&svc->lock);
  if (svc->pool_n < POOL_MAX) {
    svc->pool[svc->pool_n++] = store;
    store = NULL;
  }
  pthread_mutex_unlock(&svc->lock);
  op_store_close(store);
}

int op_service_submit(op_service_t *svc, op_task_row_t *task, op_error_t *err) {
  op_store_t *st = NULL;
  int rc = op_service_store_get(svc, &st, err);
  if (rc < 0)
    return rc;
  snprintf(task->status, sizeof task->status, "queued");
  task->created_at = op_wall_time_s();
  rc = op_store_task_insert(st, task, err);
  if (rc == 0)
    rc = op_store_event_add(st, task->id, "queued", NULL, err);
  op_service_store_put(svc, st);
  if (rc == 0)
    wake(svc);
  return rc;
}

void op_service_cancel(op_service_t *svc, const char *id) {
  pthread_mutex_lock(&svc->lock);
  if (svc->n_cancels < MAX_CANCELS)
    snprintf(svc->cancels[svc->n_cancels++], 40, "%s", id);
  pthread_mutex_unlock(&svc->lock);
  wake(svc);
}

/* ---- the task as JSON ---- */

static json_t *str_or_null(const char *s) {
  return s[0] ? json_string(s) : json_null();
}

json_t *op_service_task_json(const op_task_row_t *t) {
  json_error_t je;
  json_t *opts = json_loads(t->options, 0, &je);
  json_t *j =
      json_pack("{s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o}", "id", t->id,
                "status", t->status, "priority", t->priority, "created_at", op_time_json(t->created_at), "started_at",
                op_time_json(t->started_at), "finished_at", op_time_json(t->finished_at), "pages_total", t->pages_total,
                "pages_done", t->pages_done, "attempts", t->attempts, "device", str_or_null(t->device), "worker",
                str_or_null(t->worker), "estimated_memory_bytes", (json_int_t)t->estimated_memory_bytes,
                "peak_memory_bytes", (json_int_t)t->peak_memory_bytes, "failure_reason", str_or_null(t->failure_reason),
                "error", str_or_null(t->error), "title", str_or_null(t->title), "formats", json_array());
  const char *names = json_string_value(json_object_get(opts, "format"));
  char buf[64];
  snprintf(buf, sizeof buf, "%s", names ? names : "txt");
  for (char *save = NULL, *f = strtok_r(buf, ",", &save); f != NULL; f = strtok_r(NULL, ",", &save))
    json_array_append_new(json_object_get(j, "formats"), json_string(f));
  json_decref(opts);
  return j;
}

/* ---- options: from the stored JSON to the scheduler's ---- */

static int task_opts_from_json(const char *text, op_task_opts_t *o, op_error_t *err) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (j == NULL)
    return op_error_set(err, OP_EINTERNAL, "internal", "stored options are not JSON: %s", je.text);
  op_task_opts_init(o);
  int rc = 0;
  const char *formats = json_string_value(json_object_get(j, "format"));
  if (formats != NULL && (rc = op_format_parse(formats, &o->formats, err)) < 0)
    goto out;
  const char *lang = json_string_value(json_object_get(j, "lang"));
  if (lang != NULL)
    snprintf(o->model.lang, sizeof o->model.lang, "%s", lang);
  const char *engine = json_string_value(json_object_get(j, "engine"));
  if (engine != NULL)
    snprintf(o->model.engine, sizeof o->model.engine, "%s", engine);
  if (json_is_integer(json_object_get(j, "psm")))
    o->psm = (int)json_integer_value(json_object_get(j, "psm"));
  if (json_is_integer(json_object_get(j, "dpi"))) {
    o->limits.dpi = (int)json_integer_value(json_object_get(j, "dpi"));
    o->user_dpi = o->limits.dpi;
  }
  o->rotate_pages = json_is_true(json_object_get(j, "rotate_pages"));
  if (json_is_integer(json_object_get(j, "priority")))
    o->priority = (int)json_integer_value(json_object_get(j, "priority"));
  const char *pages = json_string_value(json_object_get(j, "pages"));
  o->pages = pages != NULL ? strdup(pages) : NULL; /* op_task_create copies it; freed below */
out:
  json_decref(j);
  return rc;
}

/* ---- recording what the scheduler does ---- */

static active_t *find_active(op_service_t *svc, const op_task_t *t) {
  for (size_t i = 0; i < svc->n_active; i++)
    if (svc->active[i]->task == t)
      return svc->active[i];
  return NULL;
}

static void log_store_error(const char *what, const op_error_t *e) {
  op_log_error("store: %s: %s", what, e->message);
}

static void save_row(op_service_t *svc, active_t *a) {
  op_error_t e;
  if (op_store_task_update(svc->store, &a->row, &e) < 0)
    log_store_error("updating a task", &e);
}

static void page_row(const op_page_job_t *p, const char *state, op_page_row_t *row) {
  memset(row, 0, sizeof *row);
  row->index = (int)p->index;
  snprintf(row->state, sizeof row->state, "%s", state);
  row->attempts = (int)p->attempts;
  row->crash_attempts = (int)p->crash_attempts;
  row->peak_memory_bytes = (int64_t)p->peak_rss_kb * 1024;
  row->estimated_memory_bytes = (int64_t)p->estimate_bytes;
  row->started_at = p->started_s;
  if (p->state == OP_PAGE_DONE || p->state == OP_PAGE_FAILED)
    row->finished_at = op_wall_time_s();
  if (p->state == OP_PAGE_FAILED)
    snprintf(row->error, sizeof row->error, "%s", p->error.message);
}

static void save_page(op_service_t *svc, active_t *a, const op_page_job_t *p, const char *state) {
  op_page_row_t row;
  page_row(p, state, &row);
  op_error_t e;
  if (op_store_page_put(svc->store, a->row.id, &row, &e) < 0)
    log_store_error("recording a page", &e);
}

/* The page list, the first time a page of the task starts (the probe is
 * done). One transaction: a restart must see every page or none, never a
 * task that seems to have fewer pages than it has. */
static void save_page_list(op_service_t *svc, active_t *a, const op_task_t *t, const op_page_job_t *running) {
  op_page_row_t *rows = calloc(t->n_pages, sizeof *rows);
  op_error_t e;
  if (rows == NULL) {
    op_log_error("store: out of memory recording %zu pages", t->n_pages);
    return;
  }
  for (size_t i = 0; i < t->n_pages; i++) {
    const op_page_job_t *p = &t->pages[i];
    page_row(p, p == running ? "running" : p->state == OP_PAGE_DONE ? "done" : "queued", &rows[i]);
  }
  if (op_store_pages_put(svc->store, a->row.id, rows, t->n_pages, &e) < 0)
    log_store_error("recording the page list", &e);
  free(rows);
}

/* What one scheduler callback records is one transaction: a kill -9 leaves
 * a page's state and its event together, or neither. */
static void tx_open(op_service_t *svc) {
  op_error_t e;
  if (op_store_begin(svc->store, &e) < 0)
    log_store_error("starting a transaction", &e);
}

static void tx_close(op_service_t *svc) {
  op_error_t e;
  if (op_store_end(svc->store, 0, &e) < 0)
    log_store_error("committing", &e);
}

static void event(op_service_t *svc, active_t *a, const char *type, json_t *details) {
  op_error_t e;
  if (op_store_event_add(svc->store, a->row.id, type, details, &e) < 0)
    log_store_error("recording an event", &e);
  json_decref(details);
}

static void on_page_start(void *ctx, op_task_t *t, op_page_job_t *p) {
  op_service_t *svc = ctx;
  active_t *a = find_active(svc, t);
  if (a == NULL)
    return;
  tx_open(svc);
  if (!a->pages_recorded) {
    save_page_list(svc, a, t, p);
    a->pages_recorded = 1;
    a->row.pages_total = (int)t->n_pages;
  } else {
    save_page(svc, a, p, "running");
  }
  if (strcmp(a->row.status, "queued") == 0) {
    snprintf(a->row.status, sizeof a->row.status, "running");
    a->row.started_at = op_wall_time_s();
    op_metrics_queue_wait(svc->metrics, a->row.started_at - a->row.created_at);
    event(svc, a, "started", NULL);
  }
  if (strcmp(a->row.device, p->device) != 0) { /* the task's device: where its pages went, last */
    snprintf(a->row.device, sizeof a->row.device, "%s", p->device);
    event(svc, a, "resource_acquired", json_pack("{s:s}", "device", p->device));
  }
  a->row.attempts++;
  if ((int64_t)p->estimate_bytes > a->row.estimated_memory_bytes)
    a->row.estimated_memory_bytes = (int64_t)p->estimate_bytes;
  snprintf(a->row.worker, sizeof a->row.worker, "worker%u", p->worker_id);
  save_row(svc, a);
  json_t *details =
      json_pack("{s:i, s:i, s:s, s:i, s:i, s:s, s:s, s:I}", "page", (int)p->index + 1, "attempt", (int)p->attempts,
                "worker", a->row.worker, "pid", (int)p->worker_pid, "batch", (int)p->batch, "model", p->model, "device",
                p->device, "estimated_memory_bytes", (json_int_t)p->estimate_bytes);
  if (details != NULL && p->fallback_why != NULL)
    json_object_set_new(details, "fallback_reason", json_string(p->fallback_why));
  event(svc, a, "page_started", details);
  tx_close(svc);
}

static void on_retry(void *ctx, op_task_t *t, op_page_job_t *p, const char *why) {
  op_service_t *svc = ctx;
  active_t *a = find_active(svc, t);
  if (a == NULL)
    return;
  tx_open(svc);
  save_page(svc, a, p, "queued");
  event(svc, a, "retried",
        json_pack("{s:i, s:i, s:s}", "page", (int)p->index + 1, "attempt", (int)p->attempts, "reason", why ? why : ""));
  tx_close(svc);
}

static void on_memory_wait(void *ctx, op_task_t *t, op_page_job_t *p, uint64_t need, uint64_t free_bytes) {
  op_service_t *svc = ctx;
  active_t *a = find_active(svc, t);
  if (a == NULL)
    return;
  event(svc, a, "waiting_for_memory",
        json_pack("{s:i, s:I, s:I, s:I}", "page", (int)p->index + 1, "needed_bytes", (json_int_t)need, "free_bytes",
                  (json_int_t)free_bytes, "budget_bytes", (json_int_t)svc->budget));
}

/* The level changed: running tasks record a memory_warning when it rises;
 * entering critical writes a memory report. */
static void on_pressure(void *ctx, op_mem_level_t level, int refusing, uint64_t used, uint64_t budget) {
  op_service_t *svc = ctx;
  svc->refusing = refusing;
  if (level > svc->level) {
    tx_open(svc);
    for (size_t i = 0; i < svc->n_active; i++)
      if (svc->active[i]->task != NULL && svc->active[i]->task->status == OP_TASK_RUNNING)
        event(svc, svc->active[i], "memory_warning",
              json_pack("{s:s, s:s, s:I, s:I}", "device", "cpu", "level", op_mem_level_name(level), "used_bytes",
                        (json_int_t)used, "budget_bytes", (json_int_t)budget));
    tx_close(svc);
  }
  if (level == OP_MEM_CRITICAL && svc->level != OP_MEM_CRITICAL) {
    pthread_mutex_lock(&svc->lock);
    svc->report_reason = "critical";
    pthread_mutex_unlock(&svc->lock);
  }
  svc->level = level;
}

static void on_page_end(void *ctx, op_task_t *t, op_page_job_t *p) {
  op_service_t *svc = ctx;
  active_t *a = find_active(svc, t);
  if (a == NULL)
    return;
  tx_open(svc);
  int done = p->state == OP_PAGE_DONE;
  op_metrics_page(svc->metrics, done, p->error.reason[0] ? p->error.reason : "internal",
                  p->started_s > 0 ? op_wall_time_s() - p->started_s : 0);
  save_page(svc, a, p, done ? "done" : "failed");
  a->row.pages_done = (int)t->pages_done;
  a->row.pages_total = (int)t->n_pages;
  int64_t peak = (int64_t)p->peak_rss_kb * 1024;
  if (peak > a->row.peak_memory_bytes)
    a->row.peak_memory_bytes = peak;
  save_row(svc, a);
  op_error_t e;
  if (op_store_metric_add(svc->store, a->row.id, peak, "cpu", "page", &e) < 0)
    log_store_error("recording a memory sample", &e);
  if (done)
    event(svc, a, "page_done",
          json_pack("{s:i, s:I}", "page", (int)p->index + 1, "peak_memory_bytes", (json_int_t)peak));
  else
    event(svc, a, "page_failed", json_pack("{s:i, s:s}", "page", (int)p->index + 1, "error", p->error.message));
  tx_close(svc);
}

/* Removes a finished task's page fragments, keeping its input and results. */
static void remove_fragments(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == 'p' && strspn(de->d_name + 1, "0123456789") == 6) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

static void on_task_end(void *ctx, op_task_t *t) {
  op_service_t *svc = ctx;
  active_t *a = find_active(svc, t);
  if (a == NULL)
    return;
  tx_open(svc);
  const char *status = t->status == OP_TASK_SUCCEEDED   ? "succeeded"
                       : t->status == OP_TASK_CANCELLED ? "cancelled"
                                                        : "failed";
  snprintf(a->row.status, sizeof a->row.status, "%s", status);
  a->row.finished_at = op_wall_time_s();
  a->row.pages_done = (int)t->pages_done;
  a->row.pages_total = (int)t->n_pages;
  if (t->status != OP_TASK_SUCCEEDED) {
    snprintf(a->row.failure_reason, sizeof a->row.failure_reason, "%s",
             t->error.reason[0] ? t->error.reason : "internal");
    snprintf(a->row.error, sizeof a->row.error, "%s", t->error.message);
  }
  /* Fragments go only after every result is written (the scheduler
   * assembled them before calling us): a kill before this transaction commits
   * leaves pages "done" without fragments, and the next start then finds the
   * results whole (they are renamed into place) and does not assemble again. */
  event(svc, a, "cleanup_started", NULL);
  remove_fragments(t->scratch_dir);
  a->row.resource_cleanup_completed = 1;
  event(svc, a, "resource_released", json_pack("{s:s}", "device", a->row.device[0] ? a->row.device : "cpu"));
  event(svc, a, "cleanup_completed", NULL);
  save_row(svc, a);
  if (t->status == OP_TASK_SUCCEEDED)
    event(svc, a, "succeeded", json_pack("{s:i}", "pages", (int)t->pages_done));
  else
    event(svc, a, status, json_pack("{s:s, s:s}", "reason", a->row.failure_reason, "error", a->row.error));
  tx_close(svc);
  pthread_mutex_lock(&svc->lock);
  svc->n_finished++;
  pthread_cond_broadcast(&svc->finished);
  pthread_mutex_unlock(&svc->lock);
  /* The scheduler is done with it; forget it (its files stay for the results). */
  for (size_t i = 0; i < svc->n_active; i++) {
    if (svc->active[i] == a) {
      svc->active[i] = svc->active[--svc->n_active];
      break;
    }
  }
  op_task_destroy(t);
  free(a);
}

/* ---- loading tasks from the store ---- */

static int is_active(const op_service_t *svc, const char *id) {
  for (size_t i = 0; i < svc->n_active; i++)
    if (strcmp(svc->active[i]->row.id, id) == 0)
      return 1;
  return 0;
}

/* The pages a restarted task already has: done ones keep their fragments. */
static void restore_pages(op_service_t *svc, active_t *a) {
  op_page_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_pages(svc->store, a->row.id, &rows, &n, &e) < 0 || n == 0) {
    free(rows);
    return;
  }
  op_task_t *t = a->task;
  t->pages = calloc(n, sizeof *t->pages);
  if (t->pages == NULL) {
    free(rows);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    op_page_job_t *p = &t->pages[i];
    p->task = t;
    p->index = (uint32_t)rows[i].index;
    p->attempts = (unsigned)rows[i].attempts;
    p->crash_attempts = (unsigned)rows[i].crash_attempts;
    p->estimate_bytes = (uint64_t)rows[i].estimated_memory_bytes;
    if (strcmp(rows[i].state, "done") == 0) {
      p->state = OP_PAGE_DONE;
    } else if (strcmp(rows[i].state, "failed") == 0) {
      p->state = OP_PAGE_FAILED;
      op_error_set(&p->error, OP_EINTERNAL, "internal", "%s", rows[i].error);
    } else {
      p->state = OP_PAGE_QUEUED;
    }
  }
  t->n_pages = n;
  a->pages_recorded = 1;
  free(rows);
}

static void schedule_row(op_service_t *svc, const op_task_row_t *row) {
  op_error_t e;
  op_task_opts_t opts;
  active_t *a = calloc(1, sizeof *a);
  char *dir = op_service_task_dir(svc, row->id);
  char *input = NULL;
  if (a == NULL || dir == NULL || asprintf(&input, "%s/input", dir) < 0) {
    free(a);
    free(dir);
    return;
  }
  a->row = *row;
  int rc = task_opts_from_json(row->options, &opts, &e);
  if (rc == 0) {
    opts.limits.max_pages = svc->cfg.limits.max_pages;
    opts.limits.max_page_pixels = svc->cfg.limits.max_page_pixels;
    a->task =
        op_task_create(input, row->title[0] ? row->title : "document", op_doc_type_from_name(row->input_type), &opts);
    free((char *)opts.pages);
  }
  if (a->task != NULL)
    snprintf(a->task->log_id, sizeof a->task->log_id, "%s", row->id);
  if (a->task == NULL) {
    op_log_task(OP_LOG_ERROR, row->id, 0, "task %s cannot be scheduled: %s", row->id,
                rc < 0 ? e.message : "out of memory");
    free(a);
    free(dir);
    free(input);
    return;
  }
  if (rc == 0 && a->task != NULL) {
    json_t *o = json_loads(row->options, 0, NULL);
    const char *model = json_string_value(json_object_get(o, "model"));
    if (model != NULL)
      a->task->policy = op_model_policy_named(svc->policies, svc->n_policies, model);
    if (model != NULL && a->task->policy == NULL)
      a->task->opts.model_name = "(no longer declared)"; /* op_sched_add refuses it with a sentence */
    json_decref(o);
  }
  a->task->scratch_dir = dir;
  a->task->keep_scratch = 1;
  a->task->started_s = row->started_at;
  a->task->queued_s = row->created_at;
  restore_pages(svc, a);
  if (svc->n_active == svc->cap_active) {
    size_t cap = svc->cap_active ? svc->cap_active * 2 : 64;
    active_t **na = realloc(svc->active, cap * sizeof *na);
    if (na == NULL) {
      op_task_destroy(a->task);
      free(a);
      free(input);
      return;
    }
    svc->active = na;
    svc->cap_active = cap;
  }
  svc->active[svc->n_active++] = a;
  if (op_sched_add(svc->sched, a->task, &e) < 0) {
    op_log_task(OP_LOG_ERROR, row->id, 0, "task %s cannot be scheduled: %s", row->id, e.message);
    svc->n_active--;
    op_task_destroy(a->task);
    free(a);
  }
  free(input);
}

static void load_tasks(op_service_t *svc) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_tasks_unfinished(svc->store, &rows, &n, &e) < 0) {
    log_store_error("listing unfinished tasks", &e);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (!is_active(svc, rows[i].id))
      schedule_row(svc, &rows[i]);
  free(rows);
}

static void apply_cancels(op_service_t *svc) {
  char ids[MAX_CANCELS][40];
  pthread_mutex_lock(&svc->lock);
  size_t n = svc->n_cancels;
  memcpy(ids, svc->cancels, n * sizeof ids[0]);
  svc->n_cancels = 0;
  pthread_mutex_unlock(&svc->lock);
  for (size_t k = 0; k < n; k++) {
    for (size_t i = 0; i < svc->n_active; i++) {
      if (strcmp(svc->active[i]->row.id, ids[k]) == 0) {
        op_sched_cancel(svc->sched, svc->active[i]->task); /* on_task_end records and frees it */
        break;
      }
    }
  }
}

static void expire_queued(op_service_t *svc) {
  double now = op_wall_time_s();
  for (size_t i = 0; i < svc->n_active; i++) {
    active_t *a = svc->active[i];
    if (strcmp(a->row.status, "queued") == 0 && svc->cfg.queue_timeout_s > 0 &&
        now - a->row.created_at > svc->cfg.queue_timeout_s) {
      op_error_t e;
      op_error_set(&e, OP_ETIMEOUT, "queue_timeout", "the task waited %u s in the queue without starting",
                   svc->cfg.queue_timeout_s);
      op_sched_fail(svc->sched, a->task, &e);
      i = (size_t)-1; /* the list changed */
    }
  }
}

static void apply_retention(op_service_t *svc) {
  op_task_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  if (op_store_tasks_finished_before(svc->store, op_wall_time_s() - svc->cfg.retention_s, &rows, &n, &e) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    char *dir = op_service_task_dir(svc, rows[i].id);
    if (dir != NULL)
      op_remove_tree(dir);
    free(dir);
    if (op_store_task_delete(svc->store, rows[i].id, &e) < 0)
      log_store_error("removing an old task", &e);
  }
  if (n > 0)
    op_log_info("retention: removed %zu finished tasks", n);
  free(rows);
}

/* At start: directories of tasks the store does not know, and fragments of
 * finished tasks whose cleanup a crash interrupted, are removed. */
static void clean_leftovers(op_service_t *svc) {
  DIR *d = opendir(svc->tasks_dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    op_task_row_t row;
    op_error_t e;
    char *dir = op_service_task_dir(svc, de->d_name);
    if (dir == NULL)
      continue;
    int rc = op_store_task_get(svc->store, de->d_name, &row, &e);
    if (rc == OP_ENOTFOUND) {
      op_log_info("removing the files of unknown task %s", de->d_name);
      op_remove_tree(dir);
    } else if (rc == 0 && !row.resource_cleanup_completed &&
               (strcmp(row.status, "succeeded") == 0 || strcmp(row.status, "failed") == 0 ||
                strcmp(row.status, "cancelled") == 0)) {
      remove_fragments(dir);
      row.resource_cleanup_completed = 1;
      op_store_task_update(svc->store, &row, &e);
    }
    free(dir);
  }
  closedir(d);
}

/* ---- memory, for GET /v1/memory ---- */

static void memory_snapshot(op_service_t *svc) {
  op_sched_mem_t m;
  /* One entry per worker slot, however many there are: a fixed array here
   * would leave the workers past it out of /v1/memory and the pool figures. */
  unsigned max = op_supervisor_size(svc->sup);
  op_sched_worker_mem_t *w = calloc(max, sizeof *w);
  if (w == NULL) {
    op_log_warn("memory: out of memory for a snapshot of %u workers; /v1/memory keeps the last one", max);
    return;
  }
  unsigned n = op_sched_memory(svc->sched, &m, w, max);
  if (n > max)
    n = max;
  json_t *workers = json_array();
  for (unsigned i = 0; i < n; i++) {
    if (w[i].pid == 0)
      continue;
    json_t *models = json_array();
    for (unsigned k = 0; k < w[i].n_models; k++)
      json_array_append_new(models, json_string(w[i].models[k]));
    char device[16];
    if (w[i].gpu >= 0)
      snprintf(device, sizeof device, "cuda:%u", (unsigned)w[i].gpu % OP_SCHED_MAX_GPUS);
    else
      snprintf(device, sizeof device, "cpu");
    json_t *wj =
        json_pack("{s:i, s:i, s:s, s:s, s:I, s:I, s:o, s:I}", "id", (int)i, "pid", (int)w[i].pid, "device", device,
                  "state", w[i].busy ? "busy" : "idle", "used_bytes", (json_int_t)w[i].used_bytes, "reserved_bytes",
                  (json_int_t)w[i].reserved_bytes, "models", models, "pages_done", (json_int_t)w[i].pages_done);
    if (w[i].gpu >= 0)
      json_object_set_new(wj, "vram_bytes", json_integer((json_int_t)w[i].vram_bytes));
    json_array_append_new(workers, wj);
  }
  json_t *cpu = json_pack(
      "{s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:i, s:i, s:b, s:i, s:i, s:i}", "name", "cpu", "capacity_bytes",
      (json_int_t)svc->capacity, "budget_bytes", (json_int_t)m.budget_bytes, "reserved_bytes",
      (json_int_t)m.reserved_bytes, "used_bytes", (json_int_t)m.used_bytes, "level", op_mem_level_name(m.level),
      "warning_bytes", (json_int_t)((double)m.budget_bytes * svc->warning_share), "critical_bytes",
      (json_int_t)((double)m.budget_bytes * svc->critical_share), "server_bytes", (json_int_t)m.server_bytes,
      "pages_waited", (int)m.waiting_pages, "pages_refused", (int)m.refused_pages, "refusing_submissions", m.refusing,
      "warnings", (int)m.warnings, "criticals", (int)m.criticals, "deferred_tasks", (int)m.deferred_tasks);
  json_t *devices = json_pack("[o]", cpu);
  for (unsigned g = 0; g < m.n_gpus; g++) {
    char name[16];
    snprintf(name, sizeof name, "cuda:%u", g);
    json_array_append_new(
        devices, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:i}", "name", name, "card",
                           m.gpus[g].name, "capacity_bytes", (json_int_t)m.gpus[g].capacity_bytes, "budget_bytes",
                           (json_int_t)m.gpus[g].budget_bytes, "reserved_bytes", (json_int_t)m.gpus[g].reserved_bytes,
                           "used_bytes", (json_int_t)m.gpus[g].used_bytes, "all_processes_bytes",
                           (json_int_t)m.gpus[g].all_used_bytes, "level", op_mem_level_name(m.gpus[g].level),
                           "warning_bytes", (json_int_t)((double)m.gpus[g].budget_bytes * svc->warning_share),
                           "critical_bytes", (json_int_t)((double)m.gpus[g].budget_bytes * svc->critical_share),
                           "fallbacks", (int)m.gpus[g].fallbacks));
  }
  json_t *ends = json_object();
  for (int r = 0; r < OP_SCHED_END_REASONS; r++)
    json_object_set_new(ends, op_sched_end_names[r], json_integer(m.worker_ends[r]));
  json_t *snap = json_pack("{s:o, s:o, s:o, s:i}", "devices", devices, "workers", workers, "workers_ended", ends,
                           "oom_events", (int)m.oom_events);
  json_t *models = json_pack("{s:o}", "models", op_sched_models_json(svc->sched));
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
  json_t *old = svc->memory, *old_models = svc->models;
  svc->memory = snap;
  svc->models = models;
  pthread_mutex_unlock(&svc->lock);
  json_decref(old);
  json_decref(old_models);
  free(w);
}

/* ---- memory reports ---- */

#define REPORTS_KEPT 20

static int report_name_ok(const char *name) {
  size_t n = strlen(name);
  if (strncmp(name, "memory-", 7) != 0 || n < 12 || n > 64 || strcmp(name + n - 5, ".json") != 0)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The reports' names, oldest first (a new array of n strings). */
static char **list_reports(const op_service_t *svc, size_t *n) {
  char dir[sizeof svc->data_dir + 16];
  snprintf(dir, sizeof dir, "%s/reports", svc->data_dir);
  *n = 0;
  DIR *d = opendir(dir);
  if (d == NULL)
    return NULL;
  char **names = NULL;
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!report_name_ok(de->d_name))
      continue;
    if (*n == cap) {
      char **grown = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof *names);
      if (grown == NULL)
        break;
      names = grown;
    }
    if ((names[*n] = strdup(de->d_name)) != NULL)
      (*n)++;
  }
  closedir(d);
  if (*n > 0)
    qsort(names, *n, sizeof *names, by_name);
  return names;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* Writes a report of everything memory admission knows to
 * DATA/reports/memory-TIME.json and keeps the last REPORTS_KEPT. */
static void write_report(op_service_t *svc, const char *reason) {
  char dir[sizeof svc->data_dir + 16];
  snprintf(dir, sizeof dir, "%s/reports", svc->data_dir);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    op_log_warn("cannot create %s: %s", dir, strerror(errno));
    return;
  }
  double now = op_wall_time_s();
  json_t *stamp = op_time_json(now);
  char name[64], path[sizeof dir + 72];
  const char *iso = json_string_value(stamp);
  snprintf(name, sizeof name, "memory-%.4s%.2s%.2sT%.2s%.2s%.2s%.4sZ.json", iso, iso + 5, iso + 8, iso + 11, iso + 14,
           iso + 17, iso + 19);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  pthread_mutex_lock(&svc->lock);
  json_t *memory = svc->memory ? json_deep_copy(svc->memory) : json_null();
  json_t *models = svc->models ? json_deep_copy(svc->models) : json_null();
  pthread_mutex_unlock(&svc->lock);
  json_t *report = json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "name", name, "created_at", stamp, "reason", reason,
                             "memory", memory, "models", models, "scheduler", op_sched_report_json(svc->sched));
  char *tmp = NULL;
  FILE *f = report ? op_atomic_create(path, &tmp) : NULL;
  int ok = f != NULL && json_dumpf(report, f, JSON_INDENT(1)) == 0;
  if (f != NULL && op_atomic_finish(f, tmp, path, ok) == 0 && ok)
    op_log_warn("memory report (%s) written: %s", reason, path);
  else
    op_log_warn("cannot write the memory report %s", path);
  json_decref(report);
  size_t n;
  char **names = list_reports(svc, &n);
  for (size_t i = 0; i + REPORTS_KEPT < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  free_names(names, n);
}

void op_service_report_request(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  svc->report_reason = "requested";
  pthread_mutex_unlock(&svc->lock);
  wake(svc);
}

json_t *op_service_reports_json(const op_service_t *svc) {
  size_t n;
  char **names = list_reports(svc, &n);
  json_t *list = json_array();
  for (size_t i = n; i-- > 0;) { /* newest first */
    char path[sizeof svc->data_dir + 96];
    snprintf(path, sizeof path, "%s/reports/%s", svc->data_dir, names[i]);
    struct stat st;
    if (stat(path, &st) == 0)
      json_array_append_new(list, json_pack("{s:s, s:o, s:I}", "name", names[i], "created_at",
                                            op_time_json((double)st.st_mtime), "bytes", (json_int_t)st.st_size));
  }
  free_names(names, n);
  return json_pack("{s:o}", "reports", list);
}

char *op_service_report_path(const op_service_t *svc, const char *name) {
  if (!report_name_ok(name))
    return NULL;
  size_t len = strlen(svc->data_dir) + strlen(name) + 16;
  char *path = malloc(len);
  if (path != NULL)
    snprintf(path, len, "%s/reports/%s", svc->data_dir, name);
  return path;
}

static void write_wanted_report(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  const char *reason = svc->report_reason;
  svc->report_reason = NULL;
  pthread_mutex_unlock(&svc->lock);
  if (reason != NULL)
    write_report(svc, reason);
}

op_metrics_t *op_service_metrics(op_service_t *svc) {
  return svc->metrics;
}

char *op_service_metrics_text(op_service_t *svc) {
  op_store_counts_t counts;
  op_store_t *st = NULL;
  op_error_t e;
  int have = 0;
  if (op_service_store_get(svc, &st, &e) == 0) {
    have = op_store_count_tasks(st, &counts, &e) == 0;
    op_service_store_put(svc, st);
  }
  if (!have)
    op_log_warn("metrics: cannot count tasks: %s", e.message);
  pthread_mutex_lock(&svc->lock);
  json_t *memory = svc->memory ? json_deep_copy(svc->memory) : NULL;
  json_t *models = svc->models ? json_deep_copy(svc->models) : NULL;
  pthread_mutex_unlock(&svc->lock);
  char *text = op_metrics_render(svc->metrics, have ? &counts : NULL, memory, models);
  json_decref(memory);
  json_decref(models);
  return text;
}

json_t *op_service_tasks_summary(op_service_t *svc) {
  op_store_counts_t counts;
  op_store_t *st = NULL;
  op_error_t e;
  int rc = op_service_store_get(svc, &st, &e);
  if (rc == 0) {
    rc = op_store_count_tasks(st, &counts, &e);
    op_service_store_put(svc, st);
  }
  if (rc < 0)
    return NULL;
  int by[OP_STORE_STATUSES] = {0};
  for (int i = 0; i < OP_STORE_STATUSES; i++)
    for (int p = 0; p < 10; p++)
      by[i] += counts.counts[i][p];
  json_t *memory = json_object(), *queued = json_object();
  for (int p = 9; p >= 0; p--) {
    char key[4];
    snprintf(key, sizeof key, "%d", p);
    if (counts.counts[0][p] > 0)
      json_object_set_new(queued, key, json_integer(counts.counts[0][p]));
  }
  unsigned workers = 0, busy = 0;
  pthread_mutex_lock(&svc->lock);
  size_t i;
  json_t *d, *w;
  json_array_foreach(json_object_get(svc->memory, "devices"), i, d) {
    json_object_set_new(memory, json_string_value(json_object_get(d, "name")),
                        json_pack("{s:O, s:O, s:O}", "used_bytes", json_object_get(d, "used_bytes"), "budget_bytes",
                                  json_object_get(d, "budget_bytes"), "level", json_object_get(d, "level")));
  }
  json_array_foreach(json_object_get(svc->memory, "workers"), i, w) {
    workers++;
    busy += json_is_string(json_object_get(w, "state")) &&
            strcmp(json_string_value(json_object_get(w, "state")), "busy") == 0;
  }
  pthread_mutex_unlock(&svc->lock);
  unsigned slots = svc->cfg.workers ? svc->cfg.workers : op_usable_cores();
  return json_pack("{s:i, s:i, s:o, s:{s:i, s:i, s:i, s:i, s:i}, s:o, s:{s:i, s:i, s:i, s:f}, s:f}", "active_tasks",
                   by[1], "queued_tasks", by[0], "queued_by_priority", queued, "finished_tasks", "succeeded", by[2],
                   "failed", by[3], "cancelled", by[4], "running", by[1], "queued", by[0], "memory", memory, "pool",
                   "workers_allowed", (int)slots, "workers", (int)workers, "busy", (int)busy, "utilisation",
                   slots ? (double)busy / slots : 0.0, "average_wait_seconds", op_metrics_average_wait(svc->metrics));
}

json_t *op_service_models_json(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *copy = svc->models ? json_deep_copy(svc->models) : NULL;
  pthread_mutex_unlock(&svc->lock);
  return copy;
}

int op_service_model_request(op_service_t *svc, const char *name, int load) {
  const op_model_policy_t *pol = op_service_model(svc, name);
  if (pol == NULL)
    return OP_ENOTFOUND;
  pthread_mutex_lock(&svc->lock);
  int rc = 0;
  if (svc->n_model_requests < sizeof svc->model_requests / sizeof svc->model_requests[0]) {
    svc->model_requests[svc->n_model_requests].model = pol;
    svc->model_requests[svc->n_model_requests++].load = load;
  } else {
    rc = OP_ELIMIT;
  }
  pthread_mutex_unlock(&svc->lock);
  wake(svc);
  return rc;
}

static void apply_model_requests(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  for (unsigned i = 0; i < svc->n_model_requests; i++) {
    op_log_info("model %s: %s requested", svc->model_requests[i].model->name,
                svc->model_requests[i].load ? "load" : "unload");
    op_sched_model_request(svc->sched, svc->model_requests[i].model, svc->model_requests[i].load);
  }
  svc->n_model_requests = 0;
  pthread_mutex_unlock(&svc->lock);
}

json_t *op_service_memory_history(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *copy = svc->history ? json_deep_copy(svc->history) : json_array();
  pthread_mutex_unlock(&svc->lock);
  return copy;
}

json_t *op_service_memory_json(op_service_t *svc) {
  pthread_mutex_lock(&svc->lock);
  json_t *copy = svc->memory ? json_deep_copy(svc->memory) : NULL;
  pthread_mutex_unlock(&svc->lock);
  return copy;
}

/* ---- configuration ---- */

const op_model_policy_t *op_service_model(const op_service_t *svc, const char *name) {
  return op_model_policy_named(svc->policies, svc->n_policies, name);
}

/* A share of the budget: "80%" or "0.8", above 0 and at most 1. */
static int config_share(const op_config_t *cfg, json_t *obj, const char *key, double *out, op_error_t *err) {
  const char *text = NULL;
  int rc = op_config_string(cfg, obj, key, &text, err);
  if (rc < 0 || text == NULL)
    return rc;
  char *end;
  double v = strtod(text, &end);
  if (*end == '%' && end[1] == '\0')
    v /= 100, end++;
  if (end == text || *end != '\0' || !(v > 0 && v <= 1))
    return op_config_error(cfg, json_object_get(obj, key), err,
                           "\"%s\": expected a share of the budget such as 80%% or 0.8, not \"%s\"", key, text);
  *out = v;
  return 0;
}

/* pressure: the monitor's cooldown and the priority below which tasks wait. */
static int load_pressure(op_service_t *svc, const op_config_t *cfg, json_t *root, op_error_t *err) {
  static const char *const keys[] = {"cooldown", "defer_below", NULL};
  json_t *p = json_object_get(root, "pressure");
  if (p == NULL || json_is_null(p))
    return 0;
  int rc = op_config_keys(cfg, p, keys, "pressure", err);
  rc = rc ? rc : op_config_duration(cfg, p, "cooldown", &svc->cooldown_s, err);
  rc = rc ? rc : op_config_uint(cfg, p, "defer_below", 10, &svc->defer_below, err);
  return rc;
}

const char *const op_service_config_keys[] = {"server.listen",
                                              "server.data_dir",
                                              "server.workers",
                                              "server.tokens",
                                              "server.max_queue",
                                              "server.queue_timeout",
                                              "server.page_timeout",
                                              "server.retention_days",
                                              "server.max_input_size",
                                              "server.drain_timeout",
                                              "log.level",
                                              "log.format",
                                              "devices.cpu.budget",
                                              "devices.cpu.warning",
                                              "devices.cpu.critical",
                                              "devices.cuda.budget",
                                              "pressure.cooldown",
                                              "pressure.defer_below",
                                              NULL};

int op_service_config_load(const char *path, op_config_t **cfg, op_error_t *err) {
  *cfg = NULL;
  int rc = path != NULL ? op_config_load(path, cfg, err) : 0;
  if (rc == 0)
    rc = op_config_env(cfg, op_service_config_keys, err);
  if (rc < 0) {
    op_config_free(*cfg);
    *cfg = NULL;
  }
  return rc;
}

/* Reads the YAML file and the environment: models, pressure, log, and the
 * cpu budget when the caller has none (server.* is the command's). */
static int load_config(op_service_t *svc, const char *path, const char **budget, op_error_t *err) {
  static const char *const sections[] = {"server", "devices", "models", "pressure", "log", NULL};
  static const char *const log_keys[] = {"level", "format", NULL};
  static const char *const devices[] = {"cpu", "cuda", NULL};
  static const char *const cuda_keys[] = {"budget", NULL};
  static const char *const cpu_keys[] = {"budget", "warning", "critical", NULL};
  op_config_t *cfg = NULL;
  int rc = op_service_config_load(path, &cfg, err);
  if (rc < 0)
    return rc;
  json_t *root = op_config_root(cfg);
  if (root != NULL && (rc = op_config_keys(cfg, root, sections, "the configuration", err)) == 0) {
    json_t *dev = json_object_get(root, "devices");
    if (dev != NULL && !json_is_null(dev) && (rc = op_config_keys(cfg, dev, devices, "devices", err)) == 0) {
      json_t *cpu = json_object_get(dev, "cpu");
      const char *b = NULL;
      if (cpu != NULL && !json_is_null(cpu) && (rc = op_config_keys(cfg, cpu, cpu_keys, "devices.cpu", err)) == 0) {
        rc = op_config_string(cfg, cpu, "budget", &b, err);
        rc = rc ? rc : config_share(cfg, cpu, "warning", &svc->warning_share, err);
        rc = rc ? rc : config_share(cfg, cpu, "critical", &svc->critical_share, err);
        if (rc == 0 && svc->warning_share >= svc->critical_share)
          rc = op_config_error(cfg, cpu, err, "devices.cpu: warning must be below critical");
      }
      uint64_t check;
      if (rc == 0 && b != NULL && op_mem_budget_parse(b, svc->capacity, &check, err) < 0)
        rc = op_config_error(cfg, json_object_get(cpu, "budget"), err, "devices.cpu.budget: %s", err->message);
      if (rc == 0 && b != NULL && budget != NULL) {
        snprintf(svc->budget_text, sizeof svc->budget_text, "%s", b);
        *budget = svc->budget_text;
      }
      json_t *cuda = json_object_get(dev, "cuda");
      const char *gb = NULL;
      if (rc == 0 && cuda != NULL && !json_is_null(cuda) &&
          (rc = op_config_keys(cfg, cuda, cuda_keys, "devices.cuda", err)) == 0)
        rc = op_config_string(cfg, cuda, "budget", &gb, err);
      if (rc == 0 && gb != NULL && op_mem_budget_parse(gb, UINT64_C(1) << 50, &check, err) < 0)
        rc = op_config_error(cfg, json_object_get(cuda, "budget"), err, "devices.cuda.budget: %s", err->message);
      if (rc == 0 && gb != NULL)
        snprintf(svc->gpu_budget_text, sizeof svc->gpu_budget_text, "%s", gb);
    }
  }
  if (rc == 0 && root != NULL)
    rc = load_pressure(svc, cfg, root, err);
  json_t *log = root ? json_object_get(root, "log") : NULL;
  if (rc == 0 && log != NULL && !json_is_null(log) && (rc = op_config_keys(cfg, log, log_keys, "log", err)) == 0) {
    const char *level = NULL;
    rc = op_config_string(cfg, log, "level", &level, err);
    if (rc == 0 && level != NULL && op_log_level_parse(level) < 0)
      rc = op_config_error(cfg, json_object_get(log, "level"), err,
                           "\"level\": debug, info, warn, error or off, not \"%s\"", level);
    if (rc == 0 && level != NULL)
      snprintf(svc->log_level_text, sizeof svc->log_level_text, "%s", level);
  }
  if (rc == 0)
    rc = op_model_policies_load(cfg, svc->capacity, &svc->policies, &svc->n_policies, err);
  op_config_free(cfg);
  if (rc == 0 && path != NULL)
    op_log_info("configuration %s: %u models", path, svc->n_policies);
  return rc;
}

/* The CPU's capacity, the pressure defaults, then the configuration file and
 * the budget (--memory-budget over the file's devices.cpu.budget over 80 %). */
static int read_settings(op_service_t *svc, const op_service_config_t *cfg, op_error_t *err) {
  svc->capacity = op_mem_cpu_capacity();
  op_sched_config_t defaults;
  op_sched_config_init(&defaults);
  svc->warning_share = defaults.warning_share;
  svc->critical_share = defaults.critical_share;
  svc->cooldown_s = defaults.cooldown_s;
  svc->defer_below = (unsigned)defaults.defer_below;
  const char *budget = cfg->memory_budget;
  int rc = load_config(svc, cfg->config_file, budget ? NULL : &budget, err);
  if (rc == 0)
    rc = op_mem_budget_parse(budget ? budget : "80%", svc->capacity, &svc->budget, err);
  return rc;
}

int op_service_check_config(const op_service_config_t *cfg, unsigned *n_models, op_error_t *err) {
  op_service_t *svc = calloc(1, sizeof *svc);
  if (svc == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  int rc = read_settings(svc, cfg, err);
  *n_models = svc->n_policies;
  free(svc->policies);
  free(svc);
  return rc;
}

/* GPUs through NVML: none is the normal CPU-only case, said once. */
static int open_gpus(op_service_t *svc, op_error_t *err) {
  op_error_t e;
  if (op_nvml_open(&svc->nvml, &e) < 0) {
    op_log_info("GPUs: none (%s); the cpu device only", e.message);
    svc->nvml = NULL;
    return 0;
  }
  svc->n_gpus = op_nvml_count(svc->nvml);
  if (svc->n_gpus > OP_SCHED_MAX_GPUS)
    svc->n_gpus = OP_SCHED_MAX_GPUS;
  for (unsigned g = 0; g < svc->n_gpus; g++) {
    op_gpu_info_t info;
    if (op_nvml_info(svc->nvml, g, &info, &e) < 0) {
      op_log_warn("GPU cuda:%u: %s; it gets no work", g, e.message);
      continue;
    }
    const char *text = svc->gpu_budget_text[0] ? svc->gpu_budget_text : "80%";
    if (op_mem_budget_parse(text, info.total_bytes, &svc->gpu_budget[g], err) < 0)
      return op_error_set(err, OP_EUSAGE, "bad_options", "devices.cuda.budget on cuda:%u (%s): %s", g, info.name,
                          err->message);
    char cap[32], bud[32];
    op_mem_format(info.total_bytes, cap, sizeof cap);
    op_mem_format(svc->gpu_budget[g], bud, sizeof bud);
    op_log_info("memory: cuda:%u %s, capacity %s, budget %s", g, info.name, cap, bud);
  }
  return 0;
}

/* ---- life cycle ---- */

int op_service_create(const op_service_config_t *cfg, op_service_t **out, op_error_t *err) {
  *out = NULL;
  op_service_t *svc = calloc(1, sizeof *svc);
  if (svc == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  svc->cfg = *cfg;
  svc->wake[0] = svc->wake[1] = -1;
  if ((svc->metrics = op_metrics_create()) == NULL) {
    free(svc);
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  }
  pthread_mutex_init(&svc->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&svc->finished, &ca);
  pthread_condattr_destroy(&ca);
  snprintf(svc->data_dir, sizeof svc->data_dir, "%s", cfg->data_dir);
  snprintf(svc->tasks_dir, sizeof svc->tasks_dir, "%s/tasks", svc->data_dir);
  int rc;
  if ((mkdir(svc->data_dir, 0700) < 0 && errno != EEXIST) || (mkdir(svc->tasks_dir, 0700) < 0 && errno != EEXIST)) {
    rc = op_error_set(err, OP_EIO, "internal", "cannot create the data directory %s: %s", svc->data_dir,
                      strerror(errno));
    goto fail;
  }
  if ((rc = op_store_open(svc->data_dir, &svc->store, err)) < 0)
    goto fail;
  if (pipe2(svc->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
    rc = op_error_set(err, OP_EINTERNAL, NULL, "pipe: %s", strerror(errno));
    goto fail;
  }
  clean_leftovers(svc);
  if ((rc = read_settings(svc, cfg, err)) < 0)
    goto fail;
  char cap[32], bud[32];
  op_mem_format(svc->capacity, cap, sizeof cap);
  op_mem_format(svc->budget, bud, sizeof bud);
  op_log_info("memory: cpu capacity %s (%s), budget %s", cap, op_mem_cgroup_limit() ? "cgroup limit" : "MemTotal", bud);
  if ((rc = open_gpus(svc, err)) < 0)
    goto fail;
  op_supervisor_config_t scfg;
  op_supervisor_config_init(&scfg);
  scfg.workers = cfg->workers ? cfg->workers : op_usable_cores();
  scfg.log_level = cfg->log_level;
  if (cfg->log_level == NULL && svc->log_level_text[0]) { /* no flag, no environment: the file's */
    op_log_set_level((op_log_level_t)op_log_level_parse(svc->log_level_text));
    scfg.log_level = svc->log_level_text;
  }
  scfg.lazy = 1; /* admission starts workers as memory allows */
  if ((rc = op_supervisor_create(&scfg, &svc->sup, err)) < 0)
    goto fail;
  op_supervisor_set_wake_fd(svc->sup, svc->wake[0]);
  op_sched_config_t qcfg;
  op_sched_config_init(&qcfg);
  qcfg.scratch_root = svc->tasks_dir;
  qcfg.page_timeout_ms = cfg->page_timeout_s * 1000u;
  if (cfg->max_attempts > 0)
    qcfg.max_attempts = cfg->max_attempts;
  qcfg.on_page_start = on_page_start;
  qcfg.on_retry = on_retry;
  qcfg.on_page = on_page_end;
  qcfg.on_task = on_task_end;
  qcfg.on_memory_wait = on_memory_wait;
  qcfg.on_pressure = on_pressure;
  qcfg.warning_share = svc->warning_share;
  qcfg.critical_share = svc->critical_share;
  qcfg.cooldown_s = svc->cooldown_s;
  qcfg.defer_below = (int)svc->defer_below;
  qcfg.nvml = svc->nvml;
  qcfg.n_gpus = svc->n_gpus;
  memcpy(qcfg.gpu_budget, svc->gpu_budget, sizeof qcfg.gpu_budget);
  qcfg.cb_ctx = svc;
  qcfg.budget_bytes = svc->budget;
  qcfg.policies = svc->policies;
  qcfg.n_policies = svc->n_policies;
  svc->sched = op_sched_create(&qcfg, svc->sup);
  if (svc->sched == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    goto fail;
  }
  op_supervisor_start_worker(svc->sup); /* ready once one runs (a fresh worker retires when idle and unused) */
  for (unsigned i = 0; i < svc->n_policies; i++)
    if (svc->policies[i].preload) /* warmed up as memory allows; a failure is logged, never fatal */
      op_sched_model_request(svc->sched, &svc->policies[i], 1);
  memory_snapshot(svc);
  load_tasks(svc); /* what the previous run left, first */
  if (svc->n_active > 0)
    op_log_info("recovered %zu unfinished tasks", svc->n_active);
  *out = svc;
  return 0;
fail:
  op_service_destroy(svc);
  return rc;
}

/* systemd's watchdog, pinged from the scheduler's own loop (at half its
 * interval): a loop that stops turning gets the service restarted. */
static void watchdog(void) {
  static double every = -1, last;
  if (every < 0)
    every = (double)op_notify_watchdog_usec() / 2e6;
  if (every > 0 && op_wall_time_s() - last >= every) {
    op_notify("WATCHDOG=1");
    last = op_wall_time_s();
  }
}

void op_service_watch_reload(op_service_t *svc, volatile sig_atomic_t *flag) {
  svc->reload = flag;
}

/* Says in the log what a reload changes in one value. */
static void changed(const char *what, const char *before, const char *after) {
  if (strcmp(before, after) != 0)
    op_log_info("reload: %s: %s -> %s", what, before, after);
}

static void changed_num(const char *what, double before, double after) {
  char a[32], b[32];
  snprintf(a, sizeof a, "%g", before);
  snprintf(b, sizeof b, "%g", after);
  changed(what, a, b);
}

/*
 * SIGHUP: reads the configuration file again and applies what is safe while
 * tasks run: the log level, the budget, the pressure settings and each
 * model's tunables. A new, removed or redefined model (engine, languages,
 * device) needs a restart, and the log says so; a file with an error changes
 * nothing.
 */
static void reload(op_service_t *svc) {
  if (svc->cfg.config_file == NULL) {
    op_log_info("reload: no --config file: nothing to read again");
    return;
  }
  op_service_t *fresh = calloc(1, sizeof *fresh);
  if (fresh == NULL)
    return;
  fresh->capacity = svc->capacity;
  fresh->warning_share = svc->warning_share;
  fresh->critical_share = svc->critical_share;
  fresh->cooldown_s = svc->cooldown_s;
  fresh->defer_below = svc->defer_below;
  op_error_t e;
  const char *budget = NULL;
  uint64_t budget_bytes = svc->budget;
  if (load_config(fresh, svc->cfg.config_file, svc->cfg.memory_budget ? NULL : &budget, &e) < 0 ||
      (budget != NULL && op_mem_budget_parse(budget, svc->capacity, &budget_bytes, &e) < 0)) {
    op_log_error("reload: %s; the configuration in use stays", e.message);
    free(fresh->policies);
    free(fresh);
    return;
  }
  op_log_info("reload: read %s", svc->cfg.config_file);
  if (fresh->log_level_text[0] && svc->cfg.log_level == NULL) {
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    changed("log.level", names[op_log_level()], fresh->log_level_text);
    op_log_set_level((op_log_level_t)op_log_level_parse(fresh->log_level_text));
  }
  if (budget_bytes != svc->budget) {
    char a[32], b[32];
    op_mem_format(svc->budget, a, sizeof a);
    op_mem_format(budget_bytes, b, sizeof b);
    changed("devices.cpu.budget", a, b);
    svc->budget = budget_bytes;
  }
  changed_num("devices.cpu.warning", svc->warning_share, fresh->warning_share);
  changed_num("devices.cpu.critical", svc->critical_share, fresh->critical_share);
  changed_num("pressure.cooldown", svc->cooldown_s, fresh->cooldown_s);
  changed_num("pressure.defer_below", svc->defer_below, fresh->defer_below);
  svc->warning_share = fresh->warning_share;
  svc->critical_share = fresh->critical_share;
  svc->cooldown_s = fresh->cooldown_s;
  svc->defer_below = fresh->defer_below;
  op_sched_set_limits(svc->sched, svc->budget, svc->warning_share, svc->critical_share, svc->cooldown_s,
                      (int)svc->defer_below);
  /* Models: the same list (by name, engine, languages, device) is updated in
   * place, as running tasks point at it; any other change waits for a restart. */
  int same = fresh->n_policies == svc->n_policies;
  for (unsigned i = 0; same && i < svc->n_policies; i++) {
    const op_model_policy_t *a = &svc->policies[i], *b = &fresh->policies[i];
    same = strcmp(a->name, b->name) == 0 && strcmp(a->engine, b->engine) == 0 && strcmp(a->lang, b->lang) == 0 &&
           strcmp(a->device, b->device) == 0 && (b->fallback[0] == 0 || op_service_model(svc, b->fallback) != NULL);
  }
  if (!same) {
    op_log_warn("reload: the models were added, removed or redefined (name, engine, languages, device): that needs "
                "a restart; their other settings are not changed either");
  } else {
    for (unsigned i = 0; i < svc->n_policies; i++) {
      op_model_policy_t *a = &svc->policies[i];
      const op_model_policy_t *b = &fresh->policies[i];
      char what[160];
#define TUNE(field, label)                                                                                             \
  snprintf(what, sizeof what, "model %s: %s", a->name, label);                                                         \
  changed_num(what, (double)a->field, (double)b->field);                                                               \
  a->field = b->field
      TUNE(keep_alive_s, "keep_alive");
      TUNE(preload, "preload");
      TUNE(max_concurrent, "max_concurrent");
      TUNE(memory_limit, "memory_limit");
      TUNE(batch, "batch");
      TUNE(max_tasks, "recycle.max_tasks");
      TUNE(max_memory_growth, "recycle.max_memory_growth");
      TUNE(idle_exit_s, "recycle.idle_exit");
      TUNE(isolate_per_task, "recycle.isolate per_task");
#undef TUNE
      snprintf(what, sizeof what, "model %s: fallback", a->name);
      changed(what, a->fallback, b->fallback);
      snprintf(a->fallback, sizeof a->fallback, "%s", b->fallback);
    }
  }
  op_log_info("reload: done (--listen, --workers, --data-dir, --tokens, log format and GPUs need a restart)");
  free(fresh->policies);
  free(fresh);
}

int op_service_run(op_service_t *svc, volatile sig_atomic_t *stop, op_error_t *err) {
  double last_scan = 0;
  while (!*stop) {
    watchdog();
    char buf[64];
    int woken = 0;
    while (read(svc->wake[0], buf, sizeof buf) > 0)
      woken = 1;
    if (svc->reload != NULL && *svc->reload) {
      *svc->reload = 0;
      reload(svc);
    }
    double now = op_wall_time_s();
    if (woken || now - last_scan > 1.0) {
      apply_cancels(svc);
      apply_model_requests(svc);
      load_tasks(svc);
      expire_queued(svc);
      last_scan = now;
    }
    /* Once a minute is plenty for days of retention; a zero retention (tests, or
     * "keep nothing") is applied every second. */
    if (now - svc->last_retention > (svc->cfg.retention_s == 0 ? 1 : 60)) {
      apply_retention(svc);
      svc->last_retention = now;
    }
    if (now - svc->last_memory >= 0.2) {
      memory_snapshot(svc);
      if (!svc->ready && op_supervisor_started(svc->sup) > 0) {
        svc->ready = 1;
        op_log_info("ready: a worker started");
      }
      write_wanted_report(svc); /* after the snapshot: the report holds the latest figures */
      svc->last_memory = now;
    }
    int rc = op_sched_step(svc->sched, 200, err);
    if (rc < 0)
      return rc;
  }
  svc->draining = 1;
  op_notify("STOPPING=1\nSTATUS=draining");
  op_sched_pause(svc->sched, 1);
  double deadline = op_wall_time_s() + svc->cfg.drain_timeout_s;
  size_t running = op_sched_running(svc->sched);
  if (running > 0)
    op_log_info("draining: waiting up to %u s for %zu running pages", svc->cfg.drain_timeout_s, running);
  while (op_sched_running(svc->sched) > 0 && op_wall_time_s() < deadline && *stop < 2) {
    watchdog();
    int rc = op_sched_step(svc->sched, 200, err);
    if (rc < 0)
      return rc;
  }
  return 0;
}

void op_service_destroy(op_service_t *svc) {
  if (svc == NULL)
    return;
  svc->draining = 1;
  /* Tasks still running stay "running" in the store: the next start resumes them. */
  op_sched_destroy(svc->sched);
  op_supervisor_destroy(svc->sup);
  for (size_t i = 0; i < svc->n_active; i++) {
    op_task_destroy(svc->active[i]->task);
    free(svc->active[i]);
  }
  free(svc->active);
  json_decref(svc->memory);
  json_decref(svc->models);
  json_decref(svc->history);
  op_nvml_close(svc->nvml);
  op_metrics_destroy(svc->metrics);
  free(svc->policies);
  for (size_t i = 0; i < svc->pool_n; i++)
    op_store_close(svc->pool[i]);
  op_store_close(svc->store);
  if (svc->wake[0] >= 0)
    close(svc->wake[0]);
  if (svc->wake[1] >= 0)
    close(svc->wake[1]);
  pthread_cond_destroy(&svc->finished);
  pthread_mutex_destroy(&svc->lock);
  free(svc);
}
