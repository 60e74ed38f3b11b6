/*
 * test_sync_oneshot.c - the oneshot's contract in every order of events:
 * send before or after the receiver waits, the sender side closed without
 * sending (before or after the receiver waits), the receiver side closed
 * first, and the value dropped exactly once if nobody received it; then
 * the same races at scale across worker and plain threads.
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

static _Atomic int drops;

static void count_drop(void *v) {
    (void)v;
    atomic_fetch_add(&drops, 1);
}

/* A task receiving from a oneshot; closes the receiver side when done or
 * dropped. */
typedef struct receiver {
    ms_oneshot *o;
    void *value;
    int rc;
    _Atomic int polled;
} receiver;

static ms_poll receiver_poll(ms_cx *cx, void *state) {
    receiver *r = state;
    atomic_fetch_add(&r->polled, 1);
    return ms_oneshot_recv_poll(r->o, cx, &r->value, &r->rc);
}

static void receiver_drop(void *state) {
    receiver *r = state;
    ms_oneshot_close_rx(r->o);
}

static int receive(ms_runtime *rt, receiver *r) {
    ms_task *h;
    int rc = ms_spawn(rt, receiver_poll, r, receiver_drop, &h);
    if (rc == 0) {
        rc = ms_task_join(h, 20000, NULL, NULL);
        ms_task_release(h);
    }
    return rc;
}

TEST(a_value_sent_before_the_receiver_polls_is_received) {
    ms_runtime *rt = start(2);
    atomic_store(&drops, 0);
    receiver r = {0};
    CHECK_INT_EQ(ms_oneshot_new(count_drop, &r.o), 0);
    CHECK(!ms_oneshot_is_closed(r.o));
    CHECK_INT_EQ(ms_oneshot_send(r.o, V(42)), 0);
    CHECK_INT_EQ(ms_oneshot_send(r.o, V(43)), MS_E_INVALID_ARGUMENT);
    ms_oneshot_close_tx(r.o);
    CHECK_INT_EQ(receive(rt, &r), 0);
    CHECK_INT_EQ(r.rc, 0);
    CHECK_INT_EQ(I(r.value), 42);
    CHECK_INT_EQ(atomic_load(&drops), 0); /* received: not dropped */
    stop(rt);
}

TEST(a_waiting_receiver_is_woken_by_the_send) {
    ms_runtime *rt = start(2);
    receiver r = {0};
    CHECK_INT_EQ(ms_oneshot_new(NULL, &r.o), 0);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, receiver_poll, &r, receiver_drop, &h), 0);
    CHECK(wait_int(&r.polled, 1));
    usleep(2000);
    CHECK(!ms_task_is_finished(h));
    CHECK_INT_EQ(ms_oneshot_send(r.o, V(7)), 0);
    ms_oneshot_close_tx(r.o);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK_INT_EQ(r.rc, 0);
    CHECK_INT_EQ(I(r.value), 7);
    stop(rt);
}

TEST(a_sender_closed_without_sending_gives_closed_before_or_after_the_wait) {
    ms_runtime *rt = start(2);
    /* before */
    receiver r = {0};
    CHECK_INT_EQ(ms_oneshot_new(NULL, &r.o), 0);
    ms_oneshot_close_tx(r.o);
    CHECK_INT_EQ(receive(rt, &r), 0);
    CHECK_INT_EQ(r.rc, MS_E_CLOSED);
    /* after */
    receiver s = {0};
    CHECK_INT_EQ(ms_oneshot_new(NULL, &s.o), 0);
    ms_task *h;
    CHECK_INT_EQ(ms_spawn(rt, receiver_poll, &s, receiver_drop, &h), 0);
    CHECK(wait_int(&s.polled, 1));
    ms_oneshot_close_tx(s.o);
    CHECK_INT_EQ(ms_task_join(h, 20000, NULL, NULL), 0);
    ms_task_release(h);
    CHECK_INT_EQ(s.rc, MS_E_CLOSED);
    stop(rt);
}

