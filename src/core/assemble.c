/*
 * assemble.c: a task's results: each format's page fragments joined in page
 * order (a failed page leaves its error in its place), written whole.
 */
#include "core/sched_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fs.h"

int op__assemble(op_task_t *t, op_error_t *err) {
  size_t n = t->n_pages;
  const char **files = calloc(n ? n : 1, sizeof *files);
  const char **errors = calloc(n ? n : 1, sizeof *errors);
  uint32_t *numbers = calloc(n ? n : 1, sizeof *numbers);
  char **owned = calloc(n ? n : 1, sizeof *owned);
  int rc = OP_ENOMEM;
  if (files == NULL || errors == NULL || numbers == NULL || owned == NULL)
    goto out;
  for (unsigned f = 1; f < OP_FMT_PDF; f <<= 1) {
    if (!(t->opts.formats & f))
      continue;
    for (size_t i = 0; i < n; i++) {
      free(owned[i]);
      owned[i] = NULL;
      numbers[i] = t->pages[i].index;
      errors[i] = t->pages[i].state == OP_PAGE_DONE ? NULL : t->pages[i].error.message;
      if (t->pages[i].state == OP_PAGE_DONE) {
        char *prefix = op_task_page_prefix(t, t->pages[i].index);
        if (prefix == NULL || asprintf(&owned[i], "%s.%s", prefix, op_format_ext((op_format_t)f)) < 0)
          owned[i] = NULL;
        free(prefix);
        if (owned[i] == NULL)
          goto out;
      }
      files[i] = owned[i];
    }
    /* Renamed into place when whole: a result is never served half-written,
     * and a failed assembly leaves no result rather than a truncated one. */
    char *dest = op_task_result_path(t, (op_format_t)f), *tmp = NULL;
    FILE *fp = dest ? op_atomic_create(dest, &tmp) : NULL;
    if (fp == NULL) {
      rc = op_error_set(err, OP_EIO, "internal", "cannot write the %s result: %s", op_format_name((op_format_t)f),
                        strerror(errno));
      free(dest);
      goto out;
    }
    rc = op_output_assemble((op_format_t)f, files, errors, numbers, n, t->title, fp, err);
    /* On the disk before the task is recorded succeeded: a power loss must
     * not leave a finished task without its result (fragments need not be:
     * a page whose fragment is lost runs again). */
    if ((op_atomic_finish(fp, tmp, dest, rc == 0) < 0 || op_fsync_path(dest, 1) < 0) && rc == 0)
      rc = op_error_set(err, OP_EIO, "internal", "writing the %s result failed", op_format_name((op_format_t)f));
    free(dest);
    if (rc < 0)
      goto out;
  }
  rc = 0;
out:
  if (rc == OP_ENOMEM)
    op_error_set(err, OP_ENOMEM, NULL, "out of memory assembling results");
  for (size_t i = 0; owned != NULL && i < n; i++)
    free(owned[i]);
  free(owned);
  free(files);
  free(errors);
  free(numbers);
  return rc;
}

/* Whether every result of a resumed task is already written. Results are
 * renamed into place whole and fragments are removed only after all of them
 * are: a task that ended just before a kill, whose end was not yet recorded,
 * has its results and may have lost its fragments, and must not assemble again. */
int op__results_written(const op_task_t *t) {
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1) {
    if (!(t->opts.formats & f))
      continue;
    char *path = op_task_result_path(t, (op_format_t)f);
    int found = path != NULL && access(path, F_OK) == 0;
    free(path);
    if (!found)
      return 0;
  }
  return 1;
}
