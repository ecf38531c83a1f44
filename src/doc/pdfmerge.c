/*
 * pdfmerge.c: one searchable PDF from the per-page PDFs the engine wrote.
 *
 * Pages are grafted with one graft map per input, so resources an input's
 * pages share (Tesseract's glyphless font) are copied once per input. Runs in
 * a worker: the inputs hold image data that came from untrusted documents.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "doc/doc.h"
#include "doc/pdf_internal.h"
#include "util/fs.h"

int op_doc_pdf_merge(const char *const *inputs, size_t n, const char *output, op_error_t *err) {
  fz_context *ctx = op__mupdf_context(NULL);
  if (ctx == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory merging PDFs");
  pdf_document *volatile dst = NULL;
  pdf_document *volatile src = NULL;
  pdf_graft_map *volatile map = NULL;
  volatile size_t at = 0;
  volatile int rc = 0;
  /* Saved beside and renamed into place, so a reader never sees half a PDF. */
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.tmp-%d", output, (int)getpid()) < 0) {
    fz_drop_context(ctx);
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory merging PDFs");
  }
  fz_try(ctx) {
    dst = pdf_create_document(ctx);
    for (at = 0; at < n; at++) {
      src = pdf_open_document(ctx, inputs[at]);
      map = pdf_new_graft_map(ctx, dst);
      int pages = pdf_count_pages(ctx, src);
      for (int i = 0; i < pages; i++)
        pdf_graft_mapped_page(ctx, map, -1, src, i);
      pdf_drop_graft_map(ctx, map);
      map = NULL;
      pdf_drop_document(ctx, src);
      src = NULL;
    }
    pdf_write_options opts = pdf_default_write_options;
    opts.do_compress = 1;
    opts.do_garbage = 1;
    pdf_save_document(ctx, dst, tmp, &opts);
    if (op_fsync_path(tmp, 0) < 0 || rename(tmp, output) < 0 || op_fsync_path(output, 1) < 0)
      fz_throw(ctx, FZ_ERROR_GENERIC, "cannot write %s to the disk as %s", tmp, output);
  }
  fz_always(ctx) {
    pdf_drop_graft_map(ctx, map);
    pdf_drop_document(ctx, src);
    pdf_drop_document(ctx, dst);
  }
  fz_catch(ctx) {
    if (at < n)
      rc = op_error_set(err, OP_EINTERNAL, "internal", "merging page PDF %s failed: %s", inputs[at],
                        fz_caught_message(ctx));
    else
      rc = op_error_set(err, OP_EIO, "internal", "writing the merged PDF failed: %s", fz_caught_message(ctx));
  }
  if (rc < 0)
    unlink(tmp);
  free(tmp);
  fz_drop_context(ctx);
  return rc;
}
