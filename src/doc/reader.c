/*
 * reader.c: one page of a document as a Leptonica image, decoded only when
 * its job runs.
 *
 * Images are read exactly as the tesseract CLI reads them (pixRead for single
 * images, the n-th directory for TIFF), so ocrpool's text matches tesseract's
 * byte for byte. PDF pages are rendered by MuPDF straight to 8-bit gray at the
 * requested dpi. The reader keeps the last PDF open, since consecutive jobs on
 * a worker are usually pages of the same document, and empties MuPDF's store
 * after each page so that memory does not grow with the page count.
 * Runs in worker processes only.
 */
#include <leptonica/allheaders.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "doc/doc.h"
#include "doc/pdf_internal.h"

struct op_doc_reader_s {
  fz_context *ctx;
  pdf_document *doc; /* the last PDF opened, or NULL */
  char *doc_path;
  unsigned render_cpu_ms; /* 0 = no cap */
  uint64_t render_bytes;  /* MuPDF's memory beyond the page's pixels; 0 = no cap */
  op_mupdf_budget_t budget;
};

/* ---- the render's CPU cap ----
 *
 * MuPDF's interpreter polls its cookie's abort flag as it reads a page's
 * content; a CPU timer's signal sets the flag once the render has used its
 * CPU (the render runs on this thread, so a signal is how to reach it). The
 * cookie's own progress cannot be the measure: MuPDF 1.21 counts it per
 * content stream and starts again in every form, so nested forms never
 * raise it. */
#define RENDER_TICK_MS 20

static fz_cookie *volatile watched;
static volatile sig_atomic_t ticks_left;

static void on_tick(int sig) {
  (void)sig;
  fz_cookie *c = watched;
  if (c != NULL && --ticks_left <= 0)
    c->abort = 1;
}

/* Starts (c, with cpu_ms) or stops (NULL) watching a render. */
static void watch(fz_cookie *c, unsigned cpu_ms) {
  struct itimerval tick = {{0, 0}, {0, 0}};
  if (c != NULL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGVTALRM, &sa, NULL);
    ticks_left = (sig_atomic_t)(cpu_ms / RENDER_TICK_MS + 1);
    tick.it_interval.tv_usec = tick.it_value.tv_usec = RENDER_TICK_MS * 1000;
  }
  watched = c;
  setitimer(ITIMER_VIRTUAL, &tick, NULL);
}

void op_doc_reader_set_render_caps(op_doc_reader_t *r, unsigned cpu_ms, uint64_t bytes) {
  r->render_cpu_ms = cpu_ms;
  r->render_bytes = bytes;
}

op_doc_reader_t *op_doc_reader_create(void) {
  op_doc_reader_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->ctx = op__mupdf_context(&r->budget);
  if (r->ctx == NULL) {
    free(r);
    return NULL;
  }
  return r;
}

static void close_doc(op_doc_reader_t *r) {
  if (r->doc != NULL)
    pdf_drop_document(r->ctx, r->doc);
  r->doc = NULL;
  free(r->doc_path);
  r->doc_path = NULL;
}

void op_doc_reader_destroy(op_doc_reader_t *r) {
  if (r == NULL)
    return;
  close_doc(r);
  fz_drop_context(r->ctx);
  free(r);
}

static int over_limit(uint32_t index, uint64_t w, uint64_t h, uint64_t max, op_error_t *err) {
  if (w * h <= max)
    return 0;
  return op_error_set(err, OP_ELIMIT, "bad_input",
                      "page %u is %llux%llu pixels, over the limit of %.1f MP per page (--max-page-pixels)", index + 1,
                      (unsigned long long)w, (unsigned long long)h, (double)max / 1e6);
}

/*
 * The size of TIFF page `index` from its directory. The page count is checked
 * first: Leptonica 1.82's freadHeaderTiff leaks its TIFF handle when asked for
 * a page past the end.
 */
