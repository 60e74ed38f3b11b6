/*
 * ms.h - the public C API of libms, the ms-host runtime core.
 *
 * libms is a multi-threaded async runtime: a work-stealing executor that
 * polls tasks (a poll function plus its state), a blocking thread pool,
 * runtime configuration with validation, an error model with severities
 * and recovery strategies, and runtime metrics.
 *
 * Conventions:
 *   - Every handle is opaque; every symbol carries the ms_ prefix, and
 *     every function is marked MS_API: libms.so exports those and nothing
 *     else.
 *   - Functions that can fail return 0 or a negative ms_err code and, when
 *     given an ms_error *, fill it with a human-readable message naming the
 *     value at fault.  Nothing in libms aborts on bad input.
 *   - Durations in the C API are milliseconds unless a name says otherwise.
 *
 * This header is the only one a user of the core includes.  The core knows
 * nothing of Lua.
 */
#ifndef MS_H
#define MS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_VERSION_MAJOR 0
#define MS_VERSION_MINOR 1
#define MS_VERSION_PATCH 0
#define MS_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define MS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MS_PRINTF(f, a)
#endif

/* Marks the public API.  libms is built with hidden visibility by default,
 * so that libms.so exports these declarations and nothing else (its
 * internal cross-file functions stay inside the library). */
#if defined(__GNUC__)
#define MS_API __attribute__((visibility("default")))
#else
#define MS_API
#endif

/* ------------------------------------------------------------------------
 * Errors
 *
 * Every error code belongs to one kind and has a default severity and a
 * default recovery strategy (see docs/errors.md for the table).  Callers
 * that supervise work (the Lua host's supervisors) start from this mapping
 * and may override it.
 * ---------------------------------------------------------------------- */

typedef enum ms_err {
    MS_OK = 0,

    /* kind Runtime */
    MS_E_BUILD_FAILED = -1,      /* the runtime could not be built */
    MS_E_STARTUP_FAILED = -2,    /* a runtime thread could not be started */
    MS_E_SHUTDOWN_FAILED = -3,   /* shutdown did not complete in time */
    MS_E_CONFIG_INVALID = -4,    /* ConfigurationInvalid: field, value, range */
    MS_E_SHUTTING_DOWN = -5,     /* the runtime no longer accepts work */
    MS_E_WRONG_THREAD = -6,      /* e.g. block_on called on a worker */

    /* kind Task */
    MS_E_TASK_FAILED = -20,      /* the task's poll function reported failure */
    MS_E_TASK_CANCELLED = -21,   /* aborted, or cancelled by shutdown */
    MS_E_TIMEOUT = -22,          /* a wait gave up; the awaited thing lives on */

    /* kind Resource */
    MS_E_NO_MEMORY = -40,        /* an allocation failed */
    MS_E_EXHAUSTED = -41,        /* a bounded resource is full */
    MS_E_THREAD_LIMIT = -42,     /* the OS refused another thread */
    MS_E_CLOSED = -43,           /* the resource was closed */

    /* kind Io */
    MS_E_IO = -60,               /* an operating-system I/O call failed */
    MS_E_NOT_ENABLED = -61,      /* time or I/O used on a runtime without it */

    /* kind Usage */
    MS_E_INVALID_ARGUMENT = -80, /* a caller passed a value outside the contract */

    /* kind Internal */
    MS_E_INTERNAL = -99          /* a broken invariant; report it as a bug */
} ms_err;

typedef enum ms_err_kind {
    MS_KIND_NONE = 0,
    MS_KIND_RUNTIME,
    MS_KIND_TASK,
    MS_KIND_RESOURCE,
    MS_KIND_IO,
    MS_KIND_USAGE,
    MS_KIND_INTERNAL
} ms_err_kind;

typedef enum ms_severity {
    MS_SEVERITY_LOW = 0,
    MS_SEVERITY_MEDIUM,
    MS_SEVERITY_HIGH,
    MS_SEVERITY_CRITICAL
} ms_severity;

typedef enum ms_recovery_kind {
    MS_RECOVER_IGNORE = 0,        /* log and go on */
    MS_RECOVER_RETRY,             /* retry up to max_attempts, delay_ms apart */
    MS_RECOVER_RESTART,           /* restart the failed component */
    MS_RECOVER_ESCALATE,          /* hand the failure to the parent/operator */
    MS_RECOVER_RELOAD,            /* reload configuration, then retry */
    MS_RECOVER_CIRCUIT_BREAKER,   /* open after failure_threshold failures */
    MS_RECOVER_FAILOVER           /* switch to a standby */
} ms_recovery_kind;

typedef struct ms_recovery {
    ms_recovery_kind kind;
    uint32_t max_attempts;       /* RETRY */
    uint64_t delay_ms;           /* RETRY */
    uint32_t failure_threshold;  /* CIRCUIT_BREAKER */
    uint64_t reset_timeout_ms;   /* CIRCUIT_BREAKER */
} ms_recovery;

#define MS_ERROR_MESSAGE_MAX 256

/* An error value: the code and a message naming what was at fault. */
typedef struct ms_error {
    ms_err code;
    char message[MS_ERROR_MESSAGE_MAX];
} ms_error;

/* "ConfigurationInvalid", "TaskFailed", ...; never NULL. */
MS_API const char *ms_err_name(int code);
MS_API ms_err_kind ms_err_kind_of(int code);
/* "Runtime", "Task", "Resource", "Io", "Usage", "Internal". */
MS_API const char *ms_err_kind_name(ms_err_kind kind);
MS_API ms_severity ms_err_severity(int code);
/* "low", "medium", "high", "critical". */
MS_API const char *ms_severity_name(ms_severity s);
MS_API ms_recovery ms_err_recovery(int code);
/* "ignore", "retry", "restart", "escalate", "reload", "circuit_breaker",
 * "failover". */
MS_API const char *ms_recovery_name(ms_recovery_kind kind);

/* Sets err (if not NULL) to code and a formatted message; returns code, so
 * that `return ms_error_set(err, MS_E_..., "...")` reads naturally. */
MS_API int ms_error_set(ms_error *err, int code, const char *fmt, ...) MS_PRINTF(3, 4);
MS_API int ms_error_setv(ms_error *err, int code, const char *fmt, va_list ap);

/* ------------------------------------------------------------------------
 * Configuration (the seed's RuntimeConfig plus the scheduler's knobs)
 * ---------------------------------------------------------------------- */

typedef struct ms_stall ms_stall; /* see the health monitor, below ms_config */

typedef struct ms_config {
    uint32_t worker_threads;        /* default: online CPUs; 1..MS_MAX_WORKERS */
    uint32_t max_worker_threads;    /* ceiling for live resizing (ms_runtime_tune)
                                       and stand-ins for stuck workers; 0 = auto:
                                       max(worker_threads, 4 x online CPUs) */
    uint32_t max_blocking_threads;  /* default 512; 1..MS_MAX_BLOCKING_THREADS */
    uint64_t thread_keep_alive_ms;  /* idle blocking thread lifetime, default 60000 */
    size_t thread_stack_size;       /* bytes, default 2 MiB; >= PTHREAD_STACK_MIN */
    bool enable_all;                /* true requires enable_time and enable_io true */
    bool enable_time;
    bool enable_io;
    uint32_t global_queue_interval; /* ticks between injection-queue checks, default 61 */
    uint32_t event_interval;        /* ticks between driver/maintenance checks, default 61 */
    uint32_t budget;                /* coop budget per task poll, default 128 */
    uint64_t shutdown_timeout_ms;   /* default 30000 */
    uint64_t stall_threshold_ms;    /* a worker stuck in one poll this long is
                                       reported (on_stall, metrics); 0 = off;
                                       default 2000 */
    bool replace_stalled_workers;   /* bring in a stand-in worker (up to
                                       max_worker_threads) while one is stalled;
                                       default true */
    bool metrics_histograms;        /* record the per-worker poll-duration and
                                       scheduling-delay histograms (two or three
                                       clock reads per poll); default false */
    const char *thread_name;        /* prefix for thread names, default "ms": 1..8
                                       characters of [A-Za-z0-9_.-]; the runtime
                                       copies it */

    /* Called on every runtime thread (workers and blocking threads) right
     * after it starts and right before it exits, with the thread's name. */
    void (*on_thread_start)(void *ud, const char *thread_name);
    void (*on_thread_stop)(void *ud, const char *thread_name);
    void *hook_ud;

    /* Called on the health monitor's thread when a worker has been in one
     * poll for stall_threshold_ms, and again when that poll ends. */
    void (*on_stall)(void *ud, const ms_stall *stall);
    /* Called on the health monitor's thread, at every look, for each
     * stalled worker while every active worker is stalled (stand-ins
     * included) and tasks wait that none of them can run: the embedder may
     * cut those polls short (ms-host preempts the agents, docs/host.md).
     * NULL: nothing is done. */
    void (*on_starved)(void *ud, const ms_stall *stall);
    void *stall_ud;
} ms_config;

