/*
 * lms_tasks.c - ms.tasks([filter]): the live task dump (tasks.c) from
 * Lua, as a table, text or JSON; and ms.profiler.run{ agent =, seconds = }:
 * a sampling profile of one agent (profiler.c) as folded stacks.
 *
 * Both wait for agents to answer at their poll boundaries, so they run on
 * the blocking pool, never on a worker; the calling task waits for the
 * job as an operation of its own kind ("tasks dump", "profile"), which is
 * also how a dump shows the caller.  The dump's C rows are held (hold.h)
 * while the Lua values are built, since building them allocates and may
 * raise.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "hold.h"
#include "host.h"
#include "lms_tasks.h"
#include "ltask.h"
#include "ops.h"
#include "profiler.h"
#include "tasks.h"

enum { FMT_TABLE, FMT_TEXT, FMT_JSON, FMT_PROFILE };

/* Shared by the job and the waiting task: whoever lets go last frees. */
typedef struct dump_box {
    _Atomic int refs;
    host *h;
    tasks_filter f;
    char agent[AGENT_NAME_MAX + 1];
    char state[16];
    tasks_dump *d;              /* the dump job's result */
    double seconds;             /* the profile's */
    char *folded;               /* the profile job's result, or NULL with err */
    char err[256];
} dump_box;

static void box_unref(dump_box *b) {
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        tasks_free(b->d);
        free(b->folded);
        free(b);
    }
}

static void *dump_job(void *arg) {
    dump_box *b = arg;
    b->d = tasks_collect(b->h, &b->f);
    box_unref(b);
    return NULL;
}

static void *profile_job(void *arg) {
    dump_box *b = arg;
    b->folded = profiler_run(b->h, b->agent, b->seconds, b->err, sizeof b->err);
    box_unref(b);
    return NULL;
}

typedef struct dump_op {
    dump_box *box;
    ms_task *job;
    int format;
} dump_op;

_Static_assert(sizeof(dump_op) <= sizeof(((lop *)0)->store), "dump_op fits the op store");

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void push_task(lua_State *L, const tasks_dump *d, const tasks_task *t) {
    lua_createtable(L, 0, 5);
    set_num(L, "id", (double)t->id);
    set_str(L, "state", tasks_task_state_name(t->state));
    if (t->is_main) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "main");
    }
    if (t->state == TT_WAITING) {
        lua_createtable(L, 0, 5);
        set_str(L, "kind", t->kind ? t->kind : "operation");
        if (t->what[0])
            set_str(L, "what", t->what);
        if (t->agent_id) {
            lua_createtable(L, 0, 2);
            set_num(L, "id", (double)t->agent_id);
            const char *name = tasks_agent_name(d, t->agent_id);
            if (name)
                set_str(L, "name", name);
            lua_setfield(L, -2, "agent");
        }
        set_num(L, "seconds", t->wait_seconds);
        lua_pushboolean(L, t->long_wait);
        lua_setfield(L, -2, "long");
        lua_setfield(L, -2, "wait");
    }
    if (t->traceback)
        set_str(L, "traceback", t->traceback);
}

static void push_dump(lua_State *L, const tasks_dump *d) {
    lua_createtable(L, 0, 5);
    set_num(L, "took", d->took_seconds);
    set_num(L, "max_answer", d->max_answer_seconds);
    set_num(L, "long_wait", d->long_wait);
    lua_pushboolean(L, !d->oom);
    lua_setfield(L, -2, "complete");
    lua_createtable(L, (int)d->ncycles, 0);
    for (size_t c = 0; c < d->ncycles; c++) {
        lua_createtable(L, (int)d->cycle_len[c], 0);
        for (size_t k = 0; k < d->cycle_len[c]; k++) {
            lua_createtable(L, 0, 2);
            set_num(L, "id", (double)d->cycles[c][k]);
            const char *name = tasks_agent_name(d, d->cycles[c][k]);
            if (name)
                set_str(L, "name", name);
            lua_rawseti(L, -2, (int)k + 1);
        }
        lua_rawseti(L, -2, (int)c + 1);
    }
    lua_setfield(L, -2, "cycles");
    lua_createtable(L, (int)d->nagents, 0);
    for (size_t i = 0; i < d->nagents; i++) {
        const tasks_agent *a = &d->agents[i];
        lua_createtable(L, 0, 10);
        set_num(L, "id", (double)a->id);
        set_str(L, "name", a->name);
        set_str(L, "state", tasks_agent_state_name(a->state));
        set_num(L, "mailbox", (double)a->mailbox);
        set_num(L, "memory", (double)a->memory);
        set_num(L, "restarts", a->restarts);
        set_num(L, "cpu", a->cpu_seconds);
        if (a->state == TA_BUSY)
            set_num(L, "busy_for", a->busy_seconds);
        if (a->no_traceback)
            set_num(L, "no_traceback", (double)a->no_traceback);
        if (a->truncated) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "truncated");
        }
        lua_createtable(L, (int)a->ntasks, 0);
        for (size_t j = 0; j < a->ntasks; j++) {
            push_task(L, d, &a->tasks[j]);
            lua_rawseti(L, -2, (int)j + 1);
        }
        lua_setfield(L, -2, "tasks");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "agents");
}

