/*
 * thread.c - every runtime thread starts here, so naming, stack size and
 * the start/stop hooks are applied in one place.
 */
#define _GNU_SOURCE
#include "thread.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t ms_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The process's asynchronous signals (the ones a host handles: SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD) are blocked in
 * every runtime thread but the driver, which handles them through libuv:
 * the kernel then delivers them to a thread that waits in the driver's
 * poll or in the application's own wait, never to a worker deep in a
 * task.  (ThreadSanitizer, which defers a signal until its thread makes an
 * intercepted call, otherwise held a SIGTERM for as long as a worker slept
 * in a futex.)  Synchronous signals and SIGPROF (LuaJIT's profiler wants it
 * in the thread that runs Lua) are left alone. */
static void async_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
    sigaddset(set, SIGCHLD);
}

void thr_unblock_signals(void) {
    sigset_t set;
    async_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void *thr_main(void *arg) {
    thr_start st = *(thr_start *)arg;
    free(arg);
    sigset_t set;
    async_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    char osname[16];
    memcpy(osname, st.name, sizeof osname - 1);
    osname[sizeof osname - 1] = '\0';
    pthread_setname_np(pthread_self(), osname);
    if (st.cfg->on_thread_start)
        st.cfg->on_thread_start(st.cfg->hook_ud, st.name);
    /* fn calls thr_stop_hook itself, before it tells the runtime it has
     * exited, so that the hook never runs after shutdown returned. */
    return st.fn(st.arg);
}

void thr_stop_hook(const ms_config *cfg, const char *name) {
    if (cfg->on_thread_stop)
        cfg->on_thread_stop(cfg->hook_ud, name);
}

int thr_spawn(const ms_config *cfg, const char *name, void *(*fn)(void *), void *arg,
              bool detached, pthread_t *tid, ms_error *err) {
    thr_start *st = malloc(sizeof *st);
    if (!st)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory to start thread %s", name);
    st->cfg = cfg;
    snprintf(st->name, sizeof st->name, "%s", name);
    st->fn = fn;
    st->arg = arg;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_attr_setstacksize(&attr, cfg->thread_stack_size);
    if (rc == 0 && detached)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0) {
        pthread_t t;
        rc = pthread_create(&t, &attr, thr_main, st);
        if (rc == 0 && tid)
            *tid = t;
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(st);
        return ms_error_set(err, rc == EAGAIN ? MS_E_THREAD_LIMIT : MS_E_STARTUP_FAILED,
                            "cannot start thread %s (stack %zu bytes): %s", name,
                            cfg->thread_stack_size, strerror(rc));
    }
    return 0;
}
