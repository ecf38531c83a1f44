/*
 * model_manager.c: the model manager, seen from the scheduler.
 *
 * Each worker keeps its own cache of up to four loaded models; the scheduler
 * mirrors it (op__worker_t.models) and decides when a model leaves: idle past
 * its keep_alive, least recently used first when room is needed, on an
 * admin's unload (idle holders now, busy ones when their page ends: never
 * while in use). Preloads and admin loads go to an idle worker, or a new
 * one, as memory allows. A model that fails to load is not tried again for
 * OP__MODEL_RETRY_S: its pages fail at once with the same reason.
 */
#include "core/sched_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

const char *const op_sched_unload_names[OP_SCHED_UNLOAD_REASONS] = {"keep_alive", "budget", "recycle", "crash",
                                                                    "admin"};

void op_model_key_set(op_model_key_t *key, const char *engine, const char *lang) {
  memset(key, 0, sizeof *key);
  snprintf(key->engine, sizeof key->engine, "%s", engine);
  snprintf(key->lang, sizeof key->lang, "%s", lang);
}

int op_model_key_eq(const op_model_key_t *a, const op_model_key_t *b) {
  return strcmp(a->engine, b->engine) == 0 && strcmp(a->lang, b->lang) == 0;
}

const char *op_model_key_text(const op_model_key_t *key, char *buf) {
  snprintf(buf, OP_MODEL_KEY_TEXT, "%s:%s", key->engine, key->lang);
  return buf;
}

/* The policy of a key: the first declared for its engine and languages, else the defaults. */
static const op_model_policy_t *key_policy(const op_sched_t *s, const op_model_key_t *key) {
  for (unsigned i = 0; i < s->cfg.n_policies; i++)
    if (strcmp(s->cfg.policies[i].engine, key->engine) == 0 && strcmp(s->cfg.policies[i].lang, key->lang) == 0)
      return &s->cfg.policies[i];
  return &s->default_policy;
}

/* ---- what the manager has seen of each model ---- */

/* A full table makes room by forgetting the figures of the undeclared model
 * least recently used that no worker holds and nobody asked to load. */
static op__mstat_t *evict_stat(op_sched_t *s) {
  int best = -1;
  for (unsigned i = 0; i < s->n_mstats; i++) {
    const op__mstat_t *m = &s->mstats[i];
    int held = 0;
    for (unsigned w = 0; w < s->n_workers && !held; w++)
      held = op__holds_model(&s->workers[w], &m->key);
    if (held || m->load_wanted || m->unload_wanted || key_policy(s, &m->key) != &s->default_policy)
      continue;
    if (best < 0 || m->last_use_s < s->mstats[best].last_use_s)
      best = (int)i;
  }
  if (best < 0)
    return NULL;
  char text[OP_MODEL_KEY_TEXT];
  op_log_debug("models: forgetting the figures of %s to make room for another model's",
               op_model_key_text(&s->mstats[best].key, text));
  return &s->mstats[best];
}

op__mstat_t *op__mstat(op_sched_t *s, const op_model_key_t *key) {
  for (unsigned i = 0; i < s->n_mstats; i++)
    if (op_model_key_eq(&s->mstats[i].key, key))
      return &s->mstats[i];
  op__mstat_t *m = NULL;
  if (s->n_mstats == s->cap_mstats && s->cap_mstats < OP__MAX_MODEL_STATS) {
    unsigned cap = s->cap_mstats ? s->cap_mstats * 2 : 16;
    op__mstat_t *grown = realloc(s->mstats, cap * sizeof *grown);
    if (grown != NULL) {
      s->mstats = grown;
      s->cap_mstats = cap;
    }
  }
  if (s->n_mstats < s->cap_mstats)
    m = &s->mstats[s->n_mstats++];
  else if ((m = evict_stat(s)) == NULL) {
    op_log_warn("models: %u models have figures and none can be forgotten: this one is not counted", s->n_mstats);
    return NULL;
  }
  memset(m, 0, sizeof *m);
  m->key = *key;
  return m;
}

/* ---- what each worker holds ---- */

int op__holds_model(const op__worker_t *w, const op_model_key_t *key) {
  for (unsigned k = 0; k < w->n_models; k++)
    if (op_model_key_eq(&w->models[k], key))
      return 1;
  return 0;
}

