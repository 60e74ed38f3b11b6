/*
 * lms_sync.h - ms's semaphores (and their permits) and channels.
 */
#ifndef MS_AGENTS_LMS_SYNC_H
#define MS_AGENTS_LMS_SYNC_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "ms.h"

extern const luaL_Reg lms_sync_functions[];
void lms_build_semaphore_mt(lua_State *L);
void lms_build_channel_mt(lua_State *L);
void lms_build_permit_mt(lua_State *L);
/* A permit object that releases its n permits when released or collected;
 * takes over one reference to s. */
void lh_push_permit(lua_State *L, ms_sem *s, uint64_t n);

#endif
