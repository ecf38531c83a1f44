/*
 * sched.c: the scheduler: which job runs next, and what a job's end means.
 *
 * Jobs are chosen by task priority (aged: a task gains a level for every
 * aging_s it waits, so low priorities cannot starve), then task age, then page
 * order; a retried page waits out an exponential backoff. The
 * supervisor reports each dispatched job exactly once, as a reply or a loss;
 * a job context is either a page (op_page_job_t *) or, for a task's probe and
 * merge stages, the task pointer with its low bit set.
 */
#include "core/sched.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem/estimate.h"
#include "mem/mem.h"
#include "util/fs.h"
#include "util/log.h"

enum { STAGE_PROBE = 0, STAGE_PAGES, STAGE_MERGE, STAGE_DONE };

#define MB (UINT64_C(1) << 20)
#define PROBE_ESTIMATE (16 * MB) /* a probe reads headers only */
#define MERGE_ESTIMATE (64 * MB) /* grafting page PDFs, their images stay compressed */
#define SAMPLE_EVERY_S 0.2
#define HISTORY 1500       /* samples: five minutes at SAMPLE_EVERY_S */
#define REPORT_SAMPLES 300 /* a memory report holds the last minute */

/* What admission knows of one worker slot. */
typedef struct wmem_s {
  pid_t pid; /* the process these figures are about; a new one starts afresh */
  uint64_t pss;
  uint64_t job_reserve; /* busy: what its job was admitted with, on top of the worker */
  char models[4][96];   /* most recent first, as the worker's own cache of 4 */
  double model_used[4]; /* when each last ran a page */
  unsigned n_models;
  char control_key[96]; /* the model its load or unload job is about */
  int control_load;     /* that job loads (else unloads) */
  int control_reason;   /* an unload's reason: UNLOAD_... */
  int learned_base;     /* its size before any model has been learned */
  double last_used_s;
  /* recycling */
  const op_model_policy_t *policy; /* of its last job's task */
  uint64_t first_rss;              /* resident size after its first page */
  uint64_t last_rss;               /* after its last page */
  unsigned tasks_run;
  uint64_t last_task_id;
  uint64_t bound_task; /* isolate: per_task: the only task it serves; 0 = none */
  int retire;          /* retire it once idle (why: retire_why) */
  const char *retire_why;
  int killed_for_memory; /* the monitor killed it past its cap */
  int gpu;               /* 1 + the GPU it runs pages on; 0 = none */
  uint64_t vram;         /* its VRAM there (NVML) */
} wmem_t;

/* A page's VRAM beyond its model, and a model's before one is declared with
 * a memory_limit: priors, as no built-in engine reports VRAM of its own. */
/* A model that failed to load is not tried again for this long: its pages fail at once. */
#define MODEL_RETRY_S 30.0
#define GPU_PAGE_PRIOR (UINT64_C(64) << 20)
#define GPU_MODEL_PRIOR (UINT64_C(1) << 30)

#define MAX_MODEL_STATS 64

/* What the model manager has seen of one model (engine:languages). */
typedef struct mstat_s {
  char key[96];
  unsigned loads;
  unsigned unloads[5]; /* by reason: UNLOAD_... */
  double last_use_s;
  int load_wanted;   /* preload or an admin's load: once a worker holds it, done */
  double failed_s;   /* when it last failed to load: not tried again for MODEL_RETRY_S */
  char failure[256]; /* ... and why */
  int unload_wanted; /* an admin's unload: from every idle worker */
} mstat_t;

enum { UNLOAD_KEEP_ALIVE, UNLOAD_BUDGET, UNLOAD_RECYCLE, UNLOAD_CRASH, UNLOAD_ADMIN };
const char *const op_sched_end_names[OP_SCHED_END_REASONS] = {"crash", "timeout", "out_of_memory", "recycle", "room"};
static const char *const unload_names[] = {"keep_alive", "budget", "recycle", "crash", "admin"};

struct op_sched_s {
  op_sched_config_t cfg;
  op_supervisor_t *sup;
  op_task_t **tasks;
  size_t n_tasks, cap_tasks;
  uint64_t next_task_id;
  int paused;
  op_estimates_t *estimates;
  wmem_t *wmem;
  unsigned n_wmem;
  uint64_t server_pss;
  double last_sample_s;
  unsigned waiting_pages, refused_pages;
  op_model_policy_t default_policy;
  unsigned recycled; /* workers retired by their policy */
  int control;       /* the job context of load and unload jobs: its address */
  mstat_t mstats[MAX_MODEL_STATS];
  unsigned n_mstats;
  /* pressure */
  op_mem_level_t level;
  double level_since, last_action_s;
  int refusing;
  unsigned warnings, criticals, deferred_tasks;
  unsigned worker_ends[OP_SCHED_END_REASONS], oom_events;
  struct {
    double t;
    uint64_t used, reserved;
  } ring[HISTORY]; /* the last five minutes of samples */
  unsigned ring_next, ring_n;
  struct {
    op_gpu_info_t info; /* the last reading */
    uint64_t ours;      /* VRAM of the server and its workers */
    op_mem_level_t level;
    unsigned fallbacks;
    double last_action_s;
  } gpu[OP_SCHED_MAX_GPUS];
};

void op_task_opts_init(op_task_opts_t *opts) {
  memset(opts, 0, sizeof *opts);
  op_model_spec_init(&opts->model);
  opts->formats = OP_FMT_TXT;
  opts->psm = 3;
  op_doc_limits_init(&opts->limits);
  opts->priority = 5;
}

const char *op_task_status_name(op_task_status_t status) {
  static const char *const names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
  return (unsigned)status < 5 ? names[status] : "unknown";
}

op_task_t *op_task_create(const char *path, const char *title, op_doc_type_t type, const op_task_opts_t *opts) {
  op_task_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->input_path = strdup(path);
  t->title = strdup(title ? title : path);
  t->type = type;
  t->opts = *opts;
  t->opts.pages = opts->pages ? strdup(opts->pages) : NULL;
  if (t->input_path == NULL || t->title == NULL || (opts->pages && t->opts.pages == NULL)) {
    op_task_destroy(t);
    return NULL;
  }
  return t;
}

void op_task_destroy(op_task_t *t) {
  if (t == NULL)
    return;
  if (t->scratch_dir != NULL && !t->keep_scratch)
    op_remove_tree(t->scratch_dir);
  free(t->scratch_dir);
  free(t->input_path);
  free(t->title);
  free((char *)t->opts.pages);
  free(t->pages);
  free(t);
}

static char *scratch_path(const op_task_t *t, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", t->scratch_dir, name) < 0)
    return NULL;
  return p;
}

char *op_task_result_path(const op_task_t *t, op_format_t fmt) {
  char name[32];
  snprintf(name, sizeof name, "result.%s", op_format_ext(fmt));
  return scratch_path(t, name);
}

/* The fragment prefix of page i: the worker appends ".<ext>". */
static char *page_prefix(const op_task_t *t, uint32_t index) {
  char name[32];
  snprintf(name, sizeof name, "p%06u", index + 1);
  return scratch_path(t, name);
}

void op_sched_config_init(op_sched_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->scratch_root = "/tmp";
  cfg->page_timeout_ms = 300000;
  cfg->max_attempts = 3;
  cfg->max_crash_attempts = 3;
  cfg->retry_backoff_s = 0.5;
  cfg->aging_s = 60;
  cfg->warning_share = 0.8;
  cfg->critical_share = 0.95;
  cfg->defer_below = 5;
  cfg->cooldown_s = 5;
}

op_sched_t *op_sched_create(const op_sched_config_t *cfg, op_supervisor_t *sup) {
  op_sched_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->cfg = *cfg;
  s->sup = sup;
  op_model_policy_init(&s->default_policy);
  s->estimates = op_estimates_create(0);
  s->n_wmem = op_supervisor_size(sup);
  s->wmem = calloc(s->n_wmem ? s->n_wmem : 1, sizeof *s->wmem);
  if (s->estimates == NULL || s->wmem == NULL) {
    op_sched_destroy(s);
    return NULL;
  }
  return s;
}

void op_sched_destroy(op_sched_t *s) {
  if (s == NULL)
    return;
  op_estimates_destroy(s->estimates);
  free(s->wmem);
  free(s->tasks);
  free(s);
}

size_t op_sched_active(const op_sched_t *s) {
  return s->n_tasks;
}

int op_sched_add(op_sched_t *s, op_task_t *t, op_error_t *err) {
  if (s->n_tasks == s->cap_tasks) {
    size_t cap = s->cap_tasks ? s->cap_tasks * 2 : 16;
    op_task_t **nt = realloc(s->tasks, cap * sizeof *nt);
    if (nt == NULL)
      return op_error_set(err, OP_ENOMEM, NULL, "out of memory queueing a task");
    s->tasks = nt;
    s->cap_tasks = cap;
  }
  /* Its model's policy: preset by the caller, or named, or the first declared
   * for its engine and languages, or the defaults. */
  const op_model_policy_t *pol = t->policy;
  if (pol == NULL && t->opts.model_name != NULL) {
    pol = op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->opts.model_name);
    if (pol == NULL)
      return op_error_set(err, OP_EUSAGE, "bad_options", "no model named \"%s\" is declared", t->opts.model_name);
  }
  if (pol == NULL)
    pol = op_model_policy_find(s->cfg.policies, s->cfg.n_policies, t->opts.model.engine, t->opts.model.lang);
  if (pol != NULL) {
    snprintf(t->opts.model.engine, sizeof t->opts.model.engine, "%s", pol->engine);
    snprintf(t->opts.model.lang, sizeof t->opts.model.lang, "%s", pol->lang);
  }
  t->policy = pol != NULL ? pol : &s->default_policy;
  t->id = ++s->next_task_id;
  if (t->log_id[0] == '\0')
    snprintf(t->log_id, sizeof t->log_id, "%llu", (unsigned long long)t->id);
  if (t->scratch_dir == NULL &&
      asprintf(&t->scratch_dir, "%s/task-%llu", s->cfg.scratch_root, (unsigned long long)t->id) < 0) {
    t->scratch_dir = NULL;
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory queueing a task");
  }
  if (mkdir(t->scratch_dir, 0700) < 0 && errno != EEXIST)
    return op_error_set(err, OP_EIO, "internal", "cannot create scratch directory: %s", strerror(errno));
  t->status = t->started_s > 0 ? OP_TASK_RUNNING : OP_TASK_QUEUED;
  if (t->queued_s == 0)
    t->queued_s = op_wall_time_s();
  t->stage = t->n_pages > 0 ? STAGE_PAGES : STAGE_PROBE;
  t->resumed = t->n_pages > 0;
  t->pages_done = t->pages_failed = 0;
  for (size_t i = 0; i < t->n_pages; i++) {
    t->pages[i].task = t;
    if (t->pages[i].state == OP_PAGE_RUNNING)
      t->pages[i].state = OP_PAGE_QUEUED; /* its run died with the previous process */
    t->pages_done += t->pages[i].state == OP_PAGE_DONE;
    t->pages_failed += t->pages[i].state == OP_PAGE_FAILED;
  }
  s->tasks[s->n_tasks++] = t;
  return 0;
}

