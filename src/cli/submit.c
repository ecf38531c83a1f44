/*
 * submit.c: `ocrpool submit` and `ocrpool status`, clients of a running
 * `ocrpool serve` (docs/api.md), on libcurl.
 *
 * submit streams each file from disk as the raw body of POST /v1/tasks (its
 * Content-Type from its first bytes), honours 429 + Retry-After, and with
 * --wait polls the tasks with a progress bar, then writes the results where
 * -o says (stdout by default), as `ocrpool ocr` does. The token comes from
 * --token or OCRPOOL_TOKEN and only ever travels in the Authorization header.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/options.h"
#include "doc/doc.h"
#include "util/fs.h"

#define MAX_JSON_BYTES (16u << 20)

typedef struct client_s {
  const char *server;
  char auth[200];
  CURL *curl;
} client_t;

typedef struct buf_s {
  char *data;
  size_t len;
  FILE *file; /* results stream here instead */
} buf_t;

static size_t on_data(char *p, size_t size, size_t n, void *cls) {
  buf_t *b = cls;
  size_t len = size * n;
  if (b->file != NULL)
    return fwrite(p, 1, len, b->file);
  if (b->len + len > MAX_JSON_BYTES)
    return 0; /* an answer this large is not ours: stop */
  char *nd = realloc(b->data, b->len + len + 1);
  if (nd == NULL)
    return 0;
  memcpy(nd + b->len, p, len);
  b->data = nd;
  b->len += len;
  b->data[b->len] = '\0';
  return len;
}

static long retry_after_s;

static size_t on_header(char *p, size_t size, size_t n, void *cls) {
  (void)cls;
  if (strncasecmp(p, "Retry-After:", 12) == 0)
    retry_after_s = strtol(p + 12, NULL, 10);
  return size * n;
}

/* One request. Returns the HTTP status (0 on a connection failure, with err set). */
static long request(client_t *c, const char *method, const char *path, FILE *upload, curl_off_t upload_len,
                    const char *content_type, buf_t *out, char *err, size_t err_len) {
  char *url = NULL;
  if (asprintf(&url, "%s%s", c->server, path) < 0) {
    snprintf(err, err_len, "out of memory");
    return 0;
  }
  curl_easy_reset(c->curl);
  struct curl_slist *headers = NULL;
  if (c->auth[0] != '\0')
    headers = curl_slist_append(headers, c->auth);
  if (content_type != NULL) {
    char h[128];
    snprintf(h, sizeof h, "Content-Type: %s", content_type);
    headers = curl_slist_append(headers, h);
  }
  curl_easy_setopt(c->curl, CURLOPT_URL, url);
  curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
  if (upload != NULL) {
    curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(c->curl, CURLOPT_READDATA, upload); /* streamed from disk by fread */
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, upload_len);
  }
  retry_after_s = 0;
  CURLcode rc = curl_easy_perform(c->curl);
  long status = 0;
  if (rc == CURLE_OK)
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
  else
    snprintf(err, err_len, "cannot reach the server at %s: %s", c->server, curl_easy_strerror(rc));
  curl_slist_free_all(headers);
  free(url);
  return status;
}

/* The problem's detail, or the status. */
static void problem_detail(const buf_t *b, long status, char *out, size_t len) {
  json_error_t je;
  json_t *j = b->data ? json_loads(b->data, 0, &je) : NULL;
  const char *detail = json_string_value(json_object_get(j, "detail"));
  if (detail != NULL)
    snprintf(out, len, "%s", detail);
  else
    snprintf(out, len, "the server answered %ld", status);
  json_decref(j);
}

static int status_exit(long status) {
  if (status == 401 || status == 403 || status == 400 || status == 404)
    return OP_EXIT_USAGE;
  if (status == 413 || status == 415 || status == 422)
    return OP_EXIT_BADINPUT;
  return OP_EXIT_INTERNAL;
}

/* Appends name=value, URL-escaped, to the query *q (malloc'd, may be NULL at
 * first). No fixed buffer: a long value must reach the server whole, for it
 * to refuse or take, never cut here. -1 when out of memory. */
static int append_param(char **q, CURL *curl, const char *name, const char *value) {
  char *escaped = curl_easy_escape(curl, value, 0);
  char *longer = NULL;
  int rc = escaped != NULL ? asprintf(&longer, "%s%s%s=%s", *q ? *q : "", *q ? "&" : "", name, escaped) : -1;
  curl_free(escaped);
  if (rc < 0)
    return -1;
  free(*q);
  *q = longer;
  return 0;
}

