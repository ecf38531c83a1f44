/* config.c: libyaml's event stream folded into a JSON tree with line numbers. */
#include "util/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/parse.h"

struct op_config_s {
  char *path;
  json_t *root;
  json_t *lines; /* "%p" of each value -> its line (values are never freed while cfg lives) */
  json_t *envs;  /* "%p" of each value set from the environment -> the variable's name */
};

static void note_line(op_config_t *cfg, json_t *v, size_t line) {
  char key[32];
  snprintf(key, sizeof key, "%p", (void *)v);
  json_object_set_new(cfg->lines, key, json_integer((json_int_t)line));
}

static int line_of(const op_config_t *cfg, json_t *v) {
  char key[32];
  snprintf(key, sizeof key, "%p", (void *)v);
  return (int)json_integer_value(json_object_get(cfg->lines, key));
}

int op_config_error(const op_config_t *cfg, json_t *v, op_error_t *err, const char *fmt, ...) {
  char what[700], key[32];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(key, sizeof key, "%p", (void *)v);
  const char *env = cfg->envs ? json_string_value(json_object_get(cfg->envs, key)) : NULL;
  if (env != NULL)
    return op_error_set(err, OP_EUSAGE, "bad_config", "environment %s: %s", env, what);
  return op_error_set(err, OP_EUSAGE, "bad_config", "%s:%d: %s", cfg->path, v ? line_of(cfg, v) : 0, what);
}

/* "~" and an empty value are null; the word null stays a word, because
 * `engine: null` names ocrpool's null engine (a key that takes none says so). */
static json_t *scalar_value(const yaml_event_t *ev) {
  const char *text = (const char *)ev->data.scalar.value;
  if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (text[0] == '\0' || strcmp(text, "~") == 0))
    return json_null();
  return json_stringn(text, ev->data.scalar.length);
}

/* Parses one value whose first event is ev (already taken); NULL + err on failure. */
static json_t *parse_value(op_config_t *cfg, yaml_parser_t *p, yaml_event_t *ev, op_error_t *err, int depth);

static int next_event(op_config_t *cfg, yaml_parser_t *p, yaml_event_t *ev, op_error_t *err) {
  if (!yaml_parser_parse(p, ev))
    return op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: %s", cfg->path, p->problem_mark.line + 1,
                        p->problem ? p->problem : "not valid YAML");
  return 0;
}

static json_t *parse_value(op_config_t *cfg, yaml_parser_t *p, yaml_event_t *ev, op_error_t *err, int depth) {
  size_t line = ev->start_mark.line + 1;
  if (depth > 32) {
    op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: nested too deeply", cfg->path, line);
    return NULL;
  }
  json_t *v = NULL;
  if (ev->type == YAML_SCALAR_EVENT) {
    v = scalar_value(ev);
  } else if (ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT) {
    int mapping = ev->type == YAML_MAPPING_START_EVENT;
    v = mapping ? json_object() : json_array();
    for (;;) {
      yaml_event_t k;
      if (next_event(cfg, p, &k, err) < 0)
        goto fail;
      if (k.type == YAML_SEQUENCE_END_EVENT || k.type == YAML_MAPPING_END_EVENT) {
        yaml_event_delete(&k);
        break;
      }
      char *key = NULL;
      if (mapping) {
        if (k.type != YAML_SCALAR_EVENT) {
          op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: a key must be a plain word", cfg->path,
                       k.start_mark.line + 1);
          yaml_event_delete(&k);
          goto fail;
        }
        key = strdup((const char *)k.data.scalar.value);
        size_t kline = k.start_mark.line + 1;
        yaml_event_delete(&k);
        if (key == NULL || json_object_get(v, key) != NULL) {
          op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: \"%s\" is given twice", cfg->path, kline,
                       key ? key : "?");
          free(key);
          goto fail;
        }
        if (next_event(cfg, p, &k, err) < 0) {
          free(key);
          goto fail;
        }
      }
      json_t *child = parse_value(cfg, p, &k, err, depth + 1);
      yaml_event_delete(&k);
      if (child == NULL) {
        free(key);
        goto fail;
      }
      if (mapping)
        json_object_set_new(v, key, child);
      else
        json_array_append_new(v, child);
      free(key);
    }
  } else if (ev->type == YAML_ALIAS_EVENT) {
    op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: aliases are not supported", cfg->path, line);
    return NULL;
  } else {
    op_error_set(err, OP_EUSAGE, "bad_config", "%s:%zu: unexpected YAML", cfg->path, line);
    return NULL;
  }
  if (v != NULL)
    note_line(cfg, v, line);
  return v;
