/*
 * test_wheel.c - the timer wheel fires every entry exactly at the first
 * advance that reaches its deadline: never early, never skipped.
 */
#include <stdlib.h>

#include "test.h"
#include "wheel.h"

TEST(an_entry_fires_at_its_deadline_not_before) {
    wheel w;
    whl_init(&w);
    whl_entry e = {.deadline = 10};
    CHECK(whl_insert(&w, &e));
    CHECK(whl_advance(&w, 9) == NULL);
    CHECK(whl_advance(&w, 10) == &e);
    CHECK(!e.linked);
    CHECK_INT_EQ(w.count, 0);
}

TEST(a_deadline_already_reached_is_refused_as_due) {
    wheel w;
    whl_init(&w);
    whl_advance(&w, 100);
    whl_entry e = {.deadline = 100};
    CHECK(!whl_insert(&w, &e));
    e.deadline = 101;
    CHECK(whl_insert(&w, &e));
}

TEST(next_is_never_after_the_earliest_deadline) {
    wheel w;
    whl_init(&w);
    whl_entry a = {.deadline = 5000}, b = {.deadline = 70};
    whl_insert(&w, &a);
    CHECK(whl_next(&w) <= 5000);
    whl_insert(&w, &b);
    CHECK(whl_next(&w) <= 70);
    whl_remove(&w, &b);
    CHECK(whl_next(&w) <= 5000);
    whl_remove(&w, &a);
    CHECK(whl_next(&w) == UINT64_MAX);
}

TEST(far_deadlines_cascade_down_and_fire_on_time) {
    wheel w;
    whl_init(&w);
    uint64_t deadlines[] = {63, 64, 65, 4095, 4096, 4097, 262143, 262144, 262145,
                            16777216ull + 3, 1073741824ull * 5 + 7};
    enum { N = sizeof deadlines / sizeof *deadlines };
    whl_entry e[N];
    for (int i = 0; i < N; i++) {
        e[i] = (whl_entry){.deadline = deadlines[i]};
        CHECK(whl_insert(&w, &e[i]));
    }
    /* Jump from next expiry to next expiry, as the driver does. */
    int fired = 0;
    uint64_t now = 0;
    while (fired < N) {
        uint64_t next = whl_next(&w);
        CHECK(next != UINT64_MAX);
        if (next > now)
            now = next;
        for (whl_entry *d = whl_advance(&w, now); d; d = d->next) {
            CHECK_INT_EQ(d->deadline, now);
            fired++;
        }
    }
}

TEST(random_entries_fire_exactly_once_at_the_first_advance_past_them) {
    srand(7);
    enum { N = 20000 };
    wheel w;
    whl_init(&w);
    whl_entry *e = calloc(N, sizeof *e);
    uint64_t *fired_at = calloc(N, sizeof *fired_at);
    uint64_t now = 0;
    int live = 0;
    for (int i = 0; i < N; i++) {
        uint64_t span = (rand() % 4 == 0) ? 300000 : 2000;
        e[i].deadline = now + 1 + (uint64_t)rand() % span;
        CHECK(whl_insert(&w, &e[i]));
        live++;
        /* Remove some again, as cancelled timers do. */
        if (i % 10 == 3) {
            whl_remove(&w, &e[i]);
            fired_at[i] = UINT64_MAX;
            live--;
        }
        if (i % 50 == 0) {
            uint64_t prev = now;
            now += (uint64_t)rand() % 700;
            for (whl_entry *d = whl_advance(&w, now); d; d = d->next) {
                long k = d - e;
                CHECK(fired_at[k] == 0);
                CHECK(d->deadline <= now && d->deadline > prev);
                fired_at[k] = now;
                live--;
            }
        }
    }
    while (live > 0) {
        uint64_t prev = now;
        uint64_t next = whl_next(&w);
        CHECK(next != UINT64_MAX);
        now = next > now + 997 ? now + 997 : (next > now ? next : now + 1);
        for (whl_entry *d = whl_advance(&w, now); d; d = d->next) {
            long k = d - e;
            CHECK(fired_at[k] == 0);
            CHECK(d->deadline <= now && d->deadline > prev);
            fired_at[k] = now;
            live--;
        }
    }
    CHECK_INT_EQ(w.count, 0);
    for (int i = 0; i < N; i++)
        CHECK(fired_at[i] != 0);
    free(e);
    free(fired_at);
}

TEST_MAIN()
