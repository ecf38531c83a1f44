/*
 * outcome.c: what a job's end means.
 *
 * The supervisor reports each dispatched job exactly once, as a reply or a
 * loss. A page's reply is done (its cost is learned), out of memory (again
 * with half the batch, then on its model's fallback), a bad page or an
 * unloadable model (failed at once), or an engine error (tried again). A
 * lost page (its worker died, timed out or passed its memory cap) runs again
 * on another worker until its attempts run out. When every page has ended
 * the task is merged, assembled and ended; its end is only marked here and
 * its callback runs after the step (sched.c).
 */
#include "core/sched_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

void op__task_fail(op_sched_t *s, op_task_t *t, const op_error_t *e) {
  if (t->ended)
    return;
  if (t->error.code == 0)
    t->error = *e;
  t->status = OP_TASK_FAILED;
  op__task_ended(s, t);
}

/* The task's failure: its first failed page's, named by page when it has several. */
static void first_page_failure(const op_task_t *t, op_error_t *e) {
  for (size_t i = 0; i < t->n_pages; i++) {
    if (t->pages[i].state != OP_PAGE_FAILED)
      continue;
    const op_error_t *pe = &t->pages[i].error;
    char named[32];
    snprintf(named, sizeof named, "page %u: ", t->pages[i].index + 1);
    if (t->n_pages > 1 && strncmp(pe->message, named, strlen(named)) != 0) /* the decoder's messages name it already */
      op_error_set(e, pe->code, op_reason_name(pe->why), "%s%.700s", named, pe->message);
    else
      *e = *pe;
    return;
  }
}

void op__pages_ended(op_sched_t *s, op_task_t *t) {
  if (t->ended)
    return; /* failed meanwhile (its record could not be written, say) */
  if (t->resumed && t->stage == OP_STAGE_PAGES && t->pages_done > 0 && op__results_written(t))
    t->stage = OP_STAGE_DONE; /* nothing left to merge or assemble */
  if (t->pages_done > 0 && (t->opts.formats & OP_FMT_PDF) && t->stage == OP_STAGE_PAGES) {
    t->stage = OP_STAGE_MERGE;
    t->stage_attempts = 0;
    t->stage_crashes = 0;
    return; /* the merge job is dispatched like any other */
  }
  op_error_t e;
  op_error_clear(&e);
  if (t->pages_done > 0 && !(t->resumed && op__results_written(t)) && op__assemble(t, &e) < 0) {
    op__task_fail(s, t, &e);
    return;
  }
  if (t->pages_failed > 0) {
    first_page_failure(t, &e);
    op__task_fail(s, t, &e);
    return;
  }
  t->status = OP_TASK_SUCCEEDED;
  op__task_ended(s, t);
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
    op__pages_ended(s, t);
}

void op__page_fail(op_sched_t *s, op_page_job_t *p, const op_error_t *e) {
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
  for (size_t i = 0; i < t->n_pages && t->stage == OP_STAGE_PAGES; i++)
    if (t->pages[i].state == OP_PAGE_QUEUED)
      op__page_fail(s, &t->pages[i], e);
}

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

/* ---- a probe or merge ---- */

static void on_probe_reply(op_sched_t *s, op_task_t *t, json_t *reply) {
  json_t *pages = json_object_get(reply, "pages");
  size_t n = json_array_size(pages);
  op_error_t e;
  if (n == 0) {
    op_error_set(&e, OP_EBADINPUT, "bad_input", "the document has no pages to OCR");
    op__task_fail(s, t, &e);
    return;
  }
  t->pages = calloc(n, sizeof *t->pages);
  if (t->pages == NULL) {
    op_error_set(&e, OP_ENOMEM, NULL, "out of memory for %zu pages", n);
    op__task_fail(s, t, &e);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *row = json_array_get(pages, i);
    op_page_job_t *p = &t->pages[i];
    p->task = t;
    p->index = (uint32_t)json_integer_value(json_array_get(row, 0));
    p->width_px = (uint32_t)json_integer_value(json_array_get(row, 1));
    p->height_px = (uint32_t)json_integer_value(json_array_get(row, 2));
    p->depth = (int)json_integer_value(json_array_get(row, 5));
    p->state = OP_PAGE_QUEUED;
    p->batch = t->policy->batch;
    p->estimate_bytes = op_estimate_page(s->estimates, t->opts.model.engine, t->opts.model.lang,
                                         (uint64_t)p->width_px * p->height_px, p->depth);
  }
  t->n_pages = n;
  t->page_count = (uint32_t)json_integer_value(json_object_get(reply, "page_count"));
  t->stage = OP_STAGE_PAGES;
}

