/*
 * test_config.c - runtime configuration: the documented defaults, what
 * validation rejects and how it says so, setting fields from text, and
 * describing a configuration.
 */
#include "ms.h"
#include "test.h"

#include <limits.h>
#include <unistd.h>

#ifdef PTHREAD_STACK_MIN
#define STACK_MIN ((size_t)PTHREAD_STACK_MIN)
#else
#define STACK_MIN ((size_t)16384)
#endif

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

static ms_config defaults(void) {
    ms_config cfg;
    ms_config_default(&cfg);
    return cfg;
}

/* Field by field: padding bytes are not part of a config's value. */
static bool same_config(const ms_config *a, const ms_config *b) {
    return a->worker_threads == b->worker_threads &&
           a->max_blocking_threads == b->max_blocking_threads &&
           a->thread_keep_alive_ms == b->thread_keep_alive_ms &&
           a->thread_stack_size == b->thread_stack_size && a->enable_all == b->enable_all &&
           a->enable_time == b->enable_time && a->enable_io == b->enable_io &&
           a->global_queue_interval == b->global_queue_interval &&
           a->event_interval == b->event_interval && a->budget == b->budget &&
           a->shutdown_timeout_ms == b->shutdown_timeout_ms &&
           a->stall_threshold_ms == b->stall_threshold_ms &&
           a->metrics_histograms == b->metrics_histograms &&
           a->thread_name == b->thread_name && a->on_thread_start == b->on_thread_start &&
           a->on_thread_stop == b->on_thread_stop && a->hook_ud == b->hook_ud &&
           a->on_stall == b->on_stall && a->on_starved == b->on_starved &&
           a->stall_ud == b->stall_ud;
}

/* Validation of cfg fails with ConfigurationInvalid; err holds the message. */
static bool rejected(const ms_config *cfg, ms_error *err) {
    memset(err, 0, sizeof *err);
    return ms_config_validate(cfg, err) == MS_E_CONFIG_INVALID && err->code == MS_E_CONFIG_INVALID;
}

/* Setting key=value fails with ConfigurationInvalid and leaves cfg as it
 * was. */
static bool set_fails(ms_config *cfg, const char *key, const char *value, ms_error *err) {
    ms_config before = *cfg;
    memset(err, 0, sizeof *err);
    int rc = ms_config_set(cfg, key, value, err);
    return rc == MS_E_CONFIG_INVALID && err->code == MS_E_CONFIG_INVALID &&
           same_config(&before, cfg);
}

/* ------------------------------------------------------------------------
 * Defaults
 * ---------------------------------------------------------------------- */

TEST(defaults_match_the_documented_values) {
    ms_config cfg = defaults();
    CHECK_INT_EQ(cfg.max_blocking_threads, 512);
    CHECK_INT_EQ(cfg.thread_keep_alive_ms, 60000);
    CHECK_INT_EQ(cfg.thread_stack_size, 2 * 1024 * 1024);
    CHECK(cfg.enable_all);
    CHECK(cfg.enable_time);
    CHECK(cfg.enable_io);
    CHECK_INT_EQ(cfg.global_queue_interval, 61);
    CHECK_INT_EQ(cfg.event_interval, 61);
    CHECK_INT_EQ(cfg.budget, 128);
    CHECK_INT_EQ(cfg.shutdown_timeout_ms, 30000);
    CHECK_STR_EQ(cfg.thread_name, "ms");
    CHECK(cfg.on_thread_start == NULL);
    CHECK(cfg.on_thread_stop == NULL);
    CHECK(cfg.hook_ud == NULL);
}

TEST(default_worker_threads_is_the_online_cpu_count) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (cpus > MS_MAX_WORKERS)
        cpus = MS_MAX_WORKERS;
    CHECK_INT_EQ(defaults().worker_threads, cpus);
}

TEST(defaults_are_valid) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

/* ------------------------------------------------------------------------
 * Validation
 * ---------------------------------------------------------------------- */

