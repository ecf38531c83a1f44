/*
 * engine.h: the one interface every OCR engine implements.
 *
 * A model is an engine plus what it loads (for tesseract: languages and OEM).
 * A worker opens a model once and runs many pages through it; the engine writes
 * each page's result fragments (one file per requested format) next to the
 * prefix the supervisor named, and op_output_assemble joins them later.
 */
#ifndef OCRPOOL_ENGINE_ENGINE_H
#define OCRPOOL_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct Pix;

/** Which model to load. */
typedef struct op_model_spec_s {
  char engine[16]; /**< "tesseract" or "null" */
  char lang[128];  /**< tesseract languages, "eng", "deu+eng" */
  int oem;         /**< tesseract OCR engine mode; 3 = default */
} op_model_spec_t;

/** Fills spec with tesseract, eng, OEM 3. */
void op_model_spec_init(op_model_spec_t *spec);

/** Writes the model's identity, "tesseract:eng:oem3", into buf. */
void op_model_spec_id(const op_model_spec_t *spec, char *buf, size_t len);

/** What one page run needs besides the image. */
typedef struct op_page_opts_s {
  uint32_t page_number;   /**< 0-based page number in the document (for hOCR ids, TSV page_num) */
  int psm;                /**< page segmentation mode; 3 (auto) as the tesseract CLI */
  int user_dpi;           /**< 0, or the dpi the user asked for (images without one) */
  int rotate_pages;       /**< detect orientation and turn the page upright first */
  float rotate_threshold; /**< least OSD confidence to act on (0 = the default, 7) */
  unsigned formats;       /**< OP_FMT_... mask of fragments to write */
  const char *out_prefix; /**< fragments are written to out_prefix + "." + op_format_ext() */
  const char *input_path; /**< the document file (the PDF renderer may embed JPEG data from it) */
  const char *title;      /**< the document's name for the user, used in hOCR titles */
  unsigned attempt;       /**< 1 for the first run of this page (test behaviours key on it) */
  unsigned batch;         /**< items an engine may run at once (halved after an out-of-memory); 1 for Tesseract */
} op_page_opts_t;

/** What happened on the page, reported to the supervisor. */
typedef struct op_page_stats_s {
  int rotated_deg; /**< clockwise rotation applied by --rotate-pages, 0 if none */
  int mean_conf;   /**< mean word confidence 0-100, -1 when unknown */
  uint32_t words;  /**< words recognised */
} op_page_stats_t;

typedef struct op_model_s op_model_t;

/** An engine implementation. */
typedef struct op_engine_s {
  const char *name;
  /** Loads a model; fills err and returns <0 when it cannot (unknown language ...). */
  int (*open)(const op_model_spec_t *spec, op_model_t **model, op_error_t *err);
  /** Runs one page; OP_EENGINE on engine failure, OP_EIO when a fragment cannot be written. */
  int (*run_page)(op_model_t *model, struct Pix *pix, const op_page_opts_t *opts, op_page_stats_t *stats,
                  op_error_t *err);
  /** Frees everything the model holds. */
  void (*close)(op_model_t *model);
} op_engine_t;

/** The engine named name ("tesseract", "null"); NULL when there is none. */
const op_engine_t *op_engine_find(const char *name);

extern const op_engine_t op_engine_tesseract;
extern const op_engine_t op_engine_null;

#endif
