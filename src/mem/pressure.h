/*
 * pressure.h: memory pressure on a device: its level against the budget, the
 * cooldown between rounds of actions, the refusal of new work when nothing
 * is left to free, and the last five minutes of samples.
 *
 * The monitor feeds it a sample every 200 ms. When the level is critical and
 * the cooldown has passed, it asks the caller to free what it can (unload
 * idle models, recycle idle workers); when nothing could be freed, new
 * submissions are refused until the level has stayed below critical for the
 * cooldown.
 */
#ifndef OCRPOOL_MEM_PRESSURE_H
#define OCRPOOL_MEM_PRESSURE_H

#include <jansson.h>
#include <stdint.h>

#include "mem/mem.h"

#define OP_PRESSURE_HISTORY 1500 /**< samples kept: five minutes at 5 a second */

typedef struct op_pressure_s {
  double warning_share, critical_share; /**< of the budget: 0.8, 0.95 */
  double cooldown_s;                    /**< 5 */
  op_mem_level_t level;
  double level_since, last_action_s;
  int refusing;
  unsigned warnings, criticals; /**< times the level rose to each */
  struct {
    double t;
    uint64_t used, reserved;
  } ring[OP_PRESSURE_HISTORY];
  unsigned ring_next, ring_n;
} op_pressure_t;

/** What a sample changed. */
enum {
  OP_PRESSURE_CHANGED = 1, /**< the level or the refusal changed: tell the service */
  OP_PRESSURE_ACT = 2,     /**< critical and the cooldown passed: free what can be freed, then op_pressure_acted */
};

/** Fills p: level ok, the shares and cooldown given. */
void op_pressure_init(op_pressure_t *p, double warning_share, double critical_share, double cooldown_s);

/** Records a sample (used against budget) and moves the level; returns OP_PRESSURE_... flags. */
unsigned op_pressure_sample(op_pressure_t *p, double now, uint64_t used, uint64_t reserved, uint64_t budget);

/** After OP_PRESSURE_ACT: how many actions freed room; none starts refusing (returns OP_PRESSURE_CHANGED then). */
unsigned op_pressure_acted(op_pressure_t *p, int actions);

/** The last samples (up to last of them, one in every), [time, used, reserved] each (a new array). */
json_t *op_pressure_history_json(const op_pressure_t *p, unsigned every, unsigned last);

#endif
