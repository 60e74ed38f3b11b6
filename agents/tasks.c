/*
 * tasks.c - the live task dump.
 *
 * The rule it keeps: an agent's Lua state is read only by the thread that
 * polls the agent, between two of its coroutines' resumes.  So a dump
 * does not read agents; it asks them:
 *
 *   1. The collector (a thread that may wait: the blocking pool, never a
 *      worker) copies the registry's rows under the host lock, gives each
 *      agent asked a slot (a->dump_slot, seq_cst) and wakes its task.
 *   2. Each agent, at the start of its next poll (tasks_answer, inside its
 *      protected poll, before any coroutine runs), takes its slot
 *      (exchange) and fills it from its own C-side task list: each task's
 *      state, what its operation says it waits on (the op kind's
 *      describe, ops.h) and since when, and a traceback built with
 *      lua_getstack/lua_getinfo on the suspended coroutine, which read the
 *      stack and allocate nothing in the state and run no Lua code, so a
 *      hostile agent (raising __tostring, finalizers) cannot interfere.
 *      Tracebacks stop after TASKS_AGENT_BUDGET_NS of the agent's time
 *      (the rest of its tasks are listed without one), so no poll is
 *      delayed past that by a dump, whatever the number of tasks.
 *   3. The collector waits for the answers up to filter->wait.  An agent
 *      that has not answered by then is not waited for: the collector
 *      takes its slot back (exchange; whoever takes the slot owns it) and
 *      shows it from what C knows without its state: busy in one poll for
 *      so long (a->poll_since), its state held by an ms.blocking function,
 *      or simply not polled yet.  An agent that took its slot just before
 *      is writing it; the collector waits for that one (bounded by the
 *      budget above).
 *
 * One dump at a time (dump_lock): a second waits for the first.  The
 * collector then finds the call cycles among the waits it saw (A calls B
 * while B calls A) with a depth-first walk over the call edges.
 *
 * Costs: nothing for an agent while no dump is asked (one relaxed load per
 * poll); during a dump, one extra poll per idle agent.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cpuclock.h"
#include "host.h"
#include "ltask.h"
#include "mailbox.h"
#include "ops.h"
#include "tasks.h"

/* The time one agent may spend on tracebacks for one dump, and on
 * listing its tasks at all (the rest are left out, said so). */
#define TASKS_AGENT_BUDGET_NS 5000000u
#define TASKS_AGENT_LIST_NS 8000000u
/* Frames and bytes of one traceback. */
#define TB_FRAMES 24
#define TB_BYTES 2048

typedef struct tasks_req tasks_req;

/* What the collector hands one agent. */
struct tasks_slot {
    tasks_req *req;
    tasks_agent *out;           /* filled by whoever owns the slot */
    bool done;                  /* under req->lock */
};

struct tasks_req {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t pending;             /* under lock: slots not yet done */
    double long_wait;
};

/* One dump at a time: an agent has one slot. */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

const char *tasks_task_state_name(tasks_task_state s) {
    static const char *const n[] = {"running", "ready", "waiting"};
    return n[s];
}

const char *tasks_agent_state_name(tasks_agent_state s) {
    static const char *const n[] = {"idle", "busy", "blocking", "no answer", "exited"};
    return n[s];
}

/* ---- the agent's side ---- */