TEST(a_send_after_the_receiver_closed_fails_and_keeps_the_value) {
    atomic_store(&drops, 0);
    ms_oneshot *o;
    CHECK_INT_EQ(ms_oneshot_new(count_drop, &o), 0);
    ms_oneshot_close_rx(o);
    CHECK(ms_oneshot_is_closed(o));
    CHECK_INT_EQ(ms_oneshot_send(o, V(5)), MS_E_CLOSED);
    ms_oneshot_close_tx(o);
    CHECK_INT_EQ(atomic_load(&drops), 0); /* the value was never the oneshot's */
}

TEST(an_unreceived_value_is_dropped_once_when_both_sides_close) {
    atomic_store(&drops, 0);
    ms_oneshot *o;
    /* receiver closes last */
    CHECK_INT_EQ(ms_oneshot_new(count_drop, &o), 0);
    CHECK_INT_EQ(ms_oneshot_send(o, V(1)), 0);
    ms_oneshot_close_tx(o);
    CHECK_INT_EQ(atomic_load(&drops), 0);
    ms_oneshot_close_rx(o);
    CHECK_INT_EQ(atomic_load(&drops), 1);
    /* sender closes last */
    CHECK_INT_EQ(ms_oneshot_new(count_drop, &o), 0);
    CHECK_INT_EQ(ms_oneshot_send(o, V(1)), 0);
    ms_oneshot_close_rx(o);
    CHECK_INT_EQ(atomic_load(&drops), 1);
    ms_oneshot_close_tx(o);
    CHECK_INT_EQ(atomic_load(&drops), 2);
}

TEST(try_recv_reports_nothing_yet_then_the_value_then_closed) {
    ms_oneshot *o;
    CHECK_INT_EQ(ms_oneshot_new(NULL, &o), 0);
    void *v = NULL;
    CHECK_INT_EQ(ms_oneshot_try_recv(o, &v), MS_E_EXHAUSTED);
    CHECK_INT_EQ(ms_oneshot_send(o, V(9)), 0);
    CHECK_INT_EQ(ms_oneshot_try_recv(o, &v), 0);
    CHECK_INT_EQ(I(v), 9);
    CHECK_INT_EQ(ms_oneshot_try_recv(o, &v), MS_E_CLOSED);
    ms_oneshot_close_rx(o);
    ms_oneshot_close_tx(o);
}

/* ---- at scale ---- */

/* A task that spawns a peer; they exchange one message each way (the
 * ping_pong benchmark's shape), thousands of times in parallel. */
typedef struct pong {
    ms_oneshot *in, *out;
} pong;

