/* parse.h: numbers from command lines and configuration, bounded. */
#ifndef OCRPOOL_UTIL_PARSE_H
#define OCRPOOL_UTIL_PARSE_H

#include <stdint.h>

/**
 * Parses a count or a size: digits with an optional K, M or G suffix (powers
 * of 1024, "Ki", "Mi", "Gi" too) and an optional B ("256MB", "2GiB", "1.5G", "300"). A fraction needs a
 * suffix. Returns -1 for anything else or a value over max.
 */
int op_parse_size(const char *s, uint64_t max, uint64_t *out);

#endif
