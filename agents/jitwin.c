/*
 * jitwin.c - the machine-code window (see jitwin.h): measured from
 * /proc/self/maps, handed out to new JIT states with a reserve kept.
 *
 * Why measure: LuaJIT 2.1 (Debian 12's, 2022) picks an area by probing 31
 * random 64 KB-aligned addresses of the window with mmap hints.  When the
 * window is nearly full every probe misses, the trace aborts with "failed
 * to allocate mcode memory", LuaJIT flushes every trace of the state and
 * clears its penalty cache, and the hot loop tries again at once: each try
 * costs 31 mmap/munmap pairs under the process's mmap lock, which all
 * threads share.  Measured with a fixed limit raised past the window: 0.22
 * ms per agent up to about 12,000 JIT states, then 2.6 ms, then 10 ms, and
 * single polls of 2 s.  Giving the JIT only while the window has room (and
 * agent_jit.c's fallback when an allocation fails anyway) keeps every state
 * out of that storm.
 *
 * The window: for any address t of the VM's code, LuaJIT accepts an area p
 * of sz bytes when p + sz - t < range or t - p < range, range = 1 GB - 2 MB
 * (half the 32-bit jump range, less a margin).  Its target is the exit
 * handler inside libluajit's text; taking the whole executable mapping that
 * holds lua_pcall, [text_end - range, text_start + range) is inside the
 * window whatever the target's exact place.  Free room is counted in
 * 64 KB-aligned 64 KB areas (LuaJIT's probes are 64 KB-aligned) in the gaps
 * between mappings.  Each area is also a mapping of its own unless the
 * kernel merges it with a neighbour, so the room is also bounded by
 * vm.max_map_count less the mappings there are.
 *
 * Accounting between measurements: each grant counts one area (a state
 * that compiles takes one; one that never compiles takes none; one that
 * compiles a lot takes up to maxmcode / 64 KB, 8), so the estimate is
 * measured again once half the room left above the reserve has been
 * granted, every second (areas come back when states close; other
 * mappings come and go), every 100 ms while there is no room, and after a
 * fallback; never more often than 50 times the last measurement took, so
 * that measuring costs at most 2% of a CPU.  Reading /proc/self/maps
 * costs about a microsecond per mapping, and a host of 100,000 agents has
 * tens of thousands: the first measurement runs in the first decision,
 * every later one as a job on the blocking pool, never in an agent's poll;
 * decisions meanwhile use the last figures.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <lua.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms.h"

#include "jitwin.h"

/* LuaJIT's x86-64 jump range: 1 GB less 2 MB either way (lj_mcode.c). */
#define JITWIN_RANGE ((uint64_t)(1u << 30) - (1u << 21))
/* The highest user-space address (47-bit address space). */
#define USER_TOP ((uint64_t)1 << 47)
/* Room kept free: 1/16 of the window.  With LuaJIT's 31 random probes a
 * window 1/16 free still fails a first allocation about 1 time in 7; the
 * fallback handles those. */
#define RESERVE_DIVISOR 16
/* A measurement older than this is taken again before a decision. */
#define STALE_NS 1000000000ull
/* A measurement job this old was lost (a shutdown cancels queued jobs). */
#define LOST_NS 10000000000ull
/* With no room left, how often to look again for areas given back. */
#define FULL_RECHECK_NS 100000000ull

/* Everything under lock, except the figures a measurement is computing
 * (local to the measuring thread until stored). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static jitwin_stats st;
static uint64_t granted_since;  /* grants since the last measurement began */
static uint64_t granted_at_start; /* st.granted when the measurement in flight began */
static uint64_t measured_ns;    /* ms_now_ns() when the last measurement ended */
static bool measuring;          /* a measurement is in flight */
static uint64_t started_ns;     /* when it was started */
static bool stale;              /* a fallback: measure before long */

typedef struct maps_reader {
    int fd;
    char buf[8192];
    size_t len, pos;
} maps_reader;

/* The next line's start and end addresses; false at the end. */
static bool next_range(maps_reader *r, uint64_t *start, uint64_t *end) {
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl) {
            char *p = r->buf + r->pos, *dash;
            r->pos = (size_t)(nl - r->buf) + 1;
            *start = strtoull(p, &dash, 16);
            if (*dash != '-')
                continue;
            *end = strtoull(dash + 1, NULL, 16);
            return true;
        }
        /* Keep the partial line, read more behind it. */
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
        if (r->len == sizeof r->buf)
            r->len = 0; /* a line longer than the buffer: drop it */
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (n <= 0)
            return false;
        r->len += (size_t)n;
    }
}

static uint64_t areas_in(uint64_t lo, uint64_t hi) {
    uint64_t first = (lo + JITWIN_AREA - 1) & ~(uint64_t)(JITWIN_AREA - 1);
    return hi > first ? (hi - first) / JITWIN_AREA : 0;
}

static uint64_t read_max_map_count(void) {
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v ? v : 65530; /* the kernel's default */
}

