/*
 * options.c: the task options a submission gives as query parameters or form
 * fields, checked and turned into the JSON stored with the task. One
 * self-contained function, kept as it is until the options codec replaces it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

int op__build_options(op_service_t *svc, json_t *params, int sync, json_t **out, int *priority, char *why,
                      size_t why_len) {
  static const char *const known[] = {"format",   "lang",         "psm",    "dpi",     "pages",
                                      "priority", "rotate_pages", "engine", "timeout", "model"};
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok |= strcmp(key, known[i]) == 0;
    if (!ok || (!sync && strcmp(key, "timeout") == 0)) {
      snprintf(why, why_len, "unknown option \"%s\"", key);
      return -1;
    }
  }
  json_t *o = json_object();
  op_error_t e;
  const char *format = json_string_value(json_object_get(params, "format"));
  unsigned mask = OP_FMT_TXT;
  if (format != NULL && op_format_parse(format, &mask, &e) < 0) {
    snprintf(why, why_len, "%.200s", e.message);
    goto bad;
  }
  char names[64] = "";
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (mask & f)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? "," : "",
               op_format_name((op_format_t)f));
  json_object_set_new(o, "format", json_string(names));
  const char *lang = json_string_value(json_object_get(params, "lang"));
  if (lang != NULL) {
    /* Language names become file names inside Tesseract: letters, digits, _ and + only. */
    if (lang[0] == '\0' || strlen(lang) >= 100 ||
        strspn(lang, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+") != strlen(lang)) {
      snprintf(why, why_len, "bad lang \"%.60s\": use Tesseract language names like eng or deu+eng", lang);
      goto bad;
    }
    json_object_set_new(o, "lang", json_string(lang));
  }
  const char *model = json_string_value(json_object_get(params, "model"));
  if (model != NULL) {
    const op_model_policy_t *pol = op_service_model(svc, model);
    if (pol == NULL) {
      snprintf(why, why_len, "no model named \"%.60s\" is declared (see GET /v1/models)", model);
      goto bad;
    }
    if (json_object_get(params, "engine") != NULL || json_object_get(params, "lang") != NULL) {
      snprintf(why, why_len, "model names its engine and languages: give model, or engine and lang, not both");
      goto bad;
    }
    if (strcmp(pol->engine, "null") == 0 && (mask & OP_FMT_PDF)) {
      snprintf(why, why_len, "the null engine produces no pdf");
      goto bad;
    }
    json_object_set_new(o, "model", json_string(pol->name));
  }
  const char *engine = json_string_value(json_object_get(params, "engine"));
  if (engine != NULL) {
    if (strcmp(engine, "tesseract") != 0 && strcmp(engine, "null") != 0) {
      snprintf(why, why_len, "unknown engine \"%.40s\" (known: tesseract, null)", engine);
      goto bad;
    }
    if (strcmp(engine, "null") == 0 && (mask & OP_FMT_PDF)) {
      snprintf(why, why_len, "the null engine produces no pdf");
      goto bad;
    }
    json_object_set_new(o, "engine", json_string(engine));
  }
  static const struct {
    const char *name;
    long min, max;
  } ints[] = {{"psm", 0, 13}, {"dpi", 10, 2400}, {"priority", 0, 9}, {"timeout", 1, 600}};
  *priority = 5;
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    const char *s = json_string_value(json_object_get(params, ints[i].name));
    if (s == NULL)
      continue;
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < ints[i].min || n > ints[i].max) {
      snprintf(why, why_len, "bad %s \"%.40s\": a whole number from %ld to %ld", ints[i].name, s, ints[i].min,
               ints[i].max);
      goto bad;
    }
    json_object_set_new(o, ints[i].name, json_integer(n));
    if (strcmp(ints[i].name, "priority") == 0)
      *priority = (int)n;
  }
  const char *pages = json_string_value(json_object_get(params, "pages"));
  if (pages != NULL) {
    op_page_set_t set;
    if (op_page_set_parse(pages, &set, &e) < 0) {
      snprintf(why, why_len, "%.200s", e.message);
      goto bad;
    }
    op_page_set_dispose(&set);
    json_object_set_new(o, "pages", json_string(pages));
  }
  const char *rotate = json_string_value(json_object_get(params, "rotate_pages"));
  if (rotate != NULL) {
    int yes = strcmp(rotate, "true") == 0 || strcmp(rotate, "1") == 0 || strcmp(rotate, "yes") == 0;
    int no = strcmp(rotate, "false") == 0 || strcmp(rotate, "0") == 0 || strcmp(rotate, "no") == 0;
    if (!yes && !no) {
      snprintf(why, why_len, "bad rotate_pages \"%.20s\": true or false", rotate);
      goto bad;
    }
    json_object_set_new(o, "rotate_pages", json_boolean(yes));
  }
  *out = o;
  return 0;
bad:
  json_decref(o);
  return -1;
}
