/*
 * process.c - child processes, spawned and reaped by libuv on the driver.
 *
 * uv_spawn must run on the loop's thread, and libuv reaps children from
 * its own SIGCHLD handler there, so a process is a driver object like a
 * stream: the task side asks (spawn, kill, free) through driver ops and
 * polls what the driver reports under the process's lock.
 *
 *   spawn  op_spawn: uv_spawn with the copied options; the pipes are
 *          ms_streams whose uv_pipe_t libuv connects to the child.  The
 *          result (rc, pid) is reported under lock.
 *   exit   exit_cb: status and signal under lock, the waiter woken.
 *   free   op_free: pipes not taken are closed; a child still running is
 *          killed (kill_on_free) and its handle stays open until exit_cb,
 *          because libuv reaps only children whose handles are open.
 *          Then the handle closes and the memory goes.
 *   kill   op_kill: only while the child is not reaped (exit_cb has not
 *          run), checked on the driver, where reaping happens: a reaped
 *          child's pid may belong to another process already.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "stream.h"

#define container(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct ms_process {
    driver *d;                  /* immutable */
    /* The options, copied (immutable; freed with the process). */
    char *file, *cwd;
    char **args, **env;
    ms_stdio stdio[3];
    bool kill_on_free;
    /* Driver thread only: */
    uv_process_t proc;
    bool proc_live;             /* spawned: the handle must be closed */
    bool freed;                 /* op_free ran: close once exited */
    drv_op op_spawn, op_free, op_kill;
    pthread_mutex_t lock;
    /* Under lock: */
    bool started, exited;
    int spawn_rc;               /* uv error, 0 once spawned */
    int pid;
    int64_t status;
    int term_signal;
    int kill_signal;            /* the signal op_kill sends */
    ms_stream *pipes[3];        /* until taken */
    ms_waker waker;
};

static void free_strv(char **v) {
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char **copy_strv(char *const *v, bool *ok) {
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **c = calloc(n + 1, sizeof *c);
    if (!c) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!(c[i] = strdup(v[i]))) {
            *ok = false;
            free_strv(c);
            return NULL;
        }
    return c;
}

static void process_free_memory(ms_process *p) {
    for (int i = 0; i < 3; i++)
        if (p->pipes[i])
            stream_close_now(p->pipes[i]);
    ms_waker_drop(&p->waker);
    pthread_mutex_destroy(&p->lock);
    free(p->file);
    free(p->cwd);
    free_strv(p->args);
    free_strv(p->env);
    free(p);
}

static void wake(ms_process *p) {
    ms_waker w = ms_waker_clone(&p->waker);
    pthread_mutex_unlock(&p->lock);
    ms_waker_wake(&w);
}

static void close_cb(uv_handle_t *h) {
    process_free_memory(h->data);
}

void process_close_at_stop(uv_handle_t *h) {
    ms_process *p = h->data;
    uv_close(h, p->freed ? close_cb : NULL);
}

static void exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
    ms_process *p = proc->data;
    pthread_mutex_lock(&p->lock);
    p->exited = true;
    p->status = status;
    p->term_signal = term_signal;
    wake(p);
    if (p->freed)
        uv_close((uv_handle_t *)&p->proc, close_cb);
}

static void op_spawn(driver *d, drv_op *op) {
    ms_process *p = container(op, ms_process, op_spawn);
    uv_stdio_container_t stdio[3];
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (p->stdio[i] == MS_STDIO_INHERIT) {
            stdio[i].flags = UV_INHERIT_FD;
            stdio[i].data.fd = i;
        } else if (p->stdio[i] == MS_STDIO_PIPE) {
            ms_stream *s = stream_new(d);
            if (!s) {
                rc = UV_ENOMEM;
                break;
            }
            rc = uv_pipe_init(&d->loop, &s->h.pipe, 0);
            if (rc != 0) {
                stream_free_memory(s);
                break;
            }
            s->handle_live = true;
            s->h.stream.data = s;
            p->pipes[i] = s;
            stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
            stdio[i].data.stream = &s->h.stream;
        } else {
            stdio[i].flags = UV_IGNORE; /* libuv opens /dev/null for 0-2 */
        }
    }
    if (rc == 0) {
        uv_process_options_t o;
        memset(&o, 0, sizeof o);
        o.exit_cb = exit_cb;
        o.file = p->file;
        o.args = p->args;
        o.env = p->env;
        o.cwd = p->cwd;
        o.stdio_count = 3;
        o.stdio = stdio;
        p->proc.data = p;
        rc = uv_spawn(&d->loop, &p->proc, &o);
        /* Even a failed uv_spawn initialised the handle: it must be
         * closed. */
        p->proc_live = true;
    }
    pthread_mutex_lock(&p->lock);
    p->started = true;
    p->spawn_rc = rc;
    if (rc == 0) {
        p->pid = p->proc.pid;
        for (int i = 0; i < 3; i++) {
            ms_stream *s = p->pipes[i];
            if (!s)
                continue;
            uv_os_fd_t fd = -1;
            uv_fileno((uv_handle_t *)&s->h, &fd);
            s->fd = fd;
            if (i > 0)
                stream_start_reading(s);
        }
    } else {
        p->exited = true; /* nothing to wait for */
    }
    wake(p);
}

