/*
 * null.c: the engine that does no OCR.
 *
 * It writes an empty page in every format (its size is real: the worker still
 * decodes or renders the page), so ocrpool's own overhead can be measured and
 * failures tested honestly. Test-only behaviours come from the environment
 * variable OCRPOOL_NULL_OPTS, read when the model opens, comma-separated:
 *   sleep_ms=N        sleep N ms on every page ...
 *   sleep_attempts=K  ... only while the page's attempt <= K (0: every attempt)
 *   crash_page=P      SIGKILL its own worker on page P (1-based) ...
 *   crash_attempts=K  ... only while the page's attempt <= K (0: every attempt)
 *   alloc_mb=M        allocate and touch M MB during each page (whatever the batch)
 *   leak_mb=M         allocate and touch M MB on each page and keep it (a leaking engine)
 *   model_mb=M        hold M MB (touched) while the model is loaded (a model's footprint)
 *   report_env=1      put the worker's OMP_THREAD_LIMIT in the json page
 *   escape=N          try what a hostile document's exploit would, on every page:
 *                     1 read /etc/passwd, 2 create a file in /tmp (outside the
 *                     scratch directory), 3 open a TCP socket, 4 exec /bin/sh.
 *                     Refused by the sandbox, 1 and 2 fail the page with
 *                     sandbox_violation and 3 and 4 get the worker killed by
 *                     its seccomp filter; allowed, the page goes on.
 * These behaviours exist for ocrpool's own tests only; an unknown key fails
 * the open with a usage error. It is never a default engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <leptonica/allheaders.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/fragments.h"

struct op_model_s {
  long sleep_ms;
  long sleep_attempts;
  long crash_page;
  long crash_attempts;
  long alloc_mb;
  long leak_mb;
  long model_mb;
  unsigned char *weights; /* model_mb of them */
  int report_env;
  long escape;
};

/* What leak_mb keeps: reachable, so that a sanitizer's leak check stays quiet
 * while the memory stays in use, as a real leak's would. */
static void **leaked;
static size_t n_leaked;

static int parse_opts(const char *s, op_model_t *m, op_error_t *err) {
  char buf[256];
  if (strlen(s) >= sizeof buf)
    return op_error_set(err, OP_EUSAGE, "bad_options", "OCRPOOL_NULL_OPTS is longer than %zu bytes", sizeof buf - 1);
  snprintf(buf, sizeof buf, "%s", s);
  char *save = NULL;
  for (char *kv = strtok_r(buf, ",", &save); kv != NULL; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    char *end = NULL;
    long v = eq ? strtol(eq + 1, &end, 10) : -1;
    if (eq == NULL || end == eq + 1 || *end != '\0' || v < 0)
      return op_error_set(err, OP_EUSAGE, "bad_options", "OCRPOOL_NULL_OPTS: bad entry \"%s\" (want key=number)", kv);
    *eq = '\0';
    if (strcmp(kv, "sleep_ms") == 0)
      m->sleep_ms = v;
    else if (strcmp(kv, "sleep_attempts") == 0)
      m->sleep_attempts = v;
    else if (strcmp(kv, "crash_page") == 0)
      m->crash_page = v;
    else if (strcmp(kv, "crash_attempts") == 0)
      m->crash_attempts = v;
    else if (strcmp(kv, "alloc_mb") == 0)
      m->alloc_mb = v;
    else if (strcmp(kv, "leak_mb") == 0)
      m->leak_mb = v;
    else if (strcmp(kv, "model_mb") == 0)
      m->model_mb = v;
    else if (strcmp(kv, "report_env") == 0)
      m->report_env = v != 0;
    else if (strcmp(kv, "escape") == 0 && v >= 1 && v <= 4)
      m->escape = v;
    else
      return op_error_set(err, OP_EUSAGE, "bad_options", "OCRPOOL_NULL_OPTS: unknown key \"%s\"", kv);
  }
  return 0;
}

