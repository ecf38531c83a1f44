/*
 * routes.c: the one table of the HTTP API's routes, and the matching of a
 * request's method and path against it. Dispatch (server.c), the metrics
 * label (reply.c) and the OpenAPI document (openapi.c) all read this table,
 * so a route cannot be answered without being counted and described.
 */
#include <stdio.h>
#include <string.h>

#include "http/http_internal.h"
#include "util/utf8.h"

/* Order matters only to the OpenAPI document and to Allow headers; matching
 * prefers literal segments whatever the order. */
const op__route_t op__routes[] = {
    {"GET", "/v1/tasks", op__tasks_list, 0, "List tasks, newest first (status, limit, after)", "200 400 401"},
    {"POST", "/v1/tasks", op__upload_submit, OP__ROUTE_UPLOAD,
     "Submit a document (raw body or multipart field \"file\"); options as query parameters",
     "202 400 401 413 415 429 503 507"},
    {"GET", "/v1/tasks/{id}", op__task_get, 0, "A task", "200 401 404"},
    {"DELETE", "/v1/tasks/{id}", op__task_cancel, 0, "Cancel a task", "200 202 401 404 409"},
    {"GET", "/v1/tasks/{id}/result", op__task_result, 0, "The result in one format (format)", "200 400 401 404 409"},
    {"GET", "/v1/tasks/{id}/events", op__task_events, 0, "The task's event history", "200 401 404"},
    {"GET", "/v1/tasks/{id}/health", op__task_health, 0,
     "The task in one look: status, memory, processing time, device, warnings", "200 401 404"},
    {"GET", "/v1/tasks/metrics", op__tasks_summary, 0,
     "Active and queued tasks, memory by device, pool use, average wait", "200 401 503"},
    {"GET", "/v1/models", op__models_list, 0,
     "Models: state, memory, refcount, last use, loads, unloads by reason, policy", "200 401 503"},
    {"POST", "/v1/models/{name}/load", op__model_load, 0,
     "Load a declared model into a worker as memory allows (admin)", "202 401 403 404 503"},
    {"POST", "/v1/models/{name}/unload", op__model_unload, 0, "Unload a declared model from its idle workers (admin)",
     "202 401 403 404 503"},
    {"GET", "/v1/memory", op__memory_get, 0, "Memory per device and worker: capacity, budget, reserved, used, level",
     "200 401 503"},
    {"POST", "/v1/memory/report", op__memory_report, 0, "Write a memory report now (admin)", "202 401 403"},
    {"GET", "/v1/memory/reports", op__memory_reports, 0, "The memory reports kept (the last 20), newest first (admin)",
     "200 401 403"},
    {"GET", "/v1/memory/reports/{name}", op__memory_report_get, 0, "One memory report (admin)", "200 401 403 404"},
    {"GET", "/v1/nodes", op__nodes_list, 0,
     "The servers sharing the store: heartbeat, alive, draining, workers, pages running, memory", "200 401 503"},
    {"POST", "/v1/ocr", op__upload_ocr, OP__ROUTE_UPLOAD, "Submit and wait: answers the result itself (timeout)",
     "200 400 401 413 415 422 429 504 507"},
    {"GET", "/metrics", op__metrics_get, OP__ROUTE_HEALTH, "Prometheus metrics (text format 0.0.4)", "200"},
    {"GET", "/", op__dashboard_get, 0, "The live dashboard (HTML)", "200"},
    {"GET", "/healthz", op__healthz, OP__ROUTE_HEALTH, "Alive", "200"},
    {"GET", "/readyz", op__readyz, OP__ROUTE_HEALTH, "Accepting work", "200 503"},
    {"GET", "/openapi.json", op__openapi_get, 0, "This document", "200"},
};
const size_t op__routes_len = sizeof op__routes / sizeof op__routes[0];

/* Matches url against a template, where "{...}" stands for one non-empty
 * segment of valid UTF-8; returns the number of captures, or -1 when it does not match. The
 * last capture is copied to capture (no route has two). */
static int match_template(const char *tmpl, const char *url, char *capture, size_t capture_len) {
  int captures = 0;
  while (*tmpl != '\0') {
    if (*tmpl == '{') {
      size_t n = strcspn(url, "/");
      if (n == 0 || n >= capture_len)
        return -1;
      memcpy(capture, url, n);
      capture[n] = '\0';
      if (!op_utf8_valid(capture)) /* no id or name is that: not found, and never quoted back raw */
        return -1;
      url += n;
      tmpl = strchr(tmpl, '}');
      tmpl = tmpl ? tmpl + 1 : "";
      captures++;
      continue;
    }
    if (*tmpl++ != *url++)
      return -1;
  }
  return *url == '\0' ? captures : -1;
}

static int method_fits(const char *route_method, const char *method) {
  /* libmicrohttpd sends HEAD answers without their body. */
  return strcmp(route_method, method) == 0 || (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

void op__route_match(op__req_t *q, const char *method, const char *url) {
  int best = -1;
  char capture[OP__CAPTURE_MAX];
  q->path = NULL;
  q->route = NULL;
  q->capture[0] = '\0';
  for (size_t i = 0; i < op__routes_len; i++) {
    const op__route_t *r = &op__routes[i];
    capture[0] = '\0';
    int n = match_template(r->path, url, capture, sizeof capture);
    if (n < 0 || (best >= 0 && n > best))
      continue;
    if (n < best || best < 0) { /* a more literal template: forget the looser one */
      best = n;
      q->path = r->path;
      q->route = NULL;
      snprintf(q->capture, sizeof q->capture, "%s", capture);
    }
    if (q->route == NULL && strcmp(r->path, q->path) == 0 && method_fits(r->method, method))
      q->route = r;
  }
}

void op__route_methods(const char *path, const char *sep, int head, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < op__routes_len && used < len; i++) {
    if (strcmp(op__routes[i].path, path) != 0)
      continue;
    const char *m = op__routes[i].method;
    int n = snprintf(buf + used, len - used, "%s%s%s%s", used ? sep : "", m, head && strcmp(m, "GET") == 0 ? sep : "",
                     head && strcmp(m, "GET") == 0 ? "HEAD" : "");
    used += n > 0 ? (size_t)n : 0;
  }
}
