/*
 * iohandle.c - an agent's open OS handles: counts, limits, and closing
 * what is left at the agent's end (see iohandle.h).
 */
#include <stdatomic.h>
#include <stdio.h>

#include "agent.h"
#include "facts.h"
#include "host.h"
#include "iohandle.h"

static host *host_of(agent *a) {
    return a ? a->h : host_get();
}

bool ioh_room(agent *a, char *err, size_t errlen) {
    host *h = host_of(a);
    if (!h)
        return true;
    uint32_t alim = atomic_load_explicit(&h->agent_io_limit, memory_order_relaxed);
    uint32_t hlim = atomic_load_explicit(&h->host_io_limit, memory_order_relaxed);
    if (a && alim && atomic_load_explicit(&a->io_count, memory_order_relaxed) >= alim) {
        atomic_fetch_add_explicit(&h->io[IM_REFUSED], 1, memory_order_relaxed);
        snprintf(err, errlen,
                 "agent %s holds %u open I/O handles, its limit (agent_io_limit); close some "
                 "first", a->name, alim);
        return false;
    }
    if (hlim && atomic_load_explicit(&h->io_open, memory_order_relaxed) >= hlim) {
        atomic_fetch_add_explicit(&h->io[IM_REFUSED], 1, memory_order_relaxed);
        snprintf(err, errlen, "the host holds %u open I/O handles, its limit (host_io_limit)",
                 hlim);
        return false;
    }
    return true;
}

bool ioh_open(agent *a, ioh *io, const ioh_kind *kind, char *err, size_t errlen) {
    if (!ioh_room(a, err, errlen))
        return false;
    host *h = host_of(a);
    io->kind = kind;
    io->counted = true;
    if (h) {
        atomic_fetch_add_explicit(&h->io_open, 1, memory_order_relaxed);
        if (kind->gauge >= 0)
            atomic_fetch_add_explicit(&h->io[kind->gauge], 1, memory_order_relaxed);
    }
    ioh_attach(a, io);
    return true;
}

void ioh_attach(agent *a, ioh *io) {
    io->owner = a;
    io->prev = NULL;
    io->next = NULL;
    if (!a)
        return;
    io->next = a->io_handles;
    if (a->io_handles)
        a->io_handles->prev = io;
    a->io_handles = io;
    atomic_fetch_add_explicit(&a->io_count, 1, memory_order_relaxed);
}

void ioh_detach(ioh *io) {
    agent *a = io->owner;
    if (!a)
        return;
    if (io->prev)
        io->prev->next = io->next;
    else
        a->io_handles = io->next;
    if (io->next)
        io->next->prev = io->prev;
    io->prev = io->next = NULL;
    io->owner = NULL;
    atomic_fetch_sub_explicit(&a->io_count, 1, memory_order_relaxed);
}

void ioh_closed(ioh *io) {
    ioh_detach(io);
    if (!io->counted)
        return;
    io->counted = false;
    host *h = host_get();
    if (h) {
        atomic_fetch_sub_explicit(&h->io_open, 1, memory_order_relaxed);
        if (io->kind->gauge >= 0)
            atomic_fetch_sub_explicit(&h->io[io->kind->gauge], 1, memory_order_relaxed);
    }
}

void ioh_close_all(agent *a) {
    /* Each close takes its handle off the list. */
    while (a->io_handles) {
        ioh *io = a->io_handles;
        io->kind->close(io);
        if (a->io_handles == io) /* a close that forgot: never loop */
            ioh_detach(io);
    }
}

size_t ioh_count(agent *a) {
    return atomic_load_explicit(&a->io_count, memory_order_relaxed);
}