/* What a worker killed by its seccomp filter did, for the task's error. */
#define SANDBOX_KILL                                                                                                   \
  "the worker made a system call its sandbox forbids (docs/security.md) and was killed; the page is not tried again"

/* Why a lost job's worker died of memory, or NULL when it did not: the
 * monitor killed it past its cap, the kernel's OOM killer did (monitor.c), or
 * it died by a signal (an allocation failing under its limit aborts C++
 * engines) with its last sample near its cap. */
static const char *lost_to_memory(op_sched_t *s, const op_model_policy_t *pol, const op_sup_event_t *ev) {
  if (ev->worker_id >= s->n_workers || ev->code == OP_ETIMEOUT)
    return NULL;
  const op__worker_t *w = &s->workers[ev->worker_id];
  if (w->pid != ev->pid)
    return NULL;
  if (w->killed_for_memory)
    return "past its memory limit";
  if (w->oom_killed)
    return "by the kernel's OOM killer";
  uint64_t cap = pol->memory_limit;
  int sig = ev->term_signal;
  if (cap > 0 && (sig == SIGABRT || sig == SIGSEGV || sig == SIGBUS || sig == SIGKILL) &&
      (w->pss >= cap / 10 * 8 || w->last_rss >= cap / 10 * 8))
    return "near its memory limit";
  return NULL;
}

void op__on_stage_event(op_sched_t *s, op_task_t *t, const op_sup_event_t *ev) {
  op_error_t e;
  t->stage_running = 0;
  const char *what = t->stage == OP_STAGE_PROBE ? "reading the document" : "merging the PDF";
  if (ev->type == OP_SUP_EV_REPLY) {
    const char *op = json_string_value(json_object_get(ev->reply, "op"));
    note_memory(t, ev->reply, NULL);
    if (op != NULL && strcmp(op, "failed") == 0) {
      error_from_reply(ev->reply, &e);
      op__task_fail(s, t, &e);
    } else if (t->stage == OP_STAGE_PROBE) {
      on_probe_reply(s, t, ev->reply);
    } else {
      t->stage = OP_STAGE_DONE; /* merge done: assemble the rest */
      op__pages_ended(s, t);
    }
    return;
  }
  if (ev->code == OP_ECRASH && ev->term_signal == SIGSYS) {
    op_error_set(&e, OP_ECRASH, "sandbox_violation", "%s: %s: %s", what, ev->message, SANDBOX_KILL);
    op__task_fail(s, t, &e);
    return;
  }
  t->stage_crashes++;
  t->stage_timeouts += ev->code == OP_ETIMEOUT;
  if (t->stage_crashes < s->cfg.max_crash_attempts && t->stage_attempts < s->cfg.max_attempts &&
      t->stage_timeouts < OP_SCHED_MAX_TIMEOUTS) {
    op_log_task(OP_LOG_WARN, t->log_id, 0, "task %s: %s: %s; trying again", t->log_id, what, ev->message);
    return;
  }
  /* A document that kills its reader every time is bad input; a SIGKILL is
   * not a parser's doing, but the kernel's, an operator's or a memory cap's. */
  const char *memory = lost_to_memory(s, t->policy, ev);
  int code = memory != NULL                                                                      ? OP_ENOMEM
             : t->stage == OP_STAGE_PROBE && ev->code == OP_ECRASH && ev->term_signal != SIGKILL ? OP_EBADINPUT
                                                                                                 : ev->code;
  op_error_set(&e, code, NULL, "%s failed %u times; the last time %s%s%s", what, t->stage_attempts, ev->message,
               memory ? ", " : "", memory ? memory : "");
  op__task_fail(s, t, &e);
}

