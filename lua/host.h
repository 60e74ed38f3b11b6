/*
 * host.h - the LuaJIT host's internal types.
 *
 * host    the process-wide registry: the runtime, every agent, names.
 * agent   an isolated lua_State run by the executor as one ms task.  Only
 *         the thread polling that task touches the state; polls of one
 *         task never overlap, and the executor orders consecutive polls,
 *         so agent code needs no locks.
 * ltask   a coroutine of an agent (ms.spawn, and the agent's main
 *         function).  It runs until it finishes or yields with a pending
 *         operation (lop): a sleep, a join, a receive...  The operation is
 *         polled by the agent's scheduler with the ltask's own waker, so a
 *         wake re-polls only the coroutine it concerns.
 * xfer    a Lua value copied out of one state to be rebuilt in another:
 *         plain data by copy, shared objects (agents, semaphores,
 *         channels, reply slots) by reference.
 */
#ifndef MS_HOST_H
#define MS_HOST_H

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
#include "ms.h"

typedef struct host host;
typedef struct agent agent;
typedef struct ltask ltask;
typedef struct xfer xfer;

/* ---- value transfer (xfer.c) ---- */

typedef enum xh_type { XH_AGENT = 1, XH_SEM, XH_CHAN, XH_REPLY } xh_type;

typedef struct xhandle {
    xh_type type;
    void *ptr;                  /* one reference owned by the blob */
} xhandle;

#define XFER_INLINE 96

struct xfer {
    char *buf;                  /* inline until a value outgrows it */
    size_t len, cap;
    xhandle *handles;
    uint32_t nhandles, hcap;
    char inline_buf[XFER_INLINE]; /* most messages fit: no second malloc */
};

/* Copies the value at idx into x.  On failure returns false with a message
 * in err naming the path of the offending value ("args.cb is a function"). */
bool xfer_encode(lua_State *L, int idx, xfer *x, const char *what, char *err, size_t errlen);
/* Pushes the value; the handles' references move to the new userdata. */
void xfer_decode(lua_State *L, xfer *x);
/* Frees the buffer and releases handles not taken by a decode. */
void xfer_clear(xfer *x);
xfer *xfer_new(void);
void xfer_init(xfer *x);
void xfer_free(xfer *x);
/* Building a blob by hand (no Lua state): a table of n pairs, then keys
 * and values. */
void xfer_put_table(xfer *x, uint32_t pairs);
void xfer_put_str(xfer *x, const char *s);
void xfer_put_lstr(xfer *x, const char *s, size_t n);
/* The bytes of a blob that holds one string (and their length in *len),
 * or NULL if it holds anything else.  Points into x. */
const char *xfer_get_lstr(const xfer *x, size_t *len);
void xfer_put_num(xfer *x, double d);
void xfer_put_handle(xfer *x, xh_type type, void *ptr); /* takes a ref */

/* ---- the event bus (events.c) ---- */
void events_push_module(lua_State *L);
void events_publish_host(const char *topic, const char *const *keys, const char *const *strs,
                         const double *nums, int n);
void events_shutdown(void);

/* ---- handles as Lua userdata (lms.c) ---- */

typedef struct lchan lchan;

/* The userdata behind a handle.  lc: a channel made by ms.channel in this
 * state carries its same-agent fast path (lchan.c); NULL otherwise. */
typedef struct lhandle {
    xh_type type;
    void *ptr;                  /* one reference, NULL once released */
    lchan *lc;                  /* a reference (lchan_unref) */
} lhandle;

void lh_push_agent(lua_State *L, agent *a);       /* takes a reference */
agent *lh_check_agent(lua_State *L, int idx);
void lh_push_handle(lua_State *L, xh_type type, void *ptr); /* takes over a ref */
void *lh_to_handle(lua_State *L, int idx, xh_type *type);   /* NULL if not one */
void lh_ref_handle(xh_type type, void *ptr);
void lh_unref_handle(xh_type type, void *ptr);
/* xfer_encode is about to copy the handle at idx out of this state: a
 * local channel becomes shared (lchan_share).  false + err on failure. */
bool lh_before_export(lua_State *L, int idx, char *err, size_t errlen);

/* ---- same-agent channels (lchan.c) ---- */

lchan *lchan_new(size_t capacity);
void lchan_unref(lchan *lc);
/* True while every user of the channel is a coroutine of this state. */
bool lchan_is_local(const lchan *lc);
/* Moves the local channel's values and waiters onto ch (in order) and
 * makes it shared for good.  The handle is at idx of L. */
