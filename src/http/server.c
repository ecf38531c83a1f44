/*
 * server.c: the HTTP server's life cycle on libmicrohttpd, and the dispatch
 * of each request through the route table (routes.c) to its handler.
 *
 * Each connection has its own thread. libmicrohttpd calls the access handler
 * once with the headers, then once per piece of body, then once more at the
 * end. The first call matches the route, checks the token and, for uploads,
 * whatever can refuse one without its body (upload.c); every other answer is
 * queued on the last call. The request's state, an op__req_t, goes explicitly
 * to the handler and the reply helpers.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)c;
  (void)why;
  op__req_t *q = *con_cls;
  if (q != NULL) {
    op__upload_destroy(q->upload);
    free(q);
  }
  *con_cls = NULL;
}

/* The first call: the headers are in, the body (if any) is not. */
static enum MHD_Result begin(op_http_t *h, struct MHD_Connection *c, const char *url, const char *method,
                             void **con_cls) {
  op__req_t *q = calloc(1, sizeof *q);
  if (q == NULL)
    return MHD_NO;
  *con_cls = q;
  q->http = h;
  q->conn = c;
  q->method = method;
  op__route_match(q, method, url);
  if (strncmp(url, "/v1/", 4) == 0 && h->auth) {
    q->token = op__tokens_check(&h->tokens, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
    if (q->token == NULL) {
      q->refused = 1;
      return op__send_problem(q, 401, "a bearer token is needed", NULL, "WWW-Authenticate", "Bearer realm=\"ocrpool\"");
    }
  }
  if (q->route != NULL && q->route->upload)
    return op__upload_start(q);
  /* Answered on the last call: libmicrohttpd closes the connection after an
   * answer queued on the first (it may have a body still to come), which
   * would cost every request a new connection and thread. */
  return MHD_YES;
}

/* The last call of a request that has no route for its method and path. */
static enum MHD_Result no_route(op__req_t *q) {
  if (q->path == NULL)
    return op__send_problem(q, 404, "no such route (see /openapi.json)", NULL, NULL, NULL);
  char allow[64], methods[64], detail[96];
  op__route_methods(q->path, ", ", 1, allow, sizeof allow);
  op__route_methods(q->path, " or ", 0, methods, sizeof methods);
  snprintf(detail, sizeof detail, "use %s", methods);
  return op__send_problem(q, 405, detail, NULL, "Allow", allow);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
  (void)version;
  op__req_t *q = *con_cls;
  if (q == NULL)
    return begin(cls, c, url, method, con_cls);
  q->conn = c;
  q->method = method;
  if (q->refused) {
    *upload_data_size = 0; /* the answer is queued; the rest of the body is dropped */
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    enum MHD_Result r = q->upload ? op__upload_chunk(q, upload_data, *upload_data_size) : MHD_YES;
    *upload_data_size = 0; /* bodies of other routes are ignored */
    return r;
  }
  return q->route != NULL ? q->route->handler(q) : no_route(q);
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
    if ((rc = op__tokens_load(cfg->tokens_file, &h->tokens, err)) < 0)
      goto out;
    h->auth = 1;
  }
  h->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                               NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
                               cfg->max_connections ? cfg->max_connections : 256u, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)120, MHD_OPTION_END);
  if (h->daemon == NULL) {
    rc = op_error_set(err, OP_EIO, "internal", "cannot listen on %s (in use, or not an address of this host?)",
                      cfg->listen);
    goto out;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : ntohs(sa.sin_port);
  *out = h;
  h = NULL;
out:
  if (h != NULL) {
    op__tokens_dispose(&h->tokens);
    free(h);
  }
  return rc;
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
