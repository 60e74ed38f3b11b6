/*
 * paths.c - where the host's Lua modules are (see paths.h).
 *
 * An installed ms-host must work from any working directory and from any
 * prefix it was installed or unpacked into, so it looks beside its own
 * executable first (/proc/self/exe), the way relocatable programs do; the
 * compiled-in source directory keeps the build tree working without an
 * install.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

#ifndef MS_LUA_DIR
#define MS_LUA_DIR "lua"
#endif

/* Written once under pthread_once, read-only after. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_lua_dir[PATH_MAX];

static bool has_modules(const char *dir) {
    char probe[PATH_MAX + 32];
    if (snprintf(probe, sizeof probe, "%s/ms/profile.lua", dir) >= (int)sizeof probe)
        return false;
    return access(probe, R_OK) == 0;
}

static void resolve(void) {
    const char *env = getenv("MS_LUA_DIR");
    if (env && *env && strlen(env) < sizeof g_lua_dir) {
        strcpy(g_lua_dir, env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0'; /* BINDIR */
            char candidate[PATH_MAX + 32], real[PATH_MAX];
            snprintf(candidate, sizeof candidate, "%s/../share/ms-host/lua", exe);
            if (has_modules(candidate) && realpath(candidate, real)) {
                strcpy(g_lua_dir, real);
                return;
            }
        }
    }
    snprintf(g_lua_dir, sizeof g_lua_dir, "%s", MS_LUA_DIR);
}

const char *paths_lua_dir(void) {
    pthread_once(&g_once, resolve);
    return g_lua_dir;
}