static void slot_done(struct tasks_slot *s) {
    tasks_req *r = s->req;
    pthread_mutex_lock(&r->lock);
    s->done = true;
    r->pending--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* A traceback of the suspended coroutine co, C only: frames by
 * lua_getstack/lua_getinfo("Sln"), which fill ar's own buffers. */
static char *traceback_of(lua_State *co) {
    char *buf = malloc(TB_BYTES);
    if (!buf)
        return NULL;
    size_t len = 0;
    buf[0] = '\0';
    lua_Debug ar;
    int level = 0;
    for (; level < TB_FRAMES && lua_getstack(co, level, &ar); level++) {
        if (!lua_getinfo(co, "Sln", &ar))
            break;
        char line[300];
        int n;
        if (ar.currentline > 0)
            n = snprintf(line, sizeof line, "%s:%d:", ar.short_src, ar.currentline);
        else
            n = snprintf(line, sizeof line, "%s:", ar.short_src);
        if (ar.name)
            snprintf(line + n, sizeof line - (size_t)n, " in function '%s'", ar.name);
        else if (ar.what && strcmp(ar.what, "main") == 0)
            snprintf(line + n, sizeof line - (size_t)n, " in main chunk");
        else if (ar.what && strcmp(ar.what, "C") == 0)
            snprintf(line + n, sizeof line - (size_t)n, " in a C function");
        else if (ar.linedefined > 0)
            snprintf(line + n, sizeof line - (size_t)n, " in function <%s:%d>", ar.short_src,
                     ar.linedefined);
        int w = snprintf(buf + len, TB_BYTES - len, "%s%s", len ? "\n" : "", line);
        if (w < 0 || (size_t)w >= TB_BYTES - len)
            break;
        len += (size_t)w;
    }
    if (level == TB_FRAMES && lua_getstack(co, level, &ar) && len + 6 < TB_BYTES)
        memcpy(buf + len, "\n...", 5);
    return buf;
}

/* now: cpuclock ticks. */
static void describe_task(ltask *lt, tasks_task *t, uint64_t now, double long_wait) {
    t->id = lt->id;
    t->is_main = lt->is_main;
    t->state = lt->status == LT_RUNNING ? TT_RUNNING
             : lt->status == LT_WAITING ? TT_WAITING : TT_READY;
    if (t->state != TT_WAITING)
        return;
    const lop_kind *k = lt->op.kind;
    t->kind = k ? k->name : "operation";
    if (k && k->describe) {
        lop_desc d;
        memset(&d, 0, sizeof d);
        k->describe(lt, &d);
        memcpy(t->what, d.what, sizeof t->what);
        t->what[sizeof t->what - 1] = '\0';
        t->agent_id = d.agent_id;
    }
    if (lt->op.since && now > lt->op.since)
        t->wait_seconds = (double)cpuclock_ns(now - lt->op.since) / 1e9;
    t->long_wait = t->wait_seconds >= long_wait;
}

/* Fills s->out from a's tasks: on a's thread, between resumes. */
/* One more row in out (grown by doubling); NULL without memory. */
static tasks_task *add_row(tasks_agent *out, size_t *cap) {
    if (out->ntasks == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        tasks_task *rows = realloc(out->tasks, ncap * sizeof *rows);
        if (!rows)
            return NULL;
        out->tasks = rows;
        *cap = ncap;
    }
    tasks_task *t = &out->tasks[out->ntasks++];
    memset(t, 0, sizeof *t);
    return t;
}

static void add_task(tasks_agent *out, size_t *cap, ltask *lt, uint64_t ticks, double long_wait,
                     bool with_traceback) {
    tasks_task *t = add_row(out, cap);
    if (!t)
        return;
    describe_task(lt, t, ticks, long_wait);
    if (with_traceback && lt->co && lt->status != LT_RUNNING)
        t->traceback = traceback_of(lt->co);
    if (!t->traceback)
        out->no_traceback++;
}

/* Fills s->out from a's tasks: on a's thread, between resumes.  Bounded
 * in time, whatever the number of tasks: tracebacks stop after
 * TASKS_AGENT_BUDGET_NS, and the listing after TASKS_AGENT_LIST_NS (the
 * newest tasks are listed first; the main task always is). */
static void fill_slot(agent *a, struct tasks_slot *s) {
    tasks_agent *out = s->out;
    out->state = TA_READ;
    uint64_t start = ms_now_ns(), ticks = cpuclock_ticks();
    size_t cap = 0, i = 0;
    bool tracebacks = true, main_listed = false;
    for (ltask *lt = a->all; lt; lt = lt->next_all, i++) {
        /* The clock every 16 tasks: cheap, and bounds the overshoot. */
        if ((i & 15) == 15) {
            uint64_t spent = ms_now_ns() - start;
            tracebacks = spent < TASKS_AGENT_BUDGET_NS;
            if (spent >= TASKS_AGENT_LIST_NS) {
                out->truncated = true;
                break;
            }
        }
        main_listed = main_listed || lt == a->main;
        add_task(out, &cap, lt, ticks, s->req->long_wait, tracebacks);
    }
    if (out->truncated && a->main && !main_listed)
        add_task(out, &cap, a->main, ticks, s->req->long_wait, true);
    /* a->all is newest first: the rows go oldest first. */
    for (size_t lo = 0, hi = out->ntasks; hi > lo + 1; lo++, hi--) {
        tasks_task tmp = out->tasks[lo];
        out->tasks[lo] = out->tasks[hi - 1];
        out->tasks[hi - 1] = tmp;
    }
    out->answer_seconds = (double)(ms_now_ns() - start) / 1e9;
}

void tasks_answer(agent *a) {
    /* seq_cst: pairs with the collector's store of the slot and its load
     * of waker_ready (a first poll either is woken or sees the slot). */
    if (!atomic_load(&a->dump_slot))
        return;
    struct tasks_slot *s = atomic_exchange(&a->dump_slot, NULL);
    if (!s)
        return; /* the collector took it back */
    fill_slot(a, s);
    slot_done(s);
}

void tasks_answer_exited(agent *a) {
    struct tasks_slot *s = atomic_exchange(&a->dump_slot, NULL);
    if (!s)
        return;
    s->out->state = TA_EXITED;
    slot_done(s);
}

/* ---- the collector ---- */

static int agent_cmp(const void *x, const void *y) {
    const tasks_agent *a = x, *b = y;
    return a->id < b->id ? -1 : a->id > b->id;
}

static tasks_agent *find_agent(const tasks_dump *d, uint64_t id) {
    tasks_agent key = {.id = id};
    return bsearch(&key, d->agents, d->nagents, sizeof key, agent_cmp);
}

const char *tasks_agent_name(const tasks_dump *d, uint64_t id) {
    tasks_agent *a = find_agent(d, id);
    return a ? a->name : NULL;
}

/* What C knows of an agent that did not answer. */
static void not_read(tasks_agent *out, agent *a) {
    uint64_t since = atomic_load_explicit(&a->poll_since, memory_order_relaxed);
    uint64_t now = cpuclock_ticks();
    if (atomic_load_explicit(&a->blocking_busy, memory_order_acquire)) {
        out->state = TA_BLOCKING;
    } else if (since) {
        out->state = TA_BUSY;
        out->busy_seconds = now > since ? (double)cpuclock_ns(now - since) / 1e9 : 0;
    } else {
        out->state = TA_NO_ANSWER;
    }
}

static void find_cycles(tasks_dump *d);

static bool wanted_agent(const tasks_filter *f, const char *name) {
    return !f || !f->agent || strcmp(f->agent, name) == 0;
}

/* Asks every agent in rows (refs held) and waits; fills d->agents. */
static void ask_and_wait(tasks_dump *d, agent **asked, struct tasks_slot *slots, size_t n,
                         tasks_req *req, double wait) {
    for (size_t i = 0; i < n; i++) {
        slots[i].req = req;
        slots[i].out = &d->agents[i];
    }
    pthread_mutex_lock(&req->lock);
    req->pending = n;
    pthread_mutex_unlock(&req->lock);
    for (size_t i = 0; i < n; i++) {
        atomic_store(&asked[i]->dump_slot, &slots[i]);
        /* A null waker (an agent never polled yet) wakes nothing: its
         * first poll answers. */
        if (atomic_load(&asked[i]->waker_ready))
            ms_waker_wake_by_ref(&asked[i]->self_waker);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)(wait * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&req->lock);
    while (req->pending > 0) {
        if (pthread_cond_timedwait(&req->cond, &req->lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&req->lock);
    /* Take back the slots nobody took; wait for those being written. */
    for (size_t i = 0; i < n; i++) {
        struct tasks_slot *s = atomic_exchange(&asked[i]->dump_slot, NULL);
        if (s) {
            not_read(s->out, asked[i]);
            pthread_mutex_lock(&req->lock);
            s->done = true;
            req->pending--;
            pthread_mutex_unlock(&req->lock);
        }
    }
    pthread_mutex_lock(&req->lock);
    while (req->pending > 0)
        pthread_cond_wait(&req->cond, &req->lock);
    pthread_mutex_unlock(&req->lock);
}

/* Keeps the tasks (and agents) in the state asked for. */
static void apply_state_filter(tasks_dump *d, const char *state) {
    size_t k = 0;
    for (size_t i = 0; i < d->nagents; i++) {
        tasks_agent *a = &d->agents[i];
        bool agent_match = strcmp(tasks_agent_state_name(a->state), state) == 0;
        size_t m = 0;
        for (size_t j = 0; j < a->ntasks; j++) {
            tasks_task *t = &a->tasks[j];
            if (agent_match || strcmp(tasks_task_state_name(t->state), state) == 0)
                a->tasks[m++] = *t;
            else
                free(t->traceback);
        }
        a->ntasks = m;
        if (agent_match || m > 0)
            d->agents[k++] = *a;
        else
            free(a->tasks);
    }
    d->nagents = k;
}

tasks_dump *tasks_collect(host *h, const tasks_filter *filter) {
    tasks_dump *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    double wait = filter && filter->wait > 0 ? filter->wait : TASKS_DEFAULT_WAIT;
    d->long_wait = filter && filter->long_wait > 0 ? filter->long_wait : TASKS_DEFAULT_LONG_WAIT;
    uint64_t t0 = ms_now_ns();
    pthread_mutex_lock(&dump_lock);
    /* The rows, with references, under the host lock. */
    size_t n = 0, cap;
    agent **asked = NULL;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        cap = h->nagents;
        pthread_mutex_unlock(&h->lock);
        free(asked);
        asked = malloc((cap ? cap : 1) * sizeof *asked);
        if (!asked)
            break;
        pthread_mutex_lock(&h->lock);
        if (h->nagents > cap) {
            pthread_mutex_unlock(&h->lock);
            continue;
        }
        for (agent *a = h->agents; a; a = a->next_reg) {
            if (!wanted_agent(filter, a->name))
                continue;
            agent_ref(a);
            asked[n++] = a;
        }
        pthread_mutex_unlock(&h->lock);
        break;
    }
    d->agents = calloc(n ? n : 1, sizeof *d->agents);
    struct tasks_slot *slots = calloc(n ? n : 1, sizeof *slots);
    if (!asked || !d->agents || !slots) {
        d->oom = true;
        for (size_t i = 0; i < n; i++)
            agent_unref(asked[i]);
        n = 0;
    }
    /* Registry figures, under each agent's lock (no Lua here). */
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        agent_info in;
        agent_get_info(asked[i], &in);
        tasks_agent *out = &d->agents[i];
        out->id = in.id;
        memcpy(out->name, in.name, sizeof out->name);
        out->name[sizeof out->name - 1] = '\0';
        out->exited = in.state == AG_EXITED;
        out->mailbox = in.mailbox;
        out->memory = in.memory;
        out->restarts = in.restarts;
        out->cpu_seconds = (double)in.cpu_ns / 1e9;
        /* The exited are not asked: nobody would answer. */
        if (out->exited) {
            out->state = TA_EXITED;
            agent_unref(asked[i]);
            continue;
        }
        d->agents[live] = *out;
        asked[live] = asked[i];
        live++;
    }
    n = live;
    tasks_req req;
    pthread_mutex_init(&req.lock, NULL);
    pthread_cond_init(&req.cond, NULL);
    req.long_wait = d->long_wait;
    if (n)
        ask_and_wait(d, asked, slots, n, &req, wait);
    pthread_mutex_unlock(&dump_lock);
    pthread_cond_destroy(&req.cond);
    pthread_mutex_destroy(&req.lock);
    for (size_t i = 0; i < n; i++)
        agent_unref(asked[i]);
    free(asked);
    free(slots);
    d->nagents = n;
    /* d->agents is NULL when its allocation failed (n is 0 then), and
     * qsort's pointer must not be (UBSan, the sweep's case c-305). */
    if (d->nagents > 1)
        qsort(d->agents, d->nagents, sizeof *d->agents, agent_cmp);
    for (size_t i = 0; i < d->nagents; i++)
        if (d->agents[i].answer_seconds > d->max_answer_seconds)
            d->max_answer_seconds = d->agents[i].answer_seconds;
    find_cycles(d);
    if (filter && filter->state)
        apply_state_filter(d, filter->state);
    d->took_seconds = (double)(ms_now_ns() - t0) / 1e9;
    return d;
}

void tasks_free(tasks_dump *d) {
    if (!d)
        return;
    for (size_t i = 0; i < d->nagents; i++) {
        for (size_t j = 0; j < d->agents[i].ntasks; j++)
            free(d->agents[i].tasks[j].traceback);
        free(d->agents[i].tasks);
    }
    free(d->agents);
    for (size_t i = 0; i < d->ncycles; i++)
        free(d->cycles[i]);
    free(d->cycles);
    free(d->cycle_len);
    free(d);
}

/* ---- call cycles ---- */

/* The walk's colours: 0 unseen, 1 on the current path, 2 done. */
typedef struct walk_frame {
    size_t agent;               /* index into d->agents */
    size_t task;                /* the next of its tasks to follow */
} walk_frame;

static bool add_cycle(tasks_dump *d, const walk_frame *path, size_t from, size_t to) {
    size_t len = to - from + 1;
    uint64_t *chain = malloc((len + 1) * sizeof *chain);
    uint64_t **cycles = realloc(d->cycles, (d->ncycles + 1) * sizeof *cycles);
    if (cycles)
        d->cycles = cycles;
    size_t *lens = realloc(d->cycle_len, (d->ncycles + 1) * sizeof *lens);
    if (lens)
        d->cycle_len = lens;
    if (!chain || !cycles || !lens) {
        free(chain);
        d->oom = true;
        return false;
    }
    for (size_t i = 0; i < len; i++)
        chain[i] = d->agents[path[from + i].agent].id;
    chain[len] = chain[0];
    d->cycles[d->ncycles] = chain;
    d->cycle_len[d->ncycles] = len + 1;
    d->ncycles++;
    return true;
}

/* The agent index that task t of agent i calls, or SIZE_MAX. */
static size_t call_target(const tasks_dump *d, const tasks_task *t) {
    if (t->state != TT_WAITING || !t->agent_id)
        return SIZE_MAX;
    tasks_agent *b = find_agent(d, t->agent_id);
    return b ? (size_t)(b - d->agents) : SIZE_MAX;
}

static void find_cycles(tasks_dump *d) {
    size_t n = d->nagents;
    if (!n)
        return;
    unsigned char *colour = calloc(n, 1);
    size_t *depth_of = malloc(n * sizeof *depth_of);
    walk_frame *path = malloc(n * sizeof *path);
    if (!colour || !depth_of || !path) {
        free(colour);
        free(depth_of);
        free(path);
        d->oom = true;
        return;
    }
    for (size_t root = 0; root < n; root++) {
        if (colour[root])
            continue;
        size_t depth = 0;
        path[depth++] = (walk_frame){root, 0};
        colour[root] = 1;
        depth_of[root] = 0;
        while (depth > 0) {
            walk_frame *f = &path[depth - 1];
            tasks_agent *a = &d->agents[f->agent];
            if (f->task >= a->ntasks) {
                colour[f->agent] = 2;
                depth--;
                continue;
            }
            size_t next = call_target(d, &a->tasks[f->task++]);
            if (next == SIZE_MAX)
                continue;
            if (colour[next] == 1)
                add_cycle(d, path, depth_of[next], depth - 1);
            else if (colour[next] == 0) {
                colour[next] = 1;
                depth_of[next] = depth;
                path[depth++] = (walk_frame){next, 0};
            }
        }
    }
    free(colour);
    free(depth_of);
    free(path);
}

/* ---- rendering ---- */

typedef struct tbuf {
    char *p;
    size_t len, cap;
    bool oom;
} tbuf;

static void tb_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf *b, const char *fmt, ...) {
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void tb_add(tbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *tb_take(tbuf *b) {
    if (b->oom || !b->p) {
        free(b->p);
        return b->oom ? NULL : strdup("");
    }
    return b->p;
}

/* "call agent db (#12)" and the like. */
static void wait_text(const tasks_dump *d, const tasks_task *t, char *out, size_t len) {
    if (t->agent_id) {
        const char *name = tasks_agent_name(d, t->agent_id);
        snprintf(out, len, "%s: agent %s (#%llu)%s%s", t->kind, name ? name : "(gone)",
                 (unsigned long long)t->agent_id, t->what[0] ? ", " : "", t->what);
    } else {
        snprintf(out, len, "%s%s%s", t->kind ? t->kind : "", t->what[0] ? ": " : "", t->what);
    }
}

char *tasks_render_text(const tasks_dump *d) {
    tbuf b = {0};
    size_t ntasks = 0;
    for (size_t i = 0; i < d->nagents; i++)
        ntasks += d->agents[i].ntasks;
    tb_printf(&b, "%zu agents, %zu tasks (taken in %.3f s; long waits: over %g s)\n", d->nagents,
              ntasks, d->took_seconds, d->long_wait);
    for (size_t c = 0; c < d->ncycles; c++) {
        tb_printf(&b, "CYCLE: ");
        for (size_t k = 0; k < d->cycle_len[c]; k++) {
            const char *name = tasks_agent_name(d, d->cycles[c][k]);
            tb_printf(&b, "%s%s (#%llu)", k ? " -> " : "", name ? name : "?",
                      (unsigned long long)d->cycles[c][k]);
        }
        tb_printf(&b, " (each calls the next)\n");
    }
    for (size_t i = 0; i < d->nagents; i++) {
        const tasks_agent *a = &d->agents[i];
        tb_printf(&b, "\nagent %s (#%llu) %s  mailbox %zu  memory %zu  restarts %u  cpu %.3f s",
                  a->name, (unsigned long long)a->id, tasks_agent_state_name(a->state),
                  a->mailbox, a->memory, a->restarts, a->cpu_seconds);
        if (a->state == TA_BUSY)
            tb_printf(&b, "\n  BUSY: in one poll for %.3f s (a task is running; its state is "
                          "not read while it runs)", a->busy_seconds);
        else if (a->state == TA_BLOCKING)
            tb_printf(&b, "\n  an ms.blocking function holds its state: not read");
        else if (a->state == TA_NO_ANSWER)
            tb_printf(&b, "\n  not polled within the dump's wait (starting or queued)");
        tb_printf(&b, "\n");
        for (size_t j = 0; j < a->ntasks; j++) {
            const tasks_task *t = &a->tasks[j];
            char wt[320] = "";
            if (t->state == TT_WAITING)
                wait_text(d, t, wt, sizeof wt);
            tb_printf(&b, "  task %llu%s %s", (unsigned long long)t->id,
                      t->is_main ? " (main)" : "", tasks_task_state_name(t->state));
            if (t->state == TT_WAITING)
                tb_printf(&b, " on %s for %.3f s%s", wt, t->wait_seconds,
                          t->long_wait ? "  LONG" : "");
            tb_printf(&b, "\n");
            if (t->traceback && t->traceback[0]) {
                const char *p = t->traceback;
                while (*p) {
                    const char *nl = strchr(p, '\n');
                    size_t len = nl ? (size_t)(nl - p) : strlen(p);
                    tb_add(&b, "      ", 6);
                    tb_add(&b, p, len);
                    tb_add(&b, "\n", 1);
                    p += len + (nl ? 1 : 0);
                }
            }
        }
        if (a->no_traceback && a->state == TA_READ)
            tb_printf(&b, "  (%zu tasks without a traceback: the agent's time for the dump "
                          "was spent)\n", a->no_traceback);
        if (a->truncated)
            tb_printf(&b, "  (more tasks not listed: the agent's time for the dump was "
                          "spent; the newest and the main task are listed)\n");
    }
    if (d->oom)
        tb_printf(&b, "\n(incomplete: out of memory)\n");
    return tb_take(&b);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three-byte forms, surrogates, and past U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

/* A JSON string; bytes that are not UTF-8 (a name, a file name) become
 * U+FFFD, so the document stays valid. */
static void json_str(tbuf *b, const char *s) {
    tb_printf(b, "\"");
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        tb_add(b, s + i, run - i); /* plain ASCII as it is */
        i = run;
        if (i == n)
            break;
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            tb_printf(b, "\\%c", ch);
            i++;
        } else if (ch < 0x20) {
            tb_printf(b, "\\u%04x", ch);
            i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);
            if (len)
                tb_add(b, s + i, len);
            else
                tb_printf(b, "\\ufffd");
            i += len ? len : 1;
        }
    }
    tb_printf(b, "\"");
}

