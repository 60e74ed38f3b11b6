/*
 * lfs.h - ms.fs: files and directories from agents (docs/files.md), each
 * call a job on the blocking pool (fsjob.c) that the calling task waits
 * for and that stopping the agent abandons at once.
 */
#ifndef MS_AGENTS_LFS_H
#define MS_AGENTS_LFS_H

#include <lua.h>

/* Pushes the ms.fs table. */
void lfs_push_module(lua_State *L);
/* Sets the file counters (fsjob.h) as a table `files` in the table at
 * the top of L (ms.metrics()). */
void lfs_push_metrics(lua_State *L);

#endif
