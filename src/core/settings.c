/*
 * settings.c: the service's settings from its YAML file and the environment
 * (docs/configuration.md): read whole at start, read again on SIGHUP and
 * compared with those in use, so that a reload applies what may change while
 * tasks run and says what needs a restart. A file with an error changes
 * nothing.
 */
#include "core/settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sched.h"
#include "mem/mem.h"
#include "util/log.h"

const char *const op_service_config_keys[] = {"server.listen",
                                              "server.data_dir",
                                              "server.workers",
                                              "server.tokens",
                                              "server.max_queue",
                                              "server.queue_timeout",
                                              "server.page_timeout",
                                              "server.max_attempts",
                                              "server.retention_days",
                                              "server.max_input_size",
                                              "server.drain_timeout",
                                              "server.min_free_space",
                                              "server.max_connections_per_client",
                                              "server.health_listen",
                                              "server.task_cpu_budget",
                                              "server.render_cpu",
                                              "server.render_memory",
                                              "server.sandbox",
                                              "server.worker_user",
                                              "store.url",
                                              "store.lease",
                                              "store.heartbeat",
                                              "store.poll",
                                              "store.poll_only",
                                              "store.claim_batch",
                                              "log.level",
                                              "log.format",
                                              "devices.cpu.budget",
                                              "devices.cpu.warning",
                                              "devices.cpu.critical",
                                              "devices.cuda.budget",
                                              "pressure.cooldown",
                                              "pressure.defer_below",
                                              NULL};

int op_service_config_load(const char *path, op_config_t **cfg, op_error_t *err) {
  *cfg = NULL;
  int rc = path != NULL ? op_config_load(path, cfg, err) : 0;
  if (rc == 0)
    rc = op_config_env(cfg, op_service_config_keys, err);
  if (rc < 0) {
    op_config_free(*cfg);
    *cfg = NULL;
  }
  return rc;
}

/* A share of the budget: "80%" or "0.8", above 0 and at most 1. */
static int config_share(const op_config_t *cfg, json_t *obj, const char *key, double *out, op_error_t *err) {
  const char *text = NULL;
  int rc = op_config_string(cfg, obj, key, &text, err);
  if (rc < 0 || text == NULL)
    return rc;
  char *end;
  double v = strtod(text, &end);
  if (*end == '%' && end[1] == '\0')
    v /= 100, end++;
  if (end == text || *end != '\0' || !(v > 0 && v <= 1))
    return op_config_error(cfg, json_object_get(obj, key), err,
                           "\"%s\": expected a share of the budget such as 80%% or 0.8, not \"%s\"", key, text);
  *out = v;
  return 0;
}

/* devices.cpu: budget, warning, critical. */
static int load_cpu(op_settings_t *s, const op_config_t *cfg, json_t *cpu, op_error_t *err) {
  static const char *const cpu_keys[] = {"budget", "warning", "critical", NULL};
  const char *b = NULL;
  uint64_t check;
  if (cpu == NULL || json_is_null(cpu))
    return 0;
  int rc = op_config_keys(cfg, cpu, cpu_keys, "devices.cpu", err);
  rc = rc ? rc : op_config_string(cfg, cpu, "budget", &b, err);
  rc = rc ? rc : config_share(cfg, cpu, "warning", &s->warning_share, err);
  rc = rc ? rc : config_share(cfg, cpu, "critical", &s->critical_share, err);
  if (rc == 0 && s->warning_share >= s->critical_share)
    rc = op_config_error(cfg, cpu, err, "devices.cpu: warning must be below critical");
  if (rc == 0 && b != NULL && op_mem_budget_parse(b, s->capacity, &check, err) < 0)
    rc = op_config_error(cfg, json_object_get(cpu, "budget"), err, "devices.cpu.budget: %s", err->message);
  if (rc == 0 && b != NULL)
    snprintf(s->budget_text, sizeof s->budget_text, "%s", b);
  return rc;
}

