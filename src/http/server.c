/*
 * server.c: the HTTP API's routes (docs/api.md) on libmicrohttpd.
 *
 * Each connection has its own thread. libmicrohttpd calls the access handler
 * once with the headers, then once per piece of body, then once more at the
 * end. Everything that can be refused without the body (authentication, a
 * too-large Content-Length, a full queue, shutdown) is answered on the first
 * call, so the body is never read. Uploads go straight into the new task's
 * directory under a name the server makes; the task is recorded only when the
 * whole body has arrived and its type is known.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/options.h"
#include "doc/doc.h"
#include "http/auth.h"
#include "http/dashboard.h"
#include "http/http.h"
#include "util/fs.h"
#include "util/log.h"

struct op_http_s {
  struct MHD_Daemon *daemon;
  op_service_t *svc;
  op__tokens_t tokens;
  int auth;
  uint16_t port;
};

enum { REQ_OTHER = 0, REQ_UPLOAD };

/* One request's state across the handler's calls. */
typedef struct req_s {
  int kind;
  int sync; /* POST /v1/ocr */
  int fd;   /* the upload file */
  uint64_t bytes;
  int refused;            /* a response was queued before the body ended */
  unsigned failed_status; /* the body is bad: answer this once it has been read */
  char failed_detail[256];
  struct MHD_PostProcessor *pp;
  json_t *params; /* options from the query string and form fields */
  int got_file;   /* multipart: a "file" field came */
  char id[40];
  char *dir;
  char title[256];
  const op__token_t *token;
} req_t;

/* ---- request counting (GET /metrics) ---- */

/* The request being answered on this thread: every response is queued from
 * within handle(), so its route and method are known where it is counted. */
static __thread op_http_t *t_http;
static __thread char t_route[48];
static __thread const char *t_method;

/* The route template of url, so that ids do not make a series each; "other"
 * for what no route answers. */
static void route_of(const char *url, char *buf, size_t len) {
  static const char *const known[] = {"/",
                                      "/healthz",
                                      "/readyz",
                                      "/metrics",
                                      "/openapi.json",
                                      "/v1/tasks",
                                      "/v1/tasks/metrics",
                                      "/v1/tasks/{id}",
                                      "/v1/tasks/{id}/result",
                                      "/v1/tasks/{id}/events",
                                      "/v1/tasks/{id}/health",
                                      "/v1/ocr",
                                      "/v1/memory",
                                      "/v1/memory/report",
                                      "/v1/memory/reports",
                                      "/v1/memory/reports/{name}",
                                      "/v1/models",
                                      "/v1/models/{name}/load",
                                      "/v1/models/{name}/unload",
                                      NULL};
  char t[160];
  const char *var = strncmp(url, "/v1/tasks/", 10) == 0 && strcmp(url, "/v1/tasks/metrics") != 0 ? "{id}"
                    : strncmp(url, "/v1/models/", 11) == 0                                       ? "{name}"
                    : strncmp(url, "/v1/memory/reports/", 19) == 0                               ? "{name}"
                                                                                                 : NULL;
  if (var != NULL) {
    const char *start = strchr(url + 4, '/');
    if (strncmp(url, "/v1/memory/reports/", 19) == 0)
      start = url + 18;
    const char *rest = strchr(start + 1, '/');
    snprintf(t, sizeof t, "%.*s/%s%s", (int)(start - url), url, var, rest ? rest : "");
  } else {
    snprintf(t, sizeof t, "%s", url);
  }
  for (size_t i = 0; known[i] != NULL; i++) {
    if (strcmp(t, known[i]) == 0) {
      snprintf(buf, len, "%s", known[i]);
      return;
    }
  }
  snprintf(buf, len, "other");
}

static void count_response(unsigned status) {
  if (t_http != NULL && t_method != NULL)
    op_metrics_http(op_service_metrics(t_http->svc), t_route, t_method, status);
}

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                 size_t len, const char *h1, const char *v1) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  if (h1 != NULL)
    MHD_add_response_header(r, h1, v1);
  count_response(status);
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

/* Sends j (taking its reference) with the given Content-Type. */
static enum MHD_Result send_typed_json(struct MHD_Connection *c, unsigned status, const char *type, json_t *j,
                                       const char *h1, const char *v1) {
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (text == NULL)
    return MHD_NO;
  enum MHD_Result ok = send_body(c, status, type, text, strlen(text), h1, v1);
  free(text);
  return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j, const char *h1, const char *v1) {
  return send_typed_json(c, status, "application/json", j, h1, v1);
}

static const char *status_title(unsigned status) {
  switch (status) {
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Content Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Internal Server Error";
  }
}

