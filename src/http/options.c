/*
 * options.c: the task options a submission gives as query parameters or form
 * fields, checked by the options codec (core/options.h) and turned into the
 * JSON stored with the task. What is left here is the API's own: which
 * options a remote user may set at all, the sync route's timeout, and model
 * names, which only the service can resolve.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/options.h"
#include "http/http_internal.h"

int op__build_options(op_service_t *svc, json_t *params, int sync, json_t **out, int *priority, char *why,
                      size_t why_len) {
  static const char *const known[] = {"format",   "lang",         "psm",    "dpi",     "pages",
                                      "priority", "rotate_pages", "engine", "timeout", "model"};
  op_task_opts_t opts;
  op_task_opts_init(&opts);
  op_error_t e;
  long timeout_s = 0;
  int rc = -1;
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok |= strcmp(key, known[i]) == 0;
    if (!ok || (!sync && strcmp(key, "timeout") == 0)) {
      snprintf(why, why_len, "unknown option \"%s\"", key);
      goto out;
    }
  }
  json_object_foreach(params, key, v) {
    const char *value = json_string_value(v) ? json_string_value(v) : "";
    if (strcmp(key, "timeout") == 0) {
      char *end;
      errno = 0;
      timeout_s = strtol(value, &end, 10);
      if (errno != 0 || end == value || *end != '\0' || timeout_s < 1 || timeout_s > 600) {
        snprintf(why, why_len, "bad timeout \"%.40s\": a whole number from 1 to 600", value);
        goto out;
      }
    } else if (strcmp(key, "pages") == 0 && strlen(value) > OP_TASK_PAGES_HTTP_MAX_LEN) {
      snprintf(why, why_len, "pages is %zu characters long, over the limit of %d", strlen(value),
               OP_TASK_PAGES_HTTP_MAX_LEN);
      goto out;
    } else if (op_task_opts_set(&opts, key, value, &e) < 0) {
      snprintf(why, why_len, "%.250s", e.message);
      goto out;
    }
  }
  if (opts.model_option[0] != '\0') {
    const op_model_policy_t *pol = op_service_model(svc, opts.model_option);
    if (pol == NULL) {
      snprintf(why, why_len, "no model named \"%.60s\" is declared (see GET /v1/models)", opts.model_option);
      goto out;
    }
    if (json_object_get(params, "engine") != NULL || json_object_get(params, "lang") != NULL) {
      snprintf(why, why_len, "model names its engine and languages: give model, or engine and lang, not both");
      goto out;
    }
    if (strcmp(pol->engine, "null") == 0 && (opts.formats & OP_FMT_PDF)) {
      snprintf(why, why_len, "the null engine produces no pdf");
      goto out;
    }
    snprintf(opts.model_option, sizeof opts.model_option, "%s", pol->name);
  }
  if (op_task_opts_check(&opts, &e) < 0) {
    snprintf(why, why_len, "%.250s", e.message);
    goto out;
  }
  json_t *o = op_task_opts_to_json(&opts);
  if (o == NULL || (timeout_s > 0 && json_object_set_new(o, "timeout", json_integer(timeout_s)) < 0)) {
    json_decref(o);
    snprintf(why, why_len, "out of memory");
    goto out;
  }
  *priority = opts.priority;
  *out = o;
  rc = 0;
out:
  op_task_opts_dispose(&opts);
  return rc;
}
