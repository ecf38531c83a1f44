/* auth.c: loading bearer tokens and checking them in constant time. */
#include "http/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util/log.h"
#include "util/parse.h"

/* A `rate=` value: N, N/s or N/min requests, 1 to 1,000,000; the interval
 * between them in ns, or 0 when it does not read. */
static uint64_t parse_rate(const char *v) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno != 0 || end == v || *v == '-' || n == 0 || n > 1000000)
    return 0;
  uint64_t unit = UINT64_C(1000000000);
  if (strcmp(end, "/min") == 0)
    unit *= 60;
  else if (*end != '\0' && strcmp(end, "/s") != 0)
    return 0;
  return unit / n;
}

/* The optional `KEY=VALUE` quotas after a token's name. */
static int parse_quotas(const char *rest, op__token_t *q, const char *path, unsigned lineno, op_error_t *err) {
  char field[96];
  int used;
  while (sscanf(rest, " %95s%n", field, &used) == 1) {
    rest += used;
    char *eq = strchr(field, '=');
    uint64_t v = 0;
    if (eq != NULL)
      *eq++ = '\0';
    int ok = eq != NULL;
    if (ok && strcmp(field, "max_tasks") == 0 && (ok = op_parse_size(eq, 1000000, &v) == 0 && v > 0))
      q->max_tasks = (unsigned)v;
    else if (ok && strcmp(field, "max_pages") == 0 && (ok = op_parse_size(eq, 10000000, &v) == 0 && v > 0))
      q->max_pages = (uint32_t)v;
    else if (ok && strcmp(field, "max_bytes") == 0 && (ok = op_parse_size(eq, UINT64_C(1) << 40, &v) == 0 && v > 0))
      q->max_bytes = v;
    else if (ok && strcmp(field, "rate") == 0)
      ok = (q->interval_ns = parse_rate(eq)) > 0;
    else if (ok && strcmp(field, "burst") == 0 && (ok = op_parse_size(eq, 1000000, &v) == 0 && v > 0))
      q->burst = (unsigned)v;
    else
      ok = 0;
    if (!ok)
      return op_error_set(
          err, OP_EUSAGE, "bad_options",
          "%s line %u: bad quota \"%s\": want max_tasks=N, max_pages=N, max_bytes=SIZE, rate=N[/s|/min] "
          "or burst=N, each above 0",
          path, lineno, field);
  }
  if (q->burst > 0 && q->interval_ns == 0)
    return op_error_set(err, OP_EUSAGE, "bad_options", "%s line %u: burst= needs a rate=", path, lineno);
  if (q->interval_ns > 0 && q->burst == 0) /* a second's worth, at least one */
    q->burst = q->interval_ns >= UINT64_C(1000000000) ? 1u : (unsigned)(UINT64_C(1000000000) / q->interval_ns);
  return 0;
}

