/*
 * log.h: one line per event on stderr: time, level, component (the process's
 * role), pid, task and page where they apply, and the message; logfmt by
 * default, JSON with OCRPOOL_LOG_FORMAT=json (or serve's --log-format).
 *
 * The level is set at start (OCRPOOL_LOG_LEVEL or a flag) and may change at
 * run time (SIGHUP reload). Workers log to the same stderr as their
 * supervisor, so each line names its process.
 */
#ifndef OCRPOOL_UTIL_LOG_H
#define OCRPOOL_UTIL_LOG_H

typedef enum { OP_LOG_DEBUG = 0, OP_LOG_INFO, OP_LOG_WARN, OP_LOG_ERROR, OP_LOG_OFF } op_log_level_t;

typedef enum { OP_LOG_LOGFMT = 0, OP_LOG_JSON } op_log_format_t;

/**
 * Sets the minimum level printed and the component named on each line ("ocr",
 * "serve", "worker0"); the format comes from OCRPOOL_LOG_FORMAT (logfmt when
 * unset or unknown).
 */
void op_log_init(op_log_level_t level, const char *role);

/** Changes the minimum level (a reload). */
void op_log_set_level(op_log_level_t level);

/** "logfmt" or "json"; -1 when unknown. */
int op_log_format_parse(const char *s);

/** Sets the format (children started later inherit it through OCRPOOL_LOG_FORMAT). */
void op_log_set_format(op_log_format_t format);

/** Like op_log, with the task (its id; NULL for none) and page (1-based; 0 for none) as fields. */
void op_log_task(op_log_level_t level, const char *task, unsigned page, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

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
