/*
 * lifecycle.h - graceful shutdown (SIGINT, SIGTERM, ms.shutdown), SIGHUP's
 * profile reload and the reports of stalled workers.
 */
#ifndef MS_AGENTS_LIFECYCLE_H
#define MS_AGENTS_LIFECYCLE_H

#include "ms.h"

/* Starts a graceful shutdown (idempotent): every agent runs its
 * ms.on_shutdown handlers and ends.  timeout < 0: the profile's. */
void lifecycle_begin_shutdown(const char *reason, double timeout);
/* ms-host: watches SIGINT, SIGTERM and SIGHUP and enforces the deadline. */
int lifecycle_start(ms_error *err);
/* ms_config.on_stall for hosts: names the agent, reports, publishes. */
void lifecycle_on_stall(void *ud, const ms_stall *st);
/* SIGHUP: re-reads the profile; applies the live settings, names the ones
 * that need a restart.  Runs on the blocking pool. */
void lifecycle_reload_profile(void);

#endif
