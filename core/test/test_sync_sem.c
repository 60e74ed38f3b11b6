/*
 * test_sync_sem.c - the semaphore's contract: strict FIFO (a large acquire
 * is not starved by small ones, nobody barges past a queued waiter),
 * permits are conserved whatever happens to waiting tasks (cancel, abort,
 * timeout, close), close wakes waiters with MS_E_CLOSED, permits release
 * once.  Stress sizes scale with MS_TEST_SCALE.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"
#include "test_rt.h"

static bool wait_avail(ms_sem *s, uint64_t want) {
    for (int i = 0; i < 40000 && ms_sem_available(s) != want; i++)
        usleep(500);
    return ms_sem_available(s) == want;
}

/* ---- an acquiring task: acquires n, then holds until told to release ---- */

typedef struct holder {
    ms_sem *sem;
    ms_sem_waiter w;
    uint64_t n;
    int rc;
    _Atomic int polled;     /* polls so far */
    _Atomic int acquired;   /* 1 once the acquire was ready */
    _Atomic int release;    /* set by the test: give the permits back */
    _Atomic int *order;     /* if set: acquisition order counter */
    int rank;               /* this task's place in that order */
    ms_permit permit;
} holder;

static ms_poll holder_poll(ms_cx *cx, void *state) {
    holder *h = state;
    atomic_fetch_add(&h->polled, 1);
    if (!atomic_load(&h->acquired)) {
        if (ms_sem_acquire_poll(h->sem, &h->w, cx, &h->rc) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (h->rc != 0) {
            atomic_store(&h->acquired, 1);
            return MS_POLL_READY;
        }
        ms_permit_init(&h->permit, h->sem, h->n);
        if (h->order)
            h->rank = atomic_fetch_add(h->order, 1);
        atomic_store(&h->acquired, 1);
    }
    if (!atomic_load(&h->release))
        return ms_cx_yield(cx);
    ms_permit_release(&h->permit);
    return MS_POLL_READY;
}

static void holder_drop(void *state) {
    holder *h = state;
    ms_sem_waiter_cancel(h->sem, &h->w);
    ms_permit_release(&h->permit);
}

static void holder_init(holder *h, ms_sem *s, uint64_t n) {
    memset(h, 0, sizeof *h);
    h->sem = s;
    h->n = n;
    ms_sem_waiter_init(&h->w, n);
}

/* ---- basics ---- */

TEST(try_acquire_release_add_and_forget_keep_the_count) {
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(5, &s), 0);
    CHECK_INT_EQ(ms_sem_available(s), 5);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 3), 0);
    CHECK_INT_EQ(ms_sem_available(s), 2);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 3), MS_E_EXHAUSTED);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 0), 0);
    ms_sem_release(s, 3);
    CHECK_INT_EQ(ms_sem_add_permits(s, 4), 0);
    CHECK_INT_EQ(ms_sem_available(s), 9);
    CHECK_INT_EQ(ms_sem_forget(s, 4), 4);
    CHECK_INT_EQ(ms_sem_forget(s, 100), 5);
    CHECK_INT_EQ(ms_sem_available(s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, MS_SEM_MAX_PERMITS + 1), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_sem_add_permits(s, MS_SEM_MAX_PERMITS), 0);
    CHECK_INT_EQ(ms_sem_add_permits(s, 1), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_sem_available(s), MS_SEM_MAX_PERMITS);
    ms_sem *dummy = NULL;
    CHECK_INT_EQ(ms_sem_new(MS_SEM_MAX_PERMITS + 1, &dummy), MS_E_INVALID_ARGUMENT);
    CHECK(ms_sem_ref(s) == s);
    ms_sem_unref(s);
    ms_sem_unref(s);
}

