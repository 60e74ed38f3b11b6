/*
 * config.c - runtime configuration: defaults, validation, setting a field
 * from text, and describing a configuration.
 *
 * The fields of ms_config are described once, in config_fields below: name,
 * kind, where the field lives, its allowed range, its default, whether it
 * is live (ms_runtime_tune) and a line of help.  Defaults, validation,
 * parsing by name and describing all walk that table, and so do the hosts,
 * through ms_config_field_at (ms-host's profiles and ms.tune take their
 * fields from it), so a field added to the struct needs one row here and
 * nothing else (plus, if live, its owner's code in tune.c).  Durations
 * have two names: the struct member ("shutdown_timeout_ms", a whole number
 * of milliseconds) and the user-facing alias without the suffix
 * ("shutdown_timeout", a number with a unit, seconds when bare), which is
 * also what ms_config_describe prints, so its output can be fed back
 * through ms_config_set.
 *
 * ms_config_set checks the value it is given - that it parses and lies in
 * that field's own range - but not the configuration as a whole: rules
 * between fields (enable_all against enable_time/enable_io) are for
 * ms_config_validate, once every field is set, since a sequence of sets may
 * pass through contradictory states on its way to a valid one.
 *
 * Nothing here allocates; error messages quote user text clipped to a few
 * dozen characters so that the explanation after it is never cut off.
 */
#include "ms.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CFG_NAME_MAX 8 /* "<name>-b65535" must fit Linux's 15 characters */

/* PTHREAD_STACK_MIN may be a sysconf() call (glibc >= 2.34 with
 * _GNU_SOURCE), so it is read at run time rather than put in the table. */
static uint64_t cfg_stack_min(void) {
#ifdef PTHREAD_STACK_MIN
    long min = (long)PTHREAD_STACK_MIN;
    return min > 0 ? (uint64_t)min : 16384;
#else
    return 16384;
#endif
}

struct field {
    const char *name;  /* the struct member */
    const char *alias; /* MS_CONFIG_DURATION: the name that takes a unit; else NULL */
    ms_config_kind kind;
    size_t offset;
    uint64_t min, max; /* inclusive; MS_CONFIG_SIZE's min is cfg_stack_min() */
    uint64_t def;      /* the default; DEFAULT_CPUS: the CPUs online */
    bool live;         /* ms_runtime_tune changes it (tune.c applies it) */
    const char *zero;  /* what 0 means, when it means something special */
    const char *help;
};

#define DEFAULT_CPUS UINT64_MAX
#define DEFAULT_THREAD_NAME "ms"
#define DEFAULT_STACK_SIZE ((size_t)2 << 20)

