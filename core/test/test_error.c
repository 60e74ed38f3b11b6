/*
 * test_error.c - the error model: every code's name, kind, default severity
 * and recovery, and the ms_error value's formatting.
 */
#include "ms.h"
#include "test.h"

#include <limits.h>

/* Like CHECK(strcmp(a, b) == 0), but a failure shows both strings. */
#define CHECK_STR_EQ(a, b)                                                \
    do {                                                                  \
        const char *a_ = (a), *b_ = (b);                                  \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                          \
            TEST_FAIL_AT(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");         \
            return;                                                       \
        }                                                                 \
    } while (0)

/* The documented mapping (ms.h, docs/errors.md), written out independently
 * of error.c's table so that a change to either shows up here. */
static const struct {
    int code;
    const char *name;
    ms_err_kind kind;
    ms_severity severity;
    ms_recovery_kind recovery;
} documented[] = {
    {MS_E_BUILD_FAILED, "BuildFailed", MS_KIND_RUNTIME, MS_SEVERITY_CRITICAL, MS_RECOVER_ESCALATE},
    {MS_E_STARTUP_FAILED, "StartupFailed", MS_KIND_RUNTIME, MS_SEVERITY_CRITICAL, MS_RECOVER_RETRY},
    {MS_E_SHUTDOWN_FAILED, "ShutdownFailed", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, MS_RECOVER_ESCALATE},
    {MS_E_CONFIG_INVALID, "ConfigurationInvalid", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, MS_RECOVER_RELOAD},
    {MS_E_SHUTTING_DOWN, "ShuttingDown", MS_KIND_RUNTIME, MS_SEVERITY_LOW, MS_RECOVER_IGNORE},
    {MS_E_WRONG_THREAD, "WrongThread", MS_KIND_RUNTIME, MS_SEVERITY_HIGH, MS_RECOVER_ESCALATE},
    {MS_E_TASK_FAILED, "TaskFailed", MS_KIND_TASK, MS_SEVERITY_MEDIUM, MS_RECOVER_RESTART},
    {MS_E_TASK_CANCELLED, "TaskCancelled", MS_KIND_TASK, MS_SEVERITY_LOW, MS_RECOVER_IGNORE},
    {MS_E_TIMEOUT, "Timeout", MS_KIND_TASK, MS_SEVERITY_MEDIUM, MS_RECOVER_RETRY},
    {MS_E_NO_MEMORY, "OutOfMemory", MS_KIND_RESOURCE, MS_SEVERITY_CRITICAL, MS_RECOVER_RESTART},
    {MS_E_EXHAUSTED, "ResourceExhausted", MS_KIND_RESOURCE, MS_SEVERITY_HIGH, MS_RECOVER_CIRCUIT_BREAKER},
    {MS_E_THREAD_LIMIT, "ThreadLimit", MS_KIND_RESOURCE, MS_SEVERITY_HIGH, MS_RECOVER_CIRCUIT_BREAKER},
    {MS_E_CLOSED, "Closed", MS_KIND_RESOURCE, MS_SEVERITY_MEDIUM, MS_RECOVER_FAILOVER},
    {MS_E_IO, "IoError", MS_KIND_IO, MS_SEVERITY_MEDIUM, MS_RECOVER_RETRY},
    {MS_E_NOT_ENABLED, "NotEnabled", MS_KIND_IO, MS_SEVERITY_HIGH, MS_RECOVER_RELOAD},
    {MS_E_INVALID_ARGUMENT, "InvalidArgument", MS_KIND_USAGE, MS_SEVERITY_MEDIUM, MS_RECOVER_IGNORE},
    {MS_E_INTERNAL, "Internal", MS_KIND_INTERNAL, MS_SEVERITY_CRITICAL, MS_RECOVER_ESCALATE},
};
#define DOCUMENTED_COUNT (sizeof documented / sizeof documented[0])

TEST(every_error_code_has_name_kind_severity_recovery) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++) {
        int code = documented[i].code;
        CHECK(strcmp(ms_err_name(code), "Unknown") != 0);
        CHECK(ms_err_kind_of(code) != MS_KIND_NONE);
        CHECK(strcmp(ms_err_kind_name(ms_err_kind_of(code)), "Unknown") != 0);
        CHECK(strcmp(ms_severity_name(ms_err_severity(code)), "unknown") != 0);
        CHECK(strcmp(ms_recovery_name(ms_err_recovery(code).kind), "unknown") != 0);
    }
}

