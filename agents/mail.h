/*
 * mail.h - messages between agents: delivery into an agent's mailbox, the
 * receiving task's registration, monitors and exit notices.
 */
#ifndef MS_AGENTS_MAIL_H
#define MS_AGENTS_MAIL_H

#include <stddef.h>

#include "fwd.h"
#include "mailbox.h"
#include "xfer.h"

struct msg {
    mlink link;                 /* first: the mailbox's (mailbox.h) */
    xfer *body;                 /* usually &own_body: one allocation a message */
    agent *sender;              /* ref; NULL if from outside an agent */
    reply_slot *reply;          /* ref; non-NULL for agent:call */
    xfer own_body;
};

/* A message whose body is its own embedded blob; NULL without memory. */
msg *msg_new(void);
/* Frees the body (embedded or not), the references and the message. */
void msg_free(msg *m);

/* Delivers a message (takes ownership of m on success).  Returns 0 or an
 * ms_err code with err set (exited agent, full mailbox). */
int mail_deliver(agent *a, msg *m, char *err, size_t errlen);
/* The oldest message of the running agent's mailbox, or NULL (agent's
 * thread only). */
msg *mail_take(agent *a);
/* Registers lt as the task waiting in ms.recv (agent's thread only); the
 * caller must then look at the mailbox once more before it sleeps. */
void mail_wait(agent *a, ltask *lt);
/* Unregisters lt if it is still the waiting receiver. */
void mail_unwait(agent *a, ltask *lt);
/* The registered receiver, or NULL (agent's thread; a snapshot). */
ltask *mail_receiver(agent *a);
void mail_set_limit(agent *a, size_t limit);
/* watcher hears of target's exit (at once if target has exited).  The
 * notice's message is allocated now; false without memory (the caller
 * says so: a watch that cannot be kept must not look as if it were). */
bool mail_add_monitor(agent *target, agent *watcher);
/* Puts target's exit notice in watcher's mailbox, in notice (reserved by
 * mail_add_monitor; taken over).  Without memory for the full notice,
 * a short one without message and traceback goes, in the room reserved. */
void mail_send_exit_notice(agent *target, agent *watcher, msg *notice);
/* Links self and other both ways (see mail.c); if other has exited, self
 * hears of it at once. */
void mail_link(agent *self, agent *other);
void mail_unlink(agent *self, agent *other);
/* a has exited with reason: every linked agent hears of it. */
void mail_exit_links(agent *a, const char *reason);
/* { event = "exit", agent, name, reason, message, traceback, unread }
 * built without a Lua state; NULL without memory. */
xfer *mail_exit_notice(agent *target);

#endif
