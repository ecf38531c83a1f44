/*
 * worker.c: the worker process's main loop.
 *
 * A worker says hello, then answers one message at a time: "probe" reads a
 * document's pages and sizes, "page" loads one page (decoding or rendering it
 * only now, so a long document is never in memory at once) and runs it
 * through a cached model, "merge_pdf" joins per-page PDFs, "ping" proves it is
 * alive, "exit" ends it. Every job reply carries the process's resident and
 * peak memory, which the supervisor records.
 */
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <leptonica/allheaders.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "doc/doc.h"
#include "engine/engine.h"
#include "util/log.h"
#include "util/utf8.h"
#include "worker/models.h"
#include "worker/protocol.h"
#include "worker/sandbox.h"

#define OP_PROTOCOL_VERSION 1
#define OP_WORKER_OOM_SCORE_ADJ 500 /* of -1000..1000: half way to "kill this first" */

typedef struct worker_s {
  int fd;
  unsigned id;
  const char *device;
  op_model_cache_t *models;
  op_doc_reader_t *reader;
  op_sandbox_t sandbox;
} worker_t;

void op_self_memory_kb(long *rss_kb, long *peak_kb) {
  *rss_kb = 0;
  *peak_kb = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return;
  char line[256];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0)
      *rss_kb = strtol(line + 6, NULL, 10);
    else if (strncmp(line, "VmHWM:", 6) == 0)
      *peak_kb = strtol(line + 6, NULL, 10);
  }
  fclose(f);
}

static double ms_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Adds the memory figures every reply carries. */
static void add_memory(json_t *reply) {
  long rss, peak;
  op_self_memory_kb(&rss, &peak);
  json_object_set_new(reply, "rss_kb", json_integer(rss));
  json_object_set_new(reply, "peak_rss_kb", json_integer(peak));
}

static json_t *reply_failed(json_t *job, const op_error_t *e) {
  /* A library's message may quote the document's bytes (a PDF's filter name): made valid UTF-8, or no reply goes. */
  json_t *r = json_pack("{s:s, s:O?, s:i, s:s, s:o}", "op", "failed", "job", json_object_get(job, "job"), "code",
                        e->code ? e->code : OP_EINTERNAL, "reason", e->reason[0] ? e->reason : "internal", "message",
                        op_utf8_json(e->message[0] ? e->message : "unknown error"));
  add_memory(r);
  return r;
}

static json_t *reply_ok(json_t *job, const char *op) {
  json_t *r = json_pack("{s:s, s:O?}", "op", op, "job", json_object_get(job, "job"));
  return r;
}

static const char *str_field(json_t *job, const char *key) {
  return json_string_value(json_object_get(job, key));
}

static json_t *do_probe(worker_t *w, json_t *job) {
  op_error_t e;
  op_error_clear(&e);
  op_doc_limits_t limits;
  op_doc_limits_init(&limits);
  json_t *lim = json_object_get(job, "limits");
  if (json_is_object(lim)) {
    if (json_is_integer(json_object_get(lim, "max_pages")))
      limits.max_pages = (uint32_t)json_integer_value(json_object_get(lim, "max_pages"));
    if (json_is_integer(json_object_get(lim, "max_page_pixels")))
      limits.max_page_pixels = (uint64_t)json_integer_value(json_object_get(lim, "max_page_pixels"));
    if (json_is_integer(json_object_get(lim, "dpi")))
      limits.dpi = (int)json_integer_value(json_object_get(lim, "dpi"));
    if (json_is_integer(json_object_get(lim, "max_render_bytes")))
      limits.max_render_bytes = (uint64_t)json_integer_value(json_object_get(lim, "max_render_bytes"));
  }
  const char *input = op_sandbox_path(&w->sandbox, str_field(job, "input"));
  op_page_set_t set = {NULL, 0};
  op_doc_probe_t probe;
  memset(&probe, 0, sizeof probe);
  json_t *reply = NULL;
  if (input == NULL) {
    op_error_set(&e, OP_EPROTO, "internal", "probe without \"input\"");
    goto out;
  }
  if (op_page_set_parse(str_field(job, "pages"), &set, &e) < 0)
    goto out;
  if (op_doc_probe(input, &set, &limits, &probe, &e) < 0)
    goto out;
  json_t *pages = json_array();
  for (size_t i = 0; i < probe.n_pages; i++) {
    const op_page_info_t *p = &probe.pages[i];
    json_array_append_new(pages, json_pack("[I,I,I,i,i,i]", (json_int_t)p->index, (json_int_t)p->width_px,
                                           (json_int_t)p->height_px, p->xres, p->yres, p->depth));
  }
  reply = reply_ok(job, "probed");
  json_object_set_new(reply, "type", json_string(op_doc_type_name(probe.type)));
  json_object_set_new(reply, "page_count", json_integer(probe.page_count));
  json_object_set_new(reply, "pages", pages);
  add_memory(reply);
out:
  op_doc_probe_dispose(&probe);
  op_page_set_dispose(&set);
  return reply != NULL ? reply : reply_failed(job, &e);
}

