/*
 * test_driver.c - timers, intervals, timeouts, signals and files: timers
 * are never early and fire in deadline order, cancelled timers leave the
 * wheel at once, the missed-tick policies behave as documented, a signal
 * reaches the task watching it, and file jobs report errors by path.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "ms.h"
#include "test.h"
#include "timer.h"

static ms_runtime *start_rt(uint32_t workers, bool time, bool io) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    cfg.enable_all = time && io;
    cfg.enable_time = time;
    cfg.enable_io = io;
    ms_runtime *rt = NULL;
    ms_error err;
    if (ms_runtime_new(&cfg, &rt, &err) != 0) {
        fprintf(stderr, "runtime: %s\n", err.message);
        exit(1);
    }
    return rt;
}

static void stop_rt(ms_runtime *rt) {
    ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, 30000, NULL);
    ms_runtime_free(rt);
}

/* ---- sleeping tasks ---- */

typedef struct sleeper {
    ms_timer *timer;
    uint64_t ms;
    uint64_t deadline_ns, woke_ns;
    _Atomic uint64_t *order;    /* a shared counter: the wake sequence */
    uint64_t seq;
} sleeper;

static ms_poll sleeper_poll(ms_cx *cx, void *state) {
    sleeper *s = state;
    if (!s->timer) {
        ms_error err;
        if (ms_timer_new(ms_cx_runtime(cx), &s->timer, &err) != 0)
            return ms_cx_fail(cx, err.code, "%s", err.message);
        s->deadline_ns = ms_now_ns() + s->ms * 1000000u;
        ms_timer_set_deadline(s->timer, s->deadline_ns);
    }
    if (ms_timer_poll(s->timer, cx) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    s->woke_ns = ms_now_ns();
    if (s->order)
        s->seq = atomic_fetch_add(s->order, 1);
    return MS_POLL_READY;
}

static void sleeper_drop(void *state) {
    sleeper *s = state;
    ms_timer_free(s->timer);
    s->timer = NULL;
}

static void join_all(ms_task **hs, int n) {
    for (int i = 0; i < n; i++) {
        ms_error err;
        int rc = ms_task_join(hs[i], 30000, NULL, &err);
        if (rc != 0)
            TEST_FAIL_AT(__FILE__, __LINE__, "join %d: %s", i, err.message);
        ms_task_release(hs[i]);
    }
}

TEST(timers_are_never_early) {
    enum { N = 300 };
    ms_runtime *rt = start_rt(2, true, false);
    sleeper s[N] = {0};
    ms_task *h[N];
    for (int i = 0; i < N; i++) {
        s[i].ms = 1 + (uint64_t)(i * 7) % 40;
        CHECK_INT_EQ(ms_spawn(rt, sleeper_poll, &s[i], sleeper_drop, &h[i]), 0);
    }
    join_all(h, N);
    for (int i = 0; i < N; i++)
        CHECK(s[i].woke_ns >= s[i].deadline_ns);
    stop_rt(rt);
}

/* N timers owned by one task, deadlines 5 ms apart, armed in reverse.
 * The property: whenever a timer is ready, every timer with an earlier
 * deadline is ready too -- the driver never fires a later one while an
 * earlier one waits.  Polling from the latest to the earliest makes that
 * exact: the clock only moves forward between two polls of one pass.  No
 * check depends on how soon anything runs; only if this machine takes
 * longer than the first deadline to arm the timers at all is the round
 * started again with later deadlines. */
enum { ORDER_N = 20 };

typedef struct order_case {
    ms_timer *t[ORDER_N];
    uint64_t first_ms;
    bool armed;
    bool late_start;     /* a deadline passed before all were armed */
    int passes;
    int violations;
    int violation_at;
} order_case;

static ms_poll order_poll(ms_cx *cx, void *state) {
    order_case *c = state;
    if (!c->armed) {
        uint64_t base = ms_now_ns();
        for (int i = ORDER_N - 1; i >= 0; i--) {
            if (ms_timer_new(ms_cx_runtime(cx), &c->t[i], NULL) != 0)
                return ms_cx_fail(cx, MS_E_INTERNAL, "timer");
            ms_timer_set_deadline(c->t[i], base + (c->first_ms + 5u * (uint64_t)i) * 1000000u);
        }
        c->armed = true;
        for (int i = ORDER_N - 1; i >= 0; i--)
            if (ms_timer_poll(c->t[i], cx) == MS_POLL_READY)
                c->late_start = true;
        if (c->late_start)
            return MS_POLL_READY;
        return MS_POLL_PENDING;
    }
    c->passes++;
    bool later_ready = false;
    int ready = 0;
    for (int i = ORDER_N - 1; i >= 0; i--) {
        bool r = ms_timer_poll(c->t[i], cx) == MS_POLL_READY;
        if (later_ready && !r && !c->violations++)
            c->violation_at = i;
        later_ready = later_ready || r;
        ready += r;
    }
    return ready == ORDER_N ? MS_POLL_READY : MS_POLL_PENDING;
}

TEST(timers_fire_in_deadline_order) {
    ms_runtime *rt = start_rt(2, true, false);
    order_case c = {0};
    c.first_ms = 20;
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < ORDER_N; i++)
            ms_timer_free(c.t[i]);
        uint64_t first = c.first_ms;
        c = (order_case){0};
        c.first_ms = first;
        CHECK_INT_EQ(ms_block_on(rt, order_poll, &c, NULL, NULL), 0);
        if (!c.late_start)
            break;
        c.first_ms *= 2;
    }
    CHECK(!c.late_start);
    if (c.violations)
        TEST_FAIL_AT(__FILE__, __LINE__, "timer %d was not ready when a later one was", c.violation_at);
    CHECK_INT_EQ(c.violations, 0);
    CHECK(c.passes >= 1);
    for (int i = 0; i < ORDER_N; i++)
        ms_timer_free(c.t[i]);
    stop_rt(rt);
}

