/*
 * pdf_internal.h: what the doc module's PDF code shares (MuPDF context set-up
 * and page measurement), so probe and reader agree on page sizes exactly.
 * Internal to src/doc.
 */
#ifndef OCRPOOL_DOC_PDF_INTERNAL_H
#define OCRPOOL_DOC_PDF_INTERNAL_H

#include <mupdf/fitz.h>
#include <mupdf/pdf.h>
#include <stdint.h>

/**
 * What MuPDF may allocate in one context: a hostile PDF (an image that
 * declares 40,000 x 40,000 pixels in a few KB of Flate) is refused by the
 * allocator, with a reason, before the worker's own memory cap kills it.
 * limit 0 = no cap. One thread per context: the counts are not atomic.
 */
typedef struct op_mupdf_budget_s {
  size_t used;    /**< bytes MuPDF holds now */
  size_t limit;   /**< the most it may hold; 0 = no cap */
  size_t refused; /**< the size of a refused allocation not satisfied since (after the store was scavenged); 0 = none */
} op_mupdf_budget_t;

/**
 * A MuPDF context whose warnings and errors go to the debug log, allocating
 * within *budget (which must outlive it; NULL = no cap); NULL when out of memory.
 */
fz_context *op__mupdf_context(op_mupdf_budget_t *budget);

/** The transform that renders a page at dpi. */
fz_matrix op__pdf_render_matrix(int dpi);

/**
 * The pixel size page `page` renders to at dpi, exactly as the renderer will
 * produce it (the page's bounds, /Rotate included, transformed and rounded).
 * Throws as MuPDF does.
 */
void op__pdf_page_pixels(fz_context *ctx, fz_page *page, int dpi, uint32_t *width, uint32_t *height);

#endif