/* devices: cpu and cuda. */
static int load_devices(op_settings_t *s, const op_config_t *cfg, json_t *dev, op_error_t *err) {
  static const char *const devices[] = {"cpu", "cuda", NULL};
  static const char *const cuda_keys[] = {"budget", NULL};
  if (dev == NULL || json_is_null(dev))
    return 0;
  int rc = op_config_keys(cfg, dev, devices, "devices", err);
  rc = rc ? rc : load_cpu(s, cfg, json_object_get(dev, "cpu"), err);
  json_t *cuda = json_object_get(dev, "cuda");
  const char *gb = NULL;
  uint64_t check;
  if (rc == 0 && cuda != NULL && !json_is_null(cuda) &&
      (rc = op_config_keys(cfg, cuda, cuda_keys, "devices.cuda", err)) == 0)
    rc = op_config_string(cfg, cuda, "budget", &gb, err);
  if (rc == 0 && gb != NULL && op_mem_budget_parse(gb, UINT64_C(1) << 50, &check, err) < 0)
    rc = op_config_error(cfg, json_object_get(cuda, "budget"), err, "devices.cuda.budget: %s", err->message);
  if (rc == 0 && gb != NULL)
    snprintf(s->gpu_budget_text, sizeof s->gpu_budget_text, "%s", gb);
  return rc;
}

/* pressure: the monitor's cooldown and the priority below which tasks wait. */
static int load_pressure(op_settings_t *s, const op_config_t *cfg, json_t *p, op_error_t *err) {
  static const char *const keys[] = {"cooldown", "defer_below", NULL};
  if (p == NULL || json_is_null(p))
    return 0;
  int rc = op_config_keys(cfg, p, keys, "pressure", err);
  rc = rc ? rc : op_config_duration(cfg, p, "cooldown", &s->cooldown_s, err);
  rc = rc ? rc : op_config_uint(cfg, p, "defer_below", 10, &s->defer_below, err);
  return rc;
}

/* log: level (the format is the command's, read before the service starts). */
static int load_log(op_settings_t *s, const op_config_t *cfg, json_t *log, op_error_t *err) {
  static const char *const log_keys[] = {"level", "format", NULL};
  const char *level = NULL;
  if (log == NULL || json_is_null(log))
    return 0;
  int rc = op_config_keys(cfg, log, log_keys, "log", err);
  rc = rc ? rc : op_config_string(cfg, log, "level", &level, err);
  if (rc == 0 && level != NULL && op_log_level_parse(level) < 0)
    rc = op_config_error(cfg, json_object_get(log, "level"), err,
                         "\"level\": debug, info, warn, error or off, not \"%s\"", level);
  if (rc == 0 && level != NULL)
    snprintf(s->log_level_text, sizeof s->log_level_text, "%s", level);
  return rc;
}

/* Reads the YAML file and the environment into s: devices, pressure, log, models. */
static int load_file(op_settings_t *s, const char *path, op_error_t *err) {
  static const char *const sections[] = {"server", "store", "devices", "models", "pressure", "log", NULL};
  op_config_t *cfg = NULL;
  int rc = op_service_config_load(path, &cfg, err);
  if (rc < 0)
    return rc;
  json_t *root = op_config_root(cfg);
  if (root != NULL) {
    rc = op_config_keys(cfg, root, sections, "the configuration", err);
    rc = rc ? rc : load_devices(s, cfg, json_object_get(root, "devices"), err);
    rc = rc ? rc : load_pressure(s, cfg, json_object_get(root, "pressure"), err);
    rc = rc ? rc : load_log(s, cfg, json_object_get(root, "log"), err);
  }
  if (rc == 0)
    rc = op_model_policies_load(cfg, s->capacity, &s->policies, &s->n_policies, err);
  op_config_free(cfg);
  if (rc == 0 && path != NULL)
    op_log_info("configuration %s: %u models", path, s->n_policies);
  return rc;
}

int op_settings_read(const op_service_config_t *cfg, op_settings_t *s, op_error_t *err) {
  memset(s, 0, sizeof *s);
  s->capacity = op_mem_cpu_capacity();
  op_sched_config_t defaults;
  op_sched_config_init(&defaults);
  s->warning_share = defaults.warning_share;
  s->critical_share = defaults.critical_share;
  s->cooldown_s = defaults.cooldown_s;
  s->defer_below = (unsigned)defaults.defer_below;
  int rc = load_file(s, cfg->config_file, err);
  const char *budget = cfg->memory_budget ? cfg->memory_budget : s->budget_text[0] ? s->budget_text : "80%";
  if (rc == 0)
    rc = op_mem_budget_parse(budget, s->capacity, &s->budget, err);
  return rc;
}

int op_settings_reread(const op_settings_t *current, const op_service_config_t *cfg, op_settings_t *fresh,
                       op_error_t *err) {
  memset(fresh, 0, sizeof *fresh);
  fresh->capacity = current->capacity;
  fresh->warning_share = current->warning_share;
  fresh->critical_share = current->critical_share;
  fresh->cooldown_s = current->cooldown_s;
  fresh->defer_below = current->defer_below;
  fresh->budget = current->budget;
  int rc = load_file(fresh, cfg->config_file, err);
  if (rc == 0 && cfg->memory_budget == NULL && fresh->budget_text[0])
    rc = op_mem_budget_parse(fresh->budget_text, fresh->capacity, &fresh->budget, err);
  return rc;
}

