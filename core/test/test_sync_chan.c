/*
 * test_sync_chan.c - the channel's contract: FIFO, back-pressure on a
 * bounded channel, close drains then reports Closed (senders fail at
 * once), cancelled operations lose nothing, values left behind are
 * dropped, and across worker threads, plain threads and many tasks no
 * value is lost, duplicated or stuck (no lost wake-up).  Stress sizes
 * scale with MS_TEST_SCALE.
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

/* ---- one-shot send and receive tasks ---- */

typedef struct op {
    ms_chan *ch;
    ms_chan_waiter w;
    void *value;
    int rc;
    _Atomic int polled;
    _Atomic int done;
} op;

static ms_poll send_poll(ms_cx *cx, void *state) {
    op *o = state;
    atomic_fetch_add(&o->polled, 1);
    if (ms_chan_send_poll(o->ch, &o->w, o->value, cx, &o->rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    atomic_store(&o->done, 1);
    return MS_POLL_READY;
}

static ms_poll recv_poll(ms_cx *cx, void *state) {
    op *o = state;
    atomic_fetch_add(&o->polled, 1);
    if (ms_chan_recv_poll(o->ch, &o->w, cx, &o->value, &o->rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    atomic_store(&o->done, 1);
    return MS_POLL_READY;
}

static void op_drop(void *state) {
    op *o = state;
    ms_chan_waiter_cancel(o->ch, &o->w);
}

static void op_init(op *o, ms_chan *ch, void *value) {
    memset(o, 0, sizeof *o);
    o->ch = ch;
    o->value = value;
    ms_chan_waiter_init(&o->w);
}

/* ---- basics ---- */

TEST(try_send_and_try_recv_are_fifo_and_report_full_and_empty) {
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(3, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_capacity(ch), 3);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), MS_E_EXHAUSTED);
    for (int i = 1; i <= 3; i++)
        CHECK_INT_EQ(ms_chan_try_send(ch, V(i)), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(4)), MS_E_EXHAUSTED);
    CHECK_INT_EQ(ms_chan_len(ch), 3);
    /* Wrap the ring a few times. */
    for (int i = 1; i <= 100; i++) {
        CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
        CHECK_INT_EQ(I(v), i);
        CHECK_INT_EQ(ms_chan_try_send(ch, V(i + 3)), 0);
    }
    ms_chan_unref(ch);

    CHECK_INT_EQ(ms_chan_new(0, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_capacity(ch), 0);
    for (int i = 0; i < 10000; i++)
        CHECK_INT_EQ(ms_chan_try_send(ch, V(i)), 0);
    CHECK_INT_EQ(ms_chan_len(ch), 10000);
    for (int i = 0; i < 10000; i++) {
        CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
        CHECK_INT_EQ(I(v), i);
    }
    ms_chan_unref(ch);
}

static _Atomic int dropped_values;

static void count_drop(void *v) {
    (void)v;
    atomic_fetch_add(&dropped_values, 1);
}

TEST(values_left_in_the_channel_are_dropped_with_the_last_reference) {
    atomic_store(&dropped_values, 0);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(0, count_drop, &ch), 0);
    for (int i = 0; i < 7; i++)
        CHECK_INT_EQ(ms_chan_try_send(ch, V(i + 1)), 0);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    ms_chan_ref(ch);
    ms_chan_close(ch);
    ms_chan_unref(ch);
    CHECK_INT_EQ(atomic_load(&dropped_values), 0);
    ms_chan_unref(ch);
    CHECK_INT_EQ(atomic_load(&dropped_values), 6);
}

/* ---- back-pressure ---- */

TEST(a_sender_waits_while_the_bounded_channel_is_full_and_proceeds_after_a_recv) {
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(2, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(2)), 0);
    op a, b;
    op_init(&a, ch, V(3));
    op_init(&b, ch, V(4));
    ms_task *ha, *hb;
    CHECK_INT_EQ(ms_spawn(rt, send_poll, &a, op_drop, &ha), 0);
    CHECK(wait_int(&a.polled, 1));
    CHECK_INT_EQ(ms_spawn(rt, send_poll, &b, op_drop, &hb), 0);
    CHECK(wait_int(&b.polled, 1));
    usleep(10000);
    CHECK_INT_EQ(atomic_load(&a.done), 0);
    CHECK_INT_EQ(atomic_load(&b.done), 0);
    /* Queued senders block new ones too. */
    CHECK_INT_EQ(ms_chan_try_send(ch, V(9)), MS_E_EXHAUSTED);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(I(v), 1);
    /* The freed slot went to the first waiting sender at once. */
    CHECK_INT_EQ(ms_chan_len(ch), 2);
    CHECK(wait_int(&a.done, 1));
    CHECK_INT_EQ(a.rc, 0);
    usleep(5000);
    CHECK_INT_EQ(atomic_load(&b.done), 0);
    for (int want = 2; want <= 4; want++) {
        CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
        CHECK_INT_EQ(I(v), want);
    }
    CHECK(wait_int(&b.done, 1));
    CHECK_INT_EQ(ms_task_join(ha, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(ms_task_join(hb, 20000, NULL, NULL), 0);
    ms_task_release(ha);
    ms_task_release(hb);
    ms_chan_unref(ch);
    stop(rt);
}

/* ---- close ---- */

TEST(close_fails_senders_at_once_and_receivers_drain_then_see_closed) {
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(1, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0);
    op s;
    op_init(&s, ch, V(2));
    ms_task *hs;
    CHECK_INT_EQ(ms_spawn(rt, send_poll, &s, op_drop, &hs), 0);
    CHECK(wait_int(&s.polled, 1));
    ms_chan_close(ch);
    CHECK(ms_chan_is_closed(ch));
    CHECK_INT_EQ(ms_task_join(hs, 20000, NULL, NULL), 0);
    CHECK_INT_EQ(s.rc, MS_E_CLOSED);
    ms_task_release(hs);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(3)), MS_E_CLOSED);
    /* What was sent before the close is still received, then Closed. */
    op r;
    op_init(&r, ch, NULL);
    ms_task *hr;
    CHECK_INT_EQ(ms_spawn(rt, recv_poll, &r, op_drop, &hr), 0);
    CHECK_INT_EQ(ms_task_join(hr, 20000, NULL, NULL), 0);
    ms_task_release(hr);
    CHECK_INT_EQ(r.rc, 0);
    CHECK_INT_EQ(I(r.value), 1);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), MS_E_CLOSED);
    op_init(&r, ch, NULL);
    CHECK_INT_EQ(ms_spawn(rt, recv_poll, &r, op_drop, &hr), 0);
    CHECK_INT_EQ(ms_task_join(hr, 20000, NULL, NULL), 0);
    ms_task_release(hr);
    CHECK_INT_EQ(r.rc, MS_E_CLOSED);
    ms_chan_unref(ch);
    stop(rt);
}