static const char *content_type_of(const char *path) {
  unsigned char head[1024];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(head, 1, sizeof head, f) : 0;
  if (f)
    fclose(f);
  switch (op_doc_sniff(head, n)) {
  case OP_DOC_PNG:
    return "image/png";
  case OP_DOC_JPEG:
    return "image/jpeg";
  case OP_DOC_TIFF:
    return "image/tiff";
  case OP_DOC_PDF:
    return "application/pdf";
  default:
    return "application/octet-stream";
  }
}

static int client_init(client_t *c, const char *server, const char *token) {
  memset(c, 0, sizeof *c);
  c->server = server ? server : getenv("OCRPOOL_SERVER") ? getenv("OCRPOOL_SERVER") : "http://127.0.0.1:8080";
  token = token ? token : getenv("OCRPOOL_TOKEN");
  if (token != NULL)
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", token);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  c->curl = curl_easy_init();
  return c->curl ? 0 : -1;
}

static void client_dispose(client_t *c) {
  curl_easy_cleanup(c->curl);
  curl_global_cleanup();
}

/* Fetches a task as JSON; NULL with a message on failure. */
static json_t *get_task(client_t *c, const char *id, long *status, char *err, size_t err_len) {
  char path[128];
  buf_t b = {0};
  snprintf(path, sizeof path, "/v1/tasks/%s", id);
  *status = request(c, "GET", path, NULL, 0, NULL, &b, err, err_len);
  json_error_t je;
  json_t *j = *status == 200 && b.data ? json_loads(b.data, 0, &je) : NULL;
  if (j == NULL && *status != 0)
    problem_detail(&b, *status, err, err_len);
  free(b.data);
  return j;
}

static int write_result(client_t *c, const char *id, op_format_t fmt, const char *dest, char *err, size_t len) {
  char path[160];
  char *tmp = NULL;
  snprintf(path, sizeof path, "/v1/tasks/%s/result?format=%s", id, op_format_name(fmt));
  FILE *f = dest != NULL ? op_atomic_create(dest, &tmp) : stdout;
  if (f == NULL) {
    snprintf(err, len, "cannot write %.300s: %s", dest, strerror(errno));
    return -1;
  }
  buf_t b = {.file = f};
  long status = request(c, "GET", path, NULL, 0, NULL, &b, err, len);
  int rc = status == 200 ? 0 : -1;
  if (status != 200 && status != 0)
    snprintf(err, len, "fetching the %s result: the server answered %ld", op_format_name(fmt), status);
  if (dest != NULL)
    rc = op_atomic_finish(f, tmp, dest, rc == 0);
  return rc;
}

static void usage_submit(FILE *out) {
  fputs("Usage: ocrpool submit FILE... [OPTIONS]\n"
        "\n"
        "Send documents to a running `ocrpool serve`. Without --wait, prints `ID<TAB>FILE` per file.\n"
        "\n"
        "  --server URL        the server (default $OCRPOOL_SERVER, else http://127.0.0.1:8080)\n"
        "  --token T           bearer token (default $OCRPOOL_TOKEN)\n"
        "  -f, --format LIST   txt, hocr, tsv, alto, json, pdf (default txt)\n"
        "  -l, --lang LANGS    --psm N  --dpi N  --pages LIST  --rotate-pages  --priority 0-9\n"
        "  --wait              wait for the results (progress bar on a terminal) and write them\n"
        "  -o, --output PATH   with --wait: the output file, or a directory for several files\n"
        "Exit status as `ocrpool ocr`: 0 done, 1 server unreachable or internal, 2 usage or auth,\n"
        "3 bad input, 4 OCR failure.\n",
        out);
}

/* ---- submit ---- */

enum { O_SERVER = 256, O_TOKEN, O_PSM, O_DPI, O_PAGES, O_ROTATE, O_PRIORITY, O_WAIT };

static const struct option submit_longopts[] = {{"server", required_argument, NULL, O_SERVER},
                                                {"token", required_argument, NULL, O_TOKEN},
                                                {"format", required_argument, NULL, 'f'},
                                                {"lang", required_argument, NULL, 'l'},
                                                {"psm", required_argument, NULL, O_PSM},
                                                {"dpi", required_argument, NULL, O_DPI},
                                                {"pages", required_argument, NULL, O_PAGES},
                                                {"rotate-pages", no_argument, NULL, O_ROTATE},
                                                {"priority", required_argument, NULL, O_PRIORITY},
                                                {"wait", no_argument, NULL, O_WAIT},
                                                {"output", required_argument, NULL, 'o'},
                                                {"help", no_argument, NULL, 'h'},
                                                {NULL, 0, NULL, 0}};

