/*
 * wheel.h - a hierarchical timer wheel with 1 ms resolution.
 *
 * Six levels of 64 slots: level L slot covers 64^L ms, so level 0 spans
 * 64 ms, level 1 about 4 s, level 2 about 4.4 min, up to level 5 (about
 * 2,000 years).  An entry sits at the level of the highest 6-bit digit in
 * which its deadline differs from the wheel's current time, in the slot
 * that digit names.  Insert and remove are O(1) (a doubly linked slot list
 * and a 64-bit occupancy map per level); finding the next expiry is a few
 * count-trailing-zeros; an entry moves down a level at most 5 times in its
 * life.  Why not libuv's binary heap: see docs/driver.md (measured).
 *
 * Not thread-safe: the driver guards it with its timer lock.
 */
#ifndef MS_WHEEL_H
#define MS_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define WHL_LEVELS 6
#define WHL_SLOTS 64

typedef struct whl_entry {
    struct whl_entry *prev, *next;
    uint64_t deadline;          /* ms on the wheel's clock */
    uint8_t level, slot;
    bool linked;
} whl_entry;

typedef struct wheel {
    uint64_t elapsed;           /* the wheel's current time, ms */
    uint64_t occupied[WHL_LEVELS];
    whl_entry *slots[WHL_LEVELS][WHL_SLOTS];
    uint64_t count;
} wheel;

void whl_init(wheel *w);
/* Links e with e->deadline set.  Returns false (not linked) if the
 * deadline is not after the wheel's current time: it is already due. */
bool whl_insert(wheel *w, whl_entry *e);
void whl_remove(wheel *w, whl_entry *e);
/* The earliest slot deadline of any linked entry, or UINT64_MAX.  Never
 * later than the earliest entry's deadline (it may be earlier: an entry on
 * a high level is looked at when its slot begins, then moved down). */
uint64_t whl_next(const wheel *w);
/* Advances to `now` and unlinks every entry whose deadline is <= now,
 * returning them as a list through next. */
whl_entry *whl_advance(wheel *w, uint64_t now);

#endif