#define FIELD(member, alias, kind, min, max, def, live, zero, help) \
    {#member, alias, kind, offsetof(ms_config, member), min, max, def, live, zero, help}
#define HOOK(member, help) FIELD(member, NULL, MS_CONFIG_HOOK, 0, 0, 0, false, NULL, help)

/* Every field of ms_config, in struct order, which is also the order of
 * validation and description.  The one place where a field's range,
 * default and liveness are written. */
static const struct field config_fields[] = {
    FIELD(worker_threads, NULL, MS_CONFIG_COUNT, 1, MS_MAX_WORKERS, DEFAULT_CPUS, true, NULL,
          "worker threads"),
    FIELD(max_worker_threads, NULL, MS_CONFIG_COUNT, 0, MS_MAX_WORKERS, 0, false,
          "auto: max(worker_threads, 4 per CPU)",
          "ceiling for live resizing and stand-ins for stuck workers"),
    FIELD(max_blocking_threads, NULL, MS_CONFIG_COUNT, 1, MS_MAX_BLOCKING_THREADS, 512, true,
          NULL, "most threads the blocking pool may run at once"),
    FIELD(thread_keep_alive_ms, "thread_keep_alive", MS_CONFIG_DURATION, 0, MS_MAX_DURATION_MS,
          60000, true, NULL, "how long an idle blocking thread waits for work before it exits"),
    FIELD(thread_stack_size, NULL, MS_CONFIG_SIZE, 0, MS_MAX_STACK_SIZE, DEFAULT_STACK_SIZE,
          false, NULL, "stack of every runtime thread (at least PTHREAD_STACK_MIN)"),
    FIELD(enable_all, NULL, MS_CONFIG_BOOL, 0, 1, true, false, NULL,
          "enable every driver; true requires enable_time and enable_io"),
    FIELD(enable_time, NULL, MS_CONFIG_BOOL, 0, 1, true, false, NULL,
          "enable timers (sleep, timeout, interval)"),
    FIELD(enable_io, NULL, MS_CONFIG_BOOL, 0, 1, true, false, NULL,
          "enable the I/O driver (sockets, files, signals)"),
    FIELD(global_queue_interval, NULL, MS_CONFIG_COUNT, 1, MS_MAX_INTERVAL, 61, true, NULL,
          "worker ticks between looks at the shared injection queue"),
    FIELD(event_interval, NULL, MS_CONFIG_COUNT, 1, MS_MAX_INTERVAL, 61, false, NULL,
          "worker ticks between driver and maintenance checks"),
    FIELD(budget, NULL, MS_CONFIG_COUNT, 1, MS_MAX_BUDGET, 128, true, NULL,
          "cooperative operations a task may do per poll before it must yield"),
    FIELD(shutdown_timeout_ms, "shutdown_timeout", MS_CONFIG_DURATION, 0, MS_MAX_DURATION_MS,
          30000, false, NULL,
          "how long a graceful shutdown waits for tasks before cancelling them"),
    FIELD(stall_threshold_ms, "stall_threshold", MS_CONFIG_DURATION, 0, MS_MAX_DURATION_MS,
          2000, false, "off",
          "a worker stuck in one poll this long is reported (health monitor); 0 = off"),
    FIELD(replace_stalled_workers, NULL, MS_CONFIG_BOOL, 0, 1, true, false, NULL,
          "bring in a stand-in worker (up to max_worker_threads) while one is stalled"),
    FIELD(metrics_histograms, NULL, MS_CONFIG_BOOL, 0, 1, false, false, NULL,
          "record per-worker histograms of poll duration and scheduling delay "
          "(two clock reads per poll)"),
    FIELD(thread_name, NULL, MS_CONFIG_NAME, 1, CFG_NAME_MAX, 0, false, NULL,
          "prefix of the runtime's thread names: 1..8 characters of [A-Za-z0-9_.-]"),
    HOOK(on_thread_start, "called on every runtime thread right after it starts"),
    HOOK(on_thread_stop, "called on every runtime thread right before it exits"),
    HOOK(hook_ud, "the user pointer passed to on_thread_start and on_thread_stop"),
    HOOK(on_stall, "called on the health monitor's thread when a worker stalls and recovers"),
    HOOK(on_starved, "called on the health monitor's thread while every worker is stalled and "
                     "tasks wait, for each stalled worker"),
    HOOK(stall_ud, "the user pointer passed to on_stall and on_starved"),
};

#define CONFIG_FIELD_COUNT (sizeof config_fields / sizeof config_fields[0])

static uint64_t field_min(const struct field *f) {
    return f->kind == MS_CONFIG_SIZE ? cfg_stack_min() : f->min;
}

/* Numeric value of a MS_CONFIG_COUNT, MS_CONFIG_DURATION, MS_CONFIG_SIZE or MS_CONFIG_BOOL field. */
static uint64_t field_get(const ms_config *cfg, const struct field *f) {
    const char *p = (const char *)cfg + f->offset;
    switch (f->kind) {
    case MS_CONFIG_COUNT: { uint32_t v; memcpy(&v, p, sizeof v); return v; }
    case MS_CONFIG_DURATION: { uint64_t v; memcpy(&v, p, sizeof v); return v; }
    case MS_CONFIG_SIZE: { size_t v; memcpy(&v, p, sizeof v); return v; }
    case MS_CONFIG_BOOL: { bool v; memcpy(&v, p, sizeof v); return v; }
    default: return 0;
    }
}

/* v must already be within the field's range. */
static void field_put(ms_config *cfg, const struct field *f, uint64_t value) {
    char *p = (char *)cfg + f->offset;
    switch (f->kind) {
    case MS_CONFIG_COUNT: { uint32_t v = (uint32_t)value; memcpy(p, &v, sizeof v); break; }
    case MS_CONFIG_DURATION: { uint64_t v = value; memcpy(p, &v, sizeof v); break; }
    case MS_CONFIG_SIZE: { size_t v = (size_t)value; memcpy(p, &v, sizeof v); break; }
    case MS_CONFIG_BOOL: { bool v = value != 0; memcpy(p, &v, sizeof v); break; }
    default: break;
    }
}

static bool hook_is_set(const ms_config *cfg, const struct field *f) {
    if (f->offset == offsetof(ms_config, on_thread_start))
        return cfg->on_thread_start != NULL;
    if (f->offset == offsetof(ms_config, on_thread_stop))
        return cfg->on_thread_stop != NULL;
    if (f->offset == offsetof(ms_config, on_stall))
        return cfg->on_stall != NULL;
    if (f->offset == offsetof(ms_config, stall_ud))
        return cfg->stall_ud != NULL;
    return cfg->hook_ud != NULL;
}

/* Quoting user text in messages: at most CLIP characters, then "...". */
#define CLIP 40
#define QUOTED "\"%.*s%s\""
#define QUOTE(s) CLIP, (s), strlen(s) > CLIP ? "..." : ""

/* ------------------------------------------------------------------------
 * Defaults and validation
 * ---------------------------------------------------------------------- */

static uint32_t online_cpus(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (cpus > MS_MAX_WORKERS)
        cpus = MS_MAX_WORKERS;
    return (uint32_t)cpus;
}

static uint64_t field_default(const struct field *f) {
    return f->def == DEFAULT_CPUS ? online_cpus() : f->def;
}

void ms_config_default(ms_config *cfg) {
    if (cfg == NULL)
        return;
    /* Field by field after a memset, so that padding is zero too and two
     * default configs compare equal byte for byte.  Hooks stay NULL. */
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < CONFIG_FIELD_COUNT; i++) {
        const struct field *f = &config_fields[i];
        if (f->kind == MS_CONFIG_NAME)
            cfg->thread_name = DEFAULT_THREAD_NAME;
        else if (f->kind != MS_CONFIG_HOOK)
            field_put(cfg, f, field_default(f));
    }
}