static void *stage_ctx(op_task_t *t) {
  return (void *)((uintptr_t)t | 1u);
}

static void task_ended(op_sched_t *s, op_task_t *t) {
  t->stage = STAGE_DONE;
  t->finished_s = op_wall_time_s();
  for (size_t i = 0; i < s->n_tasks; i++) {
    if (s->tasks[i] == t) {
      memmove(&s->tasks[i], &s->tasks[i + 1], (s->n_tasks - i - 1) * sizeof *s->tasks);
      s->n_tasks--;
      break;
    }
  }
  if (s->cfg.on_task)
    s->cfg.on_task(s->cfg.cb_ctx, t);
}

static void task_fail(op_sched_t *s, op_task_t *t, const op_error_t *e) {
  if (t->error.code == 0)
    t->error = *e;
  t->status = OP_TASK_FAILED;
  task_ended(s, t);
}

/* ---- building jobs ---- */

static json_t *formats_json(unsigned mask) {
  json_t *a = json_array();
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (mask & f)
      json_array_append_new(a, json_string(op_format_name((op_format_t)f)));
  return a;
}

static json_t *probe_job(const op_task_t *t) {
  return json_pack("{s:s, s:s, s:s?, s:{s:I, s:I, s:i}}", "op", "probe", "input", t->input_path, "pages", t->opts.pages,
                   "limits", "max_pages", (json_int_t)t->opts.limits.max_pages, "max_page_pixels",
                   (json_int_t)t->opts.limits.max_page_pixels, "dpi", t->opts.limits.dpi);
}

/* The model a page runs on: its task's, or its fallback's after out-of-memory failures. */
static const op_model_policy_t *page_policy(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p) {
  const op_model_policy_t *fb = p != NULL && p->on_fallback
                                    ? op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->policy->fallback)
                                    : NULL;
  return fb != NULL ? fb : t->policy;
}

static json_t *page_job(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p) {
  char *prefix = page_prefix(t, p->index);
  if (prefix == NULL)
    return NULL;
  const op_model_policy_t *pol = page_policy(s, t, p);
  const char *engine = p->on_fallback ? pol->engine : t->opts.model.engine;
  const char *lang = p->on_fallback ? pol->lang : t->opts.model.lang;
  json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:{s:s, s:s, s:i}, s:i, s:i, s:b, s:o, s:s, s:s, s:I}",
                        "op", "page", "input", t->input_path, "type", op_doc_type_name(t->type), "index",
                        (json_int_t)p->index, "page_number", (json_int_t)p->index, "dpi", t->opts.limits.dpi,
                        "max_page_pixels", (json_int_t)t->opts.limits.max_page_pixels, "model", "engine", engine,
                        "lang", lang, "oem", t->opts.model.oem, "psm", t->opts.psm, "user_dpi", t->opts.user_dpi,
                        "rotate", t->opts.rotate_pages, "formats", formats_json(t->opts.formats), "out", prefix,
                        "title", t->title, "attempt", (json_int_t)p->attempts);
  free(prefix);
  if (j != NULL && t->opts.rotate_threshold > 0)
    json_object_set_new(j, "rotate_threshold", json_real(t->opts.rotate_threshold));
  if (j != NULL) {
    json_object_set_new(j, "batch", json_integer(p->batch ? p->batch : pol->batch));
    if (pol->memory_limit > 0 && strncmp(pol->device, "cuda:", 5) != 0) /* a GPU model's limit is of VRAM */
      json_object_set_new(j, "memory_limit", json_integer((json_int_t)pol->memory_limit));
  }
  return j;
}

static json_t *merge_job(const op_task_t *t) {
  json_t *inputs = json_array();
  for (size_t i = 0; i < t->n_pages; i++) {
    if (t->pages[i].state != OP_PAGE_DONE)
      continue;
    char *prefix = page_prefix(t, t->pages[i].index);
    char *path = NULL;
    if (prefix != NULL && asprintf(&path, "%s.pdf", prefix) >= 0) {
      json_array_append_new(inputs, json_string(path));
      free(path);
    }
    free(prefix);
  }
  char *out = op_task_result_path(t, OP_FMT_PDF);
  json_t *j = json_pack("{s:s, s:o, s:s?}", "op", "merge_pdf", "inputs", inputs, "output", out);
  free(out);
  return j;
}

/* ---- assembling results ---- */

static int assemble(op_task_t *t, op_error_t *err) {
  size_t n = t->n_pages;
  const char **files = calloc(n ? n : 1, sizeof *files);
  const char **errors = calloc(n ? n : 1, sizeof *errors);
  uint32_t *numbers = calloc(n ? n : 1, sizeof *numbers);
  char **owned = calloc(n ? n : 1, sizeof *owned);
  int rc = OP_ENOMEM;
  if (files == NULL || errors == NULL || numbers == NULL || owned == NULL)
    goto out;
  for (unsigned f = 1; f < OP_FMT_PDF; f <<= 1) {
    if (!(t->opts.formats & f))
      continue;
    for (size_t i = 0; i < n; i++) {
      free(owned[i]);
      owned[i] = NULL;
      numbers[i] = t->pages[i].index;
      errors[i] = t->pages[i].state == OP_PAGE_DONE ? NULL : t->pages[i].error.message;
      if (t->pages[i].state == OP_PAGE_DONE) {
        char *prefix = page_prefix(t, t->pages[i].index);
        if (prefix == NULL || asprintf(&owned[i], "%s.%s", prefix, op_format_ext((op_format_t)f)) < 0)
          owned[i] = NULL;
        free(prefix);
        if (owned[i] == NULL)
          goto out;
      }
      files[i] = owned[i];
    }
    /* Renamed into place when whole: a result is never served half-written,
     * and a failed assembly leaves no result rather than a truncated one. */
    char *dest = op_task_result_path(t, (op_format_t)f), *tmp = NULL;
    FILE *fp = dest ? op_atomic_create(dest, &tmp) : NULL;
    if (fp == NULL) {
      rc = op_error_set(err, OP_EIO, "internal", "cannot write the %s result: %s", op_format_name((op_format_t)f),
                        strerror(errno));
      free(dest);
      goto out;
    }
    rc = op_output_assemble((op_format_t)f, files, errors, numbers, n, t->title, fp, err);
    if (op_atomic_finish(fp, tmp, dest, rc == 0) < 0 && rc == 0)
      rc = op_error_set(err, OP_EIO, "internal", "writing the %s result failed", op_format_name((op_format_t)f));
    free(dest);
    if (rc < 0)
      goto out;
  }
  rc = 0;
out:
  if (rc == OP_ENOMEM)
    op_error_set(err, OP_ENOMEM, NULL, "out of memory assembling results");
  for (size_t i = 0; owned != NULL && i < n; i++)
    free(owned[i]);
  free(owned);
  free(files);
  free(errors);
  free(numbers);
  return rc;
}

/* Whether every result of a resumed task is already written. Results are
 * renamed into place whole and fragments are removed only after all of them
 * are: a task that ended just before a kill, whose end was not yet recorded,
 * has its results and may have lost its fragments, and must not assemble again. */
static int results_written(const op_task_t *t) {
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1) {
    if (!(t->opts.formats & f))
      continue;
    char *path = op_task_result_path(t, (op_format_t)f);
    int found = path != NULL && access(path, F_OK) == 0;
    free(path);
    if (!found)
      return 0;
  }
  return 1;
}

/* All pages have ended: merge (PDF), assemble, and end the task. */
static void pages_ended(op_sched_t *s, op_task_t *t) {
  if (t->resumed && t->stage == STAGE_PAGES && t->pages_done > 0 && results_written(t))
    t->stage = STAGE_DONE; /* nothing left to merge or assemble */
  if (t->pages_done > 0 && (t->opts.formats & OP_FMT_PDF) && t->stage == STAGE_PAGES) {
    t->stage = STAGE_MERGE;
    t->stage_attempts = 0;
    t->stage_crashes = 0;
    return; /* the merge job is dispatched like any other */
  }
  op_error_t e;
  op_error_clear(&e);
  if (t->pages_done > 0 && !(t->resumed && results_written(t)) && assemble(t, &e) < 0) {
    task_fail(s, t, &e);
    return;
  }
  if (t->pages_failed > 0) {
    for (size_t i = 0; i < t->n_pages; i++) {
      if (t->pages[i].state == OP_PAGE_FAILED) {
        const op_error_t *pe = &t->pages[i].error;
        op_error_t e2;
        if (t->n_pages > 1)
          op_error_set(&e2, pe->code, pe->reason, "page %u: %.700s", t->pages[i].index + 1, pe->message);
        else
          e2 = *pe;
        task_fail(s, t, &e2);
        return;
      }
    }
  }
  t->status = OP_TASK_SUCCEEDED;
  task_ended(s, t);
}

static void page_ended(op_sched_t *s, op_page_job_t *p) {
  op_task_t *t = p->task;
  if (p->state == OP_PAGE_DONE)
    t->pages_done++;
  else
    t->pages_failed++;
  if (s->cfg.on_page)
    s->cfg.on_page(s->cfg.cb_ctx, t, p);
  if (t->pages_done + t->pages_failed == t->n_pages)
    pages_ended(s, t);
}

static void page_fail(op_sched_t *s, op_page_job_t *p, const op_error_t *e) {
  p->state = OP_PAGE_FAILED;
  p->error = *e;
  page_ended(s, p);
}

/* Queues a page again after a lost or failed run, behind an exponential backoff. */
static void requeue(op_sched_t *s, op_page_job_t *p, const char *why) {
  double wait = s->cfg.retry_backoff_s;
  for (unsigned i = 1; i < p->attempts && wait < 60; i++)
    wait *= 2;
  p->state = OP_PAGE_QUEUED;
  p->not_before_s = op_wall_time_s() + wait;
  if (s->cfg.on_retry)
    s->cfg.on_retry(s->cfg.cb_ctx, p->task, p, why);
}

/* Fails every page still queued: used when the model cannot load at all. */
static void fail_queued_pages(op_sched_t *s, op_task_t *t, const op_error_t *e) {
  for (size_t i = 0; i < t->n_pages && t->stage == STAGE_PAGES; i++)
    if (t->pages[i].state == OP_PAGE_QUEUED)
      page_fail(s, &t->pages[i], e);
}

/* ---- dispatching ---- */

/* A task's priority with aging: one level more for every aging_s it has waited. */
static double effective_priority(const op_sched_t *s, const op_task_t *t, double now) {
  double waited = now - t->queued_s;
  return t->opts.priority + (s->cfg.aging_s > 0 && waited > 0 ? waited / s->cfg.aging_s : 0);
}

