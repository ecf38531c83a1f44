/*
 * fuzz_config.c: the YAML configuration file (docs/configuration.md) as the
 * server reads it at start and on SIGHUP: parsed, checked key by key, the
 * budget and the models' policies resolved. A file is read or refused with
 * FILE:LINE and a reason; it never crashes the server or leaks.
 */
#include <string.h>

#include "core/settings.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  op_service_config_t cfg = {0}; /* the flags' defaults: none given */
  cfg.config_file = fuzz_input_file(data, size, ".yaml");
  op_settings_t settings;
  op_error_t err;
  if (op_settings_read(&cfg, &settings, &err) == 0) {
    op_settings_t again;
    /* A reload of the same file: read the same way. */
    if (op_settings_reread(&settings, &cfg, &again, &err) != 0 || again.n_policies != settings.n_policies ||
        again.budget != settings.budget || again.warning_share != settings.warning_share ||
        again.critical_share != settings.critical_share || again.cooldown_s != settings.cooldown_s ||
        again.defer_below != settings.defer_below || strcmp(again.log_level_text, settings.log_level_text) != 0 ||
        strcmp(again.gpu_budget_text, settings.gpu_budget_text) != 0)
      abort();
    for (unsigned i = 0; i < settings.n_policies; i++)
      if (strcmp(again.policies[i].name, settings.policies[i].name) != 0 ||
          again.policies[i].memory_limit != settings.policies[i].memory_limit)
        abort();
    op_settings_dispose(&again);
  } else if (err.message[0] == '\0') {
    abort(); /* refused without a reason */
  }
  op_settings_dispose(&settings);
  return 0;
}
