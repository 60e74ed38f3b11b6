/*
 * sync_taskq.c - ms_taskq: a concurrency limiter with a priority queue.
 *
 * At most `max` of a taskq's tasks run at once; the others wait, and a
 * freed slot goes to the highest priority waiting task, the earliest
 * submitted among equals.
 *
 * Each submit spawns the task at once, wrapped in a small task of ours
 * (tq_task) whose first poll waits for a slot; so the caller gets an
 * ordinary ms_task join handle straight away, and join, abort and
 * shutdown work as for any task.  The slot is given back by the wrapper's
 * drop function, which the executor calls exactly once however the task
 * ends (ready, failed, aborted, cancelled by shutdown), and the next slot
 * holder is picked right there: "when one finishes, start the next".
 *
 * The waiting wrappers sit in a binary max-heap of their nodes (each node
 * knows its index, so an aborted one leaves in O(log n)).  A node enters
 * the heap at submit, not at its first poll, so the order of priorities
 * and submissions is what counts, not the order in which workers happen
 * to poll the wrappers.  A slot can therefore be granted to a wrapper
 * that was never polled: the grant is a state store that its first poll
 * sees.  Heap room is reserved at submit, so a grant never allocates.
 *
 * Invariant (under the lock): heap non-empty => running >= max.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sync.h"

enum {
    TQ_N_QUEUED = 1,   /* in the heap: the lock's */
    TQ_N_GRANTED = 2,  /* holds a slot; the wrapper has not seen it yet */
    TQ_N_RUNNING = 3,  /* holds a slot, seen: the wrapper's own */
};

typedef struct tq_node {
    int priority;          /* immutable after submit */
    uint64_t seq;          /* submission order; immutable after submit */
    size_t index;          /* in the heap, under lock */
    ms_waker waker;        /* under lock */
    uint32_t state;        /* TQ_N_*; see sync.h for the access rules */
} tq_node;

typedef struct tq_task {
    ms_taskq *q;           /* a reference */
    tq_node node;
    ms_poll_fn poll;
    void *state;
    ms_drop_fn drop;
    bool started;          /* the wrapper's poll thread only */
} tq_task;

struct ms_taskq {
    _Atomic uint32_t refs;
    ms_runtime *rt;        /* immutable */
    pthread_mutex_t lock;
    /* Under lock. */
    uint32_t max;          /* slots */
    uint32_t running;      /* slots held (GRANTED or RUNNING nodes) */
    uint64_t next_seq;
    tq_node **heap;
    size_t heap_len, heap_cap;
};

/* ---- the heap (lock held) ---- */

static inline bool tq_before(const tq_node *a, const tq_node *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->seq < b->seq);
}

static inline void tq_heap_set(ms_taskq *q, size_t i, tq_node *n) {
    q->heap[i] = n;
    n->index = i;
}

static void tq_sift_up(ms_taskq *q, size_t i) {
    tq_node *n = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tq_before(n, q->heap[parent]))
            break;
        tq_heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    tq_heap_set(q, i, n);
}

static void tq_sift_down(ms_taskq *q, size_t i) {
    tq_node *n = q->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= q->heap_len)
            break;
        if (child + 1 < q->heap_len && tq_before(q->heap[child + 1], q->heap[child]))
            child++;
        if (!tq_before(q->heap[child], n))
            break;
        tq_heap_set(q, i, q->heap[child]);
        i = child;
    }
    tq_heap_set(q, i, n);
}

/* Room was reserved at submit. */
static void tq_heap_push(ms_taskq *q, tq_node *n) {
    tq_heap_set(q, q->heap_len++, n);
    tq_sift_up(q, n->index);
}

static void tq_heap_remove(ms_taskq *q, tq_node *n) {
    size_t i = n->index;
    tq_node *last = q->heap[--q->heap_len];
    if (last == n)
        return;
    tq_heap_set(q, i, last);
    tq_sift_down(q, i);
    tq_sift_up(q, last->index);
}

/* Grants free slots to the best waiting nodes. */
static void tq_grant_locked(ms_taskq *q, sync_wakes *wakes) {
    while (q->running < q->max && q->heap_len > 0) {
        if (sync_wakes_full(wakes)) {
            pthread_mutex_unlock(&q->lock);
            sync_wakes_flush(wakes);
            pthread_mutex_lock(&q->lock);
            continue;
        }
        tq_node *n = q->heap[0];
        tq_heap_remove(q, n);
        q->running++;
        if (!ms_waker_is_null(&n->waker))
            sync_wakes_take(wakes, &n->waker);
        sync_state_store(&n->state, TQ_N_GRANTED);
    }
}

/* Gives back the slot of a GRANTED/RUNNING node or takes a QUEUED one out
 * of the heap; the node's waker (if any) is moved to *old. */
static void tq_leave(ms_taskq *q, tq_node *n, ms_waker *old) {
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&q->lock);
    if (sync_state_peek(&n->state) == TQ_N_QUEUED) {
        tq_heap_remove(q, n);
        *old = n->waker;
        n->waker = (ms_waker){0};
    } else {
        q->running--;
        tq_grant_locked(q, &wakes);
    }
    pthread_mutex_unlock(&q->lock);
    sync_wakes_flush(&wakes);
}

