/*
 * options.h: what a user asks of a task, and the one codec that reads it.
 *
 * Every edge (the ocr and submit commands, the HTTP API) and the store go
 * through the same three steps: op_task_opts_set takes one option in the text
 * form a user typed, op_task_opts_to_json writes the options as the task's
 * stored JSON, op_task_opts_from_json reads them back. Each bound lives here,
 * once, and a stored value is checked as strictly as a typed one: options that
 * no longer validate are an error, never silently cut or clamped.
 */
#ifndef OCRPOOL_CORE_OPTIONS_H
#define OCRPOOL_CORE_OPTIONS_H

#include <jansson.h>
#include <stdint.h>

#include "doc/doc.h"
#include "engine/engine.h"
#include "util/error.h"

/* ---- bounds ---- */

/* Lengths are in bytes, without the terminating NUL. */
#define OP_TASK_PAGES_MAX_LEN 1000                 /**< a pages value ("1-3,7,10-") anywhere */
#define OP_TASK_PAGES_HTTP_MAX_LEN 400             /**< ... over HTTP, so that the stored options fit the store's row */
#define OP_TASK_LANG_MAX_LEN 100                   /**< languages ("deu+eng"); below op_model_spec_t.lang */
#define OP_TASK_FORMAT_MAX_LEN 64                  /**< a format list ("txt,pdf"); all six take 26 */
#define OP_TASK_MODEL_NAME_MAX_LEN 63              /**< a declared model's name, as op_model_policy_t.name holds */
#define OP_TASK_PRIORITY_MIN 0                     /**< the lowest priority */
#define OP_TASK_PRIORITY_MAX 9                     /**< the highest priority */
#define OP_TASK_PRIORITY_DEFAULT 5                 /**< a task's priority when none is given */
#define OP_TASK_PSM_MIN 0                          /**< Tesseract page segmentation modes 0 ... */
#define OP_TASK_PSM_MAX 13                         /**< ... to 13 */
#define OP_TASK_OEM_MIN 0                          /**< Tesseract OCR engine modes 0 ... */
#define OP_TASK_OEM_MAX 3                          /**< ... to 3 */
#define OP_TASK_DPI_MIN 10                         /**< the least resolution to render or assume */
#define OP_TASK_DPI_MAX 2400                       /**< the most: a letter page at 2400 dpi is 540 Mpx */
#define OP_TASK_ROTATE_THRESHOLD_MAX 1000          /**< orientation confidence; above 0 */
#define OP_TASK_MAX_PAGES_MAX 10000000             /**< the max_pages limit a user may set */
#define OP_TASK_SIZE_LIMIT_MAX (UINT64_C(1) << 50) /**< max_input_size and max_page_pixels; above 0 */

/** What the user asked for. */
typedef struct op_task_opts_s {
  op_model_spec_t model;
  unsigned formats; /**< OP_FMT_... mask, at least one */
  int psm;          /**< 3 by default */
  int user_dpi;     /**< 0 = not given: PDF pages render at limits.dpi, images keep theirs */
  int rotate_pages;
  float rotate_threshold; /**< least orientation confidence to turn a page; 0 = engine default */
  const char *pages;      /**< --pages value or NULL; owned once the codec set it (op_task_opts_dispose) */
  op_doc_limits_t limits;
  int priority;           /**< 0-9, higher first */
  const char *model_name; /**< a declared model (op_model_policy_t) by name, or NULL; not copied */
  /** The "model" option as given ("" = none): kept in the stored options. A
   * copy, not model_name, because the codec cannot know which models a
   * server declares; whoever does resolves it. */
  char model_option[OP_TASK_MODEL_NAME_MAX_LEN + 1];
} op_task_opts_t;

/** Fills opts with the defaults: tesseract eng, txt, psm 3, default limits, priority 5. */
void op_task_opts_init(op_task_opts_t *opts);

/** Frees what the codec allocated in opts (the pages copy); opts can be set again after op_task_opts_init. */
void op_task_opts_dispose(op_task_opts_t *opts);

/**
 * Sets one option from its text form, as a user gives it: key is the stored
 * name ("format", "lang", "engine", "oem", "psm", "dpi", "rotate_pages",
 * "rotate_threshold", "priority", "pages", "model", "max_input_size",
 * "max_pages", "max_page_pixels"). Returns 0, or OP_EUSAGE with reason
 * "bad_options" and a sentence naming the option and its bounds (OP_ENOMEM when
 * a copy fails); opts is unchanged on failure. pages is copied.
 */
int op_task_opts_set(op_task_opts_t *opts, const char *key, const char *value, op_error_t *err);

/**
 * Checks what no single option can: the null engine makes no PDF. Edges call
 * it once every option is set; op_task_opts_from_json calls it too.
 */
int op_task_opts_check(const op_task_opts_t *opts, op_error_t *err);

/**
 * The options as the task's stored JSON object: "format" always, every other
 * option only where it differs from the defaults. A new reference the caller
 * releases; NULL when out of memory.
 */
json_t *op_task_opts_to_json(const op_task_opts_t *opts);

/**
 * Reads stored options (JSON text, as op_task_opts_to_json wrote it) into
 * opts, which it initialises first. Each value is checked as op_task_opts_set
 * checks it, and an unknown key, a value of the wrong JSON type or one out of
 * bounds is OP_EUSAGE "bad_options"; text that is not a JSON object is
 * OP_EINTERNAL. On success the caller releases opts with op_task_opts_dispose
 * (or frees opts->pages); on failure nothing is left to release.
 */
int op_task_opts_from_json(const char *text, op_task_opts_t *opts, op_error_t *err);

#endif
