/*
 * doc.h: documents in (sniff, probe, load a page) and results out (formats,
 * assembly of per-page fragments, PDF merge).
 *
 * Sniffing reads magic bytes only and is safe anywhere. Everything else that
 * parses untrusted bytes (op_doc_probe, op_doc_reader_*, op_doc_pdf_merge)
 * runs in worker processes, never in the supervising process.
 */
#ifndef OCRPOOL_DOC_DOC_H
#define OCRPOOL_DOC_DOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

struct Pix;

/* ---- types and sniffing ---- */

typedef enum { OP_DOC_UNKNOWN = 0, OP_DOC_PNG, OP_DOC_JPEG, OP_DOC_TIFF, OP_DOC_PDF } op_doc_type_t;

/** The type from the first bytes of a file (at least 8 are needed); OP_DOC_UNKNOWN otherwise. */
op_doc_type_t op_doc_sniff(const unsigned char *head, size_t len);

/**
 * Sniffs a file: fails with OP_EBADINPUT for an empty or unreadable file and
 * OP_EUNSUPPORTED ("unsupported type") for anything not PNG, JPEG, TIFF or PDF.
 * On success *type is set and, if size_bytes is not NULL, the file's size.
 */
int op_doc_sniff_file(const char *path, op_doc_type_t *type, uint64_t *size_bytes, op_error_t *err);

/** "png", "jpeg", "tiff", "pdf" or "unknown". */
const char *op_doc_type_name(op_doc_type_t type);

/** The inverse of op_doc_type_name; OP_DOC_UNKNOWN when not a name. */
op_doc_type_t op_doc_type_from_name(const char *name);

/* ---- limits ---- */

/** Limits enforced before anything is decoded. */
typedef struct op_doc_limits_s {
  uint64_t max_input_bytes;  /**< default 256 MB */
  uint32_t max_pages;        /**< pages to OCR (after --pages), default 2000 */
  uint64_t max_page_pixels;  /**< width x height of one page, default 250,000,000 */
  int dpi;                   /**< PDF render resolution, default 300 */
  uint64_t max_render_bytes; /**< MuPDF's memory for a PDF's structure, or for one page beyond what its size explains
                                (OP_RENDER_BYTES_PER_PIXEL); default 128 MB; 0 = none */
} op_doc_limits_t;

/** Fills limits with the defaults above. */
void op_doc_limits_init(op_doc_limits_t *limits);

/* ---- page selection ("1-3,7,10-") ---- */

/** A parsed --pages value: sorted, merged 1-based inclusive ranges; last = 0 means "to the end". */
typedef struct op_page_range_s {
  uint32_t first, last;
} op_page_range_t;

typedef struct op_page_set_s {
  op_page_range_t *ranges; /**< owned; NULL when the set is "all pages" */
  size_t count;
} op_page_set_t;

/** Parses a --pages value; NULL or "" means all pages. OP_EUSAGE with a sentence on bad syntax. */
int op_page_set_parse(const char *spec, op_page_set_t *set, op_error_t *err);

/**
 * Resolves a set against a document of page_count pages into 0-based indices
 * (ascending, no duplicates). *indices is malloc'd, the caller frees it.
 * A range entirely past the end is an OP_EUSAGE error naming the page count.
 */
int op_page_set_resolve(const op_page_set_t *set, uint32_t page_count, uint32_t **indices, size_t *n, op_error_t *err);

/** Frees the ranges. */
void op_page_set_dispose(op_page_set_t *set);

/* ---- probe (worker side) ---- */

/** One page as the probe sees it, before decoding. */
typedef struct op_page_info_s {
  uint32_t index;    /**< 0-based page number in the document */
  uint32_t width_px; /**< pixels as it will be decoded or rendered */
  uint32_t height_px;
  int xres, yres; /**< dpi: the image's own (0 if none) or the render dpi for PDF */
  int depth;      /**< bits per pixel as decoded (bps x spp); 8 for rendered PDF pages */
} op_page_info_t;

/** What the probe learned. */
typedef struct op_doc_probe_s {
  op_doc_type_t type;
  uint32_t page_count;   /**< pages in the document */
  op_page_info_t *pages; /**< the selected pages, owned */
  size_t n_pages;
} op_doc_probe_t;

/**
 * Reads the page count and the size of each selected page without decoding
 * pixel data, and enforces limits: more selected pages than max_pages, or a page
 * over max_page_pixels (a PDF page measured at limits->dpi), is OP_ELIMIT with a
 * sentence naming the page, its size and the limit. An encrypted PDF, a
 * malformed file or an empty one is OP_EBADINPUT. `selection` may be NULL (all).
 * Frees with op_doc_probe_dispose, also after a failure.
 */
