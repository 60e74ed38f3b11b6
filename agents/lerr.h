/*
 * lerr.h - error values: the tables agents see for failures
 * ({ kind, code, message, traceback, severity, recovery }, docs/errors.md),
 * and reading a raised value without running any of its code.
 */
#ifndef MS_AGENTS_LERR_H
#define MS_AGENTS_LERR_H

#include <lua.h>

/* Pushes { kind, code, message, traceback, severity,
 * recovery = { strategy, ... } } with the ms.error metatable. */
void lerr_push(lua_State *L, int code, const char *message, const char *traceback);
/* The message of the raised value at the top of co (malloc'd, never
 * NULL unless out of memory): a string as it is, a table's raw `message`
 * field if that is a string, else a description of its type.  No
 * metamethod runs and nothing is allocated in co: safe on a hostile
 * value, outside a protected call. */
char *lerr_message(lua_State *co);
/* The traceback of co (malloc'd), built in L.  Allocates in L: call it
 * protected. */
char *lerr_traceback(lua_State *L, lua_State *co);

#endif
