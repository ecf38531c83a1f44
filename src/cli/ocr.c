/*
 * ocr.c: `ocrpool ocr FILE...`: OCR documents here and now.
 *
 * The command is a small client of the same machinery the server uses: it
 * sniffs each file (magic bytes only; this process never parses a document),
 * queues one task per file on a scheduler over a pool of worker processes,
 * shows progress on a terminal, and writes each result where -o says (stdout
 * by default, in the order the files were given).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/options.h"
#include "core/sched.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/parse.h"
#include "worker/supervisor.h"
#include "worker/worker.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  interrupted = sig;
}

typedef struct file_s {
  const char *path;
  op_task_t *task; /* NULL when refused before queueing */
  int status;      /* exit status for this file */
} file_t;

typedef struct ocr_s {
  char **paths; /* the files as given */
  file_t *files;
  size_t n_files;
  size_t pages_total, pages_done;
  int progress; /* draw a progress bar */
  double t0;
  int outputs_to_dir;
  const char *out;
  unsigned formats;
  const char *format_list; /* -f */
  int stats;
  int quiet;
  int no_sandbox; /* --sandbox off */
} ocr_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out) {
  fputs("Usage: ocrpool ocr FILE... [OPTIONS]\n"
        "\n"
        "OCR PNG, JPEG, TIFF and PDF files with Tesseract in a pool of worker processes.\n"
        "Text goes to stdout unless -o is given.\n"
        "\n"
        "Options:\n"
        "  -o, --output PATH        output file; a directory (or base name) when there are several\n"
        "                           files or formats: PATH/NAME.EXT\n"
        "  -f, --format LIST        txt, hocr, tsv, alto, json, pdf, comma-separated (default: from\n"
        "                           the -o extension, else txt)\n"
        "  -l, --lang LANGS         Tesseract languages, e.g. eng, deu+eng (default eng)\n"
        "  -j, --jobs N             worker processes (default: usable cores)\n"
        "      --dpi N              render PDF pages at N dpi (default 300); for images, the dpi\n"
        "                           to assume, as tesseract --dpi\n"
        "      --psm N              page segmentation mode (default 3, as the tesseract CLI)\n"
        "      --oem N              Tesseract OCR engine mode (default 3)\n"
        "      --pages LIST         pages to OCR, e.g. 1-3,7,10- (default all)\n"
        "      --rotate-pages       detect each page's orientation and turn it upright\n"
        "      --rotate-pages-threshold X  least confidence to turn a page (default 7)\n"
        "      --engine NAME        tesseract (default) or null (no OCR; for measuring overhead)\n"
        "      --max-input-size N   largest input file (default 256MB; suffixes K, M, G)\n"
        "      --max-pages N        most pages per document (default 2000)\n"
        "      --max-page-pixels N  most pixels per page (default 250000000)\n"
        "      --page-timeout SEC   kill a worker whose page runs longer (default 300)\n"
        "      --render-cpu SEC     CPU a PDF page's drawing may take (default: half the page timeout)\n"
        "      --render-memory N    memory MuPDF may take for a PDF page beyond 16 bytes a pixel\n"
        "                           (default 128M; 0 = no cap)\n"
        "      --stats              print timing and memory figures as JSON on stderr\n"
        "      --sandbox on|off     confine the workers to the input files and their scratch\n"
        "                           directory, without network (default on; docs/security.md)\n"
        "  -q, --quiet              no progress bar\n"
        "      --log-level LEVEL    debug, info, warn (default), error\n"
        "  -h, --help               show this help\n"
        "\n"
        "Exit status: 0 done, 1 internal error, 2 usage error, 3 bad input (a file was refused),\n"
        "4 OCR failure (a page could not be recognised; the other pages are still written).\n",
        out);
}