/* A worker stuck in one task's poll (an endless loop, a blocking call on a
 * worker).  Other workers keep running and steal its queued tasks; the
 * stuck task itself cannot be interrupted by the runtime. */
struct ms_stall {
    uint32_t worker;                /* index */
    uint64_t task_id;               /* ms_task_id of the task being polled */
    uint64_t stalled_ms;            /* how long so far (or in all, if recovered) */
    bool recovered;                 /* the poll has ended */
    bool replaced;                  /* a stand-in worker was brought in for it
                                       (replace_stalled_workers) */
};

#define MS_MAX_WORKERS 1024
#define MS_MAX_BLOCKING_THREADS 65536
#define MS_MAX_STACK_SIZE ((size_t)1 << 30)
#define MS_MAX_BUDGET 1000000u
#define MS_MAX_INTERVAL 1000000u
#define MS_MAX_DURATION_MS (7ull * 24 * 3600 * 1000) /* one week */

/* Fills cfg with the defaults (ms_config_field_desc.default_value). */
MS_API void ms_config_default(ms_config *cfg);
/* max_worker_threads with 0 resolved. */
MS_API uint32_t ms_config_max_workers(const ms_config *cfg);

/* Checks every field, in struct order, then the rules between fields
 * (enable_all = true with enable_time or enable_io false is a
 * contradiction).  On the first problem returns MS_E_CONFIG_INVALID with a
 * message naming the field, the value and the allowed range; err is left
 * untouched on success.  NULL cfg: MS_E_INVALID_ARGUMENT. */
MS_API int ms_config_validate(const ms_config *cfg, ms_error *err);

/* Sets one field by name from text ("worker_threads", "4"), as profiles and
 * `--set key=value` do.  Durations are set either by their struct name
 * (thread_keep_alive_ms = "250", whole milliseconds) or by the name without
 * _ms (thread_keep_alive = "250ms", "1.5s", "2m"; bare numbers are seconds).
 * Sizes accept K/M/G suffixes; booleans true/false/1/0/on/off/yes/no.  The
 * value must parse and lie in that field's range; rules between fields are
 * left to ms_config_validate.  thread_name and the hooks cannot be set from
 * text.  Any problem is MS_E_CONFIG_INVALID naming the key and the value
 * (an unknown key suggests the nearest field); cfg is unchanged then. */
MS_API int ms_config_set(ms_config *cfg, const char *key, const char *value, ms_error *err);

/* The struct member a key names ("thread_keep_alive" and
 * "thread_keep_alive_ms" both give "thread_keep_alive_ms"), or NULL for an
 * unknown key. */
MS_API const char *ms_config_field(const char *key);

/* Writes `name = value` lines describing cfg into buf, in a form
 * ms_config_set accepts back.  Returns the length the whole text needs
 * (like snprintf); MS_E_INVALID_ARGUMENT for a NULL cfg. */
MS_API int ms_config_describe(const ms_config *cfg, char *buf, size_t size);

/* ---- The fields of ms_config, described ----
 *
 * Every field's name, kind, range, default and whether it is live is
 * written once, in the core's table of fields (core/src/config.c); the
 * functions above walk it, and so do the hosts (profiles, live tuning,
 * their documentation checks) through the descriptions below. */

typedef enum ms_config_kind {
    MS_CONFIG_COUNT = 0,   /* uint32_t, a whole number */
    MS_CONFIG_DURATION,    /* uint64_t milliseconds; the alias takes a unit */
    MS_CONFIG_SIZE,        /* size_t bytes; K/M/G suffixes */
    MS_CONFIG_BOOL,        /* bool */
    MS_CONFIG_NAME,        /* const char *, owned by the caller: not settable from text */
    MS_CONFIG_HOOK         /* a function or user pointer: not settable from text */
} ms_config_kind;

typedef struct ms_config_field_desc {
    const char *name;          /* the struct member: "thread_keep_alive_ms" */
    const char *alias;         /* MS_CONFIG_DURATION: the name that takes a unit
                                  ("thread_keep_alive"); else NULL */
    ms_config_kind kind;
    uint64_t min, max;         /* allowed, inclusive, in the member's units
                                  (milliseconds, bytes; MS_CONFIG_NAME: length);
                                  0, 0 for hooks and booleans */
    uint64_t default_value;    /* as ms_config_default sets it (worker_threads:
                                  the CPUs online now); booleans 0 or 1 */
    const char *default_text;  /* MS_CONFIG_NAME: the default string; else NULL */
    bool live;                 /* ms_runtime_tune can change it */
    const char *zero;          /* what 0 means when it is special ("off"), or NULL */
    const char *help;          /* one line, no full stop */
} ms_config_field_desc;

/* The number of fields (hooks included). */
MS_API size_t ms_config_field_count(void);
/* Describes field i, 0 <= i < ms_config_field_count(), in struct order
 * (the order of validation and of ms_config_describe).  0, or
 * MS_E_INVALID_ARGUMENT past the end (out untouched). */
MS_API int ms_config_field_at(size_t i, ms_config_field_desc *out);
/* Describes the field key names (struct member or alias).  0, or
 * MS_E_CONFIG_INVALID for an unknown key (out untouched). */
MS_API int ms_config_field_find(const char *key, ms_config_field_desc *out);
/* The value of a numeric or boolean field of cfg, in the member's units.
 * 0, or MS_E_CONFIG_INVALID for an unknown key, a name or a hook. */
MS_API int ms_config_get(const ms_config *cfg, const char *key, uint64_t *value);

/* ------------------------------------------------------------------------
 * Runtime
 * ---------------------------------------------------------------------- */

typedef struct ms_runtime ms_runtime;

/* Validates cfg (NULL means defaults), starts the workers and returns the
 * runtime.  Fails with MS_E_CONFIG_INVALID or MS_E_STARTUP_FAILED; nothing is
 * left running on failure. */
MS_API int ms_runtime_new(const ms_config *cfg, ms_runtime **out, ms_error *err);

typedef enum ms_shutdown_mode {
    /* Refuse new work, let tasks run to completion until the timeout, then
     * cancel what is left. */
    MS_SHUTDOWN_DRAIN = 0,
    /* Refuse new work and cancel every task now; only blocking jobs already
     * running are waited for (they cannot be interrupted). */
    MS_SHUTDOWN_CANCEL = 1
} ms_shutdown_mode;

typedef struct ms_shutdown_report {
    /* DRAIN: every task finished by itself within the timeout (nothing had
     * to be cancelled, no thread abandoned).  CANCEL: everything stopped
     * within the timeout. */
    bool met_timeout;
    uint64_t elapsed_ms;
    uint64_t drained_tasks;        /* tasks that finished during the drain */
    uint64_t cancelled_tasks;      /* tasks cancelled (never polled again) */
    uint64_t cancelled_blocking;   /* queued blocking jobs that never started */
    uint32_t abandoned_threads;    /* threads still running at the deadline */
} ms_shutdown_report;

/* Stops the runtime: new spawns fail with MS_E_SHUTTING_DOWN at once; then
 * drains or cancels (see mode) until timeout_ms, cancels what is left and
 * joins every thread.  Threads that were only waiting to be told to exit
 * get a 100 ms grace past the timeout to be joined.  Returns 0 when every
 * thread was joined (report->met_timeout says whether it all ended by
 * itself in time), else MS_E_SHUTDOWN_FAILED: threads stuck in user code
 * are left to finish on their own (report->abandoned_threads) and the
 * runtime's memory is then never freed.  Calling it again returns the
 * first result.  Must not be called from a runtime thread. */
MS_API int ms_runtime_shutdown(ms_runtime *rt, ms_shutdown_mode mode, uint64_t timeout_ms,
                               ms_shutdown_report *report);

/* Shuts down (MS_SHUTDOWN_CANCEL, the config's shutdown_timeout) if that
 * was not done, and frees the runtime.  Task handles stay valid. */
MS_API void ms_runtime_free(ms_runtime *rt);

/* The configuration the runtime was built with (validated, resolved). */
MS_API const ms_config *ms_runtime_config(const ms_runtime *rt);

