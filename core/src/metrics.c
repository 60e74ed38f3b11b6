/*
 * metrics.c - runtime metrics snapshots and their JSON rendering.
 *
 * A snapshot reads every counter once with relaxed loads: each number is
 * exact for its own instant, and the set is close to one instant (a
 * snapshot takes a few microseconds).  Sums over the workers are computed
 * here so that readers need not.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime.h"

uint64_t met_busy_read(met_worker *m, uint64_t now, bool *parked) {
    uint64_t busy, since;
    for (;;) {
        uint64_t s1 = atomic_load_explicit(&m->busy_seq, memory_order_acquire);
        busy = atomic_load_explicit(&m->busy_ns, memory_order_acquire);
        since = atomic_load_explicit(&m->busy_since, memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&m->busy_seq, memory_order_relaxed);
        if (s1 == s2 && !(s1 & 1))
            break;
    }
    *parked = since == 0;
    if (since && now > since)
        busy += now - since;
    uint64_t prev = atomic_load_explicit(&m->busy_reported, memory_order_relaxed);
    while (prev < busy &&
           !atomic_compare_exchange_weak_explicit(&m->busy_reported, &prev, busy,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    return busy > prev ? busy : prev;
}

uint64_t ms_histogram_bound_ns(uint32_t i) {
    if (i >= MS_HIST_BUCKETS - 1)
        return UINT64_MAX;
    return ((uint64_t)1 << i) * 1000u;
}

void met_hist_read(met_hist *h, ms_histogram *out) {
    out->count = 0;
    for (uint32_t i = 0; i < MS_HIST_BUCKETS; i++) {
        out->buckets[i] = met_get(&h->buckets[i]);
        out->count += out->buckets[i];
    }
    out->sum_ns = met_get(&h->sum_ns);
}

ms_metrics *ms_metrics_snapshot(ms_runtime *rt) {
    sched *s = &rt->sched;
    uint32_t n = sched_started(s);
    ms_metrics *m = calloc(1, sizeof *m + n * sizeof(ms_worker_metrics));
    if (!m)
        return NULL;
    uint64_t now = ms_now_ns();
    m->uptime_ns = now - rt->start_ns;
    m->workers = n;
    m->active_workers = sched_active(s);
    m->max_workers = s->max_workers;
    m->worker_resizes = atomic_load_explicit(&s->resizes, memory_order_relaxed);
    m->worker_replacements =
        atomic_load_explicit(&rt->health.replacements_total, memory_order_relaxed);
    m->global_queue_interval = atomic_load_explicit(&s->global_queue_interval, memory_order_relaxed);
    m->budget = atomic_load_explicit(&s->budget, memory_order_relaxed);
    m->park_spin_us = atomic_load_explicit(&s->park_spin_us, memory_order_relaxed);
    blk_limits(&rt->blocking, &m->max_blocking_threads, &m->thread_keep_alive_ms);
    m->blocking_threads = atomic_load_explicit(&rt->blocking.threads_gauge, memory_order_relaxed);
    m->idle_blocking_threads = atomic_load_explicit(&rt->blocking.idle_gauge, memory_order_relaxed);
    m->remote_spawned_tasks = atomic_load_explicit(&rt->remote_spawned, memory_order_relaxed);
    m->alive_tasks = own_count(&rt->owned);
    m->failed_tasks = atomic_load_explicit(&rt->failed, memory_order_relaxed);
    m->cancelled_tasks = atomic_load_explicit(&rt->cancelled, memory_order_relaxed);
    m->injection_queue_depth = inj_len(&s->inject);
    m->blocking_queue_depth = atomic_load_explicit(&rt->blocking.queue_depth, memory_order_relaxed);
    m->blocking_jobs_total = atomic_load_explicit(&rt->blocking.jobs_total, memory_order_relaxed);
    if (rt->driver) {
        m->timers_active = atomic_load_explicit(&rt->driver->timers_active, memory_order_relaxed);
        m->timers_fired = atomic_load_explicit(&rt->driver->timers_fired, memory_order_relaxed);
        m->accept_errors = atomic_load_explicit(&rt->driver->accept_errors, memory_order_relaxed);
        m->accept_pauses = atomic_load_explicit(&rt->driver->accept_pauses, memory_order_relaxed);
    }
    m->stalls_total = atomic_load_explicit(&rt->health.stalls_total, memory_order_relaxed);
    m->histograms = rt->cfg.metrics_histograms;
    m->spawned_tasks = m->remote_spawned_tasks;
    for (uint32_t i = 0; i < n; i++) {
        sched_worker *w = &s->workers[i];
        ms_worker_metrics *o = &m->worker[i];
        o->park_count = met_get(&w->m.parks);
        o->noop_count = met_get(&w->m.noops);
        o->steal_count = met_get(&w->m.steals);
        o->steal_operations = met_get(&w->m.steal_ops);
        o->poll_count = met_get(&w->m.polls);
        o->forced_yields = met_get(&w->m.forced_yields);
        o->overflow_count = met_get(&w->m.overflows);
        o->local_schedule_count = met_get(&w->m.local_schedules);
        o->spawned_tasks = met_get(&w->m.spawned);
        o->busy_ns = met_busy_read(&w->m, now, &o->parked);
        o->local_queue_depth = rq_len(&w->queue);
        o->stalled_ms = met_get(&w->m.stalled_ms);
        o->active = i < m->active_workers && !met_get(&w->m.retired);
        o->local_queue_capacity = RQ_CAP;
        if (m->histograms) {
            met_hist_read(&w->m.poll_duration, &o->poll_duration);
            met_hist_read(&w->m.schedule_delay, &o->schedule_delay);
        }

        m->park_count += o->park_count;
        m->noop_count += o->noop_count;
        m->steal_count += o->steal_count;
        m->steal_operations += o->steal_operations;
        m->poll_count += o->poll_count;
        m->busy_ns += o->busy_ns;
        m->forced_yields += o->forced_yields;
        m->overflow_count += o->overflow_count;
        m->local_schedule_count += o->local_schedule_count;
        m->local_queue_depth += o->local_queue_depth;
        m->spawned_tasks += o->spawned_tasks;
    }
    return m;
}

void ms_metrics_free(ms_metrics *m) {
    free(m);
}

/* cJSON numbers are doubles: exact up to 2^53, far beyond any counter's
 * reach in practice. */
