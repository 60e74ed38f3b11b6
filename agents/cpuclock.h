/*
 * cpuclock.h - the cheap clock that times agents' polls.
 *
 * Every poll of an agent reads it twice (agent_poll), so it must cost
 * little: on x86-64 with an invariant TSC (constant_tsc and nonstop_tsc in
 * /proc/cpuinfo) it is the time-stamp counter (rdtsc, about 12 ns here
 * against 28 ns for clock_gettime through the vDSO with kvm-clock), whose
 * rate is measured once against CLOCK_MONOTONIC; elsewhere it is
 * ms_now_ns.  Ticks are only ever subtracted from ticks and converted to
 * ns with cpuclock_ns.
 */
#ifndef MS_AGENTS_CPUCLOCK_H
#define MS_AGENTS_CPUCLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

/* Written once by cpuclock_init (under a pthread_once) before any agent
 * exists; read-only after. */
extern bool cpuclock_tsc;
extern double cpuclock_ns_per_tick;

/* Decides the source and measures the TSC's rate (about 2 ms, once). */
void cpuclock_init(void);

static inline uint64_t cpuclock_ticks(void) {
#if defined(__x86_64__)
    if (cpuclock_tsc)
        return __builtin_ia32_rdtsc();
#endif
    return ms_now_ns();
}

/* A number of ticks as nanoseconds. */
static inline uint64_t cpuclock_ns(uint64_t ticks) {
    return cpuclock_tsc ? (uint64_t)((double)ticks * cpuclock_ns_per_tick) : ticks;
}

#endif