/* ------------------------------------------------------------------------
 * Live tuning
 *
 * These settings change while the runtime runs, without losing or
 * repeating a task:
 *
 *   worker_threads         active workers, 1..max_worker_threads.  Growing
 *                          starts (or wakes) workers at once; shrinking
 *                          retires the highest-numbered ones after their
 *                          current poll, their queued tasks moving to the
 *                          injection queue.
 *   max_blocking_threads   a higher ceiling starts threads for jobs that
 *                          wait; a lower one lets the surplus leave after
 *                          their current job.
 *   thread_keep_alive      applies to threads already idle.
 *   global_queue_interval, budget
 *                          from the workers' next tick, poll or sleep.
 *
 * Any other field is refused (MS_E_CONFIG_INVALID naming it: it needs a
 * new runtime).  Values are checked exactly as ms_config_set checks them.
 * ---------------------------------------------------------------------- */

/* Sets one live-tunable field from text (as ms_config_set). */
MS_API int ms_runtime_tune(ms_runtime *rt, const char *key, const char *value, ms_error *err);
/* Whether key names a field ms_runtime_tune can change. */
MS_API bool ms_config_is_live(const char *key);
/* The configuration as it is now: the one the runtime was built with,
 * with the live-tunable fields at their current values. */
MS_API void ms_runtime_live_config(ms_runtime *rt, ms_config *out);
/* The coop budget now (hosts that run their own inner scheduler use it). */
MS_API uint32_t ms_runtime_budget(ms_runtime *rt);

/* The runtime whose worker or blocking thread calls this, else NULL. */
MS_API ms_runtime *ms_runtime_current(void);

/* ------------------------------------------------------------------------
 * Tasks, wakers and the poll context
 * ---------------------------------------------------------------------- */

typedef struct ms_task ms_task;   /* a join handle; refcounted */
typedef struct ms_cx ms_cx;       /* the context a poll function runs in */

typedef enum ms_poll {
    MS_POLL_READY = 0,   /* finished; the output is in ms_cx_set_output */
    MS_POLL_PENDING = 1, /* not done; a waker was (or will be) registered */
    MS_POLL_ERROR = 2    /* failed; see ms_cx_fail */
} ms_poll;

/* A task's poll function.  It is called on one thread at a time, with a
 * happens-before edge between consecutive calls, on any worker. */
typedef ms_poll (*ms_poll_fn)(ms_cx *cx, void *state);

/* Called exactly once with the task's state after the task finished,
 * failed or was cancelled.  May be NULL. */
typedef void (*ms_drop_fn)(void *state);

/* A waker: something that, when woken, makes a pending computation be
 * polled again.  Any thread may wake any number of times.  A waker value is
 * owned: clone it to keep it, and wake or drop every clone exactly once. */
typedef struct ms_waker ms_waker;
typedef struct ms_waker_vtable {
    ms_waker (*clone)(void *data);
    void (*wake)(void *data);          /* wake and release */
    void (*wake_by_ref)(void *data);   /* wake, keep */
    void (*drop)(void *data);          /* release without waking */
} ms_waker_vtable;
struct ms_waker {
    const ms_waker_vtable *vtable;
    void *data;
};

MS_API ms_waker ms_waker_clone(const ms_waker *w);
MS_API void ms_waker_wake(ms_waker *w);            /* consumes *w; it becomes null */
MS_API void ms_waker_wake_by_ref(const ms_waker *w);
MS_API void ms_waker_drop(ms_waker *w);            /* consumes *w; it becomes null */
MS_API bool ms_waker_is_null(const ms_waker *w);
MS_API bool ms_waker_will_wake(const ms_waker *a, const ms_waker *b);
/* Replaces *slot with a clone of w unless it would wake the same thing. */
MS_API void ms_waker_store(ms_waker *slot, const ms_waker *w);

/* The waker of the computation being polled (borrowed: clone to keep). */
MS_API const ms_waker *ms_cx_waker(ms_cx *cx);
MS_API ms_runtime *ms_cx_runtime(ms_cx *cx);
/* The running task, or NULL inside ms_block_on. */
MS_API ms_task *ms_cx_task(ms_cx *cx);
/* Sets what the task's join handle will return.  Owned by the caller. */
MS_API void ms_cx_set_output(ms_cx *cx, void *output);
/* Records a failure and returns MS_POLL_ERROR: `return ms_cx_fail(...)`. */
MS_API ms_poll ms_cx_fail(ms_cx *cx, int code, const char *fmt, ...) MS_PRINTF(3, 4);
/* Re-schedules the task behind the others and returns MS_POLL_PENDING. */
MS_API ms_poll ms_cx_yield(ms_cx *cx);

/* Polls fn(cx', state) where cx' is cx with its waker replaced by *w (the
 * budget and any failure are shared with cx).  For hosts that multiplex
 * several waiting computations inside one task, each with its own waker,
 * so that a wake concerns only the computation it belongs to. */
MS_API ms_poll ms_cx_poll_with_waker(ms_cx *cx, const ms_waker *w, ms_poll_fn fn, void *state);

/* Cooperative budget: every operation that may loop without yielding
 * (joins, channel receives, ...) calls this first.  When the task has used
 * its budget for this poll it returns false, having arranged a re-poll and
 * counted a forced yield; the operation must then return pending. */
MS_API bool ms_coop_proceed(ms_cx *cx);

/* Spawns a task.  From a worker thread of rt it goes to that worker's local
 * queue; from any other thread to the injection queue.  On success, if
 * handle is not NULL, *handle is a join handle to release with
 * ms_task_release; pass NULL to detach.  On failure (MS_E_SHUTTING_DOWN,
 * MS_E_NO_MEMORY) the state stays the caller's: drop is not called. */
MS_API int ms_spawn(ms_runtime *rt, ms_poll_fn poll, void *state, ms_drop_fn drop,
                    ms_task **handle);

/* Runs poll on the calling thread until it is ready, parking the thread
 * between wakes (Tokio's block_on).  Spawns inside go to the workers.
 * Returns 0 with *output set, the code passed to ms_cx_fail (err gets its
 * message), or MS_E_WRONG_THREAD on a runtime thread, MS_E_SHUTTING_DOWN. */
MS_API int ms_block_on(ms_runtime *rt, ms_poll_fn poll, void *state, void **output,
                       ms_error *err);

/* Waits on a plain thread for the task to end, up to timeout_ms (negative:
 * forever).  Returns 0 with *output, MS_E_TIMEOUT (the handle stays valid
 * and the task runs on), MS_E_TASK_FAILED (err names the failure),
 * MS_E_TASK_CANCELLED, or MS_E_WRONG_THREAD on a worker thread (which must
 * not block: use ms_task_poll_join). */
MS_API int ms_task_join(ms_task *t, int64_t timeout_ms, void **output, ms_error *err);

/* Polls for the task's end from inside another task.  Ready: *result is
 * 0, MS_E_TASK_FAILED or MS_E_TASK_CANCELLED and *output/err are set as by
 * ms_task_join.  Pending: the caller's waker is registered. */
MS_API ms_poll ms_task_poll_join(ms_task *t, ms_cx *cx, void **output, int *result,
                                 ms_error *err);

/* Requests cancellation.  A task not running is cancelled before its next
 * poll; a running one after its current poll.  No effect once it ended. */
MS_API void ms_task_abort(ms_task *t);

MS_API bool ms_task_is_finished(const ms_task *t);
MS_API uint64_t ms_task_id(const ms_task *t);

/* Drops the handle.  The task runs on (detached); its output is ignored. */
MS_API void ms_task_release(ms_task *t);

/* ------------------------------------------------------------------------
 * Blocking pool
 * ---------------------------------------------------------------------- */

typedef void *(*ms_blocking_fn)(void *arg);

/* Runs fn(arg) on a blocking-pool thread; its return value is the join
 * output.  Threads are created on demand up to max_blocking_threads and
 * leave after thread_keep_alive idle; jobs queue in FIFO order.  The handle
 * works with ms_task_join and ms_task_poll_join; abort cancels a job that
 * has not started.  Callable from any thread. */
MS_API int ms_spawn_blocking(ms_runtime *rt, ms_blocking_fn fn, void *arg, ms_task **handle);

/* ------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------- */

/* A histogram of durations with log-scale buckets: bucket i (0 <= i <
 * MS_HIST_BUCKETS - 1) counts durations d with bound(i-1) < d <= bound(i),
 * where bound(i) = 2^i microseconds (1 us, 2 us, 4 us, ... 8.388608 s);
 * the last bucket counts everything longer (Prometheus's +Inf).  Counts are
 * per bucket, not cumulative. */
#define MS_HIST_BUCKETS 25

typedef struct ms_histogram {
    uint64_t buckets[MS_HIST_BUCKETS];
    uint64_t count;                 /* the sum of the buckets */
    uint64_t sum_ns;                /* the sum of the durations recorded */
} ms_histogram;

