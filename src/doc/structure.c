/*
 * structure.c: the structure of JPEG and TIFF files walked without decoding
 * a pixel, so that the probe bounds what decoding them will cost.
 *
 * A JPEG's scans are counted from its markers: a progressive JPEG of 20,000
 * scans is a few hundred KB and costs minutes to decode (each scan refines
 * the whole image again). A TIFF's pages are read in one pass over its IFD
 * chain: asking a TIFF library for page n walks the chain from the start each
 * time, which is quadratic in the page count. Both walks are bounded (scans,
 * IFDs) and treat every offset as hostile.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc/image_internal.h"

/* ---- JPEG ---- */

int op__jpeg_count_scans(FILE *fp, unsigned limit, unsigned *scans) {
  *scans = 0;
  if (fseek(fp, 0, SEEK_SET) != 0 || fgetc(fp) != 0xFF || fgetc(fp) != 0xD8)
    return -1;
  int c;
  for (;;) {
    /* A marker: 0xFF (any number of them, as fill), then its code. */
    while ((c = fgetc(fp)) != EOF && c != 0xFF)
      ; /* entropy-coded data, or garbage between segments */
    while (c == 0xFF)
      c = fgetc(fp);
    if (c == EOF || c == 0xD9) /* the end (a file cut short ends the count too: the decoder reports it) */
      return 0;
    if (c == 0x00 || (c >= 0xD0 && c <= 0xD7) || c == 0x01)
      continue; /* a stuffed 0xFF in entropy data, a restart marker, TEM: no length */
    int hi = fgetc(fp), lo = fgetc(fp);
    if (hi == EOF || lo == EOF)
      return 0;
    long len = hi << 8 | lo;
    if (len < 2)
      return -1;
    if (c == 0xDA && ++*scans > limit)
      return 0; /* over: the caller says so */
    if (fseek(fp, len - 2, SEEK_CUR) != 0)
      return 0;
  }
}

/* ---- TIFF ---- */

typedef struct {
  FILE *fp;
  int big_endian;
} tiff_t;

static int read_at(tiff_t *t, uint64_t off, unsigned char *buf, size_t n) {
  if (off > (uint64_t)INT64_MAX || fseeko(t->fp, (off_t)off, SEEK_SET) != 0)
    return -1;
  return fread(buf, 1, n, t->fp) == n ? 0 : -1;
}

static uint32_t u16(const tiff_t *t, const unsigned char *b) {
  return t->big_endian ? (uint32_t)b[0] << 8 | b[1] : (uint32_t)b[1] << 8 | b[0];
}

