/*
 * fragments.h: writing a page's result fragments, shared by the engines.
 * Internal to src/engine.
 */
#ifndef OCRPOOL_ENGINE_FRAGMENTS_H
#define OCRPOOL_ENGINE_FRAGMENTS_H

#include <jansson.h>

#include "doc/doc.h"
#include "engine/engine.h"

/** The path of a page's fragment in fmt; caller frees. NULL when out of memory. */
char *op__fragment_path(const op_page_opts_t *opts, op_format_t fmt);

/** Writes text (may be NULL: empty) as the page's fragment in fmt. */
int op__fragment_write(const op_page_opts_t *opts, op_format_t fmt, const char *text, op_error_t *err);

/** Writes a JSON object as the page's json fragment (compact). Does not take the reference. */
int op__fragment_write_json(const op_page_opts_t *opts, json_t *page, op_error_t *err);

#endif
