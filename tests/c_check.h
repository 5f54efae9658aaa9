/* CHECK for the C99 programs that test the C ABI: counts passes and failures, prints each failure
 * with its line. A program prints "N passed, M failed" at its end and exits non-zero on any
 * failure. */
#ifndef KVRDMA_TESTS_C_CHECK_H
#define KVRDMA_TESTS_C_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      ++passed;                                                                \
    } else {                                                                   \
      ++failed;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#endif /* KVRDMA_TESTS_C_CHECK_H */