/* The upper bound of bucket i in nanoseconds (UINT64_MAX for the last
 * bucket and beyond). */
MS_API uint64_t ms_histogram_bound_ns(uint32_t i);

typedef struct ms_worker_metrics {
    uint64_t park_count;            /* times the worker went to sleep */
    uint64_t noop_count;            /* wake-ups that found no work (spurious) */
    uint64_t steal_count;           /* tasks stolen from other workers */
    uint64_t steal_operations;      /* successful steal attempts */
    uint64_t poll_count;            /* task polls */
    uint64_t busy_ns;               /* time not parked */
    uint64_t forced_yields;         /* polls cut short by the coop budget */
    uint64_t overflow_count;        /* local queue overflows to the injection queue */
    uint64_t local_schedule_count;  /* tasks scheduled on this worker's queue */
    uint64_t spawned_tasks;         /* tasks spawned from this worker */
    uint32_t local_queue_depth;
    uint32_t local_queue_capacity;
    bool parked;
    bool active;                    /* false: retired by a resize, waiting */
    uint64_t stalled_ms;            /* length of the current stall, 0 if none */
    /* Recorded only with ms_config.metrics_histograms (else all zero):
     * how long each poll of a task took, and how long a task waited from
     * being scheduled (spawned, woken, yielded) until a worker began to
     * poll it.  Both count polls of this worker. */
    ms_histogram poll_duration;
    ms_histogram schedule_delay;
} ms_worker_metrics;

typedef struct ms_metrics {
    uint64_t uptime_ns;
    uint32_t workers;               /* worker threads started (entries in worker[]) */
    uint32_t active_workers;        /* of which active; the rest are retired */
    uint32_t max_workers;           /* ceiling for resizing */
    uint64_t worker_resizes;        /* changes of the active count */
    uint64_t worker_replacements;   /* stand-ins brought in for stalled workers */
    uint32_t global_queue_interval; /* live values of the tunable knobs */
    uint32_t budget;
    uint64_t thread_keep_alive_ms;
    uint32_t blocking_threads;
    uint32_t idle_blocking_threads;
    uint32_t max_blocking_threads;
    uint64_t spawned_tasks;         /* total, workers plus outside threads */
    uint64_t remote_spawned_tasks;  /* spawned from outside the workers */
    uint64_t alive_tasks;           /* spawned and not yet ended */
    uint64_t failed_tasks;
    uint64_t cancelled_tasks;
    uint64_t injection_queue_depth;
    uint64_t blocking_queue_depth;
    uint64_t blocking_jobs_total;
    uint64_t stalls_total;          /* polls reported as stuck */
    uint64_t timers_active;         /* timers waiting in the wheel */
    uint64_t timers_fired;          /* timers the driver has fired */
    uint64_t accept_errors;         /* accepts failed for want of descriptors or memory */
    uint64_t accept_pauses;         /* times a listener paused accepting after one */
    bool histograms;                /* ms_config.metrics_histograms */
    /* sums over the workers */
    uint64_t park_count, noop_count, steal_count, steal_operations, poll_count,
        busy_ns, forced_yields, overflow_count, local_schedule_count,
        local_queue_depth;
    ms_worker_metrics worker[];     /* `workers` entries */
} ms_metrics;

/* A consistent-enough snapshot (each counter is read atomically; the set is
 * not one instant).  Free with ms_metrics_free.  NULL on allocation failure. */
MS_API ms_metrics *ms_metrics_snapshot(ms_runtime *rt);
MS_API void ms_metrics_free(ms_metrics *m);
/* The snapshot as JSON ({"workers":..., "per_worker":[...]}); free with
 * ms_free.  NULL on allocation failure.  With histograms on, each worker
 * has "poll_duration" and "schedule_delay": {"le_ns": [bounds...],
 * "buckets": [per-bucket counts, the last one unbounded], "count", "sum_ns"}
 * (le_ns has one entry fewer than buckets). */
MS_API char *ms_metrics_to_json(const ms_metrics *m, bool pretty);
MS_API void ms_free(void *p);

/* ---- The metrics, described ----
 *
 * Every metric of a snapshot is described once, in the core's table
 * (core/src/metrics.c): where it lives, its names, type, unit and help.
 * ms_metrics_to_json walks it, and so do the hosts' exporters (ms-host's
 * ms.metrics(), /metrics and /metrics.json) and the checks that keep
 * docs/metrics.md in step with it.  Not described, because they are the
 * shape of a snapshot rather than metrics: ms_metrics.histograms and the
 * index of a worker. */

typedef enum ms_metric_type {
    MS_METRIC_GAUGE = 0,
    MS_METRIC_COUNTER,      /* only grows; its Prometheus name ends in _total */
    MS_METRIC_HISTOGRAM     /* an ms_histogram; present only with histograms on */
} ms_metric_type;

typedef enum ms_metric_scope {
    MS_METRIC_RUNTIME = 0,  /* a member of ms_metrics */
    MS_METRIC_WORKER        /* a member of ms_worker_metrics, one per worker */
} ms_metric_scope;

typedef enum ms_metric_value {
    MS_METRIC_U64 = 0,
    MS_METRIC_U32,
    MS_METRIC_BOOL,
    MS_METRIC_HIST          /* ms_histogram */
} ms_metric_value;

typedef enum ms_metric_unit {
    MS_UNIT_NONE = 0,       /* a count, a size or a flag */
    MS_UNIT_NS,             /* a time in nanoseconds */
    MS_UNIT_US,             /* ... microseconds */
    MS_UNIT_MS              /* ... milliseconds */
} ms_metric_unit;

typedef struct ms_metric_desc {
    const char *key;        /* the struct member and the ms_metrics_to_json
                               key, value as stored: "busy_ns" */
    const char *name;       /* the name where times are given in seconds
                               (ms-host's ms.metrics()): "busy"; equal to key
                               where the value is given as stored */
    const char *prom;       /* the Prometheus family, times in seconds:
                               "ms_worker_busy_seconds_total" */
    const char *help;       /* one line, ending with a full stop */
    ms_metric_type type;
    ms_metric_scope scope;
    ms_metric_value value;
    ms_metric_unit unit;
    size_t offset;          /* of the member in ms_metrics or ms_worker_metrics */
    /* MS_METRIC_WORKER: the offset of the ms_metrics member that holds its
     * sum over the workers (same key), or MS_METRIC_NO_SUM. */
    size_t sum_offset;
} ms_metric_desc;

#define MS_METRIC_NO_SUM ((size_t)-1)

/* The table: *count entries, runtime metrics first, each scope in struct
 * order.  Static; never NULL. */
MS_API const ms_metric_desc *ms_metric_descs(size_t *count);

/* Worker index meaning "the runtime's value" for ms_metric_get. */
#define MS_METRIC_TOTAL UINT32_MAX

/* The value of d in m as stored (booleans 0 or 1): a runtime metric's with
 * worker = MS_METRIC_TOTAL; a worker metric's for worker < m->workers, or
 * its sum over the workers with MS_METRIC_TOTAL (0 if it has none).  0 for
 * histograms and workers out of range. */
MS_API uint64_t ms_metric_get(const ms_metrics *m, const ms_metric_desc *d, uint32_t worker);
/* A worker's histogram d, or NULL (not a histogram, no such worker). */
MS_API const ms_histogram *ms_metric_histogram(const ms_metrics *m, const ms_metric_desc *d,
                                               uint32_t worker);
/* Nanoseconds in one unit (1 for MS_UNIT_NONE and MS_UNIT_NS). */
MS_API uint64_t ms_metric_unit_ns(ms_metric_unit unit);

/* Monotonic clock in nanoseconds. */
MS_API uint64_t ms_now_ns(void);

/* ------------------------------------------------------------------------
 * The driver: time, I/O and signals on libuv
 *
 * A runtime built with enable_time or enable_io runs one driver thread
 * ("ms-driver") that owns a libuv loop.  Every libuv handle lives on that
 * thread; tasks talk to it through a submission queue and uv_async_send,
 * and it wakes tasks through their wakers.  Using a timer on a runtime
 * without enable_time, or a socket or signal without enable_io, fails with
 * MS_E_NOT_ENABLED.  docs/driver.md has the design and who may touch what.
 * ---------------------------------------------------------------------- */

/* A timer: armed with a deadline, ready once the monotonic clock
 * (ms_now_ns) has reached it; never early, late by at most the timer
 * resolution (1 ms) plus scheduling delay.  Owned by one task at a time. */
typedef struct ms_timer ms_timer;

