/*
 * health.c: what probes and Prometheus read: /healthz (the process answers),
 * /readyz (it takes work) and /metrics. None needs a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

enum MHD_Result op__healthz(op__req_t *q) {
  return op__send_json(q, 200, json_pack("{s:s}", "status", "ok"), NULL, NULL);
}

/* Ready: taking work. Not while draining, nor while memory is critical with
 * nothing left to free, nor while the store does not answer. */
enum MHD_Result op__readyz(op__req_t *q) {
  op_service_t *svc = q->http->svc;
  if (op_service_draining(svc))
    return op__send_problem(q, 503, "draining: the server is shutting down", NULL, NULL, NULL);
  if (!op_service_ready(svc))
    return op__send_problem(q, 503, "starting: no worker has started yet", NULL, "Retry-After", "1");
  if (op_service_refusing(svc))
    return op__send_problem(q, 503, "memory is critical and nothing is left to free", NULL, "Retry-After", "5");
  op_store_t *st = NULL;
  op_error_t e;
  int queued = 0, rc = op_service_store_get(svc, &st, &e);
  if (rc == 0) {
    rc = op_store_count_status(st, "queued", &queued, &e);
    op_service_store_put(svc, st);
  }
  if (rc < 0) {
    char detail[400];
    snprintf(detail, sizeof detail, "the store does not answer: %.360s", e.message);
    return op__send_problem(q, 503, detail, NULL, "Retry-After", "5");
  }
  return op__send_json(q, 200, json_pack("{s:s, s:i}", "status", "ready", "queued", queued), NULL, NULL);
}

enum MHD_Result op__metrics_get(op__req_t *q) {
  op_http_t *h = q->http;
  char *core = op_service_metrics_text(h->svc), *text = NULL;
  pthread_mutex_lock(&h->slots_lock);
  unsigned uploads = h->uploads;
  pthread_mutex_unlock(&h->slots_lock);
  const union MHD_DaemonInfo *open = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  if (core == NULL ||
      asprintf(&text,
               "%s# HELP ocrpool_uploads_in_progress Uploads whose body is arriving; each holds a queue slot\n"
               "# TYPE ocrpool_uploads_in_progress gauge\nocrpool_uploads_in_progress %u\n"
               "# HELP ocrpool_http_connections Open connections on --listen (each holds a thread)\n"
               "# TYPE ocrpool_http_connections gauge\nocrpool_http_connections %u\n",
               core, uploads, open ? open->num_connections : 0) < 0)
    text = NULL;
  free(core);
  if (text == NULL)
    return op__send_problem(q, 500, "cannot render the metrics", NULL, NULL, NULL);
  enum MHD_Result r = op__send_body(q, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), NULL, NULL);
  free(text);
  return r;
}
