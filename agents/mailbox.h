/*
 * mailbox.h - an agent's mailbox: a lock-free multi-producer,
 * single-consumer FIFO of intrusive links (mailbox.c).
 *
 * Producers are any threads (mbox_push); the consumer is the thread
 * running the owning agent (mbox_pop), one at a time.  Knows nothing of
 * Lua or of what the links are embedded in, so it can be tested alone.
 */
#ifndef MS_MAILBOX_H
#define MS_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mlink {
    _Atomic(struct mlink *) next;
} mlink;

typedef struct mailbox {
    /* Producers' cache line: every push exchanges tail and adds to count,
     * so both live together and a push touches one contended line. */
    _Atomic(mlink *) tail __attribute__((aligned(64))); /* any thread: exchange, acq_rel */
    /* MBOX_CLOSED | links accepted and not yet popped.  Producers add one
     * before linking (acq_rel), the consumer subtracts one per pop
     * (release), close sets the bit (acq_rel). */
    _Atomic uint64_t count;
    /* Consumer's cache line. */
    mlink *head __attribute__((aligned(64))); /* consumer only */
    mlink stub;                 /* parked in the list whenever it is drained */
    _Atomic uint64_t popped;    /* consumer writes (relaxed), metrics read */
} mailbox;

enum { MBOX_OK = 0, MBOX_CLOSED = 1, MBOX_FULL = 2 };

void mbox_init(mailbox *mb);
/* Appends l (any thread).  limit 0 = unbounded; else refused with
 * MBOX_FULL when limit links are waiting.  MBOX_CLOSED after mbox_close.
 * A refused link stays the caller's. */
int mbox_push(mailbox *mb, mlink *l, size_t limit);
/* The oldest link, or NULL when empty (consumer only).  A push that has
 * taken its place but not linked it yet counts as empty until it has:
 * the producer then sees a registered receiver (mbox_push's caller's job,
 * after a seq_cst fence, see mail_deliver). */
mlink *mbox_pop(mailbox *mb);
/* mbox_pop for the owner emptying a closed mailbox: the link is not
 * counted as received (mbox_popped). */
mlink *mbox_pop_unread(mailbox *mb);
/* Links accepted and not yet popped (any thread; a snapshot). */
size_t mbox_len(mailbox *mb);
uint64_t mbox_popped(mailbox *mb);
/* Refuses every later push; returns the links accepted and not popped
 * (they stay in the mailbox for the owner to free with mbox_pop). */
size_t mbox_close(mailbox *mb);
bool mbox_closed(mailbox *mb);

#endif
