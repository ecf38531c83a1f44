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

/** A MuPDF context whose warnings and errors go to the debug log; NULL when out of memory. */
fz_context *op__mupdf_context(void);

/** The transform that renders a page at dpi. */
fz_matrix op__pdf_render_matrix(int dpi);

/**
 * The pixel size page `page` renders to at dpi, exactly as the renderer will
 * produce it (the page's bounds, /Rotate included, transformed and rounded).
 * Throws as MuPDF does.
 */
void op__pdf_page_pixels(fz_context *ctx, fz_page *page, int dpi, uint32_t *width, uint32_t *height);

#endif