TEST(close_wakes_waiting_receivers_with_closed) {
    enum { N = 40 };
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(4, NULL, &ch), 0);
    op rs[N];
    ms_task *hr[N];
    for (int i = 0; i < N; i++) {
        op_init(&rs[i], ch, NULL);
        CHECK_INT_EQ(ms_spawn(rt, recv_poll, &rs[i], op_drop, &hr[i]), 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(wait_int(&rs[i].polled, 1));
    ms_chan_close(ch);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hr[i], 20000, NULL, NULL), 0);
        CHECK_INT_EQ(rs[i].rc, MS_E_CLOSED);
        ms_task_release(hr[i]);
    }
    ms_chan_unref(ch);
    stop(rt);
}

/* ---- receivers ---- */

TEST(waiting_receivers_are_served_in_fifo_order) {
    enum { N = 16 };
    ms_runtime *rt = start(1);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(0, NULL, &ch), 0);
    op rs[N];
    ms_task *hr[N];
    for (int i = 0; i < N; i++) {
        op_init(&rs[i], ch, NULL);
        CHECK_INT_EQ(ms_spawn(rt, recv_poll, &rs[i], op_drop, &hr[i]), 0);
        CHECK(wait_int(&rs[i].polled, 1));
    }
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(ms_chan_try_send(ch, V(100 + i)), 0);
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(ms_task_join(hr[i], 20000, NULL, NULL), 0);
        ms_task_release(hr[i]);
        CHECK_INT_EQ(I(rs[i].value), 100 + i);
    }
    CHECK_INT_EQ(ms_chan_len(ch), 0);
    ms_chan_unref(ch);
    stop(rt);
}

/* A receiver that gets a value handed over and is aborted before its poll
 * sees it puts the value back: nothing is lost. */
typedef struct slow_recv {
    ms_chan *ch;
    ms_chan_waiter w;
    _Atomic int polled;
} slow_recv;

