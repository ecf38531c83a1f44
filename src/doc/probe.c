/*
 * probe.c: a document's pages and their sizes, before anything is decoded.
 *
 * Images are measured from their headers (Leptonica reads only the header
 * bytes), TIFF pages in one walk of the file's page list and JPEG scans
 * counted (structure.c); PDF pages from their page boxes, at the render
 * dpi, never at the resolution of the images they hold. The page count limit
 * is checked before any page is measured and the pixel limit before any page
 * is decoded, so a decompression bomb or a 1.2-gigapixel page costs nothing.
 * Runs in worker processes only: it parses untrusted bytes.
 */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc/doc.h"
#include "doc/image_internal.h"
#include "doc/pdf_internal.h"

static void mp_string(uint64_t pixels, char *buf, size_t len) {
  snprintf(buf, len, "%.1f MP", (double)pixels / 1e6);
}

/*
 * The number of pages a selection takes from a page_count-page document,
 * counted without allocating anything: the ranges from op_page_set_parse are
 * sorted and merged, so none is counted twice.
 */
static uint64_t count_selected(const op_page_set_t *sel, uint32_t page_count) {
  if (sel == NULL || sel->ranges == NULL)
    return page_count;
  uint64_t n = 0;
  for (size_t k = 0; k < sel->count; k++) {
    uint32_t first = sel->ranges[k].first, last = sel->ranges[k].last;
    if (last == 0 || last > page_count)
      last = page_count;
    if (first >= 1 && first <= last)
      n += (uint64_t)(last - first) + 1;
  }
  return n;
}

/*
 * Checks the page-count limit, then resolves the selection into indices. The
 * limit comes first, so a document that claims billions of pages is refused
 * before an index array is sized by its claim.
 */
static int select_pages(const op_page_set_t *sel, uint32_t page_count, const op_doc_limits_t *limits,
                        uint32_t **indices, size_t *n, op_error_t *err) {
  *indices = NULL;
  *n = 0;
  uint64_t selected = count_selected(sel, page_count);
  if (selected > limits->max_pages)
    return op_error_set(err, OP_ELIMIT, "bad_input",
                        "the document has %llu pages to OCR, over the limit of %u (--max-pages)",
                        (unsigned long long)selected, limits->max_pages);
  return op_page_set_resolve(sel, page_count, indices, n, err);
}

static int check_pixels(const op_page_info_t *p, const op_doc_type_t type, const op_doc_limits_t *limits,
                        op_error_t *err) {
  uint64_t pixels = (uint64_t)p->width_px * p->height_px;
  if (pixels <= limits->max_page_pixels)
    return 0;
  char have[32], max[32];
  mp_string(pixels, have, sizeof have);
  mp_string(limits->max_page_pixels, max, sizeof max);
  if (type == OP_DOC_PDF)
    return op_error_set(err, OP_ELIMIT, "bad_input",
                        "page %u would be %ux%u pixels (%s) at %d dpi, over the limit of %s per page "
                        "(--max-page-pixels; or lower --dpi)",
                        p->index + 1, p->width_px, p->height_px, have, limits->dpi, max);
  return op_error_set(err, OP_ELIMIT, "bad_input",
                      "page %u is %ux%u pixels (%s), over the limit of %s per page (--max-page-pixels)", p->index + 1,
                      p->width_px, p->height_px, have, max);
}

static int probe_pdf(const char *path, const op_page_set_t *sel, const op_doc_limits_t *limits, op_doc_probe_t *probe,
                     op_error_t *err) {
  op_mupdf_budget_t budget = {0, (size_t)limits->max_render_bytes, 0};
  fz_context *ctx = op__mupdf_context(&budget);
  if (ctx == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory opening the PDF");
  pdf_document *volatile doc = NULL;
  fz_page *volatile page = NULL;
  uint32_t *volatile indices = NULL;
  volatile int rc = 0;
  fz_try(ctx) {
    doc = pdf_open_document(ctx, path);
    if (pdf_needs_password(ctx, doc)) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "encrypted PDF: it needs a password to open");
      break;
    }
    int count = pdf_count_pages(ctx, doc);
    if (count <= 0) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "the PDF has no pages");
      break;
    }
    probe->page_count = (uint32_t)count;
    uint32_t *idx;
    size_t n;
    rc = select_pages(sel, probe->page_count, limits, &idx, &n, err);
    if (rc < 0)
      break;
    indices = idx;
    probe->pages = calloc(n, sizeof *probe->pages);
    if (probe->pages == NULL) {
      rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory for %zu pages", n);
      break;
    }
    for (size_t i = 0; i < n; i++) {
      op_page_info_t *p = &probe->pages[i];
      page = fz_load_page(ctx, &doc->super, (int)indices[i]);
      p->index = indices[i];
      op__pdf_page_pixels(ctx, page, limits->dpi, &p->width_px, &p->height_px);
      fz_drop_page(ctx, page);
      page = NULL;
      p->xres = p->yres = limits->dpi;
      p->depth = 8;
      probe->n_pages = i + 1;
      if (p->width_px == 0 || p->height_px == 0) {
        rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u has an empty page box", p->index + 1);
        break;
      }
      rc = check_pixels(p, OP_DOC_PDF, limits, err);
      if (rc < 0)
        break;
    }
  }
  fz_always(ctx) {
    fz_drop_page(ctx, page);
    pdf_drop_document(ctx, doc);
  }
  fz_catch(ctx) {
    if (budget.refused > 0)
      rc = op_error_set(err, OP_ELIMIT, "bad_input",
                        "reading the PDF's structure needs more than %llu MB, the cap (server.render_memory)",
                        (unsigned long long)(limits->max_render_bytes >> 20));
    else
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "not a valid PDF: %s", fz_caught_message(ctx));
  }
  free(indices);
  fz_drop_context(ctx);
  return rc;
}

