/*
 * options.c: the task options codec (options.h).
 *
 * One table names every option: its stored key, the JSON type it is stored
 * as, and the function that checks and applies its text form. Setting from a
 * user's text and decoding a stored value go through the same function, so
 * the edges and the store cannot drift apart. Defaults are never stored:
 * op_task_opts_to_json writes only what differs from op_task_opts_init.
 * (op_task_opts_init itself is still defined in sched.c, which others are
 * rewriting; it belongs here and moves once that work has merged.)
 */
#include "core/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/parse.h"

typedef int (*set_fn)(op_task_opts_t *o, const char *key, const char *value, op_error_t *err);

typedef struct option_s {
  const char *key;
  char json_type; /* s string, i integer, b boolean, n number */
  set_fn set;
} option_t;

/* A whole number in [min, max], or OP_EUSAGE naming the option and the range. */
static int whole_number(const char *key, const char *value, long min, long max, long *out, op_error_t *err) {
  char *end;
  errno = 0;
  long v = strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad %s \"%.40s\": a whole number from %ld to %ld", key, value,
                        min, max);
  *out = v;
  return 0;
}

/* A size or count with an optional K, M, G suffix, above 0 and at most OP_TASK_SIZE_LIMIT_MAX. */
static int positive_size(const char *key, const char *value, uint64_t *out, op_error_t *err) {
  uint64_t v;
  if (op_parse_size(value, OP_TASK_SIZE_LIMIT_MAX, &v) < 0 || v == 0)
    return op_error_set(err, OP_EUSAGE, "bad_options",
                        "bad %s \"%.40s\": a number above 0 and at most 2^50, with an optional K, M or G suffix", key,
                        value);
  *out = v;
  return 0;
}

static int has_control_bytes(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 1;
  return 0;
}

/* ---- one setter per option ---- */

static int set_format(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  unsigned mask;
  if (strlen(value) > OP_TASK_FORMAT_MAX_LEN)
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad %s list \"%.40s...\": longer than %d characters", key,
                        value, OP_TASK_FORMAT_MAX_LEN);
  int rc = op_format_parse(value, &mask, err);
  if (rc == 0)
    o->formats = mask;
  return rc;
}

static int set_lang(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  /* Language names become file names inside Tesseract: letters, digits, _ and + only. */
  size_t len = strlen(value);
  if (len == 0 || len > OP_TASK_LANG_MAX_LEN ||
      strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+") != len)
    return op_error_set(err, OP_EUSAGE, "bad_options",
                        "bad %s \"%.60s\": use Tesseract language names like eng or deu+eng (letters, digits, _ and "
                        "+, at most %d characters)",
                        key, value, OP_TASK_LANG_MAX_LEN);
  snprintf(o->model.lang, sizeof o->model.lang, "%s", value);
  return 0;
}

static int set_engine(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  if (op_engine_find(value) == NULL || strlen(value) >= sizeof o->model.engine)
    return op_error_set(err, OP_EUSAGE, "bad_options", "unknown %s \"%.40s\" (known: tesseract, null)", key, value);
  snprintf(o->model.engine, sizeof o->model.engine, "%s", value);
  return 0;
}

static int set_oem(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  long v = 0;
  int rc = whole_number(key, value, OP_TASK_OEM_MIN, OP_TASK_OEM_MAX, &v, err);
  if (rc == 0)
    o->model.oem = (int)v;
  return rc;
}

static int set_psm(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  long v = 0;
  int rc = whole_number(key, value, OP_TASK_PSM_MIN, OP_TASK_PSM_MAX, &v, err);
  if (rc == 0)
    o->psm = (int)v;
  return rc;
}

static int set_dpi(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  long v = 0;
  int rc = whole_number(key, value, OP_TASK_DPI_MIN, OP_TASK_DPI_MAX, &v, err);
  if (rc == 0)
    o->limits.dpi = o->user_dpi = (int)v;
  return rc;
}

static int set_priority(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  long v = 0;
  int rc = whole_number(key, value, OP_TASK_PRIORITY_MIN, OP_TASK_PRIORITY_MAX, &v, err);
  if (rc == 0)
    o->priority = (int)v;
  return rc;
}

static int set_rotate_pages(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  int yes = strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0;
  int no = strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0;
  if (!yes && !no)
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad %s \"%.20s\": true or false", key, value);
  o->rotate_pages = yes;
  return 0;
}

