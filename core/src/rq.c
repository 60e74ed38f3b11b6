/*
 * rq.c - the local run queue; see rq.h for the protocol.
 */
#include "rq.h"

static inline uint64_t pack(uint32_t steal, uint32_t real) {
    return ((uint64_t)steal << 32) | real;
}
static inline uint32_t head_steal(uint64_t h) { return (uint32_t)(h >> 32); }
static inline uint32_t head_real(uint64_t h) { return (uint32_t)h; }

void rq_init(rq *q) {
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    for (uint32_t i = 0; i < RQ_CAP; i++)
        atomic_init(&q->buf[i], NULL);
}

bool rq_try_push(rq *q, ms_task *t) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tail - head_steal(h) >= RQ_CAP)
        return false;
    atomic_store_explicit(&q->buf[tail & RQ_MASK], t, memory_order_relaxed);
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

uint32_t rq_take_half(rq *q, ms_task **out) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t real = head_real(h);
    /* A steal in progress: let it finish rather than fight over slots. */
    if (head_steal(h) != real)
        return 0;
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint32_t n = (tail - real) / 2;
    if (n == 0)
        return 0;
    uint64_t next = pack(real + n, real + n);
    if (!atomic_compare_exchange_strong_explicit(&q->head, &h, next, memory_order_acq_rel,
                                                 memory_order_acquire))
        return 0;
    /* The slots are ours now: only the owner writes slots and we are it. */
    for (uint32_t i = 0; i < n; i++)
        out[i] = atomic_load_explicit(&q->buf[(real + i) & RQ_MASK], memory_order_relaxed);
    return n;
}

ms_task *rq_pop(rq *q) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        uint32_t steal = head_steal(h), real = head_real(h);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (real == tail)
            return NULL;
        uint32_t next_real = real + 1;
        /* With no steal running, steal follows real; otherwise the thief
         * moves steal when it finishes copying. */
        uint64_t next = steal == real ? pack(next_real, next_real) : pack(steal, next_real);
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, next, memory_order_acq_rel,
                                                  memory_order_acquire))
            return atomic_load_explicit(&q->buf[real & RQ_MASK], memory_order_relaxed);
    }
}

/* Claims half of src and copies it into dst starting at dst_tail.  Returns
 * the number copied. */
static uint32_t steal_copy(rq *src, rq *dst, uint32_t dst_tail) {
    uint64_t prev = atomic_load_explicit(&src->head, memory_order_acquire);
    uint32_t n, first;
    uint64_t next;
    for (;;) {
        uint32_t steal = head_steal(prev), real = head_real(prev);
        if (steal != real)
            return 0; /* another thief is copying */
        uint32_t tail = atomic_load_explicit(&src->tail, memory_order_acquire);
        n = tail - real;
        n -= n / 2;
        if (n == 0)
            return 0;
        if (n > RQ_CAP / 2)
            n = RQ_CAP / 2;
        next = pack(steal, real + n);
        if (atomic_compare_exchange_weak_explicit(&src->head, &prev, next, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            first = steal;
            break;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        ms_task *t = atomic_load_explicit(&src->buf[(first + i) & RQ_MASK], memory_order_relaxed);
        atomic_store_explicit(&dst->buf[(dst_tail + i) & RQ_MASK], t, memory_order_relaxed);
    }
    /* Release the claimed slots: steal catches up with real (which the
     * owner may have moved meanwhile by popping). */
    prev = next;
    for (;;) {
        uint32_t real = head_real(prev);
        uint64_t done = pack(real, real);
        if (atomic_compare_exchange_weak_explicit(&src->head, &prev, done, memory_order_acq_rel,
                                                  memory_order_acquire))
            return n;
    }
}

ms_task *rq_steal_into(rq *src, rq *dst, uint32_t *stolen) {
    *stolen = 0;
    uint32_t dst_tail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    uint64_t dh = atomic_load_explicit(&dst->head, memory_order_acquire);
    /* Do not steal into a queue that is already half full. */
    if (dst_tail - head_steal(dh) > RQ_CAP / 2)
        return NULL;
    uint32_t n = steal_copy(src, dst, dst_tail);
    if (n == 0)
        return NULL;
    *stolen = n;
    n--;
    ms_task *ret = atomic_load_explicit(&dst->buf[(dst_tail + n) & RQ_MASK], memory_order_relaxed);
    if (n > 0)
        atomic_store_explicit(&dst->tail, dst_tail + n, memory_order_release);
    return ret;
}

uint32_t rq_len(rq *q) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    uint32_t n = tail - head_real(h);
    return n > RQ_CAP ? 0 : n; /* a torn read between the two loads */
}

bool rq_is_empty(rq *q) {
    return rq_len(q) == 0;
}

uint32_t rq_room(rq *q) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    return RQ_CAP - (tail - head_steal(h));
}
