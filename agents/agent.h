/*
 * agent.h - an agent: an isolated lua_State that the executor runs as one
 * ms task.  Only the thread polling that task touches the state; polls of
 * one task never overlap and the executor orders consecutive polls, so
 * agent code needs no locks.
 *
 * The boundary.  Every call from C into an agent's state that can run Lua
 * code (metamethods, finalizers, tostring, decoding a message that
 * allocates) or raise (allocation under the memory limit) runs inside the
 * agent's protected poll (agent_poll), so that a raise there ends that
 * agent alone, with reason "error" or "oom", never the host.  No Lua API
 * call that can allocate or raise is made while a pthread mutex is held:
 * a snapshot is taken under the lock and the Lua values are built after
 * it is released.  See docs/host.md.
 */
#ifndef MS_AGENTS_AGENT_H
#define MS_AGENTS_AGENT_H

#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fwd.h"
#include "mailbox.h"
#include "ms.h"

/* The longest agent name, in bytes.  A longer name is refused (spawn
 * says so), never cut. */
#define AGENT_NAME_MAX 63

/* Sends one poll of an agent makes before it lets other agents run
 * (lms_agent.c's a_send): on one worker a collector of four senders stays
 * within this many messages of them; large enough that the yields cost
 * little beside the sends. */
#define AGENT_SEND_SLICE 256

typedef enum agent_state { AG_NEW, AG_RUNNING, AG_EXITED } agent_state;

/* A watcher (a reference) and the message its exit notice will travel
 * in, allocated when it started watching, so that an exit is always told
 * even when memory has run out by then (mail_add_monitor). */
typedef struct agent_monitor {
    agent *watcher;
    msg *notice;
} agent_monitor;

/* What the health monitor does with an agent stuck in one poll past
 * stall_threshold (agent.runaway): report it, stop it, or (a count N > 0)
 * stop it at its Nth stall. */
enum { RUNAWAY_REPORT = 0, RUNAWAY_STOP = -1 };

/* Where an agent's main function comes from: a function's bytecode, a
 * file, a module, or (ms.run) a function already in the caller's state. */
typedef enum agent_src { SRC_FN, SRC_FILE, SRC_MODULE, SRC_STATE } agent_src;

struct agent {
    _Atomic uint32_t refs;
    uint64_t id;                /* immutable once registered */
    char name[AGENT_NAME_MAX + 1]; /* immutable once registered */
    host *h;                    /* immutable */

    /* The thread polling the agent's task only, except that L and
     * own_state are set and cleared under mlock, where agent_stop_as reads
     * them (to hook a running state): */
    lua_State *L;
    bool own_state;             /* we created L (not ms.run's caller's) */
    /* Where the protected poll runs: L for an agent's own state; for
     * ms.run, a thread of the caller's state (L itself is inside ms.run's
     * C call on another thread's stack). */
    lua_State *Lp;
    int Lp_ref;                 /* registry ref anchoring Lp (SRC_STATE) */
    bool poll_fn_ready;         /* the poll function is at Lp's stack bottom */
    int main_ref;               /* SRC_STATE: {fn, args...} until started */
    ltask *runq_head, *runq_tail;
    ltask *all;
    ltask *main;
    ltask *current;
    ms_cx *cx;                  /* the poll's context while a task runs, else NULL */
    uint32_t fast_streak;       /* channel ops completed without a yield (lchan.c) */
    uint64_t next_ltask_id;
    bool started;
    bool tearing_down;          /* agent thread: no new task from here on */
    int exit_ref;               /* registry ref of the error value on failure */
    /* The last failed task's message and traceback (ltask.c), freed with
     * the agent: held here while the error value is built, which may
     * raise. */
    char *fail_message, *fail_traceback;

    /* Written by the agent's thread, read by metrics (relaxed). */
    _Atomic size_t mem_used;
    size_t mem_limit;           /* immutable after spawn; 0 = none */
    /* The limit is enforced only while the agent's own Lua code runs
     * (inside lua_resume or a protected call): the host's bookkeeping
     * around it (tracebacks, result tables) should not fail half-way.
     * Written by the thread running the agent. */
    bool enforce_limit;
    _Atomic bool oom;           /* the allocator refused memory */
    _Atomic uint64_t polls;
    /* Time spent in the agent's polls, summed, and the time at which the
     * poll running now began (0 between polls), both in cpuclock ticks
     * (cpuclock.h).  Written by the thread polling the agent at a poll's
     * start and end; read by anyone (relaxed: figures, and the task dump's
     * "busy for" hint). */
    _Atomic uint64_t cpu_ticks;
    _Atomic uint64_t poll_since;
    /* The task dump asking this agent for its rows (tasks.c): stored by
     * the dump's collector, taken (exchange) by the agent at its next
     * poll or by the collector when it gives up waiting. */
    _Atomic(struct tasks_slot *) dump_slot;