bool lchan_share(lua_State *L, int idx, lchan *lc, ms_chan *ch, char *err, size_t errlen);
/* Replaces the value to send (at 2) by what a receiver of this agent
 * gets: itself if plain, else a copy; raises (naming fname) on a value
 * that cannot be sent.  May share the channel (a copy of its handle). */
void lchan_prepare(lua_State *L, const char *fname);
/* The channel methods on a local channel: the handle at 1, the value (send)
 * at 2, the timeout at 3 (send) or 2 (recv), already checked.  Each returns
 * the number of results, or yields. */
int lchan_send(lua_State *L, lchan *lc, double timeout);
int lchan_try_send(lua_State *L, lchan *lc);
int lchan_recv(lua_State *L, lchan *lc, double timeout);
int lchan_try_recv(lua_State *L, lchan *lc);
void lchan_close(lua_State *L, lchan *lc);
size_t lchan_len(const lchan *lc);
/* Whether the fast path may run here: in a task of an agent, on the
 * agent's thread (not on the blocking pool, not outside ms.run). */
bool lchan_can_run(lua_State *L);

/* ---- pending operations (ops.c) ---- */

/* The userdata behind an ms.interval iterator.  iv first: &lint->iv is the
 * slot the host tracks (host_track_interval).  Agent thread only. */
typedef struct lint {
    ms_interval *iv;
    ltask *waiter;              /* the task waiting on it, or NULL */
} lint;

typedef struct lop lop;
typedef ms_poll (*lop_poll_fn)(ltask *lt, ms_cx *cx);
typedef void (*lop_cancel_fn)(ltask *lt);

/* A reply slot for agent:call.  Refcounted; any thread. */
typedef struct reply_slot reply_slot;

struct lop {
    lop_poll_fn poll;           /* NULL: no operation (a plain yield) */
    lop_cancel_fn cancel;
    ms_timer *deadline;         /* optional timeout */
    bool timed_out;
    /* Completed only by a call on the agent's own thread, never by a
     * wake: the poll right after the yield is skipped (lchan.c). */
    bool parked;
    union {
        struct { ms_timer *t; } sleep;
        /* handle_ref anchors the target's handle, where the outcome
         * will be; abort: ms.timeout's join, which aborts on cancel. */
        struct { ltask *target; int handle_ref; bool registered, abort; } join;
        struct { int dummy; } recv;
        struct { reply_slot *slot; } call;
        struct { ms_task *job; lua_State *co; int co_ref; int nargs; } blocking;
        struct { lint *iv; } interval;
        void *any[6];
    } u;
    /* Operation-specific storage (sync waiters), see ops.c. */
    char store[128] __attribute__((aligned(16)));
};

/* ---- coroutine tasks (agent.c) ---- */

typedef enum lt_status { LT_READY, LT_WAITING, LT_RUNNING, LT_DONE, LT_FAILED, LT_ABORTED } lt_status;

struct ltask {
    _Atomic uint32_t refs;      /* scheduler + Lua handle + wakers */
    agent *a;                   /* immutable; the ltask holds a ref */
    uint64_t id;                /* immutable */
    /* Agent thread only: */
    lua_State *co;
    int co_ref;                 /* registry ref anchoring co */
    lt_status status;
    bool is_main;
    int nres;                   /* values to pass to the next resume */
    lop op;
    ltask *next_run;            /* run queue */
    ltask *next_all, *prev_all; /* the agent's list of live ltasks */
    ltask *joiners;             /* waiting in join, linked by join_next */
    ltask *join_next;
    /* The task's handle (registry ref) while the task is unfinished, or
     * LUA_NOREF if it has none: its outcome goes there (task_handle). */
    int handle_ref;
    /* Set (exchange) by wakers on any thread, cleared by the scheduler. */
    _Atomic uint32_t notified;
    ltask *next_woken;          /* written by the one waker that set notified */
};

/* A task's handle (ms.spawn's return value, a full userdata).  The task
 * holds it in the registry until it finishes; then the outcome is copied
 * into it and lt is let go, so that the handle needs no finalizer (a
 * finalizer on every task was a quarter of the time of spawning and
 * joining 10,000 tasks).  Values that need Lua storage (a result that is
 * not a number or boolean, several results, an error value) are in the
 * userdata's environment table at [1].  Only a failed task's handle gets
 * a metatable with __gc: to report a failure nobody joined.
 * Agent thread only. */
