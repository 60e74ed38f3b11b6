/*
 * inject.h - the injection queue: an unbounded FIFO for tasks scheduled
 * from outside the workers and for local-queue overflow.
 *
 * A mutex-protected intrusive list (through ms_task.next) plus an atomic
 * length so that workers can see "empty" without taking the lock.  Once
 * closed (at shutdown) it refuses pushes, so a late wake can never strand a
 * task in a queue nobody drains.
 */
#ifndef MS_INJECT_H
#define MS_INJECT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

typedef struct inj {
    pthread_mutex_t lock;
    ms_task *head, *tail;       /* under lock */
    bool closed;                /* under lock */
    /* Written under lock (release), read without it (acquire) as a hint. */
    _Atomic uint64_t len;
} inj;

void inj_init(inj *q);
void inj_destroy(inj *q);
/* false when closed: the caller still owns the task. */
bool inj_push(inj *q, ms_task *t);
/* Pushes a chain first..last of n tasks linked through next. */
bool inj_push_batch(inj *q, ms_task *first, ms_task *last, uint64_t n);
ms_task *inj_pop(inj *q);
/* Pops up to max tasks, returned as a chain through next; *n gets the
 * count. */
ms_task *inj_pop_batch(inj *q, uint64_t max, uint64_t *n);
uint64_t inj_len(inj *q);
/* Closes and returns everything still queued, as a chain. */
ms_task *inj_close(inj *q);

#endif