static int null_open(const op_model_spec_t *spec, op_model_t **out, op_error_t *err) {
  (void)spec;
  op_model_t *m = calloc(1, sizeof *m);
  if (m == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  const char *env = getenv("OCRPOOL_NULL_OPTS");
  if (env != NULL && parse_opts(env, m, err) < 0) {
    free(m);
    return err ? err->code : OP_EUSAGE;
  }
  if (m->model_mb > 0) {
    size_t len = (size_t)m->model_mb << 20;
    if ((m->weights = malloc(len)) == NULL) {
      long mb = m->model_mb;
      free(m);
      return op_error_set(err, OP_ENOMEM, "out_of_memory", "null engine: cannot load a %ld MB model", mb);
    }
    for (size_t i = 0; i < len; i += 4096)
      m->weights[i] = 1;
  }
  *out = m;
  return 0;
}

static void null_close(op_model_t *m) {
  free(m->weights);
  free(m);
}

/* Writes s into buf (size len) with XML's special characters escaped, as
 * Tesseract's HOcrEscape does for the image name in a page's title. */
static void xml_escape(char *buf, size_t len, const char *s) {
  size_t used = 0;
  for (; s != NULL && *s != '\0' && used + 7 < len; s++) {
    const char *entity = NULL;
    switch (*s) {
    case '&':
      entity = "&amp;";
      break;
    case '<':
      entity = "&lt;";
      break;
    case '>':
      entity = "&gt;";
      break;
    case '"':
      entity = "&quot;";
      break;
    case '\'':
      entity = "&#39;";
      break;
    default:
      break;
    }
    if (entity != NULL) {
      memcpy(buf + used, entity, strlen(entity));
      used += strlen(entity);
    } else {
      buf[used++] = *s;
    }
  }
  buf[used] = '\0';
}

/* escape=N: one attempt out of the sandbox. 0 when it worked. */
static int try_escape(long what, op_error_t *err) {
  int fd = -1;
  const char *tried = "";
  char path[64];
  switch (what) {
  case 1:
    tried = "reading /etc/passwd";
    fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    break;
  case 2:
    snprintf(path, sizeof path, "/tmp/ocrpool-escape-%d", (int)getpid());
    tried = "creating a file in /tmp";
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0)
      unlink(path);
    break;
  case 3:
    tried = "opening a socket";
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    break;
  default: {
    char *const argv[] = {"sh", "-c", "exit 0", NULL};
    tried = "executing /bin/sh";
    execv("/bin/sh", argv);
    break;
  }
  }
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return op_error_set(err, OP_EENGINE, "sandbox_violation", "null engine: %s was refused: %s", tried, strerror(errno));
}