typedef struct task_handle {
    ltask *lt;                  /* a reference; NULL once finished */
    uint64_t id;
    lt_status status;           /* once finished */
    int nresults;               /* -1: env[1] is {n=, ...}; else 0 or 1 */
    int result_type;            /* one result: LUA_TNUMBER/LUA_TBOOLEAN in
                                   result_num, anything else in env[1] */
    double result_num;
    bool observed;              /* a join has seen the outcome */
} task_handle;

/* Pushes a new handle for lt and anchors it (lt->handle_ref). */
void task_handle_push(lua_State *L, ltask *lt);
/* Moves the n values at the top of co into lt's handle as its results
 * (or drops them when lt has no handle).  L is the agent's state. */
void task_handle_set_results(lua_State *L, ltask *lt, lua_State *co, int n);
/* Takes the error value at the top of L into lt's handle (pops it). */
void task_handle_set_error(lua_State *L, ltask *lt);
/* lt has finished with status st: the handle gets the status and lets go
 * of lt, and the anchor goes. */
void task_handle_release(lua_State *L, ltask *lt, lt_status st);
/* Pushes the outcome in the finished task's handle at hidx (an absolute
 * index) onto co: true, results... / nil, err / nil, "aborted".  Returns
 * how many values. */
int task_handle_push_outcome(lua_State *co, int hidx);

extern const ms_waker_vtable ltask_waker_vtable;
void ltask_ref(ltask *lt);
void ltask_unref(ltask *lt);

/* ---- agents (agent.c) ---- */

typedef enum agent_state { AG_NEW, AG_RUNNING, AG_EXITED } agent_state;

typedef struct msg {
    mlink link;                 /* first: the mailbox's (mailbox.h) */
    xfer *body;                 /* usually &own_body: one allocation a message */
    agent *sender;              /* ref; NULL if from outside an agent */
    reply_slot *reply;          /* ref; non-NULL for agent:call */
    xfer own_body;
} msg;

/* A message whose body is its own embedded blob; NULL without memory. */
msg *msg_new(void);
/* Frees the body (embedded or not), the references and the message. */
void msg_free(msg *m);

typedef enum agent_src { SRC_FN, SRC_FILE, SRC_MODULE, SRC_STATE } agent_src;

struct agent {
    _Atomic uint32_t refs;
    uint64_t id;                /* immutable */
    char name[64];              /* immutable once registered */
    host *h;                    /* immutable */

    /* The thread polling the agent's task only: */
    lua_State *L;
    bool own_state;             /* we created L (not ms.run's caller's) */
    ltask *runq_head, *runq_tail;
    ltask *all;
    ltask *main;
    ltask *current;
    ms_cx *cx;                  /* the poll's context while a task runs, else NULL */
    uint32_t fast_streak;       /* channel ops completed without a yield (lchan.c) */
    uint64_t next_ltask_id;
    bool started;
    int exit_ref;               /* registry ref of the error value on failure */

    /* Written by the agent's thread, read by metrics (relaxed). */
    _Atomic size_t mem_used;
    size_t mem_limit;           /* immutable after spawn; 0 = none */
    /* The limit is enforced only while the agent's own Lua code runs
     * (inside lua_resume or a protected call): the host's bookkeeping
     * around it (tracebacks, result tables) must not fail half-way, since
     * a memory error outside protection would end the process.  Written
     * by the thread running the agent. */
    bool enforce_limit;
    _Atomic bool oom;           /* the allocator refused memory */
    _Atomic uint64_t polls;

    /* The agent task and its waker (set before any operation registers,
     * never dropped before the agent is freed). */
    ms_task *task;
    ms_waker self_waker;
    _Atomic(ltask *) woken;     /* Treiber stack of woken ltasks */
    _Atomic bool blocking_busy; /* a blocking job holds L */
    _Atomic bool stop_requested;
    _Atomic bool shutdown_requested; /* graceful: run on_shutdown, then end */
    bool shutdown_started;      /* agent thread */

    /* Spawn spec, consumed at start (agent thread). */
    agent_src src;
    char *src_text;             /* file path, module name or bytecode */
    size_t src_len;
    xfer *args;
    bool jit_off;
    uint32_t restarts;          /* set by a supervisor that restarted this child */
    bool supervised;            /* immutable: its supervisor stops it at shutdown */
    bool jit_counted;           /* counted in host jit_agents */
    bool jit_decided;           /* agent thread: the JIT was switched on or off */
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
    agent **monitors;           /* refs; told when this agent exits */
    uint32_t nmonitors, mcap;
    char *stop_reason;
    bool state_closing;         /* under mlock: L is being closed */
    /* Exit, for monitors and metrics (under mlock once state == EXITED). */
    char exit_reason[16];       /* normal, error, killed, oom */
    char *exit_message;
    char *exit_traceback;
    int exit_code;              /* ms_err code */
    size_t unread_at_exit;      /* messages accepted and never received */

