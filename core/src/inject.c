/*
 * inject.c - the injection queue; see inject.h.
 */
#include "inject.h"

#include "task.h"

void inj_init(inj *q) {
    pthread_mutex_init(&q->lock, NULL);
    q->head = q->tail = NULL;
    q->closed = false;
    atomic_init(&q->len, 0);
}

void inj_destroy(inj *q) {
    pthread_mutex_destroy(&q->lock);
}

bool inj_push_batch(inj *q, ms_task *first, ms_task *last, uint64_t n) {
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) + n,
                          memory_order_release);
    pthread_mutex_unlock(&q->lock);
    return true;
}

bool inj_push(inj *q, ms_task *t) {
    return inj_push_batch(q, t, t, 1);
}

ms_task *inj_pop_batch(inj *q, uint64_t max, uint64_t *n) {
    *n = 0;
    if (max == 0 || atomic_load_explicit(&q->len, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&q->lock);
    ms_task *first = q->head, *t = first, *last = NULL;
    uint64_t k = 0;
    while (t && k < max) {
        last = t;
        t = t->next;
        k++;
    }
    if (k > 0) {
        q->head = t;
        if (!t)
            q->tail = NULL;
        last->next = NULL;
        atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) - k,
                              memory_order_release);
    }
    pthread_mutex_unlock(&q->lock);
    *n = k;
    return k ? first : NULL;
}

ms_task *inj_pop(inj *q) {
    uint64_t n;
    return inj_pop_batch(q, 1, &n);
}

uint64_t inj_len(inj *q) {
    return atomic_load_explicit(&q->len, memory_order_acquire);
}

ms_task *inj_close(inj *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    ms_task *all = q->head;
    q->head = q->tail = NULL;
    atomic_store_explicit(&q->len, 0, memory_order_release);
    pthread_mutex_unlock(&q->lock);
    return all;
}