static int null_run_page(op_model_t *m, PIX *pix, const op_page_opts_t *opts, op_page_stats_t *stats, op_error_t *err) {
  unsigned page = opts->page_number + 1;
  stats->rotated_deg = 0;
  stats->mean_conf = -1;
  stats->words = 0;
  if (m->crash_page > 0 && page == (unsigned long)m->crash_page &&
      (m->crash_attempts == 0 || opts->attempt <= (unsigned long)m->crash_attempts))
    kill(getpid(), SIGKILL);
  if (m->escape > 0 && try_escape(m->escape, err) < 0)
    return err ? err->code : OP_EENGINE;
  unsigned char *block = NULL;
  if (m->alloc_mb > 0) {
    size_t len = (size_t)m->alloc_mb << 20;
    block = malloc(len);
    if (block == NULL)
      return op_error_set(err, OP_ENOMEM, "out_of_memory", "null engine: cannot allocate %ld MB", m->alloc_mb);
    for (size_t i = 0; i < len; i += 4096)
      block[i] = 1;
  }
  if (m->leak_mb > 0) {
    size_t len = (size_t)m->leak_mb << 20;
    void **grown = realloc(leaked, (n_leaked + 1) * sizeof *leaked);
    unsigned char *lost = grown ? malloc(len) : NULL;
    if (grown != NULL)
      leaked = grown;
    if (lost == NULL) {
      free(block);
      return op_error_set(err, OP_ENOMEM, "out_of_memory", "null engine: cannot leak %ld MB more", m->leak_mb);
    }
    for (size_t i = 0; i < len; i += 4096)
      lost[i] = 1;
    leaked[n_leaked++] = lost;
  }
  if (m->sleep_ms > 0 && (m->sleep_attempts == 0 || opts->attempt <= (unsigned long)m->sleep_attempts)) {
    struct timespec ts = {m->sleep_ms / 1000, (m->sleep_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
      ;
  }
  free(block);

  int w = pixGetWidth(pix), h = pixGetHeight(pix);
  l_int32 xres = 0, yres = 0;
  pixGetResolution(pix, &xres, &yres);
  int rc = 0;
  char frag[1024];
  if (opts->formats & OP_FMT_TXT && (rc = op__fragment_write(opts, OP_FMT_TXT, "", err)) < 0)
    return rc;
  if (opts->formats & OP_FMT_HOCR) {
    /* The page div Tesseract writes for a page without text: page_N is 1-based, ppageno 0-based. */
    char title[512];
    xml_escape(title, sizeof title, opts->title);
    snprintf(frag, sizeof frag,
             "  <div class='ocr_page' id='page_%u' title='image \"%s\"; bbox 0 0 %d %d; ppageno %u'>\n  </div>\n", page,
             title, w, h, page - 1);
    if ((rc = op__fragment_write(opts, OP_FMT_HOCR, frag, err)) < 0)
      return rc;
  }
  if (opts->formats & OP_FMT_TSV) {
    snprintf(frag, sizeof frag, "1\t%u\t0\t0\t0\t0\t0\t0\t%d\t%d\t-1\t\n", page, w, h);
    if ((rc = op__fragment_write(opts, OP_FMT_TSV, frag, err)) < 0)
      return rc;
  }
  if (opts->formats & OP_FMT_ALTO) {
    /* PHYSICAL_IMG_NR and the id are 0-based, as in Tesseract's GetAltoText. */
    snprintf(frag, sizeof frag,
             "\t\t<Page WIDTH=\"%d\" HEIGHT=\"%d\" PHYSICAL_IMG_NR=\"%u\" ID=\"page_%u\">\n"
             "\t\t\t<PrintSpace HPOS=\"0\" VPOS=\"0\" WIDTH=\"%d\" HEIGHT=\"%d\"/>\n\t\t</Page>\n",
             w, h, page - 1, page - 1, w, h);
    if ((rc = op__fragment_write(opts, OP_FMT_ALTO, frag, err)) < 0)
      return rc;
  }
  if (opts->formats & OP_FMT_JSON) {
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:[]}", "page", (int)page, "width", w, "height", h,
                          "dpi", yres, "rotated", 0, "mean_conf", -1, "text", "", "blocks");
    if (j != NULL && opts->batch > 1)
      json_object_set_new(j, "batch", json_integer(opts->batch)); /* the null engine's batch is only reported */
    if (j != NULL && m->report_env) {
      const char *omp = getenv("OMP_THREAD_LIMIT");
      json_object_set_new(j, "env", json_pack("{s:s?}", "OMP_THREAD_LIMIT", omp));
    }
    rc = j ? op__fragment_write_json(opts, j, err) : op_error_set(err, OP_ENOMEM, NULL, "out of memory");
    json_decref(j);
    if (rc < 0)
      return rc;
  }
  if (opts->formats & OP_FMT_PDF)
    return op_error_set(err, OP_EENGINE, "bad_options", "the null engine produces no pdf");
  return 0;
}

const op_engine_t op_engine_null = {
    .name = "null",
    .open = null_open,
    .run_page = null_run_page,
    .close = null_close,
};
