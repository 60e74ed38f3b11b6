/*
 * xfer.h - a Lua value copied out of one agent's state to be rebuilt in
 * another's: plain data by copy, shared objects (agents, semaphores,
 * channels, reply slots) by reference.  The format is the host's own
 * (one process, one build): see xfer.c.
 */
#ifndef MS_AGENTS_XFER_H
#define MS_AGENTS_XFER_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd.h"

/* XH_SOCK: a socket or listener (lms_net.c) that moves to the receiver:
 * a successful encode kills the sender's handle (lh_after_export). */
typedef enum xh_type { XH_AGENT = 1, XH_SEM, XH_CHAN, XH_REPLY, XH_SOCK } xh_type;

typedef struct xhandle {
    xh_type type;
    void *ptr;                  /* one reference owned by the blob */
} xhandle;

#define XFER_INLINE 96

/* The blob's tags (xfer.c's format), named here for the cluster's wire
 * encoder (cluster_wire.c), which reads blobs without a Lua state. */
enum xfer_tag { XT_NIL, XT_FALSE, XT_TRUE, XT_NUM, XT_STR, XT_TABLE, XT_HANDLE };
#define XFER_MAX_DEPTH 100

struct xfer {
    char *buf;                  /* inline until a value outgrows it */
    size_t len, cap;
    xhandle *handles;
    uint32_t nhandles, hcap;
    bool failed;                /* a xfer_put_* ran out of memory: see xfer_put_table */
    char inline_buf[XFER_INLINE]; /* most messages fit: no second malloc */
};

/* Copies the value at idx into x.  On failure returns false with a message
 * in err naming the path of the offending value ("args.cb is a function"),
 * and x emptied; x->failed then tells that memory ran out. */
bool xfer_encode(lua_State *L, int idx, xfer *x, const char *what, char *err, size_t errlen);
/* Pushes the value; the handles' references move to the new userdata.
 * Allocates in L, so it can raise (memory error, a finalizer run by the
 * collector): call it protected (agent.c's poll is), with x held
 * (hold.h) if it must not leak then.  Trusts nothing in x: a blob
 * that is not exactly one value as xfer_encode writes it raises
 * "malformed message at byte N of M: ...". */
void xfer_decode(lua_State *L, xfer *x);
/* Frees the buffer and releases handles not taken by a decode. */
void xfer_clear(xfer *x);
xfer *xfer_new(void);
/* Room for bytes of encoding and handles handles in the empty x, so that
 * puts within it allocate nothing; false without memory. */
bool xfer_reserve(xfer *x, size_t bytes, uint32_t handles);
void xfer_init(xfer *x);
void xfer_free(xfer *x);
/* Building a blob by hand (no Lua state): a table of n pairs, then keys
 * and values.  A put that runs out of memory sets x->failed and every
 * later put does nothing, so a builder checks x->failed once at the end
 * (a failed blob must not be sent: it is torn). */
void xfer_put_table(xfer *x, uint32_t pairs);
void xfer_put_str(xfer *x, const char *s);
void xfer_put_lstr(xfer *x, const char *s, size_t n);
/* The bytes of a blob that holds one string (and their length in *len),
 * or NULL if it holds anything else.  Points into x. */
const char *xfer_get_lstr(const xfer *x, size_t *len);
void xfer_put_num(xfer *x, double d);
void xfer_put_bool(xfer *x, bool b);
void xfer_put_nil(xfer *x);
void xfer_put_handle(xfer *x, xh_type type, void *ptr); /* takes a ref */

#endif
