/*
 * sched.c - worker threads, task placement, stealing and parking.
 *
 * A worker's loop: take the next task (every global_queue_interval ticks
 * the injection queue first, so it is never starved; then the local queue;
 * then a batch from the injection queue), else steal half of another
 * worker's queue (random start, at most half the workers searching), else
 * park.  After polling a task it runs what the poll put in the LIFO slot,
 * at most SCHED_MAX_LIFO_POLLS in a row.
 *
 * Placement: a task woken or spawned on a worker goes to that worker (the
 * LIFO slot, displacing the previous occupant to the local queue); a yield
 * goes to the back of the local queue; anything from another thread goes
 * to the injection queue and may wake a sleeper.  A full local queue moves
 * half of itself to the injection queue in one batch.
 *
 * Costs on the hot path: no shared atomic write per poll (metrics are per
 * worker), one CAS per local pop, one seq_cst fence plus a load when a push
 * might need a sleeper woken, and one relaxed load of a read-mostly line
 * per tick (is this worker still active?).
 *
 * Resizing: sched_resize moves nactive and wakes whoever must notice.  A
 * worker checks its index against nactive at the top of every tick and
 * after every wake-up; outside the range it retires (retire_worker), which
 * empties its queues into the injection queue before it stops counting as
 * unparked, so a notifier that misses it still finds the work.
 */
#define _GNU_SOURCE
#include "sched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "runtime.h"
#include "task.h"
#include "thread.h"

static __thread sched_worker *tls_worker;

#ifndef SCHED_PARK_YIELDS
#define SCHED_PARK_YIELDS 3
#endif

void met_worker_init(met_worker *m) {
    memset(m, 0, sizeof *m);
}

sched_worker *sched_current_worker(sched *s) {
    sched_worker *w = tls_worker;
    return w && w->sched == s ? w : NULL;
}

sched_worker *sched_current_worker_any(void) {
    return tls_worker;
}

void sched_count_poll(sched_worker *w) {
    met_add(&w->m.polls, 1);
}

void sched_count_forced_yield(sched_worker *w) {
    met_add(&w->m.forced_yields, 1);
}

static uint32_t rng_next(sched_worker *w) {
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->rng = x;
    return (uint32_t)(x >> 32);
}

uint64_t sched_next_id(sched *s) {
    sched_worker *w = sched_current_worker(s);
    if (w) {
        if (w->id_next == w->id_end) {
            uint64_t block = atomic_fetch_add_explicit(&s->next_id_block, 1, memory_order_relaxed);
            w->id_next = block * SCHED_ID_BLOCK;
            w->id_end = w->id_next + SCHED_ID_BLOCK;
        }
        return w->id_next++;
    }
    /* Outside the workers: a block of one. */
    return atomic_fetch_add_explicit(&s->next_id_block, 1, memory_order_relaxed) * SCHED_ID_BLOCK;
}

/* ---- waking sleepers ---- */

static void notify_parked(sched *s) {
    /* Pairs with the seq_cst RMW a parking worker does before its last
     * look at the queues: either it sees our task or we see it asleep. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!idle_should_wake(&s->idle))
        return;
    int i = idle_claim_sleeper(&s->idle);
    if (i >= 0)
        park_unpark(&s->workers[i].parker);
}

static bool work_pending(sched *s) {
    if (inj_len(&s->inject) > 0)
        return true;
    uint32_t n = sched_started(s);
    for (uint32_t i = 0; i < n; i++)
        if (!rq_is_empty(&s->workers[i].queue))
            return true;
    return false;
}

bool sched_work_pending(sched *s) {
    return work_pending(s);
}

void sched_prefer_inject(sched *s, uint32_t i) {
    atomic_store_explicit(&s->workers[i].inject_first, true, memory_order_relaxed);
}

/* ---- placement ---- */

static void inject_or_cancel(sched *s, ms_task *t) {
    if (!inj_push(&s->inject, t))
        task_cancel_queued(t); /* shut down: nobody will drain it */
}

static void push_back(sched_worker *w, ms_task *t) {
    sched *s = w->sched;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (rq_try_push(&w->queue, t))
            return;
        ms_task *batch[RQ_CAP / 2 + 1];
        uint32_t n = rq_take_half(&w->queue, batch);
        if (n == 0)
            continue; /* a thief raced us and made room, or holds the head */
        batch[n++] = t;
        for (uint32_t i = 0; i + 1 < n; i++)
            batch[i]->next = batch[i + 1];
        met_add(&w->m.overflows, 1);
        if (!inj_push_batch(&s->inject, batch[0], batch[n - 1], n)) {
            for (uint32_t i = 0; i < n; i++)
                task_cancel_queued(batch[i]);
        }
        return;
    }
    inject_or_cancel(s, t);
}

