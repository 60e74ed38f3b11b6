/*
 * rq.h - a worker's bounded local run queue (256 slots, lock-free).
 *
 * Single producer (the owning worker pushes at the tail and pops at the
 * head), many consumers (thieves take half of the queue from the head).
 * The head is two 32-bit indexes packed in one 64-bit word:
 *
 *   real  - the next slot to pop;
 *   steal - the first slot a thief is still copying out; equal to real
 *           when no steal is in progress.
 *
 * The owner treats [steal, tail) as occupied, so slots a thief has claimed
 * but not yet copied are never overwritten.  Only one thief works on a
 * queue at a time (a second sees steal != real and backs off).
 *
 * Costs: push is a load, a store and a release store; pop is one CAS;
 * a steal is two CASes plus the copy.  Indexes wrap around 2^32 and are
 * compared by unsigned difference.
 */
#ifndef MS_RQ_H
#define MS_RQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ms.h"

#define RQ_CAP 256u
#define RQ_MASK (RQ_CAP - 1)

typedef struct rq {
    /* steal << 32 | real.  CAS by the owner (pop, overflow) and by thieves
     * (claim, release), acq_rel. */
    _Atomic uint64_t head;
    /* Written only by the owner, with release after filling a slot;
     * thieves read it with acquire. */
    _Atomic uint32_t tail;
    /* Slots are written by the owner (push) or by the owner's own steal
     * into this queue, and read by whoever claimed them through head.
     * Relaxed: ordering comes from tail (release/acquire) and head. */
    _Atomic(ms_task *) buf[RQ_CAP];
} rq;

void rq_init(rq *q);
/* Owner only.  Returns false when full; the caller then overflows. */
bool rq_try_push(rq *q, ms_task *t);
/* Owner only: claims the older half of a full queue for an overflow to the
 * injection queue.  Writes up to RQ_CAP/2 tasks to out and returns how
 * many; 0 if a thief raced (retry the push). */
uint32_t rq_take_half(rq *q, ms_task **out);
/* Owner only. */
ms_task *rq_pop(rq *q);
/* Called by dst's owner: moves half of src into dst and returns one of the
 * stolen tasks (not placed in dst), or NULL.  *stolen is the number taken. */
ms_task *rq_steal_into(rq *src, rq *dst, uint32_t *stolen);
/* Any thread: a snapshot of the length. */
uint32_t rq_len(rq *q);
bool rq_is_empty(rq *q);
/* Owner only: room left for pushes. */
uint32_t rq_room(rq *q);

#endif