    /* The agent task and its waker (set before any operation registers,
     * never dropped before the agent is freed). */
    ms_task *task;
    ms_waker self_waker;
    /* self_waker is set (the first poll stores it, then this, seq_cst):
     * the task dump wakes the agent only then (tasks.c). */
    _Atomic bool waker_ready;
    _Atomic(ltask *) woken;     /* Treiber stack of woken ltasks */
    _Atomic bool blocking_busy; /* a blocking job holds L */
    _Atomic bool stop_requested;
    _Atomic bool shutdown_requested; /* graceful: run on_shutdown, then end */
    /* The agent handles stops itself (ms.trap_exit, ms.on_shutdown): a
     * supervisor asks it with a message and waits its shutdown time,
     * instead of stopping it at once.  Written by the agent, read by
     * anyone (relaxed: a hint for whoever stops it). */
    _Atomic bool traps_exit;
    bool shutdown_started;      /* agent thread */
    /* Its running task yielded for a time slice (agent.c's stop hook; the
     * health monitor found every worker stalled while tasks waited):
     * agent thread only, from the hook to the end of that resume. */
    bool sliced;
    /* Sends since the agent last gave its worker up (AGENT_SEND_SLICE, in
     * this header's definitions), and whether the send
     * that reached AGENT_SEND_SLICE asked to give it up at the end of this
     * resume (lms_agent.c's a_send).  Agent thread only. */
    uint32_t sends_in_slice;
    bool send_yield;
    _Atomic uint64_t slices;    /* time slices taken; its thread adds, anyone reads */

    /* Spawn spec, consumed at start (agent thread). */
    agent_src src;
    char *src_text;             /* file path, module name or bytecode */
    size_t src_len;
    xfer *args;
    /* Main script arguments (ms-host run): passed as ... and set as the
     * global arg (argv[0] the script).  Consumed at start. */
    char **argv;
    int argc;
    bool main_agent;            /* ms-host's main agent: JIT from the start */
    bool jit_off;
    bool sandbox;               /* immutable: see libs.c (the JIT is off too) */
    uint32_t restarts;          /* set by a supervisor that restarted this child */
    int runaway;                /* immutable: RUNAWAY_REPORT, _STOP or a count */
    _Atomic uint32_t stalls;    /* stalls reported (health monitor's thread) */
    bool supervised;            /* immutable: its supervisor stops it at shutdown */
    bool jit_counted;           /* counted in host jit_agents */
    bool jit_decided;           /* agent thread: the JIT was switched on or off */
    /* Agent thread (agent_jit.c's trace handler): a trace completed since
     * the state's last flush, so it holds machine code; and the JIT was
     * switched off because machine code could not be allocated. */
    bool jit_mcode, jit_fell_back;
    uint8_t ms_upvals[8];       /* fn upvalues that held the ms module */
    int n_ms_upvals;

    /* The mailbox: pushed by any thread, popped by the agent's (see
     * mailbox.c for the memory ordering); closed at exit. */
    mailbox mbox;
    /* 0 = unbounded.  Read by senders (mbox_push's limit); written by
     * ms.tune under the host lock, hence atomic (relaxed). */
    _Atomic size_t mailbox_limit;
    /* The task waiting in ms.recv, with a reference.  Set by the agent's
     * thread (exchange, seq_cst, then it looks at the mailbox again);
     * taken by a producer after its push (seq_cst fence, then exchange),
     * which then wakes it.  Dekker pair with the link store in mbox_push. */
    _Atomic(ltask *) receiver;

    /* Under mlock: */
    pthread_mutex_t mlock;
    agent_state state;
    agent_monitor *monitors;    /* told when this agent exits (mail.c) */
    uint32_t nmonitors, mcap;
    agent **links;              /* refs; linked both ways (mail.c) */
    uint32_t nlinks, lcap;
    char *stop_reason;
    char stop_exit_reason[16];  /* the exit reason a stop gives: killed, runaway */
    bool state_closing;         /* under mlock: L is being closed */
    /* Exit, for monitors and metrics (under mlock once state == EXITED). */
    char exit_reason[16];       /* normal, error, killed, oom, shutdown */
    char *exit_message;
    char *exit_traceback;
    int exit_code;              /* ms_err code */
    size_t unread_at_exit;      /* messages accepted and never received */
    uint64_t received_at_exit;  /* messages its code got (taken, less held) */
    /* Agent thread only: messages taken from the mailbox for a task that
     * was aborted before its code saw them (ltask.c); part of unread. */
    size_t unread_dropped;

    /* Open OS handles (iohandle.c): the list is the agent thread's; the
     * count is written there and read by metrics (relaxed). */
    ioh *io_handles;
    _Atomic uint32_t io_count;

    /* The host registry (registry.c), under the host lock. */
    agent *next_reg, *prev_reg;
    agent *next_name;           /* its chain in the table of names */
    bool named;                 /* in the table of names */

