/*
 * memory.c: the memory routes: GET /v1/memory (devices and workers as
 * admission sees them) and the memory reports, written on request by an
 * admin and read back by name.
 */
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

enum MHD_Result op__memory_get(op__req_t *q) {
  op_service_t *svc = q->http->svc;
  json_t *m = op_service_memory_json(svc);
  /* Worker pids and what each worker holds (another tenant's page's size)
   * are for operators: a submit token sees each worker's state only. */
  json_t *w;
  size_t i;
  if (m != NULL && q->http->auth && !q->token->admin)
    json_array_foreach(json_object_get(m, "workers"), i, w) {
      json_t *kept =
          json_pack("{s:O?, s:O?, s:O?, s:O?}", "id", json_object_get(w, "id"), "device", json_object_get(w, "device"),
                    "state", json_object_get(w, "state"), "sandbox", json_object_get(w, "sandbox"));
      json_array_set_new(json_object_get(m, "workers"), i, kept ? kept : json_object());
    }
  const char *history = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "history");
  if (m != NULL && history != NULL && strcmp(history, "0") != 0 && strcmp(history, "false") != 0)
    json_object_set_new(json_array_get(json_object_get(m, "devices"), 0), "history", op_service_memory_history(svc));
  return m ? op__send_json(q, 200, m, NULL, NULL)
           : op__send_problem(q, 503, "memory figures are not ready yet", NULL, NULL, NULL);
}

enum MHD_Result op__memory_report(op__req_t *q) {
  if (q->http->auth && !q->token->admin)
    return op__send_problem(q, 403, "memory reports need an admin token", NULL, NULL, NULL);
  if (op_service_report_request(q->http->svc) < 0)
    return op__send_problem(q, 503, "too many requests for the service at once; try again", NULL, "Retry-After", "1");
  return op__send_json(q, 202, json_pack("{s:s}", "report", "requested"), "Location", "/v1/memory/reports");
}

enum MHD_Result op__memory_reports(op__req_t *q) {
  if (q->http->auth && !q->token->admin)
    return op__send_problem(q, 403, "memory reports need an admin token", NULL, NULL, NULL);
  return op__send_json(q, 200, op_service_reports_json(q->http->svc), NULL, NULL);
}

enum MHD_Result op__memory_report_get(op__req_t *q) {
  if (q->http->auth && !q->token->admin)
    return op__send_problem(q, 403, "memory reports need an admin token", NULL, NULL, NULL);
  /* The service refuses names that are not its reports' (no way out of the directory). */
  char *path = op_service_report_path(q->http->svc, q->capture);
  json_t *report = path ? json_load_file(path, 0, NULL) : NULL;
  free(path);
  return report ? op__send_json(q, 200, report, NULL, NULL)
                : op__send_problem(q, 404, "no such memory report (see GET /v1/memory/reports)", NULL, NULL, NULL);
}
