/*
 * preempt.h - stopping an agent inside code the JIT compiled.
 *
 * LuaJIT's traces call no hooks, so the count hook that agent_stop
 * installs never fires in a loop that runs as machine code.  What traces
 * do check, when the state was set up for LuaJIT's profiler in line mode,
 * is one bit of the state's hook mask at every change of source line: a
 * set bit makes the trace leave to the interpreter through its normal exit
 * (the snapshot restores the Lua stack), where the count hook then fires.
 * preempt.c arranges that for every agent state and sets the bit on
 * request.  Why this is safe, and its limits: docs/host.md, "Stopping
 * agents", and preempt.c's header.
 *
 * Thread-safe as documented per function.
 */
#ifndef MS_AGENTS_PREEMPT_H
#define MS_AGENTS_PREEMPT_H

#include <lua.h>
#include <luajit.h>
#include <stdbool.h>

/* Once per process (later calls return the first answer): finds the hook
 * mask's place in a state and takes LuaJIT's one profiler slot for a
 * holder state.  false: compiled code cannot be preempted in this process
 * (the LuaJIT found is laid out otherwise); everything else still works. */
bool preempt_init(void);

/* Whether preempt_init succeeded. */
bool preempt_available(void);

/* Sets up L (a state's main thread, on the thread that runs it, before it
 * compiles anything) so that its traces check the hook mask at every line.
 * Flushes the state's traces. */
void preempt_prepare(lua_State *L);

/* Makes compiled code running in L (a state's main thread) leave to the
 * interpreter at its next line.  Any thread; the caller keeps L from being
 * closed meanwhile (agent.c: under the agent's mlock) and has installed
 * the hook that is to fire there. */
void preempt_interrupt(lua_State *L);

/* Withdraws preempt_interrupt's request (the state's own thread). */
void preempt_clear(lua_State *L);

/* A sampling profile of L with LuaJIT's profiler (profiler.c), on L's own
 * thread: the holder gives up the profiler slot for it, and takes it back
 * at the stop, when L is set up again as preempt_prepare does.  mode must
 * keep line mode ('l'), or L's traces stop checking. */
void preempt_profile_start(lua_State *L, const char *mode, luaJIT_profile_callback cb,
                           void *data);
void preempt_profile_stop(lua_State *L);

#endif
