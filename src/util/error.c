/* error.c: filling op_error_t and naming codes. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/utf8.h"

void op_error_clear(op_error_t *err) {
  if (err == NULL)
    return;
  err->code = 0;
  err->why = OP_REASON_NONE;
  err->reason[0] = '\0';
  err->message[0] = '\0';
}

static const char *const reason_names[OP_REASON_COUNT] = {"",
                                                          "internal",
                                                          "bad_input",
                                                          "bad_options",
                                                          "bad_config",
                                                          "invalid_request",
                                                          "not_found",
                                                          "timeout",
                                                          "worker_crashed",
                                                          "out_of_memory",
                                                          "memory_limit_exceeded",
                                                          "model_unavailable",
                                                          "device_unavailable",
                                                          "no_gpu",
                                                          "cancelled",
                                                          "queue_timeout",
                                                          "store_failed",
                                                          "engine_failed",
                                                          "sandbox_violation"};

const char *op_reason_name(op_reason_t r) {
  return (unsigned)r < OP_REASON_COUNT ? reason_names[r] : "internal";
}

op_reason_t op_reason_parse(const char *name) {
  for (unsigned r = 1; name != NULL && r < OP_REASON_COUNT; r++)
    if (strcmp(reason_names[r], name) == 0)
      return (op_reason_t)r;
  return OP_REASON_INTERNAL;
}

const char *op_error_reason_for(int code) {
  switch (code) {
  case OP_EUSAGE:
    return "bad_options";
  case OP_EBADINPUT:
  case OP_EUNSUPPORTED:
  case OP_ELIMIT:
    return "bad_input";
  case OP_ECRASH:
    return "worker_crashed";
  case OP_ETIMEOUT:
    return "timeout";
  case OP_ENOMEM:
    return "out_of_memory";
  case OP_EENGINE:
    return "engine_failed";
  default:
    return "internal";
  }
}

int op_error_set(op_error_t *err, int code, const char *reason, const char *fmt, ...) {
  if (err == NULL)
    return code;
  err->code = code;
  err->why = op_reason_parse(reason ? reason : op_error_reason_for(code));
  snprintf(err->reason, sizeof err->reason, "%s", op_reason_name(err->why));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  /* Messages quote files and libraries and end up in JSON and the store,
   * which take only UTF-8; the cut above may also split a character. */
  if (!op_utf8_valid(err->message)) {
    char copy[sizeof err->message];
    op_utf8_copy(copy, sizeof copy, err->message);
    memcpy(err->message, copy, sizeof copy);
  }
  return code;
}

const char *op_strerror(int code) {
  switch (code) {
  case OP_OK:
    return "ok";
  case OP_ENOMEM:
    return "out of memory";
  case OP_EIO:
    return "input/output error";
  case OP_EUSAGE:
    return "usage error";
  case OP_EBADINPUT:
    return "bad input";
  case OP_EUNSUPPORTED:
    return "unsupported type";
  case OP_ELIMIT:
    return "over a limit";
  case OP_EENGINE:
    return "engine failure";
  case OP_ECRASH:
    return "worker crashed";
  case OP_ETIMEOUT:
    return "timed out";
  case OP_EEOF:
    return "connection closed";
  case OP_EPROTO:
    return "protocol error";
  default:
    return "internal error";
  }
}
