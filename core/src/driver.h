/*
 * driver.h - the driver thread: a libuv loop for I/O and signals, and the
 * timer wheel.
 *
 * Who may touch what:
 *   - The uv loop and every uv handle: the driver thread only.
 *   - The submission queue (ops): any thread, under `lock`; a submit ends
 *     with uv_async_send, the one thread-safe libuv call, which wakes the
 *     loop to run the ops in FIFO order.
 *   - The wheel and every timer's wheel entry and waker: any thread, under
 *     `tlock`.  A timer whose deadline is earlier than the one the driver
 *     sleeps towards (`next_wake`, under tlock) pokes the loop.
 * Wakes from the driver thread are wakes from a foreign thread: tasks go to
 * the injection queue.
 */
#ifndef MS_DRIVER_H
#define MS_DRIVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ms.h"
#include "wheel.h"

typedef struct driver driver;

/* A unit of work for the driver thread, embedded in the object it acts on.
 * `queued` (under the driver lock) keeps an op from being queued twice. */
typedef struct drv_op {
    struct drv_op *next;
    void (*fn)(driver *d, struct drv_op *op);
    bool queued;
} drv_op;

struct driver {
    ms_runtime *rt;             /* immutable */
    bool time, io;              /* immutable: what is enabled */
    uint64_t start_ns;          /* immutable: the wheel's clock origin */

    /* Driver thread only. */
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t tick;

    pthread_t thread;
    bool started;               /* written before the thread starts / after join */

    pthread_mutex_t lock;
    pthread_cond_t done_cond;   /* signalled when the thread finished */
    drv_op *head, *tail;        /* under lock */
    bool stopping;              /* under lock: no more ops accepted */
    bool finished;              /* under lock: the thread has left the loop */

    pthread_mutex_t tlock;
    wheel wheel;                /* under tlock */
    uint64_t next_wake;         /* under tlock: wheel ms the driver sleeps to */
    _Atomic uint64_t timers_fired;
    _Atomic uint64_t timers_active;
    /* Listeners (listen.c): accepts that failed for want of descriptors
     * or memory, and the pauses that followed. */
    _Atomic uint64_t accept_errors, accept_pauses;

    /* The HTTP client (http_client.c): its libcurl multi handle, created
     * on the first request.  Driver thread only. */
    struct httpc *http;
    bool http_stopped;          /* driver thread only: httpc_stop ran */
    /* Its connections open now and opened in all (any thread, relaxed). */
    _Atomic uint64_t http_conns_open, http_conns_opened;
};

int drv_init(driver *d, ms_runtime *rt, const ms_config *cfg, ms_error *err);
int drv_start(driver *d, ms_error *err);
/* Runs what is queued, closes every handle and joins the thread. */
void drv_stop(driver *d);
void drv_destroy(driver *d);

/* Queues op for the driver thread.  Returns false when the driver has
 * stopped (after drv_stop began): the op will never run, and the caller
 * may then touch its handle's memory only after drv_wait_finished. */
bool drv_submit(driver *d, drv_op *op);
void drv_wait_finished(driver *d);
/* Pokes the loop so it re-reads the wheel (tlock not held). */
void drv_poke(driver *d);

/* Wheel time: ms since start_ns, rounded down (now) or up (deadlines), so a
 * timer is never due before its deadline. */
uint64_t drv_now_ms(const driver *d);
uint64_t drv_deadline_ms(const driver *d, uint64_t deadline_ns);

/* The runtime's driver, or NULL with err set (MS_E_NOT_ENABLED) if the
 * runtime was built without `what` ("time" or "io"). */
driver *drv_of(ms_runtime *rt, bool need_time, bool need_io, const char *what, ms_error *err);

#endif
