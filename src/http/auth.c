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
    else
      ok = 0;
    if (!ok)
      return op_error_set(err, OP_EUSAGE, "bad_options",
                          "%s line %u: bad quota \"%s\": want max_tasks=N, max_pages=N or max_bytes=SIZE, each above 0",
                          path, lineno, field);
  }
  return 0;
}

int op__tokens_load(const char *path, op__tokens_t *tokens, op_error_t *err) {
  tokens->list = NULL;
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
  }
  fclose(f);
  if (rc == 0 && tokens->n == 0)
    rc = op_error_set(err, OP_EUSAGE, "bad_options", "tokens file %s has no tokens", path);
  if (rc < 0)
    op__tokens_dispose(tokens);
  return rc;
}

void op__tokens_dispose(op__tokens_t *tokens) {
  free(tokens->list);
  tokens->list = NULL;
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