    /* ---- cluster (cluster.h) ---- */
    /* Nonzero: a proxy for agent `id` of that host (id 0: the host
     * itself, carrying exit notices there).  Immutable once made; a
     * proxy never runs. */
    uint64_t remote_host;
    /* The cluster's table of proxies, under the cluster's lock. */
    agent *next_proxy;
    bool in_proxy_table;
    _Atomic bool remote_exited;  /* the proxy's exit was told (once) */
    /* Started by another host's ms.agent.spawn (its supervisor is
     * there): fenced when this host is cut off.  Immutable. */
    bool spawned_remotely;
    /* The host whose spawn started it (spawned_remotely): when that host
     * is lost or leaves, this agent is stopped.  Immutable. */
    uint64_t spawned_by;
    /* Its name as claimed in the cluster's registry (cluster_names.h),
     * set once by the spawner after the start, taken (exchanged) by
     * whoever releases it: its exit or that spawner. */
    _Atomic(struct name_claim *) name_claim;
    /* ---- end cluster ---- */
};

/* A consistent copy of an agent's row for a:info(), ms.agents() and the
 * metrics, taken under its lock so that no Lua value is built there. */
typedef struct agent_info {
    uint64_t id;
    char name[AGENT_NAME_MAX + 1];
    agent_state state;
    size_t mailbox, received, memory, memory_limit;
    bool traps_exit;
    uint64_t polls;
    uint64_t cpu_ns;            /* time in its polls, summed */
    uint32_t restarts;
    uint32_t io_handles;        /* open OS handles (iohandle.h) */
    char exit_reason[16];
} agent_info;

void agent_get_info(agent *a, agent_info *out);
/* a's time in polls, summed, the poll running now included (any thread). */
uint64_t agent_cpu_ns(agent *a);
/* Every live agent's row, in a malloc'd array (*rows, *n); false without
 * memory. */
bool agent_list_info(host *h, agent_info **rows, size_t *n);

/* A new agent of h with h's defaults, not yet registered or started;
 * NULL without memory.  The caller has the one reference. */
agent *agent_new(host *h);
void agent_ref(agent *a);
void agent_unref(agent *a);
/* The agent whose state L belongs to, or NULL. */
agent *agent_from_state(lua_State *L);
/* Whether L is the coroutine of the task this thread is resuming (not a
 * coroutine the agent's code made): only there may a hook yield to the
 * scheduler. */
bool agent_in_task(lua_State *L);
/* The agent whose task this thread is running inside lua_resume, or NULL
 * (set by ltask_resume). */
agent *agent_running(void);
void agent_set_running(agent *a);
/* Registers a and starts its task on the runtime.  On failure returns
 * false with err set; a is then unregistered (the caller keeps its
 * reference). */
bool agent_start(agent *a, char *err, size_t errlen);
/* The executor's poll of an agent's task. */
ms_poll agent_poll(ms_cx *cx, void *state);
/* Records the agent's end and tells its monitors (L still open). */
void agent_exit(agent *a, const char *reason, int code, const char *message,
                const char *traceback);
/* Ends a at once: at its next poll if it waits, and if it runs, at the
 * interpreter's next thousand instructions (a hook that yields it out).
 * The exit reason is "killed" (agent_stop) or exit_reason, with reason as
 * the exit message. */
void agent_stop(agent *a, const char *reason);
/* Makes the agent's running task, if any, yield out of its poll at its
 * next instruction, compiled code included (preempt.h), without stopping
 * it: host shutdown, for agents that do not trap exits, so that the next
 * poll ends them; and a time slice when every worker is stalled while
 * tasks wait (lifecycle_on_starved), after which the task goes on first
 * at the agent's next poll.  Any thread. */
void agent_interrupt(agent *a);
void agent_stop_as(agent *a, const char *exit_reason, const char *reason);
/* Switches the JIT on for a, within jit_agent_limit and while the
 * machine-code window has room, unless it was spawned with jit = false or
 * a memory limit, or leaves it off (agent_jit.c).  Once per agent. */
void agent_jit_decide(agent *a);

/* package.preload["jit.profile"] in an agent's state (before and after
 * jit opens, which registers LuaJIT's own loader): raises.  LuaJIT's
 * profiler has one slot per process, which preempt.c holds so that
 * compiled code can be stopped. */
int agent_jit_profile_refused(lua_State *L);
/* Waits on a plain thread (not a worker) for a started agent to end.
 * Returns 0, or its failure with err set from its exit record. */
int agent_join(agent *a, ms_error *err);
/* Runs the function below the top nargs values of L (the caller's state)
 * as the main agent on the workers, and waits for it on this thread.
 * Pushes the error value (or nil). */
int agent_run_main(lua_State *L, int nargs, ms_error *err);

#endif