static void schedule_local(sched_worker *w, ms_task *t, bool is_yield) {
    bool notify;
    met_add(&w->m.local_schedules, 1);
    if (is_yield) {
        push_back(w, t);
        notify = true;
    } else {
        ms_task *prev = atomic_exchange_explicit(&w->lifo, t, memory_order_acq_rel);
        notify = prev != NULL;
        if (prev)
            push_back(w, prev);
    }
    if (notify)
        notify_parked(w->sched);
}

void sched_schedule(sched *s, ms_task *t, bool is_yield) {
    sched_worker *w = sched_current_worker(s);
    if (w) {
        schedule_local(w, t, is_yield);
        return;
    }
    if (!inj_push(&s->inject, t)) {
        task_cancel_queued(t);
        return;
    }
    notify_parked(s);
}

/* ---- finding work ---- */

/* Moves a fair share of the injection queue into the local queue and
 * returns one task of it. */
static ms_task *pull_inject(sched_worker *w) {
    sched *s = w->sched;
    uint64_t len = inj_len(&s->inject);
    if (len == 0)
        return NULL;
    uint64_t want = len / sched_active(s) + 1;
    uint32_t room = rq_room(&w->queue);
    if (want > room + 1)
        want = room + 1;
    if (want > RQ_CAP / 2)
        want = RQ_CAP / 2;
    uint64_t got;
    ms_task *first = inj_pop_batch(&s->inject, want, &got);
    if (!first)
        return NULL;
    ms_task *t = first->next;
    while (t) {
        ms_task *next = t->next;
        if (!rq_try_push(&w->queue, t))
            push_back(w, t);
        t = next;
    }
    return first;
}

static ms_task *next_task(sched_worker *w) {
    sched *s = w->sched;
    w->tick++;
    if (w->tick % atomic_load_explicit(&s->global_queue_interval, memory_order_relaxed) == 0 ||
        (atomic_load_explicit(&w->inject_first, memory_order_relaxed) &&
         atomic_exchange_explicit(&w->inject_first, false, memory_order_relaxed))) {
        ms_task *t = inj_pop(&s->inject);
        if (t)
            return t;
    }
    ms_task *t = rq_pop(&w->queue);
    if (t)
        return t;
    return pull_inject(w);
}

static ms_task *steal_work(sched_worker *w) {
    sched *s = w->sched;
    if (!w->searching) {
        if (!idle_try_search(&s->idle))
            return NULL;
        w->searching = true;
    }
    uint32_t n = sched_started(s);
    uint32_t start = rng_next(w) % n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = (start + i) % n;
        if (v == w->index)
            continue;
        uint32_t stolen;
        ms_task *t = rq_steal_into(&s->workers[v].queue, &w->queue, &stolen);
        if (t) {
            met_add(&w->m.steal_ops, 1);
            met_add(&w->m.steals, stolen);
            return t;
        }
    }
    return pull_inject(w);
}

static void run_task(sched_worker *w, ms_task *t) {
    sched *s = w->sched;
    if (w->searching) {
        w->searching = false;
        /* The last searcher found work: there may be more, so wake one
         * more worker to keep looking. */
        if (idle_stop_search(&s->idle))
            notify_parked(s);
    }
    uint32_t budget = atomic_load_explicit(&s->budget, memory_order_relaxed);
    task_run(t, w, budget);
    for (int lifo_polls = 0;; lifo_polls++) {
        /* A relaxed look first: the slot is usually empty, and only a
         * full one needs the exchange (the health monitor may take it). */
        if (!atomic_load_explicit(&w->lifo, memory_order_relaxed))
            break;
        t = atomic_exchange_explicit(&w->lifo, NULL, memory_order_acquire);
        if (!t)
            break;
        if (lifo_polls >= SCHED_MAX_LIFO_POLLS) {
            /* This worker runs it soon; waking a sleeper to steal it would
             * cost a futex wake per few tasks of a spawn chain. */
            push_back(w, t);
            break;
        }
        task_run(t, w, budget);
    }
}