    agent *next_reg, *prev_reg; /* host registry, under host lock */
};

typedef enum host_phase { HOST_RUNNING, HOST_STOPPING } host_phase;

struct host {
    ms_runtime *rt;
    bool own_rt;
    pthread_mutex_t lock;
    agent *agents;              /* under lock */
    uint64_t nagents;           /* under lock */
    uint64_t next_agent_id;     /* under lock */
    /* Defaults for new agents: live-tunable (tune.c), under lock. */
    size_t default_mem_limit;
    size_t mailbox_limit;
    uint32_t jit_agent_limit;
    _Atomic uint64_t tune_changes; /* settings changed by ms.tune or SIGHUP */
    _Atomic uint32_t jit_agents;
    char *lua_path, *lua_cpath; /* package paths for new agent states */
    /* Intervals live in Lua userdata that may outlive the runtime (the
     * main state is collected last): the host frees what is left at
     * shutdown and clears the userdata's pointer.  Under lock. */
    ms_interval ***intervals;
    uint32_t nintervals, icap;
    /* Agents the runtime's shutdown stopped, and the messages they left
     * unread: reported once, by host_shutdown. */
    _Atomic uint64_t stopped_at_shutdown, unread_at_shutdown;
    /* Graceful shutdown (lifecycle.c); under lock. */
    host_phase phase;
    char shutdown_reason[32];
    double shutdown_timeout;
    uint64_t shutdown_started_ns;
    ms_waker lifecycle_waker;
    _Atomic bool shutdown_timed_out;
    /* What ms-host resolved its profile from, for SIGHUP (immutable after
     * start; NULL under ms.run). */
    char *profile_name;
    char **profile_sets;        /* "key=value", from --set and --workers */
    int nprofile_sets;
    ms_config profile_config;   /* the runtime's settings as resolved */
    /* The metrics collector's last two snapshots (NULL until taken) with
     * their wall-clock times, for ms.metrics_history.  Written by the
     * collector (collector.c), read by agents; under hist_lock, which is
     * never held while taking another lock. */
    pthread_mutex_t hist_lock;
    ms_metrics *hist_latest, *hist_previous;
    double hist_latest_time, hist_previous_time;
    /* Set by ms-host when it runs a collector (under lock): called before
     * an immediate _exit so that the metrics file still ends with a final
     * line. */
    void (*metrics_final)(const char *why);
};

/* Collector thread: makes m (owned from now on) the latest snapshot; the
 * latest becomes the previous. */
void host_history_push(host *h, ms_metrics *m, double time);

/* ---- live tuning (tune.c) ---- */

typedef struct tune_req {
    const char *name;           /* a live profile field */
    double value;               /* normalised: count, seconds or bytes */
} tune_req;

typedef struct tune_change {
    const char *name;
    double old_value, new_value;
} tune_change;

/* Applies every request or none (returns the number changed, filling out
 * if not NULL; or a negative ms_err code with a message in err naming the
 * field and value).  source names who asked ("ms.tune", "SIGHUP"). */
int host_tune(host *h, const tune_req *req, int n, const char *source, tune_change *out,
              char *err, size_t errlen);
bool host_is_live_field(const char *name);
/* Pushes the C function behind ms.tune (ms._tune). */
void tune_push_primitive(lua_State *L);
void agent_set_mailbox_limit(agent *a, size_t limit);

/* SIGHUP: re-reads the profile; applies the live settings, names the ones
 * that need a restart.  Runs on the blocking pool. */
void host_reload_profile(void);

/* Starts a graceful shutdown (idempotent): every agent runs its
 * ms.on_shutdown handlers and ends.  timeout < 0: the profile's. */
void host_begin_shutdown(const char *reason, double timeout);
/* ms-host: watches SIGINT and SIGTERM and enforces the deadline. */
int host_start_lifecycle(ms_error *err);
/* ms_config.on_stall for hosts: names the agent, reports, publishes. */
void host_on_stall(void *ud, const ms_stall *st);

void host_track_interval(ms_interval **slot);
void host_untrack_interval(ms_interval **slot);