TEST(zero_workers_is_rejected_naming_field_value_and_range) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.worker_threads = 0;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "worker_threads = 0 is out of range (allowed 1..1024)");
}

TEST(absurd_thread_counts_are_rejected) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.worker_threads = MS_MAX_WORKERS + 1;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "worker_threads = 1025");
    cfg.worker_threads = UINT32_MAX;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "worker_threads = 4294967295");

    cfg = defaults();
    cfg.max_blocking_threads = 0;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "max_blocking_threads = 0 is out of range (allowed 1..65536)");
    cfg.max_blocking_threads = MS_MAX_BLOCKING_THREADS + 1;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "max_blocking_threads = 65537");
}

TEST(thread_count_limits_themselves_are_allowed) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.worker_threads = 1;
    cfg.max_blocking_threads = 1;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
    cfg.worker_threads = MS_MAX_WORKERS;
    cfg.max_blocking_threads = MS_MAX_BLOCKING_THREADS;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(stack_below_platform_minimum_is_rejected) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.thread_stack_size = STACK_MIN - 1;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "thread_stack_size = ");
    CHECK_STR_CONTAINS(err.message, "is out of range");
    cfg.thread_stack_size = 0;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "thread_stack_size = 0 is out of range");
    cfg.thread_stack_size = STACK_MIN;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(stack_above_one_gib_is_rejected) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.thread_stack_size = MS_MAX_STACK_SIZE + 1;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "thread_stack_size = 1073741825 is out of range");
    cfg.thread_stack_size = MS_MAX_STACK_SIZE;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(intervals_and_budget_must_be_positive_and_bounded) {
    static const struct { size_t offset; const char *name; } fields[] = {
        {offsetof(ms_config, global_queue_interval), "global_queue_interval"},
        {offsetof(ms_config, event_interval), "event_interval"},
        {offsetof(ms_config, budget), "budget"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        uint32_t *field = (uint32_t *)((char *)&cfg + fields[i].offset);
        char want[128];

        *field = 0;
        CHECK(rejected(&cfg, &err));
        snprintf(want, sizeof want, "%s = 0 is out of range (allowed 1..1000000)", fields[i].name);
        CHECK_STR_CONTAINS(err.message, want);

        *field = 1000001;
        CHECK(rejected(&cfg, &err));
        snprintf(want, sizeof want, "%s = 1000001", fields[i].name);
        CHECK_STR_CONTAINS(err.message, want);

        *field = 1000000;
        CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
    }
}

TEST(durations_longer_than_a_week_are_rejected) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.shutdown_timeout_ms = MS_MAX_DURATION_MS + 1;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "shutdown_timeout_ms = 604800001 is out of range");
    cfg = defaults();
    cfg.thread_keep_alive_ms = UINT64_MAX;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "thread_keep_alive_ms = 18446744073709551615");
}

TEST(zero_durations_are_allowed) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.shutdown_timeout_ms = 0;
    cfg.thread_keep_alive_ms = 0;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(enable_all_contradiction_is_rejected) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.enable_time = false;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "enable_all = true");
    CHECK_STR_CONTAINS(err.message, "enable_time = false");

    cfg = defaults();
    cfg.enable_io = false;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "enable_all = true");
    CHECK_STR_CONTAINS(err.message, "enable_io = false");
}

TEST(without_enable_all_time_and_io_may_be_off) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.enable_all = false;
    cfg.enable_time = false;
    cfg.enable_io = false;
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(thread_name_must_be_short_and_plain) {
    static const char *const bad[] = {"", "ninechars", "my app", "a/b", "tab\t", "caf\xc3\xa9"};
    static const char *const good[] = {"ms", "x", "app-1.0_", "12345678"};
    ms_config cfg = defaults();
    ms_error err;

    cfg.thread_name = NULL;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "thread_name = NULL");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.thread_name = bad[i];
        CHECK(rejected(&cfg, &err));
        CHECK_STR_CONTAINS(err.message, "thread_name = \"");
        CHECK_STR_CONTAINS(err.message, "1..8 characters");
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg.thread_name = good[i];
        CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
    }
}

