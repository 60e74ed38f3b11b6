/*
 * iohandle.h - the operating-system handles an agent holds open (files,
 * sockets, listeners, processes): how many, within which limits,
 * and closing whatever is left when the agent ends.
 *
 * Each kind of handle embeds an `ioh` in its C object and describes
 * itself with an `ioh_kind` (its name, the metric that counts it, how to
 * close it).  The object is then:
 *
 *   open     ioh_open: counted against the agent's limit
 *            (agent_io_limit) and the host's (host_io_limit), and put on
 *            the agent's list;
 *   in flight ioh_detach: handed to another agent in a message, off every
 *            agent's list but still counted by the host;
 *   adopted  ioh_attach: on the receiving agent's list (counted there
 *            even past its limit: refusing it would lose the handle);
 *   closed   ioh_closed: off the list and out of every count, once.
 *
 * ioh_close_all runs at the agent's end (agent_teardown, after its tasks
 * are aborted) and closes each handle still on the list through its
 * kind's close.  The list belongs to the owner's thread: only the thread
 * running the agent touches it; the counts are atomic so that metrics can
 * read them from anywhere.
 */
#ifndef MS_AGENTS_IOHANDLE_H
#define MS_AGENTS_IOHANDLE_H

#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"

typedef struct ioh_kind {
    const char *name;           /* "file", "socket", "listener", "process" */
    int gauge;                  /* the io_metric (facts.h) counting the open ones, or -1
                                 * (files: fsjob.c's FM_OPEN counts them) */
    /* Closes the OS object at its owner's end (owner's thread); must end
     * with ioh_closed(h). */
    void (*close)(ioh *h);
} ioh_kind;

struct ioh {
    const ioh_kind *kind;       /* set by ioh_open */
    agent *owner;               /* owner's thread; NULL in flight or closed */
    ioh *prev, *next;           /* the owner's list */
    bool counted;               /* counted by the host (until ioh_closed) */
};

/* Counts h as a's (a may be NULL outside agents: host count only).
 * false when a limit is reached, with err naming it. */
bool ioh_open(agent *a, ioh *h, const ioh_kind *kind, char *err, size_t errlen);
/* Whether a may open one more handle now (the same check, nothing
 * counted), for operations that would otherwise wait first. */
bool ioh_room(agent *a, char *err, size_t errlen);
void ioh_closed(ioh *h);
void ioh_detach(ioh *h);
void ioh_attach(agent *a, ioh *h);
/* Closes every handle a still holds (its end). */
void ioh_close_all(agent *a);
/* How many handles a holds (any thread: a relaxed read). */
size_t ioh_count(agent *a);

#endif
