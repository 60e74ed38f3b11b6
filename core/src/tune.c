/*
 * tune.c - changing a running runtime's settings (see "Live tuning" in
 * ms.h).
 *
 * A value is parsed and range-checked by ms_config_set on a copy of the
 * live configuration, so an operator gets the same words for a bad value
 * here as in a profile; then the one component that owns the setting
 * applies it (the scheduler for workers and its knobs, the blocking pool
 * for its ceiling and keep-alive).  Nothing is changed when a value is
 * refused.
 */
#include <stdio.h>
#include <string.h>

#include "runtime.h"

/* "worker_threads, ..., budget": the live fields, by the names users set
 * them by, for the message that refuses another. */
static void live_names(char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    ms_config_field_desc d;
    for (size_t i = 0; ms_config_field_at(i, &d) == 0; i++) {
        if (!d.live)
            continue;
        int n = snprintf(buf + len, size - len, "%s%s", len ? ", " : "",
                         d.alias ? d.alias : d.name);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
}

uint32_t ms_runtime_budget(ms_runtime *rt) {
    return atomic_load_explicit(&rt->sched.budget, memory_order_relaxed);
}

void ms_runtime_live_config(ms_runtime *rt, ms_config *out) {
    sched *s = &rt->sched;
    *out = rt->cfg;
    pthread_mutex_lock(&s->resize_lock);
    out->worker_threads = s->target;
    pthread_mutex_unlock(&s->resize_lock);
    out->global_queue_interval = atomic_load_explicit(&s->global_queue_interval,
                                                      memory_order_relaxed);
    out->budget = atomic_load_explicit(&s->budget, memory_order_relaxed);
    blk_limits(&rt->blocking, &out->max_blocking_threads, &out->thread_keep_alive_ms);
}

int ms_runtime_tune(ms_runtime *rt, const char *key, const char *value, ms_error *err) {
    if (!rt || !key || !value)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "ms_runtime_tune: runtime, key and value are required");
    ms_config next;
    ms_runtime_live_config(rt, &next);
    int rc = ms_config_set(&next, key, value, err);
    if (rc != 0)
        return rc;
    if (!ms_config_is_live(key)) {
        char live[160];
        live_names(live, sizeof live);
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "%s cannot change while the runtime runs (live: %s); it takes a "
                            "restart",
                            key, live);
    }
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    const char *field = ms_config_field(key);
    if (strcmp(field, "worker_threads") == 0)
        return sched_resize(&rt->sched, next.worker_threads, err);
    if (strcmp(field, "max_blocking_threads") == 0 || strcmp(field, "thread_keep_alive_ms") == 0)
        return blk_tune(&rt->blocking, next.max_blocking_threads, next.thread_keep_alive_ms, err);
    if (strcmp(field, "global_queue_interval") == 0)
        atomic_store_explicit(&rt->sched.global_queue_interval, next.global_queue_interval,
                              memory_order_relaxed);
    else
        atomic_store_explicit(&rt->sched.budget, next.budget, memory_order_relaxed);
    return 0;
}