/* The task options submit sends, by their codec key (core/options.h), in
 * the order they go into the query, each with its flag. */
static const struct {
  const char *key;
  int flag;
} sent_options[] = {{"format", 'f'},
                    {"lang", 'l'},
                    {"psm", O_PSM},
                    {"dpi", O_DPI},
                    {"pages", O_PAGES},
                    {"priority", O_PRIORITY},
                    {"rotate_pages", O_ROTATE}};

#define N_SENT (sizeof sent_options / sizeof sent_options[0])
#define GO_ON (-1)

typedef struct submit_s {
  const char *server, *token, *out;
  int wait;
  const char *values[N_SENT]; /* as given, NULL when not */
  unsigned formats;
  char **files;
  int n_files;
  char (*ids)[64]; /* the server's id for each file, "" when it was not taken */
} submit_t;

/* Reads the command line into s and checks the task options here, with the
 * server's own codec, so a bad one needs no round trip. GO_ON, or the exit
 * status (after --help, or a usage error printed). */
static int parse_submit_args(int argc, char **argv, submit_t *s) {
  op_task_opts_t opts;
  op_task_opts_init(&opts);
  op_error_t e;
  int c, rc = GO_ON;
  s->values[0] = "txt";
  optind = 1;
  while (rc == GO_ON && (c = getopt_long(argc, argv, "f:l:o:h", submit_longopts, NULL)) != -1) {
    size_t i = 0;
    while (i < N_SENT && sent_options[i].flag != c)
      i++;
    if (i < N_SENT) {
      s->values[i] = c == O_ROTATE ? "true" : optarg;
      continue;
    }
    switch (c) {
    case O_SERVER:
      s->server = optarg;
      break;
    case O_TOKEN:
      s->token = optarg;
      break;
    case O_WAIT:
      s->wait = 1;
      break;
    case 'o':
      s->out = optarg;
      break;
    case 'h':
      usage_submit(stdout);
      rc = OP_EXIT_OK;
      break;
    default:
      fputs("Try `ocrpool submit --help`.\n", stderr);
      rc = OP_EXIT_USAGE;
      break;
    }
  }
  for (size_t i = 0; rc == GO_ON && i < N_SENT; i++) {
    const char *v = s->values[i];
    if (v == NULL)
      continue;
    if (strcmp(sent_options[i].key, "pages") == 0 && strlen(v) > OP_TASK_PAGES_HTTP_MAX_LEN)
      op_error_set(&e, OP_EUSAGE, "bad_options", "pages is %zu characters long, over the limit of %d", strlen(v),
                   OP_TASK_PAGES_HTTP_MAX_LEN);
    else if (op_task_opts_set(&opts, sent_options[i].key, v, &e) == 0)
      continue;
    const char *flag = "?";
    for (const struct option *o = submit_longopts; o->name != NULL; o++)
      if (o->val == sent_options[i].flag)
        flag = o->name;
    fprintf(stderr, "ocrpool submit: --%s: %s\n", flag, e.message);
    rc = e.code == OP_ENOMEM ? OP_EXIT_INTERNAL : OP_EXIT_USAGE;
  }
  s->formats = opts.formats;
  op_task_opts_dispose(&opts);
  s->files = argv + optind;
  s->n_files = argc - optind;
  if (rc == GO_ON &&
      (s->n_files <= 0 || (s->wait && s->out == NULL && (s->n_files > 1 || __builtin_popcount(s->formats) > 1)))) {
    fputs(s->n_files <= 0 ? "ocrpool submit: no input file\n"
                          : "ocrpool submit: several files or formats need -o DIR with --wait\n",
          stderr);
    rc = OP_EXIT_USAGE;
  }
  return rc;
}

/* Posts file i with the query, retrying while the server answers 429, and
 * keeps its id. Returns the file's exit status (0 when taken). */
