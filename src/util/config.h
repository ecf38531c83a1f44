/*
 * config.h: the YAML configuration file, read into a tree of JSON values.
 *
 * Mappings become objects, sequences arrays, scalars strings (or null for
 * "~" and empty values; the word null stays a word: `engine: null`); each value remembers its line, so that a bad
 * value stops start-up with file:line and the reason. The typed readers below
 * parse sizes, durations and shares the same way everywhere.
 */
#ifndef OCRPOOL_UTIL_CONFIG_H
#define OCRPOOL_UTIL_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"

typedef struct op_config_s op_config_t;

/** Reads and parses path. OP_EUSAGE with "file:line: reason" on a syntax error. */
int op_config_load(const char *path, op_config_t **cfg, op_error_t *err);

/**
 * Overlays the environment: for each dotted key ("devices.cpu.budget"), the
 * variable OCRPOOL_DEVICES_CPU_BUDGET, when set, replaces or adds the file's
 * value (sections are made as needed; a bad value's error names the
 * variable). *cfg may be NULL (no file): an empty configuration is made.
 */
int op_config_env(op_config_t **cfg, const char *const *keys, op_error_t *err);

/** Where a dotted key's value comes from: "env", "file", or NULL when unset. */
const char *op_config_source(const op_config_t *cfg, const char *dotted);

/** The file's path, or "(no file)". */
const char *op_config_path(const op_config_t *cfg);

/** Frees cfg; NULL is fine. */
void op_config_free(op_config_t *cfg);

/** The document's top value (an object, or NULL for an empty file). Borrowed. */
json_t *op_config_root(const op_config_t *cfg);

/** Sets err to "file:line: what" for the value v (one of the tree's) and returns OP_EUSAGE. */
int op_config_error(const op_config_t *cfg, json_t *v, op_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * Checks that the object at v has only the keys in allowed (NULL-ended):
 * a misspelled key is an error, not a silently ignored line.
 */
int op_config_keys(const op_config_t *cfg, json_t *v, const char *const *allowed, const char *where, op_error_t *err);

/* Typed readers: key absent (or null) leaves *out alone and returns 0. */
int op_config_string(const op_config_t *cfg, json_t *obj, const char *key, const char **out, op_error_t *err);
int op_config_bool(const op_config_t *cfg, json_t *obj, const char *key, int *out, op_error_t *err);
int op_config_uint(const op_config_t *cfg, json_t *obj, const char *key, unsigned max, unsigned *out, op_error_t *err);
/** A size: "512MB", "2GiB", "300k", "1048576". */
int op_config_size(const op_config_t *cfg, json_t *obj, const char *key, uint64_t *out, op_error_t *err);
/** A duration in seconds: "300ms", "5m", "2h", "30s", "30". */
int op_config_duration(const op_config_t *cfg, json_t *obj, const char *key, double *out, op_error_t *err);

/** Parses a duration ("300ms", "5m", "30") into seconds; -1 when it is not one. */
int op_parse_duration(const char *text, double *seconds);

#endif
