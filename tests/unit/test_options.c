/* test_options.c: the task options codec: each option's text form, its bounds, the stored JSON both ways. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/options.h"
#include "store/store.h"

/* Sets key=value on fresh options; 0 or the error code, with the error in *e. */
static int set_one(const char *key, const char *value, op_error_t *e) {
  op_task_opts_t o;
  op_task_opts_init(&o);
  op_error_clear(e);
  int rc = op_task_opts_set(&o, key, value, e);
  op_task_opts_dispose(&o);
  return rc;
}

/* A refusal a user can act on: OP_EUSAGE, "bad_options", a sentence naming what. */
static int refused(const char *key, const char *value, const char *named) {
  op_error_t e;
  int rc = set_one(key, value, &e);
  int ok = rc == OP_EUSAGE && strcmp(e.reason, "bad_options") == 0 && strstr(e.message, named) != NULL;
  if (!ok)
    fprintf(stderr, "%s=%.40s: rc %d, reason %s, message %s\n", key, value, rc, e.reason, e.message);
  return ok;
}

static int accepted(const char *key, const char *value) {
  op_error_t e;
  int rc = set_one(key, value, &e);
  if (rc != 0)
    fprintf(stderr, "%s=%.40s refused: %s\n", key, value, e.message);
  return rc == 0;
}

/* The stored JSON of o as compact text; caller frees. */
static char *stored(const op_task_opts_t *o) {
  json_t *j = op_task_opts_to_json(o);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return text;
}

/* Decoding text fails as bad options (or internal, for what is not JSON). */
static int stored_refused(const char *text, int code) {
  op_task_opts_t o;
  op_error_t e;
  op_error_clear(&e);
  int rc = op_task_opts_from_json(text, &o, &e);
  if (rc != code)
    fprintf(stderr, "stored %s: rc %d (%s)\n", text, rc, e.message);
  return rc == code && e.message[0] != '\0' && o.pages == NULL;
}

static char *repeat(const char *unit, size_t times, const char *tail) {
  size_t len = strlen(unit) * times + strlen(tail);
  char *s = malloc(len + 1);
  if (s == NULL)
    abort();
  s[0] = '\0';
  for (size_t i = 0; i < times; i++)
    strcat(s, unit);
  strcat(s, tail);
  return s;
}

static void test_each_option(void) {
  CHECK(accepted("format", "txt,pdf") && accepted("format", "hocr"));
  CHECK(refused("format", "docx", "docx") && refused("format", "", "format"));
  char *long_format = repeat("txt,", 16, "txt"); /* 67 characters */
  CHECK(refused("format", long_format, "64"));
  free(long_format);
  CHECK(accepted("lang", "deu+eng") && accepted("lang", "chi_sim"));
  CHECK(refused("lang", "", "lang") && refused("lang", "../../etc/passwd", "lang"));
  char *lang = repeat("a", OP_TASK_LANG_MAX_LEN, "");
  CHECK(accepted("lang", lang));
  free(lang);
  lang = repeat("a", OP_TASK_LANG_MAX_LEN + 1, "");
  CHECK(refused("lang", lang, "at most 100"));
  free(lang);
  CHECK(accepted("engine", "tesseract") && accepted("engine", "null"));
  CHECK(refused("engine", "paddle", "known: tesseract, null"));
  CHECK(accepted("oem", "0") && accepted("oem", "3") && refused("oem", "4", "oem"));
  CHECK(accepted("psm", "0") && accepted("psm", "13"));
  CHECK(refused("psm", "14", "from 0 to 13") && refused("psm", "-1", "psm") && refused("psm", "3x", "psm"));
  CHECK(refused("psm", "", "psm") && refused("psm", "99999999999999999999", "psm"));
  CHECK(accepted("dpi", "10") && accepted("dpi", "2400"));
  CHECK(refused("dpi", "9", "from 10 to 2400") && refused("dpi", "2401", "dpi"));
  CHECK(accepted("priority", "0") && accepted("priority", "9"));
  CHECK(refused("priority", "10", "from 0 to 9") && refused("priority", "high", "priority"));
  CHECK(accepted("rotate_pages", "true") && accepted("rotate_pages", "no") && accepted("rotate_pages", "1"));
  CHECK(refused("rotate_pages", "maybe", "true or false"));
  CHECK(accepted("rotate_threshold", "7") && accepted("rotate_threshold", "14.5"));
  CHECK(accepted("rotate_threshold", "1000"));
  CHECK(refused("rotate_threshold", "0", "rotate_threshold") && refused("rotate_threshold", "1001", "1000"));
  CHECK(refused("rotate_threshold", "nan", "rotate_threshold") && refused("rotate_threshold", "7x", "7x"));
  CHECK(accepted("pages", "1-3,7,10-") && accepted("pages", " 2 , 4 - 5"));
  CHECK(refused("pages", "0", "1-based") && refused("pages", "3-1", "backwards") && refused("pages", "a", "1-based"));
  CHECK(refused("pages", "1,\t2", "1-based")); /* white space other than a space */
  CHECK(accepted("model", "fast-eng") && refused("model", "", "model") && refused("model", "a\nb", "model"));
  char *model = repeat("m", OP_TASK_MODEL_NAME_MAX_LEN + 1, "");
  CHECK(refused("model", model, "63"));
  free(model);
  CHECK(accepted("max_input_size", "256MB") && accepted("max_input_size", "1"));
  CHECK(refused("max_input_size", "0", "max_input_size") && refused("max_input_size", "2P", "max_input_size"));
  CHECK(accepted("max_pages", "1") && refused("max_pages", "0", "max_pages"));
  CHECK(refused("max_pages", "10000001", "10000000"));
  CHECK(accepted("max_page_pixels", "250000000") && refused("max_page_pixels", "-5", "max_page_pixels"));
  CHECK(refused("colour", "blue", "unknown option \"colour\""));
  CHECK(refused("psm", NULL, "psm"));
}