static unsigned formats_from_json(json_t *arr) {
  unsigned mask = 0;
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v))
      mask |= op_format_from_name(json_string_value(v));
  }
  return mask;
}

/* The model's hard cap, as the soft RLIMIT_DATA (heap and private mappings):
 * an allocation past it fails instead of the machine running out. The hard
 * limit stays, so the next page may raise it again; 0 lifts it. */
static void set_memory_limit(uint64_t bytes) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_DATA, &rl) < 0)
    return;
  rlim_t want = bytes > 0 ? (rlim_t)bytes : rl.rlim_max;
  if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
    want = rl.rlim_max;
  if (rl.rlim_cur == want)
    return;
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_DATA, &rl) < 0)
    op_log_warn("cannot set the memory limit: %s", strerror(errno));
}

static void spec_from_job(json_t *model_j, op_model_spec_t *spec) {
  op_model_spec_init(spec);
  if (str_field(model_j, "engine"))
    snprintf(spec->engine, sizeof spec->engine, "%s", str_field(model_j, "engine"));
  if (str_field(model_j, "lang"))
    snprintf(spec->lang, sizeof spec->lang, "%s", str_field(model_j, "lang"));
  if (json_is_integer(json_object_get(model_j, "oem")))
    spec->oem = (int)json_integer_value(json_object_get(model_j, "oem"));
}

/* "load" (preload, or an admin's request) and "unload" (keep_alive, an
 * admin's request): the server decides; the worker's cache only obeys. */
static json_t *do_model(worker_t *w, json_t *job, int load) {
  op_error_t e;
  op_error_clear(&e);
  json_t *model_j = json_object_get(job, "model");
  if (!json_is_object(model_j)) {
    op_error_set(&e, OP_EPROTO, "internal", "%s without a model", load ? "load" : "unload");
    return reply_failed(job, &e);
  }
  op_model_spec_t spec;
  spec_from_job(model_j, &spec);
  json_t *reply;
  if (load) {
    op_model_ref_t ref;
    if (op_model_cache_get(w->models, &spec, &ref, &e) < 0)
      return reply_failed(job, &e);
    reply = reply_ok(job, "loaded");
    json_object_set_new(reply, "model_loaded", json_boolean(ref.loaded_now));
    json_object_set_new(reply, "model_footprint_kb", json_integer(ref.footprint_kb));
  } else {
    int was = op_model_cache_unload(w->models, &spec);
    malloc_trim(0);
    reply = reply_ok(job, "unloaded");
    json_object_set_new(reply, "unloaded", json_boolean(was));
  }
  add_memory(reply);
  return reply;
}