/* ---- cancel and deadline ---- */

/* A waker that counts what is done with it, to see a timer keep or drop
 * the waker it stored. */
typedef struct counting_waker {
    _Atomic int clones, drops, wakes;
} counting_waker;

static const ms_waker_vtable counting_vt;

static ms_waker cw_clone(void *d) {
    atomic_fetch_add(&((counting_waker *)d)->clones, 1);
    return (ms_waker){&counting_vt, d};
}
static void cw_wake(void *d) {
    atomic_fetch_add(&((counting_waker *)d)->wakes, 1);
    atomic_fetch_add(&((counting_waker *)d)->drops, 1);
}
static void cw_wake_by_ref(void *d) {
    atomic_fetch_add(&((counting_waker *)d)->wakes, 1);
}
static void cw_drop(void *d) {
    atomic_fetch_add(&((counting_waker *)d)->drops, 1);
}
static const ms_waker_vtable counting_vt = {cw_clone, cw_wake, cw_wake_by_ref, cw_drop};

static int live_clones(counting_waker *w) {
    return atomic_load(&w->clones) - atomic_load(&w->drops);
}

static ms_poll timer_only_poll(ms_cx *cx, void *state) {
    return ms_timer_poll(state, cx);
}

static uint64_t timers_active(ms_runtime *rt) {
    ms_metrics *m = ms_metrics_snapshot(rt);
    uint64_t n = m->timers_active;
    ms_metrics_free(m);
    return n;
}

typedef struct cancel_case {
    ms_timer *t, *later;
    counting_waker w;
    ms_poll first, after_cancel, rearmed;
    uint64_t deadline_read;
    int live_after_poll, live_after_cancel;
    uint64_t active_after_poll, active_after_cancel;
} cancel_case;

/* One poll does it all (nothing in it waits): arm, poll pending with a
 * counting waker, cancel. */