static void release_dump(void *d) {
    tasks_free(d);
}

static void release_text(void *s) {
    free(s);
}

static void release_box(void *b) {
    box_unref(b);
}

/* Pushes the dump in the format asked for onto co and frees it. */
static int push_result(lua_State *co, tasks_dump *d, int format) {
    if (!d) {
        lua_pushnil(co);
        lua_pushliteral(co, "ms.tasks: out of memory");
        return 2;
    }
    hold_push(d, release_dump);
    if (format == FMT_TABLE) {
        push_dump(co, d);
    } else {
        char *s = format == FMT_TEXT ? tasks_render_text(d) : tasks_render_json(d);
        if (s) {
            hold_push(s, release_text);
            lua_pushstring(co, s);
            hold_pop(s);
            free(s);
        } else {
            lua_pushnil(co);
        }
    }
    hold_pop(d);
    tasks_free(d);
    if (lua_isnil(co, -1)) {
        lua_pushliteral(co, "ms.tasks: out of memory");
        return 2;
    }
    return 1;
}

static ms_poll dump_poll(ltask *lt, ms_cx *cx) {
    dump_op *o = (dump_op *)lt->op.store;
    int result;
    if (ms_task_poll_join(o->job, cx, NULL, &result, NULL) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_task_release(o->job);
    o->job = NULL;
    dump_box *b = o->box;
    o->box = NULL;
    if (o->format == FMT_PROFILE) {
        /* The box is held while the string is made (it may raise). */
        hold_push(b, release_box);
        if (b->folded) {
            lua_pushstring(lt->co, b->folded);
            lt->nres = 1;
        } else {
            lua_pushnil(lt->co);
            lua_pushfstring(lt->co, "ms.profiler.run: %s", b->err);
            lt->nres = 2;
        }
        hold_pop(b);
        box_unref(b);
        return MS_POLL_READY;
    }
    tasks_dump *d = b->d;
    b->d = NULL;
    box_unref(b);
    lt->nres = push_result(lt->co, d, o->format);
    return MS_POLL_READY;
}

static void dump_cancel(ltask *lt) {
    dump_op *o = (dump_op *)lt->op.store;
    if (o->job) {
        ms_task_release(o->job);
        o->job = NULL;
    }
    if (o->box) {
        box_unref(o->box);
        o->box = NULL;
    }
}

static const lop_kind dump_kind = {"tasks dump", NULL};

static const char *const states[] = {"running", "ready", "waiting", "idle", "busy",
                                     "blocking", "no answer", "exited", NULL};

/* The filter table at idx (or nil) into b; raises naming a bad field. */
static int read_filter(lua_State *L, int idx, dump_box *b) {
    int format = FMT_TABLE;
    if (lua_isnoneornil(L, idx))
        return format;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k)
            luaL_error(L, "ms.tasks: filter keys are names (agent, state, wait, long_wait, "
                          "format)");
        if (strcmp(k, "agent") == 0) {
            size_t len = 0;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
            if (!v || len > AGENT_NAME_MAX)
                luaL_error(L, "ms.tasks: filter.agent must be an agent's name (a string of at "
                              "most %d bytes)", AGENT_NAME_MAX);
            memcpy(b->agent, v, len + 1);
            b->f.agent = b->agent;
        } else if (strcmp(k, "state") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            int i = 0;
            while (v && states[i] && strcmp(states[i], v) != 0)
                i++;
            if (!v || !states[i])
                luaL_error(L, "ms.tasks: filter.state must be one of running, ready, waiting "
                              "(tasks) or idle, busy, blocking, no answer, exited (agents), "
                              "not %s", v ? v : luaL_typename(L, -1));
            strcpy(b->state, v);
            b->f.state = b->state;
        } else if (strcmp(k, "wait") == 0 || strcmp(k, "long_wait") == 0) {
            double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
            if (!(v > 0 && v <= 3600))
                luaL_error(L, "ms.tasks: filter.%s must be a number of seconds in (0, 3600]",
                           k);
            if (k[0] == 'w')
                b->f.wait = v;
            else
                b->f.long_wait = v;
        } else if (strcmp(k, "format") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            if (strcmp(v, "table") == 0)
                format = FMT_TABLE;
            else if (strcmp(v, "text") == 0)
                format = FMT_TEXT;
            else if (strcmp(v, "json") == 0)
                format = FMT_JSON;
            else
                luaL_error(L, "ms.tasks: filter.format must be \"table\", \"text\" or "
                              "\"json\"");
        } else {
            luaL_error(L, "ms.tasks: unknown filter field '%s' (agent, state, wait, "
                          "long_wait, format)", k);
        }
        lua_pop(L, 1);
    }
    return format;
}

