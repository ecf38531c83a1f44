/*
 * budget.h: a device's memory budget and the job reservations counted
 * against it.
 *
 * Admission (core/admit.c) decides whether a job fits; the budget holds what
 * it decided: the limit, and per worker slot the bytes its running job was
 * admitted with, reserved when the job starts and released when it ends.
 */
#ifndef OCRPOOL_MEM_BUDGET_H
#define OCRPOOL_MEM_BUDGET_H

#include <stdint.h>

typedef struct op_budget_s {
  uint64_t limit_bytes; /**< 0 = no admission */
  unsigned n_slots;
  uint64_t *job_bytes; /**< per worker slot: its running job's reservation */
} op_budget_t;

/** A budget of limit_bytes over n_slots worker slots; OP_ENOMEM. */
int op_budget_init(op_budget_t *b, uint64_t limit_bytes, unsigned n_slots);

/** Frees what op_budget_init allocated. */
void op_budget_dispose(op_budget_t *b);

/**
 * Reserves bytes for the job starting on slot, given what is reserved now in
 * all; OP_ELIMIT (nothing reserved) when that would pass the limit.
 */
int op_budget_reserve(op_budget_t *b, unsigned slot, uint64_t reserved_now, uint64_t bytes);

/** The job on slot has ended: its reservation goes. */
void op_budget_release(op_budget_t *b, unsigned slot);

/** The running job's reservation on slot (0 when none). */
uint64_t op_budget_job(const op_budget_t *b, unsigned slot);

/** What a worker counts for: what it holds plus its job's reservation, or what it really uses when that is more. */
uint64_t op_budget_count(uint64_t held_bytes, uint64_t job_bytes, uint64_t used_bytes);

#endif
