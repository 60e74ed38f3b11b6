/*
 * profiler.h - a sampling profile of one agent with LuaJIT's own profiler
 * (luaJIT_profile_start in that agent's VM), as folded stacks.
 */
#ifndef MS_AGENTS_PROFILER_H
#define MS_AGENTS_PROFILER_H

#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"

#define PROFILER_MAX_SECONDS 300.0

/* Profiles the agent called name for seconds (a thread that may wait:
 * the blocking pool, never a worker).  Returns the folded stacks ("a;b;c
 * COUNT" lines, heaviest first; malloc'd) or NULL with err set: no such
 * agent, a sandboxed agent, another profile running (LuaJIT profiles one
 * VM at a time), the agent busy in one poll or gone. */
char *profiler_run(host *h, const char *name, double seconds, char *err, size_t errlen);

/* Agent thread, at a poll boundary (inside the protected poll): starts or
 * stops a profile asked of this agent.  One atomic load when none is. */
void profiler_poll(agent *a);
/* Agent thread, before its state closes: ends a profile of it. */
void profiler_on_exit(agent *a);

#endif
