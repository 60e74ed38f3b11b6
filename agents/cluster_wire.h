/*
 * cluster_wire.h - the message encoding between hosts (docs/cluster.md):
 * a message's value (an xfer blob, xfer.h) re-encoded for the network
 * with a version byte, explicit little-endian numbers and agent handles
 * as cluster addresses (host id, agent id), inside an envelope that says
 * what the message is.  The decoder trusts nothing: every length, count,
 * depth and tag is checked, and a blob that is not exactly one envelope
 * and one value is refused with the byte and the reason.
 *
 * No Lua state and no network here: fuzz/fuzz_wire.c drives it alone.
 */
#ifndef MS_AGENTS_CLUSTER_WIRE_H
#define MS_AGENTS_CLUSTER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd.h"

#define WIRE_VERSION 1
/* Version, kind, from_host, to_agent, from_agent, ref. */
#define WIRE_HEADER_BYTES (1 + 1 + 8 + 8 + 8 + 8)
/* The largest envelope a host accepts or sends (NATS's default max_payload
 * is 1 MiB; the value must fit in it). */
#define WIRE_MAX_BYTES (1024 * 1024)

/* What an envelope is.  Its value, by kind: SEND, CALL: the message;
 * REPLY: the answer (ref = the call's id); MONITOR: nil; EXIT: { reason,
 * message } of agent from_agent; STOP: the reason (a string); WHEREIS:
 * the name; FOUND: the agent handle or nil (ref = the lookup's id);
 * HELLO (a heartbeat), BYE (leaving), on ms.hb: the build id. */
typedef enum wire_kind {
    WK_SEND = 1, WK_CALL, WK_REPLY, WK_MONITOR, WK_EXIT, WK_STOP, WK_WHEREIS, WK_FOUND,
    WK_SPAWN, WK_HELLO, WK_BYE,
    WK_LAST = WK_BYE
} wire_kind;

typedef struct wire_header {
    uint8_t version;
    uint8_t kind;
    uint64_t from_host;
    uint64_t to_agent;          /* on the receiving host; 0: none */
    uint64_t from_agent;        /* on the sending host; 0: none */
    uint64_t ref;               /* call or lookup id; 0: none */
} wire_header;

/* A growing byte buffer; failed once memory ran out (later puts do
 * nothing). */
typedef struct wbuf {
    char *p;
    size_t len, cap;
    bool failed;
} wbuf;

void wbuf_free(wbuf *b);

/* The translation of an agent handle to a cluster address (sending) and
 * back (receiving).  addr_of: the (host, id) of agent a (a proxy's are the
 * remote ones; a local agent's host is this host).  resolve: an agent
 * reference for (host, id), a proxy for another host's; NULL refuses the
 * handle (unknown host, out of memory). */
typedef struct wire_peer {
    void (*addr_of)(void *ctx, agent *a, uint64_t *host, uint64_t *id);
    agent *(*resolve)(void *ctx, uint64_t host, uint64_t id);
    void *ctx;
} wire_peer;

/* Appends the envelope h and the value of blob x (NULL: nil).  false with
 * err naming the path of a value that cannot cross hosts ("message.sem is
 * a semaphore ...") or saying memory ran out. */
bool wire_encode(wbuf *out, const wire_header *h, const xfer *x, const wire_peer *peer,
                 char *err, size_t errlen);
/* Reads the envelope of bytes[0..n) into *h and rebuilds its value into
 * x (empty on entry).  false with err ("at byte N of M: ...") if anything
 * is wrong; x is then emptied and every handle reference released. */
bool wire_decode(const char *bytes, size_t n, wire_header *h, xfer *x, const wire_peer *peer,
                 char *err, size_t errlen);

#endif