static json_t *do_page(worker_t *w, json_t *job) {
  op_error_t e;
  op_error_clear(&e);
  struct Pix *pix = NULL;
  json_t *reply = NULL;
  const char *input = op_sandbox_path(&w->sandbox, str_field(job, "input"));
  const char *out_prefix = op_sandbox_path(&w->sandbox, str_field(job, "out"));
  op_doc_type_t type = op_doc_type_from_name(str_field(job, "type") ? str_field(job, "type") : "");
  json_t *model_j = json_object_get(job, "model");
  if (input == NULL || out_prefix == NULL || type == OP_DOC_UNKNOWN || !json_is_object(model_j)) {
    op_error_set(&e, OP_EPROTO, "internal", "page job without input, out, type or model");
    goto out;
  }
  op_model_spec_t spec;
  op_model_spec_init(&spec);
  if (str_field(model_j, "engine"))
    snprintf(spec.engine, sizeof spec.engine, "%s", str_field(model_j, "engine"));
  if (str_field(model_j, "lang"))
    snprintf(spec.lang, sizeof spec.lang, "%s", str_field(model_j, "lang"));
  if (json_is_integer(json_object_get(model_j, "oem")))
    spec.oem = (int)json_integer_value(json_object_get(model_j, "oem"));

  set_memory_limit((uint64_t)json_integer_value(json_object_get(job, "memory_limit")));
  op_model_ref_t ref;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (op_model_cache_get(w->models, &spec, &ref, &e) < 0)
    goto out;
  double load_ms = ms_since(&t0);
  /* The kernel's peak (VmHWM) starts again here, so the reply's peak is this
   * page's and the page's own cost is peak - base: what admission learns from.
   * Where clear_refs cannot be written the peak is the process's, larger. */
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t wr = write(fd, "5", 1);
    (void)wr;
    close(fd);
  }
  long base_kb = 0, ignored_kb;
  op_self_memory_kb(&base_kb, &ignored_kb);

  uint32_t index = (uint32_t)json_integer_value(json_object_get(job, "index"));
  int dpi = json_is_integer(json_object_get(job, "dpi")) ? (int)json_integer_value(json_object_get(job, "dpi")) : 300;
  json_t *mpp = json_object_get(job, "max_page_pixels");
  uint64_t max_pixels = json_is_integer(mpp) ? (uint64_t)json_integer_value(mpp) : 250000000u;
  json_t *cpu = json_object_get(job, "render_cpu_ms"), *bytes = json_object_get(job, "render_bytes");
  op_doc_reader_set_render_caps(w->reader, json_is_integer(cpu) ? (unsigned)json_integer_value(cpu) : 0,
                                json_is_integer(bytes) ? (uint64_t)json_integer_value(bytes) : 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (op_doc_reader_load_page(w->reader, input, type, index, dpi, max_pixels, &pix, &e) < 0)
    goto out;
  double decode_ms = ms_since(&t0);

  op_page_opts_t opts = {
      .page_number = json_is_integer(json_object_get(job, "page_number"))
                         ? (uint32_t)json_integer_value(json_object_get(job, "page_number"))
                         : index,
      .psm = json_is_integer(json_object_get(job, "psm")) ? (int)json_integer_value(json_object_get(job, "psm")) : 3,
      .user_dpi = (int)json_integer_value(json_object_get(job, "user_dpi")),
      .rotate_pages = json_is_true(json_object_get(job, "rotate")),
      .rotate_threshold = (float)json_number_value(json_object_get(job, "rotate_threshold")),
      .formats = formats_from_json(json_object_get(job, "formats")),
      .out_prefix = out_prefix,
      .input_path = type == OP_DOC_PDF ? NULL : input,
      .title = str_field(job, "title") ? str_field(job, "title") : "",
      .attempt = json_is_integer(json_object_get(job, "attempt"))
                     ? (unsigned)json_integer_value(json_object_get(job, "attempt"))
                     : 1,
      .batch = json_is_integer(json_object_get(job, "batch"))
                   ? (unsigned)json_integer_value(json_object_get(job, "batch"))
                   : 1,
  };
  op_page_stats_t stats = {0, -1, 0};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ref.engine->run_page(ref.model, pix, &opts, &stats, &e) < 0)
    goto out;
  double ocr_ms = ms_since(&t0);

  reply = reply_ok(job, "done");
  json_object_set_new(reply, "width", json_integer(pixGetWidth(pix)));
  json_object_set_new(reply, "height", json_integer(pixGetHeight(pix)));
  json_object_set_new(reply, "depth", json_integer(pixGetDepth(pix)));
  /* The page's memory goes back to the system now, not at the next page: an
   * idle worker holds only its models, which is what admission counts, and
   * the next page's growth measures its whole cost. */
  pixDestroy(&pix);
  malloc_trim(0);
  json_object_set_new(reply, "rotated", json_integer(stats.rotated_deg));
  json_object_set_new(reply, "mean_conf", json_integer(stats.mean_conf));
  json_object_set_new(reply, "words", json_integer(stats.words));
  json_object_set_new(reply, "model_loaded", json_boolean(ref.loaded_now));
  json_object_set_new(reply, "model_footprint_kb", json_integer(ref.footprint_kb));
  json_object_set_new(reply, "page_base_rss_kb", json_integer(base_kb));
  json_object_set_new(reply, "load_ms", json_real(load_ms));
  json_object_set_new(reply, "decode_ms", json_real(decode_ms));
  json_object_set_new(reply, "ocr_ms", json_real(ocr_ms));
  add_memory(reply);