MS_API int ms_timer_new(ms_runtime *rt, ms_timer **out, ms_error *err);
/* Arms (or re-arms) for an absolute deadline on the ms_now_ns clock. */
MS_API void ms_timer_set_deadline(ms_timer *t, uint64_t deadline_ns);
/* Arms for now + ms. */
MS_API void ms_timer_set_after(ms_timer *t, uint64_t ms);
MS_API uint64_t ms_timer_deadline(const ms_timer *t);
/* Ready once the deadline has passed (an unarmed timer is never ready). */
MS_API ms_poll ms_timer_poll(ms_timer *t, ms_cx *cx);
/* Disarms: the timer leaves the timer wheel at once. */
MS_API void ms_timer_cancel(ms_timer *t);
/* Disarms and frees. */
MS_API void ms_timer_free(ms_timer *t);

/* Polls fn(cx, state) under a deadline: returns fn's result while fn is
 * ready or failing; when fn is pending and the deadline has passed, sets
 * *timed_out and returns MS_POLL_READY.  The caller then cancels whatever
 * fn was waiting for (e.g. ms_sem_waiter_cancel). */
MS_API ms_poll ms_timeout_poll(ms_timer *deadline, ms_cx *cx, ms_poll_fn fn, void *state,
                               bool *timed_out);

/* What an interval does about ticks missed while nobody polled it. */
typedef enum ms_missed_tick {
    MS_MISSED_BURST = 0, /* fire the missed ticks back to back to catch up */
    MS_MISSED_DELAY = 1, /* the next tick is one period after this one fires */
    MS_MISSED_SKIP = 2   /* drop missed ticks, stay on the original grid */
} ms_missed_tick;

typedef struct ms_interval ms_interval;

/* The first tick is at now + period_ms.  period_ms >= 1. */
MS_API int ms_interval_new(ms_runtime *rt, uint64_t period_ms, ms_missed_tick policy,
                           ms_interval **out, ms_error *err);
/* Ready at each tick; *skipped (if not NULL) gets the number of ticks the
 * SKIP policy dropped before this one. */
MS_API ms_poll ms_interval_poll(ms_interval *iv, ms_cx *cx, uint64_t *skipped);
MS_API void ms_interval_free(ms_interval *iv);

/* ---- Signals ---- */

/* Watches one signal (SIGINT, SIGTERM, SIGHUP, or any other catchable
 * one) for as long as it lives; while any watcher of a signal lives, the
 * signal's default action (e.g. terminating) is replaced by delivery. */
typedef struct ms_signal ms_signal;

MS_API int ms_signal_new(ms_runtime *rt, int signum, ms_signal **out, ms_error *err);
/* Ready when the signal arrived since the last ready poll; *count (if not
 * NULL) gets how many deliveries that was. */
MS_API ms_poll ms_signal_poll(ms_signal *s, ms_cx *cx, uint64_t *count);
MS_API void ms_signal_free(ms_signal *s);

/* ---- Streams: TCP and Unix domain sockets ---- */

typedef struct ms_listener ms_listener;
typedef struct ms_stream ms_stream;
typedef struct ms_connect ms_connect;

/* Listens on host:port (port 0 picks a free port; see ms_listener_port). */
MS_API int ms_tcp_listen(ms_runtime *rt, const char *host, uint16_t port, int backlog,
                         ms_listener **out, ms_error *err);
/* Listens on a Unix domain socket path (created; an existing socket file
 * at path is an error, not silently replaced). */
MS_API int ms_unix_listen(ms_runtime *rt, const char *path, int backlog, ms_listener **out,
                          ms_error *err);
MS_API uint16_t ms_listener_port(const ms_listener *l);
/* The listening socket's descriptor, for getsockname; the listener owns
 * it (never close it, read or accept on it). */
MS_API int ms_listener_fd(const ms_listener *l);
/* Ready with a new connection in *out, or with *rc < 0 on failure. */
MS_API ms_poll ms_listener_accept(ms_listener *l, ms_cx *cx, ms_stream **out, int *rc,
                                  ms_error *err);
/* Stops listening and frees; pending accepts end with MS_E_CLOSED. */
MS_API void ms_listener_close(ms_listener *l);

MS_API int ms_tcp_connect(ms_runtime *rt, const char *host, uint16_t port, ms_connect **out,
                          ms_error *err);
MS_API int ms_unix_connect(ms_runtime *rt, const char *path, ms_connect **out, ms_error *err);
/* Ready with the connected stream in *out, or *rc < 0 (refused, ...). */
MS_API ms_poll ms_connect_poll(ms_connect *c, ms_cx *cx, ms_stream **out, int *rc, ms_error *err);
/* Frees the connect request; an unfinished connection is closed. */
MS_API void ms_connect_free(ms_connect *c);

/* Reads up to cap bytes into buf.  Ready with *n > 0 bytes, *n == 0 at end
 * of stream, or *n < 0 an error code (err says which).  The driver reads
 * ahead at most MS_STREAM_READ_BUFFER bytes, then stops reading from the
 * socket until the task catches up: a slow reader holds back its peer
 * instead of growing the process. */
MS_API ms_poll ms_stream_read(ms_stream *s, ms_cx *cx, void *buf, size_t cap, ssize_t *n,
                              ms_error *err);
/* Queues up to len bytes for writing.  Ready with *n bytes accepted
 * (>= 1), or *n < 0 on error.  Pending while MS_STREAM_WRITE_BUFFER bytes
 * are already waiting to be written: back-pressure. */
MS_API ms_poll ms_stream_write(ms_stream *s, ms_cx *cx, const void *buf, size_t len, ssize_t *n,
                               ms_error *err);
/* Ready once everything queued was handed to the kernel; *rc 0 or error. */
MS_API ms_poll ms_stream_flush(ms_stream *s, ms_cx *cx, int *rc, ms_error *err);
/* Flushes, then half-closes the write side; ready with *rc. */
MS_API ms_poll ms_stream_shutdown(ms_stream *s, ms_cx *cx, int *rc, ms_error *err);
/* Closes at once (queued data is dropped) and frees. */
MS_API void ms_stream_close(ms_stream *s);
/* The connected socket's descriptor, for getsockname, getpeername and
 * setsockopt (TCP_NODELAY, SO_KEEPALIVE) from any thread; the stream owns
 * it: never read, write or close it. */
MS_API int ms_stream_fd(const ms_stream *s);

/* ---- Datagrams: UDP ---- */

/* A UDP socket: the task receives and sends with non-blocking system
 * calls on its own thread; the driver only watches for readability
 * while a receive waits, so a datagram is copied once, into the
 * caller's buffer. */
typedef struct ms_udp ms_udp;

/* Binds host:port (numeric host or localhost; port 0 picks one). */
MS_API int ms_udp_open(ms_runtime *rt, const char *host, uint16_t port, ms_udp **out,
                       ms_error *err);
/* Ready with one datagram: *n bytes (cut to cap, a longer one is
 * truncated) and its sender in *from; or *n < 0 on error. */
MS_API ms_poll ms_udp_recv(ms_udp *u, ms_cx *cx, void *buf, size_t cap, ssize_t *n,
                           struct sockaddr_storage *from, ms_error *err);
/* Sends one datagram to host:port (numeric) now; MS_E_EXHAUSTED when the
 * kernel's buffer is full (EAGAIN: UDP may drop; try later). */
MS_API int ms_udp_send(ms_udp *u, const void *buf, size_t len, const char *host, uint16_t port,
                       ms_error *err);
MS_API int ms_udp_fd(const ms_udp *u);
MS_API void ms_udp_close(ms_udp *u);

/* ---- Name resolution: getaddrinfo on the driver loop ---- */

typedef struct ms_resolve ms_resolve;

/* Starts resolving host (a name or a numeric address) to addresses for a
 * stream socket; libuv runs getaddrinfo on its thread pool, so no worker
 * blocks.  family: 0 (any), 4 or 6. */
MS_API int ms_resolve_start(ms_runtime *rt, const char *host, int family, ms_resolve **out,
                            ms_error *err);
/* Ready with *rc 0 (at least one address) or < 0: an unknown name is
 * MS_E_IO with "unknown host" in err. */
MS_API ms_poll ms_resolve_poll(ms_resolve *r, ms_cx *cx, int *rc, ms_error *err);
/* After a ready poll with rc 0: how many addresses, and address i as
 * numeric text ("127.0.0.1", "::1") in buf (at least 46 bytes). */
MS_API size_t ms_resolve_count(const ms_resolve *r);
MS_API int ms_resolve_address(const ms_resolve *r, size_t i, char *buf, size_t len);
/* Frees; an unfinished lookup is cancelled (or its result dropped). */
MS_API void ms_resolve_free(ms_resolve *r);

