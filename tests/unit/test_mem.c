/* test_mem.c: capacity, usage, budgets and learned estimates, on this machine's real /proc. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem/estimate.h"
#include "mem/mem.h"

#define MB (UINT64_C(1) << 20)

static void test_probes(void) {
  uint64_t total = op_mem_total(), cap = op_mem_cpu_capacity(), limit = op_mem_cgroup_limit();
  CHECK(total > 64 * MB);
  CHECK(cap > 0 && cap <= total);
  CHECK(limit == 0 || cap <= limit);
  /* Our own PSS grows when we touch 32 MB of our own, and RSS too. */
  uint64_t before = op_mem_pss(getpid());
  CHECK(before > 0 && op_mem_rss(getpid()) >= before);
  size_t len = 32 * MB;
  char *block = malloc(len);
  CHECK(block != NULL);
  if (block != NULL) {
    memset(block, 1, len);
    uint64_t after = op_mem_pss(getpid());
    CHECK(after >= before + 30 * MB);
    free(block);
  }
  CHECK(op_mem_pss(0x7ffffff0) == 0); /* no such process */
}

static void test_budgets(void) {
  op_error_t e;
  uint64_t b = 0;
  uint64_t cap = 1000 * MB;
  CHECK(op_mem_budget_parse("80%", cap, &b, &e) == 0 && b == 800 * MB);
  CHECK(op_mem_budget_parse("0.5", cap, &b, &e) == 0 && b == 500 * MB);
  CHECK(op_mem_budget_parse("100%", cap, &b, &e) == 0 && b == cap);
  CHECK(op_mem_budget_parse("300MB", cap, &b, &e) == 0 && b == 300 * MB);
  CHECK(op_mem_budget_parse("0.5G", cap, &b, &e) == 0 && b == 512 * MB);
  CHECK(op_mem_budget_parse("2GB", cap, &b, &e) == OP_EUSAGE && strstr(e.message, "more than this device has"));
  CHECK(op_mem_budget_parse("0%", cap, &b, &e) == OP_EUSAGE);
  CHECK(op_mem_budget_parse("150%", cap, &b, &e) == OP_EUSAGE && strstr(e.message, "at most 100%"));
  CHECK(op_mem_budget_parse("lots", cap, &b, &e) == OP_EUSAGE && strstr(e.message, "expected a size"));
  CHECK(op_mem_budget_parse("", cap, &b, &e) == OP_EUSAGE);
  CHECK(op_mem_budget_parse("0", cap, &b, &e) == OP_EUSAGE);

  CHECK(op_mem_level(10, 100, 0.8, 0.95) == OP_MEM_OK);
  CHECK(op_mem_level(80, 100, 0.8, 0.95) == OP_MEM_WARNING);
  CHECK(op_mem_level(99, 100, 0.8, 0.95) == OP_MEM_CRITICAL);
  CHECK_STR_EQ(op_mem_level_name(OP_MEM_CRITICAL), "critical");

  char buf[32];
  op_mem_format(300 * MB, buf, sizeof buf);
  CHECK_STR_EQ(buf, "300 MB");
  op_mem_format(1536 * MB, buf, sizeof buf);
  CHECK_STR_EQ(buf, "1.5 GB");
}

static void test_estimates(void) {
  op_estimates_t *est = op_estimates_create(1.25);
  CHECK(est != NULL);
  if (est == NULL)
    return;
  /* The priors the issue measured for Tesseract, with the 25 % margin. */
  uint64_t letter = op_estimate_page(est, "tesseract", "eng", 2550u * 3300u, 1);
  CHECK(letter > 35 * MB && letter < 60 * MB);
  uint64_t enormous = op_estimate_page(est, "tesseract", "eng", 9000u * 9000u, 24);
  CHECK(enormous > 1300 * MB && enormous < 2000 * MB);
  CHECK(op_estimate_page(est, "tesseract", "eng", 1000, 8) < op_estimate_page(est, "tesseract", "eng", 1000000, 8));
  CHECK(op_estimate_model(est, "tesseract", "eng") == 40 * MB);
  CHECK(op_estimate_worker(est) == 16 * MB);

  /* A heavier measurement raises the figure at once. */
  op_estimates_learn_page(est, "tesseract", "eng", 2550u * 3300u, 1, 80 * MB);
  uint64_t raised = op_estimate_page(est, "tesseract", "eng", 2550u * 3300u, 1);
  CHECK(raised >= 100 * MB);
  /* A lighter one lowers it by a tenth of the difference only. */
  op_estimates_learn_page(est, "tesseract", "eng", 2550u * 3300u, 1, 10 * MB);
  uint64_t lowered = op_estimate_page(est, "tesseract", "eng", 2550u * 3300u, 1);
  CHECK(lowered < raised && lowered > raised * 8 / 10);
  /* Other classes and models keep their priors. */
  CHECK(op_estimate_page(est, "tesseract", "eng", 9000u * 9000u, 24) == enormous);
  CHECK(op_estimate_page(est, "tesseract", "deu", 2550u * 3300u, 1) == letter);

  op_estimates_learn_model(est, "tesseract", "deu", 70 * MB);
  CHECK(op_estimate_model(est, "tesseract", "deu") == 70 * MB);
  /* An unmeasured language of the same engine weighs as the largest measured one; other engines keep their prior. */
  CHECK(op_estimate_model(est, "tesseract", "fra") == 70 * MB);
  CHECK(op_estimate_model(est, "null", "eng") == 1 * MB);
  op_estimates_learn_model(est, "tesseract", "fra", 30 * MB);
  CHECK(op_estimate_model(est, "tesseract", "fra") == 30 * MB);
  op_estimates_learn_worker(est, 5 * MB);
  CHECK(op_estimate_worker(est) == 5 * MB);
  op_estimates_destroy(est);
}

int main(void) {
  test_probes();
  test_budgets();
  test_estimates();
  return CHECK_DONE();
}