void op_settings_dispose(op_settings_t *s) {
  free(s->policies);
  s->policies = NULL;
  s->n_policies = 0;
}

/* Says in the log what a reload changes in one value. */
static void changed(const char *what, const char *before, const char *after) {
  if (strcmp(before, after) != 0)
    op_log_info("reload: %s: %s -> %s", what, before, after);
}

static void changed_num(const char *what, double before, double after) {
  char a[32], b[32];
  snprintf(a, sizeof a, "%g", before);
  snprintf(b, sizeof b, "%g", after);
  changed(what, a, b);
}

/* Whether two model lists declare the same models (by name, engine, languages, device). */
static int same_models(const op_settings_t *a, const op_settings_t *b) {
  if (a->n_policies != b->n_policies)
    return 0;
  for (unsigned i = 0; i < a->n_policies; i++) {
    const op_model_policy_t *x = &a->policies[i], *y = &b->policies[i];
    if (strcmp(x->name, y->name) != 0 || strcmp(x->engine, y->engine) != 0 || strcmp(x->lang, y->lang) != 0 ||
        strcmp(x->device, y->device) != 0 ||
        (y->fallback[0] && op_model_policy_named(a->policies, a->n_policies, y->fallback) == NULL))
      return 0;
  }
  return 1;
}

/* Each model's tunables, updated in place: running tasks point at them. */
static void apply_models(op_settings_t *current, const op_settings_t *fresh) {
  for (unsigned i = 0; i < current->n_policies; i++) {
    op_model_policy_t *a = &current->policies[i];
    const op_model_policy_t *b = &fresh->policies[i];
    char what[160];
#define TUNE(field, label)                                                                                             \
  snprintf(what, sizeof what, "model %s: %s", a->name, label);                                                         \
  changed_num(what, (double)a->field, (double)b->field);                                                               \
  a->field = b->field
    TUNE(keep_alive_s, "keep_alive");
    TUNE(preload, "preload");
    TUNE(max_concurrent, "max_concurrent");
    TUNE(memory_limit, "memory_limit");
    TUNE(batch, "batch");
    TUNE(max_tasks, "recycle.max_tasks");
    TUNE(max_memory_growth, "recycle.max_memory_growth");
    TUNE(idle_exit_s, "recycle.idle_exit");
    TUNE(isolate_per_task, "recycle.isolate per_task");
#undef TUNE
    snprintf(what, sizeof what, "model %s: fallback", a->name);
    changed(what, a->fallback, b->fallback);
    snprintf(a->fallback, sizeof a->fallback, "%s", b->fallback);
  }
}

void op_settings_apply(op_settings_t *current, const op_settings_t *fresh, const op_service_config_t *cfg) {
  if (fresh->log_level_text[0] && cfg->log_level == NULL) {
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    changed("log.level", names[op_log_level()], fresh->log_level_text);
    op_log_set_level((op_log_level_t)op_log_level_parse(fresh->log_level_text));
  }
  if (fresh->budget != current->budget) {
    char a[32], b[32];
    op_mem_format(current->budget, a, sizeof a);
    op_mem_format(fresh->budget, b, sizeof b);
    changed("devices.cpu.budget", a, b);
    current->budget = fresh->budget;
  }
  changed_num("devices.cpu.warning", current->warning_share, fresh->warning_share);
  changed_num("devices.cpu.critical", current->critical_share, fresh->critical_share);
  changed_num("pressure.cooldown", current->cooldown_s, fresh->cooldown_s);
  changed_num("pressure.defer_below", current->defer_below, fresh->defer_below);
  current->warning_share = fresh->warning_share;
  current->critical_share = fresh->critical_share;
  current->cooldown_s = fresh->cooldown_s;
  current->defer_below = fresh->defer_below;
  if (same_models(current, fresh))
    apply_models(current, fresh);
  else
    op_log_warn("reload: the models were added, removed or redefined (name, engine, languages, device): that needs "
                "a restart; their other settings are not changed either");
}

int op_service_check_config(const op_service_config_t *cfg, unsigned *n_models, op_error_t *err) {
  op_settings_t s;
  int rc = op_settings_read(cfg, &s, err);
  *n_models = s.n_policies;
  op_settings_dispose(&s);
  return rc;
}
