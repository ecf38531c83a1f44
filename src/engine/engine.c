/* engine.c: finding engines by name, and model identities. */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"

void op_model_spec_init(op_model_spec_t *spec) {
  memset(spec, 0, sizeof *spec);
  snprintf(spec->engine, sizeof spec->engine, "tesseract");
  snprintf(spec->lang, sizeof spec->lang, "eng");
  spec->oem = 3;
}

void op_model_spec_id(const op_model_spec_t *spec, char *buf, size_t len) {
  if (strcmp(spec->engine, "tesseract") == 0)
    snprintf(buf, len, "tesseract:%s:oem%d", spec->lang, spec->oem);
  else
    snprintf(buf, len, "%s", spec->engine);
}

const op_engine_t *op_engine_find(const char *name) {
  if (strcmp(name, op_engine_tesseract.name) == 0)
    return &op_engine_tesseract;
  if (strcmp(name, op_engine_null.name) == 0)
    return &op_engine_null;
  return NULL;
}