static int tiff_page_header(const char *path, uint32_t index, l_int32 *w, l_int32 *h, op_error_t *err) {
  l_int32 count = 0, bps, spp, res, cmap, format;
  FILE *fp = fopen(path, "rb");
  int rc = 0;
  if (fp == NULL || tiffGetCount(fp, &count) != 0 || count <= 0) {
    rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u: not a readable TIFF file", index + 1);
    goto out;
  }
  if (index >= (uint32_t)count) {
    rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u is past the end of a %d-page TIFF", index + 1, count);
    goto out;
  }
  if (freadHeaderTiff(fp, (l_int32)index, w, h, &bps, &spp, &res, &cmap, &format) != 0)
    *w = *h = 0;
out:
  if (fp != NULL)
    fclose(fp);
  return rc;
}

static int load_image(const char *path, op_doc_type_t type, uint32_t index, uint64_t max_pixels, PIX **out,
                      op_error_t *err) {
  l_int32 w = 0, h = 0, bps, spp, cmap, format;
  int bad = 0;
  if (type == OP_DOC_TIFF) {
    int rc = tiff_page_header(path, index, &w, &h, err);
    if (rc < 0)
      return rc;
  } else {
    bad = pixReadHeader(path, &format, &w, &h, &bps, &spp, &cmap);
  }
  if (bad != 0 || w <= 0 || h <= 0)
    return op_error_set(err, OP_EBADINPUT, "bad_input", "page %u: cannot read the %s header (corrupt file)", index + 1,
                        op_doc_type_name(type));
  int rc = over_limit(index, (uint64_t)w, (uint64_t)h, max_pixels, err);
  if (rc < 0)
    return rc;
  PIX *pix = type == OP_DOC_TIFF ? pixReadTiff(path, (l_int32)index) : pixRead(path);
  if (pix == NULL)
    return op_error_set(err, OP_EBADINPUT, "bad_input", "page %u: cannot decode the %s image (truncated or corrupt)",
                        index + 1, op_doc_type_name(type));
  *out = pix;
  return 0;
}

/* Copies MuPDF's gray samples into an 8-bpp Pix (whose rows are 32-bit words). */
static PIX *pix_from_gray(const fz_pixmap *pm, int dpi) {
  PIX *pix = pixCreate(pm->w, pm->h, 8);
  if (pix == NULL)
    return NULL;
  l_uint32 *data = pixGetData(pix);
  l_int32 wpl = pixGetWpl(pix);
  for (int y = 0; y < pm->h; y++) {
    const unsigned char *src = pm->samples + (size_t)y * (size_t)pm->stride;
    l_uint32 *line = data + (size_t)y * (size_t)wpl;
    for (int x = 0; x < pm->w; x++)
      SET_DATA_BYTE(line, x, src[x]);
  }
  pixSetResolution(pix, dpi, dpi);
  return pix;
}