/* The next job to run: the highest (aged) priority, oldest task with work ready. */
/* Pages of a policy's model running now. */
static unsigned policy_running(const op_sched_t *s, const op_model_policy_t *pol) {
  unsigned n = 0;
  for (size_t i = 0; i < s->n_tasks; i++)
    for (size_t k = 0; s->tasks[i]->policy == pol && k < s->tasks[i]->n_pages; k++)
      n += s->tasks[i]->pages[k].state == OP_PAGE_RUNNING;
  return n;
}

static int next_job(op_sched_t *s, op_task_t **task, op_page_job_t **page) {
  op_task_t *best = NULL;
  op_page_job_t *best_page = NULL;
  double best_priority = 0, now = op_wall_time_s();
  for (size_t i = 0; i < s->n_tasks; i++) {
    op_task_t *t = s->tasks[i];
    op_page_job_t *candidate = NULL;
    int has_work = 0;
    if (s->level >= OP_MEM_WARNING && t->opts.priority < s->cfg.defer_below && t->status != OP_TASK_RUNNING) {
      if (!t->deferred) {
        t->deferred = 1;
        s->deferred_tasks++;
        op_log_task(OP_LOG_INFO, t->log_id, 0, "memory: task %s (priority %d) waits while memory is under pressure",
                    t->log_id, t->opts.priority);
      }
      continue;
    }
    if ((t->stage == STAGE_PROBE || t->stage == STAGE_MERGE) && !t->stage_running) {
      has_work = 1;
    } else if (t->stage == STAGE_PAGES &&
               (t->policy->max_concurrent == 0 || policy_running(s, t->policy) < t->policy->max_concurrent)) {
      /* max_concurrent is a real semaphore: the model's other pages stay queued. */
      for (size_t k = 0; k < t->n_pages; k++) {
        if (t->pages[k].state == OP_PAGE_QUEUED && t->pages[k].not_before_s <= now) {
          candidate = &t->pages[k];
          has_work = 1;
          break;
        }
      }
    }
    double priority = has_work ? effective_priority(s, t, now) : 0;
    if (has_work && (best == NULL || priority > best_priority)) {
      best = t;
      best_page = candidate;
      best_priority = priority;
    }
  }
  *task = best;
  *page = best_page;
  return best != NULL;
}

void op_sched_pause(op_sched_t *s, int paused) {
  s->paused = paused;
}

size_t op_sched_running(const op_sched_t *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n_tasks; i++) {
    n += s->tasks[i]->stage_running != 0;
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++)
      n += s->tasks[i]->pages[k].state == OP_PAGE_RUNNING;
  }
  return n;
}

/* ---- memory admission ---- */

/* The slot's figures, started afresh when a new process has taken it. */
static wmem_t *wmem_of(op_sched_t *s, unsigned i, pid_t pid) {
  wmem_t *w = &s->wmem[i];
  if (w->pid != pid) {
    memset(w, 0, sizeof *w);
    w->pid = pid;
  }
  return w;
}

/* Slot i's figures when it is idle (info filled either way), else NULL. */
static wmem_t *idle_worker(op_sched_t *s, unsigned i, op_worker_info_t *info) {
  op_supervisor_worker(s->sup, i, info);
  return info->idle ? wmem_of(s, i, info->pid) : NULL;
}

static void monitor(op_sched_t *s, double now);

/* VRAM of our processes on each GPU, from NVML's per-process figures. */
static void sample_gpus(op_sched_t *s) {
  for (unsigned g = 0; g < s->cfg.n_gpus && g < OP_SCHED_MAX_GPUS; g++) {
    op_error_t e;
    if (op_nvml_info(s->cfg.nvml, g, &s->gpu[g].info, &e) < 0)
      continue; /* the last reading stands */
    pid_t self = getpid();
    uint64_t ours = 0, v = 0;
    if (op_nvml_pids_used(s->cfg.nvml, g, &self, 1, &v, &e) == 0)
      ours += v;
    for (unsigned i = 0; i < s->n_wmem; i++) {
      wmem_t *w = &s->wmem[i];
      v = 0;
      if (w->pid > 0 && op_nvml_pids_used(s->cfg.nvml, g, &w->pid, 1, &v, &e) == 0 && v > 0 && w->gpu == 0)
        w->gpu = (int)g + 1; /* it holds memory there, so it runs there */
      if (w->gpu == (int)g + 1)
        w->vram = v;
      ours += v;
    }
    s->gpu[g].ours = ours;
    op_mem_level_t level = op_mem_level(ours, s->cfg.gpu_budget[g], s->cfg.warning_share, s->cfg.critical_share);
    if (level != s->gpu[g].level) {
      char u[32], b[32];
      op_mem_format(ours, u, sizeof u);
      op_mem_format(s->cfg.gpu_budget[g], b, sizeof b);
      if (level > s->gpu[g].level)
        op_log_warn("memory: cuda:%u %s: %s in use of the %s budget", g, op_mem_level_name(level), u, b);
      else
        op_log_info("memory: cuda:%u back to %s: %s in use of the %s budget", g, op_mem_level_name(level), u, b);
      s->gpu[g].level = level;
    }
  }
}

/* Real usage (PSS) of the server and each worker, every SAMPLE_EVERY_S. */
static void sample(op_sched_t *s, int force) {
  double now = op_wall_time_s();
  if (!force && now - s->last_sample_s < SAMPLE_EVERY_S)
    return;
  s->last_sample_s = now;
  s->server_pss = op_mem_pss(getpid());
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    wmem_t *w = wmem_of(s, i, info.pid);
    w->pss = info.pid > 0 ? op_mem_pss(info.pid) : 0;
    /* The hard cap's last line: a worker past its model's memory_limit is
     * killed, and its page is retried as out of memory. */
    /* The cap is of the model's device: PSS for a CPU model, VRAM (the last
     * NVML reading) for a GPU one. */
    uint64_t cap = w->policy ? w->policy->memory_limit : 0;
    int on_gpu = w->policy != NULL && strncmp(w->policy->device, "cuda:", 5) == 0;
    uint64_t use = on_gpu ? w->vram : w->pss;
    if (info.busy && cap > 0 && use > cap && !w->killed_for_memory && op_supervisor_kill(s->sup, i) == 0) {
      w->killed_for_memory = 1;
      op_log_warn("worker %u (pid %d) uses %llu MB%s, past its %llu MB limit: killed", i, (int)info.pid,
                  (unsigned long long)(use >> 20), on_gpu ? " of VRAM" : "", (unsigned long long)(cap >> 20));
    }
    if (info.idle && info.jobs_done == 0 && !w->learned_base && w->pss > 0) {
      op_estimates_learn_worker(s->estimates, w->pss); /* a fresh worker: no model, no page yet */
      w->learned_base = 1;
    }
  }
  sample_gpus(s);
  monitor(s, now);
}

/* The engine and languages a job runs with (a probe or merge: its task's). */
static void job_model(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p, const char **engine,
                      const char **lang) {
  const op_model_policy_t *pol = page_policy(s, t, p);
  *engine = p != NULL && p->on_fallback ? pol->engine : t->opts.model.engine;
  *lang = p != NULL && p->on_fallback ? pol->lang : t->opts.model.lang;
}

static void model_key(const op_sched_t *s, const op_task_t *t, const op_page_job_t *p, char *buf, size_t len) {
  const char *engine, *lang;
  job_model(s, t, p, &engine, &lang);
  snprintf(buf, len, "%.31s:%.63s", engine, lang);
}

static int holds_model(const wmem_t *w, const char *key) {
  for (unsigned k = 0; k < w->n_models; k++)
    if (strcmp(w->models[k], key) == 0)
      return 1;
  return 0;
}

/* Notes that the worker now holds key, most recent first, as its cache of 4 does. */
static void note_model(wmem_t *w, const char *key) {
  unsigned k = 0;
  while (k < w->n_models && strcmp(w->models[k], key) != 0)
    k++;
  if (k == w->n_models && w->n_models < 4)
    w->n_models++;
  if (k == 4)
    k = 3; /* the least recent goes, as in the worker */
  memmove(w->models[1], w->models[0], k * sizeof w->models[0]);
  memmove(&w->model_used[1], &w->model_used[0], k * sizeof w->model_used[0]);
  snprintf(w->models[0], sizeof w->models[0], "%s", key);
  w->model_used[0] = op_wall_time_s();
}

static mstat_t *mstat(op_sched_t *s, const char *key) {
  for (unsigned i = 0; i < s->n_mstats; i++)
    if (strcmp(s->mstats[i].key, key) == 0)
      return &s->mstats[i];
  if (s->n_mstats == MAX_MODEL_STATS)
    return NULL;
  mstat_t *m = &s->mstats[s->n_mstats++];
  memset(m, 0, sizeof *m);
  snprintf(m->key, sizeof m->key, "%s", key);
  return m;
}

/* A worker is losing every model it holds (retired, killed, dead): counted
 * as unloads with that reason. */
static void drop_models(op_sched_t *s, wmem_t *w, int reason) {
  for (unsigned k = 0; k < w->n_models; k++) {
    mstat_t *m = mstat(s, w->models[k]);
    if (m != NULL)
      m->unloads[reason]++;
  }
  w->n_models = 0;
}

/* Forgets one model of a worker (after its unload job). */
static void forget_model(wmem_t *w, const char *key) {
  for (unsigned k = 0; k < w->n_models; k++) {
    if (strcmp(w->models[k], key) == 0) {
      memmove(&w->models[k], &w->models[k + 1], (w->n_models - k - 1) * sizeof w->models[0]);
      memmove(&w->model_used[k], &w->model_used[k + 1], (w->n_models - k - 1) * sizeof w->model_used[0]);
      w->n_models--;
      return;
    }
  }
}

/* The policy of a model key: the first declared for its engine and languages, else the defaults. */
static const op_model_policy_t *key_policy(const op_sched_t *s, const char *key) {
  for (unsigned i = 0; i < s->cfg.n_policies; i++) {
    char k[96];
    snprintf(k, sizeof k, "%.31s:%.63s", s->cfg.policies[i].engine, s->cfg.policies[i].lang);
    if (strcmp(k, key) == 0)
      return &s->cfg.policies[i];
  }
  return &s->default_policy;
}

/* The resident size admission expects of what a worker holds: itself and its models. */
static uint64_t held_bytes(op_sched_t *s, const wmem_t *w) {
  uint64_t held = op_estimate_worker(s->estimates);
  for (unsigned k = 0; k < w->n_models; k++) {
    char engine[32];
    const char *colon = strchr(w->models[k], ':');
    snprintf(engine, sizeof engine, "%.*s", colon ? (int)(colon - w->models[k]) : 0, w->models[k]);
    held += op_estimate_model(s->estimates, engine, colon ? colon + 1 : "");
  }
  return held;
}

/* What admission counts for slot i: what it holds plus its job's reservation,
 * or what it really uses when that is more. */
