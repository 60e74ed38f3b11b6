/*
 * lms.h - the `ms` Lua module: its table, the metatables of its handles
 * (built the first time a state needs each), and argument helpers shared
 * by its parts (lms_task.c, lms_agent.c, lms_sync.c, lms_metrics.c,
 * lms_run.c).
 */
#ifndef MS_AGENTS_LMS_H
#define MS_AGENTS_LMS_H

#include <lauxlib.h>
#include <lua.h>

/* The metatables of ms's userdata. */
typedef enum lms_mt {
    LMS_MT_AGENT,
    LMS_MT_REPLY,
    LMS_MT_SEMAPHORE,
    LMS_MT_CHANNEL,
    LMS_MT_PERMIT,
    LMS_MT_TASK,
    LMS_MT_FAILED_TASK,
    LMS_MT_ERROR,
    LMS_MT_SOCKET,
    LMS_MT_LISTENER,
    LMS_MT_PROCESS,
    LMS_MT_UDP,
    LMS_MT_COUNT
} lms_mt;

/* The entry point of the ms module, and the one symbol build/agents/ms.so
 * exports (the agents layer is built with hidden visibility). */
__attribute__((visibility("default"))) int luaopen_ms(lua_State *L);
/* Pushes the state's metatable of that kind. */
void lms_push_mt(lua_State *L, lms_mt which);
/* The userdata at idx if it has that metatable; raises luaL_checkudata's
 * type error otherwise.  Called from a method whose closure carries the
 * metatable as upvalue 1, the check is one comparison. */
void *lms_check_udata(lua_State *L, int idx, lms_mt which);
/* For the metatable builders: a handle metatable (__gc, __eq, optional
 * __tostring and __call, an __index table with methods), left on the
 * stack; and methods added to its __index as closures carrying it. */
void lms_new_handle_mt(lua_State *L, const char *name, const luaL_Reg *methods, int nmethods,
                       lua_CFunction tostring, lua_CFunction call);
void lms_add_checked_methods(lua_State *L, const luaL_Reg *methods);
/* An optional timeout in seconds at idx (nil: none, -1). */
double lms_opt_timeout(lua_State *L, int idx);
/* A number of seconds >= 0 at idx. */
double lms_check_seconds(lua_State *L, int idx);

#endif