static int load_pdf_page(op_doc_reader_t *r, const char *path, uint32_t index, int dpi, uint64_t max_pixels, PIX **out,
                         op_error_t *err) {
  fz_context *ctx = r->ctx;
  fz_page *volatile page = NULL;
  fz_pixmap *volatile pm = NULL;
  fz_device *volatile dev = NULL;
  fz_cookie cookie;
  volatile int rc = 0;
  volatile uint32_t page_w = 0, page_h = 0; /* for the message of a render that threw */
  /* What MuPDF holds already (an open document) is not this page's; the page
   * may add render_bytes, and what its size explains on top (below). */
  r->budget.limit = r->render_bytes > 0 ? r->budget.used + (size_t)r->render_bytes : 0;
  r->budget.refused = 0;
  if (r->doc_path == NULL || strcmp(r->doc_path, path) != 0) {
    close_doc(r);
    r->doc_path = strdup(path);
    if (r->doc_path == NULL)
      return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  }
  fz_try(ctx) {
    if (r->doc == NULL) {
      r->doc = pdf_open_document(ctx, path);
      if (pdf_needs_password(ctx, r->doc)) {
        /* Closed, so the next call on this file is refused again rather than rendered. */
        pdf_drop_document(ctx, r->doc);
        r->doc = NULL;
        rc = op_error_set(err, OP_EBADINPUT, "bad_input", "encrypted PDF: it needs a password to open");
        break;
      }
    }
    if ((int)index >= pdf_count_pages(ctx, r->doc)) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u is past the end of the PDF", index + 1);
      break;
    }
    page = fz_load_page(ctx, &r->doc->super, (int)index);
    uint32_t w, h;
    op__pdf_page_pixels(ctx, page, dpi, &w, &h);
    rc = over_limit(index, w, h, max_pixels, err);
    if (rc < 0)
      break;
    page_w = w;
    page_h = h;
    if (r->budget.limit > 0)
      r->budget.limit += (size_t)w * h * OP_RENDER_BYTES_PER_PIXEL;
    /* What fz_new_pixmap_from_page does, with a cookie to stop it. */
    fz_matrix ctm = op__pdf_render_matrix(dpi);
    pm = fz_new_pixmap_with_bbox(ctx, fz_device_gray(ctx),
                                 fz_round_rect(fz_transform_rect(fz_bound_page(ctx, page), ctm)), NULL, 0);
    fz_clear_pixmap_with_value(ctx, pm, 0xFF);
    dev = fz_new_draw_device(ctx, ctm, pm);
    memset(&cookie, 0, sizeof cookie);
    if (r->render_cpu_ms > 0)
      watch(&cookie, r->render_cpu_ms);
    fz_run_page(ctx, page, dev, fz_identity, &cookie);
    watch(NULL, 0);
    fz_close_device(ctx, dev);
    if (cookie.abort) {
      rc = op_error_set(err, OP_ELIMIT, "bad_input",
                        "page %u: drawing it took over %.1f s of CPU, the cap (server.render_cpu, by default "
                        "half the page timeout): nested forms, or a content stream that inflates without end?",
                        index + 1, r->render_cpu_ms / 1000.0);
      break;
    }
    if (r->budget.refused > 0) /* MuPDF went on without what it could not have: the page would be incomplete */
      fz_throw(ctx, FZ_ERROR_MEMORY, "allocation of %zu bytes refused", r->budget.refused);
    *out = pix_from_gray(pm, dpi);
    if (*out == NULL)
      rc = op_error_set(err, OP_ENOMEM, NULL, "page %u: out of memory for a %ux%u image", index + 1, w, h);
  }
  fz_always(ctx) {
    watch(NULL, 0); /* a render that threw */
    fz_drop_device(ctx, dev);
    fz_drop_pixmap(ctx, pm);
    fz_drop_page(ctx, page);
    /* Decoded images and fonts would otherwise pile up page after page. */
    fz_empty_store(ctx);
  }
  fz_catch(ctx) {
    if (r->budget.refused > 0)
      rc = op_error_set(err, OP_ELIMIT, "bad_input",
                        "page %u: drawing it needs more than %llu MB beyond what its %ux%u pixels explain, the cap "
                        "(server.render_memory): an image or a path far larger than the page?",
                        index + 1, (unsigned long long)(r->render_bytes >> 20), page_w, page_h);
    else
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "page %u: cannot render the PDF page: %s", index + 1,
                        fz_caught_message(ctx));
    close_doc(r);
  }
  return rc;
}

int op_doc_reader_load_page(op_doc_reader_t *r, const char *path, op_doc_type_t type, uint32_t index, int dpi,
                            uint64_t max_page_pixels, struct Pix **pix, op_error_t *err) {
  *pix = NULL;
  switch (type) {
  case OP_DOC_PNG:
  case OP_DOC_JPEG:
    if (index != 0)
      return op_error_set(err, OP_EBADINPUT, "bad_input", "page %u of a single-page image", index + 1);
    /* fall through */
  case OP_DOC_TIFF:
    return load_image(path, type, index, max_page_pixels, pix, err);
  case OP_DOC_PDF:
    return load_pdf_page(r, path, index, dpi, max_page_pixels, pix, err);
  default:
    return op_error_set(err, OP_EUNSUPPORTED, "bad_input", "unsupported type");
  }
}
