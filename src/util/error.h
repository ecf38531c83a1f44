/*
 * error.h: ocrpool's one error convention.
 *
 * Functions return 0 on success or a negative OP_E... code. Where a user needs
 * to know what went wrong, the function also fills an op_error_t with a short
 * machine reason (the task's failure_reason vocabulary) and a sentence for a
 * person. A NULL op_error_t is allowed everywhere: the details are dropped.
 */
#ifndef OCRPOOL_UTIL_ERROR_H
#define OCRPOOL_UTIL_ERROR_H

#include <stddef.h>

enum {
  OP_OK = 0,
  OP_EINTERNAL = -1,    /**< a bug or an unexpected system failure */
  OP_ENOMEM = -2,       /**< an allocation failed */
  OP_EIO = -3,          /**< reading or writing a file or socket failed */
  OP_EUSAGE = -4,       /**< bad options from the user */
  OP_EBADINPUT = -5,    /**< the document is malformed or unreadable */
  OP_EUNSUPPORTED = -6, /**< the document's type is not one we read */
  OP_ELIMIT = -7,       /**< the document passes a configured limit */
  OP_EENGINE = -8,      /**< the OCR engine failed on a page */
  OP_ECRASH = -9,       /**< a worker died while running the job */
  OP_ETIMEOUT = -10,    /**< the job ran past its timeout */
  OP_EEOF = -11,        /**< the peer closed the connection */
  OP_EPROTO = -12,      /**< a malformed protocol message */
};

/** What went wrong, for the log, the CLI and the task record. */
typedef struct op_error_s {
  int code;          /**< one of the OP_E... values, 0 when unset */
  char reason[32];   /**< failure_reason word: bad_input, timeout, worker_crashed ... */
  char message[768]; /**< a sentence for a person */
} op_error_t;

/** Clears err (no error). */
void op_error_clear(op_error_t *err);

/**
 * Records an error in err (if not NULL) and returns code, so that callers can
 * write `return op_error_set(err, OP_EBADINPUT, "bad_input", "...")`.
 * The reason defaults from the code when NULL.
 */
int op_error_set(op_error_t *err, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** The failure_reason word that goes with a code ("bad_input" for OP_EBADINPUT ...). */
const char *op_error_reason_for(int code);

/** A short English name for a code, for logs. */
const char *op_strerror(int code);

#endif
