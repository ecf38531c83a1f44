/*
 * image_internal.h: JPEG and TIFF structure walked without decoding
 * (structure.c), for the probe. Internal to src/doc.
 */
#ifndef OCRPOOL_DOC_IMAGE_INTERNAL_H
#define OCRPOOL_DOC_IMAGE_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

/** A JPEG with more scans than this is refused: a progressive JPEG has about 10. */
#define OP__JPEG_MAX_SCANS 256u

/** A TIFF with more pages (IFDs) than this is refused, whatever pages are asked for. */
#define OP__TIFF_MAX_IFDS 100000u

/**
 * Counts the scans (SOS markers) of the JPEG in fp, stopping once past
 * limit. 0 (*scans holds the count, limit + 1 at most), or -1 when fp is no
 * JPEG.
 */
int op__jpeg_count_scans(FILE *fp, unsigned limit, unsigned *scans);

/** One TIFF page's header, as the probe needs it. */
typedef struct {
  uint32_t width, height;
  uint32_t depth; /**< bits per sample x samples per pixel */
  int xres, yres; /**< dots per inch; 0 = not given */
} op__tiff_page_t;

#define OP__TIFF_TOO_MANY (-2)    /**< more IFDs than max_ifds */
#define OP__TIFF_UNSUPPORTED (-3) /**< a BigTIFF: read by the TIFF library instead */

/**
 * Reads every page header of the TIFF in fp in one pass over its IFD chain,
 * at most max_ifds of them. 0 with *pages (free it) and *count; or -1 (a
 * corrupt file), OP__TIFF_TOO_MANY or OP__TIFF_UNSUPPORTED, with *why a few
 * words for the message.
 */
int op__tiff_pages(FILE *fp, uint32_t max_ifds, op__tiff_page_t **pages, uint32_t *count, const char **why);

#endif
