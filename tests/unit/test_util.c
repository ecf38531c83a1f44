/* test_util.c: bounded number parsing, the atomic file writer and UTF-8 repair. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "util/fs.h"
#include "util/parse.h"
#include "util/utf8.h"

int main(void) {
  uint64_t v = 0;
  CHECK(op_parse_size("300", 1000, &v) == 0 && v == 300);
  CHECK(op_parse_size("256MB", UINT64_MAX, &v) == 0 && v == 256u << 20);
  CHECK(op_parse_size("1.5G", UINT64_MAX, &v) == 0 && v == 3ull << 29);
  CHECK(op_parse_size("2k", UINT64_MAX, &v) == 0 && v == 2048);
  CHECK(op_parse_size("2GiB", UINT64_MAX, &v) == 0 && v == 2ull << 30);
  CHECK(op_parse_size("300i", UINT64_MAX, &v) == -1); /* "i" only after a unit */
  CHECK(op_parse_size("1001", 1000, &v) == -1);       /* over the bound */
  CHECK(op_parse_size("1e30", UINT64_MAX, &v) == -1); /* would overflow the conversion */
  CHECK(op_parse_size("1.5", UINT64_MAX, &v) == -1);  /* a fraction of a count */
  CHECK(op_parse_size("-5", UINT64_MAX, &v) == -1);
  CHECK(op_parse_size("5X", UINT64_MAX, &v) == -1);
  CHECK(op_parse_size("", UINT64_MAX, &v) == -1);

  /* The atomic writer: the destination appears only when the write succeeded. */
  const char *dest = "/tmp/ocrpool-unit-atomic.txt";
  remove(dest);
  char *tmp;
  FILE *f = op_atomic_create(dest, &tmp);
  CHECK(f != NULL);
  fputs("half", f);
  CHECK(access(dest, F_OK) != 0);
  CHECK(op_atomic_finish(f, tmp, dest, 0) == -1 && access(dest, F_OK) != 0);
  f = op_atomic_create(dest, &tmp);
  fputs("whole", f);
  CHECK(op_atomic_finish(f, tmp, dest, 1) == 0);
  char buf[16] = "";
  FILE *in = fopen(dest, "r");
  CHECK(in != NULL && fgets(buf, sizeof buf, in) != NULL);
  if (in)
    fclose(in);
  CHECK_STR_EQ(buf, "whole");
  remove(dest);

  /* UTF-8: what jansson and PostgreSQL refuse is repaired, what they take is kept. */
  CHECK(op_utf8_valid("plain") && op_utf8_valid("caf\xC3\xA9"
                                                " \xE2\x82\xAC \xF0\x9F\x98\x80"));
  CHECK(!op_utf8_valid("\xFF\xFE"));
  CHECK(!op_utf8_valid("\xC0\xAF"));         /* an overlong "/" */
  CHECK(!op_utf8_valid("\xED\xA0\x80"));     /* a surrogate */
  CHECK(!op_utf8_valid("\xF4\x90\x80\x80")); /* past U+10FFFF */
  CHECK(!op_utf8_valid("caf\xC3"));          /* cut inside a character */
  char u[16];
  CHECK(op_utf8_copy(u, sizeof u,
                     "a\xFF"
                     "b") == 5);
  CHECK_STR_EQ(u, "a\xEF\xBF\xBD"
                  "b");
  CHECK(op_utf8_copy(u, 6, "abcd\xC3\xA9") == 4); /* cut before the character, not in it */
  CHECK_STR_EQ(u, "abcd");
  CHECK(op_utf8_copy(u, sizeof u, NULL) == 0 && u[0] == '\0');
  json_t *j = op_utf8_json("\xFF\xFE"
                           "bad");
  CHECK(j != NULL && strcmp(json_string_value(j), "\xEF\xBF\xBD\xEF\xBF\xBD"
                                                  "bad") == 0);
  json_decref(j);
  return CHECK_DONE();
}
