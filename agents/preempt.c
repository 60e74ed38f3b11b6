/*
 * preempt.c - stopping an agent inside compiled code (see preempt.h), by
 * LuaJIT's own trace exits.
 *
 * The mechanism.  LuaJIT 2.1's profiler in line mode ('l') makes the trace
 * recorder emit a PROF guard at every change of source line (and of
 * function): `test byte [hookmask], HOOK_PROFILE; jnz exit`.  Loop
 * optimisation copies the guards into a loop's body, and every trace
 * starts with one, so every cycle of machine code passes one.  A set
 * HOOK_PROFILE (0x80) bit then takes the trace's exit: lj_trace_exit
 * restores the interpreter's stack from the exit's snapshot and, seeing
 * the bit, returns to the interpreter without recording a side trace.  The
 * count hook that agent_stop set beforehand (count 1, so before any
 * JLOOP can re-enter a trace) fires at the first instruction there and
 * yields the task out.  Nothing is abandoned: the state stays consistent,
 * and the agent ends as any stopped agent does (its finalizers run, what
 * it held is released).
 *
 * The profiler mode belongs to a state (jit_State.prof_mode), but LuaJIT
 * sets it only in luaJIT_profile_start, which then also takes the
 * process's one profiler slot and starts a SIGPROF timer, unless another
 * state holds the slot: then it returns after setting the mode.  So a
 * holder state, created here and never run, keeps the slot with an
 * interval of 2e9 ms (23 days of CPU time; a tick only marks the holder),
 * and every agent state gets line mode through that early return.  A
 * sampling profile of one agent (profiler.c) takes the slot from the
 * holder and gives it back.  All calls into LuaJIT's profiler API go
 * through slot_lock, since that API is not thread-safe; an agent's own
 * code cannot reach it (agent_jit.c refuses require "jit.profile").
 *
 * The bit.  The public API cannot set HOOK_PROFILE (lua_sethook keeps it
 * but masks what it sets), so its byte is found once, by probing: the one
 * byte of a fresh state whose low four bits follow lua_sethook's mask and
 * whose high bits stay put, over six masks.  preempt_init refuses (and
 * compiled code stays unstoppable, as before) if not exactly one byte
 * qualifies.  The byte is written with atomic read-modify-writes; LuaJIT
 * writes it plainly on the state's own thread (hooks, __gc, vmevents),
 * which can drop a bit set at that instant.  What can then happen is
 * bounded: a dropped bit only leaves compiled code running; every exit to
 * the interpreter, for whatever reason, meets the count hook; and the
 * health monitor sets the bit again at a stall (lifecycle.c).
 *
 * What the bit costs when set: with the state's dispatch in profiling
 * mode (LuaJIT updates it on its own for a new trace, a hook change, a
 * GC finalizer), the interpreter calls the profiler's callback once and
 * clears the bit.  The holder's callback does nothing; profiler.c's
 * counts a sample only of the agent it profiles.  preempt_clear takes the
 * bit off once the hook has fired.
 *
 * What the guards cost when clear: one byte test and a not-taken branch
 * per source line of compiled code (bench/run jit_guard).
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "preempt.h"

/* LuaJIT's HOOK_PROFILE bit of global_State.hookmask (lj_obj.h). */
#define HOOK_PROFILE_BIT 0x80u
/* How far into a state to look for the hook mask: global_State follows
 * lua_State at the start of LuaJIT's GG_State, and its hook mask lies
 * within its first few hundred bytes; GG_State is several KB. */
#define PROBE_BYTES 1024
/* The holder's sampling interval (ms): never, in practice. */
#define HOLDER_MODE "i2000000000"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* Written once under init_once; read after it (pthread_once orders). */
static long hookmask_offset = -1;
static lua_State *holder;
/* Serialises every call into LuaJIT's profiler API (its slot, ps->g, is
 * a plain global).  What runs under it neither allocates nor raises:
 * starting and stopping flush traces (frees), set a timer and a signal
 * handler. */
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

static void probe_hook(lua_State *L, lua_Debug *ar) {
    (void)L;
    (void)ar;
}

