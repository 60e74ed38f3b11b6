/*
 * paths.h - where the host's Lua modules are (lua/ms/NAME.lua, and through
 * them the profiles, which ms.profile finds beside its own file).
 */
#ifndef MS_AGENTS_PATHS_H
#define MS_AGENTS_PATHS_H

/* The directory holding ms/NAME.lua, resolved once: $MS_LUA_DIR if set;
 * else, for an installed ms-host, BINDIR/../share/ms-host/lua beside the
 * running executable, if it holds ms/profile.lua; else the source tree's
 * lua/ the build was made from.  Never NULL; any thread. */
const char *paths_lua_dir(void);

#endif
