/* error.c: filling op_error_t and naming codes. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void op_error_clear(op_error_t *err) {
  if (err == NULL)
    return;
  err->code = 0;
  err->reason[0] = '\0';
  err->message[0] = '\0';
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
  default:
    return "internal";
  }
}

int op_error_set(op_error_t *err, int code, const char *reason, const char *fmt, ...) {
  if (err == NULL)
    return code;
  err->code = code;
  snprintf(err->reason, sizeof err->reason, "%s", reason ? reason : op_error_reason_for(code));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
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
