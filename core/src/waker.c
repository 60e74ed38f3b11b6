/*
 * waker.c - operations on ms_waker values.
 *
 * A waker is a vtable and a data pointer, like Rust's RawWaker: tasks,
 * parked threads and later I/O sources all implement the same four
 * operations, so every primitive that waits stores wakers without knowing
 * what they wake.  A null waker (vtable NULL) is a valid "nothing to wake".
 */
#include "ms.h"

ms_waker ms_waker_clone(const ms_waker *w) {
    if (!w->vtable)
        return (ms_waker){0};
    return w->vtable->clone(w->data);
}

void ms_waker_wake(ms_waker *w) {
    if (w->vtable) {
        ms_waker tmp = *w;
        *w = (ms_waker){0};
        tmp.vtable->wake(tmp.data);
    }
}

void ms_waker_wake_by_ref(const ms_waker *w) {
    if (w->vtable)
        w->vtable->wake_by_ref(w->data);
}

void ms_waker_drop(ms_waker *w) {
    if (w->vtable) {
        ms_waker tmp = *w;
        *w = (ms_waker){0};
        tmp.vtable->drop(tmp.data);
    }
}

bool ms_waker_is_null(const ms_waker *w) {
    return w->vtable == NULL;
}

bool ms_waker_will_wake(const ms_waker *a, const ms_waker *b) {
    return a->vtable == b->vtable && a->data == b->data;
}

void ms_waker_store(ms_waker *slot, const ms_waker *w) {
    if (ms_waker_will_wake(slot, w))
        return;
    ms_waker_drop(slot);
    *slot = ms_waker_clone(w);
}
