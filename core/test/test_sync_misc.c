/*
 * test_sync_misc.c - notify (one stores a permit, all wakes everyone
 * present and stores nothing), the async mutex (FIFO, held across yields,
 * mutual exclusion), the task queue (never more than max running,
 * priorities then submission order, aborts leave the queue, live resize),
 * batches (outputs in order, first failure reported) and fan-out (every
 * result delivered once, then the channel closes).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"
#include "test_rt.h"

#define V(i) ((void *)(uintptr_t)(i))
#define I(v) ((uintptr_t)(v))

/* ---- notify ---- */

typedef struct listener {
    ms_notify *n;
    ms_notify_waiter w;
    _Atomic int polled;
    _Atomic int woken;
    _Atomic int *order;
    int rank;
} listener;

static ms_poll listener_poll(ms_cx *cx, void *state) {
    listener *l = state;
    atomic_fetch_add(&l->polled, 1);
    if (ms_notify_poll(l->n, &l->w, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (l->order)
        l->rank = atomic_fetch_add(l->order, 1);
    atomic_store(&l->woken, 1);
    return MS_POLL_READY;
}

static void listener_drop(void *state) {
    listener *l = state;
    ms_notify_waiter_cancel(l->n, &l->w);
}

static void listener_init(listener *l, ms_notify *n) {
    memset(l, 0, sizeof *l);
    l->n = n;
    ms_notify_waiter_init(n, &l->w);
}

TEST(notify_one_without_waiters_stores_one_permit) {
    ms_runtime *rt = start(2);
    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    ms_notify_one(n);
    ms_notify_one(n); /* at most one permit */
    listener a, b;
    listener_init(&a, n);
    listener_init(&b, n);
    ms_task *ha, *hb;
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &a, listener_drop, &ha), 0);
    CHECK_INT_EQ(ms_task_join(ha, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &b, listener_drop, &hb), 0);
    CHECK(wait_int(&b.polled, 1));
    usleep(5000);
    CHECK_INT_EQ(atomic_load(&b.woken), 0);
    ms_notify_one(n);
    CHECK_INT_EQ(ms_task_join(hb, 20000, NULL, NULL), 0);
    ms_task_release(ha);
    ms_task_release(hb);
    ms_notify_unref(n);
    stop(rt);
}

TEST(notify_one_wakes_waiters_one_at_a_time_in_fifo_order) {
    enum { N = 10 };
    ms_runtime *rt = start(1);
    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    _Atomic int order = 0;
    listener ls[N];
    ms_task *hs[N];
    for (int i = 0; i < N; i++) {
        listener_init(&ls[i], n);
        ls[i].order = &order;
        CHECK_INT_EQ(ms_spawn(rt, listener_poll, &ls[i], listener_drop, &hs[i]), 0);
        CHECK(wait_int(&ls[i].polled, 1));
    }
    for (int i = 0; i < N; i++) {
        ms_notify_one(n);
        CHECK(wait_int(&order, i + 1));
        usleep(1000);
        CHECK_INT_EQ(atomic_load(&order), i + 1); /* exactly one more */
    }
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, NULL), 0);
        CHECK_INT_EQ(ls[i].rank, i);
        ms_task_release(hs[i]);
    }
    ms_notify_unref(n);
    stop(rt);
}

