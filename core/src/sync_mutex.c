/*
 * sync_mutex.c - the async mutex (ms_mutex): a semaphore with one permit.
 *
 * The semaphore already has every property the mutex needs: strict FIFO,
 * release hands the permit straight to the head waiter (no barging, so a
 * task cannot re-take the lock ahead of one that waits), cancellation that
 * passes on a lock granted but never observed, and the happens-before from
 * a release to the acquire that gets the permit.  So an ms_mutex *is* an
 * ms_sem created with one permit: the handle is the semaphore's pointer
 * under another type, never dereferenced as anything else, and each
 * function forwards.  The cost is that of the semaphore: one CAS to lock
 * and one to unlock when uncontended.
 */
#include "ms.h"

static inline ms_sem *mutex_sem(ms_mutex *m) {
    return (ms_sem *)(void *)m;
}

int ms_mutex_new(ms_mutex **out) {
    if (!out)
        return MS_E_INVALID_ARGUMENT;
    ms_sem *s = NULL;
    int rc = ms_sem_new(1, &s);
    if (rc == 0)
        *out = (ms_mutex *)(void *)s;
    return rc;
}

ms_mutex *ms_mutex_ref(ms_mutex *m) {
    ms_sem_ref(mutex_sem(m));
    return m;
}

void ms_mutex_unref(ms_mutex *m) {
    if (m)
        ms_sem_unref(mutex_sem(m));
}

void ms_mutex_waiter_init(ms_mutex_waiter *w) {
    ms_sem_waiter_init(w, 1);
}

ms_poll ms_mutex_lock_poll(ms_mutex *m, ms_mutex_waiter *w, ms_cx *cx) {
    int rc = 0;
    /* The semaphore is never closed, so ready always means locked. */
    return ms_sem_acquire_poll(mutex_sem(m), w, cx, &rc);
}

bool ms_mutex_try_lock(ms_mutex *m) {
    return ms_sem_try_acquire(mutex_sem(m), 1) == 0;
}

void ms_mutex_unlock(ms_mutex *m) {
    ms_sem_release(mutex_sem(m), 1);
}

bool ms_mutex_is_locked(ms_mutex *m) {
    return ms_sem_available(mutex_sem(m)) == 0;
}

void ms_mutex_waiter_cancel(ms_mutex *m, ms_mutex_waiter *w) {
    ms_sem_waiter_cancel(mutex_sem(m), w);
}
