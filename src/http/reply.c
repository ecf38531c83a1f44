/*
 * reply.c: queueing answers on libmicrohttpd: JSON, RFC 9457 problems, plain
 * bodies and files. Every answer passes through here, so this is where it is
 * counted in ocrpool_http_requests_total, under the request's route template
 * ("other" for a path no route has) so that ids do not make a series each.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/metrics.h"
#include "http/http_internal.h"
#include "util/utf8.h"

static void count_response(const op__req_t *q, unsigned status) {
  op_metrics_http(op_service_metrics(q->http->svc), q->path ? q->path : "other", q->method, status);
}

static enum MHD_Result queue(op__req_t *q, unsigned status, struct MHD_Response *r) {
  count_response(q, status);
  enum MHD_Result ok = MHD_queue_response(q->conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

enum MHD_Result op__send_body(op__req_t *q, unsigned status, const char *type, const char *body, size_t len,
                              const char *h1, const char *v1) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  if (h1 != NULL)
    MHD_add_response_header(r, h1, v1);
  return queue(q, status, r);
}

/* Sends j (taking its reference) with the given Content-Type. */
static enum MHD_Result send_typed_json(op__req_t *q, unsigned status, const char *type, json_t *j, const char *h1,
                                       const char *v1) {
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (text == NULL)
    return MHD_NO;
  enum MHD_Result ok = op__send_body(q, status, type, text, strlen(text), h1, v1);
  free(text);
  return ok;
}

enum MHD_Result op__send_json(op__req_t *q, unsigned status, json_t *j, const char *h1, const char *v1) {
  return send_typed_json(q, status, "application/json", j, h1, v1);
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
  case 507:
    return "Insufficient Storage";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Internal Server Error";
  }
}

enum MHD_Result op__send_problem(op__req_t *q, unsigned status, const char *detail, json_t *extra, const char *h1,
                                 const char *v1) {
  /* A detail may quote what a client sent: made valid UTF-8, or jansson would drop the whole reply. */
  json_t *j = json_pack("{s:s, s:s, s:i, s:o}", "type", "about:blank", "title", status_title(status), "status",
                        (int)status, "detail", op_utf8_json(detail));
  if (extra != NULL) {
    json_object_update(j, extra);
    json_decref(extra);
  }
  return send_typed_json(q, status, "application/problem+json", j, h1, v1);
}

enum MHD_Result op__send_store_error(op__req_t *q, const op_error_t *e) {
  if (e->code == OP_EIO) /* unreachable, restarting or busy: nothing is lost, the client may come back */
    return op__send_problem(q, 503, e->message, NULL, "Retry-After", "5");
  return op__send_problem(q, 500, e->message, NULL, NULL, NULL);
}

enum MHD_Result op__send_file(op__req_t *q, const char *type, int fd, uint64_t size) {
  struct MHD_Response *r = MHD_create_response_from_fd(size, fd);
  if (r == NULL) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  return queue(q, 200, r);
}