TEST(notify_all_wakes_every_waiter_and_stores_nothing) {
    enum { N = 100 };
    ms_runtime *rt = start(2);
    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    listener ls[N];
    ms_task *hs[N];
    for (int i = 0; i < N; i++) {
        listener_init(&ls[i], n);
        CHECK_INT_EQ(ms_spawn(rt, listener_poll, &ls[i], listener_drop, &hs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(wait_int(&ls[i].polled, 1));
    ms_notify_all(n);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, NULL), 0);
        ms_task_release(hs[i]);
    }
    /* Nothing stored: a new waiter waits. */
    listener late;
    listener_init(&late, n);
    ms_task *hl;
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &late, listener_drop, &hl), 0);
    CHECK(wait_int(&late.polled, 1));
    usleep(5000);
    CHECK_INT_EQ(atomic_load(&late.woken), 0);
    ms_task_abort(hl);
    CHECK_INT_EQ(ms_task_join(hl, 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    ms_task_release(hl);
    ms_notify_unref(n);
    stop(rt);
}

TEST(notify_all_between_init_and_first_poll_is_not_missed) {
    ms_runtime *rt = start(2);
    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    listener l;
    listener_init(&l, n);
    ms_notify_all(n);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &l, listener_drop, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    ms_notify_unref(n);
    stop(rt);
}

/* A listener that is woken but never looks, then is aborted: its
 * notify_one passes to the next listener. */
typedef struct deaf {
    ms_notify *n;
    ms_notify_waiter w;
    _Atomic int polled;
} deaf;

static ms_poll deaf_poll(ms_cx *cx, void *state) {
    deaf *d = state;
    if (atomic_fetch_add(&d->polled, 1) == 0)
        return ms_notify_poll(d->n, &d->w, cx);
    return MS_POLL_PENDING;
}

static void deaf_drop(void *state) {
    deaf *d = state;
    ms_notify_waiter_cancel(d->n, &d->w);
}

TEST(a_notification_received_by_a_task_that_gives_up_is_passed_on) {
    ms_runtime *rt = start(2);
    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    deaf d = {.n = n};
    ms_notify_waiter_init(n, &d.w);
    listener l;
    listener_init(&l, n);
    ms_task *hd, *hl;
    CHECK_INT_EQ(ms_spawn(rt, deaf_poll, &d, deaf_drop, &hd), 0);
    CHECK(wait_int(&d.polled, 1));
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &l, listener_drop, &hl), 0);
    CHECK(wait_int(&l.polled, 1));
    ms_notify_one(n); /* goes to d, the first */
    CHECK(wait_int(&d.polled, 2));
    usleep(2000);
    CHECK_INT_EQ(atomic_load(&l.woken), 0);
    ms_task_abort(hd);
    CHECK_INT_EQ(ms_task_join(hd, 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    CHECK_INT_EQ(ms_task_join(hl, 20000, NULL, NULL), 0);
    ms_task_release(hd);
    ms_task_release(hl);
    ms_notify_unref(n);
    stop(rt);
}

/* ---- async mutex ---- */

typedef struct counter_task {
    ms_mutex *m;
    ms_mutex_waiter w;
    long *counter;             /* plain: protected by m */
    int rounds;
    int step;                  /* 0: lock; 1..: inside */
    long seen;
    _Atomic int *inside;       /* tasks inside the lock right now */
    _Atomic int *violations;
} counter_task;

/* Locks, reads the counter, yields twice while holding the lock, writes
 * counter + 1, unlocks; `rounds` times. */
static ms_poll counter_poll(ms_cx *cx, void *state) {
    counter_task *c = state;
    while (c->rounds > 0) {
        switch (c->step) {
        case 0:
            if (ms_mutex_lock_poll(c->m, &c->w, cx) == MS_POLL_PENDING)
                return MS_POLL_PENDING;
            if (atomic_fetch_add(c->inside, 1) != 0)
                atomic_fetch_add(c->violations, 1);
            c->seen = *c->counter;
            c->step = 1;
            return ms_cx_yield(cx);
        case 1:
            c->step = 2;
            return ms_cx_yield(cx);
        default:
            *c->counter = c->seen + 1;
            atomic_fetch_sub(c->inside, 1);
            c->step = 0;
            c->rounds--;
            ms_mutex_unlock(c->m);
        }
    }
    return MS_POLL_READY;
}

static void counter_drop(void *state) {
    counter_task *c = state;
    ms_mutex_waiter_cancel(c->m, &c->w);
}

TEST(a_counter_under_the_async_mutex_held_across_yields_ends_exact) {
    enum { TASKS = 100 };
    int rounds = (int)test_scaled(1000, 10);
    ms_runtime *rt = start(4);
    ms_mutex *m;
    CHECK_INT_EQ(ms_mutex_new(&m), 0);
    long counter = 0;
    _Atomic int inside = 0, violations = 0;
    counter_task cs[TASKS];
    ms_task *hs[TASKS];
    for (int i = 0; i < TASKS; i++) {
        cs[i] = (counter_task){.m = m, .counter = &counter, .rounds = rounds,
                               .inside = &inside, .violations = &violations};
        ms_mutex_waiter_init(&cs[i].w);
        CHECK_INT_EQ(ms_spawn(rt, counter_poll, &cs[i], counter_drop, &hs[i]), 0);
    }
    for (int i = 0; i < TASKS; i++) {
        CHECK_INT_EQ(ms_task_join(hs[i], 60000, NULL, NULL), 0);
        ms_task_release(hs[i]);
    }
    CHECK_INT_EQ(atomic_load(&violations), 0);
    CHECK_INT_EQ(counter, (long)TASKS * rounds);
    CHECK(!ms_mutex_is_locked(m));
    ms_mutex_unref(m);
    stop(rt);
}

typedef struct locker {
    ms_mutex *m;
    ms_mutex_waiter w;
    _Atomic int polled;
    _Atomic int *order;
    int rank;
} locker;

static ms_poll locker_poll(ms_cx *cx, void *state) {
    locker *l = state;
    atomic_fetch_add(&l->polled, 1);
    if (ms_mutex_lock_poll(l->m, &l->w, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    l->rank = atomic_fetch_add(l->order, 1);
    ms_mutex_unlock(l->m);
    return MS_POLL_READY;
}

TEST(the_mutex_is_handed_over_in_fifo_order_without_barging) {
    enum { N = 20 };
    ms_runtime *rt = start(2);
    ms_mutex *m;
    CHECK_INT_EQ(ms_mutex_new(&m), 0);
    CHECK(ms_mutex_try_lock(m));
    CHECK(!ms_mutex_try_lock(m));
    _Atomic int order = 0;
    locker ls[N];
    ms_task *hs[N];
    for (int i = 0; i < N; i++) {
        ls[i] = (locker){.m = m, .order = &order};
        ms_mutex_waiter_init(&ls[i].w);
        CHECK_INT_EQ(ms_spawn(rt, locker_poll, &ls[i], NULL, &hs[i]), 0);
        CHECK(wait_int(&ls[i].polled, 1));
    }
    ms_mutex_unlock(m);
    /* The lock went straight to the first waiter: no barging. */
    CHECK(!ms_mutex_try_lock(m) || atomic_load(&order) == N);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, NULL), 0);
        CHECK_INT_EQ(ls[i].rank, i);
        ms_task_release(hs[i]);
    }
    ms_mutex_unref(m);
    stop(rt);
}