static void test_set_effects(void) {
  op_task_opts_t o;
  op_error_t e;
  op_task_opts_init(&o);
  CHECK(op_task_opts_set(&o, "dpi", "150", &e) == 0 && o.limits.dpi == 150 && o.user_dpi == 150);
  CHECK(op_task_opts_set(&o, "rotate_threshold", "14", &e) == 0 && o.rotate_pages == 1 && o.rotate_threshold == 14);
  CHECK(op_task_opts_set(&o, "pages", "2-3", &e) == 0 && o.pages != NULL && strcmp(o.pages, "2-3") == 0);
  CHECK(op_task_opts_set(&o, "pages", "5", &e) == 0 && strcmp(o.pages, "5") == 0); /* the old copy freed */
  /* A refused value leaves the options as they were. */
  CHECK(op_task_opts_set(&o, "pages", "x", &e) < 0 && strcmp(o.pages, "5") == 0);
  CHECK(op_task_opts_set(&o, "psm", "99", &e) < 0 && o.psm == 3);
  CHECK(op_task_opts_set(&o, "lang", "b/ad", &e) < 0 && strcmp(o.model.lang, "eng") == 0);
  /* Across options: the null engine makes no pdf. */
  CHECK(op_task_opts_check(&o, &e) == 0);
  CHECK(op_task_opts_set(&o, "engine", "null", &e) == 0 && op_task_opts_set(&o, "format", "txt,pdf", &e) == 0);
  CHECK(op_task_opts_check(&o, &e) == OP_EUSAGE && strstr(e.message, "null engine") != NULL);
  op_task_opts_dispose(&o);
  CHECK(o.pages == NULL);
}

/* A pages value over the codec's maximum is refused, never cut. */
static void test_long_pages(void) {
  /* "1," 499 times then "10": exactly the maximum, 500 ranges. */
  char *pages = repeat("1,", 499, "10");
  CHECK(strlen(pages) == OP_TASK_PAGES_MAX_LEN);
  CHECK(accepted("pages", pages));
  free(pages);
  pages = repeat("1,", 500, "1");
  CHECK(strlen(pages) == OP_TASK_PAGES_MAX_LEN + 1);
  CHECK(refused("pages", pages, "over the limit of 1000"));
  /* ... and stored, too. */
  char *text = NULL;
  CHECK(asprintf(&text, "{\"format\":\"txt\",\"pages\":\"%s\"}", pages) > 0);
  CHECK(stored_refused(text, OP_EUSAGE));
  free(text);
  free(pages);
}

static void test_round_trip(void) {
  op_task_opts_t o, back;
  op_error_t e;
  op_task_opts_init(&o);
  char *text = stored(&o);
  CHECK_STR_EQ(text, "{\"format\":\"txt\"}"); /* defaults are not stored */
  free(text);
  static const char *const set[][2] = {
      {"format", "pdf,txt"}, {"lang", "deu+eng"},         {"oem", "1"},        {"psm", "6"},
      {"dpi", "200"},        {"rotate_threshold", "7.3"}, {"priority", "8"},   {"pages", "1-3,7,10-"},
      {"model", "fast"},     {"max_input_size", "1M"},    {"max_pages", "12"}, {"max_page_pixels", "4000000"},
  };
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    CHECK(op_task_opts_set(&o, set[i][0], set[i][1], &e) == 0);
  text = stored(&o);
  CHECK(text != NULL);
  CHECK(op_task_opts_from_json(text, &back, &e) == 0);
  CHECK(back.formats == (OP_FMT_TXT | OP_FMT_PDF) && strcmp(back.model.lang, "deu+eng") == 0);
  CHECK(strcmp(back.model.engine, "tesseract") == 0 && back.model.oem == 1 && back.psm == 6);
  CHECK(back.user_dpi == 200 && back.limits.dpi == 200 && back.rotate_pages == 1);
  CHECK(back.rotate_threshold == o.rotate_threshold && back.priority == 8);
  CHECK(back.pages != NULL && strcmp(back.pages, "1-3,7,10-") == 0 && back.pages != o.pages);
  CHECK(strcmp(back.model_option, "fast") == 0 && back.model_name == NULL);
  CHECK(back.limits.max_input_bytes == 1u << 20 && back.limits.max_pages == 12);
  CHECK(back.limits.max_page_pixels == 4000000);
  char *again = stored(&back);
  CHECK_STR_EQ(again, text); /* a fixed point */
  free(again);
  free(text);
  op_task_opts_dispose(&back);
  op_task_opts_dispose(&o);

  /* What the HTTP API used to store still reads. */
  CHECK(op_task_opts_from_json("{\"format\":\"txt,json\",\"lang\":\"eng\",\"engine\":\"null\",\"psm\":3,\"dpi\":300,"
                               "\"priority\":5,\"pages\":\"2\",\"rotate_pages\":false}",
                               &back, &e) == 0);
  CHECK(back.formats == (OP_FMT_TXT | OP_FMT_JSON) && strcmp(back.model.engine, "null") == 0 && !back.rotate_pages);
  op_task_opts_dispose(&back);
  CHECK(op_task_opts_from_json("{}", &back, &e) == 0 && back.formats == OP_FMT_TXT && back.pages == NULL);
}

