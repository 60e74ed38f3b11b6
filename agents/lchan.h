/*
 * lchan.h - same-agent channels: while a channel's handle has never left
 * the agent that made it, its values stay Lua values in that state and
 * waiting tasks are handed values directly, with no lock and no encoding.
 */
#ifndef MS_AGENTS_LCHAN_H
#define MS_AGENTS_LCHAN_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"
#include "ms.h"

lchan *lchan_new(size_t capacity);
void lchan_unref(lchan *lc);
/* True while every user of the channel is a coroutine of this state. */
bool lchan_is_local(const lchan *lc);
/* Moves the local channel's values and waiters onto ch (in order) and
 * makes it shared for good.  The handle is at idx of L. */
bool lchan_share(lua_State *L, int idx, lchan *lc, ms_chan *ch, char *err, size_t errlen);
/* Replaces the value to send (at 2) by what a receiver of this agent
 * gets: itself if plain, else a copy; raises (naming fname) on a value
 * that cannot be sent.  May share the channel (a copy of its handle). */
void lchan_prepare(lua_State *L, const char *fname);
/* The channel methods on a local channel: the handle at 1, the value (send)
 * at 2, the timeout at 3 (send) or 2 (recv), already checked.  Each returns
 * the number of results, or yields. */
int lchan_send(lua_State *L, lchan *lc, double timeout);
int lchan_try_send(lua_State *L, lchan *lc);
int lchan_recv(lua_State *L, lchan *lc, double timeout);
int lchan_try_recv(lua_State *L, lchan *lc);
void lchan_close(lua_State *L, lchan *lc);
size_t lchan_len(const lchan *lc);
/* Whether the fast path may run here: in a task of an agent, on the
 * agent's thread (not on the blocking pool, not outside ms.run). */
bool lchan_can_run(lua_State *L);

#endif
