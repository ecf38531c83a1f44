/*
 * sniff.c: a document's type from its first bytes, and the default limits.
 *
 * Only magic bytes are read here, so this is safe in the supervising process;
 * file names are never trusted for the type.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doc/doc.h"

void op_doc_limits_init(op_doc_limits_t *limits) {
  limits->max_input_bytes = 256ull * 1024 * 1024;
  limits->max_pages = 2000;
  limits->max_page_pixels = 250000000ull;
  limits->dpi = 300;
  limits->max_render_bytes = UINT64_C(128) << 20;
}

op_doc_type_t op_doc_sniff(const unsigned char *head, size_t len) {
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= 8 && memcmp(head, png, 8) == 0)
    return OP_DOC_PNG;
  if (len >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff)
    return OP_DOC_JPEG;
  if (len >= 4 && ((memcmp(head, "II*\0", 4) == 0) || memcmp(head, "MM\0*", 4) == 0))
    return OP_DOC_TIFF;
  /* PDF readers accept junk before the header within the first KB; so do we. */
  for (size_t i = 0; i + 5 <= len && i < 1024; i++)
    if (memcmp(head + i, "%PDF-", 5) == 0)
      return OP_DOC_PDF;
  return OP_DOC_UNKNOWN;
}

int op_doc_sniff_file(const char *path, op_doc_type_t *type, uint64_t *size_bytes, op_error_t *err) {
  *type = OP_DOC_UNKNOWN;
  /* O_NONBLOCK: a FIFO or device named by mistake must not hang the caller. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int rc = 0;
  if (fd < 0)
    return op_error_set(err, OP_EBADINPUT, "bad_input", "cannot open the file: %s", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    rc = op_error_set(err, OP_EBADINPUT, "bad_input", "not a regular file");
    goto out;
  }
  unsigned char head[1024];
  size_t n = 0;
  while (n < sizeof head) {
    ssize_t got = read(fd, head + n, sizeof head - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = op_error_set(err, OP_EBADINPUT, "bad_input", "cannot read the file: %s", strerror(errno));
      goto out;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  if (size_bytes != NULL)
    *size_bytes = (uint64_t)st.st_size;
  if (n == 0) {
    rc = op_error_set(err, OP_EBADINPUT, "bad_input", "the file is empty (0 bytes)");
    goto out;
  }
  *type = op_doc_sniff(head, n);
  if (*type == OP_DOC_UNKNOWN)
    rc = op_error_set(err, OP_EUNSUPPORTED, "bad_input",
                      "not a PNG, JPEG, TIFF or PDF file (judged by its content): unsupported type");
out:
  close(fd);
  return rc;
}

static const char *const type_names[] = {"unknown", "png", "jpeg", "tiff", "pdf"};

const char *op_doc_type_name(op_doc_type_t type) {
  return (unsigned)type <= OP_DOC_PDF ? type_names[type] : "unknown";
}

op_doc_type_t op_doc_type_from_name(const char *name) {
  for (int i = 1; i <= OP_DOC_PDF; i++)
    if (strcmp(name, type_names[i]) == 0)
      return (op_doc_type_t)i;
  return OP_DOC_UNKNOWN;
}