fail:
  json_decref(v);
  return NULL;
}

int op_config_load(const char *path, op_config_t **out, op_error_t *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_config", "cannot read the configuration %s: %s", path, strerror(errno));
  op_config_t *cfg = calloc(1, sizeof *cfg);
  yaml_parser_t p;
  int parser_ready = 0, rc = 0;
  if (cfg == NULL || (cfg->path = strdup(path)) == NULL || (cfg->lines = json_object()) == NULL) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory reading %s", path);
    goto out;
  }
  if (!yaml_parser_initialize(&p)) {
    rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory reading %s", path);
    goto out;
  }
  parser_ready = 1;
  yaml_parser_set_input_file(&p, f);
  for (;;) {
    yaml_event_t ev;
    if ((rc = next_event(cfg, &p, &ev, err)) < 0)
      goto out;
    yaml_event_type_t type = ev.type;
    if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT ||
        type == YAML_ALIAS_EVENT) {
      json_t *v = cfg->root ? NULL : parse_value(cfg, &p, &ev, err, 0);
      yaml_event_delete(&ev);
      if (v == NULL) {
        rc = cfg->root ? op_error_set(err, OP_EUSAGE, "bad_config", "%s: one document only", path) : OP_EUSAGE;
        goto out;
      }
      cfg->root = v;
      continue;
    }
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT)
      break;
  }
  if (cfg->root != NULL && !json_is_object(cfg->root))
    rc = op_config_error(cfg, cfg->root, err, "the configuration must be a mapping of sections");
out:
  if (parser_ready)
    yaml_parser_delete(&p);
  fclose(f);
  if (rc < 0) {
    op_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

/* The variable for a dotted key: devices.cpu.budget -> OCRPOOL_DEVICES_CPU_BUDGET. */
static void env_name(const char *key, char *buf, size_t len) {
  size_t n = (size_t)snprintf(buf, len, "OCRPOOL_");
  for (; *key && n + 1 < len; key++)
    buf[n++] = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
  buf[n] = '\0';
}

int op_config_env(op_config_t **cfgp, const char *const *keys, op_error_t *err) {
  if (*cfgp == NULL) {
    op_config_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL || (cfg->path = strdup("(no file)")) == NULL || (cfg->lines = json_object()) == NULL) {
      op_config_free(cfg);
      return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    }
    *cfgp = cfg;
  }
  op_config_t *cfg = *cfgp;
  for (size_t i = 0; keys[i] != NULL; i++) {
    char name[96], path[96];
    env_name(keys[i], name, sizeof name);
    const char *value = getenv(name);
    if (value == NULL)
      continue;
    if (cfg->root == NULL)
      cfg->root = json_object();
    if (cfg->envs == NULL)
      cfg->envs = json_object();
    /* Walk the dotted path, making the sections the file did not have. */
    snprintf(path, sizeof path, "%s", keys[i]);
    json_t *obj = cfg->root;
    char *save = NULL, *part = strtok_r(path, ".", &save), *next;
    for (; (next = strtok_r(NULL, ".", &save)) != NULL; part = next) {
      json_t *sub = json_object_get(obj, part);
      if (!json_is_object(sub)) {
        sub = json_object();
        json_object_set_new(obj, part, sub);
      }
      obj = sub;
    }
    json_t *v = json_string(value);
    json_object_set_new(obj, part, v);
    char key[32];
    snprintf(key, sizeof key, "%p", (void *)v);
    json_object_set_new(cfg->envs, key, json_string(name));
  }
  return 0;
}

const char *op_config_source(const op_config_t *cfg, const char *dotted) {
  if (cfg == NULL || cfg->root == NULL)
    return NULL;
  char path[96];
  snprintf(path, sizeof path, "%s", dotted);
  json_t *v = cfg->root;
  char *save = NULL;
  for (char *part = strtok_r(path, ".", &save); part != NULL && v != NULL; part = strtok_r(NULL, ".", &save))
    v = json_is_object(v) ? json_object_get(v, part) : NULL;
  if (v == NULL || json_is_null(v))
    return NULL;
  char key[32];
  snprintf(key, sizeof key, "%p", (void *)v);
  return cfg->envs && json_object_get(cfg->envs, key) ? "env" : "file";
}

const char *op_config_path(const op_config_t *cfg) {
  return cfg->path;
}

void op_config_free(op_config_t *cfg) {
  if (cfg == NULL)
    return;
  json_decref(cfg->root);
  json_decref(cfg->lines);
  json_decref(cfg->envs);
  free(cfg->path);
  free(cfg);
}

