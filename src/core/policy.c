/* policy.c: model policies from the configuration. */
#include "core/policy.h"

#include "mem/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void op_model_policy_init(op_model_policy_t *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->engine, sizeof p->engine, "tesseract");
  snprintf(p->lang, sizeof p->lang, "eng");
  snprintf(p->device, sizeof p->device, "cpu");
  p->keep_alive_s = 300;
  p->batch = 1;
}

static int copy_field(const op_config_t *cfg, json_t *m, const char *key, char *dst, size_t len, op_error_t *err) {
  const char *s = NULL;
  int rc = op_config_string(cfg, m, key, &s, err);
  if (rc < 0 || s == NULL)
    return rc;
  if (strlen(s) >= len || s[0] == '\0')
    return op_config_error(cfg, json_object_get(m, key), err, "\"%s\" must be 1 to %zu characters", key, len - 1);
  snprintf(dst, len, "%s", s);
  return 0;
}

static int load_one(const op_config_t *cfg, json_t *m, uint64_t capacity, op_model_policy_t *p, op_error_t *err) {
  static const char *const keys[] = {"name",           "engine",   "languages",    "device", "keep_alive", "preload",
                                     "max_concurrent", "fallback", "memory_limit", "batch",  "recycle",    NULL};
  static const char *const recycle_keys[] = {"max_tasks", "max_memory_growth", "idle_exit", "isolate", NULL};
  op_model_policy_init(p);
  int rc = op_config_keys(cfg, m, keys, "a model", err);
  if (rc == 0 && json_object_get(m, "name") == NULL)
    rc = op_config_error(cfg, m, err, "a model needs a \"name\"");
  rc = rc ? rc : copy_field(cfg, m, "name", p->name, sizeof p->name, err);
  rc = rc ? rc : copy_field(cfg, m, "engine", p->engine, sizeof p->engine, err);
  rc = rc ? rc : copy_field(cfg, m, "languages", p->lang, sizeof p->lang, err);
  rc = rc ? rc : copy_field(cfg, m, "device", p->device, sizeof p->device, err);
  rc = rc ? rc : copy_field(cfg, m, "fallback", p->fallback, sizeof p->fallback, err);
  if (strcmp(p->fallback, "null") == 0 || strcmp(p->fallback, "none") == 0)
    p->fallback[0] = '\0';
  rc = rc ? rc : op_config_duration(cfg, m, "keep_alive", &p->keep_alive_s, err);
  rc = rc ? rc : op_config_bool(cfg, m, "preload", &p->preload, err);
  rc = rc ? rc : op_config_uint(cfg, m, "max_concurrent", 1000, &p->max_concurrent, err);
  const char *limit = NULL;
  rc = rc ? rc : op_config_string(cfg, m, "memory_limit", &limit, err);
  if (rc == 0 && limit != NULL && op_mem_budget_parse(limit, capacity, &p->memory_limit, err) < 0)
    rc = op_config_error(cfg, json_object_get(m, "memory_limit"), err, "\"memory_limit\": %s", err->message);
  rc = rc ? rc : op_config_uint(cfg, m, "batch", 1024, &p->batch, err);
  if (rc == 0 && p->batch == 0)
    rc = op_config_error(cfg, json_object_get(m, "batch"), err, "\"batch\" must be at least 1");
  if (rc == 0 && strcmp(p->device, "cpu") != 0 && strncmp(p->device, "cuda:", 5) != 0)
    rc = op_config_error(cfg, json_object_get(m, "device"), err, "\"device\" is cpu or cuda:N, not \"%s\"", p->device);
  json_t *r = json_object_get(m, "recycle");
  if (rc == 0 && r != NULL && !json_is_null(r)) {
    const char *isolate = NULL;
    rc = op_config_keys(cfg, r, recycle_keys, "recycle", err);
    rc = rc ? rc : op_config_uint(cfg, r, "max_tasks", 1000000, &p->max_tasks, err);
    rc = rc ? rc : op_config_size(cfg, r, "max_memory_growth", &p->max_memory_growth, err);
    rc = rc ? rc : op_config_duration(cfg, r, "idle_exit", &p->idle_exit_s, err);
    rc = rc ? rc : op_config_string(cfg, r, "isolate", &isolate, err);
    if (rc == 0 && isolate != NULL) {
      if (strcmp(isolate, "per_task") == 0)
        p->isolate_per_task = 1;
      else if (strcmp(isolate, "none") != 0)
        rc = op_config_error(cfg, json_object_get(r, "isolate"), err, "\"isolate\" is none or per_task, not \"%s\"",
                             isolate);
    }
  }
  return rc;
}

int op_model_policies_load(const op_config_t *cfg, uint64_t capacity, op_model_policy_t **out, unsigned *n,
                           op_error_t *err) {
  *out = NULL;
  *n = 0;
  json_t *root = cfg ? op_config_root(cfg) : NULL;
  json_t *list = root ? json_object_get(root, "models") : NULL;
  if (list == NULL || json_is_null(list))
    return 0;
  if (!json_is_array(list))
    return op_config_error(cfg, list, err, "\"models\" must be a list");
  size_t count = json_array_size(list);
  op_model_policy_t *p = calloc(count ? count : 1, sizeof *p);
  if (p == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory reading the models");
  for (size_t i = 0; i < count; i++) {
    int rc = load_one(cfg, json_array_get(list, i), capacity, &p[i], err);
    for (size_t k = 0; rc == 0 && k < i; k++)
      if (strcmp(p[k].name, p[i].name) == 0)
        rc = op_config_error(cfg, json_array_get(list, i), err, "model \"%s\" is declared twice", p[i].name);
      else if (strcmp(p[k].engine, p[i].engine) == 0 && strcmp(p[k].lang, p[i].lang) == 0)
        rc = op_config_error(cfg, json_array_get(list, i), err,
                             "model \"%s\" has the engine and languages of \"%s\" (one model, one declaration)",
                             p[i].name, p[k].name);
    if (rc < 0) {
      free(p);
      return rc;
    }
  }
  for (size_t i = 0; i < count; i++) {
    if (p[i].fallback[0] && op_model_policy_named(p, (unsigned)count, p[i].fallback) == NULL) {
      int rc = op_config_error(cfg, json_array_get(list, i), err, "model \"%s\": its fallback \"%s\" is not declared",
                               p[i].name, p[i].fallback);
      free(p);
      return rc;
    }
  }
  *out = p;
  *n = (unsigned)count;
  return 0;
}

const op_model_policy_t *op_model_policy_named(const op_model_policy_t *p, unsigned n, const char *name) {
  for (unsigned i = 0; name != NULL && i < n; i++)
    if (strcmp(p[i].name, name) == 0)
      return &p[i];
  return NULL;
}

const op_model_policy_t *op_model_policy_find(const op_model_policy_t *p, unsigned n, const char *engine,
                                              const char *lang) {
  for (unsigned i = 0; i < n; i++)
    if (strcmp(p[i].engine, engine) == 0 && strcmp(p[i].lang, lang) == 0)
      return &p[i];
  return NULL;
}