static uint64_t worker_reserved(op_sched_t *s, unsigned i) {
  op_worker_info_t info;
  op_supervisor_worker(s->sup, i, &info);
  if (info.pid == 0)
    return 0;
  wmem_t *w = wmem_of(s, i, info.pid);
  uint64_t r = held_bytes(s, w) + (info.busy ? w->job_reserve : 0);
  return r > w->pss ? r : w->pss;
}

static uint64_t total_reserved(op_sched_t *s) {
  uint64_t r = s->server_pss;
  for (unsigned i = 0; i < s->n_wmem; i++)
    r += worker_reserved(s, i);
  return r;
}

/* The page's working set; pages restored without their sizes count as a
 * colour letter page at 300 dpi, the common large case. */
static uint64_t page_estimate(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  if (p->estimate_bytes == 0) {
    uint64_t pixels = p->width_px && p->height_px ? (uint64_t)p->width_px * p->height_px : 2550u * 3300u;
    p->estimate_bytes =
        op_estimate_page(s->estimates, t->opts.model.engine, t->opts.model.lang, pixels, p->width_px ? p->depth : 24);
  }
  return p->estimate_bytes;
}

/* Fails a job that cannot fit even alone in an otherwise empty budget. */
static void refuse(op_sched_t *s, op_task_t *t, op_page_job_t *p, uint64_t job, uint64_t model, uint64_t alone) {
  char a[32], b[32], j[32], m[32], w[32];
  op_mem_format(alone, a, sizeof a);
  op_mem_format(s->cfg.budget_bytes, b, sizeof b);
  op_mem_format(job, j, sizeof j);
  op_mem_format(model, m, sizeof m);
  op_mem_format(op_estimate_worker(s->estimates) + s->server_pss, w, sizeof w);
  op_error_t e;
  op_error_set(&e, OP_ELIMIT, "memory_limit_exceeded",
               "%s needs about %s (%s for its work, %s for the model, %s for the server and a worker) and the "
               "memory budget is %s",
               p ? "the page" : "the document", a, j, m, w, b);
  s->refused_pages++;
  if (p != NULL)
    page_fail(s, p, &e);
  else
    task_fail(s, t, &e);
}

/* Frees room by retiring the idle worker that holds the most (never a busy
 * one, never keep). Returns whether one was retired. */
static int retire_idle(op_sched_t *s, int keep) {
  int best = -1;
  uint64_t best_bytes = 0;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    uint64_t r = info.idle && (int)i != keep ? worker_reserved(s, i) : 0;
    if (r > best_bytes) {
      best = (int)i;
      best_bytes = r;
    }
  }
  if (best < 0 || op_supervisor_retire(s->sup, (unsigned)best) < 0)
    return 0;
  op_log_info("memory: retiring idle worker %d to make room", best);
  s->worker_ends[OP_SCHED_END_ROOM]++;
  drop_models(s, &s->wmem[best], UNLOAD_BUDGET);
  return 1;
}

/* Whether an idle worker may take a job of task t: not one kept for another
 * task (isolate: per_task), not a used one for an isolated task, not one due
 * to retire. */
static int may_serve(const op_sched_t *s, const wmem_t *w, const op_worker_info_t *info, const op_task_t *t) {
  if (w->retire)
    return 0;
  if (w->bound_task != 0)
    return w->bound_task == t->id;
  if (t->policy->isolate_per_task) {
    for (unsigned i = 0; i < s->n_wmem; i++) {
      op_worker_info_t other;
      op_supervisor_worker(s->sup, i, &other);
      if (other.pid > 0 && s->wmem[i].pid == other.pid && s->wmem[i].bound_task == t->id && !s->wmem[i].retire)
        return 0; /* the task has its worker; it waits for it */
    }
    return info->jobs_done == 0;
  }
  const op_model_policy_t *pol = w->policy;
  return pol == NULL || pol->max_tasks == 0 || w->tasks_run < pol->max_tasks || w->last_task_id == t->id;
}

static void send_control(op_sched_t *s, unsigned slot, const char *key, int load, int reason);

/* Makes room as a model manager should before any worker goes: the least
 * recently used model that an idle worker holds, other than keep_key, is
 * unloaded and the worker stays. Returns whether an unload was sent. */
static int unload_lru(op_sched_t *s, const char *keep_key, int gpu, const char *why) {
  int best = -1;
  unsigned best_k = 0;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    wmem_t *w = idle_worker(s, i, &info);
    for (unsigned k = 0; w != NULL && (gpu == 0 || w->gpu == gpu) && k < w->n_models && !w->retire; k++) {
      if (keep_key != NULL && strcmp(w->models[k], keep_key) == 0)
        continue;
      if (best < 0 || w->model_used[k] < s->wmem[best].model_used[best_k]) {
        best = (int)i;
        best_k = k;
      }
    }
  }
  if (best < 0)
    return 0;
  char key[96];
  snprintf(key, sizeof key, "%s", s->wmem[best].models[best_k]);
  op_log_info("memory: unloading model %s from worker %d %s (least recently used)", key, best, why);
  send_control(s, (unsigned)best, key, 0, UNLOAD_BUDGET);
  return 1;
}

static uint64_t total_reserved(op_sched_t *s);

/* Critical: what can be freed without touching a page in flight is freed:
 * idle models (least recently used first), then idle workers due to recycle.
 * Returns how many actions were taken. */
static int relieve(op_sched_t *s) {
  int acted = 0;
  while (unload_lru(s, NULL, 0, "under critical memory pressure")) /* each idle holder is busy after its unload */
    acted++;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    wmem_t *w = idle_worker(s, i, &info);
    if (w != NULL && w->retire && op_supervisor_retire(s->sup, i) == 0) {
      op_log_info("recycling worker %u (pid %d) under critical memory pressure: %s", i, (int)info.pid, w->retire_why);
      drop_models(s, w, UNLOAD_RECYCLE);
      s->recycled++;
      s->worker_ends[OP_SCHED_END_RECYCLE]++;
      acted++;
    }
  }
  return acted;
}

/* The monitor: the level of real use against the budget, what it changes,
 * and a minute of history for memory reports. */
static void monitor(op_sched_t *s, double now) {
  uint64_t budget = s->cfg.budget_bytes, used = s->server_pss;
  if (budget == 0)
    return;
  for (unsigned i = 0; i < s->n_wmem; i++)
    used += s->wmem[i].pss;
  s->ring[s->ring_next].t = now;
  s->ring[s->ring_next].used = used;
  s->ring[s->ring_next].reserved = total_reserved(s);
  s->ring_next = (s->ring_next + 1) % HISTORY;
  s->ring_n += s->ring_n < HISTORY;
  op_mem_level_t level = op_mem_level(used, budget, s->cfg.warning_share, s->cfg.critical_share);
  int changed = level != s->level;
  char u[32], b[32];
  op_mem_format(used, u, sizeof u);
  op_mem_format(budget, b, sizeof b);
  if (changed) {
    if (level > s->level) {
      s->warnings += level == OP_MEM_WARNING;
      s->criticals += level == OP_MEM_CRITICAL;
      op_log_warn("memory: %s: %s in use of the %s budget", op_mem_level_name(level), u, b);
    } else {
      op_log_info("memory: back to %s: %s in use of the %s budget", op_mem_level_name(level), u, b);
    }
    s->level = level;
    s->level_since = now;
  }
  if (level == OP_MEM_CRITICAL && now - s->last_action_s >= s->cfg.cooldown_s) {
    s->last_action_s = now;
    if (relieve(s) == 0 && !s->refusing) {
      s->refusing = changed = 1;
      op_log_warn("memory: critical with nothing idle left to free: new submissions are refused until it passes");
    }
  }
  if (s->refusing && level < OP_MEM_CRITICAL && now - s->level_since >= s->cfg.cooldown_s) {
    s->refusing = 0;
    changed = 1;
    op_log_info("memory: below critical for %.0f s: submissions are accepted again", s->cfg.cooldown_s);
  }
  if (changed && s->cfg.on_pressure)
    s->cfg.on_pressure(s->cfg.cb_ctx, level, s->refusing, used, budget);
  /* A critical GPU: its idle models go (their VRAM with them); its pages go
   * to their fallbacks meanwhile (route). */
  for (unsigned g = 0; g < s->cfg.n_gpus && g < OP_SCHED_MAX_GPUS; g++) {
    if (s->gpu[g].level == OP_MEM_CRITICAL && now - s->gpu[g].last_action_s >= s->cfg.cooldown_s) {
      s->gpu[g].last_action_s = now;
      while (unload_lru(s, NULL, (int)g + 1, "under critical GPU memory pressure"))
        ;
    }
  }
}

/*
 * Under a budget: where the next job may run, if its memory fits now.
 * Returns the idle slot to send it to; -1 when it waits (a worker may have
 * been started or retired for it: the next pass looks again); -2 when it was
 * refused for good.
 */
/* Whether a page of key fits on GPU g now: the model's VRAM unless a worker
 * there holds it, and the page's, within our budget there and within what
 * every process on the card leaves free. */
static int gpu_fits(op_sched_t *s, unsigned g, const op_model_policy_t *pol, const char *key) {
  uint64_t need = GPU_PAGE_PRIOR;
  int held = 0;
  for (unsigned i = 0; i < s->n_wmem && !held; i++)
    held = s->wmem[i].pid > 0 && s->wmem[i].gpu == (int)g + 1 && holds_model(&s->wmem[i], key);
  if (!held)
    need += pol->memory_limit > 0 ? pol->memory_limit : GPU_MODEL_PRIOR;
  const op_gpu_info_t *info = &s->gpu[g].info;
  uint64_t free_all = info->total_bytes > info->used_bytes ? info->total_bytes - info->used_bytes : 0;
  return s->gpu[g].ours + need <= s->cfg.gpu_budget[g] && need <= free_all;
}

/*
 * Where page p runs: 0 for the CPU, 1 + N for cuda:N. A page whose GPU is
 * missing, critical or full goes to its model's fallback when one is
 * declared (recorded on the page). -1: it waits for its GPU; -2: it failed
 * (no such GPU and no fallback).
 */
