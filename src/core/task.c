/* task.c: tasks and their page jobs: creation, names, and where their files go. */
#include "core/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"

const char *op_task_status_name(op_task_status_t status) {
  return (unsigned)status < OP_STORE_STATUSES ? op_store_statuses[status] : "unknown";
}

int op_task_status_parse(const char *name) {
  for (int i = 0; name != NULL && i < OP_STORE_STATUSES; i++)
    if (strcmp(op_store_statuses[i], name) == 0)
      return i;
  return -1;
}

op_task_t *op_task_create(const char *path, const char *title, op_doc_type_t type, const op_task_opts_t *opts) {
  op_task_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->input_path = strdup(path);
  t->title = strdup(title ? title : path);
  t->type = type;
  t->opts = *opts;
  t->opts.pages = opts->pages ? strdup(opts->pages) : NULL;
  if (t->input_path == NULL || t->title == NULL || (opts->pages && t->opts.pages == NULL)) {
    op_task_destroy(t);
    return NULL;
  }
  return t;
}

void op_task_destroy(op_task_t *t) {
  if (t == NULL)
    return;
  if (t->scratch_dir != NULL && !t->keep_scratch)
    op_remove_tree(t->scratch_dir);
  free(t->scratch_dir);
  free(t->input_path);
  free(t->title);
  free((char *)t->opts.pages);
  free(t->pages);
  free(t);
}

static char *scratch_path(const op_task_t *t, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", t->scratch_dir, name) < 0)
    return NULL;
  return p;
}

char *op_task_result_path(const op_task_t *t, op_format_t fmt) {
  char name[32];
  snprintf(name, sizeof name, "result.%s", op_format_ext(fmt));
  return scratch_path(t, name);
}

char *op_task_page_prefix(const op_task_t *t, uint32_t index) {
  char name[32];
  snprintf(name, sizeof name, "p%06u", index + 1);
  return scratch_path(t, name);
}