/* An RFC 9457 problem; extra (may be NULL) is merged into the body. */
static enum MHD_Result problem(struct MHD_Connection *c, unsigned status, const char *detail, json_t *extra,
                               const char *h1, const char *v1) {
  json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", status_title(status), "status",
                        (int)status, "detail", detail);
  if (extra != NULL) {
    json_object_update(j, extra);
    json_decref(extra);
  }
  return send_typed_json(c, status, "application/problem+json", j, h1, v1);
}

/* ---- requests ---- */

static void req_free(req_t *q) {
  if (q == NULL)
    return;
  if (q->pp != NULL)
    MHD_destroy_post_processor(q->pp);
  if (q->fd >= 0)
    close(q->fd);
  /* An upload that never became a task leaves nothing behind. */
  if (q->dir != NULL && q->id[0] != '\0')
    op_remove_tree(q->dir);
  free(q->dir);
  json_decref(q->params);
  free(q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)c;
  (void)why;
  req_free(*con_cls);
  *con_cls = NULL;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  json_t *params = cls;
  json_object_set_new(params, key, json_string(value ? value : ""));
  return MHD_YES;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size) {
  (void)kind;
  (void)content_type;
  (void)transfer_encoding;
  req_t *q = cls;
  if (strcmp(key, "file") == 0) {
    if (off == 0 && filename != NULL)
      snprintf(q->title, sizeof q->title, "%s", filename);
    q->got_file = 1;
    q->bytes += size;
    return size == 0 || write_all(q->fd, data, size) == 0 ? MHD_YES : MHD_NO;
  }
  /* A short option value; longer ones are bad options anyway. */
  const char *old = json_string_value(json_object_get(q->params, key));
  char buf[512];
  snprintf(buf, sizeof buf, "%s%.*s", off > 0 && old ? old : "", (int)size, data);
  json_object_set_new(q->params, key, json_string(buf));
  return MHD_YES;
}

/* Turns the request's parameters into the stored options; a sentence on bad
 * ones. The codec (core/options.h) checks each value; what is left here is
 * the API's own: which options a remote user may set at all, the sync
 * route's timeout, and model names, which only the service can resolve. */
static int build_options(op_service_t *svc, json_t *params, int sync, json_t **out, int *priority, char *why,
                         size_t why_len) {
  static const char *const known[] = {"format",   "lang",         "psm",    "dpi",     "pages",
                                      "priority", "rotate_pages", "engine", "timeout", "model"};
  op_task_opts_t opts;
  op_task_opts_init(&opts);
  op_error_t e;
  long timeout_s = 0;
  int rc = -1;
  const char *key;
  json_t *v;
  json_object_foreach(params, key, v) {
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok |= strcmp(key, known[i]) == 0;
    if (!ok || (!sync && strcmp(key, "timeout") == 0)) {
      snprintf(why, why_len, "unknown option \"%s\"", key);
      goto out;
    }
  }
  json_object_foreach(params, key, v) {
    const char *value = json_string_value(v) ? json_string_value(v) : "";
    if (strcmp(key, "timeout") == 0) {
      char *end;
      errno = 0;
      timeout_s = strtol(value, &end, 10);
      if (errno != 0 || end == value || *end != '\0' || timeout_s < 1 || timeout_s > 600) {
        snprintf(why, why_len, "bad timeout \"%.40s\": a whole number from 1 to 600", value);
        goto out;
      }
    } else if (strcmp(key, "pages") == 0 && strlen(value) > OP_TASK_PAGES_HTTP_MAX_LEN) {
      snprintf(why, why_len, "pages is %zu characters long, over the limit of %d", strlen(value),
               OP_TASK_PAGES_HTTP_MAX_LEN);
      goto out;
    } else if (op_task_opts_set(&opts, key, value, &e) < 0) {
      snprintf(why, why_len, "%.250s", e.message);
      goto out;
    }
  }
  if (opts.model_option[0] != '\0') {
    const op_model_policy_t *pol = op_service_model(svc, opts.model_option);
    if (pol == NULL) {
      snprintf(why, why_len, "no model named \"%.60s\" is declared (see GET /v1/models)", opts.model_option);
      goto out;
    }
    if (json_object_get(params, "engine") != NULL || json_object_get(params, "lang") != NULL) {
      snprintf(why, why_len, "model names its engine and languages: give model, or engine and lang, not both");
      goto out;
    }
    if (strcmp(pol->engine, "null") == 0 && (opts.formats & OP_FMT_PDF)) {
      snprintf(why, why_len, "the null engine produces no pdf");
      goto out;
    }
    snprintf(opts.model_option, sizeof opts.model_option, "%s", pol->name);
  }
  if (op_task_opts_check(&opts, &e) < 0) {
    snprintf(why, why_len, "%.250s", e.message);
    goto out;
  }
  json_t *o = op_task_opts_to_json(&opts);
  if (o == NULL || (timeout_s > 0 && json_object_set_new(o, "timeout", json_integer(timeout_s)) < 0)) {
    json_decref(o);
    snprintf(why, why_len, "out of memory");
    goto out;
  }
  *priority = opts.priority;
  *out = o;
  rc = 0;
out:
  op_task_opts_dispose(&opts);
  return rc;
}