#define MS_STREAM_READ_BUFFER (64 * 1024)
#define MS_STREAM_WRITE_BUFFER (64 * 1024)

/* ---- Subprocesses: uv_spawn on the driver loop ---- */

typedef struct ms_process ms_process;

/* What a child's stdin, stdout or stderr is. */
typedef enum ms_stdio {
    MS_STDIO_NULL = 0,    /* /dev/null */
    MS_STDIO_PIPE = 1,    /* a pipe to us, as an ms_stream (ms_process_take_stream) */
    MS_STDIO_INHERIT = 2  /* the host's own descriptor */
} ms_stdio;

typedef struct ms_process_opts {
    const char *file;     /* the program; searched in PATH when it has no '/' */
    char *const *args;    /* argv, NULL-terminated; args[0] is the program's name */
    char *const *env;     /* "K=V", NULL-terminated; NULL: the host's environment */
    const char *cwd;      /* NULL: the host's working directory */
    ms_stdio stdio[3];
    bool kill_on_free;    /* ms_process_free of a running child sends SIGKILL */
} ms_process_opts;

/* Starts a child (the options are copied).  libuv spawns it on the
 * driver thread and reaps it there (its SIGCHLD handling), so no zombie
 * is left: a child whose handle is freed while it runs is reaped when it
 * exits (killed first with kill_on_free). */
MS_API int ms_process_spawn(ms_runtime *rt, const ms_process_opts *o, ms_process **out,
                            ms_error *err);
/* Ready once the child started (*rc 0, *pid set) or could not (*rc < 0:
 * a program that does not exist is MS_E_IO naming it). */
MS_API ms_poll ms_process_poll_started(ms_process *p, ms_cx *cx, int *rc, int *pid,
                                       ms_error *err);
/* After it started: the pipe for descriptor i (0, 1, 2) if MS_STDIO_PIPE,
 * handed over once (the caller then owns and closes it); else NULL. */
MS_API ms_stream *ms_process_take_stream(ms_process *p, int i);
/* Ready once the child exited: *status its exit status, *signal the
 * signal that ended it (0 if none). */
MS_API ms_poll ms_process_poll_exit(ms_process *p, ms_cx *cx, int64_t *status, int *signal);
/* Sends signum to the child if it has not been reaped yet (on the driver
 * thread, so a reaped child's reused pid is never signalled). */
MS_API void ms_process_kill(ms_process *p, int signum);
/* Lets go: pipes not taken are closed; the child is reaped when it exits. */
MS_API void ms_process_free(ms_process *p);

/* ---- HTTP client: libcurl's multi interface on the driver loop ----
 *
 * One libcurl multi handle per runtime, driven by the driver thread's
 * libuv loop, so every request shares one pool of connections
 * (keep-alive reuse, HTTP/2 multiplexing when the server offers it).
 * A request is started on any thread, polled by one task and freed by
 * it; freeing an unfinished request cancels it.  docs/http.md. */

typedef struct ms_http_request ms_http_request;

/* What failed, when a request did not get a whole response. */
typedef enum ms_http_failure {
    MS_HTTP_OK = 0,
    MS_HTTP_DNS,          /* the host name did not resolve */
    MS_HTTP_CONNECT,      /* no connection (refused, unreachable) */
    MS_HTTP_TLS,          /* the TLS handshake or the certificate check failed */
    MS_HTTP_TIMEOUT,      /* timeout_ms or connect_timeout_ms passed */
    MS_HTTP_TOO_LARGE,    /* the response body passed max_size */
    MS_HTTP_PROTOCOL,     /* what came back was not HTTP */
    MS_HTTP_SEND,         /* the connection failed while sending */
    MS_HTTP_RECEIVE,      /* the connection broke before the response ended */
    MS_HTTP_REDIRECTS,    /* more redirects than max_redirects */
    MS_HTTP_PROXY,        /* the proxy failed or did not resolve */
    MS_HTTP_URL,          /* a malformed URL or a scheme other than http(s) */
    MS_HTTP_NO_MEMORY,    /* out of memory */
    MS_HTTP_SHUTDOWN,     /* the runtime stopped first */
    MS_HTTP_OTHER
} ms_http_failure;

typedef struct ms_http_opts {
    const char *url;                /* http:// or https:// only */
    const char *method;             /* NULL: "GET" */
    const char *const *headers;     /* nheaders "Name: value" lines */
    size_t nheaders;
    const void *body;               /* copied; NULL: none */
    size_t body_len;
    uint64_t timeout_ms;            /* the whole exchange; 0: none */
    uint64_t connect_timeout_ms;    /* 0: libcurl's (300 s) */
    uint64_t max_size;              /* response body limit in bytes; 0: none */
    uint32_t max_redirects;         /* 0: redirects are returned, not followed */
    bool insecure;                  /* skip the certificate and host name checks */
    const char *ca_file;            /* NULL: the system's CA store */
    const char *proxy;              /* NULL: none (the environment is not read) */
    bool stream;                    /* the body is read with ms_http_request_read */
} ms_http_opts;

/* Starts a request (everything in o is copied). */
MS_API int ms_http_request_start(ms_runtime *rt, const ms_http_opts *o, ms_http_request **out,
                                 ms_error *err);
/* Ready when the exchange ended, or, for a stream, when the response's
 * head arrived: *rc 0, or < 0 with err (ms_http_request_failure says
 * what failed: a timeout is MS_E_TIMEOUT, too large MS_E_EXHAUSTED, a bad
 * URL MS_E_INVALID_ARGUMENT, the others MS_E_IO). */
MS_API ms_poll ms_http_request_poll(ms_http_request *r, ms_cx *cx, int *rc, ms_error *err);
MS_API ms_http_failure ms_http_request_failure(const ms_http_request *r);
/* "dns", "connect", "tls", "timeout", "too_large", "protocol", "send",
 * "receive", "redirects", "proxy", "url", "no_memory", "shutdown",
 * "other"; "ok" for MS_HTTP_OK. */
MS_API const char *ms_http_failure_name(ms_http_failure f);
/* After a ready poll with rc 0: the final response's status, and its
 * header lines ("Name: value", each ended by one '\n', no status line). */
MS_API int ms_http_request_status(const ms_http_request *r);
MS_API const char *ms_http_request_headers(const ms_http_request *r, size_t *len);
/* Not a stream, after a ready poll with rc 0: the whole body. */
MS_API const char *ms_http_request_body(const ms_http_request *r, size_t *len);
/* A stream: up to cap bytes of the body.  Ready with *n > 0, *n == 0 at
 * its end, or *n < 0 (err; the failure as above).  At most
 * MS_HTTP_STREAM_WINDOW bytes wait unread: then the transfer is paused
 * until the reader catches up. */
MS_API ms_poll ms_http_request_read(ms_http_request *r, ms_cx *cx, void *buf, size_t cap,
                                    ssize_t *n, ms_error *err);
/* Frees; an unfinished request is cancelled. */
MS_API void ms_http_request_free(ms_http_request *r);
/* Connections the client holds open now, and has opened in all. */
MS_API void ms_http_client_connections(ms_runtime *rt, uint64_t *open, uint64_t *opened);

#define MS_HTTP_STREAM_WINDOW (256 * 1024)

/* ---- Files: on the blocking pool, as Tokio does ---- */

typedef struct ms_bytes {
    size_t len;
    char data[];   /* len bytes, then a NUL for convenience */
} ms_bytes;

/* Reads a whole file on the blocking pool.  The job's join output is an
 * ms_bytes * (free with ms_free); a failure joins as MS_E_IO naming the
 * path and the reason. */
MS_API int ms_fs_read_file(ms_runtime *rt, const char *path, ms_task **job);
/* Writes (creates or truncates) a file on the blocking pool; data is
 * copied first.  Output NULL; failure joins as MS_E_IO. */
MS_API int ms_fs_write_file(ms_runtime *rt, const char *path, const void *data, size_t len,
                            ms_task **job);

/* Inside a blocking job: records a failure for the job's join handle (the
 * job's return value is then ignored).  Outside a blocking job: no effect,
 * returns MS_E_WRONG_THREAD. */
MS_API int ms_blocking_fail(int code, const char *fmt, ...) MS_PRINTF(2, 3);