uint32_t ms_config_max_workers(const ms_config *cfg) {
    if (cfg->max_worker_threads != 0)
        return cfg->max_worker_threads;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t auto_max = 4 * (uint64_t)(cpus < 1 ? 1 : cpus);
    if (auto_max > MS_MAX_WORKERS)
        auto_max = MS_MAX_WORKERS;
    return cfg->worker_threads > auto_max ? cfg->worker_threads : (uint32_t)auto_max;
}

static bool name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static bool thread_name_ok(const char *name) {
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    if (n < 1 || n > CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok(name[i]))
            return false;
    return true;
}

#define NAME_RULE \
    "1..8 characters of [A-Za-z0-9_.-]; \"-w<N>\" or \"-b<N>\" is appended " \
    "and Linux keeps 15"

int ms_config_validate(const ms_config *cfg, ms_error *err) {
    if (cfg == NULL)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "ms_config_validate: config is NULL");

    for (size_t i = 0; i < CONFIG_FIELD_COUNT; i++) {
        const struct field *f = &config_fields[i];
        switch (f->kind) {
        case MS_CONFIG_COUNT:
        case MS_CONFIG_DURATION:
        case MS_CONFIG_SIZE: {
            uint64_t v = field_get(cfg, f), lo = field_min(f);
            if (v < lo || v > f->max)
                return ms_error_set(err, MS_E_CONFIG_INVALID,
                                    "%s = %" PRIu64 " is out of range (allowed %" PRIu64
                                    "..%" PRIu64 "%s)",
                                    f->name, v, lo, f->max,
                                    f->kind == MS_CONFIG_SIZE ? " bytes"
                                    : f->kind == MS_CONFIG_DURATION ? " ms" : "");
            break;
        }
        case MS_CONFIG_NAME:
            if (cfg->thread_name == NULL)
                return ms_error_set(err, MS_E_CONFIG_INVALID,
                                    "thread_name = NULL is invalid (allowed " NAME_RULE ")");
            if (!thread_name_ok(cfg->thread_name))
                return ms_error_set(err, MS_E_CONFIG_INVALID,
                                    "thread_name = " QUOTED " is invalid (allowed " NAME_RULE ")",
                                    QUOTE(cfg->thread_name));
            break;
        case MS_CONFIG_BOOL:
        case MS_CONFIG_HOOK:
            break;
        }
    }

    if (cfg->max_worker_threads != 0 && cfg->max_worker_threads < cfg->worker_threads)
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "max_worker_threads = %u is below worker_threads = %u (the "
                            "ceiling for resizing must allow the starting count; 0 = auto)",
                            cfg->max_worker_threads, cfg->worker_threads);
    if (cfg->enable_all && (!cfg->enable_time || !cfg->enable_io)) {
        const char *off = !cfg->enable_time ? "enable_time" : "enable_io";
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "enable_all = true contradicts %s = false (enable_all implies "
                            "enable_time and enable_io; set enable_all = false to turn "
                            "one of them off)",
                            off);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Parsing values
 *
 * Each parser accepts exactly its syntax - no sign, no spaces, nothing
 * after the number or unit - and reports what was wrong as a status that
 * ms_config_set turns into a sentence.  Values that overflow 64 bits
 * saturate to UINT64_MAX, which every range check rejects.
 * ---------------------------------------------------------------------- */

