/*
 * fuzz_probe.c: sniffing and probing a document, what the server does to
 * every upload before a task is accepted (sniff) and what a worker does first
 * (probe: page count and sizes from PNG, JPEG, TIFF and PDF headers, through
 * Leptonica and MuPDF under the render memory cap). Seeds: tests/data.
 * Invariants besides not crashing: a probe that succeeds names the sniffed
 * type and reports pages within the limits it was given.
 */
#include "doc/doc.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  op_doc_type_t type = op_doc_sniff(data, size);
  const char *path = fuzz_input_file(data, size, "");
  op_doc_limits_t limits;
  op_doc_limits_init(&limits);
  limits.max_pages = 64;
  limits.max_page_pixels = 50u * 1000 * 1000;
  limits.max_render_bytes = 64u << 20;
  op_doc_probe_t probe = {0};
  op_error_t err;
  if (op_doc_probe(path, NULL, &limits, &probe, &err) == 0) {
    if (probe.type != type || probe.n_pages == 0 || probe.n_pages > limits.max_pages)
      abort();
    for (size_t i = 0; i < probe.n_pages; i++)
      if ((uint64_t)probe.pages[i].width_px * probe.pages[i].height_px > limits.max_page_pixels)
        abort();
  }
  op_doc_probe_dispose(&probe);
  return 0;
}
