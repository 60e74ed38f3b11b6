/*
 * lms_tasks.h - ms.tasks([filter]): the live task dump from Lua.
 */
#ifndef MS_AGENTS_LMS_TASKS_H
#define MS_AGENTS_LMS_TASKS_H

#include <lauxlib.h>

extern const luaL_Reg lms_tasks_functions[];

#endif
