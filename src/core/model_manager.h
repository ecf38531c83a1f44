/*
 * model_manager.h: the model key, the one way a model is named inside the
 * scheduler: its engine and languages. Its text form "engine:languages" is
 * made in one place (op_model_key_text) and appears only at the edges (logs,
 * JSON); inside, keys are compared as they are.
 */
#ifndef OCRPOOL_CORE_MODEL_MANAGER_H
#define OCRPOOL_CORE_MODEL_MANAGER_H

#include "engine/engine.h"

typedef struct op_model_key_s {
  char engine[sizeof(((op_model_spec_t *)0)->engine)];
  char lang[sizeof(((op_model_spec_t *)0)->lang)];
} op_model_key_t;

/** Room for a key's text form. */
#define OP_MODEL_KEY_TEXT (sizeof(op_model_key_t) + 2)

/** Sets key to engine and lang (each cut to its field; they come from a spec or a policy of the same sizes). */
void op_model_key_set(op_model_key_t *key, const char *engine, const char *lang);

/** Whether a and b name the same model. */
int op_model_key_eq(const op_model_key_t *a, const op_model_key_t *b);

/** "engine:languages" into buf (OP_MODEL_KEY_TEXT bytes); returns buf. */
const char *op_model_key_text(const op_model_key_t *key, char *buf);

#endif
