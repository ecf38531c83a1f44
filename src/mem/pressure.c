/* pressure.c: a device's pressure level, cooldown, refusal and sample history. */
#include "mem/pressure.h"

#include <string.h>

#include "util/log.h"

void op_pressure_init(op_pressure_t *p, double warning_share, double critical_share, double cooldown_s) {
  memset(p, 0, sizeof *p);
  p->warning_share = warning_share;
  p->critical_share = critical_share;
  p->cooldown_s = cooldown_s;
}

unsigned op_pressure_sample(op_pressure_t *p, double now, uint64_t used, uint64_t reserved, uint64_t budget) {
  p->ring[p->ring_next].t = now;
  p->ring[p->ring_next].used = used;
  p->ring[p->ring_next].reserved = reserved;
  p->ring_next = (p->ring_next + 1) % OP_PRESSURE_HISTORY;
  p->ring_n += p->ring_n < OP_PRESSURE_HISTORY;
  op_mem_level_t level = op_mem_level(used, budget, p->warning_share, p->critical_share);
  unsigned flags = 0;
  char u[32], b[32];
  op_mem_format(used, u, sizeof u);
  op_mem_format(budget, b, sizeof b);
  if (level != p->level) {
    if (level > p->level) {
      p->warnings += level == OP_MEM_WARNING;
      p->criticals += level == OP_MEM_CRITICAL;
      op_log_warn("memory: %s: %s in use of the %s budget", op_mem_level_name(level), u, b);
    } else {
      op_log_info("memory: back to %s: %s in use of the %s budget", op_mem_level_name(level), u, b);
    }
    p->level = level;
    p->level_since = now;
    flags |= OP_PRESSURE_CHANGED;
  }
  if (level == OP_MEM_CRITICAL && now - p->last_action_s >= p->cooldown_s) {
    p->last_action_s = now;
    flags |= OP_PRESSURE_ACT;
  }
  if (p->refusing && level < OP_MEM_CRITICAL && now - p->level_since >= p->cooldown_s) {
    p->refusing = 0;
    flags |= OP_PRESSURE_CHANGED;
    op_log_info("memory: below critical for %.0f s: submissions are accepted again", p->cooldown_s);
  }
  return flags;
}

unsigned op_pressure_acted(op_pressure_t *p, int actions) {
  if (actions > 0 || p->refusing)
    return 0;
  p->refusing = 1;
  op_log_warn("memory: critical with nothing idle left to free: new submissions are refused until it passes");
  return OP_PRESSURE_CHANGED;
}

json_t *op_pressure_history_json(const op_pressure_t *p, unsigned every, unsigned last) {
  json_t *samples = json_array();
  unsigned n = p->ring_n < last ? p->ring_n : last;
  for (unsigned k = 0; k < n; k += every ? every : 1) {
    unsigned i = (p->ring_next + OP_PRESSURE_HISTORY - n + k) % OP_PRESSURE_HISTORY;
    json_array_append_new(
        samples, json_pack("[f, I, I]", p->ring[i].t, (json_int_t)p->ring[i].used, (json_int_t)p->ring[i].reserved));
  }
  return samples;
}