int op_doc_probe(const char *path, const op_page_set_t *selection, const op_doc_limits_t *limits, op_doc_probe_t *probe,
                 op_error_t *err);

/** Frees probe->pages. */
void op_doc_probe_dispose(op_doc_probe_t *probe);

/* ---- loading pages (worker side) ---- */

/** Loads pages; keeps the last PDF open so consecutive pages do not reopen it. */
typedef struct op_doc_reader_s op_doc_reader_t;

/** Creates a reader; NULL when out of memory. */
op_doc_reader_t *op_doc_reader_create(void);

/** Closes any open document and frees the reader. */
void op_doc_reader_destroy(op_doc_reader_t *reader);

/**
 * Loads page `index` (0-based) of the file at path as a Leptonica Pix that the
 * caller destroys with pixDestroy. Images are decoded as `tesseract` itself
 * would read them (same pixels, same resolution), so results match its CLI.
 * A PDF page is rendered with MuPDF straight to 8-bit gray at dpi, with its
 * resolution set. The page's pixels are checked against max_page_pixels again
 * before rendering. A decode failure is OP_EBADINPUT with a sentence.
 */
int op_doc_reader_load_page(op_doc_reader_t *reader, const char *path, op_doc_type_t type, uint32_t index, int dpi,
                            uint64_t max_page_pixels, struct Pix **pix, op_error_t *err);

/**
 * The CPU a PDF page's drawing may take, in ms, and the memory MuPDF may
 * allocate for it beyond the page's own pixels, in bytes (0 = no cap, the
 * defaults). Past either the page is refused as bad input: a 2 KB page of
 * nested forms, a content stream that inflates without end, or an image
 * that decodes to gigabytes is not run to the page timeout (or the worker's
 * memory cap) again and again.
 */
void op_doc_reader_set_render_caps(op_doc_reader_t *reader, unsigned cpu_ms, uint64_t bytes);

/**
 * What a PDF page's size explains, in bytes a pixel, on top of the render
 * memory cap: its own gray pixels, and images drawn at up to twice its
 * resolution each way (MuPDF decodes at the nearest power of two above) in
 * four colours. A real 9000x9000 RGB scan needs about 4.
 */
#define OP_RENDER_BYTES_PER_PIXEL 16u

/* ---- formats and assembly ---- */

typedef enum {
  OP_FMT_TXT = 1u << 0,
  OP_FMT_HOCR = 1u << 1,
  OP_FMT_TSV = 1u << 2,
  OP_FMT_ALTO = 1u << 3,
  OP_FMT_JSON = 1u << 4,
  OP_FMT_PDF = 1u << 5,
} op_format_t;

#define OP_FMT_ALL 0x3fu

/** Parses "txt", "hocr,pdf" ... into a mask; OP_EUSAGE naming the bad word. */
int op_format_parse(const char *list, unsigned *mask, op_error_t *err);

/** The format for a name or a file extension ("txt", "hocr", "html" -> hocr, "xml" -> alto ...); 0 if none. */
op_format_t op_format_from_name(const char *name);

/** "txt", "hocr", "tsv", "alto", "json", "pdf". */
const char *op_format_name(op_format_t fmt);

/** File extension written for a format: "txt", "hocr", "tsv", "xml", "json", "pdf". */
const char *op_format_ext(op_format_t fmt);

/** The HTTP Content-Type of a format's assembled result. */
const char *op_format_content_type(op_format_t fmt);

/**
 * Assembles a document's result in fmt (not pdf) from per-page fragment files,
 * in page order, streaming to out: txt joins pages with a form feed as
 * `tesseract` does; hocr, alto and tsv get their header and footer around the
 * page fragments; json is {"pages":[...]}. page_files[i] is the fragment of the
 * i-th selected page, or NULL for a page that failed, in which case
 * page_errors[i] (may be NULL) says why (json records it; other formats leave
 * the page empty). title names the document in headers.
 */
int op_output_assemble(op_format_t fmt, const char *const *page_files, const char *const *page_errors,
                       const uint32_t *page_numbers, size_t n, const char *title, FILE *out, op_error_t *err);

/** Where Leptonica's temporary files go from now on (default /tmp): a sandboxed worker's own directory. */
void op_doc_set_temp_dir(const char *dir);

/** Concatenates single- or multi-page PDFs into one PDF at output (worker side). */
int op_doc_pdf_merge(const char *const *inputs, size_t n, const char *output, op_error_t *err);

#endif
