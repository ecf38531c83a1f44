/* budget.c: a device's memory budget and the job reservations counted against it. */
#include "mem/budget.h"

#include <stdlib.h>

#include "util/error.h"

int op_budget_init(op_budget_t *b, uint64_t limit_bytes, unsigned n_slots) {
  b->limit_bytes = limit_bytes;
  b->n_slots = n_slots;
  b->job_bytes = calloc(n_slots ? n_slots : 1, sizeof *b->job_bytes);
  return b->job_bytes != NULL ? 0 : OP_ENOMEM;
}

void op_budget_dispose(op_budget_t *b) {
  free(b->job_bytes);
  b->job_bytes = NULL;
  b->n_slots = 0;
}

int op_budget_reserve(op_budget_t *b, unsigned slot, uint64_t reserved_now, uint64_t bytes) {
  if (slot >= b->n_slots)
    return OP_EINTERNAL;
  if (b->limit_bytes > 0 && reserved_now + bytes > b->limit_bytes)
    return OP_ELIMIT;
  b->job_bytes[slot] = bytes;
  return 0;
}

void op_budget_release(op_budget_t *b, unsigned slot) {
  if (slot < b->n_slots)
    b->job_bytes[slot] = 0;
}

uint64_t op_budget_job(const op_budget_t *b, unsigned slot) {
  return slot < b->n_slots ? b->job_bytes[slot] : 0;
}

uint64_t op_budget_count(uint64_t held_bytes, uint64_t job_bytes, uint64_t used_bytes) {
  uint64_t r = held_bytes + job_bytes;
  return r > used_bytes ? r : used_bytes;
}
