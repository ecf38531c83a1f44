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
  char url[2048];
  snprintf(url, sizeof url, "%s%s", c->server, path);
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

static void append_param(char *q, size_t len, CURL *curl, const char *name, const char *value) {
  if (value == NULL)
    return;
  char *escaped = curl_easy_escape(curl, value, 0);
  snprintf(q + strlen(q), len - strlen(q), "%s%s=%s", q[0] ? "&" : "", name, escaped ? escaped : "");
  curl_free(escaped);
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

int op_cli_submit(int argc, char **argv) {
  enum { O_SERVER = 256, O_TOKEN, O_PSM, O_DPI, O_PAGES, O_ROTATE, O_PRIORITY, O_WAIT };
  static const struct option longopts[] = {{"server", required_argument, NULL, O_SERVER},
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
  const char *server = NULL, *token = NULL, *out = NULL, *format = "txt";
  const char *lang = NULL, *psm = NULL, *dpi = NULL, *pages = NULL, *priority = NULL;
  int rotate = 0, wait = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "f:l:o:h", longopts, NULL)) != -1) {
    switch (c) {
    case O_SERVER:
      server = optarg;
      break;
    case O_TOKEN:
      token = optarg;
      break;
    case 'f':
      format = optarg;
      break;
    case 'l':
      lang = optarg;
      break;
    case O_PSM:
      psm = optarg;
      break;
    case O_DPI:
      dpi = optarg;
      break;
    case O_PAGES:
      pages = optarg;
      break;
    case O_ROTATE:
      rotate = 1;
      break;
    case O_PRIORITY:
      priority = optarg;
      break;
    case O_WAIT:
      wait = 1;
      break;
    case 'o':
      out = optarg;
      break;
    case 'h':
      usage_submit(stdout);
      return OP_EXIT_OK;
    default:
      fputs("Try `ocrpool submit --help`.\n", stderr);
      return OP_EXIT_USAGE;
    }
  }
  unsigned formats;
  op_error_t e;
  if (op_format_parse(format, &formats, &e) < 0) {
    fprintf(stderr, "ocrpool submit: %s\n", e.message);
    return OP_EXIT_USAGE;
  }
  int n_files = argc - optind;
  if (n_files <= 0 || (wait && out == NULL && (n_files > 1 || __builtin_popcount(formats) > 1))) {
    fputs(n_files <= 0 ? "ocrpool submit: no input file\n"
                       : "ocrpool submit: several files or formats need -o DIR with --wait\n",
          stderr);
    return OP_EXIT_USAGE;
  }
  client_t cl;
  if (client_init(&cl, server, token) < 0)
    return OP_EXIT_INTERNAL;
  char query[1024] = "";
  append_param(query, sizeof query, cl.curl, "format", format);
  append_param(query, sizeof query, cl.curl, "lang", lang);
  append_param(query, sizeof query, cl.curl, "psm", psm);
  append_param(query, sizeof query, cl.curl, "dpi", dpi);
  append_param(query, sizeof query, cl.curl, "pages", pages);
  append_param(query, sizeof query, cl.curl, "priority", priority);
  append_param(query, sizeof query, cl.curl, "rotate_pages", rotate ? "true" : NULL);

  int exit_status = OP_EXIT_OK;
  char(*ids)[64] = calloc((size_t)n_files, sizeof *ids);
  char err[512];
  for (int i = 0; ids != NULL && i < n_files; i++) {
    const char *file = argv[optind + i];
    FILE *f = fopen(file, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) < 0) {
      fprintf(stderr, "ocrpool: %s: %s\n", file, strerror(errno));
      if (f)
        fclose(f);
      exit_status = OP_EXIT_BADINPUT;
      continue;
    }
    char path[1200];
    char *name = curl_easy_escape(cl.curl, strrchr(file, '/') ? strrchr(file, '/') + 1 : file, 0);
    snprintf(path, sizeof path, "/v1/tasks?%s&name=%s", query, name ? name : "");
    curl_free(name);
    long status = 0;
    buf_t b = {0};
    for (int attempt = 0; attempt < 20; attempt++) {
      free(b.data);
      b = (buf_t){0};
      rewind(f);
      status = request(&cl, "POST", path, f, (curl_off_t)st.st_size, content_type_of(file), &b, err, sizeof err);
      if (status != 429)
        break;
      sleep((unsigned)(retry_after_s > 0 && retry_after_s <= 30 ? retry_after_s : 1));
    }
    fclose(f);
    json_error_t je;
    json_t *task = status == 202 && b.data ? json_loads(b.data, 0, &je) : NULL;
    if (task == NULL) {
      if (status != 0)
        problem_detail(&b, status, err, sizeof err);
      fprintf(stderr, "ocrpool: %s: %s\n", file, err);
      int st_exit = status == 0 ? OP_EXIT_INTERNAL : status_exit(status);
      if (st_exit > exit_status || st_exit == OP_EXIT_INTERNAL)
        exit_status = st_exit;
    } else {
      snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(task, "id")));
      if (!wait)
        printf("%s\t%s\n", ids[i], file);
    }
    json_decref(task);
    free(b.data);
  }
  if (wait && ids != NULL) {
    int tty = isatty(STDERR_FILENO);
    for (;;) {
      long done = 0, total = 0, finished = 0, live = 0;
      for (int i = 0; i < n_files; i++) {
        if (!ids[i][0])
          continue;
        live++;
        long status;
        json_t *t = get_task(&cl, ids[i], &status, err, sizeof err);
        const char *s = json_string_value(json_object_get(t, "status"));
        done += json_integer_value(json_object_get(t, "pages_done"));
        total += json_integer_value(json_object_get(t, "pages_total"));
        finished += s == NULL || strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
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
    for (int i = 0; i < n_files; i++) {
      if (!ids[i][0])
        continue;
      const char *file = argv[optind + i];
      long status;
      json_t *t = get_task(&cl, ids[i], &status, err, sizeof err);
      const char *s = json_string_value(json_object_get(t, "status"));
      if (s == NULL || strcmp(s, "succeeded") != 0) {
        const char *why = json_string_value(json_object_get(t, "error"));
        const char *reason = json_string_value(json_object_get(t, "failure_reason"));
        fprintf(stderr, "ocrpool: %s: %s\n", file, why ? why : err);
        int st_exit = reason && strcmp(reason, "bad_input") == 0 ? OP_EXIT_BADINPUT : OP_EXIT_OCRFAIL;
        if (st_exit > exit_status)
          exit_status = st_exit;
      }
      for (unsigned fmt = 1; s != NULL && json_integer_value(json_object_get(t, "pages_done")) > 0 && fmt <= OP_FMT_PDF;
           fmt <<= 1) {
        if (!(formats & fmt))
          continue;
        char dest[4096];
        const char *d = NULL;
        if (out != NULL && (n_files > 1 || __builtin_popcount(formats) > 1)) {
          const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
          const char *dot = strrchr(base, '.');
          mkdir(out, 0777);
          snprintf(dest, sizeof dest, "%s/%.*s.%s", out, dot && dot != base ? (int)(dot - base) : (int)strlen(base),
                   base, op_format_ext((op_format_t)fmt));
          d = dest;
        } else if (out != NULL) {
          d = out;
        }
        if (write_result(&cl, ids[i], (op_format_t)fmt, d, err, sizeof err) < 0) {
          fprintf(stderr, "ocrpool: %s: %s\n", file, err);
          exit_status = OP_EXIT_INTERNAL;
        }
      }
      json_decref(t);
    }
  }
  free(ids);
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
