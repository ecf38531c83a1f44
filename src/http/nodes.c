/*
 * nodes.c: GET /v1/nodes: the servers sharing the store, as their heartbeats
 * left them in the table nodes (core/node.c writes this server's row), each
 * alive while its last heartbeat is younger than store.lease.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"
#include "util/fs.h"

/* A number of seconds: whole ones as integers (30, not 30.0), else to the millisecond. */
static json_t *seconds_json(double s) {
  return s == floor(s) && fabs(s) < 1e15 ? json_integer((json_int_t)s) : json_real(round(s * 1000) / 1000);
}

static json_t *node_json(const op_node_row_t *n, const char *self, double lease_s) {
  /* Written by a node's own beat; should it not parse, an empty object beats failing the list. */
  json_t *memory = json_loads(n->memory, 0, NULL);
  if (!json_is_object(memory)) {
    json_decref(memory);
    memory = json_object();
  }
  return json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:b, s:i, s:i, s:o, s:b}", "id", n->id, "host", n->host,
                   "started_at", op_time_json(n->started_at), "last_heartbeat", op_time_json(n->heartbeat_at), "age_s",
                   seconds_json(n->age_s), "alive", n->age_s < lease_s, "draining", n->draining != 0, "workers",
                   n->workers, "pages_running", n->pages_running, "memory", memory, "self", strcmp(n->id, self) == 0);
}

enum MHD_Result op__nodes_list(op__req_t *q) {
  op_service_t *svc = q->http->svc;
  double lease_s = op_service_config(svc)->lease_s;
  op_store_t *st = NULL;
  op_node_row_t *rows = NULL;
  size_t n = 0;
  op_error_t e;
  int rc = op_service_store_get(svc, &st, &e);
  if (rc == 0) {
    rc = op_store_nodes(st, &rows, &n, &e);
    op_service_store_put(svc, st);
  }
  if (rc < 0)
    return op__send_store_error(q, &e);
  json_t *list = json_array();
  for (size_t i = 0; list != NULL && i < n; i++)
    if (json_array_append_new(list, node_json(&rows[i], op_service_node_id(svc), lease_s)) != 0) {
      json_decref(list);
      list = NULL;
    }
  free(rows);
  json_t *body = list ? json_pack("{s:o, s:o}", "nodes", list, "lease_s", seconds_json(lease_s)) : NULL;
  return body ? op__send_json(q, 200, body, NULL, NULL)
              : op__send_problem(q, 500, "out of memory listing the nodes", NULL, NULL, NULL);
}
