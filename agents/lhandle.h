/*
 * lhandle.h - shared objects (agents, semaphores, channels, reply slots)
 * as Lua userdata: pushing, checking, reference counts, and the hand-over
 * of a handle to another agent.
 */
#ifndef MS_AGENTS_LHANDLE_H
#define MS_AGENTS_LHANDLE_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"
#include "xfer.h"

/* The userdata behind a handle.  lc: a channel made by ms.channel in this
 * state carries its same-agent fast path (lchan.c); NULL otherwise. */
typedef struct lhandle {
    xh_type type;
    void *ptr;                  /* one reference, NULL once released */
    lchan *lc;                  /* a reference (lchan_unref) */
} lhandle;

void lh_push_agent(lua_State *L, agent *a);       /* takes a reference */
agent *lh_check_agent(lua_State *L, int idx);
/* An agent handle, or a table standing for an agent (a supervisor's
 * handle: its raw field `agent`). */
agent *lh_check_agent_like(lua_State *L, int idx);
lhandle *lh_check(lua_State *L, int idx, xh_type type);
/* Takes over a reference to ptr, also when it raises (a memory error):
 * the reference is then released (hold.h). */
void lh_push_handle(lua_State *L, xh_type type, void *ptr);
/* Pushes a handle of type with no object yet: for an object that must not
 * exist before its handle does (a spawned agent, which would run on
 * unknown to its spawner if making the handle raised).  The caller stores
 * its reference in ->ptr, which cannot raise. */
lhandle *lh_new(lua_State *L, xh_type type);
void *lh_to_handle(lua_State *L, int idx, xh_type *type);   /* NULL if not one */
void lh_ref_handle(xh_type type, void *ptr);
void lh_unref_handle(xh_type type, void *ptr);
/* xfer_encode is about to copy the handle at idx out of this state: a
 * local channel becomes shared (lchan_share).  false + err on failure. */
bool lh_before_export(lua_State *L, int idx, char *err, size_t errlen);
/* xfer_encode succeeded: the sockets in x move out of this agent (their
 * handles here die; lms_net.c). */
void lh_after_export(xfer *x);
/* The metamethods every handle metatable has: __gc and __eq. */
int lh_gc(lua_State *L);
int lh_eq(lua_State *L);

#endif
