/*
 * jitwin.h - the machine-code window: how much room is left for the JIT's
 * compiled code, and which new agent states may have the JIT.
 *
 * On x86-64 LuaJIT places every state's machine code within +-1 GB (minus
 * 2 MB) of its VM, so that traces reach the VM's exit handler with 32-bit
 * jumps.  Every state that compiles takes at least one 64 KB area of that
 * window, and the process's other mappings (agents' heaps, thread stacks,
 * libraries) take the rest.  jitwin_grant gives the JIT to a new state
 * while the measured room lasts, keeping a reserve; agent_jit.c turns the
 * JIT off for a state whose allocation fails anyway (jitwin_fallback).
 * Details and figures: docs/host.md, "The JIT and its window".
 *
 * Thread-safe: any worker may call these at any time.
 */
#ifndef MS_AGENTS_JITWIN_H
#define MS_AGENTS_JITWIN_H

#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

/* The bytes of one machine-code area (LuaJIT's sizemcode default). */
#define JITWIN_AREA (64u * 1024u)

typedef struct jitwin_stats {
    uint64_t window_areas;  /* 64 KB areas the window spans (0: not measured yet) */
    uint64_t free_areas;    /* of those, free at the last measurement */
    uint64_t reserve_areas; /* room kept free: no grant below it */
    uint64_t mappings;      /* the process's memory mappings at the last measurement */
    uint64_t max_mappings;  /* the kernel's limit (vm.max_map_count) */
    uint64_t measurements;  /* times /proc/self/maps was read */
    uint64_t measure_ns;    /* what the last reading took */
    uint64_t granted;       /* states given the JIT by the window */
    uint64_t refused;       /* states refused for want of room */
    uint64_t fallbacks;     /* states whose allocation failed: now interpreted */
} jitwin_stats;

/* May one more state have the JIT?  true counts it against the measured
 * room; false counts a refusal.  Starts a measurement of the window when
 * the room last measured may be half used, when it is stale (a second),
 * or after a fallback: the first in this call, later ones as a job on rt's
 * blocking pool (decisions meanwhile use the last figures). */
bool jitwin_grant(ms_runtime *rt);
/* A state could not allocate machine code and now interprets: counted,
 * and the next decision measures again. */
void jitwin_fallback(void);
/* The figures, as of now (for ms.metrics() and the tests). */
void jitwin_get_stats(jitwin_stats *out);

#endif
