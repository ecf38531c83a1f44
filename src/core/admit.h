/*
 * admit.h: memory admission as pure functions over a ledger snapshot.
 *
 * The scheduler copies what it knows of each worker slot into a ledger (what
 * the slot counts against the budget, whether it is idle, may take the job,
 * holds the job's model) and asks where the next job may run. The answer is
 * a verdict the scheduler carries out; nothing here touches a process, /proc
 * or NVML, so each rule can be tested on its own (tests/unit/test_admit.c).
 */
#ifndef OCRPOOL_CORE_ADMIT_H
#define OCRPOOL_CORE_ADMIT_H

#include <stdint.h>

#include "mem/mem.h"

/** One worker slot as admission sees it. */
typedef struct op_admit_worker_s {
  int exists; /**< a process holds the slot */
  int idle, busy, starting, exiting;
  int unloading;           /**< busy unloading a model: room is being made */
  int may_take;            /**< idle, and may take this job (its task's isolation, recycling, its GPU) */
  int has_model;           /**< holds the job's model already */
  uint64_t reserved_bytes; /**< what it counts against the budget now */
  uint64_t job_bytes;      /**< its running job's reservation */
} op_admit_worker_t;

/** The device's budget and its workers. */
typedef struct op_ledger_s {
  uint64_t budget_bytes;
  uint64_t server_bytes; /**< the server's own use */
  uint64_t worker_bytes; /**< what a fresh worker with no model costs */
  op_mem_level_t level;
  const op_admit_worker_t *workers;
  unsigned n_workers;
} op_ledger_t;

/** The job asking. */
typedef struct op_admit_job_s {
  int is_page;          /**< a page (needs its model); else a probe or merge */
  uint64_t job_bytes;   /**< its working set */
  uint64_t model_bytes; /**< its model's footprint (0 for a probe or merge) */
} op_admit_job_t;

typedef enum {
  OP_ADMIT_RUN,          /**< on slot, reserving job_bytes */
  OP_ADMIT_START_WORKER, /**< start one; the job goes to it when it is ready */
  OP_ADMIT_WAIT,         /**< for a worker, or for room being made */
  OP_ADMIT_RETIRE_IDLE,  /**< every slot holds an idle worker this job may not use: retire one, then wait */
  OP_ADMIT_MAKE_ROOM,    /**< it does not fit and waiting will not free enough: unload or retire (keep slot) */
  OP_ADMIT_REFUSE,       /**< it cannot fit even alone in an empty budget: it fails */
} op_admit_verdict_t;

/** Admission's answer. */
typedef struct op_admit_s {
  op_admit_verdict_t verdict;
  int slot;             /**< RUN: where; MAKE_ROOM: the idle worker whose model to keep, or -1 */
  uint64_t need_bytes;  /**< what it needs beyond what is reserved */
  uint64_t alone_bytes; /**< what it needs in an empty budget (server, a worker, model, job) */
  uint64_t free_bytes;  /**< the budget left over what is reserved */
  int waits_for_memory; /**< it waits for room (not for a worker): worth telling the user */
} op_admit_t;

/** Where job may run under the ledger's budget (see op_admit_verdict_t). */
void op_admit_decide(const op_ledger_t *ledger, const op_admit_job_t *job, op_admit_t *out);

/** What admission counts in all: the server and every worker slot. */
uint64_t op_admit_reserved(const op_ledger_t *ledger);

/** A GPU as routing sees it. */
typedef struct op_admit_gpu_s {
  int present; /**< NVML reports it */
  op_mem_level_t level;
  uint64_t ours_bytes;     /**< VRAM of the server and its workers there */
  uint64_t budget_bytes;   /**< our budget there */
  uint64_t total_bytes;    /**< the card's memory */
  uint64_t used_all_bytes; /**< used by every process on it */
} op_admit_gpu_t;

typedef enum {
  OP_ROUTE_HERE,     /**< it runs on its GPU */
  OP_ROUTE_FALLBACK, /**< it goes to its model's fallback instead */
  OP_ROUTE_WAIT,     /**< it waits for its GPU */
  OP_ROUTE_FAIL,     /**< no such GPU and no fallback: device_unavailable */
} op_route_t;

/** A page's VRAM need on a GPU: the page's prior, plus its model's unless a worker there holds it. */
uint64_t op_admit_gpu_need(int model_held, uint64_t model_limit_bytes);

/**
 * Where a page of a GPU model goes: its GPU when present, not critical and
 * need_bytes fit both our budget there and what every process leaves free;
 * else its fallback when it may take one, else it waits (or fails, for a GPU
 * not on this machine). *why says why it did not run there (static text).
 */
op_route_t op_admit_route(const op_admit_gpu_t *gpu, uint64_t need_bytes, int may_fallback, const char **why);

#endif
