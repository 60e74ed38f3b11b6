/*
 * tasks.h - the live task dump: every agent and every coroutine task in
 * it, with what each waits on, for how long, and its Lua traceback; the
 * wait cycles it can see.  Taken without reading any Lua state that
 * another thread runs (see tasks.c and docs/observability.md).
 */
#ifndef MS_AGENTS_TASKS_H
#define MS_AGENTS_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd.h"

/* A task's state in the dump. */
typedef enum tasks_task_state { TT_RUNNING, TT_READY, TT_WAITING } tasks_task_state;

/* How the dump read an agent. */
typedef enum tasks_agent_state {
    TA_READ,       /* at a poll boundary, by its own thread: tasks listed */
    TA_BUSY,       /* inside one poll for longer than the dump waited: not read */
    TA_BLOCKING,   /* a function run by ms.blocking holds its state: not read */
    TA_NO_ANSWER,  /* not polled within the dump's wait (starting, queued) */
    TA_EXITED      /* ended before it answered */
} tasks_agent_state;

typedef struct tasks_task {
    uint64_t id;
    tasks_task_state state;
    bool is_main;               /* the agent's main function */
    bool long_wait;             /* waiting for longer than the dump's threshold */
    const char *kind;           /* the op kind's name (static), or NULL */
    char what[112];             /* the op's description ("" if none) */
    uint64_t agent_id;          /* a call's target, else 0 */
    double wait_seconds;        /* how long it has waited (waiting only) */
    char *traceback;            /* malloc'd; NULL: not taken (see skipped) */
} tasks_task;

typedef struct tasks_agent {
    uint64_t id;
    char name[64];
    tasks_agent_state state;
    bool exited;                /* its registry row says exited */
    size_t mailbox, memory;
    uint32_t restarts;
    double cpu_seconds;
    double busy_seconds;        /* TA_BUSY: how long its current poll has run */
    size_t ntasks;              /* tasks listed (all it has unless truncated) */
    tasks_task *tasks;          /* ntasks rows, or NULL */
    size_t no_traceback;        /* rows whose traceback was skipped (time budget) */
    bool truncated;             /* more tasks than it had time to list */
    double answer_seconds;      /* TA_READ: the time its answer took in its poll */
} tasks_agent;

typedef struct tasks_dump {
    size_t nagents;
    tasks_agent *agents;        /* sorted by id */
    /* Call cycles: ncycles chains of agent ids, each ending where it
     * started (A, B, A). */
    size_t ncycles;
    uint64_t **cycles;
    size_t *cycle_len;
    double took_seconds;        /* from the request to the last answer */
    double max_answer_seconds;  /* the longest time one agent spent answering */
    double long_wait;           /* the threshold used for long_wait */
    bool oom;                   /* something could not be allocated: partial */
} tasks_dump;

typedef struct tasks_filter {
    const char *agent;          /* only this agent's name, or NULL */
    const char *state;          /* only tasks (or agents) in this state, or NULL */
    double wait;                /* seconds to wait for answers (default 0.5) */
    double long_wait;           /* flag waits older than this (default 5 s) */
} tasks_filter;

#define TASKS_DEFAULT_WAIT 0.5
#define TASKS_DEFAULT_LONG_WAIT 5.0

/* Takes a dump of h's agents (any thread that is not a worker: it waits
 * up to filter->wait for the agents' answers).  NULL without memory. */
tasks_dump *tasks_collect(host *h, const tasks_filter *filter);
void tasks_free(tasks_dump *d);
/* The dump as readable text, or as JSON; malloc'd, NULL without memory. */
char *tasks_render_text(const tasks_dump *d);
char *tasks_render_json(const tasks_dump *d);
/* The name of an agent of the dump by id, or NULL. */
const char *tasks_agent_name(const tasks_dump *d, uint64_t id);
const char *tasks_task_state_name(tasks_task_state s);
const char *tasks_agent_state_name(tasks_agent_state s);

/* Agent thread, at a poll boundary (inside the protected poll): answers a
 * pending dump request, if any.  Costs one atomic load when there is none. */
void tasks_answer(agent *a);
/* Agent thread, when the agent ends: tells a pending request so. */
void tasks_answer_exited(agent *a);

#endif
