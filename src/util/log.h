/*
 * log.h: one line per event on stderr, with level, process role and pid.
 *
 * The level is set once at start (OCRPOOL_LOG_LEVEL or a flag). Workers log to
 * the same stderr as their supervisor, so each line names its process.
 */
#ifndef OCRPOOL_UTIL_LOG_H
#define OCRPOOL_UTIL_LOG_H

typedef enum { OP_LOG_DEBUG = 0, OP_LOG_INFO, OP_LOG_WARN, OP_LOG_ERROR, OP_LOG_OFF } op_log_level_t;

/** Sets the minimum level printed and the role word shown on each line ("ocr", "worker"). */
void op_log_init(op_log_level_t level, const char *role);

/** Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int op_log_level_parse(const char *s);

/** The current minimum level. */
op_log_level_t op_log_level(void);

/** Prints one line if level is at or above the minimum. */
void op_log(op_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define op_log_debug(...) op_log(OP_LOG_DEBUG, __VA_ARGS__)
#define op_log_info(...) op_log(OP_LOG_INFO, __VA_ARGS__)
#define op_log_warn(...) op_log(OP_LOG_WARN, __VA_ARGS__)
#define op_log_error(...) op_log(OP_LOG_ERROR, __VA_ARGS__)

#endif