int op__tokens_load(const char *path, op__tokens_t *tokens, op_error_t *err) {
  tokens->list = NULL;
  tokens->tat = NULL;
  tokens->n = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "cannot read tokens file %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077) != 0)
    op_log_warn("tokens file %s can be read by %s (mode %03o): tokens are secrets, chmod 600 it", path,
                (sb.st_mode & 007) ? "every user" : "its group", (unsigned)(sb.st_mode & 0777));
  char line[512];
  unsigned lineno = 0;
  int rc = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    lineno++;
    char token[160], scope[32], name[96];
    char *p = line;
    int used = 0;
    while (isspace((unsigned char)*p))
      p++;
    if (*p == '\0' || *p == '#')
      continue;
    if (sscanf(p, "%159s %31s %95s%n", token, scope, name, &used) != 3 || strlen(token) < 16 || strlen(token) >= 128 ||
        strlen(name) >= 64 || (strcmp(scope, "submit") != 0 && strcmp(scope, "admin") != 0)) {
      rc = op_error_set(err, OP_EUSAGE, "bad_options",
                        "%s line %u: want `TOKEN SCOPE NAME [QUOTA=N ...]` with a token of 16 to 127 characters and "
                        "scope submit or admin",
                        path, lineno);
      break;
    }
    op__token_t quota = {0};
    if ((rc = parse_quotas(p + used, &quota, path, lineno, err)) < 0)
      break;
    op__token_t *nl = realloc(tokens->list, (tokens->n + 1) * sizeof *nl);
    if (nl == NULL) {
      rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory reading tokens");
      break;
    }
    tokens->list = nl;
    op__token_t *t = &tokens->list[tokens->n++];
    memset(t, 0, sizeof *t);                    /* the comparison reads the whole buffer */
    memcpy(t->token, token, strlen(token) + 1); /* lengths checked above */
    memcpy(t->name, name, strlen(name) + 1);
    t->admin = strcmp(scope, "admin") == 0;
    t->max_tasks = quota.max_tasks;
    t->max_pages = quota.max_pages;
    t->max_bytes = quota.max_bytes;
    t->interval_ns = quota.interval_ns;
    t->burst = quota.burst;
  }
  fclose(f);
  if (rc == 0 && tokens->n == 0)
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "tokens file %s has no tokens", path);
  if (rc == 0 && (tokens->tat = calloc(tokens->n, sizeof *tokens->tat)) == NULL)
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory reading tokens");
  if (rc < 0)
    op__tokens_dispose(tokens);
  return rc;
}

void op__tokens_dispose(op__tokens_t *tokens) {
  free(tokens->list);
  free((void *)tokens->tat);
  tokens->list = NULL;
  tokens->tat = NULL;
  tokens->n = 0;
}

/* Compares a NUL-terminated guess with a token over the token's whole buffer. */
static int equal_constant_time(const char *guess, size_t guess_len, const op__token_t *t) {
  unsigned char diff = (unsigned char)(guess_len != strlen(t->token));
  for (size_t i = 0; i < sizeof t->token; i++) {
    unsigned char g = i < guess_len ? (unsigned char)guess[i] : 0;
    diff |= (unsigned char)(g ^ (unsigned char)t->token[i]);
  }
  return diff == 0;
}

const op__token_t *op__tokens_check(const op__tokens_t *tokens, const char *authorization) {
  if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
    return NULL;
  const char *guess = authorization + 7;
  while (*guess == ' ')
    guess++;
  size_t len = strlen(guess);
  if (len >= sizeof tokens->list[0].token)
    return NULL;
  const op__token_t *found = NULL;
  for (size_t i = 0; i < tokens->n; i++)
    if (equal_constant_time(guess, len, &tokens->list[i]))
      found = &tokens->list[i];
  return found;
}

/* The generic cell rate algorithm (ATM's leaky bucket, as a meter): each
 * request moves the token's theoretical arrival time on by one interval; a
 * request is within the rate while that time is at most burst - 1 intervals
 * ahead of now. One compare-and-swap, no lock, no timer. */
unsigned op__tokens_take(op__tokens_t *tokens, const op__token_t *t, uint64_t now_ns) {
  if (t->interval_ns == 0)
    return 0;
  _Atomic uint64_t *cell = &tokens->tat[t - tokens->list];
  uint64_t tolerance = t->interval_ns * (t->burst - 1);
  uint64_t tat = atomic_load_explicit(cell, memory_order_relaxed);
  for (;;) {
    uint64_t from = tat > now_ns ? tat : now_ns;
    if (from - now_ns > tolerance) {
      uint64_t wait_ns = from - now_ns - tolerance;
      return (unsigned)((wait_ns + UINT64_C(999999999)) / UINT64_C(1000000000));
    }
    if (atomic_compare_exchange_weak_explicit(cell, &tat, from + t->interval_ns, memory_order_relaxed,
                                              memory_order_relaxed))
      return 0;
  }
}

void op__tokens_carry(op__tokens_t *fresh, const op__tokens_t *old) {
  for (size_t i = 0; i < fresh->n; i++)
    for (size_t j = 0; j < old->n; j++)
      if (strcmp(fresh->list[i].token, old->list[j].token) == 0)
        atomic_store(&fresh->tat[i], atomic_load(&old->tat[j]));
}
