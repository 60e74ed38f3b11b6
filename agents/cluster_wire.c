/*
 * cluster_wire.c - the message encoding between hosts (cluster_wire.h).
 *
 * Inside one process a message is an xfer blob: host byte order, handles
 * as indices into the blob's array of references.  Neither can cross a
 * network, so a message leaving the host is re-encoded from its blob (no
 * Lua state needed: the sending agent's code has already run xfer_encode,
 * with its path errors for functions and cycles):
 *
 *   envelope  u8 version (1), u8 kind, u64 from_host, u64 to_agent,
 *             u64 from_agent, u64 ref
 *   value     u8 tag, then: nil/false/true nothing; number 8 bytes (IEEE
 *             754 double); string u32 length + bytes; table u32 pairs +
 *             key, value ...; agent u64 host + u64 agent id
 *
 * Every number little-endian, whatever the host's order.  A semaphore, a
 * channel or a reply handle lives in one process's memory: refused with
 * its path, as xfer_encode refuses a function.
 *
 * The decoder is written against hostile bytes (anything may publish on a
 * host's subject): each read is bounds-checked, a table's pair count
 * cannot exceed what the remaining bytes can hold, tables nest at most
 * XFER_MAX_DEPTH deep, keys are what xfer's decoder accepts (strings,
 * numbers that are not NaN, booleans), an agent address must resolve, and
 * the envelope and value must end exactly at the end of the bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster_wire.h"
#include "lhandle.h"
#include "xfer.h"

/* Wire tags: xfer's, with the agent address in place of the handle. */
enum { W_NIL, W_FALSE, W_TRUE, W_NUM, W_STR, W_TABLE, W_AGENT };

/* ---- the output buffer ---- */