static int parse_uint(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* ---- progress ---- */

static void draw_progress(ocr_t *o, int final) {
  if (!o->progress || o->pages_total == 0)
    return;
  if (final) {
    fputc('\n', stderr); /* the last page already drew the full bar */
    return;
  }
  double elapsed = now_s() - o->t0;
  double rate = elapsed > 0 ? (double)o->pages_done / elapsed : 0;
  char eta[32] = "--:--";
  if (rate > 0 && o->pages_done < o->pages_total) {
    long left = (long)((double)(o->pages_total - o->pages_done) / rate + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
  } else if (o->pages_done == o->pages_total) {
    snprintf(eta, sizeof eta, "0:00");
  }
  char bar[31];
  size_t filled = o->pages_done * 30 / o->pages_total;
  for (size_t i = 0; i < 30; i++)
    bar[i] = i < filled ? '#' : '-';
  bar[30] = '\0';
  fprintf(stderr, "\r[%s] %zu/%zu pages  %.2f pages/s  ETA %s ", bar, o->pages_done, o->pages_total, rate, eta);
  fflush(stderr);
}

static void on_page(void *ctx, op_task_t *task, op_page_job_t *page) {
  ocr_t *o = ctx;
  (void)task;
  (void)page;
  o->pages_done++;
  draw_progress(o, 0);
}

static void on_task(void *ctx, op_task_t *task) {
  ocr_t *o = ctx;
  /* A task that failed before its pages were known never counted them. */
  if (task->n_pages == 0)
    draw_progress(o, 0);
}

/* ---- output ---- */

static int copy_to(const char *src, FILE *out) {
  FILE *in = fopen(src, "rb");
  if (in == NULL)
    return -1;
  char buf[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) {
      rc = -1;
      break;
    }
  if (ferror(in))
    rc = -1;
  fclose(in);
  return rc;
}

/* Writes src to dest through a temporary file and rename, so a reader never sees half a result. */
static int write_file_atomically(const char *src, const char *dest) {
  char *tmp;
  FILE *out = op_atomic_create(dest, &tmp);
  return out == NULL ? -1 : op_atomic_finish(out, tmp, dest, copy_to(src, out) == 0);
}

/* The file name stem of path: "scans/a.pdf" -> "a". Caller frees. */
static char *stem_of(const char *path) {
  char *copy = strdup(path);
  if (copy == NULL)
    return NULL;
  char *base = strdup(basename(copy));
  free(copy);
  if (base == NULL)
    return NULL;
  char *dot = strrchr(base, '.');
  if (dot != NULL && dot != base)
    *dot = '\0';
  return base;
}

static char *dest_path(const ocr_t *o, const file_t *f, op_format_t fmt) {
  char *p = NULL;
  if (!o->outputs_to_dir)
    return strdup(o->out);
  struct stat st;
  if (o->n_files == 1 && !(stat(o->out, &st) == 0 && S_ISDIR(st.st_mode))) {
    if (asprintf(&p, "%s.%s", o->out, op_format_ext(fmt)) < 0)
      return NULL;
    return p;
  }
  char *stem = stem_of(f->path);
  if (stem == NULL)
    return NULL;
  if (asprintf(&p, "%s/%s.%s", o->out, stem, op_format_ext(fmt)) < 0)
    p = NULL;
  free(stem);
  return p;
}

/* Writes the results of a finished task. Returns 0 or -1 with a message printed. */
static int write_results(ocr_t *o, file_t *f, int *first_stdout) {
  for (unsigned fmt = 1; fmt <= OP_FMT_PDF; fmt <<= 1) {
    if (!(o->formats & fmt))
      continue;
    char *src = op_task_result_path(f->task, (op_format_t)fmt);
    if (src == NULL)
      return -1;
    int rc;
    if (o->out == NULL) {
      if (!*first_stdout && fmt == OP_FMT_TXT)
        fputc('\f', stdout);
      *first_stdout = 0;
      rc = copy_to(src, stdout);
      if (rc < 0)
        fprintf(stderr, "ocrpool: %s: writing the result to stdout failed: %s\n", f->path, strerror(errno));
    } else {
      char *dest = dest_path(o, f, (op_format_t)fmt);
      rc = dest ? write_file_atomically(src, dest) : -1;
      if (rc < 0)
        fprintf(stderr, "ocrpool: %s: cannot write %s: %s\n", f->path, dest ? dest : "the result", strerror(errno));
      free(dest);
    }
    free(src);
    if (rc < 0)
      return -1;
  }
  return 0;
}

/* ---- statistics ---- */

static void print_stats(const ocr_t *o, double seconds, unsigned restarts) {
  long rss, peak;
  op_self_memory_kb(&rss, &peak);
  long worker_peak = 0;
  size_t pages = 0;
  for (size_t i = 0; i < o->n_files; i++) {
    if (o->files[i].task == NULL)
      continue;
    if (o->files[i].task->peak_rss_kb > worker_peak)
      worker_peak = o->files[i].task->peak_rss_kb;
    pages += o->files[i].task->pages_done;
  }
  fprintf(stderr,
          "{\"files\":%zu,\"pages\":%zu,\"seconds\":%.3f,\"pages_per_s\":%.3f,"
          "\"supervisor_peak_rss_kb\":%ld,\"worker_peak_rss_kb\":%ld,\"worker_restarts\":%u}\n",
          o->n_files, pages, seconds, seconds > 0 ? (double)pages / seconds : 0.0, peak, worker_peak, restarts);
}

/* ---- command line ---- */

enum {
  OPT_DPI = 256,
  OPT_PSM,
  OPT_OEM,
  OPT_PAGES,
  OPT_ROTATE,
  OPT_ENGINE,
  OPT_MAX_INPUT,
  OPT_MAX_PAGES,
  OPT_MAX_PIXELS,
  OPT_TIMEOUT,
  OPT_RENDER_CPU,
  OPT_RENDER_MEMORY,
  OPT_STATS,
  OPT_LOG,
  OPT_ROTATE_THRESHOLD,
  OPT_SANDBOX
};

static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"lang", required_argument, NULL, 'l'},
                                         {"jobs", required_argument, NULL, 'j'},
                                         {"dpi", required_argument, NULL, OPT_DPI},
                                         {"psm", required_argument, NULL, OPT_PSM},
                                         {"oem", required_argument, NULL, OPT_OEM},
                                         {"pages", required_argument, NULL, OPT_PAGES},
                                         {"rotate-pages", no_argument, NULL, OPT_ROTATE},
                                         {"rotate-pages-threshold", required_argument, NULL, OPT_ROTATE_THRESHOLD},
                                         {"engine", required_argument, NULL, OPT_ENGINE},
                                         {"max-input-size", required_argument, NULL, OPT_MAX_INPUT},
                                         {"max-pages", required_argument, NULL, OPT_MAX_PAGES},
                                         {"max-page-pixels", required_argument, NULL, OPT_MAX_PIXELS},
                                         {"page-timeout", required_argument, NULL, OPT_TIMEOUT},
                                         {"render-cpu", required_argument, NULL, OPT_RENDER_CPU},
                                         {"render-memory", required_argument, NULL, OPT_RENDER_MEMORY},
                                         {"stats", no_argument, NULL, OPT_STATS},
                                         {"sandbox", required_argument, NULL, OPT_SANDBOX},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"log-level", required_argument, NULL, OPT_LOG},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};