TEST(reducing_permits_takes_the_free_ones_now_and_the_held_ones_when_released) {
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(10, &s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 8), 0); /* 8 held, 2 free */
    uint64_t owed = 99;
    CHECK_INT_EQ(ms_sem_reduce_permits(s, 5, &owed), 2);
    CHECK_INT_EQ(owed, 3);
    CHECK_INT_EQ(ms_sem_available(s), 0);
    ms_sem_release(s, 2); /* absorbed */
    CHECK_INT_EQ(ms_sem_available(s), 0);
    CHECK_INT_EQ(ms_sem_owed(s), 1);
    ms_sem_release(s, 6); /* one absorbed, five free */
    CHECK_INT_EQ(ms_sem_owed(s), 0);
    CHECK_INT_EQ(ms_sem_available(s), 5); /* the total went from 10 to 5 */
    CHECK_INT_EQ(ms_sem_try_acquire(s, 5), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), MS_E_EXHAUSTED);
    ms_sem_unref(s);
}

TEST(a_permit_releases_once_however_often_it_is_released) {
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(4, &s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 3), 0);
    ms_permit p;
    ms_permit_init(&p, s, 3);
    ms_sem_unref(s); /* the permit keeps the semaphore alive */
    CHECK_INT_EQ(ms_sem_available(p.sem), 1);
    ms_sem *keep = ms_sem_ref(p.sem);
    ms_permit_release(&p);
    ms_permit_release(&p);
    ms_permit_release(&p);
    CHECK(p.sem == NULL && p.n == 0);
    CHECK_INT_EQ(ms_sem_available(keep), 4);
    CHECK_INT_EQ(ms_sem_try_acquire(keep, 2), 0);
    ms_permit_init(&p, keep, 2);
    ms_permit_forget(&p);
    ms_permit_release(&p);
    CHECK_INT_EQ(ms_sem_available(keep), 2);
    ms_sem_unref(keep);
}

/* ---- fairness ---- */

TEST(a_queued_acquire_blocks_barging_and_collects_permits_in_order) {
    ms_runtime *rt = start(2);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(10, &s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 6), 0); /* the test holds 6 */
    holder big;
    holder_init(&big, s, 10);
    ms_task *hb;
    CHECK_INT_EQ(ms_spawn(rt, holder_poll, &big, holder_drop, &hb), 0);
    CHECK(wait_int(&big.polled, 1));
    /* big took the 4 available and waits for 6 more. */
    CHECK(wait_avail(s, 0));
    CHECK_INT_EQ(atomic_load(&big.acquired), 0);
    /* No barging, not even for one permit while 0 are available... */
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), MS_E_EXHAUSTED);
    /* ...nor when some are released: they go to big, not to the pool. */
    ms_sem_release(s, 3);
    CHECK_INT_EQ(ms_sem_available(s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), MS_E_EXHAUSTED);
    /* A later small acquire queues behind big. */
    holder small;
    holder_init(&small, s, 1);
    ms_task *hs;
    CHECK_INT_EQ(ms_spawn(rt, holder_poll, &small, holder_drop, &hs), 0);
    CHECK(wait_int(&small.polled, 1));
    usleep(5000);
    CHECK_INT_EQ(atomic_load(&small.acquired), 0);
    ms_sem_release(s, 3); /* big is complete */
    CHECK(wait_int(&big.acquired, 1));
    CHECK_INT_EQ(big.rc, 0);
    CHECK_INT_EQ(atomic_load(&small.acquired), 0);
    atomic_store(&big.release, 1);
    CHECK(wait_int(&small.acquired, 1));
    atomic_store(&small.release, 1);
    CHECK_INT_EQ(ms_task_join(hb, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_task_join(hs, 20000, NULL, NULL), 0);
    ms_task_release(hb);
    ms_task_release(hs);
    CHECK_INT_EQ(ms_sem_available(s), 10);
    ms_sem_unref(s);
    stop(rt);
}

/* Small tasks acquire 1, yield while holding, release, forever, until a
 * big acquire of every permit got through. */
