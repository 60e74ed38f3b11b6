/*
 * task_pool.c - recycled task blocks; see task_pool.h for why and how much.
 */
#include "task_pool.h"

#include <stdlib.h>

#include "task.h"

#if defined(__SANITIZE_ADDRESS__)
#define TASK_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TASK_POOL_OFF 1
#endif
#endif

void task_depot_init(task_depot *d) {
    pthread_mutex_init(&d->lock, NULL);
    d->n = 0;
}

static void free_chain(ms_task *t) {
    while (t) {
        ms_task *next = t->next;
        free(t);
        t = next;
    }
}

void task_depot_destroy(task_depot *d) {
    for (uint32_t i = 0; i < d->n; i++)
        free_chain(d->batches[i]);
    d->n = 0;
    pthread_mutex_destroy(&d->lock);
}

/* A full batch to the depot, or to free() if the depot is full. */
static void depot_give(task_depot *d, ms_task *batch) {
    bool taken = false;
    pthread_mutex_lock(&d->lock);
    if (d->n < TASK_POOL_DEPOT) {
        d->batches[d->n++] = batch;
        taken = true;
    }
    pthread_mutex_unlock(&d->lock);
    if (!taken)
        free_chain(batch);
}

ms_task *task_pool_get(task_mag *m, task_depot *d) {
#ifdef TASK_POOL_OFF
    (void)m;
    (void)d;
    return NULL;
#else
    if (m->nloaded == 0) {
        if (m->spare_full) {
            m->loaded = m->spare;
            m->spare = NULL;
            m->spare_full = false;
        } else {
            pthread_mutex_lock(&d->lock);
            if (d->n > 0)
                m->loaded = d->batches[--d->n];
            pthread_mutex_unlock(&d->lock);
            if (!m->loaded)
                return NULL;
        }
        m->nloaded = TASK_POOL_BATCH;
    }
    ms_task *t = m->loaded;
    m->loaded = t->next;
    m->nloaded--;
    return t;
#endif
}

bool task_pool_put(task_mag *m, task_depot *d, ms_task *t) {
#ifdef TASK_POOL_OFF
    (void)m;
    (void)d;
    (void)t;
    return false;
#else
    if (m->nloaded == TASK_POOL_BATCH) {
        /* The loaded chain is full: it becomes the spare, and a spare
         * that was full already goes to the depot. */
        if (m->spare_full)
            depot_give(d, m->spare);
        m->spare = m->loaded;
        m->spare_full = true;
        m->loaded = NULL;
        m->nloaded = 0;
    }
    t->next = m->loaded;
    m->loaded = t;
    m->nloaded++;
    return true;
#endif
}

void task_pool_flush(task_mag *m, task_depot *d) {
    if (m->spare_full)
        depot_give(d, m->spare);
    if (m->nloaded == TASK_POOL_BATCH)
        depot_give(d, m->loaded);
    else
        free_chain(m->loaded);
    m->loaded = m->spare = NULL;
    m->nloaded = 0;
    m->spare_full = false;
}