static void holder_sample(void *data, lua_State *L, int samples, int vmstate) {
    (void)data;
    (void)L;
    (void)samples;
    (void)vmstate;
}

/* The byte offset of the hook mask from a state's main thread, or -1. */
static long probe_hookmask(void) {
    lua_State *P = luaL_newstate();
    if (!P)
        return -1;
    static const int masks[] = {
        LUA_MASKCALL, LUA_MASKRET, LUA_MASKLINE, LUA_MASKCOUNT,
        LUA_MASKCALL | LUA_MASKLINE | LUA_MASKCOUNT, 0,
    };
    unsigned char before[PROBE_BYTES];
    bool fits[PROBE_BYTES];
    lua_sethook(P, NULL, 0, 0);
    memcpy(before, P, PROBE_BYTES);
    for (int i = 0; i < PROBE_BYTES; i++)
        fits[i] = (before[i] & 0x0f) == 0 && !(before[i] & HOOK_PROFILE_BIT);
    for (size_t k = 0; k < sizeof masks / sizeof *masks; k++) {
        lua_sethook(P, masks[k] ? probe_hook : NULL, masks[k], 7);
        const unsigned char *now = (const unsigned char *)P;
        for (int i = 0; i < PROBE_BYTES; i++)
            if ((now[i] & 0x0f) != masks[k] || (now[i] & 0xf0) != (before[i] & 0xf0))
                fits[i] = false;
    }
    lua_close(P);
    long found = -1;
    for (int i = 0; i < PROBE_BYTES; i++) {
        if (!fits[i])
            continue;
        if (found >= 0)
            return -1; /* two candidates: not the layout we know */
        found = i;
    }
    return found;
}

static void init(void) {
    long off = probe_hookmask();
    if (off < 0)
        return;
    lua_State *H = luaL_newstate();
    if (!H)
        return;
    pthread_mutex_lock(&slot_lock);
    luaJIT_profile_start(H, HOLDER_MODE, holder_sample, NULL);
    pthread_mutex_unlock(&slot_lock);
    holder = H;
    hookmask_offset = off;
}

bool preempt_init(void) {
    pthread_once(&init_once, init);
    return hookmask_offset >= 0;
}

bool preempt_available(void) {
    return preempt_init();
}

/* With slot_lock held: line mode for L, through the holder's slot. */
static void set_line_mode(lua_State *L) {
    luaJIT_profile_start(L, "l", holder_sample, NULL);
}

void preempt_prepare(lua_State *L) {
    if (!preempt_init())
        return;
    pthread_mutex_lock(&slot_lock);
    set_line_mode(L);
    pthread_mutex_unlock(&slot_lock);
}

static _Atomic unsigned char *hookmask_of(lua_State *L) {
    return (_Atomic unsigned char *)((char *)L + hookmask_offset);
}

void preempt_interrupt(lua_State *L) {
    if (!preempt_init())
        return;
    atomic_fetch_or_explicit(hookmask_of(L), HOOK_PROFILE_BIT, memory_order_seq_cst);
}

void preempt_clear(lua_State *L) {
    if (!preempt_init())
        return;
    atomic_fetch_and_explicit(hookmask_of(L), (unsigned char)~HOOK_PROFILE_BIT,
                              memory_order_relaxed);
}

void preempt_profile_start(lua_State *L, const char *mode, luaJIT_profile_callback cb,
                           void *data) {
    pthread_mutex_lock(&slot_lock);
    if (holder)
        luaJIT_profile_stop(holder);
    luaJIT_profile_start(L, mode, cb, data);
    pthread_mutex_unlock(&slot_lock);
}

void preempt_profile_stop(lua_State *L) {
    pthread_mutex_lock(&slot_lock);
    /* Resets L's mode to none and flushes its traces: line mode again
     * below, once the holder has the slot back. */
    luaJIT_profile_stop(L);
    if (holder) {
        luaJIT_profile_start(holder, HOLDER_MODE, holder_sample, NULL);
        set_line_mode(L);
    }
    pthread_mutex_unlock(&slot_lock);
}
