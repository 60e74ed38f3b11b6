/*
 * signal.c - signal watchers on the driver's loop.
 *
 * The uv_signal_t lives on the driver thread: creating, starting and
 * closing it are ops submitted to the driver.  Deliveries are counted under
 * the watcher's lock and the stored waker is woken after unlocking.  The
 * watcher's memory belongs to the driver from ms_signal_free until the
 * handle's close callback.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "runtime.h"

struct ms_signal {
    driver *d;                  /* immutable */
    int signum;                 /* immutable */
    uv_signal_t handle;         /* driver thread only */
    bool handle_live;           /* driver thread only */
    drv_op op_start, op_close;
    pthread_mutex_t lock;
    uint64_t count;             /* under lock: deliveries not yet polled */
    int start_error;            /* under lock: uv error from starting */
    ms_waker waker;             /* under lock */
};

static void sig_free_memory(ms_signal *s) {
    ms_waker_drop(&s->waker);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void sig_wake(ms_signal *s) {
    pthread_mutex_lock(&s->lock);
    ms_waker w = ms_waker_clone(&s->waker);
    pthread_mutex_unlock(&s->lock);
    ms_waker_wake(&w);
}

static void sig_cb(uv_signal_t *h, int signum) {
    ms_signal *s = h->data;
    pthread_mutex_lock(&s->lock);
    s->count++;
    pthread_mutex_unlock(&s->lock);
    sig_wake(s);
}

static void op_start(driver *d, drv_op *op) {
    ms_signal *s = (ms_signal *)((char *)op - offsetof(ms_signal, op_start));
    int rc = uv_signal_init(&d->loop, &s->handle);
    if (rc == 0) {
        s->handle.data = s;
        s->handle_live = true;
        rc = uv_signal_start(&s->handle, sig_cb, s->signum);
    }
    if (rc != 0) {
        pthread_mutex_lock(&s->lock);
        s->start_error = rc;
        pthread_mutex_unlock(&s->lock);
        sig_wake(s);
    }
}

static void close_cb(uv_handle_t *h) {
    sig_free_memory(h->data);
}

static void op_close(driver *d, drv_op *op) {
    ms_signal *s = (ms_signal *)((char *)op - offsetof(ms_signal, op_close));
    if (s->handle_live && !uv_is_closing((uv_handle_t *)&s->handle))
        uv_close((uv_handle_t *)&s->handle, close_cb);
    else if (!s->handle_live)
        sig_free_memory(s);
    /* else: the driver's shutdown walk is closing it without a callback;
     * that cannot happen here because ops run before the walk. */
}

int ms_signal_new(ms_runtime *rt, int signum, ms_signal **out, ms_error *err) {
    driver *d = drv_of(rt, false, true, "a signal watcher", err);
    if (!d)
        return MS_E_NOT_ENABLED;
    if (signum <= 0 || signum >= NSIG || signum == SIGKILL || signum == SIGSTOP)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "signal %d cannot be watched (allowed: 1..%d except SIGKILL, SIGSTOP)",
                            signum, NSIG - 1);
    ms_signal *s = calloc(1, sizeof *s);
    if (!s)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a signal watcher");
    s->d = d;
    s->signum = signum;
    pthread_mutex_init(&s->lock, NULL);
    s->op_start.fn = op_start;
    s->op_close.fn = op_close;
    if (!drv_submit(d, &s->op_start)) {
        sig_free_memory(s);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = s;
    return 0;
}

ms_poll ms_signal_poll(ms_signal *s, ms_cx *cx, uint64_t *count) {
    pthread_mutex_lock(&s->lock);
    if (s->count > 0 || s->start_error) {
        if (count)
            *count = s->count;
        s->count = 0;
        pthread_mutex_unlock(&s->lock);
        return MS_POLL_READY;
    }
    ms_waker_store(&s->waker, ms_cx_waker(cx));
    pthread_mutex_unlock(&s->lock);
    return MS_POLL_PENDING;
}

void ms_signal_free(ms_signal *s) {
    if (!s)
        return;
    if (!drv_submit(s->d, &s->op_close)) {
        /* The driver stopped: it closed the handle (or never opened it);
         * once its thread is done the memory is ours again. */
        drv_wait_finished(s->d);
        sig_free_memory(s);
    }
}