/* ---- task queue ---- */

typedef struct job {
    _Atomic int *running;
    _Atomic int *max_seen;
    _Atomic int *done_order;
    _Atomic int *gate;         /* if set: wait (yielding) until it is 1 */
    int yields;
    bool started;
    int rank;
    int id;
    _Atomic int *dropped;
} job;

static ms_poll job_poll(ms_cx *cx, void *state) {
    job *j = state;
    if (!j->started) {
        j->started = true;
        int now = atomic_fetch_add(j->running, 1) + 1;
        int m = atomic_load(j->max_seen);
        while (now > m && !atomic_compare_exchange_weak(j->max_seen, &m, now)) {
        }
    }
    if (j->gate && !atomic_load(j->gate))
        return ms_cx_yield(cx);
    if (j->yields-- > 0)
        return ms_cx_yield(cx);
    if (j->done_order)
        j->rank = atomic_fetch_add(j->done_order, 1);
    atomic_fetch_sub(j->running, 1);
    ms_cx_set_output(cx, V(j->id));
    return MS_POLL_READY;
}

static void job_drop(void *state) {
    job *j = state;
    if (j->dropped)
        atomic_fetch_add(j->dropped, 1);
}

TEST(the_task_queue_never_runs_more_than_max_concurrent) {
    enum { MAX = 3 };
    uint32_t n = (uint32_t)test_scaled(200000, 1000);
    ms_runtime *rt = start(4);
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, MAX, &q), 0);
    _Atomic int running = 0, max_seen = 0, dropped = 0;
    job *js = calloc(n, sizeof *js);
    ms_task **hs = calloc(n, sizeof *hs);
    for (uint32_t i = 0; i < n; i++) {
        js[i] = (job){.running = &running, .max_seen = &max_seen, .yields = (int)(i % 4),
                      .id = (int)i, .dropped = &dropped};
        CHECK_INT_EQ(ms_taskq_submit(q, (int)(i % 7), job_poll, &js[i], job_drop, &hs[i]), 0);
    }
    for (uint32_t i = 0; i < n; i++) {
        void *out;
        CHECK_INT_EQ(ms_task_join(hs[i], 30000, &out, NULL), 0);
        CHECK_INT_EQ(I(out), i);
        ms_task_release(hs[i]);
    }
    CHECK_INT_EQ(atomic_load(&max_seen), MAX);
    CHECK_INT_EQ(atomic_load(&dropped), n);
    CHECK_INT_EQ(ms_taskq_running(q), 0);
    CHECK_INT_EQ(ms_taskq_queued(q), 0);
    ms_taskq_unref(q);
    free(js);
    free(hs);
    stop(rt);
}

