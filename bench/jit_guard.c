/*
 * jit_guard - what making compiled code stoppable costs (agents/preempt.c):
 * the same Lua kernels in a fresh JIT state with and without the line-mode
 * guards that agent states get, in interleaved rounds (off, on, off, on...)
 * on one thread, no runtime.
 *
 * Prints, per kernel, jit_guard_KERNEL_off and jit_guard_KERNEL_on as
 * `NAME median_us=... min_us=... n=...`, then the median of the per-round
 * ratios on/off with its range:
 *   jit_guard_KERNEL ratio_median=... ratio_min=... ratio_max=... rounds=...
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "preempt.h"

#define ROUNDS 11

typedef struct kernel {
    const char *name;
    const char *src;
} kernel;

static const kernel kernels[] = {
    {"calls", "local function f(a, b)\n"
              "  local c = a * b\n"
              "  c = c % 1000\n"
              "  return c + 1\n"
              "end\n"
              "local x = 0\n"
              "for i = 1, 3e7 do\n"
              "  x = x + f(i, 3)\n"
              "end\n"
              "return x\n"},
    {"sieve", "local N, count = 1e6, 0\n"
              "for rep = 1, 4 do\n"
              "  local s = {}\n"
              "  for i = 2, N do s[i] = true end\n"
              "  for i = 2, N do\n"
              "    if s[i] then\n"
              "      count = count + 1\n"
              "      for j = i * i, N, i do\n"
              "        s[j] = false\n"
              "      end\n"
              "    end\n"
              "  end\n"
              "end\n"
              "return count\n"},
    {"records", "local t = {}\n"
                "for i = 1, 2e5 do\n"
                "  t[#t + 1] = { id = i, name = 'x' }\n"
                "end\n"
                "local sum = 0\n"
                "for _, v in ipairs(t) do\n"
                "  sum = sum + v.id\n"
                "end\n"
                "return sum\n"},
    {"strings", "local parts, n = {}, 0\n"
                "for i = 1, 3e5 do\n"
                "  parts[#parts + 1] = string.format('%d:%s', i, 'v')\n"
                "  if #parts == 1000 then\n"
                "    n = n + #table.concat(parts, ',')\n"
                "    parts = {}\n"
                "  end\n"
                "end\n"
                "return n\n"},
};

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* One run of k in a fresh state: microseconds, or -1 on error. */
static double run_once(const kernel *k, int guarded) {
    lua_State *L = luaL_newstate();
    if (!L)
        return -1;
    luaL_openlibs(L);
    if (guarded)
        preempt_prepare(L);
    if (luaL_loadstring(L, k->src) != 0) {
        fprintf(stderr, "jit_guard %s: %s\n", k->name, lua_tostring(L, -1));
        lua_close(L);
        return -1;
    }
    double t0 = now_us();
    int rc = lua_pcall(L, 0, 0, 0);
    double t = now_us() - t0;
    if (rc != 0)
        fprintf(stderr, "jit_guard %s: %s\n", k->name, lua_tostring(L, -1));
    lua_close(L);
    return rc == 0 ? t : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (!preempt_init()) {
        fprintf(stderr, "jit_guard: this LuaJIT's layout is not the one preempt.c knows\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof kernels / sizeof *kernels; i++) {
        const kernel *k = &kernels[i];
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                wanted |= strcmp(argv[a], k->name) == 0;
            if (!wanted)
                continue;
        }
        double off[ROUNDS], on[ROUNDS], ratio[ROUNDS];
        run_once(k, 0); /* warm the caches and the allocator */
        for (int r = 0; r < ROUNDS; r++) {
            off[r] = run_once(k, 0);
            on[r] = run_once(k, 1);
            if (off[r] < 0 || on[r] < 0)
                return 1;
            ratio[r] = on[r] / off[r];
        }
        double min_off = off[0], min_on = on[0];
        for (int r = 1; r < ROUNDS; r++) {
            min_off = off[r] < min_off ? off[r] : min_off;
            min_on = on[r] < min_on ? on[r] : min_on;
        }
        printf("jit_guard_%s_off median_us=%.0f min_us=%.0f n=%d\n", k->name, median(off, ROUNDS),
               min_off, ROUNDS);
        printf("jit_guard_%s_on median_us=%.0f min_us=%.0f n=%d\n", k->name, median(on, ROUNDS),
               min_on, ROUNDS);
        double rmed = median(ratio, ROUNDS);
        printf("jit_guard_%s ratio_median=%.3f ratio_min=%.3f ratio_max=%.3f rounds=%d\n", k->name,
               rmed, ratio[0], ratio[ROUNDS - 1], ROUNDS);
        fflush(stdout);
    }
    return 0;
}
