/*
 * lms_agent.h - ms's agents and messages: ms.agent.spawn, agent handles
 * and their methods, ms.recv, reply handles, monitors.
 */
#ifndef MS_AGENTS_LMS_AGENT_H
#define MS_AGENTS_LMS_AGENT_H

#include <lauxlib.h>
#include <lua.h>

extern const luaL_Reg lms_agent_functions[];   /* ms.* */
extern const luaL_Reg lms_agent_module[];      /* ms.agent.* */
void lms_build_agent_mt(lua_State *L);
void lms_build_reply_mt(lua_State *L);

/* Pushes { row, ... } for every live agent (ms.agents()). */
void lms_push_agents(lua_State *L);

#endif