void wbuf_free(wbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void wput(wbuf *b, const void *p, size_t n) {
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void wput_u8(wbuf *b, uint8_t v) {
    wput(b, &v, 1);
}

static void wput_u32(wbuf *b, uint32_t v) {
    unsigned char le[4] = {v, v >> 8, v >> 16, v >> 24};
    wput(b, le, 4);
}

static void wput_u64(wbuf *b, uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    wput(b, le, 8);
}

static uint32_t le32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static uint64_t le64(const char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* ---- encoding: a blob of this host to the wire ---- */

typedef struct wenc {
    const xfer *x;
    wbuf *out;
    const wire_peer *peer;
    size_t pos;
    int depth;
    /* Offset in the blob of each level's current key (for the path of an
     * error), or SIZE_MAX while the level is between pairs. */
    size_t keys[XFER_MAX_DEPTH + 1];
    char *err;
    size_t errlen;
} wenc;

static void spell_path(wenc *e, char *path, size_t size) {
    snprintf(path, size, "message");
    for (int i = 0; i < e->depth; i++) {
        size_t k = e->keys[i];
        if (k == SIZE_MAX)
            continue;
        size_t used = strlen(path);
        uint8_t tag = (uint8_t)e->x->buf[k];
        if (tag == XT_STR) {
            uint32_t n = le32(e->x->buf + k + 1);
            snprintf(path + used, size - used, ".%.*s", (int)(n < 64 ? n : 64),
                     e->x->buf + k + 5);
        } else if (tag == XT_NUM) {
            double d;
            memcpy(&d, e->x->buf + k + 1, 8);
            snprintf(path + used, size - used, "[%.14g]", d);
        } else {
            snprintf(path + used, size - used, "[%s]", tag == XT_TRUE ? "true" : "false");
        }
    }
}

static bool wfail(wenc *e, const char *what) {
    char path[256];
    spell_path(e, path, sizeof path);
    snprintf(e->err, e->errlen, "%s %s", path, what);
    return false;
}

/* The blob is this host's own (xfer_encode or a builder wrote it), but it
 * is still read with bounds: a torn blob must not become a wild read. */
static bool enc_take(wenc *e, size_t n) {
    if (e->x->len - e->pos < n)
        return wfail(e, "is a torn message (a bug: please report it)");
    e->pos += n;
    return true;
}

static bool enc_val(wenc *e) {
    const char *b = e->x->buf;
    size_t at = e->pos;
    if (!enc_take(e, 1))
        return false;
    uint8_t tag = (uint8_t)b[at];
    switch (tag) {
    case XT_NIL: case XT_FALSE: case XT_TRUE:
        wput_u8(e->out, tag);
        return true;
    case XT_NUM: {
        if (!enc_take(e, 8))
            return false;
        uint64_t bits;
        memcpy(&bits, b + at + 1, 8);
        wput_u8(e->out, W_NUM);
        wput_u64(e->out, bits);
        return true;
    }
    case XT_STR: {
        if (!enc_take(e, 4))
            return false;
        uint32_t n;
        memcpy(&n, b + at + 1, 4);
        if (!enc_take(e, n))
            return false;
        wput_u8(e->out, W_STR);
        wput_u32(e->out, n);
        wput(e->out, b + at + 5, n);
        return true;
    }
    case XT_TABLE: {
        if (!enc_take(e, 4))
            return false;
        uint32_t n;
        memcpy(&n, b + at + 1, 4);
        if (e->depth >= XFER_MAX_DEPTH)
            return wfail(e, "is nested too deeply");
        wput_u8(e->out, W_TABLE);
        wput_u32(e->out, n);
        e->depth++;
        for (uint32_t i = 0; i < n; i++) {
            e->keys[e->depth - 1] = SIZE_MAX;
            size_t key_at = e->pos;
            if (!enc_val(e))
                return false;
            e->keys[e->depth - 1] = key_at;
            if (!enc_val(e))
                return false;
        }
        e->depth--;
        return true;
    }
    case XT_HANDLE: {
        if (!enc_take(e, 4))
            return false;
        uint32_t i;
        memcpy(&i, b + at + 1, 4);
        if (i >= e->x->nhandles || !e->x->handles[i].ptr)
            return wfail(e, "is a torn message (a bug: please report it)");
        const xhandle *h = &e->x->handles[i];
        switch (h->type) {
        case XH_AGENT: {
            uint64_t hid = 0, id = 0;
            e->peer->addr_of(e->peer->ctx, h->ptr, &hid, &id);
            wput_u8(e->out, W_AGENT);
            wput_u64(e->out, hid);
            wput_u64(e->out, id);
            return true;
        }
        case XH_SEM:
            return wfail(e, "is a semaphore, which cannot be sent to another host (it lives "
                            "in this process's memory)");
        case XH_CHAN:
            return wfail(e, "is a channel, which cannot be sent to another host (it lives "
                            "in this process's memory)");
        case XH_REPLY:
            return wfail(e, "is a reply handle, which cannot be sent to another host (answer "
                            "the call here)");
        case XH_SOCK:
            return wfail(e, "is a socket, which cannot be sent to another host (its "
                            "descriptor belongs to this process)");
        }
        return wfail(e, "is a handle of an unknown kind");
    }
    default:
        e->pos = at;
        return wfail(e, "is a torn message (a bug: please report it)");
    }
}

bool wire_encode(wbuf *out, const wire_header *h, const xfer *x, const wire_peer *peer,
                 char *err, size_t errlen) {
    size_t start = out->len;
    wput_u8(out, WIRE_VERSION);
    wput_u8(out, h->kind);
    wput_u64(out, h->from_host);
    wput_u64(out, h->to_agent);
    wput_u64(out, h->from_agent);
    wput_u64(out, h->ref);
    bool ok = true;
    if (!x || x->len == 0) {
        wput_u8(out, W_NIL);
    } else {
        wenc e = {.x = x, .out = out, .peer = peer, .err = err, .errlen = errlen};
        ok = enc_val(&e);
        if (ok && e.pos != x->len) {
            ok = wfail(&e, "is a torn message (a bug: please report it)");
        }
    }
    if (ok && out->failed) {
        snprintf(err, errlen, "out of memory encoding the message for the network");
        ok = false;
    }
    if (ok && out->len - start > WIRE_MAX_BYTES) {
        snprintf(err, errlen, "message is %zu bytes on the wire, over the %d the cluster carries",
                 out->len - start, WIRE_MAX_BYTES);
        ok = false;
    }
    if (!ok)
        out->len = start;
    return ok;
}

/* ---- decoding: bytes from the network to a blob of this host ---- */

typedef struct wdec {
    const char *p;
    size_t n, pos;
    int depth;
    xfer *x;
    const wire_peer *peer;
    char *err;
    size_t errlen;
} wdec;

static bool dfail(wdec *d, size_t at, const char *what, unsigned long long v) {
    snprintf(d->err, d->errlen, "malformed message at byte %zu of %zu: %s %llu", at, d->n, what,
             v);
    return false;
}

static bool dtake(wdec *d, size_t want, const char **out) {
    if (d->n - d->pos < want)
        return dfail(d, d->pos, "truncated: bytes wanted", want);
    *out = d->p + d->pos;
    d->pos += want;
    return true;
}

static bool dec_val(wdec *d, bool key) {
    size_t at = d->pos;
    const char *q;
    if (!dtake(d, 1, &q))
        return false;
    uint8_t tag = (uint8_t)*q;
    if (key && tag != W_FALSE && tag != W_TRUE && tag != W_NUM && tag != W_STR)
        return dfail(d, at, "a table key of tag", tag);
    switch (tag) {
    case W_NIL:
        xfer_put_nil(d->x);
        return true;
    case W_FALSE: case W_TRUE:
        xfer_put_bool(d->x, tag == W_TRUE);
        return true;
    case W_NUM: {
        if (!dtake(d, 8, &q))
            return false;
        uint64_t bits = le64(q);
        double v;
        memcpy(&v, &bits, 8);
        if (key && v != v)
            return dfail(d, at, "a NaN table key, tag", tag);
        xfer_put_num(d->x, v);
        return true;
    }
    case W_STR: {
        if (!dtake(d, 4, &q))
            return false;
        uint32_t len = le32(q);
        if (!dtake(d, len, &q))
            return false;
        xfer_put_lstr(d->x, q, len);
        return true;
    }
    case W_TABLE: {
        if (!dtake(d, 4, &q))
            return false;
        uint32_t pairs = le32(q);
        if (d->depth >= XFER_MAX_DEPTH)
            return dfail(d, at, "tables nested deeper than", XFER_MAX_DEPTH);
        /* A pair takes at least two bytes. */
        if (pairs > (d->n - d->pos) / 2)
            return dfail(d, at, "truncated: table pairs", pairs);
        xfer_put_table(d->x, pairs);
        d->depth++;
        for (uint32_t i = 0; i < pairs; i++)
            if (!dec_val(d, true) || !dec_val(d, false))
                return false;
        d->depth--;
        return true;
    }
    case W_AGENT: {
        if (!dtake(d, 16, &q))
            return false;
        uint64_t hid = le64(q), id = le64(q + 8);
        agent *a = d->peer && d->peer->resolve ? d->peer->resolve(d->peer->ctx, hid, id) : NULL;
        if (!a) {
            char what[96];
            snprintf(what, sizeof what, "an agent address that does not resolve, host %016llx agent",
                     (unsigned long long)hid);
            return dfail(d, at, what, id);
        }
        xfer_put_handle(d->x, XH_AGENT, a); /* takes its own reference */
        agent_unref(a);
        return true;
    }
    default:
        return dfail(d, at, "unknown tag", tag);
    }
}

bool wire_decode(const char *bytes, size_t n, wire_header *h, xfer *x, const wire_peer *peer,
                 char *err, size_t errlen) {
    wdec d = {.p = bytes, .n = n, .x = x, .peer = peer, .err = err, .errlen = errlen};
    const char *q;
    if (n > WIRE_MAX_BYTES)
        return dfail(&d, 0, "too large: bytes", n);
    if (!dtake(&d, WIRE_HEADER_BYTES, &q))
        return false;
    h->version = (uint8_t)q[0];
    h->kind = (uint8_t)q[1];
    if (h->version != WIRE_VERSION)
        return dfail(&d, 0, "unknown version", h->version);
    if (h->kind < WK_SEND || h->kind > WK_LAST)
        return dfail(&d, 1, "unknown kind", h->kind);
    h->from_host = le64(q + 2);
    h->to_agent = le64(q + 10);
    h->from_agent = le64(q + 18);
    h->ref = le64(q + 26);
    bool ok = dec_val(&d, false);
    if (ok && d.pos != n)
        ok = dfail(&d, d.pos, "bytes after the value:", n - d.pos);
    if (ok && x->failed) {
        snprintf(err, errlen, "out of memory decoding a message from the network");
        ok = false;
    }
    if (!ok)
        xfer_clear(x);
    return ok;
}