static void op_free(driver *d, drv_op *op) {
    ms_process *p = container(op, ms_process, op_free);
    pthread_mutex_lock(&p->lock);
    ms_stream *pipes[3] = {p->pipes[0], p->pipes[1], p->pipes[2]};
    p->pipes[0] = p->pipes[1] = p->pipes[2] = NULL;
    bool running = p->spawn_rc == 0 && !p->exited;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < 3; i++)
        if (pipes[i])
            stream_close_now(pipes[i]);
    p->freed = true;
    if (!p->proc_live) {
        process_free_memory(p);
        return;
    }
    if (running) {
        if (p->kill_on_free)
            uv_process_kill(&p->proc, SIGKILL);
        return; /* exit_cb closes the handle */
    }
    uv_close((uv_handle_t *)&p->proc, close_cb);
}

static void op_kill(driver *d, drv_op *op) {
    ms_process *p = container(op, ms_process, op_kill);
    pthread_mutex_lock(&p->lock);
    bool running = p->spawn_rc == 0 && p->started && !p->exited;
    int sig = p->kill_signal;
    pthread_mutex_unlock(&p->lock);
    if (running && p->proc_live)
        uv_process_kill(&p->proc, sig);
}

int ms_process_spawn(ms_runtime *rt, const ms_process_opts *o, ms_process **out,
                     ms_error *err) {
    if (!drv_of(rt, false, true, "a subprocess", err))
        return MS_E_NOT_ENABLED;
    if (!o || !o->file || !*o->file || !o->args || !o->args[0])
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "a subprocess needs a program and args[0]");
    ms_process *p = calloc(1, sizeof *p);
    if (!p)
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a subprocess");
    bool ok = true;
    p->file = strdup(o->file);
    p->cwd = o->cwd ? strdup(o->cwd) : NULL;
    p->args = copy_strv(o->args, &ok);
    p->env = copy_strv(o->env, &ok);
    if (!p->file || (o->cwd && !p->cwd) || !p->args || !ok) {
        pthread_mutex_init(&p->lock, NULL);
        process_free_memory(p);
        return ms_error_set(err, MS_E_NO_MEMORY, "no memory for a subprocess");
    }
    memcpy(p->stdio, o->stdio, sizeof p->stdio);
    p->kill_on_free = o->kill_on_free;
    p->d = rt->driver;
    pthread_mutex_init(&p->lock, NULL);
    p->op_spawn.fn = op_spawn;
    p->op_free.fn = op_free;
    p->op_kill.fn = op_kill;
    if (!drv_submit(p->d, &p->op_spawn)) {
        process_free_memory(p);
        return ms_error_set(err, MS_E_SHUTTING_DOWN, "the runtime is shutting down");
    }
    *out = p;
    return 0;
}

ms_poll ms_process_poll_started(ms_process *p, ms_cx *cx, int *rc, int *pid, ms_error *err) {
    pthread_mutex_lock(&p->lock);
    if (!p->started) {
        ms_waker_store(&p->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&p->lock);
        return MS_POLL_PENDING;
    }
    int e = p->spawn_rc;
    *pid = p->pid;
    pthread_mutex_unlock(&p->lock);
    if (e == 0) {
        *rc = 0;
    } else if (e == UV_ENOENT || e == UV_EACCES) {
        *rc = ms_error_set(err, MS_E_IO, "cannot run %s: %s (%s)", p->file, uv_strerror(e),
                           uv_err_name(e));
    } else {
        *rc = stream_uv_error(err, e, "spawn");
    }
    return MS_POLL_READY;
}

ms_stream *ms_process_take_stream(ms_process *p, int i) {
    if (i < 0 || i > 2)
        return NULL;
    pthread_mutex_lock(&p->lock);
    ms_stream *s = p->spawn_rc == 0 && p->started ? p->pipes[i] : NULL;
    if (s)
        p->pipes[i] = NULL;
    pthread_mutex_unlock(&p->lock);
    return s;
}

ms_poll ms_process_poll_exit(ms_process *p, ms_cx *cx, int64_t *status, int *signal) {
    pthread_mutex_lock(&p->lock);
    if (!p->exited) {
        ms_waker_store(&p->waker, ms_cx_waker(cx));
        pthread_mutex_unlock(&p->lock);
        return MS_POLL_PENDING;
    }
    *status = p->status;
    *signal = p->term_signal;
    pthread_mutex_unlock(&p->lock);
    return MS_POLL_READY;
}

void ms_process_kill(ms_process *p, int signum) {
    pthread_mutex_lock(&p->lock);
    p->kill_signal = signum;
    pthread_mutex_unlock(&p->lock);
    drv_submit(p->d, &p->op_kill);
}

void ms_process_free(ms_process *p) {
    if (!p)
        return;
    if (!drv_submit(p->d, &p->op_free)) {
        drv_wait_finished(p->d);
        process_free_memory(p);
    }
}