typedef struct churner {
    ms_sem *sem;
    ms_sem_waiter w;
    bool holding;
    _Atomic int *stop_flag;
    _Atomic uint64_t *rounds;
} churner;

static ms_poll churner_poll(ms_cx *cx, void *state) {
    churner *c = state;
    for (;;) {
        if (c->holding) {
            c->holding = false;
            ms_sem_release(c->sem, 1);
            atomic_fetch_add(c->rounds, 1);
        }
        if (atomic_load(c->stop_flag))
            return MS_POLL_READY;
        int rc;
        if (ms_sem_acquire_poll(c->sem, &c->w, cx, &rc) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc != 0)
            return ms_cx_fail(cx, rc, "acquire failed");
        c->holding = true;
        return ms_cx_yield(cx);
    }
}

static void churner_drop(void *state) {
    churner *c = state;
    ms_sem_waiter_cancel(c->sem, &c->w);
    if (c->holding)
        ms_sem_release(c->sem, 1);
}

TEST(a_large_acquire_is_not_starved_by_a_stream_of_small_ones) {
    enum { SMALL = 16, PERMITS = 8 };
    ms_runtime *rt = start(4);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(PERMITS, &s), 0);
    _Atomic int stop_flag = 0;
    _Atomic uint64_t rounds = 0;
    churner cs[SMALL];
    ms_task *hc[SMALL];
    for (int i = 0; i < SMALL; i++) {
        cs[i] = (churner){.sem = s, .stop_flag = &stop_flag, .rounds = &rounds};
        ms_sem_waiter_init(&cs[i].w, 1);
        CHECK_INT_EQ(ms_spawn(rt, churner_poll, &cs[i], churner_drop, &hc[i]), 0);
    }
    while (atomic_load(&rounds) < 1000)
        usleep(100);
    for (int k = 0; k < 20; k++) {
        holder big;
        holder_init(&big, s, PERMITS);
        atomic_store(&big.release, 1);
        ms_task *hb;
        CHECK_INT_EQ(ms_spawn(rt, holder_poll, &big, holder_drop, &hb), 0);
        ms_error err;
        CHECK_INT_EQ(ms_task_join(hb, 10000, NULL, &err), 0);
        CHECK_INT_EQ(big.rc, 0);
        ms_task_release(hb);
    }
    /* The small ones kept going after the large acquires: many more rounds
     * (waited for, up to 20 s, not timed). */
    uint64_t before = atomic_load(&rounds);
    for (int i = 0; i < 40000 && atomic_load(&rounds) < before + 10 * SMALL; i++)
        usleep(500);
    CHECK(atomic_load(&rounds) >= before + 10 * SMALL);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < SMALL; i++) {
        CHECK_INT_EQ(ms_task_join(hc[i], 20000, NULL, NULL), 0);
        ms_task_release(hc[i]);
    }
    CHECK_INT_EQ(ms_sem_available(s), PERMITS);
    ms_sem_unref(s);
    stop(rt);
}

TEST(waiters_acquire_in_fifo_order) {
    enum { N = 32 };
    ms_runtime *rt = start(2);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(0, &s), 0);
    holder hs[N];
    ms_task *ht[N];
    for (int i = 0; i < N; i++) {
        holder_init(&hs[i], s, 1 + (uint64_t)(i % 3));
        CHECK_INT_EQ(ms_spawn(rt, holder_poll, &hs[i], holder_drop, &ht[i]), 0);
        CHECK(wait_int(&hs[i].polled, 1)); /* queued before the next one */
    }
    /* Release one permit at a time: the waiters complete strictly in
     * queue order, each only once it has all it asked for. */
    for (int i = 0; i < N; i++) {
        for (uint64_t k = 0; k < hs[i].n; k++) {
            CHECK_INT_EQ(atomic_load(&hs[i].acquired), 0);
            ms_sem_release(s, 1);
        }
        CHECK(wait_int(&hs[i].acquired, 1));
        CHECK_INT_EQ(hs[i].rc, 0);
        if (i + 1 < N) {
            usleep(200);
            CHECK_INT_EQ(atomic_load(&hs[i + 1].acquired), 0);
        }
    }
    for (int i = 0; i < N; i++) {
        atomic_store(&hs[i].release, 1);
        CHECK_INT_EQ(ms_task_join(ht[i], 20000, NULL, NULL), 0);
        ms_task_release(ht[i]);
    }
    CHECK_INT_EQ(ms_sem_available(s), N / 3 * 6 + (N % 3 == 2 ? 3 : N % 3));
    ms_sem_unref(s);
    stop(rt);
}

