/*
 * blocking.c - the blocking pool; see blocking.h.
 *
 * Spawning a thread happens under the pool lock, which keeps the thread
 * count exact (never above max) at the cost of holding the lock for the
 * pthread_create; jobs that find an idle thread never pay it.
 */
#define _GNU_SOURCE
#include "blocking.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime.h"
#include "task.h"
#include "thread.h"

static void gauges(blk_pool *p) {
    atomic_store_explicit(&p->threads_gauge, p->threads, memory_order_relaxed);
    atomic_store_explicit(&p->idle_gauge, p->idle, memory_order_relaxed);
}

void blk_init(blk_pool *p, ms_runtime *rt, const ms_config *cfg) {
    p->rt = rt;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work_cond, &ca);
    pthread_cond_init(&p->exit_cond, &ca);
    pthread_condattr_destroy(&ca);
    p->head = p->tail = NULL;
    p->threads = p->idle = p->notified = p->leaving = 0;
    p->max_threads = cfg->max_blocking_threads;
    p->keep_alive_ns = cfg->thread_keep_alive_ms * 1000000u;
    p->next_name = 0;
    p->shutdown = false;
    p->exited = NULL;
    p->nexited = p->exited_cap = 0;
    atomic_init(&p->queue_depth, 0);
    atomic_init(&p->threads_gauge, 0);
    atomic_init(&p->idle_gauge, 0);
    atomic_init(&p->jobs_total, 0);
}

/* Takes the list of exited threads (under the lock) and joins them (the
 * caller has released the lock).  Each has returned or is returning. */
static pthread_t *take_exited_locked(blk_pool *p, uint32_t *n) {
    pthread_t *list = p->exited;
    *n = p->nexited;
    p->exited = NULL;
    p->nexited = p->exited_cap = 0;
    return list;
}

static void join_all(pthread_t *list, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        pthread_join(list[i], NULL);
    free(list);
}

void blk_destroy(blk_pool *p) {
    free(p->exited);
    pthread_cond_destroy(&p->work_cond);
    pthread_cond_destroy(&p->exit_cond);
    pthread_mutex_destroy(&p->lock);
}

static struct timespec mono_deadline(uint64_t deadline_ns) {
    struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    return ts;
}

