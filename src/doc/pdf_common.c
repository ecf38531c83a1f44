/* pdf_common.c: MuPDF set-up and page measurement shared by the probe and the reader. */
#include "doc/pdf_internal.h"
#include "util/log.h"

static void mupdf_message(void *user, const char *message) {
  (void)user;
  op_log_debug("mupdf: %s", message);
}

fz_context *op__mupdf_context(void) {
  fz_context *ctx = fz_new_context(NULL, NULL, FZ_STORE_DEFAULT);
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