TEST(a_very_long_thread_name_is_quoted_clipped) {
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ms_config cfg = defaults();
    ms_error err;
    cfg.thread_name = name;
    CHECK(rejected(&cfg, &err));
    /* the explanation after the name survives */
    CHECK_STR_CONTAINS(err.message, "...\" is invalid (allowed 1..8 characters");
}

TEST(validation_reports_the_first_bad_field) {
    ms_config cfg = defaults();
    ms_error err;
    cfg.budget = 0;
    cfg.worker_threads = 0;
    CHECK(rejected(&cfg, &err));
    CHECK_STR_CONTAINS(err.message, "worker_threads");
}

TEST(validate_handles_null_arguments_without_crashing) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_validate(NULL, &err), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_config_validate(NULL, NULL), MS_E_INVALID_ARGUMENT);
    cfg.worker_threads = 0;
    CHECK_INT_EQ(ms_config_validate(&cfg, NULL), MS_E_CONFIG_INVALID);
}

/* ------------------------------------------------------------------------
 * Setting fields from text
 * ---------------------------------------------------------------------- */

TEST(set_parses_whole_numbers) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_set(&cfg, "worker_threads", "4", &err), 0);
    CHECK_INT_EQ(cfg.worker_threads, 4);
    CHECK_INT_EQ(ms_config_set(&cfg, "max_blocking_threads", "0064", &err), 0);
    CHECK_INT_EQ(cfg.max_blocking_threads, 64);
    CHECK_INT_EQ(ms_config_set(&cfg, "budget", "1000000", &err), 0);
    CHECK_INT_EQ(cfg.budget, 1000000);
    CHECK_INT_EQ(ms_config_set(&cfg, "global_queue_interval", "31", &err), 0);
    CHECK_INT_EQ(cfg.global_queue_interval, 31);
    CHECK_INT_EQ(ms_config_set(&cfg, "event_interval", "7", &err), 0);
    CHECK_INT_EQ(cfg.event_interval, 7);
}

TEST(set_parses_durations_with_units) {
    static const struct { const char *text; uint64_t ms; } cases[] = {
        {"250ms", 250}, {"1.5s", 1500}, {"2m", 120000}, {"5", 5000},
        {"0", 0},       {"0.25", 250},  {"1.50000000000s", 1500},
        {"0.001s", 1},  {"0.5m", 30000}, {"10080m", MS_MAX_DURATION_MS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        CHECK_INT_EQ(ms_config_set(&cfg, "shutdown_timeout", cases[i].text, &err), 0);
        CHECK_INT_EQ(cfg.shutdown_timeout_ms, cases[i].ms);
        CHECK_INT_EQ(ms_config_set(&cfg, "thread_keep_alive", cases[i].text, &err), 0);
        CHECK_INT_EQ(cfg.thread_keep_alive_ms, cases[i].ms);
    }
}

TEST(set_takes_milliseconds_by_the_struct_name) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_set(&cfg, "shutdown_timeout_ms", "250", &err), 0);
    CHECK_INT_EQ(cfg.shutdown_timeout_ms, 250);
    CHECK_INT_EQ(ms_config_set(&cfg, "thread_keep_alive_ms", "1500", &err), 0);
    CHECK_INT_EQ(cfg.thread_keep_alive_ms, 1500);
    /* a unit belongs to the name without _ms */
    CHECK(set_fails(&cfg, "shutdown_timeout_ms", "5s", &err));
    CHECK_STR_CONTAINS(err.message, "shutdown_timeout_ms: \"5s\" is not a whole number");
}

TEST(set_rejects_malformed_durations) {
    static const char *const bad[] = {"", "s", "ms", "1.", ".5s", "5h", "5 s", "5S", "1e3ms",
                                      "soon", "1,5s", "2mm"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        CHECK(set_fails(&cfg, "shutdown_timeout", bad[i], &err));
        CHECK_STR_CONTAINS(err.message, "shutdown_timeout: \"");
    }
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "shutdown_timeout", "5h", &err));
    CHECK_STR_CONTAINS(err.message, "unknown unit (use ms, s or m)");
    CHECK(set_fails(&cfg, "shutdown_timeout", "soon", &err));
    CHECK_STR_CONTAINS(err.message, "is not a duration");
}