static int route(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  const op_model_policy_t *pol = page_policy(s, t, p);
  if (p == NULL || strncmp(pol->device, "cuda:", 5) != 0)
    return 0;
  unsigned g = (unsigned)atoi(pol->device + 5);
  char key[96];
  model_key(s, t, p, key, sizeof key);
  const char *why = g >= s->cfg.n_gpus || g >= OP_SCHED_MAX_GPUS ? "its GPU is not on this machine"
                    : s->gpu[g].level == OP_MEM_CRITICAL         ? "its GPU's memory is critical"
                    : !gpu_fits(s, g, pol, key)                  ? "its GPU has no room for it now"
                                                                 : NULL;
  if (why == NULL)
    return 1 + (int)g;
  if (!p->on_fallback && op_model_policy_named(s->cfg.policies, s->cfg.n_policies, t->policy->fallback) != NULL) {
    p->on_fallback = 1;
    p->fallback_why = why;
    p->estimate_bytes = 0; /* estimated again for the fallback's model */
    if (g < OP_SCHED_MAX_GPUS)
      s->gpu[g].fallbacks++;
    op_log_task(OP_LOG_INFO, t->log_id, p->index + 1, "page %u of task %s goes to %s instead of %s: %s", p->index + 1,
                t->log_id, t->policy->fallback, pol->device, why);
    return route(s, t, p); /* the fallback's own device */
  }
  if (g >= s->cfg.n_gpus || g >= OP_SCHED_MAX_GPUS) {
    op_error_t e;
    op_error_set(&e, OP_EUSAGE, "device_unavailable",
                 "model %s runs on %s, and this machine has %u GPU%s that NVML reports; declare a fallback model to "
                 "run it elsewhere",
                 pol->name[0] ? pol->name : key, pol->device, s->cfg.n_gpus, s->cfg.n_gpus == 1 ? "" : "s");
    page_fail(s, p, &e);
    return -2;
  }
  if (!p->waited_memory) {
    p->waited_memory = 1;
    s->waiting_pages++;
    if (s->cfg.on_memory_wait)
      s->cfg.on_memory_wait(s->cfg.cb_ctx, t, p, GPU_PAGE_PRIOR, 0);
  }
  return -1;
}

/* A page of a model that failed to load within MODEL_RETRY_S fails at once,
 * with the same reason: no worker is started or loaded for it. */
static int model_failed(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  char key[96];
  model_key(s, t, p, key, sizeof key);
  const mstat_t *m = mstat(s, key);
  double left = m != NULL && m->failed_s > 0 ? m->failed_s + MODEL_RETRY_S - op_wall_time_s() : 0;
  if (left <= 0)
    return 0;
  op_error_t e;
  op_error_set(&e, OP_EUSAGE, "model_unavailable", "%s (it failed to load %.0f s ago; tried again in %.0f s)",
               m->failure, MODEL_RETRY_S - left, left);
  for (size_t i = 0; i < t->n_pages; i++) /* p last: its end may end the task and free it */
    if (&t->pages[i] != p && t->pages[i].state == OP_PAGE_QUEUED)
      page_fail(s, &t->pages[i], &e);
  page_fail(s, p, &e);
  return 1;
}

static int admit(op_sched_t *s, op_task_t *t, op_page_job_t *p, uint64_t *reserve, int *device) {
  sample(s, 0);
  if (p != NULL && model_failed(s, t, p))
    return -2;
  int dev = route(s, t, p);
  if (dev < 0)
    return dev;
  *device = dev;
  char key[96];
  const char *engine, *lang;
  model_key(s, t, p, key, sizeof key);
  job_model(s, t, p, &engine, &lang);
  uint64_t job = p != NULL ? page_estimate(s, t, p) : t->stage == STAGE_PROBE ? PROBE_ESTIMATE : MERGE_ESTIMATE;
  uint64_t model = p != NULL ? op_estimate_model(s->estimates, engine, lang) : 0;
  uint64_t worker = op_estimate_worker(s->estimates);
  uint64_t budget = s->cfg.budget_bytes;
  uint64_t alone = s->server_pss + worker + model + job;
  if (alone > budget) {
    refuse(s, t, p, job, model, alone);
    return -2; /* the page, even the task, may be gone now */
  }
  /* An idle worker that holds the model, else the idle one holding least, else a new one. */
  int pick = -1, with_model = 0, starting = 0, free_slot = 0, other_idle = 0, freeing = 0;
  uint64_t pick_bytes = 0;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    starting += info.starting;
    free_slot |= info.pid == 0;
    /* Room being made (a worker exiting, a model unloading): nothing more
     * is freed or started until it is done and measured, so that one job's
     * need never evicts twice. */
    freeing += info.exiting || (info.busy && s->wmem[i].control_key[0] && !s->wmem[i].control_load);
    if (!info.idle)
      continue;
    wmem_t *w = wmem_of(s, i, info.pid);
    if (!may_serve(s, w, &info, t) || (dev > 0 && w->gpu != 0 && w->gpu != dev)) {
      other_idle++; /* a worker runs on one GPU at most: its context lives there */
      continue;
    }
    int has = p != NULL && holds_model(w, key);
    uint64_t bytes = worker_reserved(s, i);
    if (pick < 0 || (has && !with_model) || (has == with_model && bytes < pick_bytes)) {
      pick = (int)i;
      with_model = has;
      pick_bytes = bytes;
    }
  }
  if (pick < 0 && freeing > 0)
    return -1;
  if (pick < 0 && !free_slot && starting == 0 && other_idle > 0) {
    retire_idle(s, -1); /* every slot is taken by idle workers this job may not use */
    return -1;
  }
  if (pick < 0 && (!free_slot || starting > 0))
    return -1; /* waiting for a worker, not for memory; one starts at a time */
  if (p != NULL && !with_model && s->level >= OP_MEM_WARNING) {
    int busy = 0;
    for (unsigned i = 0; i < s->n_wmem; i++) {
      op_worker_info_t info;
      op_supervisor_worker(s->sup, i, &info);
      busy += info.busy;
    }
    if (busy > 0)
      return -1; /* under pressure no model loads while other work may still free memory */
  }
  /* A new worker starts only when it could take the job too, else it would be started to be retired. */
  uint64_t need = pick >= 0 ? job + (with_model ? 0 : model) : worker + model + job;
  uint64_t reserved = total_reserved(s);
  if (reserved + need <= budget) {
    if (pick >= 0) {
      *reserve = job;
      return pick;
    }
    op_supervisor_start_worker(s->sup); /* the job goes to it once it is ready */
    return -1;
  }
  /* It does not fit now. When the running jobs' ends cannot make room, idle
   * workers hold what waiting will not free: retire one (not the one that
   * holds this job's model). */
  uint64_t running = 0;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    running += info.busy ? s->wmem[i].job_reserve : 0;
  }
  op_log_debug("memory: %s needs %llu kB more, %llu kB of %llu kB reserved (%llu kB by running jobs)",
               p != NULL ? "a page" : "a stage", (unsigned long long)(need >> 10), (unsigned long long)(reserved >> 10),
               (unsigned long long)(budget >> 10), (unsigned long long)(running >> 10));
  if (freeing == 0 && reserved - running + need > budget && !unload_lru(s, p != NULL ? key : NULL, 0, "to make room"))
    retire_idle(s, pick >= 0 && with_model ? pick : -1);
  if (p != NULL && !p->waited_memory) {
    p->waited_memory = 1;
    s->waiting_pages++;
    if (s->cfg.on_memory_wait)
      s->cfg.on_memory_wait(s->cfg.cb_ctx, t, p, need, budget > reserved ? budget - reserved : 0);
  }
  return -1;
}

static void dispatch(op_sched_t *s) {
  int budgeted = s->cfg.budget_bytes > 0;
  while (!s->paused) {
    if (!budgeted && op_supervisor_idle_count(s->sup) == 0)
      return;
    op_task_t *t;
    op_page_job_t *p;
    if (!next_job(s, &t, &p))
      return;
    int slot = -1, device = 0;
    uint64_t reserve = 0;
    if (budgeted) {
      slot = admit(s, t, p, &reserve, &device);
      if (slot == -2)
        continue; /* refused: the next job may fit */
      if (slot < 0)
        return; /* the head of the queue waits; nothing jumps it */
    }
    json_t *job;
    void *ctx;
    if (p != NULL) {
      p->attempts++;
      job = page_job(s, t, p);
      ctx = p;
    } else {
      t->stage_attempts++;
      job = t->stage == STAGE_PROBE ? probe_job(t) : merge_job(t);
      ctx = stage_ctx(t);
    }
    if (job == NULL) {
      op_error_t e;
      op_error_set(&e, OP_ENOMEM, NULL, "out of memory building a job");
      task_fail(s, t, &e);
      continue;
    }
    int w = slot >= 0 ? op_supervisor_dispatch_to(s->sup, (unsigned)slot, job, s->cfg.page_timeout_ms, ctx)
                      : op_supervisor_dispatch(s->sup, job, s->cfg.page_timeout_ms, ctx);
    json_decref(job);
    if (w < 0) {
      if (p != NULL)
        p->attempts--;
      else
        t->stage_attempts--;
      return;
    }
    if ((unsigned)w < s->n_wmem) {
      op_worker_info_t info;
      op_supervisor_worker(s->sup, (unsigned)w, &info);
      wmem_t *wm = wmem_of(s, (unsigned)w, info.pid);
      wm->job_reserve = budgeted ? reserve : 0;
      wm->last_used_s = op_wall_time_s();
      wm->policy = p != NULL ? page_policy(s, t, p) : t->policy; /* a fallback page runs under its own model */
      if (device > 0)
        wm->gpu = device;
      if (wm->last_task_id != t->id) {
        wm->tasks_run++;
        wm->last_task_id = t->id;
      }
      if (t->policy->isolate_per_task)
        wm->bound_task = t->id;
      if (p != NULL) {
        char key[96];
        model_key(s, t, p, key, sizeof key);
        note_model(wm, key);
        mstat_t *m = mstat(s, key);
        if (m != NULL) {
          m->last_use_s = op_wall_time_s();
          m->unload_wanted = 0; /* used again after an unload request: the use wins */
        }
      }
    }
    if (t->status == OP_TASK_QUEUED) {
      t->status = OP_TASK_RUNNING;
      t->started_s = op_wall_time_s();
    }
    if (p != NULL) {
      op_worker_info_t info;
      op_supervisor_worker(s->sup, (unsigned)w, &info);
      p->state = OP_PAGE_RUNNING;
      p->worker_id = (unsigned)w;
      p->worker_pid = info.pid;
      const op_model_policy_t *pol = page_policy(s, t, p);
      if (p->batch == 0)
        p->batch = pol->batch;
      if (device > 0)
        snprintf(p->device, sizeof p->device, "cuda:%u", (unsigned)(device - 1) % OP_SCHED_MAX_GPUS);
      else
        snprintf(p->device, sizeof p->device, "cpu");
      snprintf(p->model, sizeof p->model, "%.63s",
               pol->name[0]       ? pol->name
               : pol == t->policy ? t->opts.model.lang
                                  : pol->lang);
      p->started_s = op_wall_time_s();
      if (s->cfg.on_page_start)
        s->cfg.on_page_start(s->cfg.cb_ctx, t, p);
    } else {
      t->stage_running = 1;
    }
  }
}

void op_sched_set_limits(op_sched_t *s, uint64_t budget_bytes, double warning_share, double critical_share,
                         double cooldown_s, int defer_below) {
  if (s->cfg.budget_bytes > 0 && budget_bytes > 0) /* admission stays on (the pool is lazy) */
    s->cfg.budget_bytes = budget_bytes;
  s->cfg.warning_share = warning_share;
  s->cfg.critical_share = critical_share;
  s->cfg.cooldown_s = cooldown_s;
  s->cfg.defer_below = defer_below;
}

