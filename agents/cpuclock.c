/*
 * cpuclock.c - choosing and calibrating the clock of agents' polls
 * (cpuclock.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cpuclock.h"

bool cpuclock_tsc;
double cpuclock_ns_per_tick = 1.0;

/* Whether /proc/cpuinfo promises a TSC that ticks at a constant rate and
 * does not stop (so ticks measure time on every core). */
static bool invariant_tsc(void) {
#if defined(__x86_64__)
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[4096];
    bool constant = false, nonstop = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        constant = strstr(line, " constant_tsc") != NULL;
        nonstop = strstr(line, " nonstop_tsc") != NULL;
        break;
    }
    fclose(f);
    return constant && nonstop;
#else
    return false;
#endif
}

static void init_once(void) {
    if (!invariant_tsc())
        return;
#if defined(__x86_64__)
    /* The rate over about 2 ms of wall time: the clock reads at both ends
     * (tens of ns) make it exact to about 1e-5. */
    uint64_t n0 = ms_now_ns(), t0 = __builtin_ia32_rdtsc(), n1, t1;
    do {
        n1 = ms_now_ns();
        t1 = __builtin_ia32_rdtsc();
    } while (n1 - n0 < 2000000u);
    if (t1 <= t0)
        return;
    cpuclock_ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
    cpuclock_tsc = true;
#endif
}

void cpuclock_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
}