static ms_poll pong_poll(ms_cx *cx, void *state) {
    pong *p = state;
    void *v;
    int rc;
    if (ms_oneshot_recv_poll(p->in, cx, &v, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc != 0)
        return ms_cx_fail(cx, rc, "pong: recv failed");
    if (ms_oneshot_send(p->out, V(I(v) + 1)) != 0)
        return ms_cx_fail(cx, MS_E_INTERNAL, "pong: send failed");
    return MS_POLL_READY;
}

static void pong_drop(void *state) {
    pong *p = state;
    ms_oneshot_close_rx(p->in);
    ms_oneshot_close_tx(p->out);
    free(p);
}

typedef struct ping {
    uintptr_t token;
    ms_oneshot *back;          /* our receiver side, after the spawn */
    _Atomic uint64_t *sum;
} ping;

static ms_poll ping_poll(ms_cx *cx, void *state) {
    ping *p = state;
    if (!p->back) {
        ms_oneshot *go, *back;
        if (ms_oneshot_new(NULL, &go) || ms_oneshot_new(NULL, &back))
            return ms_cx_fail(cx, MS_E_NO_MEMORY, "oneshot");
        pong *q = malloc(sizeof *q);
        *q = (pong){go, back};
        if (ms_spawn(ms_cx_runtime(cx), pong_poll, q, pong_drop, NULL) != 0)
            return ms_cx_fail(cx, MS_E_INTERNAL, "spawn");
        p->back = back;
        ms_oneshot_send(go, V(p->token));
        ms_oneshot_close_tx(go);
    }
    void *v;
    int rc;
    if (ms_oneshot_recv_poll(p->back, cx, &v, &rc) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    if (rc != 0)
        return ms_cx_fail(cx, rc, "ping: recv failed");
    if (I(v) != p->token + 1)
        return ms_cx_fail(cx, MS_E_INTERNAL, "ping: got %lu for %lu", (unsigned long)I(v),
                          (unsigned long)p->token);
    atomic_fetch_add(p->sum, I(v));
    return MS_POLL_READY;
}

static void ping_drop(void *state) {
    ping *p = state;
    ms_oneshot_close_rx(p->back);
}

TEST(many_ping_pongs_in_parallel_each_get_their_own_reply) {
    uint32_t n = (uint32_t)test_scaled(1000000, 5000);
    ms_runtime *rt = start(4);
    ping *ps = calloc(n, sizeof *ps);
    _Atomic uint64_t sum = 0;
    ms_task **hs = calloc(n, sizeof *hs);
    for (uint32_t i = 0; i < n; i++) {
        ps[i] = (ping){.token = i, .sum = &sum};
        CHECK_INT_EQ(ms_spawn(rt, ping_poll, &ps[i], ping_drop, &hs[i]), 0);
    }
    for (uint32_t i = 0; i < n; i++) {
        ms_error err;
        int rc = ms_task_join(hs[i], 30000, NULL, &err);
        if (rc != 0)
            fprintf(stderr, "%s\n", err.message);
        CHECK_INT_EQ(rc, 0);
        ms_task_release(hs[i]);
    }
    CHECK(atomic_load(&sum) == (uint64_t)n * (n + 1) / 2);
    free(ps);
    free(hs);
    stop(rt);
}

/* Plain threads send (or close without sending) while tasks wait, or get
 * aborted; every value sent is either received or dropped, exactly once. */
typedef struct race_slot {
    ms_oneshot *o;
    receiver r;
    ms_task *h;
    bool send;
} race_slot;

typedef struct racer {
    race_slot *slots;
    uint32_t from, to;
    _Atomic uint64_t *sent;
} racer;

static void *race_sender(void *arg) {
    racer *ra = arg;
    for (uint32_t i = ra->from; i < ra->to; i++) {
        race_slot *s = &ra->slots[i];
        if (s->send && ms_oneshot_send(s->o, V(i + 1)) == 0)
            atomic_fetch_add(ra->sent, 1);
        ms_oneshot_close_tx(s->o);
        if (i % 3 == 0)
            ms_task_abort(s->h);
    }
    return NULL;
}

TEST(senders_closers_receivers_and_aborts_race_without_loss_or_double_drop) {
    enum { THREADS = 3 };
    uint32_t n = (uint32_t)test_scaled(500000, 3000);
    ms_runtime *rt = start(4);
    atomic_store(&drops, 0);
    race_slot *slots = calloc(n, sizeof *slots);
    _Atomic uint64_t sent = 0;
    for (uint32_t i = 0; i < n; i++) {
        CHECK_INT_EQ(ms_oneshot_new(count_drop, &slots[i].o), 0);
        slots[i].r.o = slots[i].o;
        slots[i].send = i % 5 != 4;
        CHECK_INT_EQ(ms_spawn(rt, receiver_poll, &slots[i].r, receiver_drop, &slots[i].h), 0);
    }
    pthread_t th[THREADS];
    racer rs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        rs[t] = (racer){slots, t * n / THREADS, (t + 1) * n / THREADS, &sent};
        pthread_create(&th[t], NULL, race_sender, &rs[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    uint64_t received = 0;
    for (uint32_t i = 0; i < n; i++) {
        int rc = ms_task_join(slots[i].h, 30000, NULL, NULL);
        CHECK(rc == 0 || rc == MS_E_TASK_CANCELLED);
        if (rc == 0 && slots[i].r.rc == 0) {
            CHECK_INT_EQ(I(slots[i].r.value), i + 1);
            received++;
        } else if (rc == 0) {
            CHECK_INT_EQ(slots[i].r.rc, MS_E_CLOSED);
        }
        ms_task_release(slots[i].h);
    }
    CHECK_INT_EQ(received + (uint64_t)atomic_load(&drops), atomic_load(&sent));
    free(slots);
    stop(rt);
}

TEST_MAIN()