/* What parse_args and plan_outputs answer when the command goes on. */
#define GO_ON (-1)
/* Start failures in a row, per worker, before ocrpool ocr gives up (its backoff makes that about 3 s). */
#define START_TRIES 5u

/* The codec's key (core/options.h) for a flag that sets a task option, NULL for the command's own. */
static const char *task_option_key(int flag) {
  switch (flag) {
  case 'l':
    return "lang";
  case OPT_DPI:
    return "dpi";
  case OPT_PSM:
    return "psm";
  case OPT_OEM:
    return "oem";
  case OPT_PAGES:
    return "pages";
  case OPT_ROTATE:
    return "rotate_pages";
  case OPT_ROTATE_THRESHOLD:
    return "rotate_threshold";
  case OPT_ENGINE:
    return "engine";
  case OPT_MAX_INPUT:
    return "max_input_size";
  case OPT_MAX_PAGES:
    return "max_pages";
  case OPT_MAX_PIXELS:
    return "max_page_pixels";
  default:
    return NULL;
  }
}

static const char *flag_name(int flag) {
  for (const struct option *o = longopts; o->name != NULL; o++)
    if (o->val == flag)
      return o->name;
  return "?";
}

/* Reads the command line into o, the task options and the pool's settings.
 * GO_ON, or the exit status (after --help, or a usage error it printed). */