static int submit_file(client_t *cl, submit_t *s, int i, const char *query) {
  const char *file = s->files[i];
  char err[512];
  FILE *f = fopen(file, "rb");
  struct stat st;
  if (f == NULL || fstat(fileno(f), &st) < 0) {
    fprintf(stderr, "ocrpool: %s: %s\n", file, strerror(errno));
    if (f)
      fclose(f);
    return OP_EXIT_BADINPUT;
  }
  char *path = NULL;
  char *name = curl_easy_escape(cl->curl, strrchr(file, '/') ? strrchr(file, '/') + 1 : file, 0);
  if (name == NULL || asprintf(&path, "/v1/tasks?%s&name=%s", query, name) < 0)
    path = NULL;
  curl_free(name);
  long status = 0;
  buf_t b = {0};
  snprintf(err, sizeof err, "out of memory");
  for (int attempt = 0; path != NULL && attempt < 20; attempt++) {
    free(b.data);
    b = (buf_t){0};
    rewind(f);
    status = request(cl, "POST", path, f, (curl_off_t)st.st_size, content_type_of(file), &b, err, sizeof err);
    if (status != 429)
      break;
    sleep((unsigned)(retry_after_s > 0 && retry_after_s <= 30 ? retry_after_s : 1));
  }
  fclose(f);
  free(path);
  json_error_t je;
  json_t *task = status == 202 && b.data ? json_loads(b.data, 0, &je) : NULL;
  int rc = OP_EXIT_OK;
  if (task == NULL) {
    if (status != 0)
      problem_detail(&b, status, err, sizeof err);
    fprintf(stderr, "ocrpool: %s: %s\n", file, err);
    rc = status == 0 ? OP_EXIT_INTERNAL : status_exit(status);
  } else {
    snprintf(s->ids[i], sizeof s->ids[i], "%s", json_string_value(json_object_get(task, "id")));
    if (!s->wait)
      printf("%s\t%s\n", s->ids[i], file);
  }
  json_decref(task);
  free(b.data);
  return rc;
}

