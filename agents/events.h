/*
 * events.h - the host's event bus: topics published by agents and by the
 * host itself (ms.agent.started, ms.agent.exited, ms.shutdown, ...), each
 * subscription a bounded channel.
 */
#ifndef MS_AGENTS_EVENTS_H
#define MS_AGENTS_EVENTS_H

#include <lua.h>

/* Pushes the ms.events table (subscribe, publish, stats). */
void events_push_module(lua_State *L);
/* Publishes { keys[i] = strs[i] or nums[i] } on topic, from C (any thread,
 * no Lua state). */
void events_publish_host(const char *topic, const char *const *keys, const char *const *strs,
                         const double *nums, int n);
void events_shutdown(void);

#endif