/* ---- routes ---- */

static int visible(const op_http_t *h, const req_t *q, const op_task_row_t *row) {
  return !h->auth || q->token->admin || strcmp(row->owner, q->token->name) == 0;
}

/* Reads a task with a pooled store connection. */
static int fetch_task(op_http_t *h, const char *id, op_task_row_t *row, op_error_t *e) {
  op_store_t *st = NULL;
  int rc = op_service_store_get(h->svc, &st, e);
  if (rc == 0) {
    rc = op_store_task_get(st, id, row, e);
    op_service_store_put(h->svc, st);
  }
  return rc;
}

/* Reads a task the caller may see; answers 404 (or 500) itself when not. */
static int load_task(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id, op_task_row_t *row,
                     enum MHD_Result *answered) {
  op_error_t e;
  int rc = fetch_task(h, id, row, &e);
  if (rc == 0 && visible(h, q, row))
    return 0;
  char detail[96];
  snprintf(detail, sizeof detail, "no task %.40s", id);
  *answered = rc == 0 || rc == OP_ENOTFOUND ? problem(c, 404, detail, NULL, NULL, NULL)
                                            : problem(c, 500, e.message, NULL, NULL, NULL);
  return -1;
}

static int finished(const op_task_row_t *row) {
  return strcmp(row->status, "succeeded") == 0 || strcmp(row->status, "failed") == 0 ||
         strcmp(row->status, "cancelled") == 0;
}

static int wants_format(const op_task_row_t *row, op_format_t fmt) {
  json_error_t je;
  json_t *o = json_loads(row->options, 0, &je);
  unsigned mask = 0;
  const char *names = json_string_value(json_object_get(o, "format"));
  if (names != NULL)
    op_format_parse(names, &mask, NULL);
  json_decref(o);
  return (mask & fmt) != 0;
}

static op_format_t first_format(const op_task_row_t *row) {
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (wants_format(row, (op_format_t)f))
      return (op_format_t)f;
  return OP_FMT_TXT;
}

static enum MHD_Result send_result(op_http_t *h, struct MHD_Connection *c, const op_task_row_t *row, op_format_t fmt) {
  char *dir = op_service_task_dir(h->svc, row->id);
  char path[1024];
  snprintf(path, sizeof path, "%s/result.%s", dir ? dir : ".", op_format_ext(fmt));
  free(dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0)
      close(fd);
    return problem(c, 404, "the task has no result in this format (no page succeeded)", NULL, NULL, NULL);
  }
  struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
  if (r == NULL) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", op_format_content_type(fmt));
  count_response(200);
  enum MHD_Result ok = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result get_result(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id) {
  op_task_row_t row;
  enum MHD_Result answered;
  if (load_task(h, c, q, id, &row, &answered) < 0)
    return answered;
  const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
  op_format_t fmt = name ? op_format_from_name(name) : first_format(&row);
  if (fmt == 0)
    return problem(c, 400, "unknown format (known: txt, hocr, tsv, alto, json, pdf)", NULL, NULL, NULL);
  if (!wants_format(&row, fmt))
    return problem(c, 404, "the task was not asked for this format", NULL, NULL, NULL);
  if (!finished(&row))
    return problem(c, 409, "the task has not finished", json_pack("{s:s}", "task_status", row.status), NULL, NULL);
  return send_result(h, c, &row, fmt);
}

/* The task (as load_task) and its events, read with a pooled store
 * connection; -1 with *answered set when either could not be had. */