/* ---- cancel, abort, close ---- */

TEST(aborting_a_partly_served_waiter_passes_its_permits_on) {
    ms_runtime *rt = start(2);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(3, &s), 0);
    holder a, b;
    holder_init(&a, s, 5);
    holder_init(&b, s, 2);
    ms_task *ha, *hb;
    CHECK_INT_EQ(ms_spawn(rt, holder_poll, &a, holder_drop, &ha), 0);
    CHECK(wait_int(&a.polled, 1));
    CHECK_INT_EQ(ms_spawn(rt, holder_poll, &b, holder_drop, &hb), 0);
    CHECK(wait_int(&b.polled, 1));
    CHECK_INT_EQ(ms_sem_available(s), 0); /* a holds 3 of its 5 */
    ms_task_abort(ha);
    CHECK_INT_EQ(ms_task_join(ha, 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    CHECK(wait_int(&b.acquired, 1)); /* got 2 of a's 3 */
    CHECK_INT_EQ(ms_sem_available(s), 1);
    atomic_store(&b.release, 1);
    CHECK_INT_EQ(ms_task_join(hb, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_sem_available(s), 3);
    /* The queue is empty again: the fast path is open. */
    CHECK_INT_EQ(ms_sem_try_acquire(s, 3), 0);
    ms_sem_release(s, 3);
    ms_task_release(ha);
    ms_task_release(hb);
    ms_sem_unref(s);
    stop(rt);
}

TEST(close_wakes_every_waiter_with_closed_and_returns_assigned_permits) {
    enum { N = 50 };
    ms_runtime *rt = start(2);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(2, &s), 0);
    holder hs[N];
    ms_task *ht[N];
    for (int i = 0; i < N; i++) {
        holder_init(&hs[i], s, 3);
        CHECK_INT_EQ(ms_spawn(rt, holder_poll, &hs[i], holder_drop, &ht[i]), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(wait_int(&hs[i].polled, 1));
    CHECK_INT_EQ(ms_sem_available(s), 0); /* the head holds 2 of 3 */
    ms_sem_close(s);
    CHECK(ms_sem_is_closed(s));
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(ht[i], 20000, NULL, NULL), 0);
        CHECK_INT_EQ(hs[i].rc, MS_E_CLOSED);
        ms_task_release(ht[i]);
    }
    CHECK_INT_EQ(ms_sem_available(s), 2);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), MS_E_CLOSED);
    ms_sem_release(s, 5); /* release still works */
    CHECK_INT_EQ(ms_sem_available(s), 7);
    holder late;
    holder_init(&late, s, 1);
    ms_task *hl;
    CHECK_INT_EQ(ms_spawn(rt, holder_poll, &late, holder_drop, &hl), 0);
    CHECK_INT_EQ(ms_task_join(hl, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(late.rc, MS_E_CLOSED);
    ms_task_release(hl);
    ms_sem_unref(s);
    stop(rt);
}

/* ---- timeouts ---- */

typedef struct timed_acq {
    ms_sem *sem;
    ms_sem_waiter w;
    ms_timer *timer;
    uint64_t after_ms;
    bool armed;
    int rc;
    bool timed_out;
    uint64_t deadline_ns;   /* what the timer was armed for */
    uint64_t ended_ns;      /* when the timeout was seen */
} timed_acq;

static ms_poll timed_acq_inner(ms_cx *cx, void *state) {
    timed_acq *t = state;
    return ms_sem_acquire_poll(t->sem, &t->w, cx, &t->rc);
}

static ms_poll timed_acq_poll(ms_cx *cx, void *state) {
    timed_acq *t = state;
    if (!t->armed) {
        ms_timer_set_after(t->timer, t->after_ms);
        t->deadline_ns = ms_timer_deadline(t->timer);
        t->armed = true;
    }
    ms_poll r = ms_timeout_poll(t->timer, cx, timed_acq_inner, t, &t->timed_out);
    if (r == MS_POLL_READY && t->timed_out) {
        t->ended_ns = ms_now_ns();
        ms_sem_waiter_cancel(t->sem, &t->w);
    }
    return r;
}

static void timed_acq_drop(void *state) {
    timed_acq *t = state;
    ms_sem_waiter_cancel(t->sem, &t->w);
}

TEST(acquire_with_timeout_times_out_and_leaves_nothing_queued) {
    ms_runtime *rt = start(2);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(1, &s), 0);
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), 0);
    timed_acq t = {.sem = s, .after_ms = 20};
    ms_sem_waiter_init(&t.w, 1);
    CHECK_INT_EQ(ms_timer_new(rt, &t.timer, NULL), 0);
    uint64_t t0 = ms_now_ns();
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, timed_acq_poll, &t, timed_acq_drop, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(t.timed_out);
    /* Never before the deadline the timer computed (20 ms after a clock
     * read that came after t0). */
    CHECK(t.deadline_ns >= t0 + 20 * 1000000ull);
    CHECK(t.ended_ns >= t.deadline_ns);
    /* The released permit is not assigned to a ghost waiter. */
    ms_sem_release(s, 1);
    CHECK_INT_EQ(ms_sem_available(s), 1);
    /* And one that is in time gets it. */
    CHECK_INT_EQ(ms_sem_try_acquire(s, 1), 0);
    timed_acq u = {.sem = s, .after_ms = 60000, .timer = t.timer};
    ms_sem_waiter_init(&u.w, 1);
    CHECK_INT_EQ(ms_spawn(rt, timed_acq_poll, &u, timed_acq_drop, &h), 0);
    usleep(10000);
    ms_sem_release(s, 1);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(!u.timed_out);
    CHECK_INT_EQ(u.rc, 0);
    CHECK_INT_EQ(ms_sem_available(s), 0);
    ms_sem_release(s, 1);
    ms_timer_free(t.timer);
    ms_sem_unref(s);
    stop(rt);
}