TEST(set_rejects_durations_finer_than_a_millisecond) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "shutdown_timeout", "0.5ms", &err));
    CHECK_STR_CONTAINS(err.message, "\"0.5ms\" is not a whole number of milliseconds");
    CHECK(set_fails(&cfg, "shutdown_timeout", "0.0001s", &err));
    CHECK(set_fails(&cfg, "shutdown_timeout", "1.0000000001s", &err));
}

TEST(set_rejects_durations_longer_than_a_week) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "shutdown_timeout", "10081m", &err));
    CHECK_STR_CONTAINS(err.message, "shutdown_timeout: \"10081m\" is out of range (allowed 0s..604800s)");
    CHECK(set_fails(&cfg, "thread_keep_alive", "99999999999999999999999m", &err));
    CHECK_STR_CONTAINS(err.message, "is out of range");
}

TEST(set_parses_sizes_with_suffixes) {
    static const struct { const char *text; size_t bytes; } cases[] = {
        {"2M", (size_t)2 << 20},   {"512K", (size_t)512 << 10}, {"1G", (size_t)1 << 30},
        {"65536", 65536},          {"4m", (size_t)4 << 20},     {"1MiB", (size_t)1 << 20},
        {"256KB", (size_t)256 << 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        CHECK_INT_EQ(ms_config_set(&cfg, "thread_stack_size", cases[i].text, &err), 0);
        CHECK_INT_EQ(cfg.thread_stack_size, cases[i].bytes);
    }
}

TEST(set_rejects_malformed_or_out_of_range_sizes) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "thread_stack_size", "2X", &err));
    CHECK_STR_CONTAINS(err.message, "thread_stack_size: \"2X\" is not a size");
    CHECK(set_fails(&cfg, "thread_stack_size", "1.5M", &err));
    CHECK(set_fails(&cfg, "thread_stack_size", "M", &err));
    CHECK(set_fails(&cfg, "thread_stack_size", "2B", &err));
    CHECK(set_fails(&cfg, "thread_stack_size", "1K", &err));
    CHECK_STR_CONTAINS(err.message, "thread_stack_size: \"1K\" is out of range");
    CHECK(set_fails(&cfg, "thread_stack_size", "2G", &err));
    CHECK(set_fails(&cfg, "thread_stack_size", "99999999999999999999G", &err));
}

TEST(set_parses_booleans_in_all_spellings) {
    static const char *const yes[] = {"true", "1", "on", "yes", "TRUE", "On"};
    static const char *const no[] = {"false", "0", "off", "no", "False", "NO"};
    ms_config cfg = defaults();
    ms_error err;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        cfg.enable_io = true;
        CHECK_INT_EQ(ms_config_set(&cfg, "enable_io", no[i], &err), 0);
        CHECK(!cfg.enable_io);
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        cfg.enable_io = false;
        CHECK_INT_EQ(ms_config_set(&cfg, "enable_io", yes[i], &err), 0);
        CHECK(cfg.enable_io);
    }
    CHECK(set_fails(&cfg, "enable_all", "maybe", &err));
    CHECK_STR_CONTAINS(err.message, "enable_all: \"maybe\" is not a boolean");
    CHECK(set_fails(&cfg, "enable_all", "", &err));
    CHECK(set_fails(&cfg, "enable_all", "2", &err));
}

TEST(set_rejects_trailing_garbage_and_keeps_config) {
    static const char *const bad[] = {"4x", "4 ", " 4", "", "1.5", "0x10", "+4", "4\n", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        CHECK(set_fails(&cfg, "worker_threads", bad[i], &err));
        CHECK_STR_CONTAINS(err.message, "worker_threads: \"");
        CHECK_STR_CONTAINS(err.message, "is not a whole number");
    }
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "worker_threads", "abc", &err));
    CHECK_STR_EQ(err.message, "worker_threads: \"abc\" is not a whole number");
}

