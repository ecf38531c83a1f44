/*
 * monitor.c: what the server and its workers really use, and what it changes.
 *
 * Every 200 ms the monitor samples the PSS of the server and each worker and
 * each GPU's VRAM by process (NVML), kills a busy worker past its model's
 * memory_limit (its page is retried as out of memory), and feeds the CPU's
 * pressure (mem/pressure.c). Under critical pressure it frees what does not
 * touch a page in flight: idle models, least recently used first, then idle
 * workers due to recycle. It also answers for memory: the figures admission
 * uses (op_sched_memory) and reports of the pages in flight.
 */
#include "core/sched_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define SAMPLE_EVERY_S 0.2
#define REPORT_SAMPLES 300 /* a memory report holds the last minute */
#define REPORT_PAGES 10    /* ... and the largest pages in flight */

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
    for (unsigned i = 0; i < s->n_workers; i++) {
      op__worker_t *w = &s->workers[i];
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

/* The hard cap's last line: a busy worker past its model's memory_limit is
 * killed, and its page is retried as out of memory. The cap is of the
 * model's device: PSS for a CPU model, VRAM (the last NVML reading) for a GPU one. */
static void enforce_cap(op_sched_t *s, unsigned slot, op__worker_t *w, const op_worker_info_t *info) {
  uint64_t cap = w->policy ? w->policy->memory_limit : 0;
  int on_gpu = w->policy != NULL && strncmp(w->policy->device, "cuda:", 5) == 0;
  uint64_t use = on_gpu ? w->vram : w->pss;
  if (info->busy && cap > 0 && use > cap && !w->killed_for_memory && op_supervisor_kill(s->sup, slot) == 0) {
    w->killed_for_memory = 1;
    op_log_warn("worker %u (pid %d) uses %llu MB%s, past its %llu MB limit: killed", slot, (int)info->pid,
                (unsigned long long)(use >> 20), on_gpu ? " of VRAM" : "", (unsigned long long)(cap >> 20));
  }
}

void op__read_oom_kills(op_sched_t *s) {
  if (s->oom_source != OP_MEM_OOM_UNKNOWN && op_mem_oom_kills(&s->oom_kills) != s->oom_source)
    s->oom_kills = s->oom_start; /* its file went: no kill is seen */
}

/* The kernel's OOM killer ends a process with a SIGKILL that looks like any
 * other, so it is told by the kernel's count of OOM kills: a worker that died
 * of a SIGKILL we did not send, while that count rose since its job was sent
 * (as of the last reading), and the count holds a kill not yet taken to
 * explain another worker's end (workers are reaped in slot order, not in the
 * order they were killed). Where the count is our cgroup's, the kill was of a
 * process in it; where it is the machine's, another process's OOM kill at the
 * moment an operator kills a worker reads as this worker's. */
int op__oom_killed(op_sched_t *s, const op__worker_t *w, const op_sup_event_t *ev) {
  uint64_t count = 0;
  if (ev->code != OP_ECRASH || ev->term_signal != SIGKILL || w->killed_for_memory ||
      s->oom_source == OP_MEM_OOM_UNKNOWN || op_mem_oom_kills(&count) != s->oom_source)
    return 0;
  if (count <= w->oom_base || count - s->oom_start <= s->oom_explained)
    return 0;
  s->oom_explained++;
  op_log_warn("worker (pid %d) was killed by the kernel's OOM killer (the %s's count of OOM kills rose to %llu)",
              (int)ev->pid, s->oom_source == OP_MEM_OOM_CGROUP ? "cgroup" : "machine", (unsigned long long)count);
  return 1;
}

/* Critical: idle models go (least recently used first), then idle workers due to recycle. */
static int relieve(op_sched_t *s) {
  int acted = 0;
  while (op__unload_lru(s, NULL, 0, "under critical memory pressure")) /* each idle holder is busy after its unload */
    acted++;
  return acted + op__retire_due(s, "under critical memory pressure");
}

/* The CPU's level against its budget, and a critical GPU's idle models. */
static void pressure(op_sched_t *s, double now) {
  uint64_t budget = s->cfg.budget_bytes, used = s->server_pss;
  if (budget == 0)
    return;
  for (unsigned i = 0; i < s->n_workers; i++)
    used += s->workers[i].pss;
  unsigned flags = op_pressure_sample(&s->pressure, now, used, op__total_reserved(s), budget);
  if (flags & OP_PRESSURE_ACT)
    flags |= op_pressure_acted(&s->pressure, relieve(s));
  if ((flags & OP_PRESSURE_CHANGED) && s->cfg.on_pressure)
    s->cfg.on_pressure(s->cfg.cb_ctx, s->pressure.level, s->pressure.refusing, used, budget);
  /* A critical GPU: its idle models go (their VRAM with them); its pages go
   * to their fallbacks meanwhile (dispatch.c routes them). */
  for (unsigned g = 0; g < s->cfg.n_gpus && g < OP_SCHED_MAX_GPUS; g++) {
    if (s->gpu[g].level == OP_MEM_CRITICAL && now - s->gpu[g].last_action_s >= s->cfg.cooldown_s) {
      s->gpu[g].last_action_s = now;
      while (op__unload_lru(s, NULL, (int)g + 1, "under critical GPU memory pressure"))
        ;
    }
  }
}

void op__sample(op_sched_t *s, int force) {
  double now = op_wall_time_s();
  if (!force && now - s->last_sample_s < SAMPLE_EVERY_S)
    return;
  s->last_sample_s = now;
  s->server_pss = op_mem_pss(getpid());
  op__read_oom_kills(s);
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    op__worker_t *w = op__worker_of(s, i, info.pid);
    w->pss = info.pid > 0 ? op_mem_pss(info.pid) : 0;
    enforce_cap(s, i, w, &info);
    if (info.idle && info.jobs_done == 0 && !w->learned_base && w->pss > 0) {
      op_estimates_learn_worker(s->estimates, w->pss); /* a fresh worker: no model, no page yet */
      w->learned_base = 1;
    }
  }
  sample_gpus(s);
  pressure(s, now);
}