/* Many tasks acquire random amounts with short random timeouts, hold for
 * a few yields and release through a permit; another thread aborts tasks
 * at random meanwhile.  Whatever mix of success, timeout and abort
 * happens, every permit must be back at the end. */
typedef struct racer {
    ms_sem *sem;
    ms_sem_waiter w;
    ms_timer *timer;
    uint64_t after_ms;
    bool armed;
    bool acquired;
    int hold;
    int rc;
    bool timed_out;
    ms_permit permit;
    _Atomic uint64_t *acquires, *timeouts;
} racer;

static ms_poll racer_inner(ms_cx *cx, void *state) {
    racer *r = state;
    return ms_sem_acquire_poll(r->sem, &r->w, cx, &r->rc);
}

static ms_poll racer_poll(ms_cx *cx, void *state) {
    racer *r = state;
    if (!r->acquired) {
        if (!r->armed) {
            ms_timer_set_after(r->timer, r->after_ms);
            r->armed = true;
        }
        if (ms_timeout_poll(r->timer, cx, racer_inner, r, &r->timed_out) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (r->timed_out) {
            ms_sem_waiter_cancel(r->sem, &r->w);
            atomic_fetch_add(r->timeouts, 1);
            return MS_POLL_READY;
        }
        if (r->rc != 0)
            return ms_cx_fail(cx, r->rc, "acquire failed");
        ms_permit_init(&r->permit, r->sem, r->w.want);
        r->acquired = true;
        atomic_fetch_add(r->acquires, 1);
    }
    if (r->hold-- > 0)
        return ms_cx_yield(cx);
    ms_permit_release(&r->permit);
    return MS_POLL_READY;
}

static void racer_drop(void *state) {
    racer *r = state;
    ms_sem_waiter_cancel(r->sem, &r->w);
    ms_permit_release(&r->permit);
    ms_timer_free(r->timer);
    r->timer = NULL;
}

typedef struct aborter {
    ms_task **handles;
    _Atomic uint32_t *spawned;  /* handles[0..spawned) are valid */
    uint32_t n;
    uint32_t seed;
} aborter;

/* Aborts tasks at random among the most recently spawned (those most
 * likely to be waiting or holding), until the spawning is over. */
static void *abort_thread(void *arg) {
    aborter *a = arg;
    uint32_t x = a->seed;
    for (uint32_t i = 0;; i++) {
        uint32_t have = atomic_load_explicit(a->spawned, memory_order_acquire);
        if (have == a->n)
            return NULL;
        x = x * 1103515245u + 12345u;
        uint32_t window = have < 1024 ? have : 1024;
        ms_task_abort(a->handles[have - 1 - (x >> 8) % window]);
        if (i % 8 == 0)
            usleep(20);
    }
}

TEST(permits_are_conserved_under_random_aborts_and_timeouts) {
    enum { PERMITS = 8 };
    uint32_t n = (uint32_t)test_scaled(200000, 2000);
    ms_runtime *rt = start(4);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(PERMITS, &s), 0);
    racer *rs = calloc(n, sizeof *rs);
    ms_task **hs = calloc(n, sizeof *hs);
    _Atomic uint64_t acquires = 0, timeouts = 0;
    uint32_t x = 12345;
    for (uint32_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        racer *r = &rs[i];
        r->sem = s;
        ms_sem_waiter_init(&r->w, 1 + (x >> 8) % PERMITS);
        r->after_ms = (x >> 16) % 10;
        r->hold = (int)((x >> 20) % 3);
        r->acquires = &acquires;
        r->timeouts = &timeouts;
        CHECK_INT_EQ(ms_timer_new(rt, &r->timer, NULL), 0);
    }
    pthread_t th;
    _Atomic uint32_t spawned = 0;
    aborter ab = {hs, &spawned, n, 777};
    /* Spawn from the test thread while the aborter runs. */
    for (uint32_t i = 0; i < n; i++) {
        CHECK_INT_EQ(ms_spawn(rt, racer_poll, &rs[i], racer_drop, &hs[i]), 0);
        atomic_store_explicit(&spawned, i + 1, memory_order_release);
        if (i % 256 == 255)
            usleep(200); /* waves, so that acquires, timeouts and aborts mix */
        if (i == n / 4)
            pthread_create(&th, NULL, abort_thread, &ab);
    }
    pthread_join(th, NULL);
    uint32_t cancelled = 0;
    for (uint32_t i = 0; i < n; i++) {
        int rc = ms_task_join(hs[i], 30000, NULL, NULL);
        if (rc == MS_E_TASK_CANCELLED)
            cancelled++;
        else
            CHECK_INT_EQ(rc, 0);
        ms_task_release(hs[i]);
    }
    CHECK_INT_EQ(ms_sem_available(s), PERMITS);
    CHECK_INT_EQ(ms_sem_try_acquire(s, PERMITS), 0); /* nothing queued */
    ms_sem_release(s, PERMITS);
    CHECK(atomic_load(&acquires) > 0);
    if (test_scale() >= 1.0)
        fprintf(stderr, "  %u tasks: %llu acquired, %llu timed out, %u aborted\n", n,
                (unsigned long long)atomic_load(&acquires),
                (unsigned long long)atomic_load(&timeouts), cancelled);
    free(rs);
    free(hs);
    ms_sem_unref(s);
    stop(rt);
}