TEST(the_task_queue_starts_by_priority_then_submission_order) {
    enum { N = 30 };
    ms_runtime *rt = start(4);
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, 1, &q), 0);
    _Atomic int running = 0, max_seen = 0, order = 0, gate = 0;
    job first = {.running = &running, .max_seen = &max_seen, .gate = &gate, .id = -1};
    ms_task *hf;
    CHECK_INT_EQ(ms_taskq_submit(q, 0, job_poll, &first, NULL, &hf), 0);
    CHECK(wait_int(&running, 1));
    job js[N];
    ms_task *hs[N];
    for (int i = 0; i < N; i++) {
        js[i] = (job){.running = &running, .max_seen = &max_seen, .done_order = &order,
                      .id = i};
        CHECK_INT_EQ(ms_taskq_submit(q, i % 3, job_poll, &js[i], NULL, &hs[i]), 0);
    }
    CHECK_INT_EQ(ms_taskq_queued(q), N);
    CHECK_INT_EQ(ms_taskq_running(q), 1);
    atomic_store(&gate, 1);
    CHECK_INT_EQ(ms_task_join(hf, 20000, NULL, NULL), 0);
    ms_task_release(hf);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, NULL), 0);
        ms_task_release(hs[i]);
    }
    /* Priority 2 first (ids 2, 5, 8, ...), then 1, then 0; FIFO inside. */
    int expect = 0;
    for (int p = 2; p >= 0; p--)
        for (int i = p; i < N; i += 3) {
            CHECK_INT_EQ(js[i].rank, expect);
            expect++;
        }
    CHECK_INT_EQ(atomic_load(&max_seen), 1);
    ms_taskq_unref(q);
    stop(rt);
}

