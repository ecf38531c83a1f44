/*
 * http_internal.h: what the files of src/http share and nothing outside may
 * use. A request is one op__req_t, passed explicitly from the dispatcher
 * (server.c) to the route's handler and on to the reply helpers (reply.c),
 * which count each answer under the route's template. The routes are one
 * table (routes.c) read by dispatch, metrics and the OpenAPI document alike.
 */
#ifndef OCRPOOL_HTTP_HTTP_INTERNAL_H
#define OCRPOOL_HTTP_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/service.h"
#include "doc/doc.h"
#include "http/auth.h"
#include "http/http.h"

/** The server: libmicrohttpd's daemon and what its handlers read. */
struct op_http_s {
  struct MHD_Daemon *daemon;
  struct MHD_Daemon *health; /**< the health listener, or NULL */
  uint16_t health_port;
  op_service_t *svc;
  op__tokens_t tokens; /**< under tokens_lock: SIGHUP replaces them */
  pthread_rwlock_t tokens_lock;
  char *tokens_file;
  int auth; /**< tokens are checked on /v1 */
  uint16_t port;
  /** Uploads under way, each holding a queue slot from its headers on, so
   * that slow bodies cannot pass --max-queue together. */
  pthread_mutex_t slots_lock;
  unsigned uploads;
  /** libmicrohttpd's own messages this minute, so that a flood of bad clients cannot flood the log. */
  pthread_mutex_t log_lock;
  time_t log_minute;
  unsigned log_count, log_dropped;
};

typedef struct op__req_s op__req_t;
typedef struct op__upload_s op__upload_t;

/** A route's handler: called once the request (and any body) has arrived; queues exactly one answer. */
typedef enum MHD_Result (*op__route_cb)(op__req_t *q);

/** The body is a document, streamed to disk by upload.c before the handler runs. */
#define OP__ROUTE_UPLOAD 1u
/** Also answered on the health listener (--health-listen), which answers nothing else. */
#define OP__ROUTE_HEALTH 2u

/** One row of the route table. */
typedef struct op__route_s {
  const char *method;   /**< "GET", "POST", "DELETE"; a GET route answers HEAD too */
  const char *path;     /**< the template, e.g. "/v1/tasks/{id}/result": also the metrics label */
  op__route_cb handler; /**< answers the request */
  unsigned flags;       /**< OP__ROUTE_UPLOAD, OP__ROUTE_HEALTH */
  const char *summary;  /**< for the OpenAPI document */
  const char *codes;    /**< the statuses it answers, space-separated, for the OpenAPI document */
} op__route_t;

/** The longest {id} or {name} a path may carry; longer ones match no route. */
#define OP__CAPTURE_MAX 128

/**
 * One request's state across libmicrohttpd's calls of the access handler. It
 * is created on the first call and freed when the request completes.
 */
struct op__req_s {
  op_http_t *http;
  struct MHD_Connection *conn;   /**< the connection of the current call */
  const char *method;            /**< the method of the current call (libmicrohttpd's string) */
  const char *path;              /**< the matched template, or NULL when no route has this path */
  const op__route_t *route;      /**< the row for path and method; NULL: 404 (path NULL) or 405 */
  char capture[OP__CAPTURE_MAX]; /**< the {id} or {name} of the path, "" when it has none */
  const op__token_t *token;      /**< the caller's token when authentication is on: &caller */
  op__token_t caller;            /**< a copy: a reload may free the list while the request runs */
  int refused;                   /**< an answer was queued before the body ended */
  op__upload_t *upload;          /**< the body being stored, for upload routes */
};

/* ---- routes.c ---- */

/** The route table and its length. */
extern const op__route_t op__routes[];
extern const size_t op__routes_len;

/**
 * Matches method and url against the table: sets q->path, q->route and
 * q->capture. A literal segment beats a capture ("/v1/tasks/metrics" is not a
 * task id).
 */
void op__route_match(op__req_t *q, const char *method, const char *url);

/**
 * The methods the table has for path, joined by sep: with head, a GET route
 * adds HEAD (the Allow header, "GET, HEAD, DELETE"); without, for a sentence
 * ("GET or DELETE").
 */
void op__route_methods(const char *path, const char *sep, int head, char *buf, size_t len);

/* ---- reply.c: every answer is counted in ocrpool_http_requests_total ---- */

/** Queues body (copied) with the given Content-Type and one optional header (h1 may be NULL). */
enum MHD_Result op__send_body(op__req_t *q, unsigned status, const char *type, const char *body, size_t len,
                              const char *h1, const char *v1);

