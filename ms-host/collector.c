/*
 * collector.c - ms-host's metrics collector: a snapshot every
 * metrics_interval, appended to metrics_file as one JSON object per line
 * (the /metrics.json document plus "time", "seq" and "final"), and kept as
 * the host's latest snapshot for ms.metrics_history().
 *
 * The collector is one thread of its own that sleeps on a condition
 * variable until the next tick.  Writing a file may block for as long as
 * the disk or the network file system likes; on its own thread that
 * blocks nobody: not a worker (whose other tasks would wait), not the
 * driver's loop (timers and sockets), and not the blocking pool, where a
 * snapshot would queue behind the agents' own jobs and could be refused
 * at max_blocking_threads.  The cost is one mostly idle thread and one
 * wake-up per interval; without a metrics file there is no collector and
 * nothing wakes.
 *
 * The final line: collector_finish stops the thread and writes one more
 * snapshot marked "final": true, so the file always ends with the state
 * at exit.  ms-host calls it once every agent has ended (a normal end, or
 * a graceful shutdown on SIGINT, SIGTERM or ms.shutdown) and, through
 * host.metrics_final, right before the immediate exits of lifecycle.c.
 * The file is written by the collector thread and by collector_finish,
 * under the collector's lock; the final line is the last one written.
 *
 * Each run appends to the file, so runs can be told apart by "seq"
 * starting again at 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector.h"
#include "facts.h"
#include "host.h"
#include "hostlog.h"
#include "metrics_http.h"

typedef struct collector {
    host *h;                    /* immutable while running */
    uint64_t interval_ns;       /* immutable while running */
    char *path;                 /* immutable while running */
    /* Under lock: */
    pthread_t thread;
    bool running;               /* the thread was started and not yet joined */
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* CLOCK_MONOTONIC; signalled by finish */
    bool stop;
    bool finished;              /* the final line is written: nothing more */
    bool write_failed;          /* reported once on stderr */
    FILE *f;
    uint64_t seq;               /* lines written */
} collector;

static collector g_coll = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Takes a snapshot, keeps it as the host's latest and appends its line.
 * final (with why) marks the last line; nothing is written after it. */
static void collect(collector *c, bool final, const char *why) {
    ms_metrics *m = ms_metrics_snapshot(c->h->rt);
    if (!m)
        return;
    double now = wall_seconds();
    char prefix[160];
    pthread_mutex_lock(&c->lock);
    uint64_t seq = c->seq + 1;
    pthread_mutex_unlock(&c->lock);
    if (final) {
        /* The reason is a short literal; keep to characters that need no
         * escaping in JSON whatever a caller passes. */
        char reason[48];
        size_t n = 0;
        for (const char *p = why ? why : "exit"; *p && n + 1 < sizeof reason; p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (*p >= '0' && *p <= '9') || *p == ' ' || *p == '.' || *p == '_' || *p == '-')
                reason[n++] = *p;
        reason[n] = '\0';
        snprintf(prefix, sizeof prefix,
                 "\"time\":%.6f,\"seq\":%llu,\"final\":true,\"reason\":\"%s\",", now,
                 (unsigned long long)seq, reason);
    }
    else
        snprintf(prefix, sizeof prefix, "\"time\":%.6f,\"seq\":%llu,\"final\":false,", now,
                 (unsigned long long)seq);
    /* Rendering takes the host's registry lock (agents), so it happens
     * before the collector's lock is taken. */
    char *line = metrics_json_line(c->h, m, prefix);
    pthread_mutex_lock(&c->lock);
    if (line && c->f && !c->finished) {
        bool ok = fputs(line, c->f) >= 0 && fflush(c->f) == 0;
        if (!ok && !c->write_failed) {
            c->write_failed = true;
            hostlog(HOSTLOG_WARNING, "metrics_file.write_failed", 0, NULL,
                    "metrics file %s: cannot write: %s (snapshots go on, unwritten)", c->path,
                    strerror(errno));
        }
        c->seq++;
    }
    if (final)
        c->finished = true;
    pthread_mutex_unlock(&c->lock);
    free(line);
    host_history_push(c->h, m, now);
}