TEST(aborting_a_queued_task_removes_it_and_raising_max_starts_more) {
    ms_runtime *rt = start(4);
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, 1, &q), 0);
    _Atomic int running = 0, max_seen = 0, gate = 0, dropped = 0;
    job js[4];
    ms_task *hs[4];
    for (int i = 0; i < 4; i++) {
        js[i] = (job){.running = &running, .max_seen = &max_seen, .gate = &gate, .id = i,
                      .dropped = &dropped};
        CHECK_INT_EQ(ms_taskq_submit(q, 0, job_poll, &js[i], job_drop, &hs[i]), 0);
    }
    CHECK(wait_int(&running, 1));
    CHECK_INT_EQ(ms_taskq_queued(q), 3);
    ms_task_abort(hs[1]);
    CHECK_INT_EQ(ms_task_join(hs[1], 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    CHECK(wait_int(&dropped, 1));
    CHECK_INT_EQ(ms_taskq_queued(q), 2);
    CHECK_INT_EQ(ms_taskq_set_max(q, 3), 0);
    CHECK_INT_EQ(ms_taskq_max(q), 3);
    CHECK(wait_int(&running, 3));
    CHECK_INT_EQ(ms_taskq_queued(q), 0);
    CHECK_INT_EQ(js[1].started, false);
    atomic_store(&gate, 1);
    for (int i = 0; i < 4; i++) {
        if (i != 1)
            CHECK_INT_EQ(ms_task_join(hs[i], 20000, NULL, NULL), 0);
        ms_task_release(hs[i]);
    }
    CHECK_INT_EQ(atomic_load(&dropped), 4);
    CHECK_INT_EQ(atomic_load(&max_seen), 3);
    CHECK_INT_EQ(ms_taskq_set_max(q, 0), MS_E_INVALID_ARGUMENT);
    ms_taskq_unref(q);
    stop(rt);
}

TEST(a_task_queue_is_kept_alive_by_its_submitted_tasks) {
    /* The caller drops its only reference while one task runs and three
     * wait: the queue lives on until they end, hands its slot on, and
     * frees itself after the last (the sanitizer builds see any use after
     * that). */
    ms_runtime *rt = start(2);
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, 1, &q), 0);
    CHECK(ms_taskq_ref(q) == q); /* a second reference... */
    ms_taskq_unref(q);           /* ...dropped: the first still holds it */
    CHECK_INT_EQ(ms_taskq_max(q), 1);
    _Atomic int running = 0, max_seen = 0, order = 0, gate = 0, dropped = 0;
    job js[4];
    ms_task *hs[4];
    for (int i = 0; i < 4; i++) {
        js[i] = (job){.running = &running, .max_seen = &max_seen, .done_order = &order,
                      .gate = i == 0 ? &gate : NULL, .yields = 3, .id = i, .dropped = &dropped};
        CHECK_INT_EQ(ms_taskq_submit(q, 0, job_poll, &js[i], job_drop, &hs[i]), 0);
    }
    CHECK(wait_int(&running, 1));
    CHECK_INT_EQ(ms_taskq_queued(q), 3);
    ms_taskq_unref(q); /* the caller's last reference */
    atomic_store(&gate, 1);
    for (int i = 0; i < 4; i++) {
        void *out;
        CHECK_INT_EQ(ms_task_join(hs[i], 20000, &out, NULL), 0);
        CHECK_INT_EQ(I(out), i);
        CHECK_INT_EQ(js[i].rank, i);
        ms_task_release(hs[i]);
    }
    CHECK(wait_int(&dropped, 4));
    CHECK_INT_EQ(atomic_load(&max_seen), 1);
    stop(rt);
}

TEST(mutex_and_notify_references_keep_the_object_alive) {
    ms_mutex *m;
    CHECK_INT_EQ(ms_mutex_new(&m), 0);
    CHECK(ms_mutex_ref(m) == m);
    ms_mutex_unref(m); /* one reference left */
    CHECK(ms_mutex_try_lock(m));
    CHECK(ms_mutex_is_locked(m));
    ms_mutex *again = ms_mutex_ref(m);
    ms_mutex_unref(m);
    CHECK(ms_mutex_is_locked(again)); /* still the same, live, locked mutex */
    CHECK(!ms_mutex_try_lock(again));
    ms_mutex_unlock(again);
    CHECK(!ms_mutex_is_locked(again));
    ms_mutex_unref(again); /* the last: freed (ASan checks) */

    ms_notify *n;
    CHECK_INT_EQ(ms_notify_new(&n), 0);
    CHECK(ms_notify_ref(n) == n);
    ms_notify_one(n); /* stores a permit */
    ms_notify_unref(n);
    /* The permit is still there through the remaining reference. */
    ms_runtime *rt = start(1);
    listener l;
    listener_init(&l, n);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, listener_poll, &l, listener_drop, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(atomic_load(&l.woken), 1);
    ms_task_release(h);
    ms_notify_unref(n);
    stop(rt);
}

/* ---- batch and fan-out ---- */