static ms_poll cancel_poll(ms_cx *cx, void *state) {
    cancel_case *c = state;
    ms_waker mine = {&counting_vt, &c->w};
    uint64_t deadline = ms_now_ns() + 20 * 1000000ull;
    ms_timer_set_deadline(c->t, deadline);
    c->deadline_read = ms_timer_deadline(c->t) - deadline; /* 0 expected */
    c->first = ms_cx_poll_with_waker(cx, &mine, timer_only_poll, c->t);
    c->live_after_poll = live_clones(&c->w);
    c->active_after_poll = timers_active(ms_cx_runtime(cx));
    ms_timer_cancel(c->t);
    c->live_after_cancel = live_clones(&c->w);
    c->active_after_cancel = timers_active(ms_cx_runtime(cx));
    c->after_cancel = ms_cx_poll_with_waker(cx, &mine, timer_only_poll, c->t);
    ms_timer_cancel(c->t); /* that poll of an unarmed timer stored nothing */
    return MS_POLL_READY;
}

/* Sleeps on `later` (armed past the cancelled timer's old deadline): once
 * it fired, the driver has passed that deadline. */
static ms_poll later_poll(ms_cx *cx, void *state) {
    return ms_timer_poll(((cancel_case *)state)->later, cx);
}

TEST(a_cancelled_timer_leaves_the_wheel_drops_its_waker_and_never_fires) {
    ms_runtime *rt = start_rt(2, true, false);
    cancel_case c = {0};
    CHECK_INT_EQ(ms_timer_new(rt, &c.t, NULL), 0);
    CHECK_INT_EQ(ms_timer_new(rt, &c.later, NULL), 0);
    /* A new timer is unarmed: deadline 0, never ready. */
    CHECK_INT_EQ(ms_timer_deadline(c.t), 0);
    CHECK_INT_EQ(ms_block_on(rt, cancel_poll, &c, NULL, NULL), 0);
    CHECK_INT_EQ(c.deadline_read, 0);
    CHECK_INT_EQ(c.first, MS_POLL_PENDING);
    CHECK_INT_EQ(c.live_after_poll, 1);   /* the timer kept a clone */
    CHECK_INT_EQ(c.active_after_poll, 1); /* and is in the wheel */
    CHECK_INT_EQ(c.live_after_cancel, 0); /* cancel dropped it */
    CHECK_INT_EQ(c.active_after_cancel, 0);
    CHECK_INT_EQ(c.after_cancel, MS_POLL_PENDING);
    /* Past the old deadline (the driver fired a later timer), nothing
     * woke the cancelled timer's waker. */
    ms_timer_set_after(c.later, 40);
    CHECK_INT_EQ(ms_block_on(rt, later_poll, &c, NULL, NULL), 0);
    CHECK_INT_EQ(atomic_load(&c.w.wakes), 0);
    CHECK_INT_EQ(live_clones(&c.w), 0);
    /* Cancelling an unarmed timer does nothing; re-arming works. */
    ms_timer_cancel(c.t);
    ms_timer_set_deadline(c.t, ms_now_ns() - 1);
    CHECK_INT_EQ(ms_block_on(rt, timer_only_poll, c.t, NULL, NULL), 0);
    ms_timer_free(c.t);
    ms_timer_free(c.later);
    ms_timer_free(NULL);
    CHECK_INT_EQ(timers_active(rt), 0);
    stop_rt(rt);
}

TEST(timer_deadline_is_what_was_set) {
    ms_runtime *rt = start_rt(1, true, false);
    ms_timer *t;
    CHECK_INT_EQ(ms_timer_new(rt, &t, NULL), 0);
    ms_timer_set_deadline(t, 123456789);
    CHECK_INT_EQ(ms_timer_deadline(t), 123456789);
    uint64_t before = ms_now_ns();
    ms_timer_set_after(t, 250);
    uint64_t after = ms_now_ns();
    CHECK(ms_timer_deadline(t) >= before + 250 * 1000000ull);
    CHECK(ms_timer_deadline(t) <= after + 250 * 1000000ull);
    /* Cancel disarms but leaves the value as it was. */
    uint64_t d = ms_timer_deadline(t);
    ms_timer_cancel(t);
    CHECK_INT_EQ(ms_timer_deadline(t), d);
    ms_timer_free(t);
    stop_rt(rt);
}

