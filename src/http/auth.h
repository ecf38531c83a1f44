/*
 * auth.h: bearer tokens (RFC 6750) from a file: one token a line, with its
 * scope (submit or admin), a name and optional quotas: `TOKEN SCOPE NAME
 * [max_tasks=N] [max_pages=N] [max_bytes=SIZE]`. Blank lines and lines
 * starting with # are skipped. Internal to src/http.
 */
#ifndef OCRPOOL_HTTP_AUTH_H
#define OCRPOOL_HTTP_AUTH_H

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
} op__token_t;

typedef struct op__tokens_s {
  op__token_t *list;
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

#endif
