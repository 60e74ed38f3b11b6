/*
 * runtime.h - the runtime object that ties the subsystems together.
 */
#ifndef MS_RUNTIME_H
#define MS_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blocking.h"
#include "driver.h"
#include "health.h"
#include "ms.h"
#include "owned.h"
#include "sched.h"

struct ms_runtime {
    ms_config cfg;              /* immutable after new; thread_name points into name */
    char name[16];
    uint64_t start_ns;          /* immutable */
    sched sched;
    own owned;
    blk_pool blocking;
    driver *driver;             /* NULL unless time or I/O is enabled */
    health health;

    /* Counters for rare paths, any thread, relaxed. */
    _Atomic uint64_t remote_spawned;
    _Atomic uint64_t failed;
    _Atomic uint64_t cancelled;

    /* Set (release) when shutdown begins; block_on checks it. */
    _Atomic bool closing;

    /* Under shutdown_lock: shutdown runs once; later calls get its result. */
    pthread_mutex_t shutdown_lock;
    bool shut_down;
    int shutdown_rc;
    ms_shutdown_report report;
    bool leak;                  /* threads outlived shutdown: never free */
};

/* Marks the calling thread as belonging to rt (blocking threads). */
void rt_set_current(ms_runtime *rt);

#endif