TEST(set_rejects_negative_numbers) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "worker_threads", "-1", &err));
    CHECK_STR_CONTAINS(err.message, "worker_threads: \"-1\" is negative");
    CHECK(set_fails(&cfg, "shutdown_timeout", "-5s", &err));
    CHECK_STR_CONTAINS(err.message, "is negative");
    CHECK(set_fails(&cfg, "thread_stack_size", "-2M", &err));
    CHECK_STR_CONTAINS(err.message, "is negative");
}

TEST(set_rejects_values_outside_the_field_range) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "worker_threads", "0", &err));
    CHECK_STR_EQ(err.message, "worker_threads: \"0\" is out of range (allowed 1..1024)");
    CHECK(set_fails(&cfg, "worker_threads", "4294967296", &err));
    CHECK_STR_CONTAINS(err.message, "is out of range");
    CHECK(set_fails(&cfg, "budget", "184467440737095516160", &err));
    CHECK_STR_CONTAINS(err.message, "is out of range");
}

TEST(set_does_not_check_rules_between_fields) {
    /* turning off time is legitimate on the way to enable_all = false */
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_set(&cfg, "enable_time", "false", &err), 0);
    CHECK(rejected(&cfg, &err));
    CHECK_INT_EQ(ms_config_set(&cfg, "enable_all", "false", &err), 0);
    CHECK_INT_EQ(ms_config_validate(&cfg, &err), 0);
}

TEST(unknown_key_suggests_nearest_field) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "wokrer_threads", "4", &err));
    CHECK_STR_EQ(err.message,
                 "unknown configuration field \"wokrer_threads\" (did you mean \"worker_threads\"?)");
    CHECK(set_fails(&cfg, "shutdown_timout", "5s", &err));
    CHECK_STR_CONTAINS(err.message, "(did you mean \"shutdown_timeout\"?)");
    CHECK(set_fails(&cfg, "Budget", "5", &err));
    CHECK_STR_CONTAINS(err.message, "(did you mean \"budget\"?)");
    CHECK(set_fails(&cfg, "worker-threads", "4", &err));
    CHECK_STR_CONTAINS(err.message, "(did you mean \"worker_threads\"?)");
    /* two edits away still gets a suggestion, three does not */
    CHECK(set_fails(&cfg, "workr_thread", "4", &err));
    CHECK_STR_CONTAINS(err.message, "(did you mean \"worker_threads\"?)");
    CHECK(set_fails(&cfg, "wrkr_thread", "4", &err));
    CHECK_STR_EQ(err.message, "unknown configuration field \"wrkr_thread\"");
}

TEST(unknown_key_far_from_every_field_has_no_suggestion) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, "colour", "blue", &err));
    CHECK_STR_EQ(err.message, "unknown configuration field \"colour\"");
    CHECK(set_fails(&cfg, "", "1", &err));
    CHECK_STR_EQ(err.message, "unknown configuration field \"\"");
}

TEST(a_very_long_unknown_key_is_clipped_in_the_message) {
    char key[200];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    ms_config cfg = defaults();
    ms_error err;
    CHECK(set_fails(&cfg, key, "1", &err));
    CHECK_STR_CONTAINS(err.message, "unknown configuration field \"kkkk");
    CHECK_STR_CONTAINS(err.message, "...\"");
}

TEST(thread_name_and_hooks_cannot_be_set_from_text) {
    static const char *const keys[] = {"thread_name", "on_thread_start", "on_thread_stop",
                                       "hook_ud"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        ms_config cfg = defaults();
        ms_error err;
        CHECK(set_fails(&cfg, keys[i], "app", &err));
        CHECK_STR_CONTAINS(err.message, keys[i]);
        CHECK_STR_CONTAINS(err.message, "cannot be set from text");
    }
}

