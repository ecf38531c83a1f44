/*
 * upload.c: submissions, POST /v1/tasks and POST /v1/ocr. Everything that
 * can refuse an upload without its body (shutdown, memory, a too-large
 * Content-Length, a full queue) is answered on libmicrohttpd's first call, so
 * the body is never read. Otherwise the body goes straight into the new
 * task's directory under a name the server makes, as a raw document or the
 * "file" field of a multipart form; the task is recorded only when the whole
 * body has arrived and its type is known.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "http/http_internal.h"
#include "util/fs.h"
#include "util/utf8.h"

/* One upload's state across the handler's calls. */
struct op__upload_s {
  op_http_t *http;
  int slot; /* holds one of the queue's slots (http->uploads) */
  int fd;   /* the task's input file */
  uint64_t bytes;
  uint64_t max_bytes;     /* the server's limit, or the token's quota when lower */
  unsigned failed_status; /* the body is bad: answer this once it has been read */
  char failed_detail[256];
  struct MHD_PostProcessor *pp; /* multipart bodies only */
  json_t *params;               /* options from the query string and form fields */
  int multipart;
  int got_file;        /* multipart: a "file" field came */
  uint64_t file_bytes; /* ... with this many bytes so far */
  char id[40];         /* the task's id; "" once it is a task */
  char *dir;
  char title[256];
};

static void release_slot(op__upload_t *u) {
  if (!u->slot)
    return;
  pthread_mutex_lock(&u->http->slots_lock);
  u->http->uploads--;
  pthread_mutex_unlock(&u->http->slots_lock);
  u->slot = 0;
}

