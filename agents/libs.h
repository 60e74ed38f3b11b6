/*
 * libs.h - the standard libraries of an agent's state, opened on first
 * use: a new agent gets only the base library, which keeps a spawn cheap
 * and an idle agent small.
 */
#ifndef MS_AGENTS_LIBS_H
#define MS_AGENTS_LIBS_H

#include <lua.h>

/* Opens the base library and installs the lazy loaders for the others,
 * package and ms. */
void libs_open(lua_State *L);

/* Puts back the hook an agent's state runs with: the sandbox's slices for
 * a sandboxed agent, none otherwise (after a time slice, agent.c). */
void libs_reset_hook(lua_State *L);

#endif