TEST(a_hundred_thousand_one_ms_sleeps_all_complete) {
    int n = (int)test_scaled(100000, 5000);
    ms_runtime *rt = start_rt(2, true, false);
    sleeper *s = calloc((size_t)n, sizeof *s);
    ms_task **h = calloc((size_t)n, sizeof *h);
    for (int i = 0; i < n; i++) {
        s[i].ms = 1;
        CHECK_INT_EQ(ms_spawn(rt, sleeper_poll, &s[i], sleeper_drop, &h[i]), 0);
    }
    join_all(h, n);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->timers_active, 0);
    ms_metrics_free(m);
    stop_rt(rt);
    free(s);
    free(h);
}

TEST(cancelled_timers_leave_the_wheel_at_once) {
    int n = (int)test_scaled(50000, 2000);
    ms_runtime *rt = start_rt(2, true, false);
    sleeper *s = calloc((size_t)n, sizeof *s);
    ms_task **h = calloc((size_t)n, sizeof *h);
    for (int i = 0; i < n; i++) {
        s[i].ms = 3600 * 1000; /* an hour: only the abort ends them */
        CHECK_INT_EQ(ms_spawn(rt, sleeper_poll, &s[i], sleeper_drop, &h[i]), 0);
    }
    /* Wait until all are in the wheel. */
    ms_metrics *m = NULL;
    for (int tries = 0; tries < 10000; tries++) {
        ms_metrics_free(m);
        m = ms_metrics_snapshot(rt);
        if (m->timers_active == (uint64_t)n)
            break;
        usleep(1000);
    }
    CHECK_INT_EQ(m->timers_active, n);
    ms_metrics_free(m);
    for (int i = 0; i < n; i++)
        ms_task_abort(h[i]);
    for (int i = 0; i < n; i++) {
        CHECK_INT_EQ(ms_task_join(h[i], 30000, NULL, NULL), MS_E_TASK_CANCELLED);
        ms_task_release(h[i]);
    }
    m = ms_metrics_snapshot(rt);
    CHECK_INT_EQ(m->timers_active, 0);
    ms_metrics_free(m);
    stop_rt(rt);
    free(s);
    free(h);
}

TEST(timers_on_a_runtime_without_time_are_a_clear_error) {
    ms_runtime *rt = start_rt(1, false, false);
    ms_timer *t = NULL;
    ms_error err;
    CHECK_INT_EQ(ms_timer_new(rt, &t, &err), MS_E_NOT_ENABLED);
    CHECK_STR_CONTAINS(err.message, "enable_time");
    ms_signal *sg = NULL;
    CHECK_INT_EQ(ms_signal_new(rt, SIGHUP, &sg, &err), MS_E_NOT_ENABLED);
    CHECK_STR_CONTAINS(err.message, "enable_io");
    stop_rt(rt);
}

/* ---- timeout ---- */

static ms_poll never_poll(ms_cx *cx, void *state) {
    return MS_POLL_PENDING;
}

static ms_poll now_poll(ms_cx *cx, void *state) {
    ms_cx_set_output(cx, state);
    return MS_POLL_READY;
}

typedef struct timeout_case {
    ms_poll_fn inner;
    uint64_t ms;
    ms_timer *timer;
    bool timed_out;
    uint64_t started, deadline, ended;
} timeout_case;

static ms_poll timeout_task(ms_cx *cx, void *state) {
    timeout_case *c = state;
    if (!c->timer) {
        if (ms_timer_new(ms_cx_runtime(cx), &c->timer, NULL) != 0)
            return ms_cx_fail(cx, MS_E_INTERNAL, "timer");
        c->started = ms_now_ns();
        ms_timer_set_after(c->timer, c->ms);
        c->deadline = ms_timer_deadline(c->timer);
    }
    ms_poll r = ms_timeout_poll(c->timer, cx, c->inner, (void *)7, &c->timed_out);
    if (r == MS_POLL_PENDING)
        return r;
    c->ended = ms_now_ns();
    ms_timer_free(c->timer);
    c->timer = NULL;
    return r;
}