static ms_poll slow_recv_poll(ms_cx *cx, void *state) {
    slow_recv *s = state;
    if (atomic_fetch_add(&s->polled, 1) == 0) {
        void *v;
        int rc;
        if (ms_chan_recv_poll(s->ch, &s->w, cx, &v, &rc) == MS_POLL_READY)
            return ms_cx_fail(cx, MS_E_INTERNAL, "expected to wait");
        return MS_POLL_PENDING;
    }
    /* Woken: never looks at the value; waits to be aborted. */
    return MS_POLL_PENDING;
}

static void slow_recv_drop(void *state) {
    slow_recv *s = state;
    CHECK(!ms_chan_waiter_cancel(s->ch, &s->w));
}

TEST(a_value_handed_to_a_receiver_that_gives_up_goes_back_to_the_front) {
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(1, NULL, &ch), 0);
    slow_recv s = {.ch = ch};
    ms_chan_waiter_init(&s.w);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, slow_recv_poll, &s, slow_recv_drop, &h), 0);
    CHECK(wait_int(&s.polled, 1));
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0); /* handed to s */
    CHECK(wait_int(&s.polled, 2));
    CHECK_INT_EQ(ms_chan_len(ch), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(2)), 0); /* into the buffer */
    ms_task_abort(h);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    ms_task_release(h);
    CHECK_INT_EQ(ms_chan_len(ch), 2); /* briefly above capacity */
    CHECK_INT_EQ(ms_chan_try_send(ch, V(3)), MS_E_EXHAUSTED);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(I(v), 1);
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(I(v), 2);
    ms_chan_unref(ch);
    stop(rt);
}

TEST(cancelling_a_send_tells_whether_the_value_went_in) {
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(1, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0);
    /* Waiting, not sent: the value stays the caller's. */
    op a;
    op_init(&a, ch, V(2));
    a.w = (ms_chan_waiter){0};
    ms_chan_waiter_init(&a.w);
    ms_task *ha;
    CHECK_INT_EQ(ms_spawn(rt, send_poll, &a, NULL, &ha), 0);
    CHECK(wait_int(&a.polled, 1));
    ms_task_abort(ha);
    CHECK_INT_EQ(ms_task_join(ha, 20000, NULL, NULL), MS_E_TASK_CANCELLED);
    ms_task_release(ha);
    CHECK(!ms_chan_waiter_cancel(ch, &a.w));
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), MS_E_EXHAUSTED);
    ms_chan_unref(ch);
    stop(rt);
}

/* Everything in one poll, so that nothing runs in between: a send waits
 * on a full channel, a receive makes room and moves the waiting value in,
 * and the sender cancels before any poll of its own saw that. */
typedef struct moved_send {
    ms_chan *ch;
    ms_chan_waiter w;
    ms_poll first;
    bool cancelled_sent, cancelled_again, cancelled_waiting;
    void *got1, *got2;
    size_t len_after_cancel;
} moved_send;

static ms_poll moved_send_poll(ms_cx *cx, void *state) {
    moved_send *m = state;
    int rc = -1;
    ms_chan_waiter_init(&m->w);
    m->first = ms_chan_send_poll(m->ch, &m->w, V(2), cx, &rc); /* full: waits */
    if (ms_chan_try_recv(m->ch, &m->got1) != 0) /* room: V(2) moves in */
        return ms_cx_fail(cx, MS_E_INTERNAL, "try_recv");
    m->cancelled_sent = ms_chan_waiter_cancel(m->ch, &m->w);
    m->cancelled_again = ms_chan_waiter_cancel(m->ch, &m->w); /* idle now */
    m->len_after_cancel = ms_chan_len(m->ch);
    if (ms_chan_try_recv(m->ch, &m->got2) != 0)
        return ms_cx_fail(cx, MS_E_INTERNAL, "the moved value is not in the channel");
    /* And one still waiting when cancelled: not sent, never delivered. */
    if (ms_chan_try_send(m->ch, V(3)) != 0)
        return ms_cx_fail(cx, MS_E_INTERNAL, "try_send");
    ms_chan_waiter_init(&m->w);
    if (ms_chan_send_poll(m->ch, &m->w, V(4), cx, &rc) != MS_POLL_PENDING)
        return ms_cx_fail(cx, MS_E_INTERNAL, "expected to wait");
    m->cancelled_waiting = ms_chan_waiter_cancel(m->ch, &m->w);
    return MS_POLL_READY;
}

