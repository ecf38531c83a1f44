/* parse.c: bounded number parsing, so an option can never overflow into undefined behaviour. */
#include "util/parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int op_parse_size(const char *s, uint64_t max, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s)
    return -1;
  int fraction = memchr(s, '.', (size_t)(end - s)) != NULL || memchr(s, 'e', (size_t)(end - s)) != NULL ||
                 memchr(s, 'E', (size_t)(end - s)) != NULL;
  double mult = 1;
  if (*end == 'K' || *end == 'k')
    mult = 1024.0, end++;
  else if (*end == 'M' || *end == 'm')
    mult = 1024.0 * 1024, end++;
  else if (*end == 'G' || *end == 'g')
    mult = 1024.0 * 1024 * 1024, end++;
  if (mult > 1 && *end == 'i') /* "GiB": the same powers of 1024 */
    end++;
  if (*end == 'B' || *end == 'b')
    end++;
  if (*end != '\0' || (fraction && mult == 1))
    return -1;
  double bytes = v * mult;
  if (bytes > (double)max) /* before the conversion: a double too large for uint64_t is undefined */
    return -1;
  *out = (uint64_t)bytes;
  return 0;
}