/* ------------------------------------------------------------------------
 * Synchronisation: semaphore, async mutex, notify, channel, oneshot, and
 * on top of them a task limiter with priorities, batches and fan-out
 *
 * The primitives need no runtime: they only store and wake wakers, so
 * tasks of different runtimes (agents) and plain threads inside
 * ms_block_on may share one object.  Every object is refcounted (*_ref
 * returns its argument; the last *_unref frees) and every function may be
 * called from any thread.  docs/sync.md has the design and the guarantees.
 *
 * Waiting operations are poll functions that take a caller-owned waiter
 * node, kept in the waiting task's state, so a wait allocates nothing:
 *
 *   - initialise the node (ms_*_waiter_init): it is idle;
 *   - poll with the same node until the poll is ready.  A pending poll has
 *     queued the node and keeps the task's waker; polling again only
 *     refreshes the waker.  Once ready the node is idle and may be reused;
 *   - a task that gives up while waiting (abort, timeout, drop) calls
 *     ms_*_waiter_cancel before the node's memory goes, typically from the
 *     task's drop function.  Cancelling an idle node does nothing, so drop
 *     functions may always call it.  Whoever holds a node queued must hold
 *     a reference to the object.
 *
 * Every waiting poll first calls ms_coop_proceed and is pending if the
 * task's budget is spent.  For a wait with a deadline, poll through
 * ms_timeout_poll and cancel the node when it reports timed_out.
 *
 * The fields of the waiter structs are private: they are here only so that
 * nodes can live inside the caller's state.
 * ---------------------------------------------------------------------- */

/* A link in a primitive's queue of waiters (private). */
typedef struct ms_wait_link {
    struct ms_wait_link *prev, *next;
} ms_wait_link;

/* ---- Semaphore ---- */

/* A counting semaphore, strictly FIFO: while an acquire waits, no new
 * acquire or try_acquire takes permits ahead of it, and released permits
 * go to the head waiter (which collects them until it has all it asked
 * for) before the next one, so a large acquire is never starved by small
 * ones.  At every moment, available + permits assigned to waiters +
 * permits held == permits created + added - forgotten. */
typedef struct ms_sem ms_sem;

#define MS_SEM_MAX_PERMITS (UINT64_MAX >> 4)

typedef struct ms_sem_waiter {
    ms_wait_link link;   /* private */
    ms_waker waker;      /* private */
    uint64_t want;       /* private: permits asked for */
    uint64_t assigned;   /* private: permits handed to it so far */
    uint32_t state;      /* private: atomic */
} ms_sem_waiter;

/* 0 with *out; MS_E_INVALID_ARGUMENT (permits > MS_SEM_MAX_PERMITS),
 * MS_E_NO_MEMORY. */
MS_API int ms_sem_new(uint64_t permits, ms_sem **out);
MS_API ms_sem *ms_sem_ref(ms_sem *s);
MS_API void ms_sem_unref(ms_sem *s);

/* Prepares w to acquire n permits.  Only an idle node may be re-inited. */
MS_API void ms_sem_waiter_init(ms_sem_waiter *w, uint64_t n);
/* Acquires the node's n permits.  Ready with *rc = 0 (the caller holds
 * them now: give them back with ms_sem_release, or wrap them in an
 * ms_permit), MS_E_CLOSED, or MS_E_INVALID_ARGUMENT (n too large). */
MS_API ms_poll ms_sem_acquire_poll(ms_sem *s, ms_sem_waiter *w, ms_cx *cx, int *rc);
/* Withdraws w: permits already assigned to it go back to the semaphore
 * (to the next waiters first); if its acquire had completed but no poll
 * saw it yet, all n go back.  No effect on an idle node. */
MS_API void ms_sem_waiter_cancel(ms_sem *s, ms_sem_waiter *w);
/* Takes n permits now: 0, MS_E_EXHAUSTED (too few available, or acquires
 * are queued: no barging), MS_E_CLOSED, MS_E_INVALID_ARGUMENT. */
MS_API int ms_sem_try_acquire(ms_sem *s, uint64_t n);
/* Gives back n permits the caller holds (same as add_permits). */
MS_API void ms_sem_release(ms_sem *s, uint64_t n);
/* Adds n permits; waiters are served first.  0, or MS_E_INVALID_ARGUMENT
 * when the available permits would exceed MS_SEM_MAX_PERMITS (nothing is
 * added then). */
MS_API int ms_sem_add_permits(ms_sem *s, uint64_t n);
/* Removes up to n *available* permits for good (lowering the total) and
 * returns how many it removed: for live tuning.  Permits assigned to
 * waiters or held are not touched. */
MS_API uint64_t ms_sem_forget(ms_sem *s, uint64_t n);
/* Lowers the total by n: available permits go at once (returned), and the
 * rest as holders give them back (*owed, if not NULL, is what is still
 * owed in all).  Nobody loses a permit they hold.  Live tuning's way to
 * lower a limit. */
MS_API uint64_t ms_sem_reduce_permits(ms_sem *s, uint64_t n, uint64_t *owed);
/* Permits still owed to earlier reductions. */
MS_API uint64_t ms_sem_owed(const ms_sem *s);
MS_API uint64_t ms_sem_available(const ms_sem *s);
/* Every queued acquire becomes ready with MS_E_CLOSED (what they had been
 * assigned returns to available); later acquires fail with MS_E_CLOSED.
 * Release and add_permits keep working; permits held stay valid. */
MS_API void ms_sem_close(ms_sem *s);
MS_API bool ms_sem_is_closed(const ms_sem *s);

/* Permits held as a value that releases them once, however many times
 * ms_permit_release is called (a binding's explicit release and its
 * finaliser may both call it). */
typedef struct ms_permit {
    ms_sem *sem;   /* a reference while permits are held, else NULL */
    uint64_t n;
} ms_permit;

/* Wraps n permits the caller holds on s; takes a reference to s. */
MS_API void ms_permit_init(ms_permit *p, ms_sem *s, uint64_t n);
/* Releases the permits and the reference; later calls do nothing. */
MS_API void ms_permit_release(ms_permit *p);
/* Drops the reference without giving the permits back (the semaphore's
 * total shrinks by n); later calls do nothing. */
MS_API void ms_permit_forget(ms_permit *p);

/* ---- Async mutex ---- */

/* A mutex for tasks: may be held across pending polls (yields, waits);
 * FIFO; unlock hands the lock straight to the head waiter, so nobody can
 * barge in between.  It guards data the caller keeps elsewhere: unlock
 * happens-before the next lock.  It is a one-permit ms_sem. */
typedef struct ms_mutex ms_mutex;
typedef ms_sem_waiter ms_mutex_waiter;

MS_API int ms_mutex_new(ms_mutex **out);
MS_API ms_mutex *ms_mutex_ref(ms_mutex *m);
MS_API void ms_mutex_unref(ms_mutex *m);
MS_API void ms_mutex_waiter_init(ms_mutex_waiter *w);
/* Ready: the caller holds the lock. */
MS_API ms_poll ms_mutex_lock_poll(ms_mutex *m, ms_mutex_waiter *w, ms_cx *cx);
/* Withdraws w; a lock granted to it but never seen passes to the next. */
MS_API void ms_mutex_waiter_cancel(ms_mutex *m, ms_mutex_waiter *w);
/* Locks if free and nobody waits. */
MS_API bool ms_mutex_try_lock(ms_mutex *m);
MS_API void ms_mutex_unlock(ms_mutex *m);
MS_API bool ms_mutex_is_locked(ms_mutex *m);

/* ---- Notify ---- */

/* Tokio's Notify.  notify_one wakes the longest waiting waiter or, if none
 * waits, stores one permit (at most one) that the next wait consumes at
 * once.  notify_all wakes every waiter present and stores nothing; a
 * waiter initialised before a notify_all and not yet ready completes too,
 * even if it was not polled yet.  So: init the waiter, check the
 * condition, then poll -- no notification between the check and the poll
 * is missed. */
typedef struct ms_notify ms_notify;

typedef struct ms_notify_waiter {
    ms_wait_link link;   /* private */
    ms_waker waker;      /* private */
    uint64_t gen;        /* private: notify_all count at init */
    uint32_t state;      /* private: atomic */
} ms_notify_waiter;

MS_API int ms_notify_new(ms_notify **out);
MS_API ms_notify *ms_notify_ref(ms_notify *n);
MS_API void ms_notify_unref(ms_notify *n);
/* Prepares w for one wait; initialise it again before the next. */
MS_API void ms_notify_waiter_init(ms_notify *n, ms_notify_waiter *w);
/* Ready once notified. */
MS_API ms_poll ms_notify_poll(ms_notify *n, ms_notify_waiter *w, ms_cx *cx);
/* Withdraws w; a notify_one it received but did not see is passed on. */
MS_API void ms_notify_waiter_cancel(ms_notify *n, ms_notify_waiter *w);
MS_API void ms_notify_one(ms_notify *n);
MS_API void ms_notify_all(ms_notify *n);