static int parse_args(int argc, char **argv, ocr_t *o, op_task_opts_t *opts, op_supervisor_config_t *scfg,
                      op_sched_config_t *qcfg) {
  int level = OP_LOG_WARN;
  const char *log_name = NULL;
  long v;
  op_error_t e;
  const char *env_level = getenv("OCRPOOL_LOG_LEVEL");
  if (env_level != NULL && op_log_level_parse(env_level) >= 0) {
    level = op_log_level_parse(env_level);
    log_name = env_level;
  }
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:f:l:j:qh", longopts, NULL)) != -1) {
    const char *key = task_option_key(c);
    if (key != NULL) {
      if (op_task_opts_set(opts, key, c == OPT_ROTATE ? "true" : optarg, &e) < 0) {
        fprintf(stderr, "ocrpool ocr: --%s: %s\n", flag_name(c), e.message);
        return e.code == OP_ENOMEM ? OP_EXIT_INTERNAL : OP_EXIT_USAGE;
      }
      continue;
    }
    switch (c) {
    case 'o':
      o->out = optarg;
      break;
    case 'f':
      o->format_list = optarg;
      break;
    case 'j':
      if (parse_uint(optarg, 1, 256, &v) < 0) {
        fprintf(stderr, "ocrpool ocr: --jobs wants a number from 1 to 256, not \"%s\"\n", optarg);
        return OP_EXIT_USAGE;
      }
      scfg->workers = (unsigned)v;
      break;
    case OPT_TIMEOUT:
      if (parse_uint(optarg, 1, 86400, &v) < 0) {
        fprintf(stderr, "ocrpool ocr: bad --page-timeout \"%s\" (seconds)\n", optarg);
        return OP_EXIT_USAGE;
      }
      qcfg->page_timeout_ms = (unsigned)v * 1000u;
      break;
    case OPT_RENDER_CPU:
      if (parse_uint(optarg, 0, 86400, &v) < 0) {
        fprintf(stderr, "ocrpool ocr: bad --render-cpu \"%s\" (seconds)\n", optarg);
        return OP_EXIT_USAGE;
      }
      qcfg->render_cpu_ms = (unsigned)v * 1000u;
      break;
    case OPT_RENDER_MEMORY:
      if (op_parse_size(optarg, UINT64_C(1) << 40, &qcfg->render_bytes) < 0) {
        fprintf(stderr, "ocrpool ocr: bad --render-memory \"%s\" (a size: 512M, 2G; 0 = no cap)\n", optarg);
        return OP_EXIT_USAGE;
      }
      break;
    case OPT_STATS:
      o->stats = 1;
      break;
    case OPT_SANDBOX:
      if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
        fprintf(stderr, "ocrpool ocr: bad --sandbox \"%s\" (on or off)\n", optarg);
        return OP_EXIT_USAGE;
      }
      o->no_sandbox = strcmp(optarg, "off") == 0;
      break;
    case 'q':
      o->quiet = 1;
      break;
    case OPT_LOG:
      if (op_log_level_parse(optarg) < 0) {
        fprintf(stderr, "ocrpool ocr: bad --log-level \"%s\"\n", optarg);
        return OP_EXIT_USAGE;
      }
      level = op_log_level_parse(optarg);
      log_name = optarg;
      break;
    case 'h':
      usage(stdout);
      return OP_EXIT_OK;
    default:
      fputs("Try `ocrpool ocr --help`.\n", stderr);
      return OP_EXIT_USAGE;
    }
  }
  op_log_init((op_log_level_t)level, "ocr");
  scfg->log_level = log_name;
  if (optind >= argc) {
    fputs("ocrpool ocr: no input file\n", stderr);
    usage(stderr);
    return OP_EXIT_USAGE;
  }
  o->paths = argv + optind;
  o->n_files = (size_t)(argc - optind);
  return GO_ON;
}

/* The formats (-f, else the -o extension, else txt) and where results go,
 * checked against each other and the engine. GO_ON, or a usage error printed. */
