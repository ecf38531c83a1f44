/*
 * test_admit.c: memory admission's rules on ledgers made by hand: what fits,
 * what is refused, when a worker starts, when room is made, GPU routing and
 * the fallback. No supervisor, no /proc, no NVML: admission is pure.
 */
#include "check.h"
#include "core/admit.h"
#include "mem/budget.h"
#include "mem/pressure.h"
#include "util/error.h"

#define MB (UINT64_C(1) << 20)

/* A ledger of a 300 MB budget, a 10 MB server and 20 MB fresh workers, over ws[n]. */
static op_ledger_t ledger(op_admit_worker_t *ws, unsigned n) {
  return (op_ledger_t){300 * MB, 10 * MB, 20 * MB, OP_MEM_OK, ws, n};
}

static op_admit_worker_t idle_worker(uint64_t reserved, int has_model) {
  return (op_admit_worker_t){1, 1, 0, 0, 0, 0, 1, has_model, reserved, 0};
}

static op_admit_worker_t busy_worker(uint64_t reserved, uint64_t job) {
  return (op_admit_worker_t){1, 0, 1, 0, 0, 0, 0, 0, reserved, job};
}

static const op_admit_worker_t empty_slot = {0};

static void test_fits(void) {
  op_admit_t a;
  op_admit_job_t page = {1, 50 * MB, 30 * MB};
  /* An idle worker that holds the model takes the page before one that does not. */
  op_admit_worker_t ws[3] = {idle_worker(40 * MB, 0), idle_worker(60 * MB, 1), empty_slot};
  op_ledger_t l = ledger(ws, 3);
  CHECK(op_admit_reserved(&l) == 110 * MB);
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_RUN && a.slot == 1 && a.need_bytes == 50 * MB);
  /* Without holders, the idle worker holding least; it must load the model too. */
  ws[1].has_model = 0;
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_RUN && a.slot == 0 && a.need_bytes == 80 * MB);
  /* A probe needs no model: the least loaded idle worker. */
  op_admit_job_t probe = {0, 16 * MB, 0};
  op_admit_decide(&l, &probe, &a);
  CHECK(a.verdict == OP_ADMIT_RUN && a.slot == 0 && a.need_bytes == 16 * MB);
  /* No idle worker and a free slot: a new worker, when it fits with the job. */
  op_admit_worker_t busy[2] = {busy_worker(100 * MB, 40 * MB), empty_slot};
  l = ledger(busy, 2);
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_START_WORKER && a.need_bytes == 100 * MB);
  /* One already starting: wait for it, start no second. */
  busy[1] = (op_admit_worker_t){1, 0, 0, 1, 0, 0, 0, 0, 20 * MB, 0};
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_WAIT && !a.waits_for_memory);
}

static void test_refusals(void) {
  op_admit_t a;
  op_admit_worker_t ws[1] = {idle_worker(30 * MB, 1)};
  op_ledger_t l = ledger(ws, 1);
  /* 10 server + 20 worker + 30 model + 250 page = 310 MB > 300: never fits. */
  op_admit_job_t huge = {1, 250 * MB, 30 * MB};
  op_admit_decide(&l, &huge, &a);
  CHECK(a.verdict == OP_ADMIT_REFUSE && a.alone_bytes == 310 * MB);
  /* 150 MB fits alone, but not beside a busy page of 100 MB: it waits for
   * memory, and the running page's end will make room: nothing is evicted. */
  op_admit_worker_t two[2] = {busy_worker(150 * MB, 100 * MB), idle_worker(50 * MB, 1)};
  l = ledger(two, 2);
  op_admit_job_t big = {1, 150 * MB, 30 * MB};
  op_admit_decide(&l, &big, &a);
  CHECK(a.verdict == OP_ADMIT_WAIT && a.waits_for_memory && a.free_bytes == 90 * MB);
  /* When the running pages' ends cannot make room, idle holders must: keep the one with the model. */
  two[0] = busy_worker(150 * MB, 10 * MB);
  op_admit_decide(&l, &big, &a);
  CHECK(a.verdict == OP_ADMIT_MAKE_ROOM && a.slot == 1 && a.waits_for_memory);
  /* Room already being made (a model unloading): wait, evict nothing more. */
  two[0].unloading = 1;
  op_admit_decide(&l, &big, &a);
  CHECK(a.verdict == OP_ADMIT_WAIT);
  /* Every slot holds an idle worker this job may not use (another task's): retire one. */
  op_admit_worker_t bound[1] = {idle_worker(30 * MB, 0)};
  bound[0].may_take = 0;
  l = ledger(bound, 1);
  op_admit_job_t page = {1, 20 * MB, 30 * MB};
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_RETIRE_IDLE);
  /* Under warning no model loads while another page runs and may free memory. */
  op_admit_worker_t warm[2] = {busy_worker(50 * MB, 20 * MB), idle_worker(30 * MB, 0)};
  l = ledger(warm, 2);
  l.level = OP_MEM_WARNING;
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_WAIT);
  warm[1].has_model = 1; /* ... but a page whose model is loaded runs */
  op_admit_decide(&l, &page, &a);
  CHECK(a.verdict == OP_ADMIT_RUN && a.slot == 1);
}

