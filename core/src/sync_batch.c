/*
 * sync_batch.c - two ways to run a group of tasks: a batch (run N, join all,
 * outputs in order, the first failure reported) and a fan-out (run N,
 * each result delivered through a channel as it finishes: the fan-in).
 *
 * Both start their tasks with ms_spawn, or through an ms_taskq when one is
 * given (then at most its max run at once, at the given priority).  From
 * the call on, the group owns every task state: if starting one fails,
 * the states not started are dropped at once and the started tasks are
 * aborted (so their drop functions run too), and the error is returned.
 *
 * A batch is a list of join handles joined in index order (by a task with
 * ms_batch_poll_join, or by a plain thread with ms_batch_join).
 *
 * A fan-out wraps each task: the wrapper runs the user's poll function and
 * records the outcome (output, or the failure code and message it read
 * from the poll context); its drop function, which runs however the task
 * ended, sends the record to the results channel.  Records are allocated
 * and the channel's ring reserved before any task starts, so delivering a
 * result never allocates and none is lost.  The last task to end closes
 * the channel: a fan-in loop receives until MS_E_CLOSED.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"
#include "sync_chan.h"
#include "task.h"

static int batch_start(ms_runtime *rt, ms_taskq *q, int priority, const ms_task_spec *spec,
                       ms_task **handle) {
    if (q)
        return ms_taskq_submit(q, priority, spec->poll, spec->state, spec->drop, handle);
    return ms_spawn(rt, spec->poll, spec->state, spec->drop, handle);
}

/* ---- batch ---- */

struct ms_batch {
    size_t n;
    size_t next;            /* handles before it are joined and released */
    ms_task **handles;
    void **outputs;
    int rc;                 /* the first failure in index order, or 0 */
    ms_error err;           /* its message */
};

static void batch_destroy(ms_batch *b) {
    for (size_t i = b->next; i < b->n; i++)
        ms_task_release(b->handles[i]);
    free(b->handles);
    free(b->outputs);
    free(b);
}

int ms_batch_spawn(ms_runtime *rt, ms_taskq *q, int priority, size_t n,
                   const ms_task_spec *specs, ms_batch **out) {
    if ((!rt && !q) || !out || (n && !specs))
        return MS_E_INVALID_ARGUMENT;
    ms_batch *b = calloc(1, sizeof *b);
    if (b) {
        b->handles = calloc(n ? n : 1, sizeof *b->handles);
        b->outputs = calloc(n ? n : 1, sizeof *b->outputs);
    }
    int rc = (!b || !b->handles || !b->outputs) ? MS_E_NO_MEMORY : 0;
    size_t started = 0;
    while (rc == 0 && started < n) {
        rc = batch_start(rt, q, priority, &specs[started], &b->handles[started]);
        if (rc == 0)
            started++;
    }
    if (rc == 0) {
        b->n = n;
        *out = b;
        return 0;
    }
    for (size_t i = started; i < n; i++)
        if (specs[i].drop)
            specs[i].drop(specs[i].state);
    if (b) {
        for (size_t i = 0; i < started; i++)
            ms_task_abort(b->handles[i]);
        b->n = started;
        if (b->handles && b->outputs)
            batch_destroy(b);
        else {
            free(b->handles);
            free(b->outputs);
            free(b);
        }
    }
    return rc;
}

/* Records handle `next`'s result (joined with result r) and releases it. */
static void batch_take(ms_batch *b, void *output, int r, const ms_error *e) {
    b->outputs[b->next] = output;
    if (r != 0 && b->rc == 0) {
        b->rc = r;
        b->err = *e;
    }
    ms_task_release(b->handles[b->next]);
    b->handles[b->next] = NULL;
    b->next++;
}

static int batch_result(ms_batch *b, void **outputs, ms_error *err) {
    if (outputs && b->n)
        memcpy(outputs, b->outputs, b->n * sizeof *outputs);
    if (b->rc != 0 && err)
        *err = b->err;
    return b->rc;
}

ms_poll ms_batch_poll_join(ms_batch *b, ms_cx *cx, void **outputs, int *rc, ms_error *err) {
    while (b->next < b->n) {
        void *out = NULL;
        int r = 0;
        ms_error e;
        e.code = 0;
        e.message[0] = '\0';
        if (ms_task_poll_join(b->handles[b->next], cx, &out, &r, &e) == MS_POLL_PENDING)
            return MS_POLL_PENDING;
        batch_take(b, out, r, &e);
    }
    int r = batch_result(b, outputs, err);
    if (rc)
        *rc = r;
    return MS_POLL_READY;
}

int ms_batch_join(ms_batch *b, int64_t timeout_ms, void **outputs, ms_error *err) {
    uint64_t deadline = timeout_ms >= 0 ? ms_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    while (b->next < b->n) {
        int64_t left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = ms_now_ns();
            left = now >= deadline ? 0 : (int64_t)((deadline - now) / 1000000u);
        }
        void *out = NULL;
        ms_error e;
        e.code = 0;
        e.message[0] = '\0';
        int r = ms_task_join(b->handles[b->next], left, &out, &e);
        if (r == MS_E_TIMEOUT)
            return ms_error_set(err, MS_E_TIMEOUT,
                                "batch: %zu of %zu tasks joined within %lld ms", b->next, b->n,
                                (long long)timeout_ms);
        if (r == MS_E_WRONG_THREAD) {
            if (err)
                *err = e;
            return r;
        }
        batch_take(b, out, r, &e);
    }
    return batch_result(b, outputs, err);
}

