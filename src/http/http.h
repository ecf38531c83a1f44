/*
 * http.h: the HTTP API on libmicrohttpd (docs/api.md).
 *
 * A thread per connection: a request may wait (POST /v1/ocr waits for its
 * result) without holding up others. Uploads are streamed to the task's
 * directory as they arrive, never held whole in memory; a body announced as
 * too large is refused before it is read. The server talks to the task
 * service only through core/service.h.
 */
#ifndef OCRPOOL_HTTP_HTTP_H
#define OCRPOOL_HTTP_HTTP_H

#include <jansson.h>
#include <stdint.h>

#include "core/service.h"
#include "util/error.h"

typedef struct op_http_s op_http_t;

/** How the server listens and whom it lets in. */
typedef struct op_http_config_s {
  const char *listen;      /**< "ADDR:PORT", default "127.0.0.1:8080" */
  const char *tokens_file; /**< NULL: no authentication */
  unsigned max_connections;
  unsigned max_connections_per_client; /**< from one address; default 128 */
  /** "ADDR:PORT" of a second listener for /healthz, /readyz and /metrics
   * only, so probes get in while clients hold every connection; NULL = none. */
  const char *health_listen;
} op_http_config_t;

/** Fills cfg with the defaults. */
void op_http_config_init(op_http_config_t *cfg);

/** Starts listening; requests are served on libmicrohttpd's threads. */
int op_http_start(const op_http_config_t *cfg, op_service_t *svc, op_http_t **http, op_error_t *err);

/** The port actually bound (useful with port 0). */
uint16_t op_http_port(const op_http_t *http);

/** The port the health listener bound; 0 when there is none. */
uint16_t op_http_health_port(const op_http_t *http);

/**
 * Reads the tokens file again (SIGHUP): a revoked token is refused from the
 * next request on. On an error (logged) the tokens in use stay. arg is the
 * op_http_t, as op_service_watch_reload passes it.
 */
void op_http_reload(void *arg);

/** Stops accepting, waits for requests in flight, frees. */
void op_http_stop(op_http_t *http);

/** The OpenAPI 3 document describing every route the server answers (a new reference). */
json_t *op_http_openapi(void);

#endif