/* ---- parking ---- */

static void park_worker(sched_worker *w) {
    sched *s = w->sched;
    uint64_t now = ms_now_ns();
    uint64_t since = met_get(&w->m.busy_since);
    met_busy_update(&w->m, since && now > since ? now - since : 0, 0);
    if (w->polls_at_wake != UINT64_MAX && met_get(&w->m.polls) == w->polls_at_wake)
        met_add(&w->m.noops, 1);
    met_add(&w->m.parks, 1);

    bool was_searching = w->searching;
    w->searching = false;
    if (idle_to_parked(&s->idle, w->index, was_searching) && work_pending(s))
        notify_parked(s);

    for (int spin = 0;; spin++) {
        if (atomic_load_explicit(&s->stopping, memory_order_acquire)) {
            idle_unregister(&s->idle, w->index);
            break;
        }
        if (spin < SCHED_PARK_YIELDS) {
            if (!park_try(&w->parker)) {
                sched_yield();
                continue;
            }
        } else {
            park_wait(&w->parker, -1);
        }
        if (atomic_load_explicit(&s->stopping, memory_order_acquire)) {
            idle_unregister(&s->idle, w->index);
            break;
        }
        if (idle_was_claimed(&s->idle, w->index)) {
            w->searching = true; /* claimed sleepers are counted as searching */
            break;
        }
        if (w->index >= sched_active(s)) {
            /* Retired while asleep: back to the loop, which retires it. */
            if (!idle_unregister(&s->idle, w->index))
                w->searching = true; /* a notifier claimed it meanwhile */
            break;
        }
    }
    met_busy_update(&w->m, 0, ms_now_ns());
    w->polls_at_wake = met_get(&w->m.polls);
}

/* ---- retiring ---- */

/* Hands the LIFO slot and the local queue to the injection queue.  Thieves
 * may take from the queue meanwhile; that is fine, each task leaves once. */
static uint32_t hand_back(sched_worker *w) {
    sched *s = w->sched;
    uint32_t n = 0;
    ms_task *head = NULL, *tail = NULL;
    ms_task *t = atomic_exchange_explicit(&w->lifo, NULL, memory_order_acquire);
    if (!t)
        t = rq_pop(&w->queue);
    while (t) {
        t->next = NULL;
        if (tail)
            tail->next = t;
        else
            head = t;
        tail = t;
        n++;
        t = rq_pop(&w->queue);
    }
    if (n && !inj_push_batch(&s->inject, head, tail, n)) {
        while (head) {
            ms_task *next = head->next;
            task_cancel_queued(head);
            head = next;
        }
    }
    return n;
}

/* Waits, retired, until the index is active again (true) or the runtime
 * stops (false). */
static bool retire_worker(sched_worker *w) {
    sched *s = w->sched;
    uint32_t handed = hand_back(w);
    /* A notifier that saw this worker still counted as unparked woke no
     * one, trusting it to look at the queues before it sleeps; so look,
     * after the count dropped (seq_cst, as in park_worker). */
    idle_retire(&s->idle, w->searching);
    w->searching = false;
    if (handed || work_pending(s))
        notify_parked(s);
    uint64_t since = met_get(&w->m.busy_since), now = ms_now_ns();
    met_busy_update(&w->m, since && now > since ? now - since : 0, 0);
    met_set(&w->m.retired, 1);
    for (;;) {
        if (atomic_load_explicit(&s->stopping, memory_order_acquire))
            return false;
        if (w->index < sched_active(s))
            break;
        park_wait(&w->parker, -1);
    }
    met_set(&w->m.retired, 0);
    idle_activate(&s->idle);
    w->searching = true;
    met_busy_update(&w->m, 0, ms_now_ns());
    w->polls_at_wake = met_get(&w->m.polls);
    return true;
}