enum parse_status {
    PARSE_OK,
    PARSE_NOT_NUMBER, /* not a whole decimal number */
    PARSE_NEGATIVE,
    PARSE_BAD_DURATION,
    PARSE_BAD_UNIT,
    PARSE_NOT_WHOLE_MS,
    PARSE_BAD_SIZE,
    PARSE_BAD_BOOL
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Reads the digits at *s (there must be at least one) and advances past
 * them. */
static bool read_digits(const char **s, uint64_t *out) {
    const char *p = *s;
    uint64_t v = 0;
    if (!is_digit(*p))
        return false;
    for (; is_digit(*p); p++)
        v = sat_add(sat_mul(v, 10), (uint64_t)(*p - '0'));
    *s = p;
    *out = v;
    return true;
}

static enum parse_status parse_whole(const char *s, uint64_t *out) {
    if (*s == '-' && is_digit(s[1]))
        return PARSE_NEGATIVE;
    if (!read_digits(&s, out) || *s != '\0')
        return PARSE_NOT_NUMBER;
    return PARSE_OK;
}

/* "250ms", "1.5s", "2m"; a bare number is seconds. */
static enum parse_status parse_duration(const char *s, uint64_t *out_ms) {
    uint64_t whole, unit_ms;
    if (*s == '-' && is_digit(s[1]))
        return PARSE_NEGATIVE;
    if (!read_digits(&s, &whole))
        return PARSE_BAD_DURATION;

    /* Up to nine significant fractional digits, trailing zeros dropped. */
    uint64_t frac = 0, scale = 1;
    if (*s == '.') {
        s++;
        const char *digits = s;
        while (is_digit(*s))
            s++;
        if (s == digits)
            return PARSE_BAD_DURATION;
        const char *end = s;
        while (end > digits && end[-1] == '0')
            end--;
        if (end - digits > 9)
            return PARSE_NOT_WHOLE_MS;
        for (const char *d = digits; d < end; d++) {
            frac = frac * 10 + (uint64_t)(*d - '0');
            scale *= 10;
        }
    }