TEST(set_handles_null_arguments_without_crashing) {
    ms_config cfg = defaults();
    ms_error err;
    CHECK_INT_EQ(ms_config_set(NULL, "budget", "1", &err), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_config_set(&cfg, NULL, "1", &err), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_config_set(&cfg, "budget", NULL, NULL), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_config_set(&cfg, "budget", "x", NULL), MS_E_CONFIG_INVALID);
    CHECK_INT_EQ(ms_config_set(&cfg, "budget", "9", NULL), 0);
    CHECK_INT_EQ(cfg.budget, 9);
}

/* ------------------------------------------------------------------------
 * Describing
 * ---------------------------------------------------------------------- */

TEST(describe_lists_every_field_one_per_line) {
    ms_config cfg = defaults();
    cfg.worker_threads = 3;
    cfg.thread_keep_alive_ms = 1500;
    char buf[1024];
    int n = ms_config_describe(&cfg, buf, sizeof buf);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    CHECK_INT_EQ(strlen(buf), n);
    CHECK_STR_EQ(buf, "worker_threads = 3\n"
                      "max_worker_threads = 0\n"
                      "max_blocking_threads = 512\n"
                      "thread_keep_alive = 1500ms\n"
                      "thread_stack_size = 2097152\n"
                      "enable_all = true\n"
                      "enable_time = true\n"
                      "enable_io = true\n"
                      "global_queue_interval = 61\n"
                      "event_interval = 61\n"
                      "budget = 128\n"
                      "shutdown_timeout = 30s\n"
                      "stall_threshold = 2s\n"
                      "replace_stalled_workers = true\n"
                      "metrics_histograms = false\n"
                      "thread_name = \"ms\"\n"
                      "on_thread_start = none\n"
                      "on_thread_stop = none\n"
                      "hook_ud = none\n"
                      "on_stall = none\n"
                      "on_starved = none\n"
                      "stall_ud = none\n");
}

static void hook(void *ud, const char *name) { (void)ud; (void)name; }

TEST(describe_writes_durations_in_seconds_and_shows_hooks) {
    ms_config cfg = defaults();
    cfg.on_thread_start = hook;
    char buf[1024];
    ms_config_describe(&cfg, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "thread_keep_alive = 60s\n");
    CHECK_STR_CONTAINS(buf, "on_thread_start = set\n");
    CHECK_STR_CONTAINS(buf, "on_thread_stop = none\n");
}

TEST(describe_reports_the_needed_length_like_snprintf) {
    ms_config cfg = defaults();
    char full[1024];
    int n = ms_config_describe(&cfg, full, sizeof full);
    CHECK_INT_EQ(ms_config_describe(&cfg, NULL, 0), n);

    char small[20];
    memset(small, '#', sizeof small);
    CHECK_INT_EQ(ms_config_describe(&cfg, small, sizeof small), n);
    CHECK_INT_EQ(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, full, sizeof small - 1) == 0);

    char one[1] = {'#'};
    CHECK_INT_EQ(ms_config_describe(&cfg, one, sizeof one), n);
    CHECK_INT_EQ(one[0], '\0');
}

TEST(describe_output_sets_back_to_the_same_config) {
    ms_config cfg = defaults();
    cfg.worker_threads = 5;
    cfg.thread_keep_alive_ms = 2500;
    cfg.shutdown_timeout_ms = 120000;
    cfg.thread_stack_size = 1 << 20;
    cfg.enable_all = false;
    cfg.enable_io = false;
    cfg.budget = 64;
    char buf[1024];
    ms_config_describe(&cfg, buf, sizeof buf);

    ms_config copy = defaults();
    ms_error err;
    for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *eq = strstr(line, " = ");
        CHECK(eq != NULL);
        *eq = '\0';
        if (strcmp(line, "thread_name") == 0 || strcmp(line, "on_thread_start") == 0 ||
            strcmp(line, "on_thread_stop") == 0 || strcmp(line, "hook_ud") == 0 ||
            strcmp(line, "on_stall") == 0 || strcmp(line, "on_starved") == 0 ||
            strcmp(line, "stall_ud") == 0)
            continue;
        CHECK_INT_EQ(ms_config_set(&copy, line, eq + 3, &err), 0);
    }
    CHECK(same_config(&copy, &cfg));
}