static void *worker_main(void *arg) {
    sched_worker *w = arg;
    sched *s = w->sched;
    tls_worker = w;
    met_busy_update(&w->m, 0, ms_now_ns());
    if (w->late) {
        /* Started by a resize: counts itself in, and starts out looking
         * for the work it was brought in for. */
        idle_activate(&s->idle);
        w->searching = true;
    }
    for (;;) {
        if (w->tick % s->event_interval == 0 &&
            atomic_load_explicit(&s->stopping, memory_order_acquire))
            break;
        if (w->index >= atomic_load_explicit(&s->nactive, memory_order_relaxed)) {
            if (!retire_worker(w))
                break;
            continue;
        }
        ms_task *t = next_task(w);
        if (!t)
            t = steal_work(w);
        if (t) {
            run_task(w, t);
            continue;
        }
        if (atomic_load_explicit(&s->stopping, memory_order_acquire))
            break;
        park_worker(w);
    }
    if (w->searching) {
        w->searching = false;
        idle_stop_search(&s->idle);
    }
    uint64_t since = met_get(&w->m.busy_since), end = ms_now_ns();
    met_busy_update(&w->m, since && end > since ? end - since : 0, 0);
    thr_stop_hook(&s->rt->cfg, w->name);
    task_pool_flush(&w->tasks, &s->tasks);
    tls_worker = NULL;
    return NULL;
}

/* ---- lifecycle ---- */

uint32_t sched_active(sched *s) {
    return atomic_load_explicit(&s->nactive, memory_order_acquire);
}

uint32_t sched_started(sched *s) {
    return atomic_load_explicit(&s->nstarted, memory_order_acquire);
}

int sched_init(sched *s, ms_runtime *rt, const ms_config *cfg, ms_error *err) {
    memset(s, 0, sizeof *s);
    s->rt = rt;
    s->max_workers = ms_config_max_workers(cfg);
    s->event_interval = cfg->event_interval;
    s->target = cfg->worker_threads;
    atomic_init(&s->global_queue_interval, cfg->global_queue_interval);
    atomic_init(&s->budget, cfg->budget);
    atomic_init(&s->nstarted, 0);
    atomic_init(&s->nactive, cfg->worker_threads);
    atomic_init(&s->resizes, 0);
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id_block, 1);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(sched_worker) * s->max_workers) != 0)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for %u workers", s->max_workers);
    s->workers = mem;
    if (idle_init(&s->idle, s->max_workers, cfg->worker_threads) != 0) {
        free(s->workers);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for %u workers", s->max_workers);
    }
    pthread_mutex_init(&s->resize_lock, NULL);
    inj_init(&s->inject);
    uint64_t seed = ms_now_ns() | 1;
    for (uint32_t i = 0; i < s->max_workers; i++) {
        sched_worker *w = &s->workers[i];
        memset(w, 0, sizeof *w);
        met_worker_init(&w->m);
        rq_init(&w->queue);
        park_init(&w->parker);
        w->index = i;
        w->sched = s;
        w->rng = (seed + 0x9e3779b97f4a7c15ull * (i + 1)) | 1;
        w->polls_at_wake = UINT64_MAX;
        w->late = i >= cfg->worker_threads;
        snprintf(w->name, sizeof w->name, "%s-worker-%u", cfg->thread_name, i);
    }
    task_depot_init(&s->tasks);
    return 0;
}

/* Under resize_lock: starts threads up to n. */
static int start_threads_locked(sched *s, uint32_t n, ms_error *err) {
    for (uint32_t i = atomic_load_explicit(&s->nstarted, memory_order_relaxed); i < n; i++) {
        sched_worker *w = &s->workers[i];
        /* Counted before it runs: the new worker's own loops over the
         * workers must include itself. */
        atomic_store_explicit(&s->nstarted, i + 1, memory_order_release);
        int rc = thr_spawn(&s->rt->cfg, w->name, worker_main, w, false, &w->thread, err);
        if (rc != 0) {
            atomic_store_explicit(&s->nstarted, i, memory_order_release);
            return rc;
        }
        w->started = true;
    }
    return 0;
}