    if (strcmp(s, "ms") == 0)
        unit_ms = 1;
    else if (strcmp(s, "s") == 0 || *s == '\0')
        unit_ms = 1000;
    else if (strcmp(s, "m") == 0)
        unit_ms = 60000;
    else
        return PARSE_BAD_UNIT;

    /* frac < 1e9 and unit_ms <= 6e4, so the product fits. */
    if (frac * unit_ms % scale != 0)
        return PARSE_NOT_WHOLE_MS;
    *out_ms = sat_add(sat_mul(whole, unit_ms), frac * unit_ms / scale);
    return PARSE_OK;
}

/* Bytes, or a number with K, M or G (powers of 1024), optionally followed
 * by "B" or "iB": "512K", "2M", "2MiB", "1G". */
static enum parse_status parse_size(const char *s, uint64_t *out) {
    uint64_t v, mul = 1;
    if (*s == '-' && is_digit(s[1]))
        return PARSE_NEGATIVE;
    if (!read_digits(&s, &v))
        return PARSE_BAD_SIZE;
    switch (*s) {
    case 'k': case 'K': mul = (uint64_t)1 << 10; s++; break;
    case 'm': case 'M': mul = (uint64_t)1 << 20; s++; break;
    case 'g': case 'G': mul = (uint64_t)1 << 30; s++; break;
    default: break;
    }
    if (mul != 1 && (strcmp(s, "B") == 0 || strcmp(s, "iB") == 0))
        s += strlen(s);
    if (*s != '\0')
        return PARSE_BAD_SIZE;
    *out = sat_mul(v, mul);
    return PARSE_OK;
}

static enum parse_status parse_bool(const char *s, uint64_t *out) {
    static const char *const yes[] = {"true", "1", "on", "yes"};
    static const char *const no[] = {"false", "0", "off", "no"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return PARSE_OK; }
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return PARSE_OK; }
    }
    return PARSE_BAD_BOOL;
}

/* ------------------------------------------------------------------------
 * Setting a field by name
 * ---------------------------------------------------------------------- */

/* Writes a duration the way the aliases read it: whole seconds as "Ns",
 * anything else as "Nms". */
static void format_duration(uint64_t ms, char *buf, size_t size) {
    if (ms % 1000 == 0)
        snprintf(buf, size, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, size, "%" PRIu64 "ms", ms);
}

/* The allowed range of f as text, in the units of the name it was set by. */
static void format_range(const struct field *f, bool by_alias, char *buf, size_t size) {
    if (f->kind == MS_CONFIG_DURATION && by_alias) {
        char lo[32], hi[32];
        format_duration(f->min, lo, sizeof lo);
        format_duration(f->max, hi, sizeof hi);
        snprintf(buf, size, "%s..%s", lo, hi);
    } else {
        snprintf(buf, size, "%" PRIu64 "..%" PRIu64 "%s", field_min(f), f->max,
                 f->kind == MS_CONFIG_SIZE ? " bytes" : f->kind == MS_CONFIG_DURATION ? " ms" : "");
    }
}

/* Optimal-string-alignment distance (Levenshtein plus adjacent
 * transpositions, so "wokrer" is one edit from "worker").  Only short
 * strings are compared; anything longer than KEY_MAX is "far". */