unsigned op_sched_memory(op_sched_t *s, op_sched_mem_t *mem, op_sched_worker_mem_t *workers, unsigned max) {
  sample(s, 0);
  memset(mem, 0, sizeof *mem);
  mem->budget_bytes = s->cfg.budget_bytes;
  mem->server_bytes = s->server_pss;
  mem->used_bytes = s->server_pss;
  mem->reserved_bytes = total_reserved(s);
  mem->waiting_pages = s->waiting_pages;
  mem->refused_pages = s->refused_pages;
  mem->level = s->level;
  mem->refusing = s->refusing;
  mem->warnings = s->warnings;
  mem->criticals = s->criticals;
  mem->deferred_tasks = s->deferred_tasks;
  memcpy(mem->worker_ends, s->worker_ends, sizeof mem->worker_ends);
  mem->oom_events = s->oom_events;
  mem->n_gpus = s->cfg.n_gpus < OP_SCHED_MAX_GPUS ? s->cfg.n_gpus : OP_SCHED_MAX_GPUS;
  for (unsigned g = 0; g < mem->n_gpus; g++) {
    snprintf(mem->gpus[g].name, sizeof mem->gpus[g].name, "%s", s->gpu[g].info.name);
    mem->gpus[g].capacity_bytes = s->gpu[g].info.total_bytes;
    mem->gpus[g].budget_bytes = s->cfg.gpu_budget[g];
    mem->gpus[g].used_bytes = s->gpu[g].ours;
    mem->gpus[g].all_used_bytes = s->gpu[g].info.used_bytes;
    mem->gpus[g].reserved_bytes = s->gpu[g].ours;
    mem->gpus[g].level = s->gpu[g].level;
    mem->gpus[g].fallbacks = s->gpu[g].fallbacks;
  }
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    wmem_t *w = wmem_of(s, i, info.pid);
    mem->used_bytes += w->pss;
    if (i >= max || workers == NULL)
      continue;
    op_sched_worker_mem_t *o = &workers[i];
    memset(o, 0, sizeof *o);
    o->pid = info.pid;
    o->busy = info.busy;
    o->used_bytes = w->pss;
    o->reserved_bytes = worker_reserved(s, i);
    o->pages_done = info.jobs_done;
    o->n_models = w->n_models;
    memcpy(o->models, w->models, sizeof o->models);
    o->gpu = w->gpu - 1;
    o->vram_bytes = w->vram;
  }
  return s->n_wmem;
}

/* ---- events ---- */

static void error_from_reply(json_t *reply, op_error_t *e) {
  json_t *code = json_object_get(reply, "code");
  const char *reason = json_string_value(json_object_get(reply, "reason"));
  const char *message = json_string_value(json_object_get(reply, "message"));
  op_error_set(e, json_is_integer(code) ? (int)json_integer_value(code) : OP_EINTERNAL, reason ? reason : "internal",
               "%s", message ? message : "the worker gave no reason");
}

static void note_memory(op_task_t *t, json_t *reply, long *page_peak) {
  long peak = (long)json_integer_value(json_object_get(reply, "peak_rss_kb"));
  if (page_peak != NULL)
    *page_peak = peak;
  if (peak > t->peak_rss_kb)
    t->peak_rss_kb = peak;
}

static void on_probe_reply(op_sched_t *s, op_task_t *t, json_t *reply) {
  json_t *pages = json_object_get(reply, "pages");
  size_t n = json_array_size(pages);
  op_error_t e;
  if (n == 0) {
    op_error_set(&e, OP_EBADINPUT, "bad_input", "the document has no pages to OCR");
    task_fail(s, t, &e);
    return;
  }
  t->pages = calloc(n, sizeof *t->pages);
  if (t->pages == NULL) {
    op_error_set(&e, OP_ENOMEM, NULL, "out of memory for %zu pages", n);
    task_fail(s, t, &e);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *row = json_array_get(pages, i);
    t->pages[i].task = t;
    t->pages[i].index = (uint32_t)json_integer_value(json_array_get(row, 0));
    t->pages[i].width_px = (uint32_t)json_integer_value(json_array_get(row, 1));
    t->pages[i].height_px = (uint32_t)json_integer_value(json_array_get(row, 2));
    t->pages[i].depth = (int)json_integer_value(json_array_get(row, 5));
    t->pages[i].state = OP_PAGE_QUEUED;
    t->pages[i].batch = t->policy->batch;
    t->pages[i].estimate_bytes =
        op_estimate_page(s->estimates, t->opts.model.engine, t->opts.model.lang,
                         (uint64_t)t->pages[i].width_px * t->pages[i].height_px, t->pages[i].depth);
  }
  t->n_pages = n;
  t->page_count = (uint32_t)json_integer_value(json_object_get(reply, "page_count"));
  t->stage = STAGE_PAGES;
}

static void on_stage_event(op_sched_t *s, op_task_t *t, const op_sup_event_t *ev) {
  op_error_t e;
  t->stage_running = 0;
  const char *what = t->stage == STAGE_PROBE ? "reading the document" : "merging the PDF";
  if (ev->type == OP_SUP_EV_REPLY) {
    const char *op = json_string_value(json_object_get(ev->reply, "op"));
    note_memory(t, ev->reply, NULL);
    if (op != NULL && strcmp(op, "failed") == 0) {
      error_from_reply(ev->reply, &e);
      task_fail(s, t, &e);
    } else if (t->stage == STAGE_PROBE) {
      on_probe_reply(s, t, ev->reply);
    } else {
      t->stage = STAGE_DONE; /* merge done: assemble the rest */
      pages_ended(s, t);
    }
    return;
  }
  t->stage_crashes++;
  if (t->stage_crashes >= s->cfg.max_crash_attempts || t->stage_attempts >= s->cfg.max_attempts) {
    if (t->stage == STAGE_PROBE)
      op_error_set(&e, ev->code == OP_ETIMEOUT ? OP_ETIMEOUT : OP_EBADINPUT,
                   ev->code == OP_ETIMEOUT ? "timeout" : "bad_input", "%s failed %u times; the last time %s", what,
                   t->stage_attempts, ev->message);
    else
      op_error_set(&e, ev->code, NULL, "%s failed %u times; the last time %s", what, t->stage_attempts, ev->message);
    task_fail(s, t, &e);
  } else {
    op_log_task(OP_LOG_WARN, t->log_id, 0, "task %s: %s: %s; trying again", t->log_id, what, ev->message);
  }
}

static uint64_t reply_pixels(json_t *reply) {
  return (uint64_t)json_integer_value(json_object_get(reply, "width")) *
         (uint64_t)json_integer_value(json_object_get(reply, "height"));
}

/* Learns from a page's reply what its model and its pixels cost. */
static void learn(op_sched_t *s, const op_task_t *t, const op_sup_event_t *ev, uint64_t pixels, int depth) {
  json_t *r = ev->reply;
  json_int_t peak = json_integer_value(json_object_get(r, "peak_rss_kb"));
  json_int_t base = json_integer_value(json_object_get(r, "page_base_rss_kb"));
  if (base > 0 && peak >= base)
    op_estimates_learn_page(s->estimates, t->opts.model.engine, t->opts.model.lang, pixels, depth,
                            (uint64_t)(peak - base) * 1024u);
  if (json_is_true(json_object_get(r, "model_loaded"))) {
    const char *engine, *lang;
    char key[96];
    job_model(s, t, ev->job_ctx, &engine, &lang);
    model_key(s, t, ev->job_ctx, key, sizeof key);
    op_estimates_learn_model(s->estimates, engine, lang,
                             (uint64_t)json_integer_value(json_object_get(r, "model_footprint_kb")) * 1024u);
    mstat_t *m = mstat(s, key);
    if (m != NULL)
      m->loads++;
  }
}

/* A page ran out of memory: again with half the batch, then on the model's
 * fallback, within the attempt cap; then it fails with out_of_memory. */
static void out_of_memory(op_sched_t *s, op_page_job_t *p, const char *message) {
  op_task_t *t = p->task;
  s->oom_events++;
  const op_model_policy_t *pol = page_policy(s, t, p);
  unsigned batch = p->batch ? p->batch : pol->batch;
  char why[512];
  if (p->attempts < s->cfg.max_attempts && batch > 1) {
    p->batch = batch / 2;
    snprintf(why, sizeof why, "out of memory with batch %u (%s); trying batch %u", batch, message, p->batch);
  } else if (p->attempts < s->cfg.max_attempts && t->policy->fallback[0] && !p->on_fallback) {
    p->on_fallback = 1;
    p->batch = page_policy(s, t, p)->batch;
    snprintf(why, sizeof why, "out of memory (%s); trying the fallback model %s", message, t->policy->fallback);
  } else {
    op_error_t e;
    char cap[32] = "";
    if (pol->memory_limit > 0) {
      char lim[24];
      op_mem_format(pol->memory_limit, lim, sizeof lim);
      snprintf(cap, sizeof cap, ", limit %s", lim);
    }
    op_error_set(&e, OP_ENOMEM, "out_of_memory", "the page ran out of memory %u times (batch %u%s); the last time %s",
                 p->attempts, batch, cap, message);
    page_fail(s, p, &e);
    return;
  }
  op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s page %u: %s", t->log_id, p->index + 1, why);
  requeue(s, p, why);
}

/* Whether a lost page's worker died of its memory: the monitor killed it past
 * its cap, or it died by a signal (an allocation failing under its limit
 * aborts C++ engines) with its last sample near the cap. */
static int lost_to_memory(op_sched_t *s, const op_page_job_t *p, const op_sup_event_t *ev) {
  if (ev->worker_id >= s->n_wmem || ev->code == OP_ETIMEOUT)
    return 0;
  const wmem_t *w = &s->wmem[ev->worker_id];
  if (w->pid != ev->pid)
    return 0;
  if (w->killed_for_memory)
    return 1;
  uint64_t cap = page_policy(s, p->task, p)->memory_limit;
  int sig = ev->term_signal;
  return cap > 0 && (sig == SIGABRT || sig == SIGSEGV || sig == SIGBUS || sig == SIGKILL) &&
         (w->pss >= cap / 10 * 8 || w->last_rss >= cap / 10 * 8);
}