/* Bytes free to unprivileged writers on the data directory's disk (UINT64_MAX when unknown). */
static uint64_t free_bytes(const char *dir) {
  struct statvfs vfs;
  if (statvfs(dir, &vfs) < 0)
    return UINT64_MAX;
  return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

/* Checked again every this many bytes of a body: a chunked upload has no length to check first. */
#define FREE_SPACE_CHECK_BYTES (UINT64_C(8) << 20)

void op__upload_destroy(op__upload_t *u) {
  if (u == NULL)
    return;
  release_slot(u);
  if (u->pp != NULL)
    MHD_destroy_post_processor(u->pp);
  if (u->fd >= 0)
    close(u->fd);
  /* An upload that never became a task leaves nothing behind. */
  if (u->dir != NULL && u->id[0] != '\0')
    op_remove_tree(u->dir);
  free(u->dir);
  json_decref(u->params);
  free(u);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  json_t *params = cls;
  json_object_set_new(params, key, op_utf8_json(value));
  return MHD_YES;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size) {
  (void)kind;
  (void)content_type;
  (void)transfer_encoding;
  op__upload_t *u = cls;
  if (strcmp(key, "file") == 0) {
    if (off == 0 && u->file_bytes > 0 && u->failed_status == 0) { /* a second part: never one input of two */
      u->failed_status = 400;
      snprintf(u->failed_detail, sizeof u->failed_detail, "the form has more than one \"file\" field");
    }
    if (u->failed_status != 0)
      return MHD_YES;
    if (off == 0 && filename != NULL)
      op_utf8_copy(u->title, sizeof u->title, filename);
    u->got_file = 1;
    u->bytes += size;
    u->file_bytes += size;
    return size == 0 || write_all(u->fd, data, size) == 0 ? MHD_YES : MHD_NO;
  }
  /* A short option value; longer ones are bad options anyway. */
  const char *old = json_string_value(json_object_get(u->params, key));
  char buf[512];
  snprintf(buf, sizeof buf, "%s%.*s", off > 0 && old ? old : "", (int)size, data);
  json_object_set_new(u->params, key, op_utf8_json(buf));
  return MHD_YES;
}

static enum MHD_Result refuse(op__req_t *q, unsigned status, const char *detail, const char *h1, const char *v1) {
  q->refused = 1;
  return op__send_problem(q, status, detail, NULL, h1, v1);
}

/* How many of owner's tasks are queued or running, counted up to limit. */
static int count_unfinished(op_store_t *st, const char *owner, unsigned limit, size_t *n, op_error_t *err) {
  static const char *const unfinished[] = {"queued", "running"};
  *n = 0;
  for (size_t k = 0; k < 2 && *n < limit; k++) {
    op_task_row_t *rows = NULL;
    size_t got = 0;
    int rc = op_store_task_list(st, unfinished[k], owner, "", (int)(limit - *n), &rows, &got, err);
    free(rows);
    if (rc < 0)
      return rc;
    *n += got;
  }
  return 0;
}

enum MHD_Result op__upload_start(op__req_t *q) {
  op_service_t *svc = q->http->svc;
  struct MHD_Connection *c = q->conn;
  const op_service_config_t *cfg = op_service_config(svc);
  op__upload_t *u = q->upload = calloc(1, sizeof *u);
  if (u == NULL)
    return MHD_NO;
  u->http = q->http;
  u->fd = -1;
  if (op_service_draining(svc))
    return refuse(q, 503, "the server is shutting down", "Retry-After", "10");
  if (op_service_refusing(svc))
    return refuse(q, 503,
                  "memory is critical and nothing is left to free; work already accepted goes on, "
                  "try again later (see GET /v1/memory)",
                  "Retry-After", "5");
  const op__token_t *who = q->http->auth ? q->token : NULL;
  u->max_bytes = cfg->limits.max_input_bytes;
  if (who != NULL && who->max_bytes > 0 && who->max_bytes < u->max_bytes)
    u->max_bytes = who->max_bytes;
  const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != NULL && strtoull(length, NULL, 10) > u->max_bytes) {
    char detail[160];
    snprintf(detail, sizeof detail, "the body is %.40s bytes, over the limit of %llu%s", length,
             (unsigned long long)u->max_bytes,
             u->max_bytes < cfg->limits.max_input_bytes ? " (the token's quota)" : "");
    return refuse(q, 413, detail, NULL, NULL);
  }
  uint64_t need = length != NULL ? strtoull(length, NULL, 10) : 0, avail = free_bytes(cfg->data_dir);
  if (cfg->min_free_bytes > 0 && (avail < need || avail - need < cfg->min_free_bytes)) {
    char detail[192];
    snprintf(detail, sizeof detail,
             "the server's disk is nearly full (%llu MB free, %llu MB kept free); try again later",
             (unsigned long long)(avail >> 20), (unsigned long long)(cfg->min_free_bytes >> 20));
    return refuse(q, 507, detail, "Retry-After", "60");
  }
  /* One store handle for both counts, taken before the lock (as everywhere
   * slots_lock is held with the store), given back before any answer. */
  op_store_t *st = NULL;
  op_error_t e;
  int queued = 0;
  size_t unfinished = 0;
  unsigned uploads = 0;
  int quota = who != NULL && who->max_tasks > 0;
  int rc = op_service_store_get(svc, &st, &e);
  if (rc == 0 && quota)
    rc = count_unfinished(st, who->name, who->max_tasks, &unfinished, &e);
  if (rc == 0 && !(quota && unfinished >= who->max_tasks)) {
    /* The slot is taken now, under the lock, and given back if the upload
     * fails: the queue's count and the uploads under way are one limit. */
    pthread_mutex_lock(&q->http->slots_lock);
    rc = op_store_count_status(st, "queued", &queued, &e);
    uploads = q->http->uploads;
    if (rc == 0 && (unsigned)queued + uploads < cfg->max_queue) {
      q->http->uploads++;
      u->slot = 1;
    }
    pthread_mutex_unlock(&q->http->slots_lock);
  }
  if (st != NULL)
    op_service_store_put(svc, st);
  if (rc < 0) /* before the body: nothing is accepted that could not be recorded */
    return e.code == OP_EIO ? refuse(q, 503, e.message, "Retry-After", "5") : refuse(q, 500, e.message, NULL, NULL);
  char detail[160];
  if (quota && unfinished >= who->max_tasks) {
    snprintf(detail, sizeof detail, "this token's quota of %u unfinished tasks is reached; try again when one ends",
             who->max_tasks);
    return refuse(q, 429, detail, "Retry-After", "5");
  }
  if (!u->slot) {
    snprintf(detail, sizeof detail, "the queue is full (%d tasks waiting, %u more arriving); try again later", queued,
             uploads);
    return refuse(q, 429, detail, "Retry-After", "2");
  }
  u->params = json_object();
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, u->params);
  op_service_new_id(u->id);
  u->dir = op_service_task_dir(svc, u->id);
  char path[1024];
  snprintf(path, sizeof path, "%s/input", u->dir ? u->dir : "");
  if (u->dir == NULL || mkdir(u->dir, 0700) < 0 ||
      (u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
    return refuse(q, 500, "cannot store the upload", NULL, NULL);
  const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  /* Only multipart bodies are forms; anything else is the document itself
   * (curl --data-binary sends files as x-www-form-urlencoded by default). */
  if (type != NULL && strncasecmp(type, "multipart/form-data", 19) == 0) {
    u->multipart = 1;
    u->pp = MHD_create_post_processor(c, 64 * 1024, on_form_field, u);
    if (u->pp == NULL)
      return refuse(q, 400, "malformed form body (no boundary?)", NULL, NULL);
  }
  const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
  op_utf8_copy(u->title, sizeof u->title, name ? name : "document");
  json_object_del(u->params, "name");
  return MHD_YES;
}

/* libmicrohttpd takes an answer only before or after the body, so a body
 * found bad while it arrives is drained and answered at its end; one that
 * runs far past the limit without a Content-Length gets its connection cut. */
enum MHD_Result op__upload_chunk(op__req_t *q, const char *data, size_t size) {
  const op_service_config_t *cfg = op_service_config(q->http->svc);
  op__upload_t *u = q->upload;
  if (u->failed_status != 0) {
    u->bytes += size;
    return u->bytes > u->max_bytes + (64u << 20) ? MHD_NO : MHD_YES;
  }
  if (u->pp != NULL) {
    if (MHD_post_process(u->pp, data, size) != MHD_YES) {
      u->failed_status = 400;
      snprintf(u->failed_detail, sizeof u->failed_detail, "malformed multipart body");
    }
  } else {
    u->bytes += size;
    if (u->bytes <= u->max_bytes && write_all(u->fd, data, size) < 0) {
      u->failed_status = 500;
      snprintf(u->failed_detail, sizeof u->failed_detail, "cannot store the upload");
    }
  }
  if (u->failed_status == 0 && cfg->min_free_bytes > 0 &&
      u->bytes / FREE_SPACE_CHECK_BYTES != (u->bytes - size) / FREE_SPACE_CHECK_BYTES &&
      free_bytes(cfg->data_dir) < cfg->min_free_bytes) {
    u->failed_status = 507;
    snprintf(u->failed_detail, sizeof u->failed_detail,
             "the server's disk filled up during the upload; try again later");
  }
  if (u->failed_status == 0 && u->bytes > u->max_bytes) {
    u->failed_status = 413;
    snprintf(u->failed_detail, sizeof u->failed_detail, "the body is over the limit of %llu bytes",
             (unsigned long long)u->max_bytes);
  }
  return MHD_YES;
}

/* Records the task once the body has arrived; sync (POST /v1/ocr) waits for
 * it and answers its result. */
static enum MHD_Result finish_upload(op__req_t *q, int sync) {
  op_http_t *h = q->http;
  op__upload_t *u = q->upload;
  /* The document on the disk, and its name in the task's directory, before
   * the task is recorded and acknowledged: a power loss keeps both. */
  int synced = u->failed_status != 0 || !op_sync_full() || fsync(u->fd) == 0;
  close(u->fd);
  u->fd = -1;
  synced = synced && (u->failed_status != 0 || op_fsync_path(u->dir, 1) == 0);
  if (!synced && u->failed_status == 0) {
    u->failed_status = 500;
    snprintf(u->failed_detail, sizeof u->failed_detail, "cannot store the upload (fsync failed)");
  }
  /* The post processor ends well only after the closing boundary: a body
   * cut short is refused, not taken as whatever part of the file came. */
  int form_ended = u->pp == NULL || MHD_destroy_post_processor(u->pp) == MHD_YES;
  u->pp = NULL;
  if (u->failed_status != 0)
    return op__send_problem(q, u->failed_status, u->failed_detail, NULL, NULL, NULL);
  if (!form_ended)
    return op__send_problem(q, 400, "the multipart body ends without its closing boundary", NULL, NULL, NULL);
  if (u->multipart && !u->got_file)
    return op__send_problem(q, 400, "the form has no \"file\" field", NULL, NULL, NULL);
  json_t *options = NULL;
  int priority;
  char why[256];
  if (op__build_options(h->svc, u->params, sync, &options, &priority, why, sizeof why) < 0)
    return op__send_problem(q, 400, why, NULL, NULL, NULL);
  if (h->auth && q->token->max_pages > 0) /* stored with the task: the probe refuses a longer document */
    json_object_set_new(options, "max_pages", json_integer(q->token->max_pages));
  char path[1024];
  snprintf(path, sizeof path, "%s/input", u->dir);
  op_doc_type_t type;
  op_error_t e;
  if (op_doc_sniff_file(path, &type, NULL, &e) < 0) {
    json_decref(options);
    return op__send_problem(q, e.code == OP_EUNSUPPORTED ? 415 : 400, e.message, NULL, NULL, NULL);
  }
  double timeout_s = json_is_integer(json_object_get(options, "timeout"))
                         ? (double)json_integer_value(json_object_get(options, "timeout"))
                         : 60;
  json_object_del(options, "timeout");
  op_task_row_t row;
  memset(&row, 0, sizeof row);
  snprintf(row.id, sizeof row.id, "%s", u->id);
  row.priority = priority;
  snprintf(row.owner, sizeof row.owner, "%s", h->auth ? q->token->name : "");
  snprintf(row.title, sizeof row.title, "%s", u->title);
  snprintf(row.input_type, sizeof row.input_type, "%s", op_doc_type_name(type));
  char *text = json_dumps(options, JSON_COMPACT);
  json_decref(options);
  size_t len = text ? strlen(text) : 0;
  if (text == NULL)
    return op__send_problem(q, 500, "out of memory", NULL, NULL, NULL);
  if (len >= sizeof row.options) { /* refused, never stored cut (the codec's bounds keep it far below) */
    free(text);
    snprintf(why, sizeof why, "the options take %zu bytes, over the limit of %zu", len, sizeof row.options - 1);
    return op__send_problem(q, 400, why, NULL, NULL, NULL);
  }
  memcpy(row.options, text, len + 1);
  free(text);
  int rc = op_service_submit(h->svc, &row, &e);
  release_slot(u); /* a queued task now, counted by the store; or nothing */
  if (rc < 0)
    return op__send_store_error(q, &e);
  u->id[0] = '\0'; /* a task now: its files stay */
  if (!sync) {
    char location[96];
    snprintf(location, sizeof location, "/v1/tasks/%s", row.id);
    return op__send_json(q, 202, op_service_task_json(&row), "Location", location);
  }
  int waited = op__task_wait_finished(q, row.id, timeout_s, &row);
  if (waited == -2)
    return MHD_NO; /* the client left: the task goes on, GET /v1/tasks/ID has it */
  if (waited < 0)
    return op__send_problem(q, 504, "the task did not finish in time; it goes on", json_pack("{s:s}", "id", row.id),
                            NULL, NULL);
  if (row.status != OP_TASK_SUCCEEDED)
    return op__send_problem(q, op_reason_parse(row.failure_reason) == OP_REASON_BAD_INPUT ? 422 : 500, row.error,
                            json_pack("{s:s, s:s}", "id", row.id, "failure_reason", row.failure_reason), NULL, NULL);
  return op__task_send_result(q, &row, op__task_first_format(&row));
}

enum MHD_Result op__upload_submit(op__req_t *q) {
  return finish_upload(q, 0);
}

enum MHD_Result op__upload_ocr(op__req_t *q) {
  return finish_upload(q, 1);
}