static int load_task_events(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id, op_task_row_t *row,
                            json_t **events, enum MHD_Result *answered) {
  if (load_task(h, c, q, id, row, answered) < 0)
    return -1;
  op_store_t *st = NULL;
  op_error_t e;
  int rc = op_service_store_get(h->svc, &st, &e);
  if (rc == 0) {
    rc = op_store_events(st, id, events, &e);
    op_service_store_put(h->svc, st);
  }
  if (rc < 0) {
    *answered = problem(c, 500, e.message, NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

static enum MHD_Result get_events(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id) {
  op_task_row_t row;
  json_t *events = NULL;
  enum MHD_Result answered;
  if (load_task_events(h, c, q, id, &row, &events, &answered) < 0)
    return answered;
  size_t i;
  json_t *ev;
  json_array_foreach(events, i, ev) {
    json_object_set_new(ev, "time", op_time_json(json_number_value(json_object_get(ev, "time"))));
  }
  return send_json(c, 200, json_pack("{s:o}", "events", events), NULL, NULL);
}

/* GET /v1/tasks/{id}/health: how the task is doing, in one object: status,
 * memory, processing time, device, and the warnings its events hold. */
static enum MHD_Result task_health(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id) {
  op_task_row_t row;
  json_t *events = NULL;
  enum MHD_Result answered;
  if (load_task_events(h, c, q, id, &row, &events, &answered) < 0)
    return answered;
  json_t *warnings = json_array();
  size_t i;
  json_t *ev;
  json_array_foreach(events, i, ev) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type != NULL && (strcmp(type, "memory_warning") == 0 || strcmp(type, "waiting_for_memory") == 0 ||
                         strcmp(type, "retried") == 0 || strcmp(type, "page_failed") == 0))
      json_array_append_new(warnings, json_pack("{s:s, s:o, s:O}", "type", type, "time",
                                                op_time_json(json_number_value(json_object_get(ev, "time"))), "details",
                                                json_object_get(ev, "details")));
  }
  json_decref(events);
  double end = row.finished_at > 0 ? row.finished_at : op_wall_time_s();
  int healthy = strcmp(row.status, "failed") != 0 && json_array_size(warnings) == 0;
  return send_json(c, 200,
                   json_pack("{s:s, s:s, s:b, s:i, s:i, s:f, s:o, s:{s:I, s:I}, s:o}", "id", row.id, "status",
                             row.status, "healthy", healthy, "pages_total", row.pages_total, "pages_done",
                             row.pages_done, "processing_seconds", row.started_at > 0 ? end - row.started_at : 0.0,
                             "device", row.device[0] ? json_string(row.device) : json_null(), "memory",
                             "estimated_bytes", (json_int_t)row.estimated_memory_bytes, "peak_bytes",
                             (json_int_t)row.peak_memory_bytes, "warnings", warnings),
                   NULL, NULL);
}

static enum MHD_Result list_tasks(op_http_t *h, struct MHD_Connection *c, req_t *q) {
  const char *status = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "status");
  const char *limit_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
  const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
  static const char *const statuses[] = {"queued", "running", "succeeded", "failed", "cancelled"};
  int ok = status == NULL;
  for (size_t i = 0; !ok && i < 5; i++)
    ok = strcmp(status, statuses[i]) == 0;
  if (!ok)
    return problem(c, 400, "bad status (queued, running, succeeded, failed, cancelled)", NULL, NULL, NULL);
  long limit = 50;
  if (limit_s != NULL) {
    char *end;
    limit = strtol(limit_s, &end, 10);
    if (end == limit_s || *end != '\0' || limit < 1 || limit > 1000)
      return problem(c, 400, "bad limit: 1 to 1000", NULL, NULL, NULL);
  }
  op_store_t *st = NULL;
  op_error_t e;
  op_task_row_t *rows = NULL;
  size_t n = 0;
  int rc = op_service_store_get(h->svc, &st, &e);
  if (rc == 0) {
    const char *owner = h->auth && !q->token->admin ? q->token->name : NULL;
    rc = op_store_task_list(st, status ? status : "", owner, after ? after : "", (int)limit, &rows, &n, &e);
    op_service_store_put(h->svc, st);
  }
  if (rc == OP_ENOTFOUND)
    return problem(c, 400, "bad after: no such task", NULL, NULL, NULL);
  if (rc < 0)
    return problem(c, 500, e.message, NULL, NULL, NULL);
  json_t *tasks = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(tasks, op_service_task_json(&rows[i]));
  json_t *next = n == (size_t)limit ? json_string(rows[n - 1].id) : json_null();
  free(rows);
  return send_json(c, 200, json_pack("{s:o, s:o}", "tasks", tasks, "next", next), NULL, NULL);
}

/* Waits for a task to end, up to timeout_s; returns 0 when it ended. */
static int wait_finished(op_http_t *h, const char *id, double timeout_s, op_task_row_t *row) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    op_error_t e;
    unsigned long seen = op_service_finished_count(h->svc); /* before the read: no end falls between */
    if (fetch_task(h, id, row, &e) == 0 && finished(row))
      return 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 > timeout_s)
      return -1;
    /* Woken by any task's end here; the 50 ms cap covers a task another node finishes. */
    op_service_wait_finished(h->svc, seen, 50);
  }
}

static enum MHD_Result cancel_task(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *id) {
  op_task_row_t row;
  enum MHD_Result answered;
  if (load_task(h, c, q, id, &row, &answered) < 0)
    return answered;
  if (finished(&row))
    return problem(c, 409, "the task has already finished", json_pack("{s:s}", "task_status", row.status), NULL, NULL);
  op_service_cancel(h->svc, id);
  if (wait_finished(h, id, 10, &row) < 0)
    return send_json(c, 202, op_service_task_json(&row), NULL, NULL);
  return send_json(c, 200, op_service_task_json(&row), NULL, NULL);
}

