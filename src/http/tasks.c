/*
 * tasks.c: the routes that read and cancel tasks (GET and DELETE
 * /v1/tasks/{id} and its result, events and health; the list; the summary),
 * and the helpers POST /v1/ocr shares with them: waiting for a task to end
 * and answering its result. With authentication on, a task is visible only
 * to the token that made it (and to admins); to others it does not exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "util/fs.h"

static int visible(const op__req_t *q, const op_task_row_t *row) {
  return !q->http->auth || q->token->admin || strcmp(row->owner, q->token->name) == 0;
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

/* Reads the task of the path ({id}) if the caller may see it; answers 404
 * (or 500) itself when not. */
static int load_task(op__req_t *q, op_task_row_t *row, enum MHD_Result *answered) {
  op_error_t e;
  int rc = fetch_task(q->http, q->capture, row, &e);
  if (rc == 0 && visible(q, row))
    return 0;
  char detail[96];
  snprintf(detail, sizeof detail, "no task %.40s", q->capture);
  *answered =
      rc == 0 || rc == OP_ENOTFOUND ? op__send_problem(q, 404, detail, NULL, NULL, NULL) : op__send_store_error(q, &e);
  return -1;
}

static int finished(const op_task_row_t *row) {
  return OP_TASK_STATUS_ENDED(row->status);
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

op_format_t op__task_first_format(const op_task_row_t *row) {
  for (unsigned f = 1; f <= OP_FMT_PDF; f <<= 1)
    if (wants_format(row, (op_format_t)f))
      return (op_format_t)f;
  return OP_FMT_TXT;
}

enum MHD_Result op__task_send_result(op__req_t *q, const op_task_row_t *row, op_format_t fmt) {
  char *dir = op_service_task_dir(q->http->svc, row->id);
  char path[1024];
  snprintf(path, sizeof path, "%s/result.%s", dir ? dir : ".", op_format_ext(fmt));
  free(dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) { /* another node ran it: the result is in the store */
    char name[32];
    op_error_t e;
    snprintf(name, sizeof name, "result.%s", op_format_ext(fmt));
    int rc = op_service_fetch_blob(q->http->svc, row->id, name, path, &e);
    if (rc < 0 && rc != OP_ENOTFOUND)
      return op__send_store_error(q, &e);
    fd = rc == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  }
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0)
      close(fd);
    return op__send_problem(q, 404, "the task has no result in this format (no page succeeded)", NULL, NULL, NULL);
  }
  return op__send_file(q, op_format_content_type(fmt), fd, (uint64_t)st.st_size);
}

/* Whether the client closed its end: a peek that reads end-of-file. */
static int client_gone(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (info == NULL)
    return 0;
  char byte;
  ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int op__task_wait_finished(op__req_t *q, const char *id, double timeout_s, op_task_row_t *row) {
  op_http_t *h = q->http;
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
    if (client_gone(q->conn))
      return -2;
    /* Woken by any task's end here; the 50 ms cap covers a task another node finishes. */
    op_service_wait_finished(h->svc, seen, 50);
  }
}

enum MHD_Result op__task_get(op__req_t *q) {
  op_task_row_t row;
  enum MHD_Result answered;
  if (load_task(q, &row, &answered) < 0)
    return answered;
  return op__send_json(q, 200, op_service_task_json(&row), NULL, NULL);
}

enum MHD_Result op__task_cancel(op__req_t *q) {
  op_task_row_t row;
  enum MHD_Result answered;
  if (load_task(q, &row, &answered) < 0)
    return answered;
  if (finished(&row))
    return op__send_problem(q, 409, "the task has already finished",
                            json_pack("{s:s}", "task_status", op_task_status_name(row.status)), NULL, NULL);
  if (op_service_cancel(q->http->svc, q->capture) < 0)
    return op__send_problem(q, 503, "too many requests for the service at once; try again", NULL, "Retry-After", "1");
  int waited = op__task_wait_finished(q, q->capture, 10, &row);
  if (waited == -2)
    return MHD_NO; /* nobody to answer; the cancel is recorded */
  if (waited < 0)
    return op__send_json(q, 202, op_service_task_json(&row), NULL, NULL);
  return op__send_json(q, 200, op_service_task_json(&row), NULL, NULL);
}

enum MHD_Result op__task_result(op__req_t *q) {
  op_task_row_t row;
  enum MHD_Result answered;
  if (load_task(q, &row, &answered) < 0)
    return answered;
  const char *name = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "format");
  op_format_t fmt = name ? op_format_from_name(name) : op__task_first_format(&row);
  if (fmt == 0)
    return op__send_problem(q, 400, "unknown format (known: txt, hocr, tsv, alto, json, pdf)", NULL, NULL, NULL);
  if (!wants_format(&row, fmt))
    return op__send_problem(q, 404, "the task was not asked for this format", NULL, NULL, NULL);
  if (!finished(&row))
    return op__send_problem(q, 409, "the task has not finished",
                            json_pack("{s:s}", "task_status", op_task_status_name(row.status)), NULL, NULL);
  return op__task_send_result(q, &row, fmt);
}

