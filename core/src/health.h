/*
 * health.h - the health monitor: reports workers stuck in one poll.
 */
#ifndef MS_HEALTH_H
#define MS_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"
#include "park.h"

typedef struct health {
    ms_runtime *rt;             /* immutable */
    uint64_t threshold_ms;      /* immutable; 0 = no monitor */
    uint64_t interval_ms;       /* immutable */
    pthread_t thread;
    bool started;
    park parker;                /* unparked to stop */
    _Atomic bool stop;
    _Atomic uint64_t stalls_total;
    _Atomic uint64_t replacements_total; /* stand-ins brought in */
    /* Monitor thread only, max_workers long: what each worker was doing at
     * the last look, and whether its stall was reported / replaced. */
    uint64_t *last_polls, *last_task, *since_ms;
    bool *reported, *replaced;
} health;

int hlth_start(health *h, ms_runtime *rt, ms_error *err);
void hlth_stop(health *h);

#endif
