/*
 * test_rt.h - what tests that run a runtime share: start one with N
 * workers (time and I/O on), stop it (drain, 30 s), and wait for a counter
 * to reach a value (up to 20 s, so a hang becomes a failure, not a stuck
 * test).
 */
#ifndef MS_TEST_RT_H
#define MS_TEST_RT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ms.h"

static inline ms_runtime *start_config(const ms_config *cfg) {
    ms_runtime *rt = NULL;
    ms_error err;
    if (ms_runtime_new(cfg, &rt, &err) != 0) {
        fprintf(stderr, "runtime: %s\n", err.message);
        exit(1);
    }
    return rt;
}

static inline ms_runtime *start(uint32_t workers) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    return start_config(&cfg);
}

static inline void stop(ms_runtime *rt) {
    ms_shutdown_report rep;
    if (ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, 30000, &rep) != 0)
        fprintf(stderr, "shutdown left threads running\n");
    ms_runtime_free(rt);
}

static inline bool wait_int(_Atomic int *flag, int want) {
    for (int i = 0; i < 40000 && atomic_load(flag) < want; i++)
        usleep(500);
    return atomic_load(flag) >= want;
}

#endif
