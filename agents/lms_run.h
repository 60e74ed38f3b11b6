/*
 * lms_run.h - ms.run (a host from plain LuaJIT), ms.on_shutdown and
 * ms.shutdown.
 */
#ifndef MS_AGENTS_LMS_RUN_H
#define MS_AGENTS_LMS_RUN_H

#include <lauxlib.h>

extern const luaL_Reg lms_run_functions[];

#endif