TEST(names_are_the_documented_camel_case_strings) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++)
        CHECK_STR_EQ(ms_err_name(documented[i].code), documented[i].name);
}

TEST(every_code_has_a_distinct_name) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++)
        for (size_t j = i + 1; j < DOCUMENTED_COUNT; j++)
            CHECK(strcmp(ms_err_name(documented[i].code), ms_err_name(documented[j].code)) != 0);
}

TEST(kinds_follow_the_documented_grouping) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++)
        CHECK_INT_EQ(ms_err_kind_of(documented[i].code), documented[i].kind);
}

TEST(default_severity_and_recovery_match_the_documented_table) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++) {
        CHECK_INT_EQ(ms_err_severity(documented[i].code), documented[i].severity);
        CHECK_INT_EQ(ms_err_recovery(documented[i].code).kind, documented[i].recovery);
    }
}

TEST(retry_strategies_carry_attempts_and_delay) {
    ms_recovery r = ms_err_recovery(MS_E_STARTUP_FAILED);
    CHECK_INT_EQ(r.max_attempts, 3);
    CHECK_INT_EQ(r.delay_ms, 1000);
    r = ms_err_recovery(MS_E_TIMEOUT);
    CHECK_INT_EQ(r.max_attempts, 3);
    CHECK_INT_EQ(r.delay_ms, 100);
    r = ms_err_recovery(MS_E_IO);
    CHECK_INT_EQ(r.max_attempts, 3);
    CHECK_INT_EQ(r.delay_ms, 100);
}

TEST(circuit_breakers_carry_threshold_and_reset_timeout) {
    int codes[] = {MS_E_EXHAUSTED, MS_E_THREAD_LIMIT};
    for (size_t i = 0; i < 2; i++) {
        ms_recovery r = ms_err_recovery(codes[i]);
        CHECK_INT_EQ(r.kind, MS_RECOVER_CIRCUIT_BREAKER);
        CHECK_INT_EQ(r.failure_threshold, 5);
        CHECK_INT_EQ(r.reset_timeout_ms, 30000);
    }
}

TEST(strategies_without_parameters_leave_them_zero) {
    for (size_t i = 0; i < DOCUMENTED_COUNT; i++) {
        ms_recovery r = ms_err_recovery(documented[i].code);
        if (r.kind != MS_RECOVER_RETRY) {
            CHECK_INT_EQ(r.max_attempts, 0);
            CHECK_INT_EQ(r.delay_ms, 0);
        }
        if (r.kind != MS_RECOVER_CIRCUIT_BREAKER) {
            CHECK_INT_EQ(r.failure_threshold, 0);
            CHECK_INT_EQ(r.reset_timeout_ms, 0);
        }
    }
}

TEST(ok_is_named_ok_and_has_no_kind) {
    CHECK_STR_EQ(ms_err_name(MS_OK), "Ok");
    CHECK_INT_EQ(ms_err_kind_of(MS_OK), MS_KIND_NONE);
    CHECK_INT_EQ(ms_err_severity(MS_OK), MS_SEVERITY_LOW);
    CHECK_INT_EQ(ms_err_recovery(MS_OK).kind, MS_RECOVER_IGNORE);
}

TEST(unknown_code_is_internal) {
    int codes[] = {-7, -19, -100, 1, 42, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        CHECK_STR_EQ(ms_err_name(codes[i]), "Unknown");
        CHECK_INT_EQ(ms_err_kind_of(codes[i]), MS_KIND_INTERNAL);
        CHECK_INT_EQ(ms_err_severity(codes[i]), MS_SEVERITY_CRITICAL);
        CHECK_INT_EQ(ms_err_recovery(codes[i]).kind, MS_RECOVER_ESCALATE);
    }
}

