/*
 * metrics.h - per-worker counters and histograms.
 *
 * Each worker owns one met_worker on its own cache lines.  Only the owning
 * worker writes its counters, with a relaxed load and a relaxed store (no
 * read-modify-write, no shared line on the hot path); any thread may read
 * them with relaxed loads for a snapshot.
 *
 * The histograms (poll duration, scheduling delay) follow the same rule:
 * one relaxed load+store for the bucket and one for the sum per recorded
 * value.  A reader may see a bucket and the sum from slightly different
 * instants; the count it reports is the sum of the buckets it read, so the
 * buckets and the count always agree.  Recording costs nothing but the
 * clock reads that produce the durations (task.c), which is why it is
 * behind ms_config.metrics_histograms.
 */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

/* Written by the owning worker only (met_hist_record). */
typedef struct met_hist {
    _Atomic uint64_t buckets[MS_HIST_BUCKETS];
    _Atomic uint64_t sum_ns;
} met_hist;

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
    /* busy_ns (completed busy stretches) and busy_since (start of the
     * current stretch, 0 when parked) change together when the worker
     * parks or wakes; busy_seq is a seqlock around that pair (odd while
     * writing) so a reader never pairs a new busy_ns with an old
     * busy_since. */
    _Atomic uint64_t busy_seq;
    _Atomic uint64_t busy_ns;
    _Atomic uint64_t busy_since;
    /* The largest busy time any snapshot reported (CAS max by readers):
     * a reader's clock may run ahead of the worker's own at parking time,
     * and reported busy time must never go backwards. */
    _Atomic uint64_t busy_reported;
    /* The id of the task being polled, 0 between polls (owner writes,
     * relaxed; the health monitor reads). */
    _Atomic uint64_t current_task;
    /* Written by the health monitor only. */
    _Atomic uint64_t stalled_ms;
    /* 1 while the worker waits retired (outside the active range); owner
     * writes, relaxed. */
    _Atomic uint64_t retired;
    /* Owner only, and only with ms_config.metrics_histograms. */
    met_hist poll_duration;
    met_hist schedule_delay;
} __attribute__((aligned(64))) met_worker;

/* Owner only: moves the busy pair to (busy_ns + add, since). */
static inline void met_busy_update(met_worker *m, uint64_t add, uint64_t since) {
    /* Release stores of the fields order the odd sequence before them: a
     * reader that sees a new field value then sees the sequence moved. */
    uint64_t seq = atomic_load_explicit(&m->busy_seq, memory_order_relaxed);
    atomic_store_explicit(&m->busy_seq, seq + 1, memory_order_relaxed);
    atomic_store_explicit(&m->busy_ns,
                          atomic_load_explicit(&m->busy_ns, memory_order_relaxed) + add,
                          memory_order_release);
    atomic_store_explicit(&m->busy_since, since, memory_order_release);
    atomic_store_explicit(&m->busy_seq, seq + 2, memory_order_release);
}

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

/* The bucket of a duration: the smallest i with ns <= 2^i us, or the last
 * (overflow) bucket.  Durations are rounded up to whole microseconds first,
 * so a bucket's bound is exact: 2000 ns is in the 2 us bucket, 2001 ns in
 * the 4 us one. */
static inline uint32_t met_hist_bucket(uint64_t ns) {
    uint64_t us = ns / 1000 + (ns % 1000 != 0);
    if (us <= 1)
        return 0;
    uint32_t i = 64 - (uint32_t)__builtin_clzll(us - 1);
    return i < MS_HIST_BUCKETS - 1 ? i : MS_HIST_BUCKETS - 1;
}

/* Owner only. */
static inline void met_hist_record(met_hist *h, uint64_t ns) {
    met_add(&h->buckets[met_hist_bucket(ns)], 1);
    met_add(&h->sum_ns, ns);
}

/* Any thread: copies h into out (count = the sum of the buckets read). */
void met_hist_read(met_hist *h, ms_histogram *out);

void met_worker_init(met_worker *m);
/* Any thread: busy time up to now, never less than reported before. */
uint64_t met_busy_read(met_worker *m, uint64_t now, bool *parked);

#endif