TEST(timeout_gives_up_after_the_deadline_and_passes_ready_results_through) {
    ms_runtime *rt = start_rt(2, true, false);
    timeout_case slow = {never_poll, 20, NULL, false, 0, 0, 0};
    CHECK_INT_EQ(ms_block_on(rt, timeout_task, &slow, NULL, NULL), 0);
    CHECK(slow.timed_out);
    /* set_after(20) computed its deadline from a clock read after
     * `started`; the timeout is never seen before that deadline. */
    CHECK(slow.deadline >= slow.started + 20 * 1000000u);
    CHECK(slow.ended >= slow.deadline);
    timeout_case fast = {now_poll, 20, NULL, false, 0, 0, 0};
    void *out;
    CHECK_INT_EQ(ms_block_on(rt, timeout_task, &fast, &out, NULL), 0);
    CHECK(!fast.timed_out);
    CHECK_INT_EQ((intptr_t)out, 7);
    stop_rt(rt);
}

/* ---- intervals ----
 *
 * Each check is on the deadlines the interval computed (read from its
 * timer before each tick), the order of polls and the counts: never on
 * how far apart two observations were, since an observation can itself be
 * late on a loaded machine.  The one property about time is a lower
 * bound: no tick is seen before its computed deadline. */

enum { TICKS = 8, PERIOD_MS = 10 };
#define PERIOD_NS ((uint64_t)PERIOD_MS * 1000000u)

typedef struct ticker {
    ms_interval *iv;
    ms_missed_tick policy;
    int ticks, stall_at;
    uint64_t deadline_ns[TICKS]; /* what the interval waited for */
    uint64_t before_ns[TICKS];   /* just before the poll that was ready */
    uint64_t tick_ns[TICKS];     /* just after it */
    uint64_t skipped[TICKS];
    int pending[TICKS];          /* pending polls before each tick */
    uint64_t stall_end_ns;
} ticker;

/* At tick `stall_at` (1-based) it blocks its worker for 35 ms, so that the
 * next three ticks (10, 20 and 30 ms after that one's deadline) are missed. */
static ms_poll ticker_poll(ms_cx *cx, void *state) {
    ticker *t = state;
    if (!t->iv && ms_interval_new(ms_cx_runtime(cx), PERIOD_MS, t->policy, &t->iv, NULL) != 0)
        return ms_cx_fail(cx, MS_E_INTERNAL, "interval");
    while (t->ticks < TICKS) {
        int k = t->ticks;
        uint64_t deadline = ms_timer_deadline(t->iv->timer);
        uint64_t before = ms_now_ns();
        uint64_t skipped;
        if (ms_interval_poll(t->iv, cx, &skipped) == MS_POLL_PENDING) {
            t->pending[k]++;
            return MS_POLL_PENDING;
        }
        t->tick_ns[k] = ms_now_ns();
        t->before_ns[k] = before;
        t->deadline_ns[k] = deadline;
        t->skipped[k] = skipped;
        t->ticks++;
        if (t->ticks == t->stall_at) {
            usleep(35000);
            t->stall_end_ns = ms_now_ns();
        }
    }
    ms_interval_free(t->iv);
    t->iv = NULL;
    return MS_POLL_READY;
}

static void run_ticker(ms_runtime *rt, ticker *t) {
    ms_block_on(rt, ticker_poll, t, NULL, NULL);
}

/* What every policy promises: every tick seen, none before its deadline,
 * and no deadline sooner than a period after the previous one. */
static bool ticks_never_early(const ticker *t) {
    if (t->ticks != TICKS)
        return false;
    for (int k = 0; k < TICKS; k++) {
        if (t->tick_ns[k] < t->deadline_ns[k] || t->before_ns[k] < t->deadline_ns[k])
            return false;
        if (k > 0 && t->deadline_ns[k] < t->deadline_ns[k - 1] + PERIOD_NS)
            return false;
    }
    return true;
}

