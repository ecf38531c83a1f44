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
#include <strings.h>

#include "http/http_internal.h"
#include "util/log.h"

/* Until a request's headers are in, a connection silent this long is
 * closed: idle connections cannot hold the server's threads for the
 * body's two minutes. */
#define HEADER_TIMEOUT_S 10u
#define BODY_TIMEOUT_S 120u

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
  (void)cls;
  op__req_t *q = *con_cls;
  if (q != NULL) {
    op__upload_destroy(q->upload);
    free(q);
  }
  *con_cls = NULL;
  /* Kept alive for another request: its headers have the short deadline again. */
  if (why == MHD_REQUEST_TERMINATED_COMPLETED_OK)
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, HEADER_TIMEOUT_S);
}

/* What the framing headers say, counted over all of them: a proxy in front
 * may read a body differently from libmicrohttpd (request smuggling). */
typedef struct {
  int lengths;        /* Content-Length headers */
  int lengths_differ; /* ... not all of them the same */
  const char *length; /* the first */
  int encodings;      /* Transfer-Encoding headers */
  int chunked_only;   /* ... exactly one, and it says "chunked" */
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  framing_t *f = cls;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    if (f->lengths++ == 0)
      f->length = value;
    else if (strcmp(f->length, value ? value : "") != 0)
      f->lengths_differ = 1;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->chunked_only = f->encodings++ == 0 && value != NULL && strcasecmp(value, "chunked") == 0;
  }
  return MHD_YES;
}

/* A reason to refuse the request's framing, or NULL when it is unambiguous. */
static const char *bad_framing(struct MHD_Connection *c) {
  framing_t f = {0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
  if (f.lengths > 0 && f.encodings > 0)
    return "both Content-Length and Transfer-Encoding: the body's length is ambiguous";
  if (f.lengths_differ)
    return "Content-Length headers that differ: the body's length is ambiguous";
  if (f.encodings > 0 && !f.chunked_only)
    return "the only Transfer-Encoding taken is one \"chunked\"";
  return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  (void)cls;
  (void)socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, HEADER_TIMEOUT_S);
}

