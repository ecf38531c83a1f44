/*
 * test_engine.c: the engines against the real thing.
 *
 * The tesseract engine's text must be byte-identical to the tesseract CLI's on
 * the same image (the CLI is run here as the reference), its JSON boxes must
 * lie inside the page, --rotate-pages must turn an upside-down page upright,
 * and the null engine must write well-formed empty pages and honour its
 * test-only OCRPOOL_NULL_OPTS. Run from the repository root (tests/data).
 *
 * The process re-executes itself with OMP_THREAD_LIMIT=1 when it is unset:
 * libgomp reads it when it loads, and an unlimited OpenMP pool makes Tesseract
 * slow on small pages (the CLI reference gets the same setting).
 */
#include <ftw.h>
#include <jansson.h>
#include <leptonica/allheaders.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "doc/doc.h"
#include "engine/engine.h"

static char tmpdir[] = "/tmp/ocrpool-test-engine-XXXXXX";

/* Reads a whole file; *len gets its size. Caller frees. NULL when unreadable. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  char *buf = NULL;
  size_t cap = 0, used = 0, n;
  char chunk[8192];
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (used + n + 1 > cap) {
      cap = (used + n + 1) * 2;
      char *grown = realloc(buf, cap);
      if (grown == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = grown;
    }
    memcpy(buf + used, chunk, n);
    used += n;
  }
  fclose(f);
  if (buf == NULL)
    buf = calloc(1, 1);
  else
    buf[used] = '\0';
  *len = used;
  return buf;
}

/* What `tesseract PATH stdout` prints (stderr dropped). Caller frees. */
static char *cli_text(const char *path, size_t *len) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "OMP_THREAD_LIMIT=1 tesseract '%s' stdout 2>/dev/null", path);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return NULL;
  char *buf = NULL;
  size_t cap = 0;
  FILE *mem = open_memstream(&buf, &cap);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
    fwrite(chunk, 1, n, mem);
  int status = pclose(p);
  fclose(mem);
  *len = cap;
  if (status != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static char *fragment_path(const char *prefix, op_format_t fmt) {
  char *path = NULL;
  if (asprintf(&path, "%s.%s", prefix, op_format_ext(fmt)) < 0)
    return NULL;
  return path;
}

static char *read_fragment(const char *prefix, op_format_t fmt, size_t *len) {
  char *path = fragment_path(prefix, fmt);
  char *text = path ? slurp(path, len) : NULL;
  free(path);
  return text;
}

/* Runs one page of an image file through model; the fragments go to tmpdir/name.*. */
static int run_image(const op_engine_t *engine, op_model_t *model, const char *image, const char *name,
                     unsigned formats, int rotate, op_page_stats_t *stats, char *prefix, size_t prefix_len) {
  snprintf(prefix, prefix_len, "%s/%s", tmpdir, name);
  PIX *pix = pixRead(image);
  if (pix == NULL) {
    fprintf(stderr, "cannot read %s\n", image);
    return OP_EIO;
  }
  op_page_opts_t opts = {.page_number = 0,
                         .psm = 3,
                         .rotate_pages = rotate,
                         .formats = formats,
                         .out_prefix = prefix,
                         .input_path = image,
                         .title = image,
                         .attempt = 1};
  op_error_t err;
  op_error_clear(&err);
  int rc = engine->run_page(model, pix, &opts, stats, &err);
  if (rc < 0)
    fprintf(stderr, "%s: %s\n", image, err.message);
  pixDestroy(&pix);
  return rc;
}

static void test_specs(void) {
  CHECK(op_engine_find("tesseract") == &op_engine_tesseract);
  CHECK(op_engine_find("null") == &op_engine_null);
  CHECK(op_engine_find("paddle") == NULL);
  op_model_spec_t spec;
  op_model_spec_init(&spec);
  char id[64];
  op_model_spec_id(&spec, id, sizeof id);
  CHECK_STR_EQ(id, "tesseract:eng:oem3");
  snprintf(spec.engine, sizeof spec.engine, "null");
  op_model_spec_id(&spec, id, sizeof id);
  CHECK_STR_EQ(id, "null");
}

static void test_bad_language(void) {
  op_model_spec_t spec;
  op_model_spec_init(&spec);
  snprintf(spec.lang, sizeof spec.lang, "xyz");
  op_model_t *model = NULL;
  op_error_t err;
  op_error_clear(&err);
  CHECK(op_engine_tesseract.open(&spec, &model, &err) == OP_EENGINE);
  CHECK_STR_EQ(err.reason, "model_unavailable");
  CHECK(strstr(err.message, "tesseract-ocr-xyz") != NULL);
}

/* The text is byte for byte what the tesseract CLI prints. */
static void check_identical(op_model_t *model, const char *image, const char *name) {
  op_page_stats_t stats;
  char prefix[256];
  CHECK(run_image(&op_engine_tesseract, model, image, name, OP_FMT_TXT, 0, &stats, prefix, sizeof prefix) == 0);
  size_t ours_len = 0, ref_len = 0;
  char *ours = read_fragment(prefix, OP_FMT_TXT, &ours_len);
  char *ref = cli_text(image, &ref_len);
  CHECK(ours != NULL && ref != NULL && ref_len > 0);
  int same = ours && ref && ours_len == ref_len && memcmp(ours, ref, ref_len) == 0;
  if (!same)
    fprintf(stderr, "%s: engine text (%zu bytes) differs from the tesseract CLI's (%zu bytes)\n", image, ours_len,
            ref_len);
  CHECK(same);
  CHECK(stats.words > 0 && stats.mean_conf > 50);
  free(ours);
  free(ref);
}

/* Every box [x0,y0,x1,y1] is ordered and inside a w x h page. */
static int box_inside(json_t *box, json_int_t w, json_int_t h) {
  if (json_array_size(box) != 4)
    return 0;
  json_int_t x0 = json_integer_value(json_array_get(box, 0)), y0 = json_integer_value(json_array_get(box, 1));
  json_int_t x1 = json_integer_value(json_array_get(box, 2)), y1 = json_integer_value(json_array_get(box, 3));
  return 0 <= x0 && x0 <= x1 && x1 <= w && 0 <= y0 && y0 <= y1 && y1 <= h;
}

static void check_json(const char *prefix, const op_page_stats_t *stats) {
  size_t len;
  char *text = read_fragment(prefix, OP_FMT_JSON, &len);
  json_error_t jerr;
  json_t *page = text ? json_loads(text, 0, &jerr) : NULL;
  CHECK(page != NULL);
  free(text);
  if (page == NULL)
    return;
  json_int_t w = json_integer_value(json_object_get(page, "width"));
  json_int_t h = json_integer_value(json_object_get(page, "height"));
  CHECK(json_integer_value(json_object_get(page, "page")) == 1);
  CHECK(w == 640 && h == 480);
  CHECK(strstr(json_string_value(json_object_get(page, "text")), "quick brown") != NULL);
  size_t words = 0, bad_boxes = 0, i, j, k;
  json_t *block, *line, *word;
  json_array_foreach(json_object_get(page, "blocks"), i, block) {
    bad_boxes += !box_inside(json_object_get(block, "bbox"), w, h);
    json_array_foreach(json_object_get(block, "lines"), j, line) {
      bad_boxes += !box_inside(json_object_get(line, "bbox"), w, h);
      CHECK(json_is_string(json_object_get(line, "text")));
      json_array_foreach(json_object_get(line, "words"), k, word) {
        bad_boxes += !box_inside(json_object_get(word, "bbox"), w, h);
        double conf = json_number_value(json_object_get(word, "conf"));
        CHECK(json_is_string(json_object_get(word, "text")) && conf >= 0 && conf <= 100);
        words++;
      }
    }
  }
  CHECK(words > 0 && words == stats->words);
  CHECK(bad_boxes == 0);
  json_decref(page);
}

/* Assembles one page's fragment in fmt and checks it is well-formed XML. */
static void check_xml(const char *prefix, op_format_t fmt, const char *title) {
  char *path = fragment_path(prefix, fmt);
  char doc[300];
  snprintf(doc, sizeof doc, "%s-doc.%s", prefix, op_format_ext(fmt));
  const char *files[] = {path, path};
  const uint32_t numbers[] = {0, 1};
  FILE *out = fopen(doc, "wb");
  op_error_t err;
  CHECK(out != NULL && op_output_assemble(fmt, files, NULL, numbers, 2, title, out, &err) == 0);
  if (out != NULL)
    fclose(out);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", doc);
  CHECK(system(cmd) == 0);
  free(path);
}

static void test_tesseract(void) {
  op_model_spec_t spec;
  op_model_spec_init(&spec);
  op_model_t *model = NULL;
  op_error_t err;
  if (op_engine_tesseract.open(&spec, &model, &err) < 0) {
    fprintf(stderr, "cannot open the tesseract model: %s\n", err.message);
    CHECK(0);
    return;
  }
  check_identical(model, "tests/data/phototest.tif", "phototest");
  check_identical(model, "tests/data/eurotext.tif", "eurotext");

  /* Every format from one page; JSON boxes inside the page; the PDF is a PDF. */
  op_page_stats_t stats;
  char prefix[256];
  CHECK(run_image(&op_engine_tesseract, model, "tests/data/phototest.tif", "all", OP_FMT_ALL, 0, &stats, prefix,
                  sizeof prefix) == 0);
  CHECK(stats.rotated_deg == 0 && stats.words > 0);
  check_json(prefix, &stats);
  size_t len = 0;
  char *pdf = read_fragment(prefix, OP_FMT_PDF, &len);
  CHECK(pdf != NULL && len > 1000 && memcmp(pdf, "%PDF", 4) == 0);
  free(pdf);
  char *hocr = read_fragment(prefix, OP_FMT_HOCR, &len);
  CHECK(hocr != NULL && strstr(hocr, "class='ocr_page' id='page_1'") &&
        strstr(hocr, "image \"tests/data/phototest.tif\""));
  free(hocr);
  char *tsv = read_fragment(prefix, OP_FMT_TSV, &len);
  const char *page_row = "1\t1\t0\t0\t0\t0\t0\t0\t640\t480\t";
  CHECK(tsv != NULL && strncmp(tsv, page_row, strlen(page_row)) == 0);
  free(tsv);
  check_xml(prefix, OP_FMT_HOCR, "photo & <test>");
  check_xml(prefix, OP_FMT_ALTO, "photo & <test>");

  /* Upside down and turned left: --rotate-pages turns them upright. */
  CHECK(run_image(&op_engine_tesseract, model, "tests/data/phototest-rotated-180.png", "r180", OP_FMT_TXT, 1, &stats,
                  prefix, sizeof prefix) == 0);
  CHECK(stats.rotated_deg == 180);
  char *text = read_fragment(prefix, OP_FMT_TXT, &len);
  CHECK(text != NULL && strstr(text, "quick brown") != NULL);
  free(text);
  CHECK(run_image(&op_engine_tesseract, model, "tests/data/phototest-rotated-L.png", "rL", OP_FMT_TXT, 1, &stats,
                  prefix, sizeof prefix) == 0);
  CHECK(stats.rotated_deg == 90);
  text = read_fragment(prefix, OP_FMT_TXT, &len);
  CHECK(text != NULL && strstr(text, "quick brown") != NULL);
  free(text);
  /* An upright page stays as it is. */
  CHECK(run_image(&op_engine_tesseract, model, "tests/data/phototest.tif", "r0", OP_FMT_TXT, 1, &stats, prefix,
                  sizeof prefix) == 0);
  CHECK(stats.rotated_deg == 0);
  op_engine_tesseract.close(model);
}

/* Runs one blank page through a null model opened with OCRPOOL_NULL_OPTS=env. */
static int null_page(const char *env, unsigned page_number, unsigned attempt, unsigned formats, op_error_t *err) {
  if (env != NULL)
    setenv("OCRPOOL_NULL_OPTS", env, 1);
  else
    unsetenv("OCRPOOL_NULL_OPTS");
  op_model_spec_t spec;
  op_model_spec_init(&spec);
  snprintf(spec.engine, sizeof spec.engine, "null");
  op_model_t *model = NULL;
  int rc = op_engine_null.open(&spec, &model, err);
  unsetenv("OCRPOOL_NULL_OPTS");
  if (rc < 0)
    return rc;
  PIX *pix = pixCreate(200, 100, 1);
  pixSetResolution(pix, 300, 300);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s/null", tmpdir);
  op_page_opts_t opts = {.page_number = page_number,
                         .psm = 3,
                         .formats = formats,
                         .out_prefix = prefix,
                         .input_path = "in.png",
                         .title = "a <b> & 'c'",
                         .attempt = attempt};
  op_page_stats_t stats;
  rc = op_engine_null.run_page(model, pix, &opts, &stats, err);
  pixDestroy(&pix);
  op_engine_null.close(model);
  return rc;
}

/* Runs null_page in a child; the child's wait status. */
static int null_page_in_child(const char *env, unsigned page_number, unsigned attempt) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    op_error_t err;
    _exit(null_page(env, page_number, attempt, OP_FMT_TXT, &err) == 0 ? 0 : 1);
  }
  int status = -1;
  while (pid > 0 && waitpid(pid, &status, 0) < 0)
    ;
  return status;
}