/* ---- health ---- */

/* Ready: taking work. Not while draining, nor while memory is critical with
 * nothing left to free, nor while the store does not answer. */
static enum MHD_Result readyz(op_http_t *h, struct MHD_Connection *c) {
  if (op_service_draining(h->svc))
    return problem(c, 503, "draining: the server is shutting down", NULL, NULL, NULL);
  if (!op_service_ready(h->svc))
    return problem(c, 503, "starting: no worker has started yet", NULL, "Retry-After", "1");
  if (op_service_refusing(h->svc))
    return problem(c, 503, "memory is critical and nothing is left to free", NULL, "Retry-After", "5");
  op_store_t *st = NULL;
  op_error_t e;
  int queued = 0, rc = op_service_store_get(h->svc, &st, &e);
  if (rc == 0) {
    rc = op_store_count_status(st, "queued", &queued, &e);
    op_service_store_put(h->svc, st);
  }
  if (rc < 0) {
    char detail[400];
    snprintf(detail, sizeof detail, "the store does not answer: %.360s", e.message);
    return problem(c, 503, detail, NULL, "Retry-After", "5");
  }
  return send_json(c, 200, json_pack("{s:s, s:i}", "status", "ready", "queued", queued), NULL, NULL);
}

/* ---- memory reports ---- */

static enum MHD_Result memory_reports(op_http_t *h, struct MHD_Connection *c, req_t *q, const char *url,
                                      const char *method) {
  if (strcmp(url, "/v1/memory/report") == 0) {
    if (strcmp(method, "POST") != 0)
      return problem(c, 405, "use POST", NULL, "Allow", "POST");
    if (h->auth && !q->token->admin)
      return problem(c, 403, "memory reports need an admin token", NULL, NULL, NULL);
    op_service_report_request(h->svc);
    return send_json(c, 202, json_pack("{s:s}", "report", "requested"), "Location", "/v1/memory/reports");
  }
  if (strcmp(method, "GET") != 0)
    return problem(c, 405, "use GET", NULL, "Allow", "GET");
  if (strcmp(url, "/v1/memory/reports") == 0)
    return send_json(c, 200, op_service_reports_json(h->svc), NULL, NULL);
  char *path = op_service_report_path(h->svc, url + strlen("/v1/memory/reports/"));
  json_t *report = path ? json_load_file(path, 0, NULL) : NULL;
  free(path);
  return report ? send_json(c, 200, report, NULL, NULL)
                : problem(c, 404, "no such memory report (see GET /v1/memory/reports)", NULL, NULL, NULL);
}

/* ---- uploads ---- */

