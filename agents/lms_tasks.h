/*
 * lms_tasks.h - ms.tasks([filter]), the live task dump, and
 * ms.profiler.run{...}, a profile of one agent, from Lua.
 */
#ifndef MS_AGENTS_LMS_TASKS_H
#define MS_AGENTS_LMS_TASKS_H

#include <lauxlib.h>

extern const luaL_Reg lms_tasks_functions[];
/* Sets ms.profiler (its run function) in the table at the top of L. */
void lms_tasks_register(lua_State *L);

#endif
