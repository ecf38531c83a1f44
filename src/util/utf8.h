/*
 * utf8.h: text from users and libraries made valid UTF-8 before it is stored
 * or encoded. jansson refuses invalid UTF-8 (json_string answers NULL) and so
 * does a PostgreSQL UTF8 database, so one stray byte in a file name or a
 * library's message would otherwise lose a reply or a record.
 */
#ifndef OCRPOOL_UTIL_UTF8_H
#define OCRPOOL_UTIL_UTF8_H

#include <jansson.h>
#include <stddef.h>

/** Whether s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
int op_utf8_valid(const char *s);

/**
 * Copies src into dst (cap bytes, at least 1) with every byte that does not
 * start a valid UTF-8 sequence replaced by U+FFFD, and cut, if it must be, at
 * a character boundary: the copy is always valid UTF-8. Returns its length.
 */
size_t op_utf8_copy(char *dst, size_t cap, const char *src);

/** A JSON string of s made valid as op_utf8_copy does (s may be NULL: ""); NULL only when out of memory. */
json_t *op_utf8_json(const char *s);

#endif
