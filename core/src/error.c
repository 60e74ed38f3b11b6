/*
 * error.c - error codes, their names, kinds, severities and default
 * recovery strategies, and the ms_error value.
 *
 * Everything a code means lives in one row of err_table below: its name,
 * its kind, how bad it is and what a supervisor should do about it by
 * default.  Lookups are a linear scan of that table; it has eighteen rows and
 * is only consulted on error paths, so a scan costs less than keeping a
 * second index in step with it.  A code that is not in the table is a bug
 * somewhere (a caller invented it, or a new code was added without a row),
 * so it reads as "Unknown" and is treated like MS_E_INTERNAL: critical,
 * escalate.
 *
 * ms_error_setv formats into a local buffer first and copies afterwards,
 * so a message may quote the error's own previous message ("while X: %s",
 * err->message) to add context as it travels up.  A message that does not
 * fit ends in "..." so that a reader can tell it was cut.
 */
#include "ms.h"

#include <stdio.h>
#include <string.h>

struct err_info {
    int code;
    const char *name;
    ms_err_kind kind;
    ms_severity severity;
    ms_recovery recovery;
};

#define IGNORE {.kind = MS_RECOVER_IGNORE}
#define RESTART {.kind = MS_RECOVER_RESTART}
#define ESCALATE {.kind = MS_RECOVER_ESCALATE}
#define RELOAD {.kind = MS_RECOVER_RELOAD}
#define FAILOVER {.kind = MS_RECOVER_FAILOVER}
#define RETRY(n, ms) {.kind = MS_RECOVER_RETRY, .max_attempts = (n), .delay_ms = (ms)}
#define BREAKER(n, ms)                                                    \
    {.kind = MS_RECOVER_CIRCUIT_BREAKER, .failure_threshold = (n), .reset_timeout_ms = (ms)}

/* The mapping documented in ms.h and docs/errors.md; keep the three in step. */
static const struct err_info err_table[] = {
    {MS_OK, "Ok", MS_KIND_NONE, MS_SEVERITY_LOW, IGNORE},

    {MS_E_BUILD_FAILED, "BuildFailed", MS_KIND_RUNTIME, MS_SEVERITY_CRITICAL, ESCALATE},
    {MS_E_STARTUP_FAILED, "StartupFailed", MS_KIND_RUNTIME, MS_SEVERITY_CRITICAL, RETRY(3, 1000)},
    {MS_E_SHUTDOWN_FAILED, "ShutdownFailed", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, ESCALATE},
    {MS_E_CONFIG_INVALID, "ConfigurationInvalid", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, RELOAD},
    {MS_E_SHUTTING_DOWN, "ShuttingDown", MS_KIND_RUNTIME, MS_SEVERITY_LOW, IGNORE},
    {MS_E_WRONG_THREAD, "WrongThread", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, ESCALATE},

    {MS_E_TASK_FAILED, "TaskFailed", MS_KIND_TASK, MS_SEVERITY_MEDIUM, RESTART},
    {MS_E_TASK_CANCELLED, "TaskCancelled", MS_KIND_TASK, MS_SEVERITY_LOW, IGNORE},
    {MS_E_TIMEOUT, "Timeout", MS_KIND_TASK, MS_SEVERITY_MEDIUM, RETRY(3, 100)},

    {MS_E_NO_MEMORY, "OutOfMemory", MS_KIND_RESOURCE, MS_SEVERITY_CRITICAL, RESTART},
    {MS_E_EXHAUSTED, "ResourceExhausted", MS_KIND_RESOURCE, MS_SEVERITY_HIGH, BREAKER(5, 30000)},
    {MS_E_THREAD_LIMIT, "ThreadLimit", MS_KIND_RESOURCE, MS_SEVERITY_HIGH, BREAKER(5, 30000)},
    {MS_E_CLOSED, "Closed", MS_KIND_RESOURCE, MS_SEVERITY_MEDIUM, FAILOVER},

    {MS_E_IO, "IoError", MS_KIND_IO, MS_SEVERITY_MEDIUM, RETRY(3, 100)},
    {MS_E_NOT_ENABLED, "NotEnabled", MS_KIND_IO, MS_SEVERITY_HIGH, RELOAD},

    {MS_E_INVALID_ARGUMENT, "InvalidArgument", MS_KIND_USAGE, MS_SEVERITY_MEDIUM, IGNORE},

    {MS_E_INTERNAL, "Internal", MS_KIND_INTERNAL, MS_SEVERITY_CRITICAL, ESCALATE},
};

static const struct err_info err_unknown = {
    0, "Unknown", MS_KIND_INTERNAL, MS_SEVERITY_CRITICAL, ESCALATE,
};

static const struct err_info *err_lookup(int code) {
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return &err_table[i];
    return &err_unknown;
}

const char *ms_err_name(int code) { return err_lookup(code)->name; }

ms_err_kind ms_err_kind_of(int code) { return err_lookup(code)->kind; }

ms_severity ms_err_severity(int code) { return err_lookup(code)->severity; }

ms_recovery ms_err_recovery(int code) { return err_lookup(code)->recovery; }

/* The name tables below are indexed by enum value; an enum holding a value
 * outside its declared range (a cast from an int) reads as "unknown". */

const char *ms_err_kind_name(ms_err_kind kind) {
    static const char *const names[] = {
        [MS_KIND_NONE] = "None",         [MS_KIND_RUNTIME] = "Runtime",
        [MS_KIND_TASK] = "Task",         [MS_KIND_RESOURCE] = "Resource",
        [MS_KIND_IO] = "Io",             [MS_KIND_USAGE] = "Usage",
        [MS_KIND_INTERNAL] = "Internal",
    };
    unsigned k = (unsigned)kind;
    return k < sizeof names / sizeof names[0] ? names[k] : "Unknown";
}

const char *ms_severity_name(ms_severity s) {
    static const char *const names[] = {
        [MS_SEVERITY_LOW] = "low",
        [MS_SEVERITY_MEDIUM] = "medium",
        [MS_SEVERITY_HIGH] = "high",
        [MS_SEVERITY_CRITICAL] = "critical",
    };
    unsigned k = (unsigned)s;
    return k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

const char *ms_recovery_name(ms_recovery_kind kind) {
    static const char *const names[] = {
        [MS_RECOVER_IGNORE] = "ignore",
        [MS_RECOVER_RETRY] = "retry",
        [MS_RECOVER_RESTART] = "restart",
        [MS_RECOVER_ESCALATE] = "escalate",
        [MS_RECOVER_RELOAD] = "reload",
        [MS_RECOVER_CIRCUIT_BREAKER] = "circuit_breaker",
        [MS_RECOVER_FAILOVER] = "failover",
    };
    unsigned k = (unsigned)kind;
    return k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

int ms_error_setv(ms_error *err, int code, const char *fmt, va_list ap) {
    if (err == NULL)
        return code;

    /* Format apart from err->message: the arguments may point into it. */
    char text[MS_ERROR_MESSAGE_MAX];
    int n;
    if (fmt != NULL) {
        n = vsnprintf(text, sizeof text, fmt, ap);
    } else {
        n = snprintf(text, sizeof text, "%s", ms_err_name(code));
    }
    if (n < 0) {
        snprintf(text, sizeof text, "%s (the message could not be formatted)",
                 ms_err_name(code));
    } else if ((size_t)n >= sizeof text) {
        memcpy(text + sizeof text - 4, "...", 4);
    }

    err->code = (ms_err)code;
    memcpy(err->message, text, sizeof text);
    return code;
}

int ms_error_set(ms_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = ms_error_setv(err, code, fmt, ap);
    va_end(ap);
    return rc;
}