static void test_stored_refused(void) {
  CHECK(stored_refused("{\"psm\":99}", OP_EUSAGE));
  CHECK(stored_refused("{\"psm\":\"3\"}", OP_EUSAGE)); /* the wrong JSON type */
  CHECK(stored_refused("{\"rotate_pages\":1}", OP_EUSAGE));
  CHECK(stored_refused("{\"lang\":\"../../x\"}", OP_EUSAGE));
  CHECK(stored_refused("{\"priority\":12}", OP_EUSAGE));
  CHECK(stored_refused("{\"colour\":\"blue\"}", OP_EUSAGE));
  CHECK(stored_refused("{\"engine\":\"null\",\"format\":\"pdf\"}", OP_EUSAGE));
  CHECK(stored_refused("{\"pages\":\"1\\u00002\"}", OP_EINTERNAL)); /* a NUL inside: not JSON to jansson */
  CHECK(stored_refused("{\"pages\":\"2\",\"psm\":99}", OP_EUSAGE)); /* and the pages copy is released */
  CHECK(stored_refused("{\"psm\":3,\"psm\":4}", OP_EINTERNAL));
  CHECK(stored_refused("[1]", OP_EINTERNAL));
  CHECK(stored_refused("{\"format\":", OP_EINTERNAL));
  CHECK(stored_refused(NULL, OP_EINTERNAL));
  op_task_opts_t o;
  op_error_t e;
  CHECK(op_task_opts_from_json("{\"psm\":99}", &o, &e) < 0 && strcmp(e.reason, "bad_options") == 0);
  CHECK(strstr(e.message, "stored options") != NULL && strstr(e.message, "psm") != NULL);
}

/* The largest options the HTTP API takes still fit the store's row, so the
 * server never cuts them. */
static void test_http_worst_case_fits(void) {
  op_task_opts_t o;
  op_error_t e;
  op_task_opts_init(&o);
  char *lang = repeat("a", OP_TASK_LANG_MAX_LEN, "");
  char *pages = repeat("1 ,", OP_TASK_PAGES_HTTP_MAX_LEN / 3, "1");
  char *model = repeat("\"", OP_TASK_MODEL_NAME_MAX_LEN, ""); /* each escaped to two */
  CHECK(strlen(pages) <= OP_TASK_PAGES_HTTP_MAX_LEN);
  CHECK(op_task_opts_set(&o, "format", "txt,hocr,tsv,alto,json,pdf", &e) == 0);
  CHECK(op_task_opts_set(&o, "lang", lang, &e) == 0 && op_task_opts_set(&o, "model", model, &e) == 0);
  CHECK(op_task_opts_set(&o, "pages", pages, &e) == 0 && op_task_opts_set(&o, "psm", "13", &e) == 0);
  CHECK(op_task_opts_set(&o, "dpi", "2400", &e) == 0 && op_task_opts_set(&o, "priority", "0", &e) == 0);
  CHECK(op_task_opts_set(&o, "rotate_pages", "true", &e) == 0);
  json_t *j = op_task_opts_to_json(&o);
  json_object_set_new(j, "timeout", json_integer(600)); /* the sync route's, before the server removes it */
  char *text = json_dumps(j, JSON_COMPACT);
  op_task_row_t row;
  CHECK(text != NULL && strlen(text) < sizeof row.options);
  free(text);
  json_decref(j);
  free(lang);
  free(pages);
  free(model);
  op_task_opts_dispose(&o);
}

int main(void) {
  test_each_option();
  test_set_effects();
  test_long_pages();
  test_round_trip();
  test_stored_refused();
  test_http_worst_case_fits();
  return CHECK_DONE();
}