json_t *op_config_root(const op_config_t *cfg) {
  return cfg->root;
}

int op_config_keys(const op_config_t *cfg, json_t *v, const char *const *allowed, const char *where, op_error_t *err) {
  if (!json_is_object(v))
    return op_config_error(cfg, v, err, "%s must be a mapping", where);
  const char *key;
  json_t *child;
  json_object_foreach(v, key, child) {
    size_t i = 0;
    while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
      i++;
    if (allowed[i] == NULL) {
      char list[400] = "";
      for (size_t k = 0; allowed[k] != NULL; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", allowed[k]);
      return op_config_error(cfg, child, err, "unknown key \"%s\" in %s (known: %s)", key, where, list);
    }
  }
  return 0;
}

static json_t *scalar(const op_config_t *cfg, json_t *obj, const char *key, op_error_t *err, int *rc) {
  json_t *v = json_object_get(obj, key);
  *rc = 0;
  if (v == NULL || json_is_null(v))
    return NULL;
  if (!json_is_string(v)) {
    *rc = op_config_error(cfg, v, err, "\"%s\" must be a single value", key);
    return NULL;
  }
  return v;
}

int op_config_string(const op_config_t *cfg, json_t *obj, const char *key, const char **out, op_error_t *err) {
  int rc;
  json_t *v = scalar(cfg, obj, key, err, &rc);
  if (v != NULL)
    *out = json_string_value(v);
  return rc;
}

int op_config_bool(const op_config_t *cfg, json_t *obj, const char *key, int *out, op_error_t *err) {
  int rc;
  json_t *v = scalar(cfg, obj, key, err, &rc);
  if (v == NULL)
    return rc;
  const char *s = json_string_value(v);
  if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
    *out = 1;
  else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
    *out = 0;
  else
    return op_config_error(cfg, v, err, "\"%s\": expected true or false, not \"%s\"", key, s);
  return 0;
}

int op_config_uint(const op_config_t *cfg, json_t *obj, const char *key, unsigned max, unsigned *out, op_error_t *err) {
  int rc;
  json_t *v = scalar(cfg, obj, key, err, &rc);
  if (v == NULL)
    return rc;
  const char *s = json_string_value(v);
  char *end;
  errno = 0;
  unsigned long n = strtoul(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || n > max)
    return op_config_error(cfg, v, err, "\"%s\": expected a whole number up to %u, not \"%s\"", key, max, s);
  *out = (unsigned)n;
  return 0;
}

int op_config_size(const op_config_t *cfg, json_t *obj, const char *key, uint64_t *out, op_error_t *err) {
  int rc;
  json_t *v = scalar(cfg, obj, key, err, &rc);
  if (v == NULL)
    return rc;
  const char *s = json_string_value(v);
  /* "2GiB" and "2GB" both mean 2 * 1024^3, as everywhere in ocrpool. */
  char buf[64];
  size_t len = strlen(s);
  if (len >= sizeof buf)
    return op_config_error(cfg, v, err, "\"%s\": \"%s\" is not a size", key, s);
  memcpy(buf, s, len + 1);
  if (len >= 3 && buf[len - 2] == 'i' && (buf[len - 1] == 'B' || buf[len - 1] == 'b'))
    memmove(buf + len - 2, buf + len - 1, 2);
  if (op_parse_size(buf, UINT64_C(1) << 50, out) < 0)
    return op_config_error(cfg, v, err, "\"%s\": expected a size such as 512MB or 2GiB, not \"%s\"", key, s);
  return 0;
}

int op_parse_duration(const char *text, double *seconds) {
  char *end;
  errno = 0;
  if (text == NULL || text[0] < '0' || text[0] > '9')
    return -1;
  double v = strtod(text, &end);
  if (errno != 0)
    return -1;
  double unit = 1;
  if (strcmp(end, "ms") == 0)
    unit = 0.001;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
    unit = 60;
  else if (strcmp(end, "h") == 0)
    unit = 3600;
  else if (strcmp(end, "s") != 0 && *end != '\0')
    return -1;
  *seconds = v * unit;
  return 0;
}

int op_config_duration(const op_config_t *cfg, json_t *obj, const char *key, double *out, op_error_t *err) {
  int rc;
  json_t *v = scalar(cfg, obj, key, err, &rc);
  if (v == NULL)
    return rc;
  if (op_parse_duration(json_string_value(v), out) < 0)
    return op_config_error(cfg, v, err, "\"%s\": expected a duration such as 300ms, 30s or 5m, not \"%s\"", key,
                           json_string_value(v));
  return 0;
}