TEST(describe_handles_null_config_without_crashing) {
    char buf[8] = "junk";
    CHECK(ms_config_describe(NULL, buf, sizeof buf) < 0);
    CHECK_STR_EQ(buf, "");
}

/* ------------------------------------------------------------------------
 * The table of fields
 * ---------------------------------------------------------------------- */

TEST(every_field_is_described_once_in_struct_order) {
    size_t n = ms_config_field_count();
    CHECK_INT_EQ(n, 22);
    ms_config_field_desc d, e;
    for (size_t i = 0; i < n; i++) {
        CHECK_INT_EQ(ms_config_field_at(i, &d), 0);
        CHECK(d.name != NULL && d.help != NULL);
        CHECK(strchr(d.help, '\n') == NULL);
        CHECK(strcmp(ms_config_field(d.name), d.name) == 0);
        CHECK((d.alias != NULL) == (d.kind == MS_CONFIG_DURATION));
        if (d.alias)
            CHECK(strcmp(ms_config_field(d.alias), d.name) == 0);
        CHECK_INT_EQ(ms_config_field_find(d.alias ? d.alias : d.name, &e), 0);
        CHECK_STR_EQ(e.name, d.name);
        for (size_t j = 0; j < i; j++) {
            CHECK_INT_EQ(ms_config_field_at(j, &e), 0);
            CHECK(strcmp(e.name, d.name) != 0);
        }
    }
    CHECK_INT_EQ(ms_config_field_at(n, &d), MS_E_INVALID_ARGUMENT);
    CHECK_INT_EQ(ms_config_field_find("no_such_field", &d), MS_E_CONFIG_INVALID);
    CHECK_INT_EQ(ms_config_field_find(NULL, &d), MS_E_CONFIG_INVALID);
    CHECK_INT_EQ(ms_config_field_at(0, &d), 0);
    CHECK_STR_EQ(d.name, "worker_threads");
    CHECK_INT_EQ(ms_config_field_at(n - 1, &d), 0);
    CHECK_STR_EQ(d.name, "stall_ud");
}

TEST(the_described_defaults_are_ms_config_default) {
    ms_config cfg = defaults();
    ms_config_field_desc d;
    for (size_t i = 0; ms_config_field_at(i, &d) == 0; i++) {
        uint64_t v = 0;
        switch (d.kind) {
        case MS_CONFIG_NAME:
            CHECK_INT_EQ(ms_config_get(&cfg, d.name, &v), MS_E_CONFIG_INVALID);
            CHECK_STR_EQ(d.default_text, cfg.thread_name);
            break;
        case MS_CONFIG_HOOK:
            CHECK_INT_EQ(ms_config_get(&cfg, d.name, &v), MS_E_CONFIG_INVALID);
            break;
        default:
            CHECK_INT_EQ(ms_config_get(&cfg, d.name, &v), 0);
            CHECK_INT_EQ(v, d.default_value);
            CHECK(d.default_text == NULL);
            break;
        }
    }
    CHECK_INT_EQ(ms_config_field_find("thread_keep_alive", &d), 0);
    CHECK_INT_EQ(d.default_value, 60000);
    CHECK_INT_EQ(ms_config_field_find("thread_stack_size", &d), 0);
    CHECK_INT_EQ(d.min, STACK_MIN);
}