TEST(cancelling_a_send_whose_value_went_in_says_so_and_the_value_stays_in) {
    /* The Lua binding frees a cancelled send's value only when cancel
     * answers false: a wrong false here is a double free there. */
    ms_runtime *rt = start(1);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(1, NULL, &ch), 0);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0);
    moved_send m = {.ch = ch};
    CHECK_INT_EQ(ms_block_on(rt, moved_send_poll, &m, NULL, NULL), 0);
    CHECK_INT_EQ(m.first, MS_POLL_PENDING);
    CHECK_INT_EQ(I(m.got1), 1);
    CHECK(m.cancelled_sent);
    CHECK(!m.cancelled_again);
    CHECK_INT_EQ(m.len_after_cancel, 1);
    CHECK_INT_EQ(I(m.got2), 2);
    CHECK(!m.cancelled_waiting);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(I(v), 3);
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), MS_E_EXHAUSTED); /* V(4) never went in */
    ms_chan_unref(ch);
    stop(rt);
}

/* ---- timeouts ---- */

typedef struct timed_op {
    op o;
    bool sending;
    ms_timer *timer;
    uint64_t after_ms;
    bool armed;
    bool timed_out;
    bool sent_anyway;
} timed_op;

static ms_poll timed_inner(ms_cx *cx, void *state) {
    timed_op *t = state;
    if (t->sending)
        return ms_chan_send_poll(t->o.ch, &t->o.w, t->o.value, cx, &t->o.rc);
    return ms_chan_recv_poll(t->o.ch, &t->o.w, cx, &t->o.value, &t->o.rc);
}

static ms_poll timed_poll(ms_cx *cx, void *state) {
    timed_op *t = state;
    if (!t->armed) {
        ms_timer_set_after(t->timer, t->after_ms);
        t->armed = true;
    }
    ms_poll r = ms_timeout_poll(t->timer, cx, timed_inner, t, &t->timed_out);
    if (r == MS_POLL_READY && t->timed_out)
        t->sent_anyway = ms_chan_waiter_cancel(t->o.ch, &t->o.w);
    return r;
}