static void test_null(void) {
  op_error_t err;
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s/null", tmpdir);
  unsigned formats = OP_FMT_TXT | OP_FMT_HOCR | OP_FMT_TSV | OP_FMT_ALTO | OP_FMT_JSON;
  CHECK(null_page("report_env=1", 2, 1, formats, &err) == 0);
  size_t len = 0;
  char *s = read_fragment(prefix, OP_FMT_TXT, &len);
  CHECK(s != NULL && len == 0);
  free(s);
  s = read_fragment(prefix, OP_FMT_HOCR, &len);
  CHECK_STR_EQ(s, "  <div class='ocr_page' id='page_3' title='image \"a &lt;b&gt; &amp; &#39;c&#39;\"; bbox 0 0 200 "
                  "100; ppageno 2'>\n  </div>\n");
  free(s);
  s = read_fragment(prefix, OP_FMT_TSV, &len);
  CHECK_STR_EQ(s, "1\t3\t0\t0\t0\t0\t0\t0\t200\t100\t-1\t\n");
  free(s);
  s = read_fragment(prefix, OP_FMT_ALTO, &len);
  CHECK(s != NULL && strstr(s, "<Page WIDTH=\"200\" HEIGHT=\"100\"") && strstr(s, "</Page>"));
  free(s);
  check_xml(prefix, OP_FMT_HOCR, "null & <doc>");
  check_xml(prefix, OP_FMT_ALTO, "null & <doc>");
  s = read_fragment(prefix, OP_FMT_JSON, &len);
  json_error_t jerr;
  json_t *page = s ? json_loads(s, 0, &jerr) : NULL;
  free(s);
  CHECK(page != NULL);
  CHECK(json_integer_value(json_object_get(page, "page")) == 3);
  CHECK(json_integer_value(json_object_get(page, "width")) == 200);
  CHECK(json_integer_value(json_object_get(page, "height")) == 100);
  CHECK(json_integer_value(json_object_get(page, "dpi")) == 300);
  CHECK(json_integer_value(json_object_get(page, "mean_conf")) == -1);
  CHECK(json_array_size(json_object_get(page, "blocks")) == 0);
  CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(page, "env"), "OMP_THREAD_LIMIT")), "1");
  json_decref(page);

  /* Without report_env there is no env; a pdf is refused. */
  CHECK(null_page(NULL, 0, 1, OP_FMT_JSON, &err) == 0);
  s = read_fragment(prefix, OP_FMT_JSON, &len);
  CHECK(s != NULL && strstr(s, "\"env\"") == NULL);
  free(s);
  CHECK(null_page(NULL, 0, 1, OP_FMT_PDF, &err) == OP_EENGINE && strstr(err.message, "no pdf"));

  /* OCRPOOL_NULL_OPTS: unknown keys and bad values fail the open. */
  CHECK(null_page("colour=1", 0, 1, OP_FMT_TXT, &err) == OP_EUSAGE && strstr(err.message, "colour"));
  CHECK(null_page("sleep_ms=abc", 0, 1, OP_FMT_TXT, &err) == OP_EUSAGE);
  CHECK(null_page("sleep_ms", 0, 1, OP_FMT_TXT, &err) == OP_EUSAGE);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK(null_page("sleep_ms=60,alloc_mb=8", 0, 1, OP_FMT_TXT, &err) == 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 60);

  /* crash_page kills the worker on that page, while attempt <= crash_attempts. */
  int status = null_page_in_child("crash_page=2", 1, 1);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  status = null_page_in_child("crash_page=2", 0, 1);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  status = null_page_in_child("crash_page=2,crash_attempts=1", 1, 1);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  status = null_page_in_child("crash_page=2,crash_attempts=1", 1, 2);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st, (void)type, (void)ftw;
  return remove(path);
}

int main(int argc, char **argv) {
  (void)argc;
  if (getenv("OMP_THREAD_LIMIT") == NULL) {
    setenv("OMP_THREAD_LIMIT", "1", 1);
    execv("/proc/self/exe", argv);
    perror("re-executing with OMP_THREAD_LIMIT=1");
    return 1;
  }
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_specs();
  test_null();
  test_bad_language();
  test_tesseract();
  nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return CHECK_DONE();
}