/* ---- seen from outside ---- */

unsigned op_sched_worker_slots(const op_sched_t *s) {
  return s->n_workers;
}

static void gpu_memory(const op_sched_t *s, op_sched_mem_t *mem) {
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
}

void op_sched_memory(op_sched_t *s, op_sched_mem_t *mem, op_sched_worker_mem_t *workers) {
  op__sample(s, 0);
  memset(mem, 0, sizeof *mem);
  mem->budget_bytes = s->cfg.budget_bytes;
  mem->server_bytes = s->server_pss;
  mem->used_bytes = s->server_pss;
  mem->reserved_bytes = op__total_reserved(s);
  mem->waiting_pages = s->waiting_pages;
  mem->refused_pages = s->refused_pages;
  mem->level = s->pressure.level;
  mem->refusing = s->pressure.refusing;
  mem->warnings = s->pressure.warnings;
  mem->criticals = s->pressure.criticals;
  mem->deferred_tasks = s->deferred_tasks;
  memcpy(mem->worker_ends, s->worker_ends, sizeof mem->worker_ends);
  mem->oom_events = s->oom_events;
  gpu_memory(s, mem);
  for (unsigned i = 0; i < s->n_workers; i++) {
    op_worker_info_t info;
    op_supervisor_worker(s->sup, i, &info);
    op__worker_t *w = op__worker_of(s, i, info.pid);
    mem->used_bytes += w->pss;
    if (workers == NULL)
      continue;
    op_sched_worker_mem_t *o = &workers[i];
    memset(o, 0, sizeof *o);
    o->pid = info.pid;
    o->busy = info.busy;
    o->used_bytes = w->pss;
    o->reserved_bytes = op__worker_reserved(s, i);
    o->pages_done = info.jobs_done;
    o->n_models = w->n_models;
    memcpy(o->models, w->models, sizeof o->models);
    o->gpu = w->gpu - 1;
    o->vram_bytes = w->vram;
    o->sandbox = info.sandbox;
  }
}

json_t *op_sched_history_json(op_sched_t *s, unsigned every, unsigned last) {
  return op_pressure_history_json(&s->pressure, every, last);
}

/* The pages in flight, largest reservation first (a few: the likely culprits); returns how many. */
static unsigned largest_running(const op_sched_t *s, const op_page_job_t **top) {
  unsigned n = 0;
  for (size_t i = 0; i < s->n_tasks; i++) {
    for (size_t k = 0; k < s->tasks[i]->n_pages; k++) {
      const op_page_job_t *p = &s->tasks[i]->pages[k];
      if (p->state != OP_PAGE_RUNNING)
        continue;
      unsigned at = n < REPORT_PAGES ? n++ : REPORT_PAGES;
      while (at > 0 && top[at - 1]->estimate_bytes < p->estimate_bytes) {
        if (at < REPORT_PAGES)
          top[at] = top[at - 1];
        at--;
      }
      if (at < REPORT_PAGES)
        top[at] = p;
    }
  }
  return n;
}

json_t *op_sched_report_json(op_sched_t *s) {
  json_t *samples = op_sched_history_json(s, 1, REPORT_SAMPLES);
  const op_page_job_t *top[REPORT_PAGES] = {0};
  unsigned n = largest_running(s, top);
  json_t *pages = json_array();
  for (unsigned i = 0; i < n; i++) {
    const op_page_job_t *p = top[i];
    const op__worker_t *w = p->worker_id < s->n_workers ? &s->workers[p->worker_id] : NULL;
    json_array_append_new(pages, json_pack("{s:I, s:i, s:i, s:i, s:I, s:i, s:I, s:f}", "task", (json_int_t)p->task->id,
                                           "page", (int)p->index + 1, "width", (int)p->width_px, "height",
                                           (int)p->height_px, "estimated_memory_bytes", (json_int_t)p->estimate_bytes,
                                           "worker_pid", (int)p->worker_pid, "worker_used_bytes",
                                           (json_int_t)(w ? w->pss : 0), "running_s", op_wall_time_s() - p->started_s));
  }
  const op_pressure_t *pr = &s->pressure;
  return json_pack("{s:s, s:b, s:i, s:i, s:i, s:o, s:o}", "level", op_mem_level_name(pr->level), "refusing",
                   pr->refusing, "warnings", (int)pr->warnings, "criticals", (int)pr->criticals, "deferred_tasks",
                   (int)s->deferred_tasks, "pages_in_flight", pages, "samples", samples);
}
