/*
 * fuzz_common.h: what the libFuzzer targets share. Parsers that read a path
 * get the input written to one file in a directory of the target's own, made
 * once per process under TMPDIR (tests/fuzz/run.sh points it at tmpfs when it
 * can).
 */
#ifndef OCRPOOL_TESTS_FUZZ_COMMON_H
#define OCRPOOL_TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/log.h"

/* libFuzzer's entry point, called with each input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file; its path, the same on every call. Aborts when it
 * cannot be written: a fuzzer that silently tests nothing is worse. */
static inline const char *fuzz_input_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[512];
  if (path[0] == '\0') {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[400];
    snprintf(dir, sizeof dir, "%s/ocrpool-fuzz.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
      abort();
    snprintf(path, sizeof path, "%s/input%s", dir, suffix);
    op_log_init(OP_LOG_OFF, "fuzz"); /* the parsers' complaints are the expected outcome */
  }
  FILE *f = fopen(path, "wb");
  if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
    abort();
  return path;
}

#endif