out:
  pixDestroy(&pix);
  return reply != NULL ? reply : reply_failed(job, &e);
}

static json_t *do_merge_pdf(worker_t *w, json_t *job) {
  op_error_t e;
  op_error_clear(&e);
  json_t *inputs = json_object_get(job, "inputs");
  const char *output = op_sandbox_path(&w->sandbox, str_field(job, "output"));
  size_t n = json_array_size(inputs);
  const char **paths = calloc(n ? n : 1, sizeof *paths);
  json_t *reply = NULL;
  if (paths == NULL) {
    op_error_set(&e, OP_ENOMEM, NULL, "out of memory merging %zu PDFs", n);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    paths[i] = op_sandbox_path(&w->sandbox, json_string_value(json_array_get(inputs, i)));
    if (paths[i] == NULL) {
      op_error_set(&e, OP_EPROTO, "internal", "merge_pdf input %zu is not a path", i);
      goto out;
    }
  }
  if (output == NULL) {
    op_error_set(&e, OP_EPROTO, "internal", "merge_pdf without \"output\"");
    goto out;
  }
  if (op_doc_pdf_merge(paths, n, output, &e) < 0)
    goto out;
  reply = reply_ok(job, "done");
  add_memory(reply);
out:
  free(paths);
  return reply != NULL ? reply : reply_failed(job, &e);
}

/* The kernel's OOM killer takes the process with the highest score (its size,
 * plus this adjustment): a worker is to go before the server, which holds
 * every task's state, since a worker's page is retried on the out-of-memory
 * path and the server's end stops them all. Raising our own score needs no
 * privilege; one already higher stays. */
static void prefer_oom_kill(void) {
  int adj = 0;
  FILE *f = fopen("/proc/self/oom_score_adj", "r+e");
  if (f == NULL)
    return;
  if (fscanf(f, "%d", &adj) == 1 && adj < OP_WORKER_OOM_SCORE_ADJ) {
    rewind(f);
    fprintf(f, "%d\n", OP_WORKER_OOM_SCORE_ADJ);
  }
  fclose(f);
}