typedef struct sq {
    uintptr_t x;
    bool yielded;
    int fail_after;    /* > 0: yield this many times, then fail */
} sq;

static ms_poll sq_poll(ms_cx *cx, void *state) {
    sq *s = state;
    if (s->fail_after > 0) {
        if (--s->fail_after > 0)
            return ms_cx_yield(cx);
        return ms_cx_fail(cx, MS_E_EXHAUSTED, "late failure %lu", (unsigned long)s->x);
    }
    if (s->x % 100 == 13)
        return ms_cx_fail(cx, MS_E_TASK_FAILED, "unlucky %lu", (unsigned long)s->x);
    if (s->x % 3 == 0 && !s->yielded) {
        s->yielded = true;
        return ms_cx_yield(cx);
    }
    ms_cx_set_output(cx, V(s->x * s->x));
    return MS_POLL_READY;
}

typedef struct batch_runner {
    ms_batch *b;
    void **outputs;
    int rc;
    ms_error err;
} batch_runner;

static ms_poll batch_runner_poll(ms_cx *cx, void *state) {
    batch_runner *r = state;
    return ms_batch_poll_join(r->b, cx, r->outputs, &r->rc, &r->err);
}

TEST(a_batch_returns_outputs_in_order_and_reports_the_first_failure) {
    enum { N = 200 };
    ms_runtime *rt = start(4);
    sq ss[N];
    ms_task_spec specs[N];
    for (int i = 0; i < N; i++) {
        ss[i] = (sq){.x = (uintptr_t)i};
        specs[i] = (ms_task_spec){sq_poll, &ss[i], NULL};
    }
    /* all succeed (none is 13 mod 100 below 13) */
    ms_batch *b;
    CHECK_INT_EQ(ms_batch_spawn(rt, NULL, 0, 13, specs, &b), 0);
    CHECK_INT_EQ(ms_batch_size(b), 13);
    void *outs[N];
    CHECK_INT_EQ(ms_batch_join(b, 20000, outs, NULL), 0);
    for (int i = 0; i < 13; i++)
        CHECK_INT_EQ(I(outs[i]), i * i);
    ms_batch_free(b);

    /* through a taskq, joined from a task: 13 and 113 fail, 13 is
     * reported */
    for (int i = 0; i < N; i++)
        ss[i].yielded = false;
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, 4, &q), 0);
    CHECK_INT_EQ(ms_batch_spawn(NULL, q, 1, N, specs, &b), 0);
    batch_runner r = {.b = b, .outputs = outs};
    CHECK_INT_EQ(ms_block_on(rt, batch_runner_poll, &r, NULL, NULL), 0);
    CHECK_INT_EQ(r.rc, MS_E_TASK_FAILED);
    CHECK_STR_CONTAINS(r.err.message, "unlucky 13");
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(I(outs[i]), i == 13 || i == 113 ? 0 : i * i);
    ms_batch_free(b);

    /* Several failures: the lowest-numbered one is reported, not the one
     * that failed first.  Task 7 fails last (after 50 yields, with its own
     * code), 13 and 113 fail at once; 7 is the first in index order. */
    for (int i = 0; i < N; i++)
        ss[i].yielded = false;
    ss[7].fail_after = 50;
    CHECK_INT_EQ(ms_batch_spawn(NULL, q, 1, N, specs, &b), 0);
    r = (batch_runner){.b = b, .outputs = outs};
    CHECK_INT_EQ(ms_block_on(rt, batch_runner_poll, &r, NULL, NULL), 0);
    CHECK_INT_EQ(r.rc, MS_E_EXHAUSTED);
    CHECK_STR_CONTAINS(r.err.message, "late failure 7");
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(I(outs[i]), i == 13 || i == 113 || i == 7 ? 0 : i * i);
    ms_batch_free(b);
    /* The same from a plain thread. */
    for (int i = 0; i < N; i++)
        ss[i].yielded = false;
    ss[7].fail_after = 50;
    CHECK_INT_EQ(ms_batch_spawn(rt, NULL, 0, N, specs, &b), 0);
    ms_error err;
    CHECK_INT_EQ(ms_batch_join(b, 20000, outs, &err), MS_E_EXHAUSTED);
    CHECK_STR_CONTAINS(err.message, "late failure 7");
    ms_batch_free(b);
    ms_taskq_unref(q);
    stop(rt);
}

