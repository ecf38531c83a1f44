/*
 * pageset.c: --pages values ("1-3,7,10-"): parsed once, resolved against a
 * document's page count by the probe.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "doc/doc.h"

#define MAX_RANGES 1024

static int cmp_range(const void *a, const void *b) {
  const op_page_range_t *x = a, *y = b;
  return x->first < y->first ? -1 : x->first > y->first;
}

static int parse_number(const char **p, uint32_t *out) {
  const char *s = *p;
  if (!isdigit((unsigned char)*s))
    return -1;
  errno = 0;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || v == 0 || v > 100000000ul)
    return -1;
  *out = (uint32_t)v;
  *p = end;
  return 0;
}

int op_page_set_parse(const char *spec, op_page_set_t *set, op_error_t *err) {
  set->ranges = NULL;
  set->count = 0;
  if (spec == NULL)
    return 0;
  const char *p = spec;
  while (isspace((unsigned char)*p))
    p++;
  if (*p == '\0')
    return 0;
  op_page_range_t *r = calloc(MAX_RANGES, sizeof *r);
  if (r == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory parsing --pages");
  size_t n = 0;
  for (;;) {
    while (isspace((unsigned char)*p))
      p++;
    if (n == MAX_RANGES) {
      free(r);
      return op_error_set(err, OP_EUSAGE, "bad_options", "bad --pages value \"%s\": more than %d ranges", spec,
                          MAX_RANGES);
    }
    if (parse_number(&p, &r[n].first) < 0)
      goto bad;
    while (isspace((unsigned char)*p))
      p++;
    r[n].last = r[n].first;
    if (*p == '-') {
      p++;
      while (isspace((unsigned char)*p))
        p++;
      if (*p == ',' || *p == '\0')
        r[n].last = 0; /* open: to the end */
      else if (parse_number(&p, &r[n].last) < 0 || r[n].last < r[n].first)
        goto bad;
    }
    n++;
    while (isspace((unsigned char)*p))
      p++;
    if (*p == '\0')
      break;
    if (*p++ != ',')
      goto bad;
  }
  qsort(r, n, sizeof *r, cmp_range);
  set->ranges = r;
  set->count = n;
  return 0;
bad:
  free(r);
  return op_error_set(err, OP_EUSAGE, "bad_options",
                      "bad --pages value \"%s\": use 1-based pages and ranges like 1-3,7,10-", spec);
}

int op_page_set_resolve(const op_page_set_t *set, uint32_t page_count, uint32_t **indices, size_t *n,
                        op_error_t *err) {
  *indices = NULL;
  *n = 0;
  /* Count first, so the array is sized by the document, never by the spec. */
  uint32_t *out = calloc(page_count ? page_count : 1, sizeof *out);
  unsigned char *seen = calloc(page_count ? page_count : 1, 1);
  if (out == NULL || seen == NULL) {
    free(out);
    free(seen);
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory selecting pages");
  }
  if (set == NULL || set->ranges == NULL) {
    for (uint32_t i = 0; i < page_count; i++)
      seen[i] = 1;
  } else {
    for (size_t k = 0; k < set->count; k++) {
      uint32_t last = set->ranges[k].last == 0 || set->ranges[k].last > page_count ? page_count : set->ranges[k].last;
      for (uint32_t pg = set->ranges[k].first; pg <= last; pg++)
        seen[pg - 1] = 1;
    }
  }
  size_t count = 0;
  for (uint32_t i = 0; i < page_count; i++)
    if (seen[i])
      out[count++] = i;
  free(seen);
  if (count == 0) {
    free(out);
    return op_error_set(err, OP_EUSAGE, "bad_options", "--pages selects no page of a %u-page document", page_count);
  }
  *indices = out;
  *n = count;
  return 0;
}

void op_page_set_dispose(op_page_set_t *set) {
  free(set->ranges);
  set->ranges = NULL;
  set->count = 0;
}
