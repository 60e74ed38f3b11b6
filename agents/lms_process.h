/*
 * lms_process.h - ms.process: child processes for agents, with their
 * stdin, stdout and stderr as ms.net sockets (lms_process.c).
 */
#ifndef MS_AGENTS_LMS_PROCESS_H
#define MS_AGENTS_LMS_PROCESS_H

#include <lua.h>

/* Pushes the ms.process table (built on first use by ms's __index). */
void lms_process_push_module(lua_State *L);
/* The process handle's metatable (lms.c's table of metatables). */
void lms_build_process_mt(lua_State *L);

#endif
