/*
 * lifecycle.h - graceful shutdown (SIGINT, SIGTERM, ms.shutdown), SIGHUP's
 * profile reload, SIGUSR1's task dump and the reports of stalled workers.
 */
#ifndef MS_AGENTS_LIFECYCLE_H
#define MS_AGENTS_LIFECYCLE_H

#include <lua.h>

#include "ms.h"

/* Starts a graceful shutdown (idempotent): every agent runs its
 * ms.on_shutdown handlers and ends.  timeout < 0: the profile's. */
void lifecycle_begin_shutdown(const char *reason, double timeout);
/* ms-host: watches SIGINT, SIGTERM, SIGHUP and SIGUSR1 (the task dump)
 * and enforces the deadline. */
int lifecycle_start(ms_error *err);
/* ms_config.on_stall for hosts: names the agent, reports, publishes. */
void lifecycle_on_stall(void *ud, const ms_stall *st);
/* ms_config.on_starved for hosts: the stalled agent yields its worker. */
void lifecycle_on_starved(void *ud, const ms_stall *st);
/* SIGHUP: re-reads the profile; applies the live settings, names the ones
 * that need a restart.  Runs on the blocking pool. */
void lifecycle_reload_profile(void);
/* ms-host, before lifecycle_start: the resolved profile at index prof of
 * L (a state with ms.profile on its path), as the host starts with it, so
 * that SIGHUP can name the host's start-time fields (metrics_listen,
 * console, ...) a reload changes. */
void lifecycle_note_profile(lua_State *L, int prof);
/* ms-host: where SIGUSR1's task dump goes (the profile's tasks_dump_file,
 * appended to), or NULL for stderr.  Copied. */
void lifecycle_set_dump_file(const char *path);

#endif