#define KEY_MAX 48
static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > KEY_MAX || m > KEY_MAX)
        return SIZE_MAX;
    size_t d[KEY_MAX + 1][KEY_MAX + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

static const struct field *field_find(const char *key, bool *by_alias) {
    for (size_t i = 0; i < CONFIG_FIELD_COUNT; i++) {
        const struct field *f = &config_fields[i];
        if (strcmp(key, f->name) == 0) {
            *by_alias = false;
            return f;
        }
        if (f->alias != NULL && strcmp(key, f->alias) == 0) {
            *by_alias = true;
            return f;
        }
    }
    return NULL;
}

const char *ms_config_field(const char *key) {
    bool by_alias;
    const struct field *f = key ? field_find(key, &by_alias) : NULL;
    return f ? f->name : NULL;
}

/* ------------------------------------------------------------------------
 * Describing the fields
 * ---------------------------------------------------------------------- */

size_t ms_config_field_count(void) {
    return CONFIG_FIELD_COUNT;
}

static void field_describe(const struct field *f, ms_config_field_desc *out) {
    *out = (ms_config_field_desc){
        .name = f->name,
        .alias = f->alias,
        .kind = f->kind,
        .min = field_min(f),
        .max = f->max,
        .default_value = f->kind == MS_CONFIG_NAME ? 0 : field_default(f),
        .default_text = f->kind == MS_CONFIG_NAME ? DEFAULT_THREAD_NAME : NULL,
        .live = f->live,
        .zero = f->zero,
        .help = f->help,
    };
}

int ms_config_field_at(size_t i, ms_config_field_desc *out) {
    if (i >= CONFIG_FIELD_COUNT || out == NULL)
        return MS_E_INVALID_ARGUMENT;
    field_describe(&config_fields[i], out);
    return 0;
}

int ms_config_field_find(const char *key, ms_config_field_desc *out) {
    bool by_alias;
    const struct field *f = key ? field_find(key, &by_alias) : NULL;
    if (f == NULL || out == NULL)
        return MS_E_CONFIG_INVALID;
    field_describe(f, out);
    return 0;
}

int ms_config_get(const ms_config *cfg, const char *key, uint64_t *value) {
    bool by_alias;
    const struct field *f = key ? field_find(key, &by_alias) : NULL;
    if (cfg == NULL || f == NULL || value == NULL || f->kind == MS_CONFIG_NAME ||
        f->kind == MS_CONFIG_HOOK)
        return MS_E_CONFIG_INVALID;
    *value = field_get(cfg, f);
    return 0;
}

bool ms_config_is_live(const char *key) {
    bool by_alias;
    const struct field *f = key ? field_find(key, &by_alias) : NULL;
    return f != NULL && f->live;
}

static int unknown_key(const char *key, ms_error *err) {
    const char *best = NULL;
    size_t best_d = 3; /* suggest only within two edits */
    for (size_t i = 0; i < CONFIG_FIELD_COUNT; i++) {
        const char *names[2] = {config_fields[i].name, config_fields[i].alias};
        for (size_t k = 0; k < 2; k++) {
            if (names[k] == NULL)
                continue;
            size_t d = edit_distance(key, names[k]);
            if (d < best_d) {
                best_d = d;
                best = names[k];
            }
        }
    }
    if (best != NULL)
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "unknown configuration field " QUOTED " (did you mean \"%s\"?)",
                            QUOTE(key), best);
    return ms_error_set(err, MS_E_CONFIG_INVALID, "unknown configuration field " QUOTED,
                        QUOTE(key));
}

static int parse_error(const char *key, const char *value, const struct field *f,
                       bool by_alias, enum parse_status st, ms_error *err) {
    char range[96];
    const char *why = "";
    format_range(f, by_alias, range, sizeof range);
    switch (st) {
    case PARSE_OK:
        return 0;
    case PARSE_NOT_NUMBER:
        why = "is not a whole number";
        break;
    case PARSE_NEGATIVE:
        return ms_error_set(err, MS_E_CONFIG_INVALID, "%s: " QUOTED " is negative (allowed %s)",
                            key, QUOTE(value), range);
    case PARSE_BAD_DURATION:
        why = "is not a duration (a number with ms, s or m, e.g. \"250ms\", \"1.5s\", "
              "\"2m\"; a bare number is seconds)";
        break;
    case PARSE_BAD_UNIT:
        why = "has an unknown unit (use ms, s or m)";
        break;
    case PARSE_NOT_WHOLE_MS:
        why = "is not a whole number of milliseconds";
        break;
    case PARSE_BAD_SIZE:
        why = "is not a size (bytes, or a number with K, M or G, e.g. \"512K\", \"2M\")";
        break;
    case PARSE_BAD_BOOL:
        why = "is not a boolean (use true/false, 1/0, on/off or yes/no)";
        break;
    }
    return ms_error_set(err, MS_E_CONFIG_INVALID, "%s: " QUOTED " %s", key, QUOTE(value), why);
}

