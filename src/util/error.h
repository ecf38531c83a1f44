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

/**
 * Why a task or a page failed: the failure_reason vocabulary. The program
 * decides on these; their names (op_reason_name) appear only at the edges:
 * the store, JSON, logs, metrics.
 */
typedef enum {
  OP_REASON_NONE = 0,
  OP_REASON_INTERNAL,              /**< a bug in ocrpool or an unexpected system failure */
  OP_REASON_BAD_INPUT,             /**< the document is malformed, unsupported or past a limit */
  OP_REASON_BAD_OPTIONS,           /**< the task's options are wrong */
  OP_REASON_BAD_CONFIG,            /**< the configuration is wrong */
  OP_REASON_INVALID_REQUEST,       /**< an HTTP request is malformed */
  OP_REASON_NOT_FOUND,             /**< no such task or file */
  OP_REASON_TIMEOUT,               /**< a job ran past its timeout */
  OP_REASON_WORKER_CRASHED,        /**< the page crashed its worker too often */
  OP_REASON_OUT_OF_MEMORY,         /**< the page ran out of memory on every try */
  OP_REASON_MEMORY_LIMIT_EXCEEDED, /**< the page could never fit in the budget */
  OP_REASON_MODEL_UNAVAILABLE,     /**< its model failed to load */
  OP_REASON_DEVICE_UNAVAILABLE,    /**< its device is not on this machine */
  OP_REASON_NO_GPU,                /**< a GPU was asked for and NVML has none */
  OP_REASON_CANCELLED,             /**< cancelled by a user */
  OP_REASON_QUEUE_TIMEOUT,         /**< it waited in the queue too long */
  OP_REASON_STORE_FAILED,          /**< its record could not be written to the store */
  OP_REASON_ENGINE_FAILED,         /**< the OCR engine failed on the page on every try */
  OP_REASON_SANDBOX_VIOLATION,     /**< its worker did what its sandbox forbids (a hostile document) */
  OP_REASON_COUNT
} op_reason_t;

/** The failure_reason word of r ("out_of_memory"). */
const char *op_reason_name(op_reason_t r);

/** The reason named name; OP_REASON_INTERNAL for a name not in the vocabulary. */
op_reason_t op_reason_parse(const char *name);

/** What went wrong, for the log, the CLI and the task record. */
typedef struct op_error_s {
  int code;          /**< one of the OP_E... values, 0 when unset */
  op_reason_t why;   /**< the reason, for decisions */
  char reason[32];   /**< ... and its name, for the edges (op_reason_name(why)) */
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