int op_worker_main(int fd, const char *device, unsigned worker_id, const char *sandbox) {
  worker_t w = {.fd = fd, .id = worker_id, .device = device};
  int status = 1;
  /* A dead supervisor must not leave us behind, nor SIGPIPE kill us mid-write.
   * Killed with it (kill -9, OOM killer) we die too, at once: an orphan would
   * finish its page, holding its memory and writing fragments that the next
   * server's run of the same page owns. (Spawned from the supervisor's thread,
   * which is the process's main thread; a parent already gone is seen as EOF.) */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_IGN);
  prefer_oom_kill();
  /* Leptonica's notes ("removing opaque cmap") are noise to a user; our
   * errors say what failed. Debug logging keeps them. */
  setMsgSeverity(op_log_level() <= OP_LOG_DEBUG ? L_SEVERITY_INFO : L_SEVERITY_NONE);
  w.models = op_model_cache_create(4);
  w.reader = op_doc_reader_create();
  if (w.models == NULL || w.reader == NULL) {
    op_log_error("out of memory starting");
    goto out;
  }
  /* A test hook: a worker slow to start (as one preloading a large model
   * would be), so tests can see the server before any worker is ready. */
  const char *delay = getenv("OCRPOOL_TEST_WORKER_START_DELAY_MS");
  if (delay != NULL && atoi(delay) > 0)
    usleep((useconds_t)atoi(delay) * 1000u);
  /* Last before the hello: from here on the worker reads untrusted documents. */
  op_error_t se;
  op_error_clear(&se);
  /* A test hook: a worker that cannot start, as one whose sandbox the kernel refuses. */
  if (getenv("OCRPOOL_TEST_WORKER_START_FAIL") != NULL) {
    op_log_error("cannot start: OCRPOOL_TEST_WORKER_START_FAIL is set (a test hook)");
    goto out;
  }
  if (op_sandbox_enter(sandbox, &w.sandbox, &se) < 0) {
    op_log_error("cannot enter the sandbox (sandbox: off turns it off): %s", se.message);
    goto out;
  }
  json_t *hello = json_pack("{s:s, s:i, s:i, s:s, s:s, s:i, s:o}", "op", "hello", "pid", (int)getpid(), "protocol",
                            OP_PROTOCOL_VERSION, "version", OCRPOOL_VERSION, "device", device, "id", (int)worker_id,
                            "sandbox", op_sandbox_status_hello(&w.sandbox.status));
  int rc = op_proto_send(fd, hello);
  json_decref(hello);
  if (rc < 0)
    goto out;
  for (;;) {
    json_t *msg = NULL;
    op_error_t e;
    rc = op_proto_recv(fd, &msg, &e);
    if (rc == OP_EEOF) {
      status = 0;
      break;
    }
    if (rc < 0) {
      op_log_error("%s", e.message);
      break;
    }
    const char *op = str_field(msg, "op");
    json_t *reply = NULL;
    if (op == NULL) {
      op_log_warn("message without \"op\" ignored");
    } else if (strcmp(op, "page") == 0) {
      reply = do_page(&w, msg);
    } else if (strcmp(op, "probe") == 0) {
      reply = do_probe(&w, msg);
    } else if (strcmp(op, "merge_pdf") == 0) {
      reply = do_merge_pdf(&w, msg);
    } else if (strcmp(op, "load") == 0 || strcmp(op, "unload") == 0) {
      reply = do_model(&w, msg, op[0] == 'l');
    } else if (strcmp(op, "ping") == 0) {
      reply = json_pack("{s:s}", "op", "pong");
      add_memory(reply);
    } else if (strcmp(op, "exit") == 0) {
      json_decref(msg);
      status = 0;
      break;
    } else {
      op_error_t bad;
      op_error_set(&bad, OP_EPROTO, "internal", "unknown op \"%s\"", op);
      reply = reply_failed(msg, &bad);
    }
    json_decref(msg);
    if (reply != NULL) {
      rc = op_proto_send(fd, reply);
      json_decref(reply);
      if (rc < 0)
        break;
    }
  }
out:
  op_doc_reader_destroy(w.reader);
  op_model_cache_destroy(w.models);
  return status;
}