int ms_config_set(ms_config *cfg, const char *key, const char *value, ms_error *err) {
    if (cfg == NULL || key == NULL || value == NULL)
        return ms_error_set(err, MS_E_INVALID_ARGUMENT, "ms_config_set: %s is NULL",
                            cfg == NULL ? "config" : key == NULL ? "key" : "value");

    bool by_alias = false;
    const struct field *f = field_find(key, &by_alias);
    if (f == NULL)
        return unknown_key(key, err);

    uint64_t v = 0;
    enum parse_status st = PARSE_OK;
    switch (f->kind) {
    case MS_CONFIG_COUNT:
        st = parse_whole(value, &v);
        break;
    case MS_CONFIG_DURATION:
        st = by_alias ? parse_duration(value, &v) : parse_whole(value, &v);
        break;
    case MS_CONFIG_SIZE:
        st = parse_size(value, &v);
        break;
    case MS_CONFIG_BOOL:
        st = parse_bool(value, &v);
        break;
    case MS_CONFIG_NAME:
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "%s cannot be set from text: it is a string the caller owns; "
                            "assign cfg->%s directly",
                            key, f->name);
    case MS_CONFIG_HOOK:
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "%s cannot be set from text: it is a pointer; assign cfg->%s "
                            "directly",
                            key, f->name);
    }
    if (st != PARSE_OK)
        return parse_error(key, value, f, by_alias, st, err);

    if (f->kind != MS_CONFIG_BOOL && (v < field_min(f) || v > f->max)) {
        char range[96];
        format_range(f, by_alias, range, sizeof range);
        return ms_error_set(err, MS_E_CONFIG_INVALID,
                            "%s: " QUOTED " is out of range (allowed %s)", key, QUOTE(value),
                            range);
    }

    /* Build the result apart so that cfg is untouched on any failure. */
    ms_config next = *cfg;
    field_put(&next, f, v);
    *cfg = next;
    return 0;
}

/* ------------------------------------------------------------------------
 * Describing
 * ---------------------------------------------------------------------- */

/* snprintf into a buffer that may be too small, counting what would have
 * been written. */
struct out {
    char *buf;
    size_t size;
    size_t len;
};

MS_PRINTF(2, 3)
static void out_printf(struct out *o, const char *fmt, ...) {
    char *dst = o->len < o->size ? o->buf + o->len : NULL;
    size_t room = dst != NULL ? o->size - o->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

int ms_config_describe(const ms_config *cfg, char *buf, size_t size) {
    if (buf == NULL)
        size = 0;
    if (size > 0)
        buf[0] = '\0';
    if (cfg == NULL)
        return MS_E_INVALID_ARGUMENT;

    struct out o = {buf, size, 0};
    for (size_t i = 0; i < CONFIG_FIELD_COUNT; i++) {
        const struct field *f = &config_fields[i];
        switch (f->kind) {
        case MS_CONFIG_COUNT:
        case MS_CONFIG_SIZE:
            out_printf(&o, "%s = %" PRIu64 "\n", f->name, field_get(cfg, f));
            break;
        case MS_CONFIG_DURATION: {
            char d[32];
            format_duration(field_get(cfg, f), d, sizeof d);
            out_printf(&o, "%s = %s\n", f->alias, d);
            break;
        }
        case MS_CONFIG_BOOL:
            out_printf(&o, "%s = %s\n", f->name, field_get(cfg, f) ? "true" : "false");
            break;
        case MS_CONFIG_NAME:
            if (cfg->thread_name == NULL)
                out_printf(&o, "%s = NULL\n", f->name);
            else
                out_printf(&o, "%s = \"%s\"\n", f->name, cfg->thread_name);
            break;
        case MS_CONFIG_HOOK:
            out_printf(&o, "%s = %s\n", f->name, hook_is_set(cfg, f) ? "set" : "none");
            break;
        }
    }
    return o.len > INT_MAX ? INT_MAX : (int)o.len;
}