static void on_page_event(op_sched_t *s, op_page_job_t *p, const op_sup_event_t *ev) {
  op_task_t *t = p->task;
  op_error_t e;
  if (ev->type == OP_SUP_EV_REPLY) {
    const char *op = json_string_value(json_object_get(ev->reply, "op"));
    note_memory(t, ev->reply, &p->peak_rss_kb);
    if (op != NULL && strcmp(op, "done") == 0) {
      learn(s, t, ev, reply_pixels(ev->reply), (int)json_integer_value(json_object_get(ev->reply, "depth")));
      p->state = OP_PAGE_DONE;
      p->ocr_ms = json_real_value(json_object_get(ev->reply, "ocr_ms"));
      p->rotated_deg = (int)json_integer_value(json_object_get(ev->reply, "rotated"));
      page_ended(s, p);
      return;
    }
    error_from_reply(ev->reply, &e);
    if (strcmp(e.reason, "out_of_memory") == 0 || e.code == OP_ENOMEM) {
      out_of_memory(s, p, e.message);
      return;
    }
    /* Bad pages and unloadable models fail at once; an engine error may pass. */
    int final = e.code == OP_EBADINPUT || e.code == OP_ELIMIT || e.code == OP_EUNSUPPORTED || e.code == OP_EUSAGE ||
                strcmp(e.reason, "model_unavailable") == 0 || p->attempts >= s->cfg.max_attempts;
    if (!final) {
      op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s page %u: %s; trying again", t->log_id, p->index + 1,
                  e.message);
      requeue(s, p, e.message);
      return;
    }
    /* The others first: failing this page may end the task, and a task's end
     * may free it. */
    if (strcmp(e.reason, "model_unavailable") == 0) {
      char key[96];
      model_key(s, t, p, key, sizeof key);
      mstat_t *m = mstat(s, key);
      if (ev->worker_id < s->n_wmem)
        forget_model(&s->wmem[ev->worker_id], key); /* noted when the page was sent; never loaded */
      if (m != NULL) {
        m->failed_s = op_wall_time_s();
        snprintf(m->failure, sizeof m->failure, "%.250s", e.message);
      }
    }
    if (strcmp(e.reason, "model_unavailable") == 0 || e.code == OP_EUSAGE)
      fail_queued_pages(s, t, &e);
    page_fail(s, p, &e);
    return;
  }
  /* Lost: the worker died or was killed for its timeout, or for its memory. */
  if (lost_to_memory(s, p, ev)) {
    char why[320];
    snprintf(why, sizeof why, "%s, past its memory limit", ev->message);
    out_of_memory(s, p, why);
    return;
  }
  if (ev->code == OP_ECRASH)
    p->crash_attempts++;
  if (ev->code == OP_ECRASH && p->crash_attempts >= s->cfg.max_crash_attempts) {
    op_error_set(&e, OP_ECRASH, "worker_crashed", "the page crashed its worker %u times (the last time %s)",
                 p->crash_attempts, ev->message);
    page_fail(s, p, &e);
  } else if (p->attempts >= s->cfg.max_attempts) {
    op_error_set(&e, ev->code, NULL, "the page failed %u times (the last time %s)", p->attempts, ev->message);
    page_fail(s, p, &e);
  } else {
    op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s page %u: %s; running it again on another worker",
                t->log_id, p->index + 1, ev->message);
    requeue(s, p, ev->message);
  }
}

void op_sched_cancel(op_sched_t *s, op_task_t *t) {
  if (t->stage == STAGE_DONE)
    return;
  for (size_t i = 0; i < t->n_pages; i++) {
    if (t->pages[i].state == OP_PAGE_RUNNING)
      op_supervisor_cancel(s->sup, &t->pages[i]);
    if (t->pages[i].state == OP_PAGE_RUNNING || t->pages[i].state == OP_PAGE_QUEUED)
      t->pages[i].state = OP_PAGE_FAILED;
  }
  if (t->stage_running)
    op_supervisor_cancel(s->sup, stage_ctx(t));
  t->stage_running = 0;
  op_error_set(&t->error, OP_EINTERNAL, "cancelled", "the task was cancelled");
  t->status = OP_TASK_CANCELLED;
  task_ended(s, t);
}

void op_sched_fail(op_sched_t *s, op_task_t *t, const op_error_t *error) {
  if (t->stage == STAGE_DONE)
    return;
  for (size_t i = 0; i < t->n_pages; i++)
    if (t->pages[i].state == OP_PAGE_RUNNING)
      op_supervisor_cancel(s->sup, &t->pages[i]);
  if (t->stage_running)
    op_supervisor_cancel(s->sup, stage_ctx(t));
  t->stage_running = 0;
  task_fail(s, t, error);
}

/* A worker's job has ended: its reservation ends, and its size after a page
 * is what max_memory_growth compares with its size after its first page. */
static void after_job(op_sched_t *s, unsigned slot, const op_sup_event_t *ev) {
  wmem_t *w = wmem_of(s, slot, ev->pid);
  w->job_reserve = 0;
  if (ev->job_ctx == &s->control)
    return; /* a model's load or unload is no use of the worker: idle_exit still counts */
  w->last_used_s = op_wall_time_s();
  if (((uintptr_t)ev->job_ctx & 1u) == 0 && w->n_models > 0)
    w->model_used[0] = w->last_used_s; /* the page's model: keep_alive counts from the page's end */
  if (ev->type != OP_SUP_EV_REPLY || !json_is_integer(json_object_get(ev->reply, "page_base_rss_kb")))
    return;
  w->last_rss = (uint64_t)json_integer_value(json_object_get(ev->reply, "rss_kb")) * 1024u;
  if (w->first_rss == 0)
    w->first_rss = w->last_rss;
  const op_model_policy_t *pol = w->policy;
  if (pol != NULL && pol->max_memory_growth > 0 && w->last_rss > w->first_rss + pol->max_memory_growth) {
    w->retire = 1;
    w->retire_why = "it grew past max_memory_growth";
  }
}

static const op_task_t *task_by_id(const op_sched_t *s, uint64_t id) {
  for (size_t i = 0; i < s->n_tasks; i++)
    if (s->tasks[i]->id == id)
      return s->tasks[i];
  return NULL;
}

/* Whether a task has a job left that has not started. */
static int task_has_queued(const op_task_t *t) {
  if (t == NULL)
    return 0;
  if (t->stage == STAGE_PROBE || t->stage == STAGE_MERGE)
    return !t->stage_running;
  for (size_t k = 0; k < t->n_pages; k++)
    if (t->pages[k].state == OP_PAGE_QUEUED)
      return 1;
  return (t->opts.formats & OP_FMT_PDF) && t->stage == STAGE_PAGES; /* its merge is still to come */
}

static int any_queued(const op_sched_t *s) {
  for (size_t i = 0; i < s->n_tasks; i++)
    if (task_has_queued(s->tasks[i]))
      return 1;
  return 0;
}

/* Sends a load or unload job for key to idle worker slot. */
static void send_control(op_sched_t *s, unsigned slot, const char *key, int load, int reason) {
  char engine[32];
  const char *colon = strchr(key, ':');
  snprintf(engine, sizeof engine, "%.*s", colon ? (int)(colon - key) : 0, key);
  json_t *job = json_pack("{s:s, s:{s:s, s:s, s:i}}", "op", load ? "load" : "unload", "model", "engine", engine, "lang",
                          colon ? colon + 1 : "", "oem", 3);
  if (job == NULL)
    return;
  if (op_supervisor_dispatch_to(s->sup, slot, job, 120000, &s->control) >= 0) {
    wmem_t *w = &s->wmem[slot];
    snprintf(w->control_key, sizeof w->control_key, "%s", key);
    w->control_load = load;
    w->control_reason = reason;
    w->job_reserve = 0;
    if (load)
      note_model(w, key); /* reserved from now on */
  }
  json_decref(job);
}

/* Preloads and an admin's loads: into an idle worker that lacks the model,
 * or a new one, when its footprint fits. */
static void load_wanted(op_sched_t *s) {
  for (unsigned m = 0; m < s->n_mstats && s->level == OP_MEM_OK; m++) {
    mstat_t *st = &s->mstats[m];
    if (!st->load_wanted)
      continue;
    int held = 0, pick = -1, starting = 0, free_slot = 0, freeing = 0;
    for (unsigned i = 0; i < s->n_wmem; i++) {
      op_worker_info_t info;
      op_supervisor_worker(s->sup, i, &info);
      wmem_t *w = wmem_of(s, i, info.pid);
      held |= info.pid > 0 && holds_model(w, st->key);
      starting += info.starting;
      free_slot |= info.pid == 0;
      freeing += info.exiting || (info.busy && w->control_key[0] && !w->control_load);
      if (info.idle && pick < 0 && w->bound_task == 0 && !w->retire)
        pick = (int)i;
    }
    if (held) {
      st->load_wanted = 0;
      continue;
    }
    char engine[32];
    const char *colon = strchr(st->key, ':');
    snprintf(engine, sizeof engine, "%.*s", colon ? (int)(colon - st->key) : 0, st->key);
    uint64_t need = op_estimate_model(s->estimates, engine, colon ? colon + 1 : "");
    if (pick < 0)
      need += op_estimate_worker(s->estimates);
    if (s->cfg.budget_bytes > 0 && total_reserved(s) + need > s->cfg.budget_bytes) {
      if (freeing == 0)
        unload_lru(s, st->key, 0, "to make room"); /* room is made as for a page; it waits meanwhile */
      continue;
    }
    if (pick >= 0)
      send_control(s, (unsigned)pick, st->key, 1, 0);
    else if (free_slot && starting == 0)
      op_supervisor_start_worker(s->sup);
  }
}

/* The answer to a load or unload job. */
static void on_control_event(op_sched_t *s, const op_sup_event_t *ev) {
  if (ev->worker_id >= s->n_wmem)
    return;
  wmem_t *w = &s->wmem[ev->worker_id];
  const char *op = ev->type == OP_SUP_EV_REPLY ? json_string_value(json_object_get(ev->reply, "op")) : NULL;
  mstat_t *m = mstat(s, w->control_key);
  if (op != NULL && strcmp(op, "loaded") == 0) {
    if (m != NULL && json_is_true(json_object_get(ev->reply, "model_loaded")))
      m->loads++;
    char engine[32];
    const char *colon = strchr(w->control_key, ':');
    snprintf(engine, sizeof engine, "%.*s", colon ? (int)(colon - w->control_key) : 0, w->control_key);
    if (json_is_true(json_object_get(ev->reply, "model_loaded")))
      op_estimates_learn_model(s->estimates, engine, colon ? colon + 1 : "",
                               (uint64_t)json_integer_value(json_object_get(ev->reply, "model_footprint_kb")) * 1024u);
  } else if (op != NULL && strcmp(op, "unloaded") == 0) {
    if (m != NULL && json_is_true(json_object_get(ev->reply, "unloaded")))
      m->unloads[w->control_reason]++;
    forget_model(w, w->control_key);
    w->pss = op_mem_pss(ev->pid); /* what it freed counts now, not at the next sample */
  } else {
    const char *msg =
        ev->type == OP_SUP_EV_REPLY ? json_string_value(json_object_get(ev->reply, "message")) : ev->message;
    op_log_warn("model %s: %s failed: %s", w->control_key, w->control_load ? "loading" : "unloading",
                msg ? msg : "no reason given");
    if (w->control_load) {
      forget_model(w, w->control_key);
      if (m != NULL)
        m->load_wanted = 0; /* a failed warm-up is logged, never fatal, not retried in a loop */
    }
  }
  w->control_key[0] = '\0';
}

/* Recycling, under a budget: idle workers whose policy says they are done
 * exit now (a page in flight is never cut short: only idle ones are looked at). */
