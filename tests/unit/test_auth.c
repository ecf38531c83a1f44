/* test_auth.c: the tokens file's quotas, and the per-token request rate
 * counted at given instants (so that no clock decides the outcome). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "http/auth.h"

#define S UINT64_C(1000000000)

static char dir[] = "/tmp/ocrpool-unit-auth-XXXXXX";

/* Loads a file of the given text; 0 or the error's code, with its message in msg. */
static int load(const char *text, op__tokens_t *tokens, char *msg, size_t len) {
  char path[64];
  snprintf(path, sizeof path, "%s/tokens", dir);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  chmod(path, 0600); /* tokens are secrets: a file others can read is warned about */
  op_error_t e;
  int rc = op__tokens_load(path, tokens, &e);
  (void)len;
  strcpy(msg, rc < 0 ? e.message : "");
  return rc;
}

static const char *ALICE = "alice-0123456789abcdef0123456789";
static const char *BOB = "bob-0123456789abcdef0123456789ab";

static const op__token_t *find(const op__tokens_t *tokens, const char *token) {
  char header[160];
  snprintf(header, sizeof header, "Bearer %s", token);
  return op__tokens_check(tokens, header);
}

int main(void) {
  if (mkdtemp(dir) == NULL)
    return 1;
  op__tokens_t t, fresh;
  char msg[sizeof((op_error_t *)0)->message];

  /* rate= and burst= read as requests a second or a minute; wrong ones name the line. */
  CHECK(load("alice-0123456789abcdef0123456789 submit alice rate=5 burst=3\n"
             "bob-0123456789abcdef0123456789ab submit bob rate=30/min\n"
             "carl-0123456789abcdef0123456789a admin carl\n",
             &t, msg, sizeof msg) == 0);
  const op__token_t *a = find(&t, ALICE), *b = find(&t, BOB);
  CHECK(a != NULL && a->interval_ns == S / 5 && a->burst == 3);
  CHECK(b != NULL && b->interval_ns == 2 * S && b->burst == 1); /* a second's worth, at least one */
  const op__token_t *c = find(&t, "carl-0123456789abcdef0123456789a");
  CHECK(c != NULL && c->interval_ns == 0);
  const char *bad[] = {"rate=0", "rate=-1", "rate=5/h", "rate=x", "rate=", "burst=4", "rate=2 burst=0"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char text[160];
    snprintf(text, sizeof text, "dave-0123456789abcdef0123456789a submit dave %s\n", bad[i]);
    CHECK(load(text, &fresh, msg, sizeof msg) < 0 && strstr(msg, "line 1") != NULL);
  }

  /* alice: 5 a second, 3 at once. From a quiet start three pass at one
   * instant, the fourth waits a second (rounded up) and passes 0.2 s later. */
  uint64_t now = 1000 * S;
  CHECK(op__tokens_take(&t, a, now) == 0);
  CHECK(op__tokens_take(&t, a, now) == 0);
  CHECK(op__tokens_take(&t, a, now) == 0);
  CHECK(op__tokens_take(&t, a, now) == 1);
  CHECK(op__tokens_take(&t, a, now + S / 10) == 1); /* a refusal is not counted: still 0.1 s to go */
  CHECK(op__tokens_take(&t, a, now + S / 5) == 0);
  CHECK(op__tokens_take(&t, a, now + S / 5) == 1);
  /* Steady at the rate: each request passes, one interval after the last. */
  for (int i = 2; i < 12; i++)
    CHECK(op__tokens_take(&t, a, now + (uint64_t)i * S / 5) == 0);
  /* Bob's count is his own; at 30 a minute his second waits 2 s. */
  CHECK(op__tokens_take(&t, b, now) == 0);
  CHECK(op__tokens_take(&t, b, now) == 2);
  CHECK(op__tokens_take(&t, b, now + 2 * S) == 0);
  /* No rate, no count. */
  for (int i = 0; i < 100; i++)
    CHECK(op__tokens_take(&t, c, now) == 0);

  /* A reload (SIGHUP) carries alice's count over and forgets bob's line. */
  CHECK(load("alice-0123456789abcdef0123456789 submit alice rate=5 burst=3\n", &fresh, msg, sizeof msg) == 0);
  op__tokens_carry(&fresh, &t);
  const op__token_t *a2 = find(&fresh, ALICE);
  CHECK(a2 != NULL && find(&fresh, BOB) == NULL);
  CHECK(a2 != NULL && op__tokens_take(&fresh, a2, now + 11 * S / 5) == 1);
  CHECK(a2 != NULL && op__tokens_take(&fresh, a2, now + 100 * S) == 0); /* and a quiet spell refills it */
  op__tokens_dispose(&fresh);
  op__tokens_dispose(&t);

  char path[64];
  snprintf(path, sizeof path, "%s/tokens", dir);
  unlink(path);
  rmdir(dir);
  return CHECK_DONE();
}