host *host_get(void);
/* Creates the process's host around rt (taking ownership if own). */
host *host_init(ms_runtime *rt, bool own);
/* Shuts down and frees the runtime (if the host owns it) and the host.
 * Returns MS_E_SHUTDOWN_FAILED when threads were left running. */
int host_shutdown(void);

agent *agent_from_state(lua_State *L);
void agent_ref(agent *a);
void agent_unref(agent *a);
/* Creates an agent from a spawn table at idx; pushes nothing.  On failure
 * returns NULL with a message in err. */
agent *agent_spawn(lua_State *L, int idx, char *err, size_t errlen);
/* Wraps the calling state as the main agent (ms.run / ms-host run) and runs
 * the function below the top nargs values of L, with them as arguments, to
 * completion on this thread.  Pushes the error value (or nil). */
int agent_run_main(lua_State *L, int nargs, ms_error *err);
/* Delivers a message (takes ownership of m).  Returns 0 or an ms_err. */
int agent_deliver(agent *a, msg *m, char *err, size_t errlen);
/* The oldest message of the running agent's mailbox, or NULL (agent's
 * thread only); counts it as received. */
msg *agent_take_message(agent *a);
/* Registers lt as the task waiting in ms.recv (agent's thread only); the
 * caller must then look at the mailbox once more before it sleeps. */
void agent_wait_message(agent *a, ltask *lt);
/* Unregisters lt if it is still the waiting receiver. */
void agent_unwait_message(agent *a, ltask *lt);
/* The registered receiver, or NULL (agent's thread; a snapshot). */
ltask *agent_receiver(agent *a);
void agent_stop(agent *a, const char *reason);
void agent_add_monitor(agent *target, agent *watcher);
agent *agent_whereis(const char *name);
ms_poll agent_poll(ms_cx *cx, void *state);
void agent_send_exit_notice(agent *target, agent *watcher);
xfer *lms_exit_notice(agent *target);
ms_poll op_poll_now(ltask *lt, ms_cx *cx);

/* The running ltask of L's agent, or raises a Lua error naming fname when
 * L is not a coroutine the agent scheduler runs. */
ltask *ltask_current(lua_State *L, const char *fname);
/* Creates a coroutine task running the function at the top of L with the
 * nargs values below it... (see agent.c). */
ltask *ltask_spawn(agent *a, lua_State *L, int nargs);
void ltask_abort(ltask *lt);
/* Suspends the running ltask on its op: `return ltask_wait(L, lt);` */
int ltask_wait(lua_State *L, ltask *lt);
void ltask_wake_by_ref(ltask *lt);
/* On the agent's thread during a resume (a->cx set): lt's operation is
 * complete (its results pushed, nres set); it joins the run queue now. */
void ltask_make_ready(ltask *lt);
/* Polls lt's operation once now with cx (a->cx); ready ones join the run
 * queue. */
void ltask_poll_op(ltask *lt, ms_cx *cx);

/* Reply slots (ops.c). */
reply_slot *reply_new(void);
void reply_ref(reply_slot *r);
void reply_unref(reply_slot *r);
/* Fills the slot once; false if already filled or abandoned. */
bool reply_fill(reply_slot *r, xfer *body);

/* Error values: pushes { kind, code, message, traceback, severity,
 * recovery = { strategy, ... } }. */
void lerr_push(lua_State *L, int code, const char *message, const char *traceback);

/* The ms module. */
int luaopen_ms(lua_State *L);
/* The metatables of ms's userdata, each built the first time a state
 * needs it. */
typedef enum lms_mt {
    LMS_MT_AGENT,
    LMS_MT_REPLY,
    LMS_MT_SEMAPHORE,
    LMS_MT_CHANNEL,
    LMS_MT_PERMIT,
    LMS_MT_TASK,
    LMS_MT_FAILED_TASK,
    LMS_MT_ERROR,
    LMS_MT_COUNT
} lms_mt;
/* Pushes the state's metatable of that kind. */
void lms_push_mt(lua_State *L, lms_mt which);
/* The userdata at idx if it has that metatable; raises luaL_checkudata's
 * type error otherwise.  Called from a method whose closure carries the
 * metatable as upvalue 1, the check is one comparison. */
void *lms_check_udata(lua_State *L, int idx, lms_mt which);
/* Op constructors used by lms.c (ops.c). */
int op_sleep(lua_State *L, ltask *lt, double seconds);
int op_yield(lua_State *L, ltask *lt);
/* Joins the task whose handle is at handle_idx; abort: ms.timeout's join,
 * which aborts the target when it times out. */
