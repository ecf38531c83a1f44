/*
 * utf8.c: validation and repair of UTF-8 (RFC 3629). An invalid byte becomes
 * U+FFFD, as browsers and Python's "replace" do, so the text stays readable
 * and the reader can see that something was replaced.
 */
#include "util/utf8.h"

#include <stdlib.h>
#include <string.h>

/* The length of the valid sequence at s (1 to 4), or 0 when s[0] starts none. */
static size_t sequence_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
    hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    lo = c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
  } else
    return 0;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return n;
}

int op_utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p != '\0') {
    size_t n = sequence_len(p);
    if (n == 0)
      return 0;
    p += n;
  }
  return 1;
}

size_t op_utf8_copy(char *dst, size_t cap, const char *src) {
  static const char replacement[] = "\xEF\xBF\xBD";
  const unsigned char *p = (const unsigned char *)(src ? src : "");
  size_t len = 0;
  while (*p != '\0') {
    size_t n = sequence_len(p);
    const char *from = n ? (const char *)p : replacement;
    size_t take = n ? n : 3;
    if (len + take >= cap)
      break;
    memcpy(dst + len, from, take);
    len += take;
    p += n ? n : 1;
  }
  dst[len] = '\0';
  return len;
}

json_t *op_utf8_json(const char *s) {
  if (s == NULL)
    s = "";
  if (op_utf8_valid(s))
    return json_string(s);
  size_t cap = strlen(s) * 3 + 1; /* each byte at most becomes U+FFFD */
  char *copy = malloc(cap);
  if (copy == NULL)
    return NULL;
  op_utf8_copy(copy, cap, s);
  json_t *j = json_string(copy);
  free(copy);
  return j;
}
