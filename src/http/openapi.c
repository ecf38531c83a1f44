/*
 * openapi.c: the OpenAPI 3 document of the HTTP API, built from one table of
 * routes. server.c answers exactly these; tests/test_server.sh checks that
 * every route the server answers is listed here.
 */
#include <string.h>

#include "http/http.h"

static const struct {
  const char *path, *method, *summary, *codes;
  int body;
} routes[] = {
    {"/v1/tasks", "post", "Submit a document (raw body or multipart field \"file\"); options as query parameters",
     "202 400 401 413 415 429 503", 1},
    {"/v1/tasks", "get", "List tasks, newest first (status, limit, after)", "200 400 401", 0},
    {"/v1/tasks/{id}", "get", "A task", "200 401 404", 0},
    {"/v1/tasks/{id}", "delete", "Cancel a task", "200 202 401 404 409", 0},
    {"/v1/tasks/{id}/result", "get", "The result in one format (format)", "200 400 401 404 409", 0},
    {"/v1/tasks/{id}/events", "get", "The task's event history", "200 401 404", 0},
    {"/v1/tasks/{id}/health", "get", "The task in one look: status, memory, processing time, device, warnings",
     "200 401 404", 0},
    {"/v1/tasks/metrics", "get", "Active and queued tasks, memory by device, pool use, average wait", "200 401 503", 0},
    {"/v1/models", "get", "Models: state, memory, refcount, last use, loads, unloads by reason, policy", "200 401 503",
     0},
    {"/v1/models/{name}/load", "post", "Load a declared model into a worker as memory allows (admin)",
     "202 401 403 404 503", 0},
    {"/v1/models/{name}/unload", "post", "Unload a declared model from its idle workers (admin)", "202 401 403 404 503",
     0},
    {"/v1/memory", "get", "Memory per device and worker: capacity, budget, reserved, used, level", "200 401 503", 0},
    {"/v1/memory/report", "post", "Write a memory report now (admin)", "202 401 403", 0},
    {"/v1/memory/reports", "get", "The memory reports kept (the last 20), newest first", "200 401", 0},
    {"/v1/memory/reports/{name}", "get", "One memory report", "200 401 404", 0},
    {"/v1/ocr", "post", "Submit and wait: answers the result itself (timeout)", "200 400 401 413 415 422 429 504", 1},
    {"/metrics", "get", "Prometheus metrics (text format 0.0.4)", "200", 0},
    {"/", "get", "The live dashboard (HTML)", "200", 0},
    {"/healthz", "get", "Alive", "200", 0},
    {"/readyz", "get", "Accepting work", "200 503", 0},
    {"/openapi.json", "get", "This document", "200", 0},
};

static const char *const params[] = {"format", "lang", "psm", "dpi", "pages", "priority", "rotate_pages"};

json_t *op_http_openapi(void) {
  json_t *paths = json_object();
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    json_t *item = json_object_get(paths, routes[i].path);
    if (item == NULL) {
      item = json_object();
      json_object_set_new(paths, routes[i].path, item);
    }
    json_t *responses = json_object();
    char codes[64];
    snprintf(codes, sizeof codes, "%s", routes[i].codes);
    for (char *save = NULL, *code = strtok_r(codes, " ", &save); code; code = strtok_r(NULL, " ", &save))
      json_object_set_new(responses, code, json_pack("{s:s}", "description", code[0] == '2' ? "success" : "problem"));
    json_t *op = json_pack("{s:s, s:o}", "summary", routes[i].summary, "responses", responses);
    json_t *parameters = json_array();
    const char *var = strstr(routes[i].path, "{id}") ? "id" : strstr(routes[i].path, "{name}") ? "name" : NULL;
    if (var != NULL)
      json_array_append_new(parameters, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", var, "in", "path", "required", 1,
                                                  "schema", "type", "string"));
    if (routes[i].body) {
      for (size_t k = 0; k < sizeof params / sizeof params[0]; k++)
        json_array_append_new(
            parameters, json_pack("{s:s, s:s, s:{s:s}}", "name", params[k], "in", "query", "schema", "type", "string"));
      json_object_set_new(op, "requestBody",
                          json_pack("{s:b, s:{s:{}, s:{}}}", "required", 1, "content", "application/octet-stream",
                                    "multipart/form-data"));
    }
    json_object_set_new(op, "parameters", parameters);
    json_object_set_new(item, routes[i].method, op);
  }
  return json_pack("{s:s, s:{s:s, s:s}, s:o}", "openapi", "3.0.3", "info", "title", "ocrpool", "version",
                   OCRPOOL_VERSION, "paths", paths);
}
