/*
 * state_floor - what one LuaJIT state costs before an agent does anything:
 * the floor under agent spawn (A1).  Single thread, no runtime.  Each
 * workload creates and closes 1,000 states with a malloc-based allocator
 * (as agents use; luaL_newstate's own allocator maps memory per state and
 * is slower still) and opens some of the standard libraries in between.
 *
 *   state_1k_bare               lua_newstate + lua_close
 *   state_1k_base               ... + the base library
 *   state_1k_base_string_table  ... + string, table and package
 *
 * Prints NAME median_us=... min_us=... n=... per workload (time for 1,000
 * states); compare with A1_spawn_join_agents_1k and Erlang's process
 * spawn in the same run.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STATES 1000
#define RUNS 21

static void *plain_alloc(void *ud, void *p, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void open_lib(lua_State *L, lua_CFunction f, const char *name) {
    lua_pushcfunction(L, f);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static void run(const char *name, int libs) {
    double v[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_us();
        for (int i = 0; i < STATES; i++) {
            lua_State *L = lua_newstate(plain_alloc, NULL);
            if (!L) {
                fprintf(stderr, "state_floor: lua_newstate failed\n");
                exit(1);
            }
            if (libs >= 1)
                open_lib(L, luaopen_base, "");
            if (libs >= 2) {
                open_lib(L, luaopen_string, LUA_STRLIBNAME);
                open_lib(L, luaopen_table, LUA_TABLIBNAME);
                open_lib(L, luaopen_package, LUA_LOADLIBNAME);
            }
            lua_close(L);
        }
        v[r] = now_us() - t0;
    }
    qsort(v, RUNS, sizeof *v, cmp_double);
    printf("%s median_us=%.1f min_us=%.1f n=%d\n", name, v[RUNS / 2], v[0], RUNS);
}

int main(void) {
    run("state_1k_bare", 0);
    run("state_1k_base", 1);
    run("state_1k_base_string_table", 2);
    return 0;
}