/* ---- a page ---- */

/* Learns from a page's reply what its model and its pixels cost. */
static void learn(op_sched_t *s, const op_task_t *t, const op_page_job_t *p, json_t *r) {
  uint64_t pixels = (uint64_t)json_integer_value(json_object_get(r, "width")) *
                    (uint64_t)json_integer_value(json_object_get(r, "height"));
  int depth = (int)json_integer_value(json_object_get(r, "depth"));
  json_int_t peak = json_integer_value(json_object_get(r, "peak_rss_kb"));
  json_int_t base = json_integer_value(json_object_get(r, "page_base_rss_kb"));
  if (base > 0 && peak >= base)
    op_estimates_learn_page(s->estimates, t->opts.model.engine, t->opts.model.lang, pixels, depth,
                            (uint64_t)(peak - base) * 1024u);
  if (json_is_true(json_object_get(r, "model_loaded"))) {
    op_model_key_t key;
    op__job_key(s, t, p, &key);
    op__model_loaded(s, &key, r);
  }
}

/* A page ran out of memory: again with half the batch, then on the model's
 * fallback, within the attempt cap; then it fails with out_of_memory. */
static void out_of_memory(op_sched_t *s, op_page_job_t *p, const char *message) {
  op_task_t *t = p->task;
  s->oom_events++;
  const op_model_policy_t *pol = op__page_policy(s, t, p);
  unsigned batch = p->batch ? p->batch : pol->batch;
  char why[512];
  if (p->attempts < s->cfg.max_attempts && batch > 1) {
    p->batch = batch / 2;
    snprintf(why, sizeof why, "out of memory with batch %u (%s); trying batch %u", batch, message, p->batch);
  } else if (p->attempts < s->cfg.max_attempts && t->policy->fallback[0] && !p->on_fallback) {
    p->on_fallback = 1;
    p->batch = op__page_policy(s, t, p)->batch;
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
    op__page_fail(s, p, &e);
    return;
  }
  op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s page %u: %s", t->log_id, p->index + 1, why);
  requeue(s, p, why);
}

/* A page's reply that is not "done": out of memory, a final failure, or one worth another try. */
static void page_replied_failure(op_sched_t *s, op_page_job_t *p, const op_sup_event_t *ev) {
  op_task_t *t = p->task;
  op_error_t e;
  error_from_reply(ev->reply, &e);
  if (e.why == OP_REASON_OUT_OF_MEMORY || e.code == OP_ENOMEM) {
    out_of_memory(s, p, e.message);
    return;
  }
  /* Bad pages and unloadable models fail at once; an engine error may pass. */
  int unloadable = e.why == OP_REASON_MODEL_UNAVAILABLE;
  int final = e.why == OP_REASON_SANDBOX_VIOLATION || e.code == OP_EBADINPUT || e.code == OP_ELIMIT ||
              e.code == OP_EUNSUPPORTED || e.code == OP_EUSAGE || unloadable || p->attempts >= s->cfg.max_attempts;
  if (!final) {
    op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s page %u: %s; trying again", t->log_id, p->index + 1,
                e.message);
    requeue(s, p, e.message);
    return;
  }
  if (unloadable) {
    op_model_key_t key;
    op__job_key(s, t, p, &key);
    op__model_load_failed(s, ev->worker_id, &key, e.message);
  }
  if (unloadable || e.code == OP_EUSAGE)
    fail_queued_pages(s, t, &e); /* the others would fail the same way */
  op__page_fail(s, p, &e);
}

