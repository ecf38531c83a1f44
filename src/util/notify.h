/*
 * notify.h: telling systemd how the service is (Type=notify): READY once it
 * listens, STOPPING when it drains, WATCHDOG while its loop turns. Built with
 * libsystemd when the build finds it (optional); without it, or when systemd
 * did not start us (no NOTIFY_SOCKET), these do nothing.
 */
#ifndef OCRPOOL_UTIL_NOTIFY_H
#define OCRPOOL_UTIL_NOTIFY_H

#include <stdint.h>

/** Sends a state ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...") to systemd. */
void op_notify(const char *state);

/** The watchdog interval systemd wants pings within, in microseconds; 0 when none. */
uint64_t op_notify_watchdog_usec(void);

#endif