TEST(interval_burst_catches_up_missed_ticks_back_to_back) {
    ms_runtime *rt = start_rt(2, true, false);
    ticker t = {.policy = MS_MISSED_BURST, .stall_at = 2};
    run_ticker(rt, &t);
    CHECK(ticks_never_early(&t));
    /* Every tick stays on the original grid, none skipped... */
    for (int k = 1; k < TICKS; k++) {
        CHECK_INT_EQ(t.deadline_ns[k] - t.deadline_ns[0], (uint64_t)k * PERIOD_NS);
        CHECK_INT_EQ(t.skipped[k], 0);
    }
    /* ...and the ticks missed during the stall (ticks 3, 4, 5: deadlines
     * before the stall ended) come back to back: each is ready at its
     * first poll, with no pending poll (no wait) between them. */
    int caught_up = 0;
    for (int k = 2; k < TICKS; k++)
        if (t.deadline_ns[k] <= t.stall_end_ns) {
            CHECK_INT_EQ(t.pending[k], 0);
            caught_up++;
        }
    CHECK(caught_up >= 3);
    stop_rt(rt);
}

TEST(interval_delay_restarts_the_period_after_a_late_tick) {
    ms_runtime *rt = start_rt(2, true, false);
    ticker t = {.policy = MS_MISSED_DELAY, .stall_at = 2};
    run_ticker(rt, &t);
    CHECK(ticks_never_early(&t));
    /* Tick 3 came late (its deadline was missed during the stall): the
     * next is one period after the moment it fired, which lies between
     * the observations taken just before and just after that poll. */
    CHECK(t.before_ns[2] >= t.stall_end_ns);
    CHECK(t.deadline_ns[3] >= t.before_ns[2] + PERIOD_NS);
    CHECK(t.deadline_ns[3] <= t.tick_ns[2] + PERIOD_NS);
    /* Every tick: a late one restarts the period from its firing, an
     * on-time one keeps the grid; never a catch-up burst. */
    for (int k = 1; k < TICKS; k++) {
        uint64_t grid = t.deadline_ns[k - 1] + PERIOD_NS;
        if (grid > t.tick_ns[k - 1])
            CHECK_INT_EQ(t.deadline_ns[k], grid); /* surely on time */
        else if (grid <= t.before_ns[k - 1]) {    /* surely late */
            CHECK(t.deadline_ns[k] >= t.before_ns[k - 1] + PERIOD_NS);
            CHECK(t.deadline_ns[k] <= t.tick_ns[k - 1] + PERIOD_NS);
        }
        CHECK_INT_EQ(t.skipped[k], 0);
    }
    stop_rt(rt);
}

TEST(interval_skip_drops_missed_ticks_and_says_how_many) {
    ms_runtime *rt = start_rt(2, true, false);
    ticker t = {.policy = MS_MISSED_SKIP, .stall_at = 2};
    run_ticker(rt, &t);
    CHECK(ticks_never_early(&t));
    /* Every deadline stays on the original grid; the skipped count of a
     * tick is exactly the grid points it jumped over. */
    uint64_t skipped = 0;
    for (int k = 1; k < TICKS; k++) {
        CHECK_INT_EQ((t.deadline_ns[k] - t.deadline_ns[0]) % PERIOD_NS, 0);
        CHECK_INT_EQ(t.skipped[k - 1], (t.deadline_ns[k] - t.deadline_ns[k - 1]) / PERIOD_NS - 1);
        /* the next grid point after the tick fired: after the poll began,
         * at most a period after it ended */
        CHECK(t.deadline_ns[k] > t.before_ns[k - 1]);
        CHECK(t.deadline_ns[k] <= t.tick_ns[k - 1] + PERIOD_NS);
        skipped += t.skipped[k - 1];
    }
    /* The stall (35 ms from tick 2's firing) passed at least 2 of them. */
    CHECK(t.skipped[2] >= 2);
    CHECK(skipped >= 2);
    stop_rt(rt);
}

