/*
 * mail.c - messages between agents: delivery, the receiving task's
 * registration, monitors and exit notices.
 *
 * The mailbox itself is lock-free (mailbox.c); a send wakes the agent only
 * when it finds the agent's receiving task registered (a Dekker pair of
 * seq_cst fences, see mail_deliver and mail_wait).  Exit notices are built
 * without a Lua state, so an exit can be told from any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster.h"
#include "ltask.h"
#include "mail.h"
#include "ops.h"
#include "xfer.h"

static xfer *exit_notice(agent *target, bool link);
static void put_notice(xfer *x, agent *target, bool full, bool link);

msg *msg_new(void) {
    msg *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    atomic_init(&m->link.next, NULL);
    m->sender = NULL;
    m->reply = NULL;
    xfer_init(&m->own_body);
    m->body = &m->own_body;
    return m;
}

void msg_free(msg *m) {
    if (m->body != &m->own_body)
        xfer_free(m->body);
    xfer_clear(&m->own_body); /* it may hold reserved room (exit notices) */
    if (m->sender)
        agent_unref(m->sender);
    if (m->reply)
        reply_unref(m->reply);
    free(m);
}

void mail_set_limit(agent *a, size_t limit) {
    atomic_store_explicit(&a->mailbox_limit, limit, memory_order_relaxed);
}

int mail_deliver(agent *a, msg *m, char *err, size_t errlen) {
    if (a->remote_host) /* cluster.h: an agent of another host */
        return cluster_deliver(a, m, err, errlen);
    size_t limit = atomic_load_explicit(&a->mailbox_limit, memory_order_relaxed);
    int r = mbox_push(&a->mbox, &m->link, limit);
    if (r == MBOX_CLOSED) {
        /* exit_reason was written before the mailbox closed (mlock). */
        pthread_mutex_lock(&a->mlock);
        snprintf(err, errlen, "agent %s (%llu) has exited (%s)", a->name,
                 (unsigned long long)a->id, a->exit_reason);
        pthread_mutex_unlock(&a->mlock);
        return MS_E_CLOSED;
    }
    if (r == MBOX_FULL) {
        snprintf(err, errlen, "mailbox of agent %s is full (%zu messages, mailbox_limit)",
                 a->name, limit);
        return MS_E_EXHAUSTED;
    }
    /* Dekker with mail_wait: our link is stored before we look
     * for a receiver, its registration before it looks at the mailbox, so
     * one of us sees the other.  Most pushes find nobody waiting (the
     * receiver is busy with earlier messages) and stop at the load. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&a->receiver, memory_order_relaxed)) {
        ltask *rcv = atomic_exchange_explicit(&a->receiver, NULL, memory_order_acq_rel);
        if (rcv) {
            ltask_wake_by_ref(rcv);
            ltask_unref(rcv);
        }
    }
    return 0;
}

msg *mail_take(agent *a) {
    return (msg *)mbox_pop(&a->mbox);
}

void mail_wait(agent *a, ltask *lt) {
    if (atomic_load_explicit(&a->receiver, memory_order_relaxed) != lt) {
        ltask_ref(lt);
        ltask *old = atomic_exchange_explicit(&a->receiver, lt, memory_order_seq_cst);
        if (old)
            ltask_unref(old);
    }
    /* Dekker with mail_deliver: the caller looks at the mailbox again
     * after this. */
    atomic_thread_fence(memory_order_seq_cst);
}

void mail_unwait(agent *a, ltask *lt) {
    ltask *expected = lt;
    if (atomic_compare_exchange_strong_explicit(&a->receiver, &expected, NULL,
                                                memory_order_acq_rel, memory_order_relaxed))
        ltask_unref(lt);
}

ltask *mail_receiver(agent *a) {
    return atomic_load_explicit(&a->receiver, memory_order_relaxed);
}