/* The first call: the headers are in, the body (if any) is not. */
static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

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
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, BODY_TIMEOUT_S);
  const union MHD_ConnectionInfo *from = MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
  if (h->health != NULL && from != NULL && from->daemon == h->health &&
      (q->route == NULL || !(q->route->flags & OP__ROUTE_HEALTH))) {
    q->route = NULL;
    q->path = NULL; /* the health listener answers its three routes and nothing else */
  }
  const char *framing = bad_framing(c);
  if (framing != NULL) { /* and the connection closes: what follows cannot be told from the body */
    q->refused = 1;
    return op__send_problem(q, 400, framing, NULL, "Connection", "close");
  }
  if (strncmp(url, "/v1/", 4) == 0 && h->auth) {
    pthread_rwlock_rdlock(&h->tokens_lock);
    const op__token_t *t =
        op__tokens_check(&h->tokens, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"));
    unsigned wait_s = 0;
    if (t != NULL) {
      q->caller = *t;
      q->token = &q->caller;
      wait_s = op__tokens_take(&h->tokens, t, monotonic_ns());
    }
    pthread_rwlock_unlock(&h->tokens_lock);
    if (q->token == NULL) {
      q->refused = 1;
      return op__send_problem(q, 401, "a bearer token is needed", NULL, "WWW-Authenticate", "Bearer realm=\"ocrpool\"");
    }
    if (wait_s > 0) { /* before any body: a refused upload costs no disk */
      char detail[160], retry[16];
      snprintf(detail, sizeof detail, "this token's rate of %.4g requests a second is exceeded; try again in %u s",
               1e9 / (double)q->caller.interval_ns, wait_s);
      snprintf(retry, sizeof retry, "%u", wait_s);
      q->refused = 1;
      return op__send_problem(q, 429, detail, NULL, "Retry-After", retry);
    }
  }
  if (q->route != NULL && (q->route->flags & OP__ROUTE_UPLOAD))
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

/* ---- libmicrohttpd's messages ---- */

/* At most this many a minute reach the log; the rest are counted, and the
 * count logged with the first message of a later minute. */
#define MHD_LOG_PER_MINUTE 20

/* libmicrohttpd reports what clients do wrong (a connection cut mid-header,
 * a malformed request line) on its own; through our logger, in our format
 * and rate-limited, instead of raw lines on stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  op_http_t *h = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t len = strlen(msg);
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
    msg[--len] = '\0';
  time_t minute = time(NULL) / 60;
  unsigned dropped = 0;
  int print;
  pthread_mutex_lock(&h->log_lock);
  if (minute != h->log_minute) {
    dropped = h->log_dropped;
    h->log_minute = minute;
    h->log_count = h->log_dropped = 0;
  }
  print = h->log_count < MHD_LOG_PER_MINUTE;
  if (print)
    h->log_count++;
  else
    h->log_dropped++;
  pthread_mutex_unlock(&h->log_lock);
  if (dropped > 0)
    op_log_warn("http: %u more messages from libmicrohttpd were not logged in the last minute (over %d a minute)",
                dropped, MHD_LOG_PER_MINUTE);
  if (print)
    op_log_warn("http: %s", msg);
}

/* ---- life cycle ---- */

void op_http_config_init(op_http_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->listen = "127.0.0.1:8080";
  cfg->max_connections = 256;
  cfg->max_connections_per_client = 128;
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

static struct MHD_Daemon *listen_on(op_http_t *h, const struct sockaddr_in *sa, unsigned limit, unsigned per_client) {
  return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                          NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, /* first, or some go raw */
                          MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                          NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT, limit,
                          MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client, MHD_OPTION_CONNECTION_TIMEOUT, BODY_TIMEOUT_S,
                          MHD_OPTION_END);
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
  pthread_mutex_init(&h->log_lock, NULL);
  pthread_mutex_init(&h->slots_lock, NULL);
  pthread_rwlock_init(&h->tokens_lock, NULL);
  if (cfg->tokens_file != NULL) {
    if ((rc = op__tokens_load(cfg->tokens_file, &h->tokens, err)) < 0)
      goto out;
    if ((h->tokens_file = strdup(cfg->tokens_file)) == NULL) {
      rc = op_error_set(err, OP_ENOMEM, NULL, "out of memory");
      goto out;
    }
    h->auth = 1;
  }
  unsigned limit = cfg->max_connections ? cfg->max_connections : 256u;
  unsigned per_client = cfg->max_connections_per_client ? cfg->max_connections_per_client : limit;
  h->daemon = listen_on(h, &sa, limit, per_client);
  if (h->daemon == NULL) {
    rc = op_error_set(err, OP_EIO, "internal", "cannot listen on %s (in use, or not an address of this host?)",
                      cfg->listen);
    goto out;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : ntohs(sa.sin_port);
  if (cfg->health_listen != NULL) {
    struct sockaddr_in hsa;
    if ((rc = parse_listen(cfg->health_listen, &hsa, err)) < 0)
      goto out;
    /* Few connections, few per client: probes need little, and it must not become a second way in. */
    if ((h->health = listen_on(h, &hsa, 16, 4)) == NULL) {
      rc = op_error_set(err, OP_EIO, "internal", "cannot listen on %s for health (in use?)", cfg->health_listen);
      goto out;
    }
    info = MHD_get_daemon_info(h->health, MHD_DAEMON_INFO_BIND_PORT);
    h->health_port = info ? info->port : ntohs(hsa.sin_port);
  }
  *out = h;
  h = NULL;
out:
  if (h != NULL) {
    if (h->daemon != NULL)
      MHD_stop_daemon(h->daemon);
    op__tokens_dispose(&h->tokens);
    free(h->tokens_file);
    pthread_rwlock_destroy(&h->tokens_lock);
    pthread_mutex_destroy(&h->log_lock);
    pthread_mutex_destroy(&h->slots_lock);
    free(h);
  }
  return rc;
}

uint16_t op_http_port(const op_http_t *h) {
  return h->port;
}

uint16_t op_http_health_port(const op_http_t *h) {
  return h->health_port;
}

void op_http_stop(op_http_t *h) {
  if (h == NULL)
    return;
  if (h->health != NULL)
    MHD_stop_daemon(h->health);
  MHD_stop_daemon(h->daemon);
  op__tokens_dispose(&h->tokens);
  free(h->tokens_file);
  pthread_rwlock_destroy(&h->tokens_lock);
  pthread_mutex_destroy(&h->log_lock);
  pthread_mutex_destroy(&h->slots_lock);
  free(h);
}

void op_http_reload(void *arg) {
  op_http_t *h = arg;
  if (h == NULL || !h->auth)
    return;
  op__tokens_t fresh, old;
  op_error_t e;
  if (op__tokens_load(h->tokens_file, &fresh, &e) < 0) {
    op_log_error("reload: %s; the tokens in use stay", e.message);
    return;
  }
  pthread_rwlock_wrlock(&h->tokens_lock);
  op__tokens_carry(&fresh, &h->tokens); /* a reload is no way around a rate */
  old = h->tokens;
  h->tokens = fresh;
  pthread_rwlock_unlock(&h->tokens_lock);
  op__tokens_dispose(&old);
  op_log_info("reload: %zu tokens from %s", fresh.n, h->tokens_file);
}
