/*
 * metrics.c - runtime metrics snapshots, the table that describes every
 * metric (names, type, unit, help; ms_metric_descs), and the JSON
 * rendering, which walks that table.
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

/* ------------------------------------------------------------------------
 * The table of metrics
 * ---------------------------------------------------------------------- */

#define RT(member) offsetof(ms_metrics, member)
#define WK(member) offsetof(ms_worker_metrics, member)

#define RUNTIME(member, name, prom, type, value, unit, help) \
    {#member, name, prom, help, type, MS_METRIC_RUNTIME, value, unit, RT(member), MS_METRIC_NO_SUM}
#define WORKER(member, name, prom, type, value, unit, sum, help) \
    {#member, name, prom, help, type, MS_METRIC_WORKER, value, unit, WK(member), sum}

/* Every metric of a snapshot, once.  Runtime metrics first, then the
 * workers', each in struct order. */
static const ms_metric_desc metric_descs[] = {
    RUNTIME(uptime_ns, "uptime", "ms_uptime_seconds", MS_METRIC_GAUGE, MS_METRIC_U64,
            MS_UNIT_NS, "Seconds since the runtime started."),
    RUNTIME(workers, "workers", "ms_workers", MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE,
            "Worker threads started (active or retired by a resize)."),
    RUNTIME(active_workers, "active_workers", "ms_active_workers", MS_METRIC_GAUGE,
            MS_METRIC_U32, MS_UNIT_NONE, "Workers currently active (live resizing, stand-ins)."),
    RUNTIME(max_workers, "max_workers", "ms_max_workers", MS_METRIC_GAUGE, MS_METRIC_U32,
            MS_UNIT_NONE, "Ceiling for the number of workers (max_worker_threads)."),
    RUNTIME(worker_resizes, "worker_resizes", "ms_worker_resizes_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE, "Changes of the number of active workers."),
    RUNTIME(worker_replacements, "worker_replacements", "ms_worker_replacements_total",
            MS_METRIC_COUNTER, MS_METRIC_U64, MS_UNIT_NONE,
            "Stand-in workers brought in for stalled ones."),
    RUNTIME(global_queue_interval, "global_queue_interval", "ms_global_queue_interval",
            MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE,
            "Ticks between injection-queue checks (live value)."),
    RUNTIME(budget, "budget", "ms_budget", MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE,
            "Cooperative budget per poll (live value)."),
    RUNTIME(thread_keep_alive_ms, "thread_keep_alive", "ms_thread_keep_alive_seconds",
            MS_METRIC_GAUGE, MS_METRIC_U64, MS_UNIT_MS,
            "Seconds an idle blocking thread waits for a job before it exits (live value)."),
    RUNTIME(blocking_threads, "blocking_threads", "ms_blocking_threads", MS_METRIC_GAUGE,
            MS_METRIC_U32, MS_UNIT_NONE, "Threads of the blocking pool."),
    RUNTIME(idle_blocking_threads, "idle_blocking_threads", "ms_idle_blocking_threads",
            MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE,
            "Blocking-pool threads waiting for a job."),
    RUNTIME(max_blocking_threads, "max_blocking_threads", "ms_max_blocking_threads",
            MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE, "Upper limit of the blocking pool."),
    RUNTIME(spawned_tasks, "spawned_tasks", "ms_spawned_tasks_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE, "Tasks spawned, from the workers and from outside."),
    RUNTIME(remote_spawned_tasks, "remote_spawned_tasks", "ms_remote_spawned_tasks_total",
            MS_METRIC_COUNTER, MS_METRIC_U64, MS_UNIT_NONE,
            "Tasks spawned from outside the workers."),
    RUNTIME(alive_tasks, "alive_tasks", "ms_alive_tasks", MS_METRIC_GAUGE, MS_METRIC_U64,
            MS_UNIT_NONE, "Tasks spawned and not yet ended."),
    RUNTIME(failed_tasks, "failed_tasks", "ms_failed_tasks_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE, "Tasks that ended with an error."),
    RUNTIME(cancelled_tasks, "cancelled_tasks", "ms_cancelled_tasks_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE, "Tasks ended by an abort or by shutdown."),
    RUNTIME(injection_queue_depth, "injection_queue_depth", "ms_injection_queue_depth",
            MS_METRIC_GAUGE, MS_METRIC_U64, MS_UNIT_NONE, "Tasks waiting in the injection queue."),
    RUNTIME(blocking_queue_depth, "blocking_queue_depth", "ms_blocking_queue_depth",
            MS_METRIC_GAUGE, MS_METRIC_U64, MS_UNIT_NONE, "Blocking jobs waiting for a thread."),
    RUNTIME(blocking_jobs_total, "blocking_jobs_total", "ms_blocking_jobs_total",
            MS_METRIC_COUNTER, MS_METRIC_U64, MS_UNIT_NONE, "Jobs run on the blocking pool."),
    RUNTIME(stalls_total, "stalls_total", "ms_stalls_total", MS_METRIC_COUNTER, MS_METRIC_U64,
            MS_UNIT_NONE, "Polls reported as stuck (stall_threshold)."),
    RUNTIME(timers_active, "timers_active", "ms_timers_active", MS_METRIC_GAUGE, MS_METRIC_U64,
            MS_UNIT_NONE, "Timers waiting in the timer wheel."),
    RUNTIME(timers_fired, "timers_fired", "ms_timers_fired_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE, "Timers the driver has fired."),
    RUNTIME(accept_errors, "accept_errors", "ms_accept_errors_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE,
            "Accepts that failed for want of file descriptors or memory."),
    RUNTIME(accept_pauses, "accept_pauses", "ms_accept_paused_total", MS_METRIC_COUNTER,
            MS_METRIC_U64, MS_UNIT_NONE,
            "Times a listener stopped accepting for a moment after such a failure."),

    WORKER(park_count, "park_count", "ms_worker_parks_total", MS_METRIC_COUNTER, MS_METRIC_U64,
           MS_UNIT_NONE, RT(park_count), "Times the worker went to sleep."),
    WORKER(noop_count, "noop_count", "ms_worker_noop_unparks_total", MS_METRIC_COUNTER,
           MS_METRIC_U64, MS_UNIT_NONE, RT(noop_count), "Wake-ups that found no work."),
    WORKER(steal_count, "steal_count", "ms_worker_steals_total", MS_METRIC_COUNTER,
           MS_METRIC_U64, MS_UNIT_NONE, RT(steal_count), "Tasks stolen from other workers."),
    WORKER(steal_operations, "steal_operations", "ms_worker_steal_operations_total",
           MS_METRIC_COUNTER, MS_METRIC_U64, MS_UNIT_NONE, RT(steal_operations),
           "Successful steal attempts."),
    WORKER(poll_count, "poll_count", "ms_worker_polls_total", MS_METRIC_COUNTER, MS_METRIC_U64,
           MS_UNIT_NONE, RT(poll_count), "Task polls."),
    WORKER(busy_ns, "busy", "ms_worker_busy_seconds_total", MS_METRIC_COUNTER, MS_METRIC_U64,
           MS_UNIT_NS, RT(busy_ns), "Seconds the worker was not parked."),
    WORKER(forced_yields, "forced_yields", "ms_worker_forced_yields_total", MS_METRIC_COUNTER,
           MS_METRIC_U64, MS_UNIT_NONE, RT(forced_yields),
           "Polls cut short by the cooperative budget."),
    WORKER(overflow_count, "overflow_count", "ms_worker_overflows_total", MS_METRIC_COUNTER,
           MS_METRIC_U64, MS_UNIT_NONE, RT(overflow_count),
           "Local queue overflows to the injection queue."),
    WORKER(local_schedule_count, "local_schedule_count", "ms_worker_local_schedules_total",
           MS_METRIC_COUNTER, MS_METRIC_U64, MS_UNIT_NONE, RT(local_schedule_count),
           "Tasks scheduled on the worker's own queue."),
    WORKER(spawned_tasks, "spawned_tasks", "ms_worker_spawned_tasks_total", MS_METRIC_COUNTER,
           MS_METRIC_U64, MS_UNIT_NONE, MS_METRIC_NO_SUM, "Tasks spawned from the worker."),
    WORKER(local_queue_depth, "local_queue_depth", "ms_worker_local_queue_depth",
           MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE, RT(local_queue_depth),
           "Tasks in the worker's local queue."),
    WORKER(local_queue_capacity, "local_queue_capacity", "ms_worker_local_queue_capacity",
           MS_METRIC_GAUGE, MS_METRIC_U32, MS_UNIT_NONE, MS_METRIC_NO_SUM,
           "Slots of the worker's local queue."),
    WORKER(parked, "parked", "ms_worker_parked", MS_METRIC_GAUGE, MS_METRIC_BOOL, MS_UNIT_NONE,
           MS_METRIC_NO_SUM, "1 while the worker is parked."),
    WORKER(active, "active", "ms_worker_active", MS_METRIC_GAUGE, MS_METRIC_BOOL, MS_UNIT_NONE,
           MS_METRIC_NO_SUM, "1 while the worker is active, 0 once a resize retired it."),
    WORKER(stalled_ms, "stalled", "ms_worker_stalled_seconds", MS_METRIC_GAUGE, MS_METRIC_U64,
           MS_UNIT_MS, MS_METRIC_NO_SUM, "Length of the worker's current stall, 0 if none."),
    WORKER(poll_duration, "poll_duration", "ms_worker_poll_duration_seconds",
           MS_METRIC_HISTOGRAM, MS_METRIC_HIST, MS_UNIT_NS, MS_METRIC_NO_SUM,
           "Time each task poll took on the worker."),
    WORKER(schedule_delay, "schedule_delay", "ms_worker_schedule_delay_seconds",
           MS_METRIC_HISTOGRAM, MS_METRIC_HIST, MS_UNIT_NS, MS_METRIC_NO_SUM,
           "Time from a task being scheduled (spawned, woken, yielded) to the worker starting "
           "to poll it."),
};

#define METRIC_COUNT (sizeof metric_descs / sizeof metric_descs[0])

const ms_metric_desc *ms_metric_descs(size_t *count) {
    if (count)
        *count = METRIC_COUNT;
    return metric_descs;
}

static uint64_t read_value(const void *base, size_t off, ms_metric_value value) {
    const char *p = (const char *)base + off;
    switch (value) {
    case MS_METRIC_U64: { uint64_t v; memcpy(&v, p, sizeof v); return v; }
    case MS_METRIC_U32: { uint32_t v; memcpy(&v, p, sizeof v); return v; }
    case MS_METRIC_BOOL: { bool v; memcpy(&v, p, sizeof v); return v; }
    default: return 0;
    }
}

uint64_t ms_metric_get(const ms_metrics *m, const ms_metric_desc *d, uint32_t worker) {
    if (!m || !d || d->value == MS_METRIC_HIST)
        return 0;
    if (d->scope == MS_METRIC_RUNTIME)
        return worker == MS_METRIC_TOTAL ? read_value(m, d->offset, d->value) : 0;
    if (worker == MS_METRIC_TOTAL) /* the sums are uint64_t */
        return d->sum_offset == MS_METRIC_NO_SUM ? 0
                                                 : read_value(m, d->sum_offset, MS_METRIC_U64);
    return worker < m->workers ? read_value(&m->worker[worker], d->offset, d->value) : 0;
}

const ms_histogram *ms_metric_histogram(const ms_metrics *m, const ms_metric_desc *d,
                                        uint32_t worker) {
    if (!m || !d || d->value != MS_METRIC_HIST || d->scope != MS_METRIC_WORKER ||
        worker >= m->workers)
        return NULL;
    return (const ms_histogram *)((const char *)&m->worker[worker] + d->offset);
}

uint64_t ms_metric_unit_ns(ms_metric_unit unit) {
    switch (unit) {
    case MS_UNIT_US: return 1000u;
    case MS_UNIT_MS: return 1000000u;
    default: return 1;
    }
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

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

/* A metric's value into o under its key: as stored (booleans as JSON
 * booleans); a histogram only when the snapshot has them. */
static void add_metric(cJSON *o, const ms_metrics *m, const ms_metric_desc *d, uint32_t worker) {
    if (d->value == MS_METRIC_HIST) {
        if (m->histograms)
            cJSON_AddItemToObject(o, d->key, hist_json(ms_metric_histogram(m, d, worker)));
    } else if (d->value == MS_METRIC_BOOL) {
        cJSON_AddBoolToObject(o, d->key, ms_metric_get(m, d, worker) != 0);
    } else {
        add_u64(o, d->key, ms_metric_get(m, d, worker));
    }
}

char *ms_metrics_to_json(const ms_metrics *m, bool pretty) {
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    for (size_t i = 0; i < METRIC_COUNT; i++)
        if (metric_descs[i].scope == MS_METRIC_RUNTIME)
            add_metric(root, m, &metric_descs[i], MS_METRIC_TOTAL);
    cJSON_AddBoolToObject(root, "histograms", m->histograms);
    for (size_t i = 0; i < METRIC_COUNT; i++)
        if (metric_descs[i].scope == MS_METRIC_WORKER &&
            metric_descs[i].sum_offset != MS_METRIC_NO_SUM)
            add_metric(root, m, &metric_descs[i], MS_METRIC_TOTAL);
    cJSON *arr = cJSON_AddArrayToObject(root, "per_worker");
    for (uint32_t w = 0; arr && w < m->workers; w++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        add_u64(o, "index", w);
        for (size_t i = 0; i < METRIC_COUNT; i++)
            if (metric_descs[i].scope == MS_METRIC_WORKER)
                add_metric(o, m, &metric_descs[i], w);
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
