/*
 * test_mailbox.c - the agents' lock-free mailbox (agents/mailbox.c) on its
 * own: FIFO, limits, close, and a stress run of several producer threads
 * against one consumer that checks nothing is lost or duplicated and each
 * producer's links arrive in the order it pushed them.  Run under
 * ThreadSanitizer by ./dev test --sanitize thread.
 */
#include <pthread.h>
#include <sched.h>

#include "../../core/test/test.h"
#include "../mailbox.h"

typedef struct item {
    mlink link;                 /* first */
    int producer;
    long seq;
} item;

TEST(pops_in_push_order_and_counts) {
    mailbox mb;
    mbox_init(&mb);
    item it[5];
    CHECK(mbox_pop(&mb) == NULL);
    for (int i = 0; i < 5; i++) {
        it[i].seq = i;
        CHECK_INT_EQ(mbox_push(&mb, &it[i].link, 0), MBOX_OK);
    }
    CHECK_INT_EQ(mbox_len(&mb), 5);
    for (int i = 0; i < 5; i++) {
        item *got = (item *)mbox_pop(&mb);
        CHECK(got != NULL);
        CHECK_INT_EQ(got->seq, i);
    }
    CHECK(mbox_pop(&mb) == NULL);
    CHECK_INT_EQ(mbox_len(&mb), 0);
    CHECK_INT_EQ(mbox_popped(&mb), 5);
    /* Reused after draining (the stub went back in). */
    CHECK_INT_EQ(mbox_push(&mb, &it[0].link, 0), MBOX_OK);
    CHECK(mbox_pop(&mb) == &it[0].link);
}

TEST(refuses_past_the_limit_and_after_close) {
    mailbox mb;
    mbox_init(&mb);
    item it[4];
    CHECK_INT_EQ(mbox_push(&mb, &it[0].link, 2), MBOX_OK);
    CHECK_INT_EQ(mbox_push(&mb, &it[1].link, 2), MBOX_OK);
    CHECK_INT_EQ(mbox_push(&mb, &it[2].link, 2), MBOX_FULL);
    CHECK_INT_EQ(mbox_len(&mb), 2);
    CHECK(mbox_pop(&mb) == &it[0].link);
    CHECK_INT_EQ(mbox_push(&mb, &it[2].link, 2), MBOX_OK);
    /* Close reports what was accepted and not received. */
    CHECK_INT_EQ(mbox_close(&mb), 2);
    CHECK(mbox_closed(&mb));
    CHECK_INT_EQ(mbox_push(&mb, &it[3].link, 0), MBOX_CLOSED);
    /* What was accepted is still there for the owner to free. */
    CHECK(mbox_pop(&mb) == &it[1].link);
    CHECK(mbox_pop(&mb) == &it[2].link);
    CHECK(mbox_pop(&mb) == NULL);
}

enum { PRODUCERS = 4 };

typedef struct stress {
    mailbox mb;
    long per;
    item *items[PRODUCERS];
    _Atomic int started;
} stress;

typedef struct producer_arg {
    stress *s;
    int id;
} producer_arg;

static void *producer(void *p) {
    producer_arg *pa = p;
    stress *s = pa->s;
    atomic_fetch_add(&s->started, 1);
    for (long i = 0; i < s->per; i++) {
        item *it = &s->items[pa->id][i];
        it->producer = pa->id;
        it->seq = i;
        if (mbox_push(&s->mb, &it->link, 0) != MBOX_OK)
            abort();
        if ((i & 1023) == 0)
            sched_yield(); /* vary the interleavings */
    }
    return NULL;
}

TEST(producers_lose_nothing_and_keep_their_order) {
    stress s;
    mbox_init(&s.mb);
    s.per = test_scaled(200000, 2000);
    atomic_init(&s.started, 0);
    for (int p = 0; p < PRODUCERS; p++) {
        s.items[p] = calloc((size_t)s.per, sizeof(item));
        CHECK(s.items[p] != NULL);
    }
    pthread_t th[PRODUCERS];
    producer_arg pa[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        pa[p] = (producer_arg){&s, p};
        CHECK_INT_EQ(pthread_create(&th[p], NULL, producer, &pa[p]), 0);
    }
    long next[PRODUCERS] = {0};
    long total = s.per * PRODUCERS, got = 0;
    while (got < total) {
        item *it = (item *)mbox_pop(&s.mb);
        if (!it) {
            sched_yield();
            continue;
        }
        CHECK(it->producer >= 0 && it->producer < PRODUCERS);
        /* In order per producer: also proves no duplicate and no loss. */
        CHECK_INT_EQ(it->seq, next[it->producer]);
        next[it->producer]++;
        got++;
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    CHECK(mbox_pop(&s.mb) == NULL);
    CHECK_INT_EQ(mbox_len(&s.mb), 0);
    CHECK_INT_EQ(mbox_popped(&s.mb), total);
    for (int p = 0; p < PRODUCERS; p++)
        free(s.items[p]);
}

typedef struct closing_arg {
    stress *s;
    int id;
    long accepted;
} closing_arg;

/* Pushes until refused; counts what was accepted. */
static void *closing_producer(void *p) {
    closing_arg *ca = p;
    stress *s = ca->s;
    atomic_fetch_add(&s->started, 1);
    for (long i = 0; i < s->per; i++) {
        item *it = &s->items[ca->id][i];
        it->producer = ca->id;
        it->seq = i;
        if (mbox_push(&s->mb, &it->link, 0) != MBOX_OK)
            break;
        ca->accepted++;
    }
    return NULL;
}

/* Close while producers push: every push is either refused or counted in
 * the figure close returns, and what close counted can still be popped. */
TEST(close_counts_exactly_what_was_accepted) {
    for (int round = 0; round < 20; round++) {
        stress s;
        mbox_init(&s.mb);
        s.per = test_scaled(20000, 500);
        atomic_init(&s.started, 0);
        for (int p = 0; p < PRODUCERS; p++)
            s.items[p] = calloc((size_t)s.per, sizeof(item));
        pthread_t th[PRODUCERS];
        closing_arg ca[PRODUCERS];
        for (int p = 0; p < PRODUCERS; p++) {
            ca[p] = (closing_arg){&s, p, 0};
            pthread_create(&th[p], NULL, closing_producer, &ca[p]);
        }
        long popped = 0;
        while (atomic_load(&s.started) < PRODUCERS || popped < 50 * (round + 1)) {
            if (mbox_pop(&s.mb))
                popped++;
        }
        size_t unread = mbox_close(&s.mb);
        long accepted = 0;
        for (int p = 0; p < PRODUCERS; p++) {
            pthread_join(th[p], NULL);
            accepted += ca[p].accepted;
        }
        size_t left = 0;
        while (mbox_pop(&s.mb))
            left++;
        CHECK_INT_EQ(unread, left);
        CHECK_INT_EQ(accepted, popped + (long)left);
        for (int p = 0; p < PRODUCERS; p++)
            free(s.items[p]);
    }
}

TEST_MAIN()
