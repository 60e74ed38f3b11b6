/*
 * metrics.h - per-worker counters.
 *
 * Each worker owns one met_worker on its own cache lines.  Only the owning
 * worker writes its counters, with a relaxed load and a relaxed store (no
 * read-modify-write, no shared line on the hot path); any thread may read
 * them with relaxed loads for a snapshot.
 */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct met_worker {
    _Atomic uint64_t polls;
    _Atomic uint64_t parks;
    _Atomic uint64_t noops;
    _Atomic uint64_t steals;
    _Atomic uint64_t steal_ops;
    _Atomic uint64_t forced_yields;
    _Atomic uint64_t overflows;
    _Atomic uint64_t local_schedules;
    _Atomic uint64_t spawned;
    _Atomic uint64_t busy_ns;     /* completed busy stretches */
    _Atomic uint64_t busy_since;  /* start of the current stretch, 0 when parked */
} __attribute__((aligned(64))) met_worker;

static inline void met_add(_Atomic uint64_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void met_set(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t met_get(_Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

void met_worker_init(met_worker *m);

#endif