static int l_tasks(lua_State *L) {
    ltask *lt = ltask_current(L, "ms.tasks");
    agent *a = lt->a;
    dump_box tmp;
    memset(&tmp, 0, sizeof tmp);
    int format = read_filter(L, 1, &tmp);
    dump_box *b = malloc(sizeof *b);
    if (!b)
        return luaL_error(L, "ms.tasks: out of memory");
    *b = tmp;
    if (b->f.agent)
        b->f.agent = b->agent;
    if (b->f.state)
        b->f.state = b->state;
    b->h = a->h;
    atomic_init(&b->refs, 2); /* the job's and the operation's */
    dump_op *o = (dump_op *)lt->op.store;
    o->box = b;
    o->format = format;
    o->job = NULL;
    if (ms_spawn_blocking(a->h->rt, dump_job, b, &o->job) != 0) {
        free(b);
        o->box = NULL;
        lua_pushnil(L);
        lua_pushliteral(L, "ms.tasks: the blocking pool refused the dump (shutting down)");
        return 2;
    }
    lt->op.kind = &dump_kind;
    return op_suspend(L, lt, dump_poll, dump_cancel, 0);
}

static const lop_kind profile_kind = {"profile", NULL};

/* ms.profiler.run{ agent = NAME, seconds = S } -> folded stacks | nil, err */
static int l_profile_run(lua_State *L) {
    ltask *lt = ltask_current(L, "ms.profiler.run");
    agent *a = lt->a;
    luaL_checktype(L, 1, LUA_TTABLE);
    dump_box tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.seconds = 5;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "agent") == 0) {
            size_t len = 0;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
            if (!v || len == 0 || len > AGENT_NAME_MAX)
                return luaL_error(L, "ms.profiler.run: agent must be an agent's name (a "
                                     "string of 1 to %d bytes)", AGENT_NAME_MAX);
            memcpy(tmp.agent, v, len + 1);
        } else if (strcmp(k, "seconds") == 0) {
            double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
            if (!(v > 0 && v <= PROFILER_MAX_SECONDS))
                return luaL_error(L, "ms.profiler.run: seconds must be a number in (0, %d]",
                                  (int)PROFILER_MAX_SECONDS);
            tmp.seconds = v;
        } else {
            return luaL_error(L, "ms.profiler.run: unknown field '%s' (agent, seconds)", k);
        }
        lua_pop(L, 1);
    }
    if (!tmp.agent[0])
        return luaL_error(L, "ms.profiler.run: agent is required (the name of the agent to "
                             "profile)");
    if (strcmp(tmp.agent, a->name) == 0)
        return luaL_error(L, "ms.profiler.run: an agent cannot profile itself (it waits for "
                             "the profile; run it from another agent)");
    dump_box *b = malloc(sizeof *b);
    if (!b)
        return luaL_error(L, "ms.profiler.run: out of memory");
    *b = tmp;
    b->h = a->h;
    atomic_init(&b->refs, 2);
    dump_op *o = (dump_op *)lt->op.store;
    o->box = b;
    o->format = FMT_PROFILE;
    o->job = NULL;
    if (ms_spawn_blocking(a->h->rt, profile_job, b, &o->job) != 0) {
        free(b);
        o->box = NULL;
        lua_pushnil(L);
        lua_pushliteral(L, "ms.profiler.run: the blocking pool refused the job (shutting down)");
        return 2;
    }
    lt->op.kind = &profile_kind;
    return op_suspend(L, lt, dump_poll, dump_cancel, 0);
}

const luaL_Reg lms_tasks_functions[] = {
    {"tasks", l_tasks},
    {NULL, NULL},
};

void lms_tasks_register(lua_State *L) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_profile_run);
    lua_setfield(L, -2, "run");
    lua_setfield(L, -2, "profiler");
}