static void add_u64(cJSON *o, const char *k, uint64_t v) {
    cJSON_AddNumberToObject(o, k, (double)v);
}

static cJSON *hist_json(const ms_histogram *h) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *le = cJSON_AddArrayToObject(o, "le_ns");
    cJSON *b = cJSON_AddArrayToObject(o, "buckets");
    for (uint32_t i = 0; le && b && i < MS_HIST_BUCKETS; i++) {
        if (i + 1 < MS_HIST_BUCKETS)
            cJSON_AddItemToArray(le, cJSON_CreateNumber((double)ms_histogram_bound_ns(i)));
        cJSON_AddItemToArray(b, cJSON_CreateNumber((double)h->buckets[i]));
    }
    add_u64(o, "count", h->count);
    add_u64(o, "sum_ns", h->sum_ns);
    return o;
}

char *ms_metrics_to_json(const ms_metrics *m, bool pretty) {
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    add_u64(root, "uptime_ns", m->uptime_ns);
    add_u64(root, "workers", m->workers);
    add_u64(root, "active_workers", m->active_workers);
    add_u64(root, "max_workers", m->max_workers);
    add_u64(root, "worker_resizes", m->worker_resizes);
    add_u64(root, "worker_replacements", m->worker_replacements);
    add_u64(root, "global_queue_interval", m->global_queue_interval);
    add_u64(root, "budget", m->budget);
    add_u64(root, "park_spin_us", m->park_spin_us);
    add_u64(root, "thread_keep_alive_ms", m->thread_keep_alive_ms);
    add_u64(root, "blocking_threads", m->blocking_threads);
    add_u64(root, "idle_blocking_threads", m->idle_blocking_threads);
    add_u64(root, "max_blocking_threads", m->max_blocking_threads);
    add_u64(root, "spawned_tasks", m->spawned_tasks);
    add_u64(root, "remote_spawned_tasks", m->remote_spawned_tasks);
    add_u64(root, "alive_tasks", m->alive_tasks);
    add_u64(root, "failed_tasks", m->failed_tasks);
    add_u64(root, "cancelled_tasks", m->cancelled_tasks);
    add_u64(root, "injection_queue_depth", m->injection_queue_depth);
    add_u64(root, "blocking_queue_depth", m->blocking_queue_depth);
    add_u64(root, "blocking_jobs_total", m->blocking_jobs_total);
    add_u64(root, "stalls_total", m->stalls_total);
    add_u64(root, "timers_active", m->timers_active);
    add_u64(root, "timers_fired", m->timers_fired);
    add_u64(root, "accept_errors", m->accept_errors);
    add_u64(root, "accept_pauses", m->accept_pauses);
    cJSON_AddBoolToObject(root, "histograms", m->histograms);
    add_u64(root, "park_count", m->park_count);
    add_u64(root, "noop_count", m->noop_count);
    add_u64(root, "steal_count", m->steal_count);
    add_u64(root, "steal_operations", m->steal_operations);
    add_u64(root, "poll_count", m->poll_count);
    add_u64(root, "busy_ns", m->busy_ns);
    add_u64(root, "forced_yields", m->forced_yields);
    add_u64(root, "overflow_count", m->overflow_count);
    add_u64(root, "local_schedule_count", m->local_schedule_count);
    add_u64(root, "local_queue_depth", m->local_queue_depth);
    cJSON *arr = cJSON_AddArrayToObject(root, "per_worker");
    for (uint32_t i = 0; arr && i < m->workers; i++) {
        const ms_worker_metrics *w = &m->worker[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        add_u64(o, "index", i);
        add_u64(o, "park_count", w->park_count);
        add_u64(o, "noop_count", w->noop_count);
        add_u64(o, "steal_count", w->steal_count);
        add_u64(o, "steal_operations", w->steal_operations);
        add_u64(o, "poll_count", w->poll_count);
        add_u64(o, "busy_ns", w->busy_ns);
        add_u64(o, "forced_yields", w->forced_yields);
        add_u64(o, "overflow_count", w->overflow_count);
        add_u64(o, "local_schedule_count", w->local_schedule_count);
        add_u64(o, "spawned_tasks", w->spawned_tasks);
        add_u64(o, "local_queue_depth", w->local_queue_depth);
        add_u64(o, "local_queue_capacity", w->local_queue_capacity);
        cJSON_AddBoolToObject(o, "parked", w->parked);
        cJSON_AddBoolToObject(o, "active", w->active);
        add_u64(o, "stalled_ms", w->stalled_ms);
        if (m->histograms) {
            cJSON_AddItemToObject(o, "poll_duration", hist_json(&w->poll_duration));
            cJSON_AddItemToObject(o, "schedule_delay", hist_json(&w->schedule_delay));
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *out = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out)
        return NULL;
    /* cJSON allocates with its hooks (malloc by default); hand back memory
     * that ms_free (free) releases. */
    return out;
}
