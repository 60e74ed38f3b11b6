/*
 * inject.c - allocation-failure injection, linked only into ms-host-fault
 * (fault/CMakeLists.txt), never into ms-host.
 *
 * ms-host-fault is ms-host's own objects linked with
 *
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,... :
 *       every C allocation made by core/, agents/ and ms-host/ (calls from
 *       those objects only: libuv, LuaJIT, libedit and glibc keep theirs);
 *   -Wl,--wrap=sm_realloc : every allocation of the agents' Lua allocator
 *       (agent_alloc in agents/agent.c hands each block to sm_realloc);
 *   uv_replace_allocator  : libuv's own allocations (set up below, before
 *       the first one);
 *   -Wl,--wrap=lua_newstate : every agent state starts with the JIT off
 *       (see below).
 *
 * Each kind is counted separately, from 1, over the whole process:
 *
 *   MS_FAULT=KIND:N     the N-th allocation of KIND fails (returns NULL),
 *                       once; KIND is lua, c or uv
 *   MS_FAULT=KIND:N+    the N-th and every later allocation of KIND fail
 *   MS_FAULT_REPORT=F   at exit, write "lua=<n> c=<n> uv=<n> failed=<n>
 *                       spared=<n>" to F (how many allocations of each kind
 *                       were made, how many were refused, and how many
 *                       chosen ones were not, see lua_newstate below)
 *   MS_FAULT_QUIET=1    do not print where an allocation was refused
 *   MS_FAULT_JIT=1      leave the JIT on (see below)
 *
 * A refused allocation prints "ms-fault: refused ..." and a backtrace on
 * stderr, so that a failing case of the sweep (fault/sweep.lua) names the
 * allocation site even though the order of allocations varies a little
 * between runs (threads).  A Lua allocation counts when it asks for more
 * memory than the block had (Lua's allocator contract: a shrink never
 * fails), a C allocation when it asks for at least one byte.
 *
 * lua_newstate: Debian 12's LuaJIT crashes freeing a state whose creation
 * ran out of memory after its first allocation (a plain lua_newstate with
 * an allocator that refuses its second block is enough; a refused first
 * block is handled: lua_newstate returns NULL).  So inside lua_newstate
 * only the first allocation may be refused; the others are counted and
 * spared ("spared=" in the report).  MS_FAULT_NEWSTATE=1 refuses them too.
 *
 * The JIT: Debian 12's LuaJIT crashes unwinding a memory error raised in
 * compiled code (docs/host.md, "Memory limits and the JIT"; the host turns
 * the JIT off for agents with a memory limit for that reason).  An
 * injected failure can land anywhere, so every agent state here starts
 * interpreted; MS_FAULT_JIT=1 shows the LuaJIT crash.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <lua.h>
#include <luajit.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

enum { K_LUA, K_C, K_UV, K_COUNT };
static const char *const kind_names[K_COUNT] = {"lua", "c", "uv"};

static _Atomic uint64_t counts[K_COUNT];
static _Atomic uint64_t refused, spared;
/* Inside lua_newstate after its first allocation: see above. */
static __thread int in_newstate;
static bool fail_newstate;
static int fail_kind = -1; /* -1: nothing fails */
static uint64_t fail_at;
static bool fail_on;       /* every allocation from fail_at on */
static bool quiet;
static bool keep_jit;

/* ---- the decision ---- */

static void say_refused(int kind, uint64_t n, size_t size) {
    if (quiet)
        return;
    char line[4200];
    int len = snprintf(line, sizeof line, "ms-fault: refused %s allocation #%llu (%zu bytes)\n",
                       kind_names[kind], (unsigned long long)n, size);
    if (write(STDERR_FILENO, line, (size_t)len) < 0)
        return;
    /* Only the first refusal of a persistent run gets a backtrace. */
    if (fail_on && n != fail_at)
        return;
    /* "  #i FILE +0xOFFSET": fault/sweep.lua turns them into functions and
     * lines with addr2line. */
    void *frames[32];
    int depth = backtrace(frames, 32);
    for (int i = 2; i < depth; i++) {
        Dl_info info;
        if (!dladdr(frames[i], &info) || !info.dli_fname)
            continue;
        len = snprintf(line, sizeof line, "  #%d %s +0x%lx\n", i - 2, info.dli_fname,
                       (unsigned long)((char *)frames[i] - (char *)info.dli_fbase));
        if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0)
            return;
    }
}

/* Inside the Lua allocator: its blocks come from malloc, which must not
 * count as a C allocation too (smalloc.c calls malloc directly in the
 * sanitizer builds, and to refill its caches). */
static __thread bool in_lua_alloc;

