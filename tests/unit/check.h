/*
 * check.h: the smallest test harness that reports honestly.
 *
 * CHECK(cond) records a pass or a failure with file:line and keeps going;
 * CHECK_DONE() prints "N passed, N failed" and returns the exit status.
 */
#ifndef OCRPOOL_TESTS_CHECK_H
#define OCRPOOL_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    if (cond) {                                                                                                        \
      check_passed++;                                                                                                  \
    } else {                                                                                                           \
      check_failed++;                                                                                                  \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                         \
    }                                                                                                                  \
  } while (0)

#define CHECK_STR_EQ(a, b)                                                                                             \
  do {                                                                                                                 \
    const char *check_a_ = (a), *check_b_ = (b);                                                                       \
    if (check_a_ != NULL && check_b_ != NULL && strcmp(check_a_, check_b_) == 0) {                                     \
      check_passed++;                                                                                                  \
    } else {                                                                                                           \
      check_failed++;                                                                                                  \
      fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, check_a_ ? check_a_ : "(null)",                 \
              check_b_ ? check_b_ : "(null)");                                                                         \
    }                                                                                                                  \
  } while (0)

#define CHECK_DONE()                                                                                                   \
  (printf("%d passed, %d failed\n", check_passed, check_failed), check_failed == 0 && check_passed > 0 ? 0 : 1)

#endif
