/* test_util.c: bounded number parsing and the atomic file writer. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "util/fs.h"
#include "util/parse.h"

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
  return CHECK_DONE();
}
