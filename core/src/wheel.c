/*
 * wheel.c - the hierarchical timer wheel; see wheel.h.
 */
#include "wheel.h"

#include <string.h>

#define SLOT_BITS 6
#define SLOT_MASK 63u

void whl_init(wheel *w) {
    memset(w, 0, sizeof *w);
}

static unsigned level_for(uint64_t elapsed, uint64_t deadline) {
    uint64_t diff = (elapsed ^ deadline) | SLOT_MASK;
    unsigned top = 63u - (unsigned)__builtin_clzll(diff);
    unsigned level = top / SLOT_BITS;
    return level < WHL_LEVELS ? level : WHL_LEVELS - 1;
}

bool whl_insert(wheel *w, whl_entry *e) {
    if (e->deadline <= w->elapsed)
        return false;
    unsigned level = level_for(w->elapsed, e->deadline);
    unsigned slot = (unsigned)(e->deadline >> (level * SLOT_BITS)) & SLOT_MASK;
    e->level = (uint8_t)level;
    e->slot = (uint8_t)slot;
    e->prev = NULL;
    e->next = w->slots[level][slot];
    if (e->next)
        e->next->prev = e;
    w->slots[level][slot] = e;
    w->occupied[level] |= 1ull << slot;
    e->linked = true;
    w->count++;
    return true;
}

void whl_remove(wheel *w, whl_entry *e) {
    if (!e->linked)
        return;
    if (e->prev)
        e->prev->next = e->next;
    else
        w->slots[e->level][e->slot] = e->next;
    if (e->next)
        e->next->prev = e->prev;
    if (!w->slots[e->level][e->slot])
        w->occupied[e->level] &= ~(1ull << e->slot);
    e->prev = e->next = NULL;
    e->linked = false;
    w->count--;
}

/* The start time of the next occupied slot at `level`, or UINT64_MAX. */
static uint64_t level_next(const wheel *w, unsigned level) {
    uint64_t occ = w->occupied[level];
    if (!occ)
        return UINT64_MAX;
    unsigned shift = level * SLOT_BITS;
    uint64_t slot_span = 1ull << shift;
    unsigned now_slot = (unsigned)(w->elapsed >> shift) & SLOT_MASK;
    /* Rotate so that bit 0 is the current slot, then find the first set. */
    uint64_t rot = now_slot ? (occ >> now_slot) | (occ << (64 - now_slot)) : occ;
    unsigned ahead = (unsigned)__builtin_ctzll(rot);
    unsigned slot = (now_slot + ahead) & SLOT_MASK;
    uint64_t level_span = slot_span << SLOT_BITS;
    uint64_t level_start = w->elapsed & ~(level_span - 1);
    uint64_t at = level_start + (uint64_t)slot * slot_span;
    if (slot < now_slot)
        at += level_span; /* wrapped into the next turn of this level */
    return at;
}

uint64_t whl_next(const wheel *w) {
    uint64_t best = UINT64_MAX;
    for (unsigned l = 0; l < WHL_LEVELS; l++) {
        uint64_t at = level_next(w, l);
        if (at < best)
            best = at;
    }
    return best;
}

whl_entry *whl_advance(wheel *w, uint64_t now) {
    whl_entry *due = NULL;
    for (;;) {
        uint64_t at = UINT64_MAX;
        unsigned lvl = 0;
        for (unsigned l = 0; l < WHL_LEVELS; l++) {
            uint64_t t = level_next(w, l);
            if (t < at) {
                at = t;
                lvl = l;
            }
        }
        if (at == UINT64_MAX || at > now)
            break;
        if (at > w->elapsed)
            w->elapsed = at;
        unsigned slot = (unsigned)(at >> (lvl * SLOT_BITS)) & SLOT_MASK;
        whl_entry *e = w->slots[lvl][slot];
        w->slots[lvl][slot] = NULL;
        w->occupied[lvl] &= ~(1ull << slot);
        while (e) {
            whl_entry *next = e->next;
            e->linked = false;
            e->prev = e->next = NULL;
            w->count--;
            if (e->deadline <= now) {
                e->next = due;
                due = e;
            } else {
                whl_insert(w, e); /* cascades to a lower level */
            }
            e = next;
        }
    }
    if (now > w->elapsed)
        w->elapsed = now;
    return due;
}