char *tasks_render_json(const tasks_dump *d) {
    tbuf b = {0};
    tb_printf(&b, "{\"took\":%.6f,\"max_answer\":%.6f,\"long_wait\":%g,\"complete\":%s,",
              d->took_seconds, d->max_answer_seconds, d->long_wait, d->oom ? "false" : "true");
    tb_printf(&b, "\"cycles\":[");
    for (size_t c = 0; c < d->ncycles; c++) {
        tb_printf(&b, "%s[", c ? "," : "");
        for (size_t k = 0; k < d->cycle_len[c]; k++) {
            const char *name = tasks_agent_name(d, d->cycles[c][k]);
            tb_printf(&b, "%s{\"id\":%llu,\"name\":", k ? "," : "",
                      (unsigned long long)d->cycles[c][k]);
            json_str(&b, name ? name : "");
            tb_printf(&b, "}");
        }
        tb_printf(&b, "]");
    }
    tb_printf(&b, "],\"agents\":[");
    for (size_t i = 0; i < d->nagents; i++) {
        const tasks_agent *a = &d->agents[i];
        tb_printf(&b, "%s{\"id\":%llu,\"name\":", i ? "," : "", (unsigned long long)a->id);
        json_str(&b, a->name);
        tb_printf(&b, ",\"state\":\"%s\",\"mailbox\":%zu,\"memory\":%zu,\"restarts\":%u,"
                      "\"cpu\":%.6f",
                  tasks_agent_state_name(a->state), a->mailbox, a->memory, a->restarts,
                  a->cpu_seconds);
        if (a->state == TA_BUSY)
            tb_printf(&b, ",\"busy_for\":%.6f", a->busy_seconds);
        if (a->truncated)
            tb_printf(&b, ",\"truncated\":true");
        tb_printf(&b, ",\"tasks\":[");
        for (size_t j = 0; j < a->ntasks; j++) {
            const tasks_task *t = &a->tasks[j];
            tb_printf(&b, "%s{\"id\":%llu,\"state\":\"%s\",\"main\":%s", j ? "," : "",
                      (unsigned long long)t->id, tasks_task_state_name(t->state),
                      t->is_main ? "true" : "false");
            if (t->state == TT_WAITING) {
                tb_printf(&b, ",\"wait\":{\"kind\":");
                json_str(&b, t->kind ? t->kind : "");
                tb_printf(&b, ",\"what\":");
                json_str(&b, t->what);
                if (t->agent_id) {
                    const char *name = tasks_agent_name(d, t->agent_id);
                    tb_printf(&b, ",\"agent\":{\"id\":%llu,\"name\":",
                              (unsigned long long)t->agent_id);
                    json_str(&b, name ? name : "");
                    tb_printf(&b, "}");
                }
                tb_printf(&b, ",\"seconds\":%.6f,\"long\":%s}", t->wait_seconds,
                          t->long_wait ? "true" : "false");
            }
            if (t->traceback) {
                tb_printf(&b, ",\"traceback\":");
                json_str(&b, t->traceback);
            }
            tb_printf(&b, "}");
        }
        tb_printf(&b, "]}");
    }
    tb_printf(&b, "]}\n");
    return tb_take(&b);
}