static ms_task *pop_locked(blk_pool *p) {
    ms_task *t = p->head;
    if (t) {
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        t->next = NULL;
        atomic_store_explicit(&p->queue_depth,
                              atomic_load_explicit(&p->queue_depth, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    }
    return t;
}

typedef struct blk_thread {
    blk_pool *pool;
    char name[32];
} blk_thread;

/* Under lock: the pool has more threads than max_threads (lowered by
 * blk_tune) counting those already on their way out; if so the caller
 * becomes one of them. */
static bool surplus_locked(blk_pool *p) {
    if (p->threads - p->leaving <= p->max_threads)
        return false;
    p->leaving++;
    return true;
}

static void *blk_main(void *arg) {
    blk_thread bt = *(blk_thread *)arg;
    free(arg);
    blk_pool *p = bt.pool;
    rt_set_current(p->rt);
    pthread_mutex_lock(&p->lock);
    bool surplus = false;
    for (;;) {
        ms_task *t;
        while (!(surplus = surplus_locked(p)) && (t = pop_locked(p))) {
            pthread_mutex_unlock(&p->lock);
            task_run_blocking(t);
            pthread_mutex_lock(&p->lock);
        }
        if (p->shutdown || surplus)
            break;
        p->idle++;
        gauges(p);
        /* The keep-alive is read afresh after every wake-up: blk_tune
         * broadcasts so that a shorter one takes effect at once. */
        uint64_t idle_since = ms_now_ns();
        bool timed_out = false;
        while (p->notified == 0 && !p->shutdown) {
            if (surplus_locked(p)) {
                surplus = timed_out = true;
                break;
            }
            uint64_t deadline = idle_since + p->keep_alive_ns;
            if (ms_now_ns() >= deadline) {
                timed_out = true;
                break;
            }
            struct timespec ts = mono_deadline(deadline);
            pthread_cond_timedwait(&p->work_cond, &p->lock, &ts);
        }
        if (p->notified > 0) {
            p->notified--;
            timed_out = false; /* a job is meant for us: take it */
        }
        p->idle--;
        gauges(p);
        if (surplus || (timed_out && !p->head))
            break;
    }
    pthread_mutex_unlock(&p->lock);
    /* The stop hook runs before the thread stops counting, so it never
     * runs after shutdown returned. */
    thr_stop_hook(&p->rt->cfg, bt.name);
    rt_set_current(NULL);
    pthread_mutex_lock(&p->lock);
    if (p->nexited == p->exited_cap) {
        uint32_t cap = p->exited_cap ? p->exited_cap * 2 : 8;
        pthread_t *grown = realloc(p->exited, cap * sizeof *grown);
        if (grown) {
            p->exited = grown;
            p->exited_cap = cap;
        }
    }
    if (p->nexited < p->exited_cap)
        p->exited[p->nexited++] = pthread_self();
    else
        pthread_detach(pthread_self()); /* no memory to remember it */
    p->threads--;
    if (surplus)
        p->leaving--;
    gauges(p);
    if (p->threads == 0)
        pthread_cond_broadcast(&p->exit_cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts a thread; the lock is held.  Returns 0 or an error code. */
static int spawn_thread_locked(blk_pool *p, ms_error *err) {
    blk_thread *bt = malloc(sizeof *bt);
    if (!bt)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a blocking thread");
    bt->pool = p;
    snprintf(bt->name, sizeof bt->name, "%s-blocking-%llu", p->rt->cfg.thread_name,
             (unsigned long long)p->next_name++);
    int rc = thr_spawn(&p->rt->cfg, bt->name, blk_main, bt, false, NULL, err);
    if (rc != 0) {
        free(bt);
        return rc;
    }
    p->threads++;
    gauges(p);
    return 0;
}

void blk_limits(blk_pool *p, uint32_t *max_threads, uint64_t *keep_alive_ms) {
    pthread_mutex_lock(&p->lock);
    *max_threads = p->max_threads;
    *keep_alive_ms = p->keep_alive_ns / 1000000u;
    pthread_mutex_unlock(&p->lock);
}

int blk_tune(blk_pool *p, uint32_t max_threads, uint64_t keep_alive_ms, ms_error *err) {
    pthread_mutex_lock(&p->lock);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->lock);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    bool raised = max_threads > p->max_threads;
    p->max_threads = max_threads;
    p->keep_alive_ns = keep_alive_ms * 1000000u;
    /* Queued jobs waited for a thread the old ceiling refused: start what
     * the new one allows (one per job). */
    int rc = 0;
    if (raised) {
        uint64_t waiting = atomic_load_explicit(&p->queue_depth, memory_order_relaxed);
        uint64_t covered = p->idle > p->notified ? p->idle - p->notified : 0;
        while (rc == 0 && waiting > covered && p->threads - p->leaving < p->max_threads) {
            rc = spawn_thread_locked(p, err);
            waiting--;
        }
    }
    /* Idle threads re-read the keep-alive, and the surplus leaves. */
    pthread_cond_broadcast(&p->work_cond);
    uint32_t nexited = 0;
    pthread_t *exited = take_exited_locked(p, &nexited);
    pthread_mutex_unlock(&p->lock);
    join_all(exited, nexited);
    return rc;
}

int blk_spawn(blk_pool *p, ms_task *t, ms_error *err) {
    pthread_mutex_lock(&p->lock);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->lock);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    t->next = NULL;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    atomic_store_explicit(&p->queue_depth,
                          atomic_load_explicit(&p->queue_depth, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&p->jobs_total, 1, memory_order_relaxed);
    int rc = 0;
    bool signal = false;
    if (p->idle > p->notified) {
        p->notified++;
        signal = true;
    } else if (p->threads - p->leaving < p->max_threads) {
        rc = spawn_thread_locked(p, err);
        if (rc != 0 && p->threads > 0)
            rc = 0; /* the existing threads will get to it */
        if (rc != 0) {
            /* Nobody can run it: take it back out. */
            ms_task **pp = &p->head, *prev = NULL;
            while (*pp != t) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            *pp = t->next;
            if (p->tail == t)
                p->tail = prev;
            atomic_store_explicit(&p->queue_depth,
                                  atomic_load_explicit(&p->queue_depth, memory_order_relaxed) - 1,
                                  memory_order_relaxed);
        }
    }
    uint32_t nexited = 0;
    pthread_t *exited = p->nexited ? take_exited_locked(p, &nexited) : NULL;
    pthread_mutex_unlock(&p->lock);
    if (exited)
        join_all(exited, nexited);
    /* Signalled after unlocking so the woken thread does not wake only to
     * sleep again on the mutex we hold.  `notified` was counted under the
     * lock, so the wake cannot be lost: a waiter re-checks it. */
    if (signal)
        pthread_cond_signal(&p->work_cond);
    return rc;
}

uint32_t blk_shutdown(blk_pool *p, uint64_t deadline_ns, uint64_t *cancelled) {
    pthread_mutex_lock(&p->lock);
    p->shutdown = true;
    ms_task *queued = p->head;
    p->head = p->tail = NULL;
    atomic_store_explicit(&p->queue_depth, 0, memory_order_relaxed);
    pthread_cond_broadcast(&p->work_cond);
    pthread_mutex_unlock(&p->lock);

    uint64_t n = 0;
    while (queued) {
        ms_task *next = queued->next;
        task_cancel_queued(queued);
        queued = next;
        n++;
    }
    *cancelled = n;

    pthread_mutex_lock(&p->lock);
    struct timespec ts = mono_deadline(deadline_ns);
    while (p->threads > 0) {
        if (pthread_cond_timedwait(&p->exit_cond, &p->lock, &ts) == ETIMEDOUT &&
            ms_now_ns() >= deadline_ns)
            break;
    }
    uint32_t left = p->threads;
    uint32_t nexited = 0;
    pthread_t *exited = take_exited_locked(p, &nexited);
    pthread_mutex_unlock(&p->lock);
    join_all(exited, nexited);
    return left;
}

int ms_spawn_blocking(ms_runtime *rt, ms_blocking_fn fn, void *arg, ms_task **handle) {
    if (!rt || !fn)
        return MS_E_INVALID_ARGUMENT;
    ms_task *t = task_alloc(rt, TASK_BLOCKING, handle != NULL);
    if (!t)
        return MS_E_NO_MEMORY;
    t->u.b.fn = fn;
    t->u.b.arg = arg;
    t->id = sched_next_id(&rt->sched);
    int rc = blk_spawn(&rt->blocking, t, NULL);
    if (rc != 0) {
        free(t);
        return rc;
    }
    if (handle)
        *handle = t;
    return 0;
}
