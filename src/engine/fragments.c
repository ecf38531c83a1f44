/* fragments.c: page result fragments as files at the prefix the supervisor chose. */
#include "engine/fragments.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"

char *op__fragment_path(const op_page_opts_t *opts, op_format_t fmt) {
  char *path = NULL;
  if (asprintf(&path, "%s.%s", opts->out_prefix, op_format_ext(fmt)) < 0)
    return NULL;
  return path;
}

/* Written beside and renamed into place: a reader (the assembler, or a
 * second run of the same page after a restart) sees a whole fragment or none. */
int op__fragment_write(const op_page_opts_t *opts, op_format_t fmt, const char *text, op_error_t *err) {
  char *path = op__fragment_path(opts, fmt);
  if (path == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  char *tmp = NULL;
  FILE *f = op_atomic_create(path, &tmp);
  int rc = 0;
  if (f == NULL) {
    rc = op_error_set(err, OP_EIO, "internal", "cannot write %s: %s", path, strerror(errno));
  } else {
    size_t len = text ? strlen(text) : 0;
    int ok = len == 0 || fwrite(text, 1, len, f) == len;
    if (op_atomic_finish(f, tmp, path, ok) < 0)
      rc = op_error_set(err, OP_EIO, "internal", "writing %s failed: %s", path, strerror(errno));
  }
  free(path);
  return rc;
}

int op__fragment_write_json(const op_page_opts_t *opts, json_t *page, op_error_t *err) {
  char *text = json_dumps(page, JSON_COMPACT);
  if (text == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory writing the json result");
  int rc = op__fragment_write(opts, OP_FMT_JSON, text, err);
  free(text);
  return rc;
}
