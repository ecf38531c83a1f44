/*
 * postgres.c: the store on PostgreSQL (several nodes on one database).
 * Not written yet: opening it says so.
 */
#include "store/store_impl.h"

int op__postgres_open(const char *url, op_store_t **store, op_error_t *err) {
  (void)url;
  *store = NULL;
  return op_error_set(err, OP_EUSAGE, "bad_options", "this build of ocrpool has no PostgreSQL store yet");
}