static int set_rotate_threshold(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  char *end;
  double t = strtod(value, &end);
  if (end == value || *end != '\0' || !(t > 0 && t <= OP_TASK_ROTATE_THRESHOLD_MAX))
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad %s \"%.40s\": a confidence above 0 and at most %d, like 7",
                        key, value, OP_TASK_ROTATE_THRESHOLD_MAX);
  o->rotate_threshold = (float)t;
  o->rotate_pages = 1; /* a threshold means turning pages */
  return 0;
}

static int set_pages(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  size_t len = strlen(value);
  if (len > OP_TASK_PAGES_MAX_LEN)
    return op_error_set(err, OP_EUSAGE, "bad_options", "%s is %zu characters long, over the limit of %d", key, len,
                        OP_TASK_PAGES_MAX_LEN);
  /* The page set's own parser skips any white space; only the plain space
   * is kept, so that a stored value never grows when JSON escapes it. */
  if (strspn(value, "0123456789,- ") != len)
    return op_error_set(err, OP_EUSAGE, "bad_options",
                        "bad %s value \"%.60s\": use 1-based page numbers and ranges like 1-3,7,10-", key, value);
  op_page_set_t set;
  int rc = op_page_set_parse(value, &set, err);
  if (rc < 0)
    return rc;
  op_page_set_dispose(&set);
  char *copy = strdup(value);
  if (copy == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  free((char *)o->pages);
  o->pages = copy;
  return 0;
}

static int set_model(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  size_t len = strlen(value);
  if (len == 0 || len > OP_TASK_MODEL_NAME_MAX_LEN || has_control_bytes(value))
    return op_error_set(err, OP_EUSAGE, "bad_options",
                        "bad %s name \"%.60s\": a declared model's name, at most %d characters", key, value,
                        OP_TASK_MODEL_NAME_MAX_LEN);
  snprintf(o->model_option, sizeof o->model_option, "%s", value);
  return 0;
}

static int set_max_input_size(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  return positive_size(key, value, &o->limits.max_input_bytes, err);
}

static int set_max_page_pixels(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  return positive_size(key, value, &o->limits.max_page_pixels, err);
}

static int set_max_pages(op_task_opts_t *o, const char *key, const char *value, op_error_t *err) {
  long v = 0;
  int rc = whole_number(key, value, 1, OP_TASK_MAX_PAGES_MAX, &v, err);
  if (rc == 0)
    o->limits.max_pages = (uint32_t)v;
  return rc;
}

static const option_t options[] = {
    {"format", 's', set_format},
    {"lang", 's', set_lang},
    {"engine", 's', set_engine},
    {"oem", 'i', set_oem},
    {"psm", 'i', set_psm},
    {"dpi", 'i', set_dpi},
    {"rotate_pages", 'b', set_rotate_pages},
    {"rotate_threshold", 'n', set_rotate_threshold},
    {"priority", 'i', set_priority},
    {"pages", 's', set_pages},
    {"model", 's', set_model},
    {"max_input_size", 'i', set_max_input_size},
    {"max_pages", 'i', set_max_pages},
    {"max_page_pixels", 'i', set_max_page_pixels},
};

static const option_t *find_option(const char *key) {
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (strcmp(options[i].key, key) == 0)
      return &options[i];
  return NULL;
}

/* ---- the API ---- */

void op_task_opts_init(op_task_opts_t *opts) {
  memset(opts, 0, sizeof *opts);
  op_model_spec_init(&opts->model);
  opts->formats = OP_FMT_TXT;
  opts->psm = 3;
  op_doc_limits_init(&opts->limits);
  opts->priority = OP_TASK_PRIORITY_DEFAULT;
}

void op_task_opts_dispose(op_task_opts_t *opts) {
  free((char *)opts->pages);
  opts->pages = NULL;
}

int op_task_opts_set(op_task_opts_t *opts, const char *key, const char *value, op_error_t *err) {
  const option_t *opt = find_option(key);
  if (opt == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "unknown option \"%.40s\"", key);
  if (value == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "option \"%s\" needs a value", key);
  return opt->set(opts, key, value, err);
}

int op_task_opts_check(const op_task_opts_t *opts, op_error_t *err) {
  if (opts->formats == 0)
    return op_error_set(err, OP_EUSAGE, "bad_options", "no output format");
  if (strcmp(opts->model.engine, "null") == 0 && (opts->formats & OP_FMT_PDF))
    return op_error_set(err, OP_EUSAGE, "bad_options", "the null engine produces no pdf");
  return 0;
}

/* Adds key: value to o; a NULL value (out of memory) fails. */
static int put(json_t *o, const char *key, json_t *value) {
  return value == NULL || json_object_set_new(o, key, value) < 0 ? -1 : 0;
}

json_t *op_task_opts_to_json(const op_task_opts_t *opts) {
  op_task_opts_t def;
  op_task_opts_init(&def);
  json_t *o = json_object();
  char names[OP_TASK_FORMAT_MAX_LEN + 1] = "";
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (opts->formats & f)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? "," : "",
               op_format_name((op_format_t)f));
  int rc = o == NULL ? -1 : put(o, "format", json_string(names));
  if (rc == 0 && strcmp(opts->model.lang, def.model.lang) != 0)
    rc = put(o, "lang", json_string(opts->model.lang));
  if (rc == 0 && strcmp(opts->model.engine, def.model.engine) != 0)
    rc = put(o, "engine", json_string(opts->model.engine));
  if (rc == 0 && opts->model.oem != def.model.oem)
    rc = put(o, "oem", json_integer(opts->model.oem));
  if (rc == 0 && opts->psm != def.psm)
    rc = put(o, "psm", json_integer(opts->psm));
  if (rc == 0 && opts->user_dpi != 0)
    rc = put(o, "dpi", json_integer(opts->user_dpi));
  if (rc == 0 && opts->rotate_pages)
    rc = put(o, "rotate_pages", json_true());
  if (rc == 0 && opts->rotate_threshold > 0)
    rc = put(o, "rotate_threshold", json_real(opts->rotate_threshold));
  if (rc == 0 && opts->priority != def.priority)
    rc = put(o, "priority", json_integer(opts->priority));
  if (rc == 0 && opts->pages != NULL)
    rc = put(o, "pages", json_string(opts->pages));
  if (rc == 0 && opts->model_option[0] != '\0')
    rc = put(o, "model", json_string(opts->model_option));
  if (rc == 0 && opts->limits.max_input_bytes != def.limits.max_input_bytes)
    rc = put(o, "max_input_size", json_integer((json_int_t)opts->limits.max_input_bytes));
  if (rc == 0 && opts->limits.max_pages != def.limits.max_pages)
    rc = put(o, "max_pages", json_integer(opts->limits.max_pages));
  if (rc == 0 && opts->limits.max_page_pixels != def.limits.max_page_pixels)
    rc = put(o, "max_page_pixels", json_integer((json_int_t)opts->limits.max_page_pixels));
  if (rc < 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* Sets one stored value: its JSON type must be the option's, then its text
 * form goes through the option's setter as a user's would. */
static int set_stored(op_task_opts_t *opts, const char *key, const json_t *v, op_error_t *err) {
  const option_t *opt = find_option(key);
  if (opt == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "unknown option \"%.40s\"", key);
  char text[64];
  const char *value = NULL;
  switch (opt->json_type) {
  case 's':
    value = json_string_value(v); /* json_loads refuses a NUL inside (no JSON_ALLOW_NUL) */
    break;
  case 'i':
    if (json_is_integer(v) && snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) > 0)
      value = text;
    break;
  case 'b':
    if (json_is_boolean(v))
      value = json_is_true(v) ? "true" : "false";
    break;
  default:
    /* %.9g gives back the very float op_task_opts_to_json stored. */
    if (json_is_number(v) && snprintf(text, sizeof text, "%.9g", json_number_value(v)) > 0)
      value = text;
    break;
  }
  if (value == NULL)
    return op_error_set(err, OP_EUSAGE, "bad_options", "%s is stored as the wrong JSON type", key);
  return opt->set(opts, key, value, err);
}

int op_task_opts_from_json(const char *text, op_task_opts_t *opts, op_error_t *err) {
  op_task_opts_init(opts);
  json_error_t je;
  json_t *j = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
  int rc = 0;
  if (!json_is_object(j)) {
    rc = op_error_set(err, OP_EINTERNAL, "internal", "stored options are not a JSON object%s%s", j ? "" : ": ",
                      j || text == NULL ? "" : je.text);
    goto out;
  }
  op_error_t e;
  const char *key;
  json_t *v;
  json_object_foreach(j, key, v) {
    if ((rc = set_stored(opts, key, v, &e)) < 0)
      break;
  }
  if (rc == 0)
    rc = op_task_opts_check(opts, &e);
  if (rc < 0)
    op_error_set(err, rc, e.reason, "stored options no longer valid: %s", e.message);
out:
  if (rc < 0)
    op_task_opts_dispose(opts);
  json_decref(j);
  return rc;
}