int op_join(lua_State *L, ltask *lt, int handle_idx, double timeout, bool abort);
int op_recv(lua_State *L, ltask *lt, double timeout);
int op_call(lua_State *L, ltask *lt, agent *target, int msg_idx, double timeout);
int op_blocking(lua_State *L, ltask *lt, int nargs);
int op_interval_next(lua_State *L, ltask *lt, lint *iv);
void op_cancel(ltask *lt);
/* Clears lt's operation (and frees its deadline timer). */
void op_reset(ltask *lt);
/* The same, leaving the operation store as it is. */
void op_reset_light(ltask *lt);
/* Arms lt's operation deadline (timeout < 0: none); raises on failure. */
void op_set_deadline(lua_State *L, ltask *lt, double timeout);
/* Records poll/cancel as lt's operation and yields the top nvals values
 * of L (they stay on the suspended coroutine's stack). */
int op_suspend(lua_State *L, ltask *lt, lop_poll_fn poll, lop_cancel_fn cancel, int nvals);
/* Yields with the top n values of L as the results of an operation that
 * is already complete: the task goes to the back of the run queue. */
int op_yield_results(lua_State *L, ltask *lt, int n);
/* Returns the top n values of L as the results of an operation that
 * completed at once, without a trip through the scheduler; to stay fair
 * to the agent's other coroutines, every OP_FAST_STREAK-th such return in
 * one run of a coroutine yields anyway (op_yield_results). */
#define OP_FAST_STREAK 64
int op_return_fast(lua_State *L, ltask *lt, int n);
/* Turns lt's pending operation into a core channel send of v (taking it)
 * or a receive on ch, keeping its deadline; not polled yet. */
void op_chan_send_adopt(ltask *lt, ms_chan *ch, xfer *v);
void op_chan_recv_adopt(ltask *lt, ms_chan *ch);
int op_sem_acquire(lua_State *L, ltask *lt, ms_sem *s, uint64_t n, double timeout);
int op_chan_send(lua_State *L, ltask *lt, ms_chan *ch, xfer *value, double timeout);
int op_chan_recv(lua_State *L, ltask *lt, ms_chan *ch, double timeout);
/* A permit object that releases its n permits when released or collected;
 * takes over one reference to s. */
void lh_push_permit(lua_State *L, ms_sem *s, uint64_t n);

/* ---- the metrics endpoint (metrics_http.c; ms-host only) ---- */

/* Listens on addr ("host:port" or "[v6]:port"; hosts are numeric or
 * localhost) and serves GET /metrics (Prometheus text format) and
 * /metrics.json from tasks on h's runtime until it shuts down; says where
 * on stderr.  On failure (a malformed address, the port in use...) returns
 * an ms_err with err naming the address, and nothing is left running. */
int metrics_http_start(host *h, const char *addr, ms_error *err);
/* The /metrics.json document for m (agents read now) as one line ending in
 * "\n", with prefix ("\"time\":1.5,") spliced in as its first members;
 * malloc'd, NULL without memory. */
char *metrics_json_line(host *h, const ms_metrics *m, const char *prefix);

/* ---- the metrics collector (collector.c; ms-host only) ---- */

/* Starts the collector: a snapshot every interval_s seconds, kept as the
 * host's latest (ms.metrics_history) and appended as one JSON line to
 * path.  Fails, with err naming the path and the OS error, when the file
 * cannot be opened for appending or the thread cannot start. */
int collector_start(host *h, const char *path, double interval_s, ms_error *err);
/* Stops the collector (if running) and appends the final line, marked
 * "final": true, with why as its "reason".  Idempotent; any thread; safe
 * to call right before _exit. */
void collector_finish(const char *why);

/* ---- the console (console.c; ms-host only) ---- */

/* Serves `ms-host attach` on the Unix socket path (mode 0600; a stale
 * socket there is replaced, anything else refused) until the runtime shuts
 * down, then removes it.  Spawns the dispatcher agent from L, the main
 * state (not yet an agent).  On failure returns an ms_err with err naming
 * path, and nothing is left running. */
int console_start(host *h, lua_State *L, const char *path, ms_error *err);

/* `ms-host attach PATH` (attach.c): the console client; returns the exit
 * status. */
int attach_main(const char *path);

/* ---- the REPL's terminal (repl_term.c; ms-host only) ---- */
int luaopen_ms_repl_term(lua_State *L);

#endif