TEST(send_and_recv_with_timeout_give_up_cleanly) {
    ms_runtime *rt = start(2);
    ms_chan *ch;
    CHECK_INT_EQ(ms_chan_new(1, NULL, &ch), 0);
    timed_op t = {.after_ms = 15};
    op_init(&t.o, ch, NULL);
    CHECK_INT_EQ(ms_timer_new(rt, &t.timer, NULL), 0);
    ms_task *h;
    /* recv on an empty channel times out */
    CHECK_INT_EQ(ms_spawn(rt, timed_poll, &t, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(t.timed_out);
    /* the receiver is gone: a send goes to the buffer, not to a ghost */
    CHECK_INT_EQ(ms_chan_try_send(ch, V(1)), 0);
    CHECK_INT_EQ(ms_chan_len(ch), 1);
    /* send on a full channel times out; the value stays ours */
    t.sending = true;
    t.armed = false;
    t.o.value = V(2);
    CHECK_INT_EQ(ms_spawn(rt, timed_poll, &t, NULL, &h), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(t.timed_out);
    CHECK(!t.sent_anyway);
    void *v;
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), 0);
    CHECK_INT_EQ(I(v), 1);
    CHECK_INT_EQ(ms_chan_try_recv(ch, &v), MS_E_EXHAUSTED);
    /* in time: a recv with a long timeout gets a value sent later */
    t.sending = false;
    t.armed = false;
    t.after_ms = 10000;
    CHECK_INT_EQ(ms_spawn(rt, timed_poll, &t, NULL, &h), 0);
    usleep(5000);
    CHECK_INT_EQ(ms_chan_try_send(ch, V(7)), 0);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK(!t.timed_out);
    CHECK_INT_EQ(t.o.rc, 0);
    CHECK_INT_EQ(I(t.o.value), 7);
    ms_timer_free(t.timer);
    ms_chan_unref(ch);
    stop(rt);
}

/* ---- no lost wake-ups: millions of values, many tasks and threads ---- */

typedef struct flow {
    ms_chan *ch;
    _Atomic uint8_t *seen;     /* per value: times received */
    _Atomic uint64_t sum;      /* of received values */
    _Atomic uint64_t received;
} flow;

typedef struct producer {
    flow *f;
    ms_chan_waiter w;
    uint64_t next, end;        /* values [next, end) */
} producer;

static ms_poll producer_poll(ms_cx *cx, void *state) {
    producer *p = state;
    while (p->next < p->end) {
        int rc;
        if (ms_chan_send_poll(p->f->ch, &p->w, V(p->next + 1), cx, &rc) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc != 0)
            return ms_cx_fail(cx, rc, "send failed");
        if (++p->next % 97 == 0)
            return ms_cx_yield(cx);
    }
    return MS_POLL_READY;
}

typedef struct consumer {
    flow *f;
    ms_chan_waiter w;
    uint64_t count;
} consumer;

static ms_poll consumer_poll(ms_cx *cx, void *state) {
    consumer *c = state;
    for (;;) {
        void *v;
        int rc;
        if (ms_chan_recv_poll(c->f->ch, &c->w, cx, &v, &rc) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (rc == MS_E_CLOSED)
            return MS_POLL_READY;
        uint64_t i = I(v) - 1;
        atomic_fetch_add_explicit(&c->f->seen[i], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->f->sum, i + 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->f->received, 1, memory_order_relaxed);
        if (++c->count % 61 == 0)
            return ms_cx_yield(cx);
    }
}

typedef struct foreign {
    ms_runtime *rt;
    ms_poll_fn poll;
    void *state;
    int rc;
} foreign;

static void *foreign_thread(void *arg) {
    foreign *f = arg;
    ms_error err;
    f->rc = ms_block_on(f->rt, f->poll, f->state, NULL, &err);
    return NULL;
}

static void run_flow(size_t capacity) {
    enum { PT = 6, PF = 2, CT = 6, CF = 2 };
    uint64_t n = (uint64_t)test_scaled(capacity == 1 ? 2000000 : 4000000, 20000);
    ms_runtime *rt = start(4);
    flow f = {0};
    CHECK_INT_EQ(ms_chan_new(capacity, NULL, &f.ch), 0);
    f.seen = calloc(n, sizeof *f.seen);
    producer ps[PT + PF];
    consumer cs[CT + CF];
    ms_task *hp[PT], *hc[CT];
    pthread_t tp[PF], tc[CF];
    foreign fp[PF], fc[CF];
    for (int i = 0; i < CT + CF; i++) {
        cs[i] = (consumer){.f = &f};
        ms_chan_waiter_init(&cs[i].w);
    }
    for (int i = 0; i < PT + PF; i++) {
        ps[i] = (producer){.f = &f, .next = i * n / (PT + PF), .end = (i + 1) * n / (PT + PF)};
        ms_chan_waiter_init(&ps[i].w);
    }
    for (int i = 0; i < CT; i++)
        CHECK_INT_EQ(ms_spawn(rt, consumer_poll, &cs[i], NULL, &hc[i]), 0);
    for (int i = 0; i < CF; i++) {
        fc[i] = (foreign){rt, consumer_poll, &cs[CT + i], -1};
        pthread_create(&tc[i], NULL, foreign_thread, &fc[i]);
    }
    for (int i = 0; i < PT; i++)
        CHECK_INT_EQ(ms_spawn(rt, producer_poll, &ps[i], NULL, &hp[i]), 0);
    for (int i = 0; i < PF; i++) {
        fp[i] = (foreign){rt, producer_poll, &ps[PT + i], -1};
        pthread_create(&tp[i], NULL, foreign_thread, &fp[i]);
    }
    for (int i = 0; i < PT; i++) {
        CHECK_INT_EQ(ms_task_join(hp[i], 60000, NULL, NULL), 0);
        ms_task_release(hp[i]);
    }
    for (int i = 0; i < PF; i++) {
        pthread_join(tp[i], NULL);
        CHECK_INT_EQ(fp[i].rc, 0);
    }
    ms_chan_close(f.ch);
    for (int i = 0; i < CT; i++) {
        CHECK_INT_EQ(ms_task_join(hc[i], 60000, NULL, NULL), 0);
        ms_task_release(hc[i]);
    }
    for (int i = 0; i < CF; i++) {
        pthread_join(tc[i], NULL);
        CHECK_INT_EQ(fc[i].rc, 0);
    }
    CHECK_INT_EQ(atomic_load(&f.received), n);
    CHECK(atomic_load(&f.sum) == n * (n + 1) / 2);
    for (uint64_t i = 0; i < n; i++)
        if (atomic_load(&f.seen[i]) != 1) {
            TEST_FAIL_AT(__FILE__, __LINE__, "value %llu received %u times",
                         (unsigned long long)i + 1, (unsigned)atomic_load(&f.seen[i]));
            break;
        }
    free(f.seen);
    ms_chan_unref(f.ch);
    stop(rt);
}

TEST(no_value_is_lost_or_duplicated_through_a_channel_of_capacity_1) { run_flow(1); }
TEST(no_value_is_lost_or_duplicated_through_a_channel_of_capacity_64) { run_flow(64); }
TEST(no_value_is_lost_or_duplicated_through_an_unbounded_channel) { run_flow(0); }

TEST_MAIN()
