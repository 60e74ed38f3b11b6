/*
 * mailbox.c - a lock-free intrusive MPSC queue with a count and a close
 * bit: the agents' mailboxes.
 *
 * Why: with a mutex, four agents sending to one collector on two workers
 * spend their time in futex sleeps and wake-ups (perf: the kernel's
 * scheduler functions at the top), and a spinlock starves the collector.
 * Here a push never waits for another thread: one exchange on tail and
 * one add on count, both on the producers' cache line.
 *
 * The list is the classic stub-based MPSC design: producers exchange
 * tail with their link and then store it into the previous link's next;
 * the consumer follows next from head.  Between a producer's exchange and
 * its store the list is cut there: the consumer sees it as empty at that
 * point (mbox_pop returns NULL) and must be woken by that producer, which
 * is why the wake-up check comes after the store (mail_deliver).  When
 * the consumer takes the last link, it pushes the stub back so that a
 * link always stays in the list for producers to append to.
 *
 * count makes close exact: a producer adds one before linking and backs
 * out if the closed bit was set; close sets the bit and reads how many
 * links were accepted and not yet popped, which is the "unread" figure
 * an exit reports.  Those links are still freed by the owner (pop).
 */
#include "mailbox.h"

#define MBOX_CLOSED_BIT (UINT64_C(1) << 63)

void mbox_init(mailbox *mb) {
    atomic_init(&mb->stub.next, NULL);
    atomic_init(&mb->tail, &mb->stub);
    atomic_init(&mb->count, 0);
    mb->head = &mb->stub;
    atomic_init(&mb->popped, 0);
}

static void link_in(mailbox *mb, mlink *l) {
    atomic_store_explicit(&l->next, NULL, memory_order_relaxed);
    /* acq_rel: our next = NULL is published with the exchange, and the
     * previous link's producer's writes happen before our store into it. */
    mlink *prev = atomic_exchange_explicit(&mb->tail, l, memory_order_acq_rel);
    /* release: the consumer that reads this sees the whole message. */
    atomic_store_explicit(&prev->next, l, memory_order_release);
}

int mbox_push(mailbox *mb, mlink *l, size_t limit) {
    uint64_t old = atomic_fetch_add_explicit(&mb->count, 1, memory_order_acq_rel);
    if ((old & MBOX_CLOSED_BIT) || (limit && (old & ~MBOX_CLOSED_BIT) >= limit)) {
        atomic_fetch_sub_explicit(&mb->count, 1, memory_order_relaxed);
        return (old & MBOX_CLOSED_BIT) ? MBOX_CLOSED : MBOX_FULL;
    }
    link_in(mb, l);
    return MBOX_OK;
}

static mlink *pop(mailbox *mb, bool received) {
    mlink *h = mb->head;
    mlink *next = atomic_load_explicit(&h->next, memory_order_acquire);
    if (h == &mb->stub) {
        if (!next)
            return NULL;
        mb->head = h = next;
        next = atomic_load_explicit(&h->next, memory_order_acquire);
    }
    if (!next) {
        /* h is the last link we can see.  If a producer has already
         * exchanged tail past it, its link is on the way: empty for now. */
        if (atomic_load_explicit(&mb->tail, memory_order_acquire) != h)
            return NULL;
        /* Park the stub behind h so that h can leave the list. */
        link_in(mb, &mb->stub);
        next = atomic_load_explicit(&h->next, memory_order_acquire);
        if (!next)
            return NULL; /* another producer came in between: its store is on the way */
    }
    mb->head = next;
    atomic_fetch_sub_explicit(&mb->count, 1, memory_order_release);
    if (received)
        atomic_store_explicit(&mb->popped,
                              atomic_load_explicit(&mb->popped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    return h;
}

mlink *mbox_pop(mailbox *mb) {
    return pop(mb, true);
}

mlink *mbox_pop_unread(mailbox *mb) {
    return pop(mb, false);
}

size_t mbox_len(mailbox *mb) {
    return (size_t)(atomic_load_explicit(&mb->count, memory_order_acquire) & ~MBOX_CLOSED_BIT);
}

uint64_t mbox_popped(mailbox *mb) {
    return atomic_load_explicit(&mb->popped, memory_order_relaxed);
}

size_t mbox_close(mailbox *mb) {
    uint64_t old = atomic_fetch_or_explicit(&mb->count, MBOX_CLOSED_BIT, memory_order_acq_rel);
    return (size_t)(old & ~MBOX_CLOSED_BIT);
}

bool mbox_closed(mailbox *mb) {
    return atomic_load_explicit(&mb->count, memory_order_acquire) & MBOX_CLOSED_BIT;
}
