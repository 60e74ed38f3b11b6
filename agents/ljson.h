/*
 * ljson.h - ms.json: encode Lua values as JSON text and decode JSON text
 * into Lua values (docs/json.md), with the value rules of messages.
 */
#ifndef MS_AGENTS_LJSON_H
#define MS_AGENTS_LJSON_H

#include <lua.h>

/* The deepest nesting either direction accepts: deeper input is refused
 * with an error, never followed down the C stack.  cJSON's own limit
 * (CJSON_NESTING_LIMIT) is the same. */
#define LJSON_MAX_DEPTH 1000

/* Pushes the ms.json table (encode, decode, null). */
void ljson_push_module(lua_State *L);

#endif