/* One pass over /proc/self/maps: the text mapping holding the VM, then the
 * free areas within reach of all of it.  false if the maps cannot be read
 * (then nothing is granted: without a window there is no room to trust). */
static bool measure(jitwin_stats *m) {
    uint64_t vm = (uint64_t)(uintptr_t)&lua_pcall;
    maps_reader r = {.fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)};
    if (r.fd < 0)
        return false;
    /* Pass 1: find the text mapping and count the mappings. */
    uint64_t s, e, text_lo = 0, text_hi = 0, n = 0;
    while (next_range(&r, &s, &e)) {
        n++;
        if (s <= vm && vm < e)
            text_lo = s, text_hi = e;
    }
    if (!text_hi || lseek(r.fd, 0, SEEK_SET) != 0) {
        close(r.fd);
        return false;
    }
    uint64_t lo = text_hi > JITWIN_RANGE ? text_hi - JITWIN_RANGE : JITWIN_AREA;
    uint64_t hi = text_lo + JITWIN_RANGE < USER_TOP ? text_lo + JITWIN_RANGE : USER_TOP;
    /* Pass 2: the gaps between mappings (listed in address order). */
    uint64_t free_areas = 0, cursor = lo;
    r.len = r.pos = 0;
    while (next_range(&r, &s, &e)) {
        if (e <= cursor)
            continue;
        if (s >= hi)
            break;
        if (s > cursor)
            free_areas += areas_in(cursor, s);
        cursor = e;
    }
    if (cursor < hi)
        free_areas += areas_in(cursor, hi);
    close(r.fd);
    m->window_areas = areas_in(lo, hi);
    m->free_areas = free_areas;
    m->mappings = n;
    if (!m->max_mappings)
        m->max_mappings = read_max_map_count();
    m->reserve_areas = m->window_areas / RESERVE_DIVISOR;
    return true;
}

/* The room above the reserve as last measured, less the grants since. */
static int64_t room_locked(void) {
    uint64_t by_maps = st.max_mappings > st.mappings ? st.max_mappings - st.mappings : 0;
    uint64_t room = st.free_areas < by_maps ? st.free_areas : by_maps;
    return (int64_t)room - (int64_t)st.reserve_areas - (int64_t)granted_since;
}

static bool needs_measure_locked(uint64_t now) {
    if (measuring && now - started_ns < LOST_NS)
        return false;
    if (!measured_ns)
        return true;
    /* Never more often than 50 times what the last one took. */
    uint64_t age = now - measured_ns, floor_ns = 50 * st.measure_ns;
    if (age < floor_ns)
        return false;
    if (stale || age >= STALE_NS)
        return true;
    int64_t room = room_locked();
    if (room <= 0)
        return age >= FULL_RECHECK_NS;
    /* Half of the room there was above the reserve is granted. */
    return (int64_t)granted_since >= (room + (int64_t)granted_since) / 2;
}

/* Takes the measurement begun under the lock, with it released; stores
 * it under the lock again. */
static void measure_and_store(void) {
    pthread_mutex_lock(&lock);
    jitwin_stats m = {.max_mappings = st.max_mappings};
    pthread_mutex_unlock(&lock);
    uint64_t t0 = ms_now_ns();
    bool ok = measure(&m);
    uint64_t t1 = ms_now_ns();
    pthread_mutex_lock(&lock);
    measuring = false;
    measured_ns = t1;
    st.measure_ns = t1 - t0;
    st.measurements++;
    granted_since = st.granted - granted_at_start;
    if (ok) {
        st.window_areas = m.window_areas;
        st.free_areas = m.free_areas;
        st.reserve_areas = m.reserve_areas;
        st.mappings = m.mappings;
        st.max_mappings = m.max_mappings;
    } else {
        st.free_areas = 0; /* unknown: grant nothing until a read works */
    }
    pthread_mutex_unlock(&lock);
}

static void *measure_job(void *arg) {
    (void)arg;
    measure_and_store();
    return NULL;
}

bool jitwin_grant(ms_runtime *rt) {
    pthread_mutex_lock(&lock);
    if (needs_measure_locked(ms_now_ns())) {
        measuring = true;
        started_ns = ms_now_ns();
        stale = false;
        granted_at_start = st.granted;
        bool first = !measured_ns;
        if (first || !rt || ms_spawn_blocking(rt, measure_job, NULL, NULL) != 0) {
            /* The first (a young process has few mappings), or no pool
             * (shutting down): here. */
            pthread_mutex_unlock(&lock);
            measure_and_store();
            pthread_mutex_lock(&lock);
        }
    }
    bool ok = room_locked() > 0;
    if (ok) {
        granted_since++;
        st.granted++;
    } else {
        st.refused++;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void jitwin_fallback(void) {
    pthread_mutex_lock(&lock);
    st.fallbacks++;
    stale = true;
    pthread_mutex_unlock(&lock);
}

void jitwin_get_stats(jitwin_stats *out) {
    pthread_mutex_lock(&lock);
    *out = st;
    pthread_mutex_unlock(&lock);
}