void op__note_model(op__worker_t *w, const op_model_key_t *key) {
  unsigned k = 0;
  while (k < w->n_models && !op_model_key_eq(&w->models[k], key))
    k++;
  if (k == w->n_models && w->n_models < OP__WORKER_MODELS)
    w->n_models++;
  if (k == OP__WORKER_MODELS)
    k = OP__WORKER_MODELS - 1; /* the least recent goes, as in the worker */
  memmove(&w->models[1], &w->models[0], k * sizeof w->models[0]);
  memmove(&w->model_used[1], &w->model_used[0], k * sizeof w->model_used[0]);
  w->models[0] = *key;
  w->model_used[0] = op_wall_time_s();
}

void op__forget_model(op__worker_t *w, const op_model_key_t *key) {
  for (unsigned k = 0; k < w->n_models; k++) {
    if (op_model_key_eq(&w->models[k], key)) {
      memmove(&w->models[k], &w->models[k + 1], (w->n_models - k - 1) * sizeof w->models[0]);
      memmove(&w->model_used[k], &w->model_used[k + 1], (w->n_models - k - 1) * sizeof w->model_used[0]);
      w->n_models--;
      return;
    }
  }
}

void op__drop_models(op_sched_t *s, op__worker_t *w, op__unload_t reason) {
  for (unsigned k = 0; k < w->n_models; k++) {
    op__mstat_t *m = op__mstat(s, &w->models[k]);
    if (m != NULL)
      m->unloads[reason]++;
  }
  w->n_models = 0;
}

uint64_t op__held_bytes(op_sched_t *s, const op__worker_t *w) {
  uint64_t held = op_estimate_worker(s->estimates);
  for (unsigned k = 0; k < w->n_models; k++)
    held += op_estimate_model(s->estimates, w->models[k].engine, w->models[k].lang);
  return held;
}

/* ---- load and unload jobs ---- */

/* Sends a load or unload job for key to idle worker slot. */
static void send_control(op_sched_t *s, unsigned slot, const op_model_key_t *key, int load, op__unload_t reason) {
  json_t *job = json_pack("{s:s, s:{s:s, s:s, s:i}}", "op", load ? "load" : "unload", "model", "engine", key->engine,
                          "lang", key->lang, "oem", 3);
  if (job == NULL)
    return;
  if (op_supervisor_dispatch_to(s->sup, slot, job, 120000, &s->control) >= 0) {
    op__worker_t *w = &s->workers[slot];
    w->control_key = *key;
    w->control_busy = 1;
    w->control_load = load;
    w->control_reason = reason;
    op_budget_release(&s->budget, slot);
    if (load)
      op__note_model(w, key); /* reserved from now on */
  }
  json_decref(job);
}

int op__unload_lru(op_sched_t *s, const op_model_key_t *keep, int gpu, const char *why) {
  int best = -1;
  unsigned best_k = 0;
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op__worker_t *w = op__idle_worker(s, i, &info);
    for (unsigned k = 0; w != NULL && (gpu == 0 || w->gpu == gpu) && k < w->n_models && !w->retire; k++) {
      if (keep != NULL && op_model_key_eq(&w->models[k], keep))
        continue;
      if (best < 0 || w->model_used[k] < s->workers[best].model_used[best_k]) {
        best = (int)i;
        best_k = k;
      }
    }
  }
  if (best < 0)
    return 0;
  op_model_key_t key = s->workers[best].models[best_k];
  char text[OP_MODEL_KEY_TEXT];
  op_log_info("memory: unloading model %s from worker %d %s (least recently used)", op_model_key_text(&key, text), best,
              why);
  send_control(s, (unsigned)best, &key, 0, OP__UNLOAD_BUDGET);
  return 1;
}

void op__model_used(op_sched_t *s, const op_model_key_t *key) {
  op__mstat_t *m = op__mstat(s, key);
  if (m != NULL) {
    m->last_use_s = op_wall_time_s();
    m->unload_wanted = 0; /* used again after an unload request: the use wins */
  }
}