TEST(kind_severity_and_recovery_names_are_stable) {
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_RUNTIME), "Runtime");
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_TASK), "Task");
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_RESOURCE), "Resource");
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_IO), "Io");
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_USAGE), "Usage");
    CHECK_STR_EQ(ms_err_kind_name(MS_KIND_INTERNAL), "Internal");

    CHECK_STR_EQ(ms_severity_name(MS_SEVERITY_LOW), "low");
    CHECK_STR_EQ(ms_severity_name(MS_SEVERITY_MEDIUM), "medium");
    CHECK_STR_EQ(ms_severity_name(MS_SEVERITY_HIGH), "high");
    CHECK_STR_EQ(ms_severity_name(MS_SEVERITY_CRITICAL), "critical");

    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_IGNORE), "ignore");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_RETRY), "retry");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_RESTART), "restart");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_ESCALATE), "escalate");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_RELOAD), "reload");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_CIRCUIT_BREAKER), "circuit_breaker");
    CHECK_STR_EQ(ms_recovery_name(MS_RECOVER_FAILOVER), "failover");
}

TEST(out_of_range_enum_values_have_a_name_not_a_crash) {
    CHECK(ms_err_kind_name((ms_err_kind)99) != NULL);
    CHECK(ms_err_kind_name((ms_err_kind)-1) != NULL);
    CHECK_STR_EQ(ms_severity_name((ms_severity)99), "unknown");
    CHECK_STR_EQ(ms_recovery_name((ms_recovery_kind)-3), "unknown");
}

TEST(error_set_formats_the_message_and_returns_the_code) {
    ms_error err;
    int rc = ms_error_set(&err, MS_E_TIMEOUT, "waited %d ms for %s", 250, "the pool");
    CHECK_INT_EQ(rc, MS_E_TIMEOUT);
    CHECK_INT_EQ(err.code, MS_E_TIMEOUT);
    CHECK_STR_EQ(err.message, "waited 250 ms for the pool");
}

TEST(error_set_tolerates_a_null_error) {
    CHECK_INT_EQ(ms_error_set(NULL, MS_E_CLOSED, "closed %s", "x"), MS_E_CLOSED);
}

TEST(error_set_without_a_format_uses_the_code_name) {
    ms_error err;
    ms_error_set(&err, MS_E_NO_MEMORY, NULL);
    CHECK_STR_EQ(err.message, "OutOfMemory");
}

TEST(error_message_is_truncated_safely) {
    struct {
        ms_error err;
        char canary[16];
    } s;
    memset(s.canary, 0x5a, sizeof s.canary);
    char long_text[1000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';

    ms_error_set(&s.err, MS_E_IO, "read failed: %s", long_text);
    CHECK_INT_EQ(strlen(s.err.message), MS_ERROR_MESSAGE_MAX - 1);
    CHECK_STR_CONTAINS(s.err.message, "read failed: xxx");
    /* a cut message says so */
    CHECK_STR_EQ(s.err.message + MS_ERROR_MESSAGE_MAX - 4, "...");
    for (size_t i = 0; i < sizeof s.canary; i++)
        CHECK_INT_EQ((unsigned char)s.canary[i], 0x5a);
}

TEST(message_that_just_fits_is_not_marked_as_cut) {
    ms_error err;
    char text[MS_ERROR_MESSAGE_MAX];
    memset(text, 'y', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    ms_error_set(&err, MS_E_IO, "%s", text);
    CHECK_STR_EQ(err.message, text);
}

TEST(error_message_can_wrap_its_own_previous_message) {
    ms_error err;
    ms_error_set(&err, MS_E_IO, "open failed");
    ms_error_set(&err, err.code, "loading profile: %s", err.message);
    CHECK_STR_EQ(err.message, "loading profile: open failed");
    CHECK_INT_EQ(err.code, MS_E_IO);
}

static int set_via_va_list(ms_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = ms_error_setv(err, code, fmt, ap);
    va_end(ap);
    return rc;
}

TEST(error_setv_takes_a_va_list) {
    ms_error err;
    CHECK_INT_EQ(set_via_va_list(&err, MS_E_EXHAUSTED, "%u of %u slots", 8u, 8u), MS_E_EXHAUSTED);
    CHECK_STR_EQ(err.message, "8 of 8 slots");
    CHECK_INT_EQ(set_via_va_list(NULL, MS_E_EXHAUSTED, "%s", "ignored"), MS_E_EXHAUSTED);
}

TEST_MAIN()