/* ---- Channel ---- */

/* A FIFO channel of void * values, any number of senders and receivers.
 * capacity >= 1: bounded, a send waits while capacity values are queued
 * (back-pressure); capacity 0: unbounded.  Waiting senders and waiting
 * receivers are each served in FIFO order, and values are handed straight
 * to a waiting receiver, so no wake-up is lost.  Close: queued and later
 * sends fail with MS_E_CLOSED (their values stay the caller's); receivers
 * first get everything sent before the close, then MS_E_CLOSED.  Values
 * still queued when the last reference goes are passed to drop_value (if
 * not NULL). */
typedef struct ms_chan ms_chan;

typedef struct ms_chan_waiter {
    ms_wait_link link;   /* private */
    ms_waker waker;      /* private */
    void *value;         /* private */
    uint32_t state;      /* private: atomic */
} ms_chan_waiter;

MS_API int ms_chan_new(size_t capacity, ms_drop_fn drop_value, ms_chan **out);
MS_API ms_chan *ms_chan_ref(ms_chan *ch);
MS_API void ms_chan_unref(ms_chan *ch);
MS_API void ms_chan_waiter_init(ms_chan_waiter *w);
/* Sends value (pass the same value to every poll of one send).  Ready with
 * *rc = 0 (the channel owns the value now), MS_E_CLOSED or MS_E_NO_MEMORY
 * (the value stays the caller's).  Pending while the channel is full. */
MS_API ms_poll ms_chan_send_poll(ms_chan *ch, ms_chan_waiter *w, void *value, ms_cx *cx, int *rc);
/* 0, MS_E_EXHAUSTED (full, or senders are waiting), MS_E_CLOSED,
 * MS_E_NO_MEMORY. */
MS_API int ms_chan_try_send(ms_chan *ch, void *value);
/* Ready with *rc = 0 and *value, or MS_E_CLOSED once the channel is
 * closed and drained.  Pending while empty. */
MS_API ms_poll ms_chan_recv_poll(ms_chan *ch, ms_chan_waiter *w, ms_cx *cx, void **value, int *rc);
/* 0 with *value, MS_E_EXHAUSTED (empty), MS_E_CLOSED (closed and
 * drained). */
MS_API int ms_chan_try_recv(ms_chan *ch, void **value);
/* Withdraws w.  For a send: returns true if the value had already gone
 * into the channel (it is the channel's), false if it is still the
 * caller's.  For a receive: a value handed to w but not yet seen goes back
 * to the front of the channel (or to the next receiver); returns false. */
MS_API bool ms_chan_waiter_cancel(ms_chan *ch, ms_chan_waiter *w);
MS_API void ms_chan_close(ms_chan *ch);
MS_API bool ms_chan_is_closed(ms_chan *ch);
/* Values queued now (a cancelled receive's put-back may briefly take a
 * bounded channel above its capacity). */
MS_API size_t ms_chan_len(ms_chan *ch);
/* As created; 0 = unbounded. */
MS_API size_t ms_chan_capacity(const ms_chan *ch);

/* ---- Oneshot ---- */

/* One value from a sender side to a receiver side, lock-free.  Created
 * with both sides open; each side is closed once (close_tx, close_rx) and
 * the object is freed when both are.  An unreceived value is then passed
 * to drop_value (if not NULL). */
typedef struct ms_oneshot ms_oneshot;

MS_API int ms_oneshot_new(ms_drop_fn drop_value, ms_oneshot **out);
/* Sender: 0, MS_E_CLOSED (the receiver side is closed; the value stays
 * the caller's), MS_E_INVALID_ARGUMENT (sent already). */
MS_API int ms_oneshot_send(ms_oneshot *o, void *value);
/* Sender: true once the receiver side is closed. */
MS_API bool ms_oneshot_is_closed(const ms_oneshot *o);
/* Closes the sender side; a receiver waiting for a value that was never
 * sent becomes ready with MS_E_CLOSED. */
MS_API void ms_oneshot_close_tx(ms_oneshot *o);
/* Receiver: ready with *rc = 0 and *value, or MS_E_CLOSED (the sender
 * side closed without sending, or the value was received already). */
MS_API ms_poll ms_oneshot_recv_poll(ms_oneshot *o, ms_cx *cx, void **value, int *rc);
/* Receiver: 0 with *value, MS_E_EXHAUSTED (nothing yet), MS_E_CLOSED. */
MS_API int ms_oneshot_try_recv(ms_oneshot *o, void **value);
MS_API void ms_oneshot_close_rx(ms_oneshot *o);

/* ---- Task queue: a concurrency limiter with priorities ---- */

/* Runs tasks on a runtime with at most max_concurrent of them running at
 * once.  The others wait; a finishing task (ready, failed or cancelled)
 * frees its slot for the waiting task of highest priority, the earliest
 * submitted among equal priorities.  Tasks are spawned at submit, wrapped
 * in a task that first waits for a slot, so the handle is an ordinary
 * ms_task join handle from the start: join it, abort it (a waiting task
 * then leaves the queue) or release it as any other. */
typedef struct ms_taskq ms_taskq;

MS_API int ms_taskq_new(ms_runtime *rt, uint32_t max_concurrent, ms_taskq **out);
MS_API ms_taskq *ms_taskq_ref(ms_taskq *q);
/* Tasks submitted keep the queue alive until they end. */
MS_API void ms_taskq_unref(ms_taskq *q);
/* Like ms_spawn, with a priority (higher runs first). */
MS_API int ms_taskq_submit(ms_taskq *q, int priority, ms_poll_fn poll, void *state, ms_drop_fn drop,
                           ms_task **handle);
/* Live tuning: raising starts waiting tasks at once; lowering lets the
 * running ones finish.  max_concurrent >= 1. */
MS_API int ms_taskq_set_max(ms_taskq *q, uint32_t max_concurrent);
MS_API uint32_t ms_taskq_max(ms_taskq *q);
/* Tasks holding a slot, and tasks waiting for one. */
MS_API uint32_t ms_taskq_running(ms_taskq *q);
MS_API size_t ms_taskq_queued(ms_taskq *q);

/* ---- Batches and fan-out / fan-in ---- */

/* One task to start: as the arguments of ms_spawn. */
typedef struct ms_task_spec {
    ms_poll_fn poll;
    void *state;
    ms_drop_fn drop;
} ms_task_spec;

/* n tasks joined together.  Started on rt with ms_spawn, or through q
 * (with priority) when q is not NULL.  From the call on the batch owns
 * every state: if one cannot start, the states not started are dropped,
 * the started tasks aborted, and the error returned. */
typedef struct ms_batch ms_batch;

MS_API int ms_batch_spawn(ms_runtime *rt, ms_taskq *q, int priority, size_t n,
                          const ms_task_spec *specs, ms_batch **out);
/* Joins every task, in order.  Ready with outputs[i] (n entries, may be
 * NULL) the output of task i (NULL for a failed one) and *rc 0 or the
 * failure of the lowest-numbered task that failed (err gets its message). */
MS_API ms_poll ms_batch_poll_join(ms_batch *b, ms_cx *cx, void **outputs, int *rc, ms_error *err);
/* The same from a plain thread, up to timeout_ms (negative: forever):
 * MS_E_TIMEOUT leaves the batch joinable again later. */
MS_API int ms_batch_join(ms_batch *b, int64_t timeout_ms, void **outputs, ms_error *err);
MS_API size_t ms_batch_size(const ms_batch *b);
/* Aborts the tasks not joined yet. */
MS_API void ms_batch_abort(ms_batch *b);
/* Frees the batch; tasks not joined run on, detached. */
MS_API void ms_batch_free(ms_batch *b);

/* What a fan-out task delivers: allocated, free it with ms_free. */
typedef struct ms_fanout_result {
    size_t index;        /* which spec */
    int rc;              /* 0, the failure code, or MS_E_TASK_CANCELLED */
    void *output;        /* when rc == 0 */
    ms_error err;        /* when rc != 0 */
} ms_fanout_result;

/* Starts n detached tasks (on rt, or through q with priority) and returns
 * a new unbounded channel in *results that receives one
 * ms_fanout_result * per task as it ends, in the order they end; the
 * channel is closed after the last, so a fan-in loop receives until
 * MS_E_CLOSED.  Results are pre-allocated: none is lost.  On failure, as
 * ms_batch_spawn: every state is dropped (started tasks aborted) and
 * *results is not set. */
MS_API int ms_fanout_spawn(ms_runtime *rt, ms_taskq *q, int priority, size_t n,
                           const ms_task_spec *specs, ms_chan **results);

#ifdef __cplusplus
}
#endif
#endif /* MS_H */