static void test_gpu_routing(void) {
  const char *why = NULL;
  op_admit_gpu_t gpu = {1, OP_MEM_OK, 1000 * MB, 4000 * MB, 8000 * MB, 2000 * MB};
  uint64_t need = op_admit_gpu_need(0, 0); /* a page's prior and a model's prior */
  CHECK(need == 64 * MB + 1024 * MB);
  CHECK(op_admit_gpu_need(1, 500 * MB) == 64 * MB);
  CHECK(op_admit_gpu_need(0, 500 * MB) == 564 * MB);
  CHECK(op_admit_route(&gpu, need, 1, &why) == OP_ROUTE_HERE && why == NULL);
  /* Past our budget there: the fallback when it may take one, else wait. */
  gpu.ours_bytes = 3500 * MB;
  CHECK(op_admit_route(&gpu, need, 1, &why) == OP_ROUTE_FALLBACK && why != NULL);
  CHECK(op_admit_route(&gpu, need, 0, &why) == OP_ROUTE_WAIT);
  /* Within our budget, but other processes fill the card. */
  gpu.ours_bytes = 1000 * MB;
  gpu.used_all_bytes = 7500 * MB;
  CHECK(op_admit_route(&gpu, need, 0, &why) == OP_ROUTE_WAIT);
  /* Critical: never there, whatever fits. */
  gpu.used_all_bytes = 2000 * MB;
  gpu.level = OP_MEM_CRITICAL;
  CHECK(op_admit_route(&gpu, 64 * MB, 1, &why) == OP_ROUTE_FALLBACK);
  /* No such GPU: the fallback, or it fails (device_unavailable). */
  op_admit_gpu_t missing = {0};
  CHECK(op_admit_route(&missing, need, 1, &why) == OP_ROUTE_FALLBACK);
  CHECK(op_admit_route(&missing, need, 0, &why) == OP_ROUTE_FAIL);
}

static void test_budget_and_pressure(void) {
  op_budget_t b;
  CHECK(op_budget_init(&b, 100 * MB, 2) == 0);
  CHECK(op_budget_reserve(&b, 0, 60 * MB, 50 * MB) == OP_ELIMIT && op_budget_job(&b, 0) == 0);
  CHECK(op_budget_reserve(&b, 0, 40 * MB, 50 * MB) == 0 && op_budget_job(&b, 0) == 50 * MB);
  op_budget_release(&b, 0);
  CHECK(op_budget_job(&b, 0) == 0);
  CHECK(op_budget_reserve(&b, 5, 0, 1) < 0); /* no such slot */
  CHECK(op_budget_count(30 * MB, 20 * MB, 40 * MB) == 50 * MB);
  CHECK(op_budget_count(30 * MB, 0, 40 * MB) == 40 * MB); /* what it really uses, when more */
  op_budget_dispose(&b);
  /* Pressure: critical asks for action once per cooldown; nothing freed refuses until it passes. */
  static op_pressure_t p;
  op_pressure_init(&p, 0.8, 0.95, 5);
  CHECK(op_pressure_sample(&p, 100, 50, 50, 100) == 0 && p.level == OP_MEM_OK);
  CHECK(op_pressure_sample(&p, 101, 85, 85, 100) == OP_PRESSURE_CHANGED && p.level == OP_MEM_WARNING);
  unsigned f = op_pressure_sample(&p, 102, 97, 97, 100);
  CHECK((f & OP_PRESSURE_CHANGED) && (f & OP_PRESSURE_ACT) && p.criticals == 1);
  CHECK(op_pressure_acted(&p, 0) == OP_PRESSURE_CHANGED && p.refusing);
  CHECK(op_pressure_sample(&p, 103, 97, 97, 100) == 0); /* within the cooldown: no second round */
  CHECK(op_pressure_sample(&p, 104, 50, 50, 100) == OP_PRESSURE_CHANGED && p.refusing); /* still refusing */
  CHECK(op_pressure_sample(&p, 110, 50, 50, 100) == OP_PRESSURE_CHANGED && !p.refusing);
  json_t *h = op_pressure_history_json(&p, 1, 3);
  CHECK(json_array_size(h) == 3 && json_real_value(json_array_get(json_array_get(h, 2), 0)) == 110);
  json_decref(h);
}

int main(void) {
  test_fits();
  test_refusals();
  test_gpu_routing();
  test_budget_and_pressure();
  return CHECK_DONE();
}