/* The task (as load_task) and its events, read with a pooled store
 * connection; -1 with *answered set when either could not be had. */
static int load_task_events(op__req_t *q, op_task_row_t *row, json_t **events, enum MHD_Result *answered) {
  if (load_task(q, row, answered) < 0)
    return -1;
  op_service_t *svc = q->http->svc;
  op_store_t *st = NULL;
  op_error_t e;
  int rc = op_service_store_get(svc, &st, &e);
  if (rc == 0) {
    rc = op_store_events(st, q->capture, events, &e);
    op_service_store_put(svc, st);
  }
  if (rc < 0) {
    *answered = op__send_store_error(q, &e);
    return -1;
  }
  return 0;
}

enum MHD_Result op__task_events(op__req_t *q) {
  op_task_row_t row;
  json_t *events = NULL;
  enum MHD_Result answered;
  if (load_task_events(q, &row, &events, &answered) < 0)
    return answered;
  size_t i;
  json_t *ev;
  json_array_foreach(events, i, ev) {
    json_object_set_new(ev, "time", op_time_json(json_number_value(json_object_get(ev, "time"))));
  }
  return op__send_json(q, 200, json_pack("{s:o}", "events", events), NULL, NULL);
}

/* How the task is doing, in one object: status, memory, processing time,
 * device, and the warnings its events hold. */
enum MHD_Result op__task_health(op__req_t *q) {
  op_task_row_t row;
  json_t *events = NULL;
  enum MHD_Result answered;
  if (load_task_events(q, &row, &events, &answered) < 0)
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
  int healthy = row.status != OP_TASK_FAILED && json_array_size(warnings) == 0;
  return op__send_json(q, 200,
                       json_pack("{s:s, s:s, s:b, s:i, s:i, s:f, s:o, s:{s:I, s:I}, s:o}", "id", row.id, "status",
                                 op_task_status_name(row.status), "healthy", healthy, "pages_total", row.pages_total,
                                 "pages_done", row.pages_done, "processing_seconds",
                                 row.started_at > 0 ? end - row.started_at : 0.0, "device",
                                 row.device[0] ? json_string(row.device) : json_null(), "memory", "estimated_bytes",
                                 (json_int_t)row.estimated_memory_bytes, "peak_bytes",
                                 (json_int_t)row.peak_memory_bytes, "warnings", warnings),
                       NULL, NULL);
}

enum MHD_Result op__tasks_list(op__req_t *q) {
  op_http_t *h = q->http;
  const char *status = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "status");
  const char *limit_s = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "limit");
  const char *after = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "after");
  static const char *const statuses[] = {"queued", "running", "succeeded", "failed", "cancelled"};
  int ok = status == NULL;
  for (size_t i = 0; !ok && i < 5; i++)
    ok = strcmp(status, statuses[i]) == 0;
  if (!ok)
    return op__send_problem(q, 400, "bad status (queued, running, succeeded, failed, cancelled)", NULL, NULL, NULL);
  long limit = 50;
  if (limit_s != NULL) {
    char *end;
    limit = strtol(limit_s, &end, 10);
    if (end == limit_s || *end != '\0' || limit < 1 || limit > 1000)
      return op__send_problem(q, 400, "bad limit: 1 to 1000", NULL, NULL, NULL);
  }
  op_store_t *st = NULL;
  op_error_t e;
  op_task_row_t *rows = NULL;
  size_t n = 0;
  int rc = op_service_store_get(h->svc, &st, &e);
  if (rc == 0) {
    const char *owner = h->auth && !q->token->admin ? q->token->name : NULL;
    /* Another tenant's id is as unknown as one that never was: the same 400, not a page. */
    op_task_row_t mark;
    if (owner != NULL && after != NULL && (rc = op_store_task_get(st, after, &mark, &e)) == 0 &&
        strcmp(mark.owner, owner) != 0)
      rc = OP_ENOTFOUND;
    if (rc == 0)
      rc = op_store_task_list(st, status ? status : "", owner, after ? after : "", (int)limit, &rows, &n, &e);
    op_service_store_put(h->svc, st);
  }
  if (rc == OP_ENOTFOUND)
    return op__send_problem(q, 400, "bad after: no such task", NULL, NULL, NULL);
  if (rc < 0)
    return op__send_store_error(q, &e);
  json_t *tasks = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(tasks, op_service_task_json(&rows[i]));
  json_t *next = n == (size_t)limit ? json_string(rows[n - 1].id) : json_null();
  free(rows);
  return op__send_json(q, 200, json_pack("{s:o, s:o}", "tasks", tasks, "next", next), NULL, NULL);
}

enum MHD_Result op__tasks_summary(op__req_t *q) {
  json_t *m = op_service_tasks_summary(q->http->svc);
  return m ? op__send_json(q, 200, m, NULL, NULL)
           : op__send_problem(q, 503, "the store does not answer", NULL, NULL, NULL);
}
