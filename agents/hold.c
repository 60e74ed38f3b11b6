/*
 * hold.c - C objects on their way into a Lua state (see hold.h).
 */
#include "hold.h"

#include <stddef.h>

/* Enough for the deepest nesting (a message holding a handle holding its
 * userdata) many times over: entries left by raises that a pcall caught
 * in the same poll pile up below the live ones until the poll ends. */
#define HOLD_MAX 32

typedef struct held {
    void *p;
    void (*release)(void *);
} held;

static __thread held holds[HOLD_MAX];
static __thread int nholds;

void hold_push(void *p, void (*release)(void *)) {
    if (nholds == HOLD_MAX) {
        /* Full of what raises left: the oldest half is surely stale (the
         * live holds are the few on top), so release it now. */
        int half = HOLD_MAX / 2;
        for (int i = 0; i < half; i++)
            holds[i].release(holds[i].p);
        for (int i = half; i < HOLD_MAX; i++)
            holds[i - half] = holds[i];
        nholds -= half;
    }
    holds[nholds].p = p;
    holds[nholds].release = release;
    nholds++;
}

void hold_pop(void *p) {
    for (int i = nholds - 1; i >= 0; i--) {
        if (holds[i].p != p)
            continue;
        for (int j = i + 1; j < nholds; j++)
            holds[j - 1] = holds[j];
        nholds--;
        return;
    }
}

void hold_release_all(void) {
    while (nholds > 0) {
        nholds--;
        holds[nholds].release(holds[nholds].p);
    }
}