int sched_start(sched *s, ms_error *err) {
    pthread_mutex_lock(&s->resize_lock);
    int rc = start_threads_locked(s, s->target, err);
    pthread_mutex_unlock(&s->resize_lock);
    return rc;
}

/* Under resize_lock: makes nactive min(max, target + replacements),
 * starting or waking the workers that become active and waking the
 * retiring ones that sleep, so that they notice. */
static int apply_locked(sched *s, ms_error *err) {
    if (atomic_load_explicit(&s->stopping, memory_order_acquire))
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    uint32_t want = s->target + s->replacements;
    if (want > s->max_workers)
        want = s->max_workers;
    uint32_t old = atomic_load_explicit(&s->nactive, memory_order_relaxed);
    if (want == old)
        return 0;
    uint32_t started = atomic_load_explicit(&s->nstarted, memory_order_relaxed);
    if (want > started) {
        /* Publish first: a new thread counts itself in against it. */
        idle_set_active(&s->idle, want);
        atomic_store_explicit(&s->nactive, want, memory_order_release);
        int rc = start_threads_locked(s, want, err);
        if (rc != 0) {
            uint32_t got = atomic_load_explicit(&s->nstarted, memory_order_relaxed);
            if (got < old)
                got = old;
            idle_set_active(&s->idle, got);
            atomic_store_explicit(&s->nactive, got, memory_order_release);
            atomic_fetch_add_explicit(&s->resizes, 1, memory_order_relaxed);
            return rc;
        }
    } else {
        idle_set_active(&s->idle, want);
        atomic_store_explicit(&s->nactive, want, memory_order_release);
    }
    /* Retired workers that become active again, and active ones that
     * must retire, may be asleep: wake every index between the two. */
    uint32_t lo = old < want ? old : want, hi = old < want ? want : old;
    if (hi > started)
        hi = started;
    for (uint32_t i = lo; i < hi; i++)
        park_unpark(&s->workers[i].parker);
    atomic_fetch_add_explicit(&s->resizes, 1, memory_order_relaxed);
    return 0;
}

int sched_resize(sched *s, uint32_t n, ms_error *err) {
    if (n < 1 || n > s->max_workers)
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "worker_threads = %u is out of range: 1..%u (max_worker_threads)", n,
                            s->max_workers);
    pthread_mutex_lock(&s->resize_lock);
    uint32_t before = s->target;
    s->target = n;
    int rc = apply_locked(s, err);
    if (rc == MS_E_SHUTTING_DOWN) {
        s->target = before;
    } else if (rc != 0) {
        /* The OS refused a thread: keep what was started. */
        uint32_t got = atomic_load_explicit(&s->nactive, memory_order_relaxed);
        s->target = got > s->replacements ? got - s->replacements : 1;
    }
    pthread_mutex_unlock(&s->resize_lock);
    return rc;
}

bool sched_replacement(sched *s, int delta) {
    pthread_mutex_lock(&s->resize_lock);
    bool ok = true;
    if (delta > 0) {
        if (s->target + s->replacements >= s->max_workers) {
            ok = false;
        } else {
            s->replacements++;
            if (apply_locked(s, NULL) != 0) {
                s->replacements--;
                ok = false;
            }
        }
    } else if (s->replacements > 0) {
        s->replacements--;
        apply_locked(s, NULL);
    }
    pthread_mutex_unlock(&s->resize_lock);
    return ok;
}

uint32_t sched_stop(sched *s, uint64_t deadline_ns) {
    /* Under resize_lock: no resize starts a thread after this point, and
     * the set of started threads is final. */
    pthread_mutex_lock(&s->resize_lock);
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    uint32_t n = atomic_load_explicit(&s->nstarted, memory_order_relaxed);
    pthread_mutex_unlock(&s->resize_lock);
    for (uint32_t i = 0; i < n; i++)
        park_unpark(&s->workers[i].parker);
    uint32_t stuck = 0;
    for (uint32_t i = 0; i < n; i++) {
        sched_worker *w = &s->workers[i];
        if (!w->started)
            continue;
        uint64_t now = ms_now_ns();
        uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
        struct timespec abs;
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_sec += (time_t)(left / 1000000000u);
        abs.tv_nsec += (long)(left % 1000000000u);
        if (abs.tv_nsec >= 1000000000L) {
            abs.tv_sec++;
            abs.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(w->thread, NULL, &abs) == 0) {
            w->started = false;
        } else {
            pthread_detach(w->thread);
            stuck++;
        }
    }
    return stuck;
}