TEST(the_described_ranges_are_the_ones_set_and_validate_enforce) {
    ms_config_field_desc d;
    ms_error err;
    char text[32];
    for (size_t i = 0; ms_config_field_at(i, &d) == 0; i++) {
        if (d.kind != MS_CONFIG_COUNT && d.kind != MS_CONFIG_DURATION &&
            d.kind != MS_CONFIG_SIZE)
            continue;
        ms_config cfg = defaults();
        if (strcmp(d.name, "worker_threads") == 0)
            cfg.max_worker_threads = 0; /* the ceiling rule is not this test's */
        uint64_t v;
        snprintf(text, sizeof text, "%llu", (unsigned long long)d.min);
        CHECK_INT_EQ(ms_config_set(&cfg, d.name, text, &err), 0);
        CHECK_INT_EQ(ms_config_get(&cfg, d.name, &v), 0);
        CHECK_INT_EQ(v, d.min);
        snprintf(text, sizeof text, "%llu", (unsigned long long)d.max);
        CHECK_INT_EQ(ms_config_set(&cfg, d.name, text, &err), 0);
        CHECK_INT_EQ(ms_config_get(&cfg, d.name, &v), 0);
        CHECK_INT_EQ(v, d.max);
        snprintf(text, sizeof text, "%llu", (unsigned long long)d.max + 1);
        CHECK(set_fails(&cfg, d.name, text, &err));
        if (d.min > 0) {
            snprintf(text, sizeof text, "%llu", (unsigned long long)d.min - 1);
            CHECK(set_fails(&cfg, d.name, text, &err));
        }
    }
}

TEST(the_live_fields_are_the_described_ones) {
    static const char *const live[] = {"worker_threads", "max_blocking_threads",
                                       "thread_keep_alive_ms", "global_queue_interval",
                                       "budget"};
    ms_config_field_desc d;
    size_t nlive = 0;
    for (size_t i = 0; ms_config_field_at(i, &d) == 0; i++) {
        CHECK(ms_config_is_live(d.name) == d.live);
        if (d.alias)
            CHECK(ms_config_is_live(d.alias) == d.live);
        if (!d.live)
            continue;
        CHECK(nlive < sizeof live / sizeof live[0]);
        CHECK_STR_EQ(d.name, live[nlive]);
        nlive++;
    }
    CHECK_INT_EQ(nlive, sizeof live / sizeof live[0]);
    CHECK(!ms_config_is_live(NULL));
    CHECK(!ms_config_is_live("bogus"));
}

/* ms_config_field: the struct member a key names, by either name. */
TEST(config_field_maps_both_names_to_the_struct_member) {
    CHECK_STR_EQ(ms_config_field("worker_threads"), "worker_threads");
    CHECK_STR_EQ(ms_config_field("thread_keep_alive"), "thread_keep_alive_ms");
    CHECK_STR_EQ(ms_config_field("thread_keep_alive_ms"), "thread_keep_alive_ms");
    CHECK_STR_EQ(ms_config_field("stall_threshold"), "stall_threshold_ms");
    CHECK_STR_EQ(ms_config_field("shutdown_timeout"), "shutdown_timeout_ms");
    CHECK_STR_EQ(ms_config_field("budget"), "budget");
    /* fields that cannot be set from text still have a name */
    CHECK_STR_EQ(ms_config_field("thread_name"), "thread_name");
    /* unknown keys, near misses, odd input: NULL, never a guess */
    CHECK(ms_config_field("worker_thread") == NULL);
    CHECK(ms_config_field("WORKER_THREADS") == NULL);
    CHECK(ms_config_field("") == NULL);
    CHECK(ms_config_field(NULL) == NULL);
    CHECK(ms_config_field("budget ") == NULL);
    /* every key ms_config_set accepts has a field, and the field is a key
     * ms_config_set accepts too */
    static const char *keys[] = {"worker_threads", "max_worker_threads", "max_blocking_threads",
                                 "thread_keep_alive", "thread_stack_size", "enable_all",
                                 "enable_time", "enable_io", "global_queue_interval",
                                 "event_interval", "budget",
                                 "shutdown_timeout", "stall_threshold",
                                 "replace_stalled_workers", "metrics_histograms"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *f = ms_config_field(keys[i]);
        CHECK(f != NULL);
        CHECK_STR_EQ(ms_config_field(f), f);
    }
}

TEST_MAIN()