static void sweep(op_sched_t *s) {
  double now = op_wall_time_s();
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    wmem_t *w = idle_worker(s, i, &info);
    if (w == NULL)
      continue;
    if (w->last_used_s == 0)
      w->last_used_s = now; /* first seen idle: its idle time starts now */
    const op_model_policy_t *pol = w->policy;
    const char *why = w->retire ? w->retire_why : NULL;
    if (why == NULL && w->bound_task != 0 && task_by_id(s, w->bound_task) == NULL)
      why = "its task ended (isolate: per_task)";
    if (why == NULL && pol != NULL && pol->max_tasks > 0 && w->tasks_run >= pol->max_tasks &&
        !task_has_queued(task_by_id(s, w->last_task_id)))
      why = "it ran max_tasks tasks";
    if (why == NULL && pol != NULL && pol->idle_exit_s > 0 && now - w->last_used_s >= pol->idle_exit_s)
      why = "it was idle past idle_exit";
    if (why == NULL && pol == NULL && info.jobs_done == 0 && !any_queued(s))
      why = "it was started for work that another worker took, or that never came"; /* on demand only */
    if (why != NULL && op_supervisor_retire(s->sup, i) == 0) {
      s->recycled++;
      s->worker_ends[OP_SCHED_END_RECYCLE]++;
      op_log_info("recycling worker %u (pid %d): %s", i, (int)info.pid, why);
      drop_models(s, w, UNLOAD_RECYCLE);
      continue;
    }
    /* A model idle past its keep_alive, or one an admin unloads, leaves the worker. */
    for (unsigned k = 0; k < w->n_models; k++) {
      const mstat_t *m = mstat(s, w->models[k]);
      double keep = key_policy(s, w->models[k])->keep_alive_s;
      int admin = m != NULL && m->unload_wanted;
      if (admin || now - w->model_used[k] >= keep) {
        send_control(s, i, w->models[k], 0, admin ? UNLOAD_ADMIN : UNLOAD_KEEP_ALIVE);
        break;
      }
    }
  }
  /* An admin's unload stands until no worker holds the model (busy holders
   * are asked when their page ends), or a page uses it again. */
  for (unsigned m = 0; m < s->n_mstats; m++) {
    int held = 0;
    for (unsigned i = 0; i < s->n_wmem && !held; i++) {
      op_worker_info_t info;
      op_supervisor_worker(s->sup, i, &info);
      held = info.pid > 0 && s->wmem[i].pid == info.pid && holds_model(&s->wmem[i], s->mstats[m].key);
    }
    if (!held)
      s->mstats[m].unload_wanted = 0;
  }
  load_wanted(s);
}

/* Tasks restored after a restart with every page already ended: only the results remain. */
static void finish_restored(op_sched_t *s) {
  for (size_t i = 0; i < s->n_tasks; i++) {
    op_task_t *t = s->tasks[i];
    if (t->stage == STAGE_PAGES && t->n_pages > 0 && t->pages_done + t->pages_failed == t->n_pages) {
      pages_ended(s, t);
      i = (size_t)-1; /* the list may have changed */
    }
  }
}

int op_sched_step(op_sched_t *s, int timeout_ms, op_error_t *err) {
  finish_restored(s);
  if (s->cfg.budget_bytes > 0)
    sweep(s);
  dispatch(s);
  op_sup_event_t ev;
  int rc = op_supervisor_poll(s->sup, timeout_ms, &ev, err);
  if (rc <= 0)
    return rc;
  if (ev.worker_id < s->n_wmem) {
    after_job(s, ev.worker_id, &ev);
    if (ev.type == OP_SUP_EV_LOST) {
      drop_models(s, &s->wmem[ev.worker_id], UNLOAD_CRASH);
      s->worker_ends[s->wmem[ev.worker_id].killed_for_memory ? OP_SCHED_END_MEMORY
                     : ev.code == OP_ETIMEOUT                ? OP_SCHED_END_TIMEOUT
                                                             : OP_SCHED_END_CRASH]++;
    }
  }
  uintptr_t ctx = (uintptr_t)ev.job_ctx;
  if (ev.job_ctx == &s->control)
    on_control_event(s, &ev);
  else if (ctx & 1u)
    on_stage_event(s, (op_task_t *)(ctx & ~(uintptr_t)1u), &ev);
  else
    on_page_event(s, (op_page_job_t *)ev.job_ctx, &ev);
  op_sup_event_dispose(&ev);
  if (s->cfg.budget_bytes > 0)
    sweep(s); /* before dispatch: a worker due to retire goes for its own reason */
  dispatch(s);
  return 1;
}

/* ---- the model manager, seen from outside ---- */

int op_sched_model_request(op_sched_t *s, const op_model_policy_t *pol, int load) {
  char key[96];
  snprintf(key, sizeof key, "%.31s:%.63s", pol->engine, pol->lang);
  mstat_t *m = mstat(s, key);
  if (m == NULL)
    return OP_ENOMEM;
  if (load) {
    m->load_wanted = 1;
    m->unload_wanted = 0;
  } else {
    m->unload_wanted = 1;
    m->load_wanted = 0;
  }
  return 0;
}

static json_t *model_json(op_sched_t *s, const char *key, const op_model_policy_t *pol) {
  const mstat_t *m = mstat(s, key);
  unsigned holders = 0, in_use = 0;
  for (unsigned i = 0; i < s->n_wmem; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    holders += info.pid > 0 && s->wmem[i].pid == info.pid && holds_model(&s->wmem[i], key);
  }
  for (size_t i = 0; i < s->n_tasks; i++) {
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++) {
      const op_page_job_t *p = &s->tasks[i]->pages[k];
      char pk[96];
      if (p->state != OP_PAGE_RUNNING)
        continue;
      model_key(s, s->tasks[i], p, pk, sizeof pk);
      in_use += strcmp(pk, key) == 0;
    }
  }
  char engine[32];
  const char *colon = strchr(key, ':');
  snprintf(engine, sizeof engine, "%.*s", colon ? (int)(colon - key) : 0, key);
  int failed = m != NULL && m->failed_s > 0 && op_wall_time_s() - m->failed_s < MODEL_RETRY_S;
  json_t *unloads = json_object();
  for (int r = 0; r < 5; r++)
    json_object_set_new(unloads, unload_names[r], json_integer(m ? m->unloads[r] : 0));
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:i, s:o, s:i, s:o, s:f, s:b, s:i, s:I, s:s?, s:i, "
      "s:{s:i, s:I, s:f, s:s}}",
      "name", pol && pol->name[0] ? pol->name : key, "engine", engine, "languages", colon ? colon + 1 : "", "device",
      pol ? pol->device : "cpu", "state",
      holders > 0 ? "loaded"
      : failed    ? "failed"
                  : "unloaded",
      "workers", (int)holders, "memory_bytes",
      (json_int_t)(holders * op_estimate_model(s->estimates, engine, colon ? colon + 1 : "")), "refcount", (int)in_use,
      "last_used", op_time_json(m ? m->last_use_s : 0), "loads", (int)(m ? m->loads : 0), "unloads", unloads,
      "keep_alive_s", pol ? pol->keep_alive_s : 300.0, "preload", pol ? pol->preload : 0, "max_concurrent",
      pol ? (int)pol->max_concurrent : 0, "memory_limit_bytes", (json_int_t)(pol ? pol->memory_limit : 0), "fallback",
      pol && pol->fallback[0] ? pol->fallback : NULL, "batch", pol ? (int)pol->batch : 1, "recycle", "max_tasks",
      pol ? (int)pol->max_tasks : 0, "max_memory_growth_bytes", (json_int_t)(pol ? pol->max_memory_growth : 0),
      "idle_exit_s", pol ? pol->idle_exit_s : 0.0, "isolate", pol && pol->isolate_per_task ? "per_task" : "none");
  if (j != NULL && m != NULL && m->failure[0]) /* the last load failure, kept after its cooldown */
    json_object_set_new(j, "last_error", json_string(m->failure));
  return j;
}

json_t *op_sched_models_json(op_sched_t *s) {
  json_t *list = json_array();
  char key[96];
  for (unsigned i = 0; i < s->cfg.n_policies; i++) {
    snprintf(key, sizeof key, "%.31s:%.63s", s->cfg.policies[i].engine, s->cfg.policies[i].lang);
    json_array_append_new(list, model_json(s, key, &s->cfg.policies[i]));
  }
  for (unsigned i = 0; i < s->n_mstats; i++) /* models used without a declaration */
    if (key_policy(s, s->mstats[i].key) == &s->default_policy)
      json_array_append_new(list, model_json(s, s->mstats[i].key, NULL));
  return list;
}

json_t *op_sched_history_json(op_sched_t *s, unsigned every, unsigned last) {
  json_t *samples = json_array();
  unsigned n = s->ring_n < last ? s->ring_n : last;
  for (unsigned k = 0; k < n; k += every ? every : 1) {
    unsigned i = (s->ring_next + HISTORY - n + k) % HISTORY;
    json_array_append_new(
        samples, json_pack("[f, I, I]", s->ring[i].t, (json_int_t)s->ring[i].used, (json_int_t)s->ring[i].reserved));
  }
  return samples;
}

json_t *op_sched_report_json(op_sched_t *s) {
  json_t *samples = op_sched_history_json(s, 1, REPORT_SAMPLES);
  /* The pages in flight, largest reservation first (a few: the likely culprits). */
  const op_page_job_t *top[10] = {0};
  unsigned n = 0;
  for (size_t i = 0; i < s->n_tasks; i++) {
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++) {
      const op_page_job_t *p = &s->tasks[i]->pages[k];
      if (p->state != OP_PAGE_RUNNING)
        continue;
      unsigned at = n < 10 ? n++ : 10;
      while (at > 0 && top[at - 1]->estimate_bytes < p->estimate_bytes) {
        if (at < 10)
          top[at] = top[at - 1];
        at--;
      }
      if (at < 10)
        top[at] = p;
    }
  }
  json_t *pages = json_array();
  for (unsigned i = 0; i < n; i++) {
    const op_page_job_t *p = top[i];
    const wmem_t *w = p->worker_id < s->n_wmem ? &s->wmem[p->worker_id] : NULL;
    json_array_append_new(pages, json_pack("{s:I, s:i, s:i, s:i, s:I, s:i, s:I, s:f}", "task", (json_int_t)p->task->id,
                                           "page", (int)p->index + 1, "width", (int)p->width_px, "height",
                                           (int)p->height_px, "estimated_memory_bytes", (json_int_t)p->estimate_bytes,
                                           "worker_pid", (int)p->worker_pid, "worker_used_bytes",
                                           (json_int_t)(w ? w->pss : 0), "running_s", op_wall_time_s() - p->started_s));
  }
  return json_pack("{s:s, s:b, s:i, s:i, s:i, s:o, s:o}", "level", op_mem_level_name(s->level), "refusing", s->refusing,
                   "warnings", (int)s->warnings, "criticals", (int)s->criticals, "deferred_tasks",
                   (int)s->deferred_tasks, "pages_in_flight", pages, "samples", samples);
}
