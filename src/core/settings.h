/*
 * settings.h: what the service runs with, read from its configuration file
 * and the environment (docs/configuration.md) over the command's flags: one
 * struct, read whole at start and again on SIGHUP, where the two are
 * compared and what may change while tasks run is applied.
 */
#ifndef OCRPOOL_CORE_SETTINGS_H
#define OCRPOOL_CORE_SETTINGS_H

#include <stdint.h>

#include "core/policy.h"
#include "core/service.h"

typedef struct op_settings_s {
  uint64_t capacity;                    /**< the CPU's: cgroup limit or MemTotal */
  uint64_t budget;                      /**< the CPU's budget in bytes */
  char budget_text[64];                 /**< devices.cpu.budget as the file gave it, "" if not */
  double warning_share, critical_share; /**< devices.cpu.warning, .critical */
  double cooldown_s;                    /**< pressure.cooldown */
  unsigned defer_below;                 /**< pressure.defer_below */
  char log_level_text[16];              /**< log.level from the file, "" if not */
  char gpu_budget_text[64];             /**< devices.cuda.budget, "" if not */
  op_model_policy_t *policies;          /**< models: (owned) */
  unsigned n_policies;
} op_settings_t;

/**
 * Reads the settings cfg names: the CPU's capacity, the defaults, the file
 * and the environment, then the budget (--memory-budget over the file's
 * devices.cpu.budget over 80 %). Dispose of *out even on failure.
 */
int op_settings_read(const op_service_config_t *cfg, op_settings_t *out, op_error_t *err);

/**
 * Reads the file again for a reload: keys the file leaves out keep the
 * values of current (not the defaults). Dispose of *fresh even on failure.
 */
int op_settings_reread(const op_settings_t *current, const op_service_config_t *cfg, op_settings_t *fresh,
                       op_error_t *err);

/**
 * Applies a reload: logs each change and copies into current what may change
 * while tasks run (log level unless a flag set it, budget, pressure, each
 * model's tunables). A new, removed or redefined model needs a restart and is
 * only logged.
 */
void op_settings_apply(op_settings_t *current, const op_settings_t *fresh, const op_service_config_t *cfg);

/** Frees what the settings own. */
void op_settings_dispose(op_settings_t *s);

#endif
