/*
 * repl_term.h - the REPL's terminal (ms.repl_term): line editing,
 * history, raw keys for top().
 */
#ifndef MS_HOST_REPL_TERM_H
#define MS_HOST_REPL_TERM_H

#include <lua.h>

int luaopen_ms_repl_term(lua_State *L);

#endif
