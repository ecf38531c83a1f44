/*
 * pageset.c: --pages values ("1-3,7,10-"): parsed once into sorted, merged
 * ranges, resolved against a document's page count by the probe.
 *
 * Nothing here allocates more than the spec's bounded range list or the
 * number of pages actually selected, so a document that claims two billion
 * pages costs nothing until the probe has checked --max-pages.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc/doc.h"

#define MAX_RANGES 1024
#define MAX_PAGE_NUMBER 100000000u

/* An open range ("10-") ends at the largest page number for comparisons. */
static uint32_t range_end(const op_page_range_t *r) {
  return r->last == 0 ? UINT32_MAX : r->last;
}

static int cmp_range(const void *a, const void *b) {
  const op_page_range_t *x = a, *y = b;
  if (x->first != y->first)
    return x->first < y->first ? -1 : 1;
  return range_end(x) < range_end(y) ? -1 : range_end(x) > range_end(y);
}

static void skip_space(const char **p) {
  while (isspace((unsigned char)**p))
    (*p)++;
}

static int parse_number(const char **p, uint32_t *out) {
  const char *s = *p;
  if (!isdigit((unsigned char)*s))
    return -1;
  errno = 0;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || v == 0 || v > MAX_PAGE_NUMBER)
    return -1;
  *out = (uint32_t)v;
  *p = end;
  return 0;
}

/* Sorts ranges and merges overlapping or adjacent ones in place; returns the new count. */
static size_t sort_and_merge(op_page_range_t *r, size_t n) {
  if (n == 0)
    return 0;
  qsort(r, n, sizeof *r, cmp_range);
  size_t out = 0;
  for (size_t i = 1; i < n; i++) {
    uint32_t end = range_end(&r[out]);
    if (end == UINT32_MAX || r[i].first <= end + 1) {
      if (range_end(&r[i]) > end)
        r[out].last = r[i].last;
    } else {
      r[++out] = r[i];
    }
  }
  return out + 1;
}

int op_page_set_parse(const char *spec, op_page_set_t *set, op_error_t *err) {
  set->ranges = NULL;
  set->count = 0;
  op_page_range_t *r = NULL;
  size_t n = 0;
  int rc = 0;
  if (spec == NULL)
    return 0;
  const char *p = spec;
  skip_space(&p);
  if (*p == '\0')
    return 0;
  r = calloc(MAX_RANGES, sizeof *r);
  if (r == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory parsing --pages");
    goto out;
  }
  for (;;) {
    skip_space(&p);
    if (n == MAX_RANGES) {
      rc = op_error_set(err, OP_EUSAGE, "bad_options", "bad --pages value \"%s\": more than %d ranges", spec,
                        MAX_RANGES);
      goto out;
    }
    if (parse_number(&p, &r[n].first) < 0)
      goto bad;
    skip_space(&p);
    r[n].last = r[n].first;
    if (*p == '-') {
      p++;
      skip_space(&p);
      if (*p == ',' || *p == '\0')
        r[n].last = 0; /* open: to the end */
      else if (parse_number(&p, &r[n].last) < 0)
        goto bad;
      else if (r[n].last < r[n].first) {
        rc = op_error_set(err, OP_EUSAGE, "bad_options", "bad --pages value \"%s\": the range %u-%u runs backwards",
                          spec, r[n].first, r[n].last);
        goto out;
      }
    }
    n++;
    skip_space(&p);
    if (*p == '\0')
      break;
    if (*p++ != ',')
      goto bad;
  }
  n = sort_and_merge(r, n);
  op_page_range_t *fit = realloc(r, n * sizeof *r);
  if (fit != NULL)
    r = fit;
  set->ranges = r;
  set->count = n;
  r = NULL;
  goto out;
bad:
  rc = op_error_set(err, OP_EUSAGE, "bad_options",
                    "bad --pages value \"%s\": use 1-based page numbers and ranges like 1-3,7,10-", spec);
out:
  free(r);
  return rc;
}

/* The set written back as a --pages value, shortened with "..." if long. */
static void format_set(const op_page_set_t *set, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < set->count && at < len; k++) {
    const op_page_range_t *r = &set->ranges[k];
    int w;
    if (at + 24 >= len) {
      snprintf(buf + at, len - at, ",...");
      return;
    }
    if (r->last == 0)
      w = snprintf(buf + at, len - at, "%s%u-", k ? "," : "", r->first);
    else if (r->last == r->first)
      w = snprintf(buf + at, len - at, "%s%u", k ? "," : "", r->first);
    else
      w = snprintf(buf + at, len - at, "%s%u-%u", k ? "," : "", r->first, r->last);
    if (w < 0)
      return;
    at += (size_t)w;
  }
}

int op_page_set_resolve(const op_page_set_t *set, uint32_t page_count, uint32_t **indices, size_t *n, op_error_t *err) {
  *indices = NULL;
  *n = 0;
  int all = set == NULL || set->ranges == NULL;
  /* Count first, so the array holds the selected pages and nothing more. */
  size_t count = 0;
  if (all) {
    count = page_count;
  } else {
    for (size_t k = 0; k < set->count; k++) {
      const op_page_range_t *r = &set->ranges[k];
      uint32_t last = range_end(r) > page_count ? page_count : range_end(r);
      if (r->first <= last)
        count += last - r->first + 1;
    }
  }
  if (count == 0) {
    if (all)
      return op_error_set(err, OP_EBADINPUT, "bad_input", "the document has no pages");
    char spec[128];
    format_set(set, spec, sizeof spec);
    return op_error_set(err, OP_EUSAGE, "bad_options", "--pages %s selects no page of a %u-page document", spec,
                        page_count);
  }
  uint32_t *out = malloc(count * sizeof *out);
  if (out == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory selecting %zu pages", count);
  size_t at = 0;
  if (all) {
    for (uint32_t i = 0; i < page_count; i++)
      out[at++] = i;
  } else {
    /* Ranges are sorted and disjoint (op_page_set_parse merged them), so the output is too. */
    for (size_t k = 0; k < set->count; k++) {
      const op_page_range_t *r = &set->ranges[k];
      uint32_t last = range_end(r) > page_count ? page_count : range_end(r);
      for (uint32_t pg = r->first; pg <= last && pg != 0; pg++)
        out[at++] = pg - 1;
    }
  }
  *indices = out;
  *n = at;
  return 0;
}

void op_page_set_dispose(op_page_set_t *set) {
  free(set->ranges);
  set->ranges = NULL;
  set->count = 0;
}
