/*
 * lms_task.h - ms's tasks and time: ms.spawn and task handles, yield,
 * sleep, now, timeout, interval, blocking.
 */
#ifndef MS_AGENTS_LMS_TASK_H
#define MS_AGENTS_LMS_TASK_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>

#include "fwd.h"
#include "ltask.h"

/* A task's handle (ms.spawn's return value, a full userdata).  The task
 * holds it in the registry until it finishes; then the outcome is copied
 * into it and lt is let go, so that the handle needs no finalizer (a
 * finalizer on every task was a quarter of the time of spawning and
 * joining 10,000 tasks).  Values that need Lua storage (a result that is
 * not a number or boolean, several results, an error value) are in the
 * userdata's environment table at [1].  Only a failed task's handle gets
 * a metatable with __gc: to report a failure nobody joined.
 * Agent thread only. */
typedef struct task_handle {
    ltask *lt;                  /* a reference; NULL once finished */
    uint64_t id;
    lt_status status;           /* once finished */
    int nresults;               /* -1: env[1] is {n=, ...}; else 0 or 1 */
    int result_type;            /* one result: LUA_TNUMBER/LUA_TBOOLEAN in
                                   result_num, anything else in env[1] */
    double result_num;
    bool observed;              /* a join has seen the outcome */
} task_handle;

/* Pushes a new handle for lt and anchors it (lt->handle_ref). */
void task_handle_push(lua_State *L, ltask *lt);
/* Moves the n values at the top of co into lt's handle as its results
 * (or drops them when lt has no handle).  L is the agent's state. */
void task_handle_set_results(lua_State *L, ltask *lt, lua_State *co, int n);
/* Takes the error value at the top of L into lt's handle (pops it). */
void task_handle_set_error(lua_State *L, ltask *lt);
/* lt has finished with status st: the handle gets the status and lets go
 * of lt, and the anchor goes. */
void task_handle_release(lua_State *L, ltask *lt, lt_status st);
/* Pushes the outcome in the finished task's handle at hidx (an absolute
 * index) onto co: true, results... / nil, err / nil, "aborted".  Returns
 * how many values. */
int task_handle_push_outcome(lua_State *co, int hidx);

extern const luaL_Reg lms_task_functions[];
void lms_build_task_mt(lua_State *L);
void lms_build_failed_task_mt(lua_State *L);

#endif