/* ---- the wrapper task ---- */

static ms_poll tq_poll(ms_cx *cx, void *state) {
    tq_task *t = state;
    if (!t->started) {
        if (sync_state_load(&t->node.state) == TQ_N_QUEUED) {
            if (!ms_coop_proceed(cx))
                return MS_POLL_PENDING;
            ms_waker mine = ms_waker_clone(ms_cx_waker(cx));
            ms_waker old = {0};
            pthread_mutex_lock(&t->q->lock);
            bool queued = sync_state_peek(&t->node.state) == TQ_N_QUEUED;
            if (queued && !ms_waker_will_wake(&t->node.waker, &mine)) {
                old = t->node.waker;
                t->node.waker = mine;
                mine = (ms_waker){0};
            }
            pthread_mutex_unlock(&t->q->lock);
            ms_waker_drop(&mine);
            ms_waker_drop(&old);
            if (queued)
                return MS_POLL_PENDING;
            /* Granted: the lock ordered the grant before this. */
        }
        t->started = true;
        t->node.state = TQ_N_RUNNING;
    }
    return t->poll(cx, t->state);
}

static void tq_drop(void *state) {
    tq_task *t = state;
    if (t->drop)
        t->drop(t->state);
    ms_waker old = {0};
    tq_leave(t->q, &t->node, &old);
    ms_waker_drop(&old);
    ms_taskq_unref(t->q);
    free(t);
}

/* ---- the public side ---- */

int ms_taskq_new(ms_runtime *rt, uint32_t max_concurrent, ms_taskq **out) {
    if (!rt || !out || max_concurrent == 0)
        return MS_E_INVALID_ARGUMENT;
    ms_taskq *q = calloc(1, sizeof *q);
    if (!q)
        return MS_E_NO_MEMORY;
    atomic_init(&q->refs, 1);
    q->rt = rt;
    sync_lock_init(&q->lock);
    q->max = max_concurrent;
    *out = q;
    return 0;
}

ms_taskq *ms_taskq_ref(ms_taskq *q) {
    sync_ref(&q->refs);
    return q;
}

void ms_taskq_unref(ms_taskq *q) {
    if (!q || !sync_unref(&q->refs))
        return;
    /* Every wrapper holds a reference: the heap is empty. */
    free(q->heap);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int ms_taskq_submit(ms_taskq *q, int priority, ms_poll_fn poll, void *state, ms_drop_fn drop,
                    ms_task **handle) {
    if (!q || !poll)
        return MS_E_INVALID_ARGUMENT;
    tq_task *t = malloc(sizeof *t);
    if (!t)
        return MS_E_NO_MEMORY;
    *t = (tq_task){.q = q, .poll = poll, .state = state, .drop = drop};
    t->node.priority = priority;
    t->node.state = TQ_N_QUEUED;

    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&q->lock);
    if (q->heap_len == q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
        tq_node **heap = realloc(q->heap, cap * sizeof *heap);
        if (!heap) {
            pthread_mutex_unlock(&q->lock);
            free(t);
            return MS_E_NO_MEMORY;
        }
        q->heap = heap;
        q->heap_cap = cap;
    }
    t->node.seq = q->next_seq++;
    tq_heap_push(q, &t->node);
    tq_grant_locked(q, &wakes); /* wakes nobody new: the node has no waker */
    pthread_mutex_unlock(&q->lock);
    sync_wakes_flush(&wakes);

    ms_taskq_ref(q);
    int rc = ms_spawn(q->rt, tq_poll, t, tq_drop, handle);
    if (rc != 0) {
        /* Never ran: undo, and the caller keeps its state. */
        ms_waker old = {0};
        tq_leave(q, &t->node, &old);
        ms_waker_drop(&old);
        ms_taskq_unref(q);
        free(t);
    }
    return rc;
}

int ms_taskq_set_max(ms_taskq *q, uint32_t max_concurrent) {
    if (max_concurrent == 0)
        return MS_E_INVALID_ARGUMENT;
    sync_wakes wakes;
    sync_wakes_init(&wakes);
    pthread_mutex_lock(&q->lock);
    q->max = max_concurrent;
    tq_grant_locked(q, &wakes);
    pthread_mutex_unlock(&q->lock);
    sync_wakes_flush(&wakes);
    return 0;
}

uint32_t ms_taskq_max(ms_taskq *q) {
    pthread_mutex_lock(&q->lock);
    uint32_t v = q->max;
    pthread_mutex_unlock(&q->lock);
    return v;
}

uint32_t ms_taskq_running(ms_taskq *q) {
    pthread_mutex_lock(&q->lock);
    uint32_t v = q->running;
    pthread_mutex_unlock(&q->lock);
    return v;
}

size_t ms_taskq_queued(ms_taskq *q) {
    pthread_mutex_lock(&q->lock);
    size_t v = q->heap_len;
    pthread_mutex_unlock(&q->lock);
    return v;
}
