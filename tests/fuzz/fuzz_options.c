/*
 * fuzz_options.c: task options as a user gives them (query parameters or
 * form fields, one "key=value" a line here) and as the store keeps them
 * (JSON). Beyond not crashing, the property that keeps accepted work from
 * being lost: options that were accepted are stored as JSON that reads back
 * to the same options, so a task survives a restart; and stored JSON of any
 * shape is either read or refused, never half read.
 */
#include <string.h>

#include "core/options.h"
#include "fuzz_common.h"

static void round_trip(const op_task_opts_t *opts) {
  json_t *stored = op_task_opts_to_json(opts);
  if (stored == NULL)
    return; /* out of memory */
  char *text = json_dumps(stored, JSON_COMPACT | JSON_SORT_KEYS);
  op_task_opts_t back;
  op_error_t err;
  if (text == NULL || op_task_opts_from_json(text, &back, &err) != 0)
    abort(); /* accepted options that cannot be read back: the task would be lost at a restart */
  json_t *again = op_task_opts_to_json(&back);
  if (again == NULL || !json_equal(stored, again))
    abort();
  json_decref(again);
  op_task_opts_dispose(&back);
  free(text);
  json_decref(stored);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  /* As stored JSON: read or refused. */
  op_task_opts_t stored;
  op_error_t err;
  if (op_task_opts_from_json(text, &stored, &err) == 0)
    op_task_opts_dispose(&stored);
  /* As a user's options, a line each; a refused one leaves the others as they were. */
  op_task_opts_t opts;
  op_task_opts_init(&opts);
  int accepted = 1;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char *eq = strchr(line, '=');
    if (eq == NULL)
      continue;
    *eq = '\0';
    accepted &= op_task_opts_set(&opts, line, eq + 1, &err) == 0;
  }
  if (accepted && op_task_opts_check(&opts, &err) == 0)
    round_trip(&opts);
  op_task_opts_dispose(&opts);
  free(text);
  return 0;
}
