/* pdf_common.c: MuPDF set-up and page measurement shared by the probe and the reader. */
#include "doc/pdf_internal.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static void mupdf_message(void *user, const char *message) {
  (void)user;
  op_log_debug("mupdf: %s", message);
}

/* ---- the counting allocator ----
 * Each block carries its size in a header, so realloc and free can count it;
 * the header keeps malloc's alignment. */
#define HEADER sizeof(max_align_t)

static void *budget_malloc(void *user, size_t size) {
  op_mupdf_budget_t *b = user;
  if (size > SIZE_MAX - HEADER || (b->limit > 0 && size > b->limit - (b->used < b->limit ? b->used : b->limit))) {
    b->refused = size;
    return NULL;
  }
  unsigned char *block = malloc(size + HEADER);
  if (block == NULL)
    return NULL;
  memcpy(block, &size, sizeof size);
  b->used += size;
  if (b->refused == size) /* MuPDF emptied its store and asked again: satisfied */
    b->refused = 0;
  return block + HEADER;
}

static void budget_free(void *user, void *ptr) {
  op_mupdf_budget_t *b = user;
  if (ptr == NULL)
    return;
  unsigned char *block = (unsigned char *)ptr - HEADER;
  size_t size;
  memcpy(&size, block, sizeof size);
  b->used -= size;
  free(block);
}

static void *budget_realloc(void *user, void *old, size_t size) {
  op_mupdf_budget_t *b = user;
  if (old == NULL)
    return budget_malloc(user, size);
  if (size == 0) {
    budget_free(user, old);
    return NULL;
  }
  unsigned char *block = (unsigned char *)old - HEADER;
  size_t was;
  memcpy(&was, block, sizeof was);
  size_t others = b->used - was;
  if (size > SIZE_MAX - HEADER || (b->limit > 0 && size > was && size > b->limit - (others < b->limit ? others : b->limit))) {
    b->refused = size;
    return NULL;
  }
  unsigned char *grown = realloc(block, size + HEADER);
  if (grown == NULL)
    return NULL;
  memcpy(grown, &size, sizeof size);
  b->used = others + size;
  if (b->refused == size)
    b->refused = 0;
  return grown + HEADER;
}

fz_context *op__mupdf_context(op_mupdf_budget_t *budget) {
  fz_alloc_context alloc = {budget, budget_malloc, budget_realloc, budget_free};
  fz_context *ctx = fz_new_context(budget != NULL ? &alloc : NULL, NULL, FZ_STORE_DEFAULT);
  if (ctx == NULL)
    return NULL;
  fz_set_warning_callback(ctx, mupdf_message, NULL);
  fz_set_error_callback(ctx, mupdf_message, NULL);
  return ctx;
}

fz_matrix op__pdf_render_matrix(int dpi) {
  return fz_scale((float)dpi / 72.0f, (float)dpi / 72.0f);
}

void op__pdf_page_pixels(fz_context *ctx, fz_page *page, int dpi, uint32_t *width, uint32_t *height) {
  fz_rect bounds = fz_bound_page(ctx, page);
  fz_irect box = fz_round_rect(fz_transform_rect(bounds, op__pdf_render_matrix(dpi)));
  *width = box.x1 > box.x0 ? (uint32_t)(box.x1 - box.x0) : 0;
  *height = box.y1 > box.y0 ? (uint32_t)(box.y1 - box.y0) : 0;
}