/* Counts one allocation of kind; true if it must fail. */
static bool refuse(int kind, size_t size) {
    /* (in_newstate: 1 for lua_newstate's first allocation, 2 after.) */
    if (kind == K_C && in_lua_alloc)
        return false;
    uint64_t n = atomic_fetch_add_explicit(&counts[kind], 1, memory_order_relaxed) + 1;
    if (kind != fail_kind || n < fail_at || (!fail_on && n != fail_at))
        return false;
    if (kind == K_LUA && in_newstate > 1 && !fail_newstate) {
        atomic_fetch_add_explicit(&spared, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&refused, 1, memory_order_relaxed);
    say_refused(kind, n, size);
    return true;
}

/* ---- C allocations of our objects (-Wl,--wrap=...) ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
int __real_vasprintf(char **out, const char *fmt, va_list ap);
int __real_posix_memalign(void **out, size_t align, size_t size);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int __wrap_asprintf(char **out, const char *fmt, ...);
int __wrap_posix_memalign(void **out, size_t align, size_t size);

void *__wrap_malloc(size_t size) {
    if (size && refuse(K_C, size))
        return NULL;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size) {
    if (n && size && refuse(K_C, n * size))
        return NULL;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size) {
    if (size && refuse(K_C, size))
        return NULL;
    return __real_realloc(p, size);
}

char *__wrap_strdup(const char *s) {
    if (refuse(K_C, strlen(s) + 1))
        return NULL;
    return __real_strdup(s);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap) {
    if (refuse(K_C, 0))
        return -1;
    return __real_vasprintf(out, fmt, ap);
}

int __wrap_asprintf(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = __wrap_vasprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

int __wrap_posix_memalign(void **out, size_t align, size_t size) {
    if (size && refuse(K_C, size))
        return ENOMEM;
    return __real_posix_memalign(out, align, size);
}

/* ---- the agents' Lua allocator (-Wl,--wrap=sm_realloc) ---- */

void *__real_sm_realloc(void *p, size_t osize, size_t nsize);
void *__wrap_sm_realloc(void *p, size_t osize, size_t nsize);

void *__wrap_sm_realloc(void *p, size_t osize, size_t nsize) {
    bool no = nsize && (!p || nsize > osize) && refuse(K_LUA, nsize);
    if (in_newstate == 1)
        in_newstate = 2;
    if (no)
        return NULL;
    in_lua_alloc = true;
    void *q = __real_sm_realloc(p, osize, nsize);
    in_lua_alloc = false;
    return q;
}

/* ---- agent states start interpreted (-Wl,--wrap=lua_newstate) ---- */

lua_State *__real_lua_newstate(lua_Alloc f, void *ud);
lua_State *__wrap_lua_newstate(lua_Alloc f, void *ud);

lua_State *__wrap_lua_newstate(lua_Alloc f, void *ud) {
    in_newstate = 1;
    lua_State *L = __real_lua_newstate(f, ud);
    in_newstate = 0;
    if (L && !keep_jit)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    return L;
}

/* ---- libuv's allocations (uv_replace_allocator) ---- */

static void *uv_malloc_fn(size_t size) {
    if (size && refuse(K_UV, size))
        return NULL;
    return __real_malloc(size);
}

static void *uv_realloc_fn(void *p, size_t size) {
    if (size && refuse(K_UV, size))
        return NULL;
    return __real_realloc(p, size);
}

static void *uv_calloc_fn(size_t n, size_t size) {
    if (n && size && refuse(K_UV, n * size))
        return NULL;
    return __real_calloc(n, size);
}

/* ---- set-up and the report ---- */

static const char *report_path;

__attribute__((constructor)) static void fault_init(void) {
    const char *spec = getenv("MS_FAULT");
    if (spec && *spec) {
        const char *colon = strchr(spec, ':');
        for (int k = 0; colon && k < K_COUNT; k++)
            if ((size_t)(colon - spec) == strlen(kind_names[k]) &&
                memcmp(spec, kind_names[k], (size_t)(colon - spec)) == 0)
                fail_kind = k;
        char *end = NULL;
        unsigned long long n = colon ? strtoull(colon + 1, &end, 10) : 0;
        if (fail_kind < 0 || n == 0 || !end || (*end && strcmp(end, "+") != 0)) {
            fprintf(stderr, "ms-fault: MS_FAULT=%s: expected KIND:N or KIND:N+ with KIND lua, "
                            "c or uv and N >= 1\n", spec);
            _exit(2);
        }
        fail_at = n;
        fail_on = *end == '+';
    }
    quiet = getenv("MS_FAULT_QUIET") != NULL;
    keep_jit = getenv("MS_FAULT_JIT") != NULL;
    fail_newstate = getenv("MS_FAULT_NEWSTATE") != NULL;
    report_path = getenv("MS_FAULT_REPORT");
    /* backtrace() loads its unwinder on first use: do it now, not inside
     * an allocation refused while a lock is held. */
    void *frame[1];
    backtrace(frame, 1);
    uv_replace_allocator(uv_malloc_fn, uv_realloc_fn, uv_calloc_fn, free);
}

__attribute__((destructor)) static void fault_report(void) {
    if (!report_path)
        return;
    FILE *f = fopen(report_path, "w");
    if (!f)
        return;
    fprintf(f, "lua=%llu c=%llu uv=%llu failed=%llu spared=%llu\n",
            (unsigned long long)atomic_load(&counts[K_LUA]),
            (unsigned long long)atomic_load(&counts[K_C]),
            (unsigned long long)atomic_load(&counts[K_UV]),
            (unsigned long long)atomic_load(&refused),
            (unsigned long long)atomic_load(&spared));
    fclose(f);
}