/** Queues j as application/json, taking its reference. */
enum MHD_Result op__send_json(op__req_t *q, unsigned status, json_t *j, const char *h1, const char *v1);

/** Queues an RFC 9457 problem; extra (may be NULL, reference taken) is merged into the body. */
enum MHD_Result op__send_problem(op__req_t *q, unsigned status, const char *detail, json_t *extra, const char *h1,
                                 const char *v1);

/* A store error: 503 with Retry-After when the store cannot be reached (OP_EIO:
 * the database restarting, a disk error), else 500. */
enum MHD_Result op__send_store_error(op__req_t *q, const op_error_t *e);

/** Queues the open file fd (size bytes, taken: closed in every case) with a 200. */
enum MHD_Result op__send_file(op__req_t *q, const char *type, int fd, uint64_t size);

/* ---- upload.c ---- */

/**
 * Checks, on the first call, what can refuse an upload without reading it
 * (shutdown, memory, Content-Length, a full queue) and opens the task's input
 * file. A refusal is queued with q->refused set.
 */
enum MHD_Result op__upload_start(op__req_t *q);

/** Takes one piece of the body. */
enum MHD_Result op__upload_chunk(op__req_t *q, const char *data, size_t size);

/** Frees an upload; one that never became a task leaves no files behind. */
void op__upload_destroy(op__upload_t *u);

/** POST /v1/tasks once the body has arrived: records the task, answers 202. */
enum MHD_Result op__upload_submit(op__req_t *q);

/** POST /v1/ocr once the body has arrived: records the task, waits for it, answers its result. */
enum MHD_Result op__upload_ocr(op__req_t *q);

/* ---- options.c ---- */

/** Turns the request's parameters into the stored options; a sentence on bad ones. */
int op__build_options(op_service_t *svc, json_t *params, int sync, json_t **out, int *priority, char *why,
                      size_t why_len);

/* ---- tasks.c ---- */

/**
 * Waits for a task to end, up to timeout_s; returns 0 when it ended (row
 * holds it then), -1 at the timeout, -2 as soon as the client of q has gone
 * (its request thread is not held for nothing; the task goes on).
 */
int op__task_wait_finished(op__req_t *q, const char *id, double timeout_s, op_task_row_t *row);

/** The first format the task was asked for. */
op_format_t op__task_first_format(const op_task_row_t *row);

/** Answers the task's result in fmt, or 404 when it has none. */
enum MHD_Result op__task_send_result(op__req_t *q, const op_task_row_t *row, op_format_t fmt);

enum MHD_Result op__tasks_list(op__req_t *q);    /**< GET /v1/tasks */
enum MHD_Result op__tasks_summary(op__req_t *q); /**< GET /v1/tasks/metrics */
enum MHD_Result op__task_get(op__req_t *q);      /**< GET /v1/tasks/{id} */
enum MHD_Result op__task_cancel(op__req_t *q);   /**< DELETE /v1/tasks/{id} */
enum MHD_Result op__task_result(op__req_t *q);   /**< GET /v1/tasks/{id}/result */
enum MHD_Result op__task_events(op__req_t *q);   /**< GET /v1/tasks/{id}/events */
enum MHD_Result op__task_health(op__req_t *q);   /**< GET /v1/tasks/{id}/health */

/* ---- health.c, memory.c, models.c, nodes.c, dashboard.c, openapi.c ---- */

enum MHD_Result op__healthz(op__req_t *q);           /**< GET /healthz */
enum MHD_Result op__readyz(op__req_t *q);            /**< GET /readyz */
enum MHD_Result op__metrics_get(op__req_t *q);       /**< GET /metrics */
enum MHD_Result op__memory_get(op__req_t *q);        /**< GET /v1/memory */
enum MHD_Result op__memory_report(op__req_t *q);     /**< POST /v1/memory/report */
enum MHD_Result op__memory_reports(op__req_t *q);    /**< GET /v1/memory/reports */
enum MHD_Result op__memory_report_get(op__req_t *q); /**< GET /v1/memory/reports/{name} */
enum MHD_Result op__models_list(op__req_t *q);       /**< GET /v1/models */
enum MHD_Result op__model_load(op__req_t *q);        /**< POST /v1/models/{name}/load */
enum MHD_Result op__model_unload(op__req_t *q);      /**< POST /v1/models/{name}/unload */
enum MHD_Result op__nodes_list(op__req_t *q);        /**< GET /v1/nodes */
enum MHD_Result op__dashboard_get(op__req_t *q);     /**< GET / */
enum MHD_Result op__openapi_get(op__req_t *q);       /**< GET /openapi.json */

#endif
