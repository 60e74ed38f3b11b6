/*
 * test_task_pool.c - recycled task blocks (task_pool.h), driven directly.
 *
 * Blocks are plain malloc'd blocks of sizeof(ms_task); the pool only links
 * them through ms_task.next.  Under AddressSanitizer the pool is off
 * (task_pool_put refuses every block, so that a use after free is still
 * caught): the tests then check only that refusal.
 */
#define _GNU_SOURCE
#include "ms.h"
#include "task.h"
#include "task_pool.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static ms_task *block(void) {
    ms_task *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    return t;
}

/* Whether this build recycles at all (not under ASan). */
static bool pool_on(void) {
    task_depot d;
    task_depot_init(&d);
    task_mag m = {0};
    ms_task *t = block();
    bool on = task_pool_put(&m, &d, t);
    if (on)
        task_pool_flush(&m, &d);
    else
        free(t);
    task_depot_destroy(&d);
    return on;
}

TEST(empty_pool_gives_nothing) {
    task_depot d;
    task_depot_init(&d);
    task_mag m = {0};
    CHECK(task_pool_get(&m, &d) == NULL);
    task_depot_destroy(&d);
}

TEST(blocks_come_back_most_recent_first) {
    if (!pool_on())
        return;
    task_depot d;
    task_depot_init(&d);
    task_mag m = {0};
    ms_task *a = block(), *b = block();
    CHECK(task_pool_put(&m, &d, a));
    CHECK(task_pool_put(&m, &d, b));
    CHECK(task_pool_get(&m, &d) == b);
    CHECK(task_pool_get(&m, &d) == a);
    CHECK(task_pool_get(&m, &d) == NULL);
    free(a);
    free(b);
    task_depot_destroy(&d);
}

/* A worker keeps two batches; the third full batch goes to the depot, where
 * another worker's magazine finds it. */
TEST(full_batches_move_through_the_depot) {
    if (!pool_on())
        return;
    task_depot d;
    task_depot_init(&d);
    task_mag giver = {0}, taker = {0};
    enum { N = 3 * TASK_POOL_BATCH };
    ms_task *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = block();
        CHECK(task_pool_put(&giver, &d, blocks[i]));
    }
    /* loaded: the third batch (full), spare: the second, depot: the first */
    CHECK_INT_EQ(d.n, 1);
    for (unsigned i = 0; i < TASK_POOL_BATCH; i++) {
        ms_task *t = task_pool_get(&taker, &d);
        CHECK(t != NULL);
        if (!t)
            break;
        /* the depot's batch is the first one given, last block first */
        CHECK(t == blocks[TASK_POOL_BATCH - 1 - i]);
    }
    CHECK_INT_EQ(d.n, 0);
    CHECK(task_pool_get(&taker, &d) == NULL);
    task_pool_flush(&giver, &d);
    CHECK_INT_EQ(d.n, 2);
    for (unsigned i = 0; i < TASK_POOL_BATCH; i++)
        free(blocks[i]);
    task_depot_destroy(&d); /* frees the giver's two batches */
}

/* Past TASK_POOL_DEPOT batches the depot refuses, and the pool frees what
 * it refused instead of keeping it. */
TEST(depot_is_bounded) {
    if (!pool_on())
        return;
    task_depot d;
    task_depot_init(&d);
    task_mag m = {0};
    long n = (long)(TASK_POOL_DEPOT + 4) * TASK_POOL_BATCH;
    for (long i = 0; i < n; i++)
        CHECK(task_pool_put(&m, &d, block()));
    CHECK_INT_EQ(d.n, TASK_POOL_DEPOT);
    CHECK(m.nloaded <= TASK_POOL_BATCH);
    task_pool_flush(&m, &d);
    CHECK_INT_EQ(d.n, TASK_POOL_DEPOT);
    CHECK(m.loaded == NULL && m.spare == NULL && m.nloaded == 0 && !m.spare_full);
    task_depot_destroy(&d);
}

/* A partial loaded chain is freed at flush, never put in the depot (whose
 * batches must be full: a magazine that takes one trusts its count). */
TEST(flush_keeps_only_full_batches) {
    if (!pool_on())
        return;
    task_depot d;
    task_depot_init(&d);
    task_mag m = {0}, other = {0};
    for (unsigned i = 0; i < TASK_POOL_BATCH + 5; i++)
        CHECK(task_pool_put(&m, &d, block()));
    task_pool_flush(&m, &d);
    CHECK_INT_EQ(d.n, 1);
    unsigned got = 0;
    ms_task *t;
    ms_task *held[TASK_POOL_BATCH];
    while ((t = task_pool_get(&other, &d)) && got < TASK_POOL_BATCH)
        held[got++] = t;
    CHECK(t == NULL);
    CHECK_INT_EQ(got, TASK_POOL_BATCH);
    for (unsigned i = 0; i < got; i++)
        free(held[i]);
    task_depot_destroy(&d);
}

/* Four threads, each with its own magazine, share one depot and pass
 * blocks around: every block is held by one thread at a time (each holder
 * stamps it and checks the stamp is still its own before giving it back). */
enum { THREADS = 4, HELD = 300 };
static task_depot shared;
static atomic_int stamp_clashes;

static void *churn(void *arg) {
    long me = (long)(intptr_t)arg + 1;
    task_mag m = {0};
    ms_task *held[HELD];
    long rounds = test_scaled(2000, 50);
    for (long r = 0; r < rounds; r++) {
        int n = 0;
        for (; n < HELD; n++) {
            ms_task *t = task_pool_get(&m, &shared);
            if (!t)
                t = block();
            held[n] = t;
            t->id = (uint64_t)me;
        }
        for (int i = 0; i < n; i++) {
            if (held[i]->id != (uint64_t)me)
                atomic_fetch_add(&stamp_clashes, 1);
            if (!task_pool_put(&m, &shared, held[i]))
                free(held[i]);
        }
    }
    task_pool_flush(&m, &shared);
    return NULL;
}

TEST(threads_share_one_depot) {
    task_depot_init(&shared);
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, churn, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_INT_EQ(atomic_load(&stamp_clashes), 0);
    CHECK(shared.n <= TASK_POOL_DEPOT);
    task_depot_destroy(&shared);
}

TEST_MAIN()