/* A page's worker was lost: it died, or was killed for its timeout or its memory. */
static void page_lost(op_sched_t *s, op_page_job_t *p, const op_sup_event_t *ev) {
  op_error_t e;
  const char *memory = lost_to_memory(s, op__page_policy(s, p->task, p), ev);
  if (memory != NULL) {
    char why[320];
    snprintf(why, sizeof why, "%s, %s", ev->message, memory);
    out_of_memory(s, p, why);
    return;
  }
  if (ev->code == OP_ECRASH && ev->term_signal == SIGSYS) { /* the same document would do it again */
    op_error_set(&e, OP_ECRASH, "sandbox_violation", "%s: %s", ev->message, SANDBOX_KILL);
    op__page_fail(s, p, &e);
    return;
  }
  if (ev->code == OP_ECRASH)
    p->crash_attempts++;
  if (ev->code == OP_ETIMEOUT)
    p->timeout_attempts++;
  if (ev->code == OP_ETIMEOUT && p->timeout_attempts >= OP_SCHED_MAX_TIMEOUTS) {
    op_error_set(&e, OP_ETIMEOUT, "timeout",
                 "the page ran past the page timeout %u times, each on a fresh worker: it is not tried again "
                 "(the last time %s)",
                 p->timeout_attempts, ev->message);
    op__page_fail(s, p, &e);
  } else if (ev->code == OP_ECRASH && p->crash_attempts >= s->cfg.max_crash_attempts) {
    op_error_set(&e, OP_ECRASH, "worker_crashed", "the page crashed its worker %u times (the last time %s)",
                 p->crash_attempts, ev->message);
    op__page_fail(s, p, &e);
  } else if (p->attempts >= s->cfg.max_attempts) {
    op_error_set(&e, ev->code, NULL, "the page failed %u times (the last time %s)", p->attempts, ev->message);
    op__page_fail(s, p, &e);
  } else {
    op_log_task(OP_LOG_WARN, p->task->log_id, p->index + 1, "task %s page %u: %s; running it again on another worker",
                p->task->log_id, p->index + 1, ev->message);
    requeue(s, p, ev->message);
  }
}

/* Charges the page's run to its task; once the budget is spent the task
 * fails, its other running pages stopped (1: the event needs nothing more). */
static int charge(op_sched_t *s, op_page_job_t *p) {
  op_task_t *t = p->task;
  if (p->started_s > 0)
    t->run_s += op_wall_time_s() - p->started_s;
  if (s->cfg.task_cpu_budget_s <= 0 || t->run_s <= s->cfg.task_cpu_budget_s || t->ended)
    return 0;
  op_error_t e;
  op_error_set(&e, OP_ETIMEOUT, "timeout",
               "its pages ran %.0f s in all, over the task's budget of %.0f s (server.task_cpu_budget); the last "
               "was page %u",
               t->run_s, s->cfg.task_cpu_budget_s, p->index + 1);
  op_log_task(OP_LOG_WARN, t->log_id, p->index + 1, "task %s: %s", t->log_id, e.message);
  p->state = OP_PAGE_FAILED; /* its run is over: not stopped again */
  p->error = e;
  op_sched_fail(s, t, &e);
  return 1;
}

void op__on_page_event(op_sched_t *s, op_page_job_t *p, const op_sup_event_t *ev) {
  op_task_t *t = p->task;
  if (charge(s, p))
    return;
  if (ev->type != OP_SUP_EV_REPLY) {
    page_lost(s, p, ev);
    return;
  }
  const char *op = json_string_value(json_object_get(ev->reply, "op"));
  note_memory(t, ev->reply, &p->peak_rss_kb);
  if (op == NULL || strcmp(op, "done") != 0) {
    page_replied_failure(s, p, ev);
    return;
  }
  learn(s, t, p, ev->reply);
  p->state = OP_PAGE_DONE;
  p->ocr_ms = json_real_value(json_object_get(ev->reply, "ocr_ms"));
  p->rotated_deg = (int)json_integer_value(json_object_get(ev->reply, "rotated"));
  page_ended(s, p);
}
