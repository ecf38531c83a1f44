/* notify.c: sd_notify when built with libsystemd, else nothing. */
#include "util/notify.h"

#ifdef OCRPOOL_SYSTEMD
#include <systemd/sd-daemon.h>

void op_notify(const char *state) {
  (void)sd_notify(0, state); /* a failed notification must never stop the server */
}

uint64_t op_notify_watchdog_usec(void) {
  uint64_t usec = 0;
  return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
#else
void op_notify(const char *state) {
  (void)state;
}

uint64_t op_notify_watchdog_usec(void) {
  return 0;
}
#endif