/* Polls the submitted tasks until each has ended, with a progress line on a terminal. */
static void wait_all(client_t *cl, const submit_t *s) {
  int tty = isatty(STDERR_FILENO);
  char err[512];
  for (;;) {
    long done = 0, total = 0, finished = 0, live = 0;
    for (int i = 0; i < s->n_files; i++) {
      if (!s->ids[i][0])
        continue;
      live++;
      long status;
      json_t *t = get_task(cl, s->ids[i], &status, err, sizeof err);
      const char *st = json_string_value(json_object_get(t, "status"));
      done += json_integer_value(json_object_get(t, "pages_done"));
      total += json_integer_value(json_object_get(t, "pages_total"));
      finished +=
          st == NULL || strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0;
      json_decref(t);
    }
    if (tty && total > 0)
      fprintf(stderr, "\r%ld/%ld pages, %ld/%ld tasks done ", done, total, finished, live);
    if (finished == live)
      break;
    struct timespec nap = {0, 500 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  if (tty)
    fputc('\n', stderr);
}

/* Reports how file i's task ended and writes its results where -o says.
 * Returns the file's exit status. */
static int fetch_results(client_t *cl, const submit_t *s, int i) {
  const char *file = s->files[i];
  char err[512];
  long status;
  int rc = OP_EXIT_OK;
  json_t *t = get_task(cl, s->ids[i], &status, err, sizeof err);
  const char *st = json_string_value(json_object_get(t, "status"));
  if (st == NULL || strcmp(st, "succeeded") != 0) {
    const char *why = json_string_value(json_object_get(t, "error"));
    const char *reason = json_string_value(json_object_get(t, "failure_reason"));
    fprintf(stderr, "ocrpool: %s: %s\n", file, why ? why : err);
    rc = reason && strcmp(reason, "bad_input") == 0 ? OP_EXIT_BADINPUT : OP_EXIT_OCRFAIL;
  }
  int several = s->n_files > 1 || __builtin_popcount(s->formats) > 1;
  for (unsigned fmt = 1; st != NULL && json_integer_value(json_object_get(t, "pages_done")) > 0 && fmt <= OP_FMT_PDF;
       fmt <<= 1) {
    if (!(s->formats & fmt))
      continue;
    char dest[4096];
    const char *d = s->out;
    if (s->out != NULL && several) {
      const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
      const char *dot = strrchr(base, '.');
      mkdir(s->out, 0777);
      snprintf(dest, sizeof dest, "%s/%.*s.%s", s->out, dot && dot != base ? (int)(dot - base) : (int)strlen(base),
               base, op_format_ext((op_format_t)fmt));
      d = dest;
    }
    if (write_result(cl, s->ids[i], (op_format_t)fmt, d, err, sizeof err) < 0) {
      fprintf(stderr, "ocrpool: %s: %s\n", file, err);
      rc = OP_EXIT_INTERNAL;
    }
  }
  json_decref(t);
  return rc;
}

/* Folds one file's exit status into the command's: internal errors first, else the worst. */
static void merge_status(int *exit_status, int file_status) {
  if (file_status == OP_EXIT_INTERNAL || (*exit_status != OP_EXIT_INTERNAL && file_status > *exit_status))
    *exit_status = file_status;
}

int op_cli_submit(int argc, char **argv) {
  submit_t s;
  memset(&s, 0, sizeof s);
  int exit_status = parse_submit_args(argc, argv, &s);
  if (exit_status != GO_ON)
    return exit_status;
  exit_status = OP_EXIT_OK;
  client_t cl;
  if (client_init(&cl, s.server, s.token) < 0)
    return OP_EXIT_INTERNAL;
  char *query = NULL;
  for (size_t i = 0; i < N_SENT; i++)
    if (s.values[i] != NULL && append_param(&query, cl.curl, sent_options[i].key, s.values[i]) < 0)
      exit_status = OP_EXIT_INTERNAL;
  s.ids = calloc((size_t)s.n_files, sizeof *s.ids);
  if (s.ids == NULL || exit_status != OP_EXIT_OK) {
    fputs("ocrpool submit: out of memory\n", stderr);
    exit_status = OP_EXIT_INTERNAL;
    goto out;
  }
  for (int i = 0; i < s.n_files; i++)
    merge_status(&exit_status, submit_file(&cl, &s, i, query));
  if (s.wait) {
    wait_all(&cl, &s);
    for (int i = 0; i < s.n_files; i++)
      if (s.ids[i][0])
        merge_status(&exit_status, fetch_results(&cl, &s, i));
  }
out:
  free(query);
  free(s.ids);
  client_dispose(&cl);
  return exit_status;
}

int op_cli_status(int argc, char **argv) {
  static const struct option longopts[] = {{"server", required_argument, NULL, 's'},
                                           {"token", required_argument, NULL, 't'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *server = NULL, *token = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 's')
      server = optarg;
    else if (c == 't')
      token = optarg;
    else if (c == 'h') {
      puts("Usage: ocrpool status [ID] [--server URL] [--token T]\n"
           "Without ID: the 20 newest tasks. With ID: that task as JSON. Unknown ID: exit 2.");
      return OP_EXIT_OK;
    } else {
      return OP_EXIT_USAGE;
    }
  }
  client_t cl;
  if (client_init(&cl, server, token) < 0)
    return OP_EXIT_INTERNAL;
  char err[512];
  long status;
  int rc = OP_EXIT_OK;
  if (optind < argc) {
    json_t *t = get_task(&cl, argv[optind], &status, err, sizeof err);
    if (t == NULL) {
      fprintf(stderr, "ocrpool: %s\n", err);
      rc = status == 0 ? OP_EXIT_INTERNAL : status_exit(status);
    } else {
      json_dumpf(t, stdout, JSON_INDENT(2));
      putchar('\n');
    }
    json_decref(t);
  } else {
    buf_t b = {0};
    status = request(&cl, "GET", "/v1/tasks?limit=20", NULL, 0, NULL, &b, err, sizeof err);
    json_error_t je;
    json_t *list = status == 200 && b.data ? json_loads(b.data, 0, &je) : NULL;
    if (list == NULL) {
      if (status != 0)
        problem_detail(&b, status, err, sizeof err);
      fprintf(stderr, "ocrpool: %s\n", err);
      rc = status == 0 ? OP_EXIT_INTERNAL : status_exit(status);
    } else {
      printf("%-32s  %-9s  %9s  %-24s  %s\n", "ID", "STATUS", "PAGES", "CREATED", "TITLE");
      size_t i;
      json_t *t;
      json_array_foreach(json_object_get(list, "tasks"), i, t) {
        char pages[24];
        snprintf(pages, sizeof pages, "%lld/%lld", (long long)json_integer_value(json_object_get(t, "pages_done")),
                 (long long)json_integer_value(json_object_get(t, "pages_total")));
        const char *title = json_string_value(json_object_get(t, "title"));
        printf("%-32s  %-9s  %9s  %-24s  %s\n", json_string_value(json_object_get(t, "id")),
               json_string_value(json_object_get(t, "status")), pages,
               json_string_value(json_object_get(t, "created_at")), title ? title : "");
      }
    }
    json_decref(list);
    free(b.data);
  }
  client_dispose(&cl);
  return rc;
}