bool sched_rescue_lifo(sched *s, uint32_t i) {
    ms_task *t = atomic_exchange_explicit(&s->workers[i].lifo, NULL, memory_order_acquire);
    if (!t)
        return false;
    if (!inj_push(&s->inject, t)) {
        task_cancel_queued(t);
        return true;
    }
    notify_parked(s);
    return true;
}

uint64_t sched_cancel_queued(sched *s) {
    uint64_t n = 0;
    uint32_t started = sched_started(s);
    for (uint32_t i = 0; i < started; i++) {
        sched_worker *w = &s->workers[i];
        ms_task *lifo = atomic_exchange_explicit(&w->lifo, NULL, memory_order_acquire);
        if (lifo) {
            task_cancel_queued(lifo);
            n++;
        }
        ms_task *t;
        while ((t = rq_pop(&w->queue))) {
            task_cancel_queued(t);
            n++;
        }
    }
    ms_task *t = inj_close(&s->inject);
    while (t) {
        ms_task *next = t->next;
        task_cancel_queued(t);
        n++;
        t = next;
    }
    return n;
}

void sched_destroy(sched *s) {
    task_depot_destroy(&s->tasks);
    inj_destroy(&s->inject);
    idle_destroy(&s->idle);
    pthread_mutex_destroy(&s->resize_lock);
    free(s->workers);
    s->workers = NULL;
}

/* ---- entry points ---- */

int ms_spawn(ms_runtime *rt, ms_poll_fn poll, void *state, ms_drop_fn drop, ms_task **handle) {
    if (!rt || !poll)
        return MS_E_INVALID_ARGUMENT;
    sched *s = &rt->sched;
    ms_task *t = task_alloc(rt, TASK_ASYNC, handle != NULL);
    if (!t)
        return MS_E_NO_MEMORY;
    t->u.a.poll = poll;
    t->u.a.state = state;
    t->u.a.drop = drop;
    t->id = sched_next_id(s);
    if (!own_insert(&rt->owned, t)) {
        free(t);
        return MS_E_SHUTTING_DOWN;
    }
    sched_worker *w = sched_current_worker(s);
    if (w)
        met_add(&w->m.spawned, 1);
    else
        atomic_fetch_add_explicit(&rt->remote_spawned, 1, memory_order_relaxed);
    if (handle)
        *handle = t;
    sched_schedule(s, t, false);
    return 0;
}

int ms_block_on(ms_runtime *rt, ms_poll_fn poll, void *state, void **output, ms_error *err) {
    if (!rt || !poll)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "ms_block_on: runtime and poll are required");
    if (sched_current_worker_any())
        return ms_error_set(err, MS_E_WRONG_THREAD,
                            "ms_block_on called on a worker thread, which must not block");
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    park *p = park_thread_current();
    if (!p)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a thread parker");
    ms_cx cx = {.rt = rt, .waker = park_thread_waker(p)};
    for (;;) {
        cx.budget = atomic_load_explicit(&rt->sched.budget, memory_order_relaxed);
        ms_poll r = poll(&cx, state);
        if (r == MS_POLL_READY) {
            if (output)
                *output = cx.output;
            ms_waker_drop(&cx.waker);
            free(cx.fail_msg);
            return 0;
        }
        if (r != MS_POLL_PENDING) {
            int code = cx.fail_code ? cx.fail_code : MS_E_TASK_FAILED;
            ms_error_set(err, code, "%s", cx.fail_msg ? cx.fail_msg : ms_err_name(code));
            free(cx.fail_msg);
            ms_waker_drop(&cx.waker);
            return code;
        }
        park_wait(p, -1);
    }
}