/* Plain threads and tasks hammer one semaphore with try_acquire, acquire
 * and release; a watcher checks available never exceeds the total. */
typedef struct hammer {
    ms_sem *sem;
    ms_sem_waiter w;
    uint32_t rounds;
    bool holding;
    uint64_t n;
} hammer;

static ms_poll hammer_poll(ms_cx *cx, void *state) {
    hammer *h = state;
    while (h->rounds > 0) {
        if (h->holding) {
            ms_sem_release(h->sem, h->n);
            h->holding = false;
            h->rounds--;
            if (h->rounds % 8 == 0)
                return ms_cx_yield(cx);
            continue;
        }
        int rc;
        if (ms_sem_acquire_poll(h->sem, &h->w, cx, &rc) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc != 0)
            return ms_cx_fail(cx, rc, "acquire failed");
        h->holding = true;
    }
    return MS_POLL_READY;
}

/* Reads the semaphore until told to stop: available may never exceed the
 * permits created (a double release, or a permit handed out twice, shows
 * here even if the books balance again by the end). */
typedef struct watcher {
    ms_sem *sem;
    uint64_t total;
    _Atomic int stop;
    uint64_t looks, max_seen;
} watcher;

static void *watch_thread(void *arg) {
    watcher *w = arg;
    while (!atomic_load(&w->stop) || w->looks == 0) {
        uint64_t a = ms_sem_available(w->sem);
        if (a > w->max_seen)
            w->max_seen = a;
        w->looks++;
        sched_yield(); /* two cores: leave the hammering threads theirs */
    }
    return NULL;
}