static uint32_t u32(const tiff_t *t, const unsigned char *b) {
  return t->big_endian ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
                       : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

/* An entry's first value as a number (SHORT or LONG; inline or at its offset). */
static int entry_value(tiff_t *t, const unsigned char *e, uint32_t *out) {
  uint32_t type = u16(t, e + 2), count = u32(t, e + 4);
  unsigned char buf[4];
  if (count == 0)
    return -1;
  if (type == 3) { /* SHORT: inline when two fit */
    if (count <= 2)
      *out = u16(t, e + 8);
    else if (read_at(t, u32(t, e + 8), buf, 2) == 0)
      *out = u16(t, buf);
    else
      return -1;
    return 0;
  }
  if (type == 4) { /* LONG */
    if (count == 1)
      *out = u32(t, e + 8);
    else if (read_at(t, u32(t, e + 8), buf, 4) == 0)
      *out = u32(t, buf);
    else
      return -1;
    return 0;
  }
  return -1;
}

/* A RATIONAL entry (always at its offset) as a double; 0 when it cannot be read. */
static double entry_rational(tiff_t *t, const unsigned char *e) {
  unsigned char buf[8];
  if (u16(t, e + 2) != 5 || read_at(t, u32(t, e + 8), buf, 8) < 0 || u32(t, buf + 4) == 0)
    return 0;
  return (double)u32(t, buf) / u32(t, buf + 4);
}

int op__tiff_pages(FILE *fp, uint32_t max_ifds, op__tiff_page_t **pages, uint32_t *count, const char **why) {
  tiff_t t = {fp, 0};
  unsigned char head[8], *entries = NULL;
  op__tiff_page_t *list = NULL;
  uint32_t n = 0, cap = 0;
  int rc = -1;
  *pages = NULL;
  *count = 0;
  *why = "not a TIFF file";
  if (read_at(&t, 0, head, 8) < 0 || (memcmp(head, "II", 2) != 0 && memcmp(head, "MM", 2) != 0))
    return -1;
  t.big_endian = head[0] == 'M';
  if (u16(&t, head + 2) == 43) {
    *why = "BigTIFF";
    return OP__TIFF_UNSUPPORTED;
  }
  if (u16(&t, head + 2) != 42)
    return -1;
  uint64_t off = u32(&t, head + 4), prev = 0;
  while (off != 0) {
    /* The chain must move forward or back without repeating: a loop would
     * list pages for ever. A chain that jumps back is walked too (writers do
     * put IFDs anywhere), bounded by max_ifds. */
    if (n >= max_ifds) {
      *why = "more pages (IFDs) than the limit";
      rc = OP__TIFF_TOO_MANY;
      goto out;
    }
    if (off == prev || off < 8) {
      *why = "its page list (IFD chain) loops or points into the header";
      goto out;
    }
    unsigned char nb[2];
    if (read_at(&t, off, nb, 2) < 0) {
      *why = "a page directory (IFD) is past the end of the file";
      goto out;
    }
    uint32_t n_entries = u16(&t, nb);
    unsigned char *e = realloc(entries, (size_t)n_entries * 12 + 4);
    if (e == NULL)
      goto out;
    entries = e;
    if (read_at(&t, off + 2, entries, (size_t)n_entries * 12 + 4) < 0) {
      *why = "a page directory (IFD) is cut short";
      goto out;
    }
    if (n == cap) {
      uint32_t ncap = cap ? cap * 2 : 16;
      op__tiff_page_t *nl = realloc(list, ncap * sizeof *nl);
      if (nl == NULL)
        goto out;
      list = nl;
      cap = ncap;
    }
    op__tiff_page_t *p = &list[n];
    uint32_t bps = 1, spp = 1, unit = 2;
    double xres = 0, yres = 0;
    memset(p, 0, sizeof *p);
    for (uint32_t i = 0; i < n_entries; i++) {
      const unsigned char *en = entries + (size_t)i * 12;
      uint32_t tag = u16(&t, en), v = 0;
      switch (tag) {
      case 256:
        if (entry_value(&t, en, &v) == 0)
          p->width = v;
        break;
      case 257:
        if (entry_value(&t, en, &v) == 0)
          p->height = v;
        break;
      case 258:
        if (entry_value(&t, en, &v) == 0)
          bps = v;
        break;
      case 277:
        if (entry_value(&t, en, &v) == 0)
          spp = v;
        break;
      case 282:
        xres = entry_rational(&t, en);
        break;
      case 283:
        yres = entry_rational(&t, en);
        break;
      case 296:
        if (entry_value(&t, en, &v) == 0)
          unit = v;
        break;
      default:
        break;
      }
    }
    p->depth = bps * spp;
    /* Dots per inch, as Leptonica gives them: centimetres converted, no unit unknown. */
    double scale = unit == 3 ? 2.54 : unit == 1 ? 0 : 1;
    p->xres = (int)(xres * scale + 0.5);
    p->yres = (int)(yres * scale + 0.5);
    n++;
    prev = off;
    off = u32(&t, entries + (size_t)n_entries * 12);
  }
  if (n == 0) {
    *why = "it has no pages";
    goto out;
  }
  *pages = list;
  *count = n;
  list = NULL;
  rc = 0;
out:
  free(entries);
  free(list);
  return rc;
}