size_t ms_batch_size(const ms_batch *b) {
    return b->n;
}

void ms_batch_abort(ms_batch *b) {
    for (size_t i = b->next; i < b->n; i++)
        ms_task_abort(b->handles[i]);
}

void ms_batch_free(ms_batch *b) {
    if (b)
        batch_destroy(b);
}

/* ---- fan-out / fan-in ---- */

typedef struct fo_group {
    _Atomic size_t left;    /* tasks not yet delivered, plus 1 while starting */
    ms_chan *results;       /* a reference */
} fo_group;

typedef struct fo_task {
    fo_group *g;
    ms_task_spec spec;
    ms_fanout_result *res;  /* filled by the poll, sent by the drop */
    bool ended;             /* the poll returned ready or error */
} fo_task;

static void fo_group_put(fo_group *g, size_t k) {
    if (k && atomic_fetch_sub_explicit(&g->left, k, memory_order_acq_rel) == k) {
        ms_chan_close(g->results);
        ms_chan_unref(g->results);
        free(g);
    }
}

static ms_poll fo_poll(ms_cx *cx, void *state) {
    fo_task *t = state;
    ms_poll r = t->spec.poll(cx, t->spec.state);
    if (r == MS_POLL_PENDING)
        return r;
    t->ended = true;
    if (r == MS_POLL_READY) {
        t->res->rc = 0;
        t->res->output = cx->output;
    } else {
        int code = r == MS_POLL_ERROR && cx->fail_code ? cx->fail_code
                   : r == MS_POLL_ERROR                ? MS_E_TASK_FAILED
                                                       : MS_E_INTERNAL;
        t->res->rc = code;
        ms_error_set(&t->res->err, code, "%s",
                     r != MS_POLL_ERROR ? "poll function returned an invalid ms_poll value"
                     : cx->fail_msg     ? cx->fail_msg
                                        : ms_err_name(code));
    }
    return r;
}

static void fo_drop(void *state) {
    fo_task *t = state;
    if (t->spec.drop)
        t->spec.drop(t->spec.state);
    if (!t->ended) {
        t->res->rc = MS_E_TASK_CANCELLED;
        ms_error_set(&t->res->err, MS_E_TASK_CANCELLED, "task %zu was cancelled",
                     t->res->index);
    }
    /* Room was reserved; only a closed channel refuses. */
    if (ms_chan_try_send(t->g->results, t->res) != 0)
        free(t->res);
    fo_group_put(t->g, 1);
    free(t);
}

int ms_fanout_spawn(ms_runtime *rt, ms_taskq *q, int priority, size_t n,
                    const ms_task_spec *specs, ms_chan **results) {
    if ((!rt && !q) || !results || (n && !specs))
        return MS_E_INVALID_ARGUMENT;
    int rc = 0;
    fo_group *g = malloc(sizeof *g);
    fo_task **ts = calloc(n ? n : 1, sizeof *ts);
    ms_task **hs = calloc(n ? n : 1, sizeof *hs);
    if (g)
        g->results = NULL;
    if (!g || !ts || !hs)
        rc = MS_E_NO_MEMORY;
    if (rc == 0)
        rc = ms_chan_new(0, free, &g->results);
    if (rc == 0)
        rc = chan_reserve_room(g->results, n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ts[i] = malloc(sizeof *ts[i]);
        ms_fanout_result *res = calloc(1, sizeof *res);
        if (!ts[i] || !res) {
            free(ts[i]);
            ts[i] = NULL;
            free(res);
            rc = MS_E_NO_MEMORY;
            break;
        }
        res->index = i;
        *ts[i] = (fo_task){.g = g, .spec = specs[i], .res = res};
    }
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            if (ts && ts[i]) {
                free(ts[i]->res);
                free(ts[i]);
            }
            if (specs && specs[i].drop)
                specs[i].drop(specs[i].state);
        }
        if (g && g->results)
            ms_chan_unref(g->results);
        free(g);
        free(ts);
        free(hs);
        return rc;
    }

    atomic_init(&g->left, n + 1);
    size_t started = 0;
    for (; started < n; started++) {
        ms_task_spec w = {fo_poll, ts[started], fo_drop};
        rc = batch_start(rt, q, priority, &w, &hs[started]);
        if (rc != 0)
            break;
    }
    for (size_t i = started; i < n; i++) {
        if (specs[i].drop)
            specs[i].drop(specs[i].state);
        free(ts[i]->res);
        free(ts[i]);
    }
    for (size_t i = 0; i < started; i++) {
        if (rc != 0)
            ms_task_abort(hs[i]);
        ms_task_release(hs[i]);
    }
    if (rc == 0)
        *results = ms_chan_ref(g->results);
    fo_group_put(g, (n - started) + 1);
    free(ts);
    free(hs);
    return rc;
}