int op__model_failed(op_sched_t *s, op_task_t *t, op_page_job_t *p) {
  op_model_key_t key;
  op__job_key(s, t, p, &key);
  const op__mstat_t *m = op__mstat(s, &key);
  double left = m != NULL && m->failed_s > 0 ? m->failed_s + OP__MODEL_RETRY_S - op_wall_time_s() : 0;
  if (left <= 0)
    return 0;
  op_error_t e;
  op_error_set(&e, OP_EUSAGE, "model_unavailable", "%s (it failed to load %.0f s ago; tried again in %.0f s)",
               m->failure, OP__MODEL_RETRY_S - left, left);
  for (size_t i = 0; i < t->n_pages; i++)
    if (t->pages[i].state == OP_PAGE_QUEUED)
      op__page_fail(s, &t->pages[i], &e);
  return 1;
}

void op__model_load_failed(op_sched_t *s, unsigned slot, const op_model_key_t *key, const char *message) {
  if (slot < s->n_workers)
    op__forget_model(&s->workers[slot], key); /* noted when the page was sent; never loaded */
  op__mstat_t *m = op__mstat(s, key);
  if (m != NULL) {
    m->failed_s = op_wall_time_s();
    snprintf(m->failure, sizeof m->failure, "%.250s", message);
  }
}

void op__model_loaded(op_sched_t *s, const op_model_key_t *key, json_t *reply) {
  op_estimates_learn_model(s->estimates, key->engine, key->lang,
                           (uint64_t)json_integer_value(json_object_get(reply, "model_footprint_kb")) * 1024u);
  op__mstat_t *m = op__mstat(s, key);
  if (m != NULL)
    m->loads++;
}

void op__on_control_event(op_sched_t *s, const op_sup_event_t *ev) {
  if (ev->worker_id >= s->n_workers)
    return;
  op__worker_t *w = &s->workers[ev->worker_id];
  const char *op = ev->type == OP_SUP_EV_REPLY ? json_string_value(json_object_get(ev->reply, "op")) : NULL;
  char text[OP_MODEL_KEY_TEXT];
  w->control_busy = 0;
  if (op != NULL && strcmp(op, "loaded") == 0) {
    if (json_is_true(json_object_get(ev->reply, "model_loaded")))
      op__model_loaded(s, &w->control_key, ev->reply);
  } else if (op != NULL && strcmp(op, "unloaded") == 0) {
    op__mstat_t *m = op__mstat(s, &w->control_key);
    if (m != NULL && json_is_true(json_object_get(ev->reply, "unloaded")))
      m->unloads[w->control_reason]++;
    op__forget_model(w, &w->control_key);
    w->pss = op_mem_pss(ev->pid); /* what it freed counts now, not at the next sample */
  } else {
    const char *msg =
        ev->type == OP_SUP_EV_REPLY ? json_string_value(json_object_get(ev->reply, "message")) : ev->message;
    op_log_warn("model %s: %s failed: %s", op_model_key_text(&w->control_key, text),
                w->control_load ? "loading" : "unloading", msg ? msg : "no reason given");
    if (w->control_load) {
      op__forget_model(w, &w->control_key);
      op__mstat_t *m = op__mstat(s, &w->control_key);
      if (m != NULL)
        m->load_wanted = 0; /* a failed warm-up is logged, never fatal, not retried in a loop */
    }
  }
}

void op__sweep_models(op_sched_t *s, unsigned slot, op__worker_t *w, double now) {
  /* A model idle past its keep_alive, or one an admin unloads, leaves the worker. */
  for (unsigned k = 0; k < w->n_models; k++) {
    const op__mstat_t *m = op__mstat(s, &w->models[k]);
    double keep = key_policy(s, &w->models[k])->keep_alive_s;
    int admin = m != NULL && m->unload_wanted;
    if (admin || now - w->model_used[k] >= keep) {
      op_model_key_t key = w->models[k];
      send_control(s, slot, &key, 0, admin ? OP__UNLOAD_ADMIN : OP__UNLOAD_KEEP_ALIVE);
      return;
    }
  }
}

/* Whether a live worker holds key. */
static int held_anywhere(op_sched_t *s, const op_model_key_t *key) {
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    if (info.pid > 0 && s->workers[i].pid == info.pid && op__holds_model(&s->workers[i], key))
      return 1;
  }
  return 0;
}

/* Preloads and an admin's loads: into an idle worker that lacks the model,
 * or a new one, when its footprint fits. */