static enum MHD_Result start_upload(op_http_t *h, struct MHD_Connection *c, req_t *q) {
  const op_service_config_t *cfg = op_service_config(h->svc);
  if (op_service_draining(h->svc))
    return q->refused = 1, problem(c, 503, "the server is shutting down", NULL, "Retry-After", "10");
  if (op_service_refusing(h->svc))
    return q->refused = 1, problem(c, 503,
                                   "memory is critical and nothing is left to free; work already accepted goes on, "
                                   "try again later (see GET /v1/memory)",
                                   NULL, "Retry-After", "5");
  const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != NULL && strtoull(length, NULL, 10) > cfg->limits.max_input_bytes) {
    char detail[160];
    snprintf(detail, sizeof detail, "the body is %s bytes, over the limit of %llu", length,
             (unsigned long long)cfg->limits.max_input_bytes);
    return q->refused = 1, problem(c, 413, detail, NULL, NULL, NULL);
  }
  op_store_t *st = NULL;
  op_error_t e;
  int queued = 0;
  if (op_service_store_get(h->svc, &st, &e) == 0) {
    op_store_count_status(st, "queued", &queued, &e);
    op_service_store_put(h->svc, st);
  }
  if ((unsigned)queued >= cfg->max_queue) {
    char detail[128];
    snprintf(detail, sizeof detail, "the queue is full (%d tasks waiting); try again later", queued);
    return q->refused = 1, problem(c, 429, detail, NULL, "Retry-After", "2");
  }
  q->params = json_object();
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, q->params);
  op_service_new_id(q->id);
  q->dir = op_service_task_dir(h->svc, q->id);
  char path[1024];
  snprintf(path, sizeof path, "%s/input", q->dir ? q->dir : "");
  if (q->dir == NULL || mkdir(q->dir, 0700) < 0 ||
      (q->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
    return q->refused = 1, problem(c, 500, "cannot store the upload", NULL, NULL, NULL);
  const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  /* Only multipart bodies are forms; anything else is the document itself
   * (curl --data-binary sends files as x-www-form-urlencoded by default). */
  if (type != NULL && strncasecmp(type, "multipart/form-data", 19) == 0) {
    q->pp = MHD_create_post_processor(c, 64 * 1024, on_form_field, q);
    if (q->pp == NULL)
      return q->refused = 1, problem(c, 400, "malformed form body (no boundary?)", NULL, NULL, NULL);
  }
  const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
  snprintf(q->title, sizeof q->title, "%s", name ? name : "document");
  json_object_del(q->params, "name");
  return MHD_YES;
}

/* libmicrohttpd takes an answer only before or after the body, so a body
 * found bad while it arrives is drained and answered at its end; one that
 * runs far past the limit without a Content-Length gets its connection cut. */
static enum MHD_Result upload_chunk(op_http_t *h, req_t *q, const char *data, size_t size) {
  const op_service_config_t *cfg = op_service_config(h->svc);
  if (q->failed_status != 0) {
    q->bytes += size;
    return q->bytes > cfg->limits.max_input_bytes + (64u << 20) ? MHD_NO : MHD_YES;
  }
  if (q->pp != NULL) {
    if (MHD_post_process(q->pp, data, size) != MHD_YES) {
      q->failed_status = 400;
      snprintf(q->failed_detail, sizeof q->failed_detail, "malformed multipart body");
    }
  } else {
    q->bytes += size;
    if (q->bytes <= cfg->limits.max_input_bytes && write_all(q->fd, data, size) < 0) {
      q->failed_status = 500;
      snprintf(q->failed_detail, sizeof q->failed_detail, "cannot store the upload");
    }
  }
  if (q->failed_status == 0 && q->bytes > cfg->limits.max_input_bytes) {
    q->failed_status = 413;
    snprintf(q->failed_detail, sizeof q->failed_detail, "the body is over the limit of %llu bytes",
             (unsigned long long)cfg->limits.max_input_bytes);
  }
  return MHD_YES;
}

static enum MHD_Result finish_upload(op_http_t *h, struct MHD_Connection *c, req_t *q) {
  close(q->fd);
  q->fd = -1;
  if (q->failed_status != 0)
    return problem(c, q->failed_status, q->failed_detail, NULL, NULL, NULL);
  if (q->pp != NULL && !q->got_file)
    return problem(c, 400, "the form has no \"file\" field", NULL, NULL, NULL);
  json_t *options = NULL;
  int priority;
  char why[256];
  if (build_options(h->svc, q->params, q->sync, &options, &priority, why, sizeof why) < 0)
    return problem(c, 400, why, NULL, NULL, NULL);
  char path[1024];
  snprintf(path, sizeof path, "%s/input", q->dir);
  op_doc_type_t type;
  op_error_t e;
  if (op_doc_sniff_file(path, &type, NULL, &e) < 0) {
    json_decref(options);
    return problem(c, e.code == OP_EUNSUPPORTED ? 415 : 400, e.message, NULL, NULL, NULL);
  }
  double timeout_s = json_is_integer(json_object_get(options, "timeout"))
                         ? (double)json_integer_value(json_object_get(options, "timeout"))
                         : 60;
  json_object_del(options, "timeout");
  op_task_row_t row;
  memset(&row, 0, sizeof row);
  snprintf(row.id, sizeof row.id, "%s", q->id);
  row.priority = priority;
  snprintf(row.owner, sizeof row.owner, "%s", h->auth ? q->token->name : "");
  snprintf(row.title, sizeof row.title, "%s", q->title);
  snprintf(row.input_type, sizeof row.input_type, "%s", op_doc_type_name(type));
  char *text = json_dumps(options, JSON_COMPACT);
  json_decref(options);
  snprintf(row.options, sizeof row.options, "%s", text ? text : "{}");
  free(text);
  if (op_service_submit(h->svc, &row, &e) < 0)
    return problem(c, 500, e.message, NULL, NULL, NULL);
  q->id[0] = '\0'; /* a task now: its files stay */
  if (!q->sync) {
    char location[96];
    snprintf(location, sizeof location, "/v1/tasks/%s", row.id);
    return send_json(c, 202, op_service_task_json(&row), "Location", location);
  }
  if (wait_finished(h, row.id, timeout_s, &row) < 0)
    return problem(c, 504, "the task did not finish in time; it goes on", json_pack("{s:s}", "id", row.id), NULL, NULL);
  if (strcmp(row.status, "succeeded") != 0)
    return problem(c, strcmp(row.failure_reason, "bad_input") == 0 ? 422 : 500, row.error,
                   json_pack("{s:s, s:s}", "id", row.id, "failure_reason", row.failure_reason), NULL, NULL);
  return send_result(h, c, &row, first_format(&row));
}

/* ---- dispatch ---- */

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
  (void)version;
  op_http_t *h = cls;
  req_t *q = *con_cls;
  t_http = h;
  t_method = method;
  route_of(url, t_route, sizeof t_route);
  if (q == NULL) {
    q = calloc(1, sizeof *q);
    if (q == NULL)
      return MHD_NO;
    q->fd = -1;
    *con_cls = q;
    int upload = strcmp(method, "POST") == 0 && (strcmp(url, "/v1/tasks") == 0 || strcmp(url, "/v1/ocr") == 0);
    if (strncmp(url, "/v1/", 4) == 0 && h->auth) {
      q->token = op__tokens_check(&h->tokens, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
      if (q->token == NULL)
        return q->refused = 1,
               problem(c, 401, "a bearer token is needed", NULL, "WWW-Authenticate", "Bearer realm=\"ocrpool\"");
    }
    if (upload) {
      q->kind = REQ_UPLOAD;
      q->sync = strcmp(url, "/v1/ocr") == 0;
      return start_upload(h, c, q);
    }
    /* Answered on the next call: libmicrohttpd closes the connection after
     * an answer queued on the first (it may have a body still to come), which
     * would cost every request a new connection and thread. */
    return MHD_YES;
  }
  if (q->refused) {
    *upload_data_size = 0; /* the answer is queued; the rest of the body is dropped */
    return MHD_YES;
  }
  if (q->kind == REQ_UPLOAD) {
    if (*upload_data_size > 0) {
      enum MHD_Result r = upload_chunk(h, q, upload_data, *upload_data_size);
      *upload_data_size = 0;
      return r;
    }
    return finish_upload(h, c, q);
  }
  if (*upload_data_size > 0) {
    *upload_data_size = 0; /* bodies of other routes are ignored */
    return MHD_YES;
  }
  if (strcmp(url, "/healthz") == 0)
    return send_json(c, 200, json_pack("{s:s}", "status", "ok"), NULL, NULL);
  if (strcmp(url, "/readyz") == 0)
    return readyz(h, c);
  if (strcmp(url, "/") == 0) {
    if (strcmp(method, "GET") != 0)
      return problem(c, 405, "use GET", NULL, "Allow", "GET");
    return send_body(c, 200, "text/html; charset=utf-8", (const char *)op_dashboard_html, op_dashboard_html_len,
                     "Cache-Control", "no-cache");
  }
  if (strcmp(url, "/metrics") == 0) {
    if (strcmp(method, "GET") != 0)
      return problem(c, 405, "use GET", NULL, "Allow", "GET");
    char *text = op_service_metrics_text(h->svc);
    if (text == NULL)
      return problem(c, 500, "cannot render the metrics", NULL, NULL, NULL);
    enum MHD_Result r = send_body(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), NULL, NULL);
    free(text);
    return r;
  }
  if (strcmp(url, "/openapi.json") == 0)
    return send_json(c, 200, op_http_openapi(), NULL, NULL);
  if (strcmp(url, "/v1/memory") == 0) {
    if (strcmp(method, "GET") != 0)
      return problem(c, 405, "use GET", NULL, "Allow", "GET");
    json_t *m = op_service_memory_json(h->svc);
    const char *history = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "history");
    if (m != NULL && history != NULL && strcmp(history, "0") != 0 && strcmp(history, "false") != 0)
      json_object_set_new(json_array_get(json_object_get(m, "devices"), 0), "history",
                          op_service_memory_history(h->svc));
    return m ? send_json(c, 200, m, NULL, NULL) : problem(c, 503, "memory figures are not ready yet", NULL, NULL, NULL);
  }
  if (strcmp(url, "/v1/memory/report") == 0 || strcmp(url, "/v1/memory/reports") == 0 ||
      strncmp(url, "/v1/memory/reports/", 19) == 0)
    return memory_reports(h, c, q, url, method);
  if (strcmp(url, "/v1/models") == 0) {
    if (strcmp(method, "GET") != 0)
      return problem(c, 405, "use GET", NULL, "Allow", "GET");
    json_t *m = op_service_models_json(h->svc);
    return m ? send_json(c, 200, m, NULL, NULL) : problem(c, 503, "models are not ready yet", NULL, NULL, NULL);
  }
  if (strncmp(url, "/v1/models/", 11) == 0) {
    char name[80];
    const char *rest = url + 11, *slash = strchr(rest, '/');
    if (slash == NULL || (size_t)(slash - rest) >= sizeof name || slash == rest ||
        (strcmp(slash, "/load") != 0 && strcmp(slash, "/unload") != 0))
      return problem(c, 404, "no such route (POST /v1/models/NAME/load or /unload)", NULL, NULL, NULL);
    if (strcmp(method, "POST") != 0)
      return problem(c, 405, "use POST", NULL, "Allow", "POST");
    if (h->auth && !q->token->admin)
      return problem(c, 403, "loading and unloading models needs an admin token", NULL, NULL, NULL);
    memcpy(name, rest, (size_t)(slash - rest));
    name[slash - rest] = '\0';
    int load = strcmp(slash, "/load") == 0;
    int rc = op_service_model_request(h->svc, name, load);
    if (rc == OP_ENOTFOUND)
      return problem(c, 404, "no such model (see GET /v1/models)", NULL, NULL, NULL);
    if (rc < 0)
      return problem(c, 503, "too many model requests at once; try again", NULL, "Retry-After", "1");
    return send_json(c, 202, json_pack("{s:s, s:s}", "model", name, "action", load ? "load" : "unload"), NULL, NULL);
  }
  if (strcmp(url, "/v1/tasks") == 0) {
    if (strcmp(method, "GET") == 0)
      return list_tasks(h, c, q);
    return problem(c, 405, "use GET or POST", NULL, "Allow", "GET, POST");
  }
  if (strcmp(url, "/v1/tasks/metrics") == 0) {
    if (strcmp(method, "GET") != 0)
      return problem(c, 405, "use GET", NULL, "Allow", "GET");
    json_t *m = op_service_tasks_summary(h->svc);
    return m ? send_json(c, 200, m, NULL, NULL) : problem(c, 503, "the store does not answer", NULL, NULL, NULL);
  }
  if (strncmp(url, "/v1/tasks/", 10) == 0) {
    char id[64];
    const char *rest = url + 10;
    size_t len = strcspn(rest, "/");
    if (len == 0 || len >= sizeof id)
      return problem(c, 404, "no such task", NULL, NULL, NULL);
    memcpy(id, rest, len);
    id[len] = '\0';
    const char *sub = rest + len;
    if (*sub == '\0' && strcmp(method, "GET") == 0) {
      op_task_row_t row;
      enum MHD_Result answered;
      if (load_task(h, c, q, id, &row, &answered) < 0)
        return answered;
      return send_json(c, 200, op_service_task_json(&row), NULL, NULL);
    }
    if (*sub == '\0' && strcmp(method, "DELETE") == 0)
      return cancel_task(h, c, q, id);
    if (strcmp(sub, "/result") == 0 && strcmp(method, "GET") == 0)
      return get_result(h, c, q, id);
    if (strcmp(sub, "/events") == 0 && strcmp(method, "GET") == 0)
      return get_events(h, c, q, id);
    if (strcmp(sub, "/health") == 0 && strcmp(method, "GET") == 0)
      return task_health(h, c, q, id);
    return problem(c,
                   strcmp(sub, "") == 0 || strcmp(sub, "/result") == 0 || strcmp(sub, "/events") == 0 ||
                           strcmp(sub, "/health") == 0
                       ? 405
                       : 404,
                   "no such route", NULL, NULL, NULL);
  }
  return problem(c, 404, "no such route (see /openapi.json)", NULL, NULL, NULL);
}

