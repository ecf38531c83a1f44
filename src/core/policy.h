/*
 * policy.h: the models a server declares, and how their workers live.
 *
 * From the configuration's `models:` list. A task names one (`model=NAME`),
 * or its engine and languages pick the first that matches; anything else
 * runs under the defaults below.
 */
#ifndef OCRPOOL_CORE_POLICY_H
#define OCRPOOL_CORE_POLICY_H

#include <stdint.h>

#include "util/config.h"
#include "util/error.h"

typedef struct op_model_policy_s {
  char name[64];
  char engine[16];         /**< "tesseract" */
  char lang[128];          /**< "eng", "deu+eng" */
  char device[16];         /**< "cpu" */
  double keep_alive_s;     /**< unloaded after this long unused; default 300 */
  int preload;             /**< loaded at start; default no */
  unsigned max_concurrent; /**< pages of it at once; 0 = no limit */
  char fallback[64];       /**< the model to retry on after an out-of-memory failure; "" = none */
  uint64_t memory_limit;   /**< its workers' hard cap in bytes; 0 = none */
  unsigned batch;          /**< the batch size a page starts with (halved after each OOM); default 1 */
  /* recycling */
  unsigned max_tasks;         /**< a worker exits after this many tasks; 0 = never */
  uint64_t max_memory_growth; /**< ... or after growing this much since its first page; 0 = never */
  double idle_exit_s;         /**< ... or after this long idle; 0 = never */
  int isolate_per_task;       /**< a fresh worker for every task, which exits after it */
} op_model_policy_t;

/** The defaults: tesseract eng on the cpu, keep_alive 5 min, nothing else. */
void op_model_policy_init(op_model_policy_t *p);

/**
 * Reads the `models:` list of cfg into a new array (*n entries; NULL, 0 when
 * none). A memory_limit given as a share ("25%", "0.25") is of capacity.
 */
int op_model_policies_load(const op_config_t *cfg, uint64_t capacity, op_model_policy_t **out, unsigned *n,
                           op_error_t *err);

/** The policy named name, or NULL. */
const op_model_policy_t *op_model_policy_named(const op_model_policy_t *p, unsigned n, const char *name);

/** The first policy for engine and lang, or NULL. */
const op_model_policy_t *op_model_policy_find(const op_model_policy_t *p, unsigned n, const char *engine,
                                              const char *lang);

#endif