static void load_one(op_sched_t *s, op__mstat_t *st) {
  int pick = -1, starting = 0, free_slot = 0, freeing = 0;
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    op__worker_t *w = op__worker_of(s, i, info.pid);
    starting += info.starting;
    free_slot |= info.pid == 0;
    freeing += info.exiting || (info.busy && w->control_busy && !w->control_load);
    if (info.idle && pick < 0 && w->bound_task == 0 && !w->retire)
      pick = (int)i;
  }
  uint64_t need = op_estimate_model(s->estimates, st->key.engine, st->key.lang);
  if (pick < 0)
    need += op_estimate_worker(s->estimates);
  if (s->cfg.budget_bytes > 0 && op__total_reserved(s) + need > s->cfg.budget_bytes) {
    if (freeing == 0)
      op__unload_lru(s, &st->key, 0, "to make room"); /* room is made as for a page; it waits meanwhile */
    return;
  }
  if (pick >= 0)
    send_control(s, (unsigned)pick, &st->key, 1, 0);
  else if (free_slot && starting == 0)
    op_supervisor_start_worker(s->sup);
}

void op__manage_models(op_sched_t *s) {
  for (unsigned m = 0; m < s->n_mstats; m++) {
    op__mstat_t *st = &s->mstats[m];
    int held = held_anywhere(s, &st->key);
    /* An admin's unload stands until no worker holds the model (busy holders
     * are asked when their page ends), or a page uses it again. */
    if (!held)
      st->unload_wanted = 0;
    if (held)
      st->load_wanted = 0;
    if (st->load_wanted && s->pressure.level == OP_MEM_OK)
      load_one(s, st);
  }
}

/* ---- seen from outside ---- */

int op_sched_model_request(op_sched_t *s, const op_model_policy_t *pol, int load) {
  op_model_key_t key;
  op_model_key_set(&key, pol->engine, pol->lang);
  op__mstat_t *m = op__mstat(s, &key);
  if (m == NULL)
    return OP_ELIMIT;
  m->load_wanted = load;
  m->unload_wanted = !load;
  return 0;
}

static void model_view(op_sched_t *s, const op_model_key_t *key, const op_model_policy_t *pol, op_sched_model_t *v) {
  memset(v, 0, sizeof *v);
  v->key = *key;
  v->policy = pol;
  const op__mstat_t *m = op__mstat(s, key);
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    v->workers += info.pid > 0 && s->workers[i].pid == info.pid && op__holds_model(&s->workers[i], key);
  }
  for (size_t i = 0; i < s->n_tasks; i++) {
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++) {
      const op_page_job_t *p = &s->tasks[i]->pages[k];
      op_model_key_t pk;
      if (p->state != OP_PAGE_RUNNING)
        continue;
      op__job_key(s, s->tasks[i], p, &pk);
      v->refcount += op_model_key_eq(&pk, key);
    }
  }
  int failed = m != NULL && m->failed_s > 0 && op_wall_time_s() - m->failed_s < OP__MODEL_RETRY_S;
  v->state = v->workers > 0 ? OP_MODEL_LOADED : failed ? OP_MODEL_FAILED : OP_MODEL_UNLOADED;
  v->memory_bytes = v->workers * op_estimate_model(s->estimates, key->engine, key->lang);
  if (m != NULL) {
    v->last_used_s = m->last_use_s;
    v->loads = m->loads;
    memcpy(v->unloads, m->unloads, sizeof v->unloads);
    snprintf(v->last_error, sizeof v->last_error, "%s", m->failure);
  }
}

op_sched_model_t *op_sched_models(op_sched_t *s, size_t *n) {
  /* Views made first: making one may add a model's figures. */
  for (unsigned i = 0; i < s->cfg.n_policies; i++) {
    op_model_key_t key;
    op_model_key_set(&key, s->cfg.policies[i].engine, s->cfg.policies[i].lang);
    op__mstat(s, &key);
  }
  op_sched_model_t *list = calloc(s->cfg.n_policies + s->n_mstats + 1, sizeof *list);
  *n = 0;
  if (list == NULL)
    return NULL;
  for (unsigned i = 0; i < s->cfg.n_policies; i++) {
    op_model_key_t key;
    op_model_key_set(&key, s->cfg.policies[i].engine, s->cfg.policies[i].lang);
    model_view(s, &key, &s->cfg.policies[i], &list[(*n)++]);
  }
  for (unsigned i = 0; i < s->n_mstats; i++) /* models used without a declaration */
    if (key_policy(s, &s->mstats[i].key) == &s->default_policy)
      model_view(s, &s->mstats[i].key, NULL, &list[(*n)++]);
  return list;
}
