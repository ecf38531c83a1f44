/*
 * auth.h: bearer tokens (RFC 6750) from a file: one token a line, with its
 * scope (submit or admin), a name and optional quotas: `TOKEN SCOPE NAME
 * [max_tasks=N] [max_pages=N] [max_bytes=SIZE] [rate=N[/s|/min]] [burst=N]`.
 * Blank lines and lines starting with # are skipped. Internal to src/http.
 */
#ifndef OCRPOOL_HTTP_AUTH_H
#define OCRPOOL_HTTP_AUTH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct op__token_s {
  char token[128];
  char name[64];
  int admin;
  /* Quotas, 0 = none: unfinished tasks at once, pages per document, bytes per upload. */
  unsigned max_tasks;
  uint32_t max_pages;
  uint64_t max_bytes;
  /* Requests to /v1 a token may make: one every interval_ns on average, up
   * to burst at once after a quiet spell; interval_ns 0 = no limit. */
  uint64_t interval_ns;
  unsigned burst;
} op__token_t;

typedef struct op__tokens_s {
  op__token_t *list;
  /* Per token, the generic cell rate algorithm's theoretical arrival time
   * (monotonic ns): one atomic word, so that the requests of many threads
   * are counted under the readers' lock alone. */
  _Atomic uint64_t *tat;
  size_t n;
} op__tokens_t;

/** Reads a tokens file. A malformed line is an OP_EUSAGE error naming it. */
int op__tokens_load(const char *path, op__tokens_t *tokens, op_error_t *err);

/** Frees the list. */
void op__tokens_dispose(op__tokens_t *tokens);

/**
 * The token an Authorization header value carries, or NULL. Every known token
 * is compared, each in constant time, so the time taken says nothing about
 * how much of a guess was right.
 */
const op__token_t *op__tokens_check(const op__tokens_t *tokens, const char *authorization);

/**
 * Counts one request of t (a token of the list) at now_ns (CLOCK_MONOTONIC):
 * 0 when within its rate, else the seconds (at least 1) until one more would
 * be, for Retry-After; nothing is counted then.
 */
unsigned op__tokens_take(op__tokens_t *tokens, const op__token_t *t, uint64_t now_ns);

/** Carries each token's count from old to fresh (a reload), matched by the token itself. */
void op__tokens_carry(op__tokens_t *fresh, const op__tokens_t *old);

#endif