static int plan_outputs(ocr_t *o, op_task_opts_t *opts) {
  op_error_t e;
  if (o->format_list != NULL) {
    if (op_task_opts_set(opts, "format", o->format_list, &e) < 0) {
      fprintf(stderr, "ocrpool ocr: %s\n", e.message);
      return OP_EXIT_USAGE;
    }
  } else {
    const char *dot = o->out ? strrchr(o->out, '.') : NULL;
    unsigned from_ext = dot ? op_format_from_name(dot + 1) : 0;
    opts->formats = from_ext != 0 ? from_ext : OP_FMT_TXT;
  }
  o->formats = opts->formats;
  if (op_task_opts_check(opts, &e) < 0) {
    fprintf(stderr, "ocrpool ocr: %s\n", e.message);
    return OP_EXIT_USAGE;
  }
  int n_formats = __builtin_popcount(o->formats);
  if (o->out == NULL && (n_formats > 1 || (o->n_files > 1 && o->formats != OP_FMT_TXT))) {
    fputs("ocrpool ocr: several files or formats need -o DIR (only txt from several files can go to stdout)\n", stderr);
    return OP_EXIT_USAGE;
  }
  if (o->out == NULL && (o->formats & OP_FMT_PDF) && isatty(STDOUT_FILENO)) {
    fputs("ocrpool ocr: not writing a PDF to a terminal; use -o FILE.pdf\n", stderr);
    return OP_EXIT_USAGE;
  }
  if (o->out != NULL && (n_formats > 1 || o->n_files > 1)) {
    o->outputs_to_dir = 1;
    struct stat st;
    if (o->n_files > 1 && stat(o->out, &st) < 0 && mkdir(o->out, 0777) < 0) {
      fprintf(stderr, "ocrpool ocr: cannot create output directory %s: %s\n", o->out, strerror(errno));
      return OP_EXIT_USAGE;
    }
  }
  return GO_ON;
}

/* ---- running ---- */

/* A fresh scratch directory under $TMPDIR, else /tmp; NULL with a message
 * printed. The caller removes it and frees the path. */