TEST(interval_rejects_a_zero_period) {
    ms_runtime *rt = start_rt(1, true, false);
    ms_interval *iv;
    ms_error err;
    CHECK_INT_EQ(ms_interval_new(rt, 0, MS_MISSED_BURST, &iv, &err), MS_E_INVALID_ARGUMENT);
    CHECK_STR_CONTAINS(err.message, "period 0 ms");
    stop_rt(rt);
}

/* ---- signals ---- */

/* Waits (up to 20 s, a hang guard) until something replaced the default
 * action of signum: the driver's watcher installs a handler. */
static bool wait_handler_installed(int signum) {
    for (int i = 0; i < 20000; i++) {
        struct sigaction sa;
        if (sigaction(signum, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
            return true;
        usleep(1000);
    }
    return false;
}

typedef struct sig_waiter {
    ms_signal *sig;
    uint64_t count;
} sig_waiter;

static ms_poll sigwait_poll(ms_cx *cx, void *state) {
    sig_waiter *w = state;
    return ms_signal_poll(w->sig, cx, &w->count);
}

TEST(a_signal_reaches_the_task_watching_it) {
    ms_runtime *rt = start_rt(2, true, true);
    sig_waiter w = {0};
    ms_error err;
    CHECK_INT_EQ(ms_signal_new(rt, SIGHUP, &w.sig, &err), 0);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, sigwait_poll, &w, NULL, &h), 0);
    /* The watcher starts on the driver thread; until then the signal's
     * default action (terminate) would apply, so wait until its handler
     * is installed (an event, not a guess at how long that takes). */
    CHECK(wait_handler_installed(SIGHUP));
    kill(getpid(), SIGHUP);
    CHECK_INT_EQ(ms_task_join(h, 10000, NULL, &err), 0);
    CHECK(w.count >= 1);
    ms_task_release(h);
    ms_signal_free(w.sig);
    stop_rt(rt);
}

TEST(watching_signal_zero_is_refused) {
    ms_runtime *rt = start_rt(1, true, true);
    ms_signal *s;
    ms_error err;
    CHECK_INT_EQ(ms_signal_new(rt, 0, &s, &err), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_signal_new(rt, SIGKILL, &s, &err), MS_E_INVALID_ARGUMENT);
    CHECK_STR_CONTAINS(err.message, "SIGKILL");
    stop_rt(rt);
}

/* ---- files ---- */

TEST(files_written_on_the_blocking_pool_read_back_the_same) {
    ms_runtime *rt = start_rt(2, true, true);
    char path[] = "/tmp/ms-test-fs-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    static char data[200000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    ms_task *w, *r;
    CHECK_INT_EQ(ms_fs_write_file(rt, path, data, sizeof data, &w), 0);
    CHECK_INT_EQ(ms_task_join(w, 10000, NULL, NULL), 0);
    ms_task_release(w);
    CHECK_INT_EQ(ms_fs_read_file(rt, path, &r), 0);
    void *out = NULL;
    CHECK_INT_EQ(ms_task_join(r, 10000, &out, NULL), 0);
    ms_bytes *b = out;
    CHECK_INT_EQ(b->len, sizeof data);
    CHECK(memcmp(b->data, data, sizeof data) == 0);
    ms_free(b);
    ms_task_release(r);
    unlink(path);
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m->blocking_jobs_total >= 2);
    ms_metrics_free(m);
    stop_rt(rt);
}

TEST(reading_a_missing_file_names_the_path_and_the_reason) {
    ms_runtime *rt = start_rt(1, true, true);
    ms_task *r;
    CHECK_INT_EQ(ms_fs_read_file(rt, "/nonexistent/ms-test", &r), 0);
    ms_error err;
    void *out = (void *)1;
    CHECK_INT_EQ(ms_task_join(r, 10000, &out, &err), MS_E_IO);
    CHECK(out == NULL);
    CHECK_STR_CONTAINS(err.message, "/nonexistent/ms-test");
    CHECK_STR_CONTAINS(err.message, "No such file");
    ms_task_release(r);
    stop_rt(rt);
}

TEST_MAIN()