/* ---- life cycle ---- */

void op_http_config_init(op_http_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->listen = "127.0.0.1:8080";
  cfg->max_connections = 256;
}

static int parse_listen(const char *listen, struct sockaddr_in *sa, op_error_t *err) {
  char host[64];
  const char *colon = strrchr(listen, ':');
  if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad --listen \"%s\": want ADDR:PORT", listen);
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (*end != '\0' || port < 0 || port > 65535 || inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) != 1)
    return op_error_set(err, OP_EUSAGE, "bad_options", "bad --listen \"%s\": want an IPv4 ADDR:PORT", listen);
  return 0;
}

int op_http_start(const op_http_config_t *cfg, op_service_t *svc, op_http_t **out, op_error_t *err) {
  *out = NULL;
  struct sockaddr_in sa;
  int rc = parse_listen(cfg->listen, &sa, err);
  if (rc < 0)
    return rc;
  op_http_t *h = calloc(1, sizeof *h);
  if (h == NULL)
    return op_error_set(err, OP_ENOMEM, NULL, "out of memory");
  h->svc = svc;
  if (cfg->tokens_file != NULL) {
    if ((rc = op__tokens_load(cfg->tokens_file, &h->tokens, err)) < 0) {
      free(h);
      return rc;
    }
    h->auth = 1;
  }
  h->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                               NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
                               cfg->max_connections ? cfg->max_connections : 256u, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)120, MHD_OPTION_END);
  if (h->daemon == NULL) {
    op__tokens_dispose(&h->tokens);
    free(h);
    return op_error_set(err, OP_EIO, "internal", "cannot listen on %s (in use, or not an address of this host?)",
                        cfg->listen);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : ntohs(sa.sin_port);
  *out = h;
  return 0;
}

uint16_t op_http_port(const op_http_t *h) {
  return h->port;
}

void op_http_stop(op_http_t *h) {
  if (h == NULL)
    return;
  MHD_stop_daemon(h->daemon);
  op__tokens_dispose(&h->tokens);
  free(h);
}