/* A short notice (no message, no traceback) fits in this: the table, its
 * five keys, a name of at most AGENT_NAME_MAX bytes, a reason of at most
 * 15, a number and one handle take 167 bytes. */
#define NOTICE_SHORT_BYTES 256

bool mail_add_monitor(agent *target, agent *watcher) {
    msg *notice = msg_new();
    if (!notice || !xfer_reserve(notice->body, NOTICE_SHORT_BYTES, 1)) {
        if (notice)
            msg_free(notice);
        return false;
    }
    pthread_mutex_lock(&target->mlock);
    bool exited = target->state == AG_EXITED;
    if (!exited && target->nmonitors == target->mcap) {
        uint32_t cap = target->mcap ? target->mcap * 2 : 4;
        agent_monitor *m = realloc(target->monitors, cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&target->mlock);
            msg_free(notice);
            return false;
        }
        target->monitors = m;
        target->mcap = cap;
    }
    if (!exited) {
        agent_ref(watcher);
        target->monitors[target->nmonitors++] = (agent_monitor){watcher, notice};
    }
    pthread_mutex_unlock(&target->mlock);
    if (exited) {
        /* Already gone: the watcher hears about it at once. */
        mail_send_exit_notice(target, watcher, notice);
    } else if (target->remote_host) {
        cluster_watch(target); /* cluster.h: its host will tell us */
    }
    return true;
}

/* Puts { event = "exit", agent = <target>, name, reason, message,
 * traceback, unread = n } in the watcher's mailbox (with link = true for a
 * link's notice).  Built without a Lua state (exit_notice), so it works
 * whichever thread the exit is on. */
static void send_notice(agent *target, agent *watcher, bool link) {
    xfer *x = exit_notice(target, link);
    if (!x)
        return;
    msg *m = msg_new();
    if (!m) {
        xfer_free(x);
        return;
    }
    m->body = x;
    char err[128];
    if (mail_deliver(watcher, m, err, sizeof err) != 0)
        msg_free(m);
}

/* A monitor's notice travels in m, reserved when the watch began: without
 * memory for the full notice a short one goes in m's own reserved room, so
 * an exit is never lost to memory. */
void mail_send_exit_notice(agent *target, agent *watcher, msg *m) {
    xfer *full = exit_notice(target, false);
    if (full) {
        m->body = full;
    } else {
        pthread_mutex_lock(&target->mlock);
        put_notice(m->body, target, false, false);
        pthread_mutex_unlock(&target->mlock);
        if (m->body->failed) { /* cannot happen: the room was reserved */
            msg_free(m);
            return;
        }
    }
    char err[128];
    if (mail_deliver(watcher, m, err, sizeof err) != 0)
        msg_free(m);
}

/* ---- links ----
 *
 * A link joins two agents both ways (OTP's link): when one exits with an
 * abnormal reason, the other is stopped too, unless it traps exits, in
 * which case it gets the exit notice with link = true (a trapping agent
 * also hears of normal exits).  Each side keeps the other in its `links`
 * (under its own mlock, with a reference); the two sides are updated one
 * lock at a time, never both at once, so there is no lock order to keep.
 * An entry left behind by a race with an exit is harmless: stopping or
 * telling an agent that has exited does nothing. */

/* Adds other to a's links (under a's lock).  false: a has exited. */
static bool add_link(agent *a, agent *other) {
    pthread_mutex_lock(&a->mlock);
    bool exited = a->state == AG_EXITED;
    if (!exited) {
        if (a->nlinks == a->lcap) {
            uint32_t cap = a->lcap ? a->lcap * 2 : 4;
            agent **l = realloc(a->links, cap * sizeof *l);
            if (l) {
                a->links = l;
                a->lcap = cap;
            }
        }
        bool known = false;
        for (uint32_t i = 0; i < a->nlinks && !known; i++)
            known = a->links[i] == other;
        if (!known && a->nlinks < a->lcap) {
            agent_ref(other);
            a->links[a->nlinks++] = other;
        }
    }
    pthread_mutex_unlock(&a->mlock);
    return !exited;
}

