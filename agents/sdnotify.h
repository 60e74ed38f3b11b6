/*
 * sdnotify.h - systemd's readiness protocol (sd_notify(3)), without
 * libsystemd: one datagram per state change to the AF_UNIX socket named
 * by $NOTIFY_SOCKET.  Without $NOTIFY_SOCKET every call does nothing.
 *
 *   READY=1      ms-host run's main agent is running; again after a reload
 *   RELOADING=1  a SIGHUP reload of the profile begins (with MONOTONIC_USEC)
 *   STOPPING=1   the host begins to shut down (once)
 *   WATCHDOG=1   every half $WATCHDOG_USEC, from the lifecycle task, and
 *                only while the health monitor reports no stalled worker
 */
#ifndef MS_AGENTS_SDNOTIFY_H
#define MS_AGENTS_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Reads $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID.  Call once, from
 * the main thread before the runtime starts (getenv is not safe against
 * threads that change the environment). */
void sdnotify_init(void);
/* Sends state (e.g. "READY=1"); errors are ignored, as sd_notify's are
 * by most callers: systemd may have gone, and the host goes on. */
void sdnotify_send(const char *state);
/* STOPPING=1, the first time only. */
void sdnotify_stopping(void);
/* How often to send WATCHDOG=1 (half of $WATCHDOG_USEC) in ms; 0: never. */
uint64_t sdnotify_watchdog_ms(void);
/* Workers the health monitor reports stuck now (lifecycle_on_stall
 * counts them); the watchdog is not fed while there is one. */
void sdnotify_worker_stalled(bool stalled);
bool sdnotify_workers_progress(void);

#endif