static ms_poll forever_poll(ms_cx *cx, void *state) {
    return MS_POLL_PENDING;
}

TEST(a_batch_can_be_aborted_and_times_out_on_plain_threads) {
    ms_runtime *rt = start(2);
    ms_task_spec specs[3] = {{forever_poll, NULL, NULL}, {forever_poll, NULL, NULL},
                             {forever_poll, NULL, NULL}};
    ms_batch *b;
    CHECK_INT_EQ(ms_batch_spawn(rt, NULL, 0, 3, specs, &b), 0);
    ms_error err;
    CHECK_INT_EQ(ms_batch_join(b, 10, NULL, &err), MS_E_TIMEOUT);
    ms_batch_abort(b);
    CHECK_INT_EQ(ms_batch_join(b, 20000, NULL, &err), MS_E_TASK_CANCELLED);
    ms_batch_free(b);
    stop(rt);
}

TEST(fan_out_delivers_every_result_once_as_tasks_finish_then_closes) {
    uint32_t n = (uint32_t)test_scaled(100000, 300);
    ms_runtime *rt = start(4);
    sq *ss = calloc(n, sizeof *ss);
    ms_task_spec *specs = calloc(n, sizeof *specs);
    for (uint32_t i = 0; i < n; i++) {
        ss[i] = (sq){.x = i};
        specs[i] = (ms_task_spec){sq_poll, &ss[i], NULL};
    }
    ms_taskq *q;
    CHECK_INT_EQ(ms_taskq_new(rt, 8, &q), 0);
    ms_chan *results;
    CHECK_INT_EQ(ms_fanout_spawn(rt, q, 0, n, specs, &results), 0);
    char *seen = calloc(n, 1);
    uint32_t got = 0, failed = 0;
    for (;;) {
        void *v;
        int rc = ms_chan_try_recv(results, &v);
        if (rc == MS_E_EXHAUSTED) {
            usleep(100);
            continue;
        }
        if (rc == MS_E_CLOSED)
            break;
        ms_fanout_result *res = v;
        CHECK(res->index < n);
        CHECK_INT_EQ(seen[res->index], 0);
        seen[res->index] = 1;
        if (res->index % 100 == 13) {
            CHECK_INT_EQ(res->rc, MS_E_TASK_FAILED);
            CHECK_STR_CONTAINS(res->err.message, "unlucky");
            failed++;
        } else {
            CHECK_INT_EQ(res->rc, 0);
            CHECK_INT_EQ(I(res->output), res->index * res->index);
        }
        ms_free(res);
        got++;
    }
    CHECK_INT_EQ(got, n);
    CHECK_INT_EQ(failed, (n + 86) / 100);
    ms_chan_unref(results);
    ms_taskq_unref(q);
    free(seen);
    free(ss);
    free(specs);
    stop(rt);
}

TEST(fan_out_reports_aborted_tasks_as_cancelled) {
    ms_runtime *rt = start(2);
    ms_task_spec specs[2] = {{forever_poll, NULL, NULL}, {forever_poll, NULL, NULL}};
    ms_chan *results;
    CHECK_INT_EQ(ms_fanout_spawn(rt, NULL, 0, 2, specs, &results), 0);
    /* Shutdown cancels them: both results arrive as cancelled. */
    ms_shutdown_report rep;
    ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 10000, &rep);
    int cancelled = 0;
    void *v;
    while (ms_chan_try_recv(results, &v) == 0) {
        ms_fanout_result *res = v;
        CHECK_INT_EQ(res->rc, MS_E_TASK_CANCELLED);
        cancelled++;
        ms_free(res);
    }
    CHECK_INT_EQ(cancelled, 2);
    CHECK(ms_chan_is_closed(results));
    ms_chan_unref(results);
    ms_runtime_free(rt);
}

TEST_MAIN()
