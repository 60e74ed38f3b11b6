/*
 * idle.c - sleeper and searcher accounting; see idle.h for the rules.
 */
#include "idle.h"

#include <stdlib.h>

#define UNPARK_ONE (1u << 16)
#define SEARCH_MASK 0xffffu

int idle_init(idle *d, uint32_t max, uint32_t nactive) {
    atomic_init(&d->state, nactive << 16);
    atomic_init(&d->nactive, nactive);
    pthread_mutex_init(&d->lock, NULL);
    d->sleepers = calloc(max, sizeof *d->sleepers);
    d->asleep = calloc(max, sizeof *d->asleep);
    d->nsleepers = 0;
    if (!d->sleepers || !d->asleep) {
        idle_destroy(d);
        return -1;
    }
    return 0;
}

void idle_destroy(idle *d) {
    free(d->sleepers);
    free(d->asleep);
    d->sleepers = NULL;
    d->asleep = NULL;
    pthread_mutex_destroy(&d->lock);
}

bool idle_try_search(idle *d) {
    uint32_t s = atomic_load(&d->state);
    for (;;) {
        if (2 * (s & SEARCH_MASK) >= atomic_load(&d->nactive))
            return false;
        if (atomic_compare_exchange_weak(&d->state, &s, s + 1))
            return true;
    }
}

bool idle_stop_search(idle *d) {
    uint32_t prev = atomic_fetch_sub(&d->state, 1);
    return (prev & SEARCH_MASK) == 1;
}

bool idle_to_parked(idle *d, uint32_t i, bool searching) {
    pthread_mutex_lock(&d->lock);
    uint32_t dec = UNPARK_ONE + (searching ? 1 : 0);
    uint32_t prev = atomic_fetch_sub(&d->state, dec);
    d->sleepers[d->nsleepers++] = i;
    d->asleep[i] = true;
    pthread_mutex_unlock(&d->lock);
    return searching && (prev & SEARCH_MASK) == 1;
}

bool idle_should_wake(idle *d) {
    uint32_t s = atomic_load(&d->state);
    return (s & SEARCH_MASK) == 0 && (s >> 16) < atomic_load(&d->nactive);
}

int idle_claim_sleeper(idle *d) {
    pthread_mutex_lock(&d->lock);
    int who = -1;
    /* Re-check under the lock: another notifier may have got here first. */
    if (idle_should_wake(d) && d->nsleepers > 0) {
        /* The most recent sleeper that is still active (its caches are
         * the warmest); a retired one would only pass the wake-up on. */
        uint32_t active = atomic_load(&d->nactive);
        uint32_t k = d->nsleepers;
        while (k > 0 && d->sleepers[k - 1] >= active)
            k--;
        if (k > 0) {
            who = (int)d->sleepers[k - 1];
            d->sleepers[k - 1] = d->sleepers[--d->nsleepers];
            d->asleep[who] = false;
            atomic_fetch_add(&d->state, UNPARK_ONE + 1);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return who;
}

bool idle_was_claimed(idle *d, uint32_t i) {
    pthread_mutex_lock(&d->lock);
    bool claimed = !d->asleep[i];
    pthread_mutex_unlock(&d->lock);
    return claimed;
}

bool idle_unregister(idle *d, uint32_t i) {
    pthread_mutex_lock(&d->lock);
    bool was = d->asleep[i];
    if (was) {
        for (uint32_t k = 0; k < d->nsleepers; k++) {
            if (d->sleepers[k] == i) {
                d->sleepers[k] = d->sleepers[--d->nsleepers];
                break;
            }
        }
        d->asleep[i] = false;
        atomic_fetch_add(&d->state, UNPARK_ONE);
    }
    pthread_mutex_unlock(&d->lock);
    return was;
}

bool idle_retire(idle *d, bool searching) {
    uint32_t prev = atomic_fetch_sub(&d->state, UNPARK_ONE + (searching ? 1 : 0));
    return searching && (prev & SEARCH_MASK) == 1;
}

void idle_activate(idle *d) {
    atomic_fetch_add(&d->state, UNPARK_ONE + 1);
}

void idle_set_active(idle *d, uint32_t n) {
    atomic_store(&d->nactive, n);
}

uint32_t idle_num_searching(idle *d) {
    return atomic_load(&d->state) & SEARCH_MASK;
}

uint32_t idle_num_unparked(idle *d) {
    return atomic_load(&d->state) >> 16;
}