static void remove_link(agent *a, agent *other) {
    pthread_mutex_lock(&a->mlock);
    agent *found = NULL;
    for (uint32_t i = 0; i < a->nlinks; i++)
        if (a->links[i] == other) {
            found = other;
            a->links[i] = a->links[--a->nlinks];
            break;
        }
    pthread_mutex_unlock(&a->mlock);
    if (found)
        agent_unref(found);
}

static bool is_normal_exit(const char *reason) {
    return strcmp(reason, "normal") == 0 || strcmp(reason, "shutdown") == 0;
}

/* What linked hears of exited's exit (reason): a stop or a notice. */
static void signal_link(agent *exited, agent *linked, const char *reason) {
    if (atomic_load_explicit(&linked->traps_exit, memory_order_relaxed)) {
        send_notice(exited, linked, true);
    } else if (!is_normal_exit(reason)) {
        char why[160];
        snprintf(why, sizeof why, "linked agent %s (%llu) exited (%s)", exited->name,
                 (unsigned long long)exited->id, reason);
        agent_stop(linked, why);
    }
}

void mail_link(agent *self, agent *other) {
    if (self == other)
        return;
    if (!add_link(other, self)) {
        /* Already gone: as if it exited now. */
        char reason[16];
        pthread_mutex_lock(&other->mlock);
        snprintf(reason, sizeof reason, "%s", other->exit_reason);
        pthread_mutex_unlock(&other->mlock);
        signal_link(other, self, reason);
        return;
    }
    add_link(self, other);
}

void mail_unlink(agent *self, agent *other) {
    remove_link(self, other);
    remove_link(other, self);
}

void mail_exit_links(agent *a, const char *reason) {
    pthread_mutex_lock(&a->mlock);
    agent **links = a->links;
    uint32_t n = a->nlinks;
    a->links = NULL;
    a->nlinks = a->lcap = 0;
    pthread_mutex_unlock(&a->mlock);
    for (uint32_t i = 0; i < n; i++) {
        remove_link(links[i], a);
        signal_link(a, links[i], reason);
        agent_unref(links[i]);
    }
    free(links);
}

/* The exit notice a monitor receives, built without a Lua state. */
xfer *mail_exit_notice(agent *target) {
    return exit_notice(target, false);
}

/* The notice into x, under target's mlock; full: with the exit's message
 * and traceback. */
static void put_notice(xfer *x, agent *target, bool full, bool link) {
    bool with_msg = full && target->exit_message, tb = full && target->exit_traceback;
    xfer_put_table(x, 5 + (with_msg ? 1 : 0) + (tb ? 1 : 0) + (link ? 1 : 0));
    if (link) {
        xfer_put_str(x, "link");
        xfer_put_bool(x, true);
    }
    xfer_put_str(x, "event");
    xfer_put_str(x, "exit");
    xfer_put_str(x, "agent");
    xfer_put_handle(x, XH_AGENT, target);
    xfer_put_str(x, "name");
    xfer_put_str(x, target->name);
    xfer_put_str(x, "reason");
    xfer_put_str(x, target->exit_reason);
    xfer_put_str(x, "unread");
    xfer_put_num(x, (double)target->unread_at_exit);
    if (with_msg) {
        xfer_put_str(x, "message");
        xfer_put_str(x, target->exit_message);
    }
    if (tb) {
        xfer_put_str(x, "traceback");
        xfer_put_str(x, target->exit_traceback);
    }
}

/* The full notice in a blob of its own; NULL without memory. */
static xfer *exit_notice(agent *target, bool link) {
    xfer *x = xfer_new();
    if (!x)
        return NULL;
    pthread_mutex_lock(&target->mlock);
    put_notice(x, target, true, link);
    pthread_mutex_unlock(&target->mlock);
    if (x->failed) {
        xfer_free(x);
        return NULL;
    }
    return x;
}