/*
 * The resolution a PNG or JPEG declares (pHYs, JFIF or EXIF density), read
 * from the header chunks only; 0 when it declares none or cannot be read.
 */
static void image_resolution(const char *path, op_doc_type_t type, op_page_info_t *p) {
  FILE *fp = fopen(path, "rb");
  l_int32 xres = 0, yres = 0;
  if (fp == NULL)
    return;
  int bad = type == OP_DOC_PNG ? fgetPngResolution(fp, &xres, &yres) : fgetJpegResolution(fp, &xres, &yres);
  fclose(fp);
  if (bad == 0 && xres > 0 && yres > 0) {
    p->xres = xres;
    p->yres = yres;
  }
}

static int probe_image(const char *path, op_doc_type_t type, const op_page_set_t *sel, const op_doc_limits_t *limits,
                       op_doc_probe_t *probe, op_error_t *err) {
  FILE *fp = NULL;
  uint32_t *indices = NULL;
  op__tiff_page_t *tiff = NULL; /* every page's header, from one walk of the chain */
  size_t n = 0;
  int rc = 0;
  int count = 1;
  if (type == OP_DOC_TIFF || type == OP_DOC_JPEG) {
    if ((fp = fopen(path, "rb")) == NULL) {
      rc = op_error_set(err, OP_EIO, "internal", "cannot open the document");
      goto out;
    }
  }
  if (type == OP_DOC_JPEG) {
    unsigned scans = 0;
    if (op__jpeg_count_scans(fp, OP__JPEG_MAX_SCANS, &scans) == 0 && scans > OP__JPEG_MAX_SCANS) {
      rc = op_error_set(err, OP_ELIMIT, "bad_input",
                        "the JPEG has more than %u scans (each refines the whole image: decoding would take "
                        "minutes); re-encode it",
                        OP__JPEG_MAX_SCANS);
      goto out;
    }
  }
  if (type == OP_DOC_TIFF) {
    uint32_t pages = 0;
    const char *why = "";
    rc = op__tiff_pages(fp, OP__TIFF_MAX_IFDS, &tiff, &pages, &why);
    if (rc == OP__TIFF_TOO_MANY) {
      rc = op_error_set(err, OP_ELIMIT, "bad_input", "the TIFF has more than %u pages", OP__TIFF_MAX_IFDS);
      goto out;
    }
    if (rc == OP__TIFF_UNSUPPORTED) /* the library walks it, page by page */
      rc = tiffGetCount(fp, &count) != 0 || count <= 0 ? -1 : 0;
    else if (rc == 0)
      count = (int)pages;
    if (rc < 0) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "not a readable TIFF file (%s)", why);
      goto out;
    }
  }
  probe->page_count = (uint32_t)count;
  if ((rc = select_pages(sel, probe->page_count, limits, &indices, &n, err)) < 0)
    goto out;
  probe->pages = calloc(n, sizeof *probe->pages);
  if (probe->pages == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory for %zu pages", n);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    op_page_info_t *p = &probe->pages[i];
    l_int32 w = 0, h = 0, bps = 0, spp = 0, res = 0, cmap = 0, format = 0;
    int bad;
    if (tiff != NULL) {
      const op__tiff_page_t *tp = &tiff[indices[i]];
      bad = tp->width == 0 || tp->height == 0 || tp->width > INT32_MAX || tp->height > INT32_MAX;
      w = (l_int32)tp->width;
      h = (l_int32)tp->height;
      bps = (l_int32)tp->depth;
      spp = 1;
      res = tp->xres;
    } else if (type == OP_DOC_TIFF)
      bad = freadHeaderTiff(fp, (l_int32)indices[i], &w, &h, &bps, &spp, &res, &cmap, &format) != 0;
    else
      bad = pixReadHeader(path, &format, &w, &h, &bps, &spp, &cmap) != 0;
    p->index = indices[i];
    probe->n_pages = i + 1;
    if (bad || w <= 0 || h <= 0) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u: cannot read the %s header (corrupt file)",
                        p->index + 1, op_doc_type_name(type));
      goto out;
    }
    p->width_px = (uint32_t)w;
    p->height_px = (uint32_t)h;
    p->xres = p->yres = res;
    p->depth = bps * spp;
    if ((rc = check_pixels(p, type, limits, err)) < 0)
      goto out;
    if (type != OP_DOC_TIFF)
      image_resolution(path, type, p);
  }
out:
  if (fp != NULL)
    fclose(fp);
  free(tiff);
  free(indices);
  return rc;
}

int op_doc_probe(const char *path, const op_page_set_t *selection, const op_doc_limits_t *limits, op_doc_probe_t *probe,
                 op_error_t *err) {
  memset(probe, 0, sizeof *probe);
  op_doc_type_t type;
  int rc = op_doc_sniff_file(path, &type, NULL, err);
  if (rc < 0)
    return rc;
  probe->type = type;
  if (type == OP_DOC_PDF)
    return probe_pdf(path, selection, limits, probe, err);
  return probe_image(path, type, selection, limits, probe, err);
}

void op_doc_probe_dispose(op_doc_probe_t *probe) {
  free(probe->pages);
  probe->pages = NULL;
  probe->n_pages = 0;
}