static void add_ns(struct timespec *ts, uint64_t ns) {
    uint64_t n = (uint64_t)ts->tv_nsec + ns;
    ts->tv_sec += (time_t)(n / 1000000000u);
    ts->tv_nsec = (long)(n % 1000000000u);
}

static bool before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *collector_main(void *arg) {
    collector *c = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        add_ns(&next, c->interval_ns);
        /* After a stall longer than an interval (a slow disk), skip the
         * missed ticks rather than fire them back to back. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (before(&next, &now)) {
            next = now;
            add_ns(&next, c->interval_ns);
        }
        while (!c->stop && pthread_cond_timedwait(&c->wake, &c->lock, &next) != ETIMEDOUT)
            ;
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        collect(c, false, NULL);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void finish_hook(const char *why) {
    collector_finish(why);
}

int collector_start(host *h, const char *path, double interval_s, ms_error *err) {
    collector *c = &g_coll;
    pthread_mutex_lock(&c->lock);
    bool busy = c->running || c->f;
    pthread_mutex_unlock(&c->lock);
    if (busy)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "the metrics collector is already running");
    /* The profile field's range (agents/facts.c), which the profile checks
     * too. */
    profile_field range;
    profile_field_find("metrics_interval", &range);
    if (!(interval_s >= range.min && interval_s <= range.max))
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "metrics_interval = %g s is out of range (allowed %g..%g s)",
                            interval_s, range.min, range.max);
    /* "e": close-on-exec, so agents' child processes do not inherit it. */
    FILE *f = fopen(path, "ae");
    if (!f)
        return ms_error_set(err, MS_E_IO, "metrics file %s: cannot open for appending: %s", path,
                            strerror(errno));
    char *copy = strdup(path);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = copy ? pthread_cond_init(&c->wake, &ca) : ENOMEM;
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free(copy);
        fclose(f);
        return ms_error_set(err, MS_E_NO_MEMORY, "metrics file %s: %s", path, strerror(rc));
    }
    /* The thread takes no signals: ms-host handles SIGINT and SIGTERM on
     * the driver, and a helper thread must not be the one they land on. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* Under the lock: a finisher on another thread (lifecycle.c, on a
     * signal) may look at the collector at any time. */
    pthread_mutex_lock(&c->lock);
    c->h = h;
    c->path = copy;
    c->interval_ns = (uint64_t)(interval_s * 1e9);
    c->f = f;
    c->stop = c->finished = c->write_failed = false;
    c->seq = 0;
    rc = pthread_create(&c->thread, &attr, collector_main, c);
    c->running = rc == 0;
    if (rc != 0) {
        c->f = NULL;
        c->path = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&c->wake);
        fclose(f);
        free(copy);
        return ms_error_set(err, MS_E_STARTUP_FAILED,
                            "metrics file %s: cannot start the collector thread: %s", path,
                            strerror(rc));
    }
    pthread_setname_np(c->thread, "ms-metrics");
    pthread_mutex_lock(&h->lock);
    h->metrics_final = finish_hook;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void collector_finish(const char *why) {
    collector *c = &g_coll;
    pthread_mutex_lock(&c->lock);
    bool active = c->f != NULL && !c->finished;
    /* The first finisher joins the thread (it answers the stop at once
     * unless a write is blocked); a concurrent second one - an immediate
     * exit racing the normal end - only tries to write the final line,
     * which the lock lets just one of them do. */
    bool join = active && c->running && !pthread_equal(pthread_self(), c->thread);
    c->stop = true;
    if (c->running)
        pthread_cond_signal(&c->wake);
    if (join)
        c->running = false; /* this caller joins; a concurrent one will not */
    pthread_mutex_unlock(&c->lock);
    if (!active)
        return;
    if (join)
        pthread_join(c->thread, NULL);
    collect(c, true, why);
    if (!join)
        return; /* the joining finisher closes the file */
    pthread_mutex_lock(&c->lock);
    FILE *f = c->f;
    c->f = NULL;
    pthread_mutex_unlock(&c->lock);
    if (fclose(f) != 0)
        hostlog(HOSTLOG_WARNING, "metrics_file.write_failed", 0, NULL,
                "metrics file %s: cannot close: %s", c->path, strerror(errno));
    pthread_cond_destroy(&c->wake);
    free(c->path);
    c->path = NULL;
    /* host.metrics_final stays: a later call finds nothing active. */
}