static char *make_scratch_root(void) {
  const char *tmpdir = getenv("TMPDIR");
  char *root = NULL;
  if (asprintf(&root, "%s/ocrpool-XXXXXX", tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp") < 0) {
    fputs("ocrpool ocr: out of memory\n", stderr);
    return NULL;
  }
  if (mkdtemp(root) == NULL) {
    fprintf(stderr, "ocrpool ocr: cannot create a scratch directory: %s\n", strerror(errno));
    free(root);
    return NULL;
  }
  return root;
}

static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Sniffs each file and makes its task; a file refused here gets its status
 * and no task. *queued counts the tasks. -1 when out of memory (printed). */
static int make_tasks(ocr_t *o, const op_task_opts_t *opts, size_t *queued) {
  op_error_t e;
  *queued = 0;
  for (size_t i = 0; i < o->n_files; i++) {
    file_t *f = &o->files[i];
    f->path = o->paths[i];
    op_doc_type_t type;
    uint64_t bytes;
    op_error_clear(&e);
    if (op_doc_sniff_file(f->path, &type, &bytes, &e) < 0) {
      fprintf(stderr, "ocrpool: %s: %s\n", f->path, e.message);
      f->status = OP_EXIT_BADINPUT;
      continue;
    }
    if (bytes > opts->limits.max_input_bytes) {
      fprintf(stderr, "ocrpool: %s: the file is %llu bytes, over the limit of %llu (--max-input-size)\n", f->path,
              (unsigned long long)bytes, (unsigned long long)opts->limits.max_input_bytes);
      f->status = OP_EXIT_BADINPUT;
      continue;
    }
    char *copy = strdup(f->path);
    f->task = copy ? op_task_create(f->path, basename(copy), type, opts) : NULL;
    free(copy);
    if (f->task == NULL) {
      fputs("ocrpool ocr: out of memory\n", stderr);
      return -1;
    }
    (*queued)++;
  }
  return 0;
}

/* The workers' sandbox (NULL with --sandbox off, or out of memory: printed):
 * the scratch root read-write, the input files read-only, else, for more
 * files than a sandbox names, their directories; tmp becomes their /tmp. The command's own user
 * stays: it is a user's command, not a server. Caller frees *dirs and the text. */
static char *plan_sandbox(const ocr_t *o, const char *root, const char *tmp, char ***dirs, int *failed) {
  op_sandbox_config_t sb;
  op_sandbox_config_init(&sb);
  *dirs = NULL;
  *failed = 0;
  if (o->no_sandbox) {
    sb.enabled = 0;
    return op_sandbox_encode(&sb);
  }
  sb.write_dirs[sb.n_write++] = root;
  sb.tmp_dir = tmp;
  unsigned base = sb.n_read;
  int fits = 1;
  for (size_t i = 0; fits && i < o->n_files; i++)
    fits = op_sandbox_add_read(&sb, o->paths[i], NULL) == 0;
  if (!fits) {
    sb.n_read = base;
    if ((*dirs = calloc(o->n_files, sizeof **dirs)) == NULL)
      goto nomem;
    for (size_t i = 0; i < o->n_files; i++) {
      char *copy = strdup(o->paths[i]);
      if (copy == NULL || ((*dirs)[i] = strdup(dirname(copy))) == NULL) {
        free(copy);
        goto nomem;
      }
      free(copy);
      unsigned k = base;
      while (k < sb.n_read && strcmp(sb.read_paths[k], (*dirs)[i]) != 0)
        k++;
      if (k == sb.n_read && op_sandbox_add_read(&sb, (*dirs)[i], NULL) < 0) {
        fprintf(stderr,
                "ocrpool ocr: the input files lie in more than %u directories, more than the sandbox names; "
                "run fewer at once, or --sandbox off\n",
                OP_SANDBOX_MAX_PATHS - base);
        *failed = 1;
        return NULL;
      }
    }
  }
  char *text = op_sandbox_encode(&sb);
  if (text != NULL)
    return text;
nomem:
  fputs("ocrpool ocr: out of memory\n", stderr);
  *failed = 1;
  return NULL;
}

/* Starts the pool, queues the tasks and steps the scheduler until every task
 * has ended or a signal came. Returns OP_EXIT_OK, or the exit status after a
 * failure or an interruption (printed). *sup and *sched are the caller's to destroy. */
static int run_tasks(ocr_t *o, const op_supervisor_config_t *scfg, const op_sched_config_t *qcfg, op_supervisor_t **sup,
                     op_sched_t **sched) {
  op_error_t e;
  if (op_supervisor_create(scfg, sup, &e) < 0) {
    fprintf(stderr, "ocrpool ocr: %s\n", e.message);
    return OP_EXIT_INTERNAL;
  }
  *sched = op_sched_create(qcfg, *sup);
  if (*sched == NULL)
    return OP_EXIT_INTERNAL;
  for (size_t i = 0; i < o->n_files; i++) {
    if (o->files[i].task != NULL && op_sched_add(*sched, o->files[i].task, &e) < 0) {
      fprintf(stderr, "ocrpool: %s: %s\n", o->files[i].path, e.message);
      return OP_EXIT_INTERNAL;
    }
  }
  /* Page totals are known once each task's probe answers; count them as they come. */
  while (op_sched_active(*sched) > 0 && !interrupted) {
    size_t total = 0;
    for (size_t i = 0; i < o->n_files; i++)
      if (o->files[i].task != NULL)
        total += o->files[i].task->n_pages;
    o->pages_total = total;
    if (op_sched_step(*sched, 200, &e) < 0) {
      fprintf(stderr, "ocrpool ocr: %s\n", e.message);
      return OP_EXIT_INTERNAL;
    }
    /* Else the pages would wait for a worker forever, restarted with a backoff. */
    if (op_supervisor_cannot_start(*sup, START_TRIES)) {
      if (o->progress)
        fputc('\n', stderr);
      fprintf(stderr,
              "ocrpool ocr: no worker could start: each ended before it was ready, %u times in a row (the messages "
              "above say why; --sandbox off if it is the sandbox); no page was OCRed\n",
              START_TRIES);
      return OP_EXIT_OCRFAIL;
    }
  }
  if (interrupted) {
    if (o->progress)
      fputc('\n', stderr);
    fprintf(stderr, "ocrpool: interrupted; stopping workers\n");
    return OP_EXIT_INTERRUPTED;
  }
  draw_progress(o, 1);
  return OP_EXIT_OK;
}

/* Reports each ended task, writes what it produced, and returns the
 * command's exit status: internal errors first, else the worst file's. */
static int finish_files(ocr_t *o, op_supervisor_t *sup) {
  int first_stdout = 1;
  for (size_t i = 0; i < o->n_files; i++) {
    file_t *f = &o->files[i];
    op_task_t *t = f->task;
    if (t == NULL)
      continue;
    if (t->status == OP_TASK_FAILED) {
      fprintf(stderr, "ocrpool: %s: %s\n", f->path, t->error.message);
      if (t->error.why == OP_REASON_BAD_INPUT)
        f->status = OP_EXIT_BADINPUT;
      else if (t->error.why == OP_REASON_BAD_OPTIONS)
        f->status = OP_EXIT_USAGE;
      else
        f->status = OP_EXIT_OCRFAIL;
      if (t->pages_failed > 0 && t->pages_done > 0)
        fprintf(stderr, "ocrpool: %s: %zu of %zu pages failed; the others are in the output\n", f->path,
                t->pages_failed, t->n_pages);
    }
    if (t->pages_done > 0 && write_results(o, f, &first_stdout) < 0)
      f->status = OP_EXIT_INTERNAL;
  }
  fflush(stdout);
  if (o->stats)
    print_stats(o, now_s() - o->t0, sup ? op_supervisor_restarts(sup) : 0);
  int exit_status = OP_EXIT_OK;
  for (size_t i = 0; i < o->n_files; i++) {
    int st = o->files[i].status;
    if (st == OP_EXIT_INTERNAL)
      exit_status = OP_EXIT_INTERNAL;
    else if (exit_status != OP_EXIT_INTERNAL && st > exit_status)
      exit_status = st;
  }
  return exit_status;
}

/* OCRs o's files with opts in a scratch directory of its own, removed after. */
static int ocr_files(ocr_t *o, const op_task_opts_t *opts, const op_supervisor_config_t *scfg,
                     op_sched_config_t *qcfg) {
  int exit_status = OP_EXIT_INTERNAL;
  op_supervisor_t *sup = NULL;
  op_sched_t *sched = NULL;
  char **dirs = NULL;
  char *sandbox = NULL, *tmp = NULL;
  int failed = 0;
  char *root = make_scratch_root();
  if (root == NULL)
    return OP_EXIT_INTERNAL;
  o->files = calloc(o->n_files, sizeof *o->files);
  if (o->files == NULL) {
    fputs("ocrpool ocr: out of memory\n", stderr);
    goto out;
  }
  catch_signals();
  o->progress = !o->quiet && isatty(STDERR_FILENO);
  o->t0 = now_s();
  qcfg->scratch_root = root;
  if (asprintf(&tmp, "%s/.tmp", root) < 0 || mkdir(tmp, 0700) < 0) {
    fprintf(stderr, "ocrpool ocr: cannot create a scratch directory: %s\n", strerror(errno));
    goto out;
  }
  if ((sandbox = plan_sandbox(o, root, tmp, &dirs, &failed)) == NULL && failed)
    goto out;
  op_supervisor_config_t pool = *scfg;
  pool.sandbox = sandbox;
  qcfg->on_page = on_page;
  qcfg->on_task = on_task;
  qcfg->cb_ctx = o;
  size_t queued;
  if (make_tasks(o, opts, &queued) < 0)
    goto out;
  if (queued > 0 && (exit_status = run_tasks(o, &pool, qcfg, &sup, &sched)) != OP_EXIT_OK)
    goto out;
  exit_status = finish_files(o, sup);
out:
  op_sched_destroy(sched);
  op_supervisor_destroy(sup);
  free(sandbox);
  for (size_t i = 0; dirs != NULL && i < o->n_files; i++)
    free(dirs[i]);
  free(dirs);
  if (tmp != NULL)
    op_remove_tree(tmp); /* what a killed worker's libraries left */
  free(tmp);
  for (size_t i = 0; o->files != NULL && i < o->n_files; i++)
    op_task_destroy(o->files[i].task);
  free(o->files);
  if (rmdir(root) < 0)
    op_log_warn("cannot remove scratch directory %s: %s", root, strerror(errno));
  free(root);
  return exit_status;
}

int op_cli_ocr(int argc, char **argv) {
  ocr_t o;
  memset(&o, 0, sizeof o);
  op_task_opts_t opts;
  op_task_opts_init(&opts);
  op_supervisor_config_t scfg;
  op_supervisor_config_init(&scfg);
  op_sched_config_t qcfg;
  op_sched_config_init(&qcfg);
  int exit_status = parse_args(argc, argv, &o, &opts, &scfg, &qcfg);
  if (exit_status == GO_ON)
    exit_status = plan_outputs(&o, &opts);
  if (exit_status == GO_ON)
    exit_status = ocr_files(&o, &opts, &scfg, &qcfg);
  op_task_opts_dispose(&opts);
  return exit_status;
}