static void *try_thread(void *arg) {
    hammer *h = arg;
    for (uint32_t i = 0; i < h->rounds; i++) {
        if (ms_sem_try_acquire(h->sem, h->n) == 0)
            ms_sem_release(h->sem, h->n);
        else
            sched_yield();
    }
    return NULL;
}

TEST(contended_acquire_and_release_from_tasks_and_threads_lose_nothing) {
    enum { TASKS = 64, THREADS = 2, PERMITS = 5 };
    uint32_t rounds = (uint32_t)test_scaled(50000, 500);
    ms_runtime *rt = start(4);
    ms_sem *s;
    CHECK_INT_EQ(ms_sem_new(PERMITS, &s), 0);
    hammer hs[TASKS], ts[THREADS];
    ms_task *ht[TASKS];
    pthread_t th[THREADS];
    watcher wt = {.sem = s, .total = PERMITS};
    pthread_t wth;
    pthread_create(&wth, NULL, watch_thread, &wt);
    for (int i = 0; i < THREADS; i++) {
        ts[i] = (hammer){.sem = s, .rounds = rounds * 4, .n = 1 + (uint64_t)i};
        pthread_create(&th[i], NULL, try_thread, &ts[i]);
    }
    for (int i = 0; i < TASKS; i++) {
        hs[i] = (hammer){.sem = s, .rounds = rounds, .n = 1 + (uint64_t)(i % PERMITS)};
        ms_sem_waiter_init(&hs[i].w, hs[i].n);
        CHECK_INT_EQ(ms_spawn(rt, hammer_poll, &hs[i], NULL, &ht[i]), 0);
    }
    for (int i = 0; i < TASKS; i++) {
        CHECK_INT_EQ(ms_task_join(ht[i], 60000, NULL, NULL), 0);
        ms_task_release(ht[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&wt.stop, 1);
    pthread_join(wth, NULL);
    CHECK(wt.looks > 0);
    CHECK(wt.max_seen <= wt.total);
    CHECK_INT_EQ(ms_sem_available(s), PERMITS);
    ms_sem_unref(s);
    stop(rt);
}

TEST_MAIN()
