/*
 * ms-demo - a tour of the core until the Lua host exists: spawns a fan of
 * tasks that yield and join each other, runs blocking jobs, shuts down, and
 * prints the metrics as JSON.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "ms.h"

#define CHILDREN 10000
#define BLOCKING_JOBS 64

typedef struct child { int yields_left; long value; } child;

static ms_poll child_poll(ms_cx *cx, void *state) {
    child *c = state;
    if (c->yields_left-- > 0)
        return ms_cx_yield(cx);
    ms_cx_set_output(cx, (void *)(c->value * 2));
    return MS_POLL_READY;
}

typedef struct parent {
    ms_task *kids[CHILDREN];
    child states[CHILDREN];
    int spawned, joined;
    long sum;
} parent;

static ms_poll parent_poll(ms_cx *cx, void *state) {
    parent *p = state;
    ms_runtime *rt = ms_cx_runtime(cx);
    for (; p->spawned < CHILDREN; p->spawned++) {
        child *c = &p->states[p->spawned];
        c->yields_left = p->spawned % 4;
        c->value = p->spawned;
        if (ms_spawn(rt, child_poll, c, NULL, &p->kids[p->spawned]) != 0)
            return ms_cx_fail(cx, MS_E_TASK_FAILED, "spawn %d failed", p->spawned);
    }
    while (p->joined < CHILDREN) {
        void *out;
        int result;
        ms_error err;
        if (ms_task_poll_join(p->kids[p->joined], cx, &out, &result, &err) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        if (result != 0)
            return ms_cx_fail(cx, result, "child %d: %s", p->joined, err.message);
        p->sum += (long)out;
        ms_task_release(p->kids[p->joined++]);
    }
    ms_cx_set_output(cx, (void *)p->sum);
    return MS_POLL_READY;
}

static void *blocking_job(void *arg) {
    long n = (long)arg, acc = 0;
    for (long i = 0; i < 100000; i++)
        acc += i % (n + 1);
    return (void *)acc;
}

int main(void) {
    ms_config cfg;
    ms_config_default(&cfg);
    ms_runtime *rt;
    ms_error err;
    if (ms_runtime_new(&cfg, &rt, &err) != 0) {
        fprintf(stderr, "ms-demo: %s: %s\n", ms_err_name(err.code), err.message);
        return 1;
    }
    printf("ms-demo: runtime with %u workers, up to %u blocking threads\n", cfg.worker_threads,
           cfg.max_blocking_threads);

    ms_task *jobs[BLOCKING_JOBS];
    for (long i = 0; i < BLOCKING_JOBS; i++)
        if (ms_spawn_blocking(rt, blocking_job, (void *)i, &jobs[i]) != 0)
            return 1;

    parent *p = calloc(1, sizeof *p);
    ms_task *root;
    if (!p || ms_spawn(rt, parent_poll, p, NULL, &root) != 0)
        return 1;
    void *out;
    if (ms_task_join(root, -1, &out, &err) != 0) {
        fprintf(stderr, "ms-demo: %s\n", err.message);
        return 1;
    }
    long expect = (long)CHILDREN * (CHILDREN - 1);
    printf("ms-demo: %d tasks joined, sum %ld (expected %ld)\n", CHILDREN, (long)out, expect);
    ms_task_release(root);
    free(p);

    long blocking_sum = 0;
    for (int i = 0; i < BLOCKING_JOBS; i++) {
        if (ms_task_join(jobs[i], -1, &out, &err) != 0)
            return 1;
        blocking_sum += (long)out;
        ms_task_release(jobs[i]);
    }
    printf("ms-demo: %d blocking jobs joined (checksum %ld)\n", BLOCKING_JOBS, blocking_sum);

    ms_metrics *m = ms_metrics_snapshot(rt);
    char *json = m ? ms_metrics_to_json(m, true) : NULL;
    if (json)
        printf("%s\n", json);
    ms_free(json);
    ms_metrics_free(m);

    ms_shutdown_report rep;
    int rc = ms_runtime_shutdown(rt, MS_SHUTDOWN_DRAIN, cfg.shutdown_timeout_ms, &rep);
    printf("ms-demo: shutdown %s in %llu ms\n", rc == 0 ? "clean" : "timed out",
           (unsigned long long)rep.elapsed_ms);
    ms_runtime_free(rt);
    return (long)out == 0 || rc != 0 ? 1 : 0;
}
