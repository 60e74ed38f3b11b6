/*
 * hostlog.c - the host's stderr lines, as text or JSON (hostlog.h).
 *
 * A line is built whole in a buffer (on the stack, or on the heap past
 * its size) and written with one write(2): stderr is unbuffered and
 * shared by every worker, the driver thread and the health monitor, and
 * a line written in pieces could interleave with another thread's.  When
 * the heap refuses a long line, what fits the stack buffer is written,
 * marked as cut: a log line is never lost to allocation failure.
 */
#define _GNU_SOURCE
#include "hostlog.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Written by main before the host starts, read by every thread. */
static _Atomic int log_format = HOSTLOG_TEXT;

/* Whether stderr is the journal's stream: decided once (journal_once). */
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool to_journal;

bool hostlog_parse_format(const char *name, hostlog_format *out) {
    if (name && strcmp(name, "text") == 0)
        *out = HOSTLOG_TEXT;
    else if (name && strcmp(name, "json") == 0)
        *out = HOSTLOG_JSON;
    else
        return false;
    return true;
}

void hostlog_set_format(hostlog_format f) {
    atomic_store_explicit(&log_format, (int)f, memory_order_relaxed);
}

hostlog_format hostlog_get_format(void) {
    return (hostlog_format)atomic_load_explicit(&log_format, memory_order_relaxed);
}

static const char *const level_names[] = {
    [HOSTLOG_ERROR] = "error",
    [HOSTLOG_WARNING] = "warning",
    [HOSTLOG_NOTICE] = "notice",
    [HOSTLOG_INFO] = "info",
};

const char *hostlog_level_name(hostlog_level lv) {
    if (lv < HOSTLOG_ERROR || lv > HOSTLOG_INFO)
        return "error";
    return level_names[lv];
}

bool hostlog_parse_level(const char *name, hostlog_level *out) {
    for (int lv = HOSTLOG_ERROR; lv <= HOSTLOG_INFO; lv++) {
        if (name && strcmp(name, level_names[lv]) == 0) {
            *out = (hostlog_level)lv;
            return true;
        }
    }
    return false;
}

/* systemd sets JOURNAL_STREAM to the device and inode of the stream it
 * connects to stderr; a child that inherited the variable but not the
 * stream (stderr redirected to a file) must not prefix its lines. */
static void decide_journal(void) {
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (v && sscanf(v, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
        to_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* ---- a growing line buffer ---- */

typedef struct line {
    char *p;
    size_t len, cap;
    bool heap, cut;             /* cut: the heap refused; the rest is dropped */
} line;

static bool reserve(line *b, size_t more) {
    if (b->cut)
        return false;
    /* 64 bytes stay free for put_end, whatever happens after */
    if (b->len + more + 64 <= b->cap)
        return true;
    size_t cap = b->cap * 2;
    while (cap < b->len + more + 64)
        cap *= 2;
    char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (!p) {
        b->cut = true;
        return false;
    }
    if (!b->heap)
        memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = cap;
    b->heap = true;
    return true;
}

static void put(line *b, const char *s, size_t n) {
    if (!reserve(b, n)) {
        /* fill what room is left, keeping 64 bytes for the mark and the end (put_end) */
        size_t room = b->cap > b->len + 64 ? b->cap - b->len - 64 : 0;
        if (n > room)
            n = room;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(line *b, const char *s) {
    put(b, s, strlen(s));
}

/* The end of a line (its mark if cut, its closing characters): into the
 * room put() keeps free once the heap has refused, never allocating. */
static void put_end(line *b, const char *s) {
    size_t n = strlen(s);
    if (!b->cut) {
        puts_(b, s);
        return;
    }
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* s as the inside of a JSON string: quotes, backslashes and control
 * characters escaped, bytes that are not UTF-8 as U+FFFD (a Lua error
 * message can carry any bytes; the line must still parse). */
static void put_json_string(line *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named)
                put(b, named, 2);
            else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(b, esc, 6);
            }
            i++;
        } else if (c < 0x80) {
            put(b, s + i, 1);
            i++;
        } else {
            /* the length of a well-formed sequence starting here, or 0 */
            size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                       : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
            if (len && i + len <= n) {
                unsigned char c1 = (unsigned char)s[i + 1];
                bool ok = (c1 & 0xc0) == 0x80;
                if (c == 0xe0 && c1 < 0xa0) ok = false;     /* overlong */
                if (c == 0xed && c1 > 0x9f) ok = false;     /* surrogates */
                if (c == 0xf0 && c1 < 0x90) ok = false;     /* overlong */
                if (c == 0xf4 && c1 > 0x8f) ok = false;     /* past U+10FFFF */
                for (size_t k = 2; ok && k < len; k++)
                    ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
                if (ok) {
                    put(b, s + i, len);
                    i += len;
                    continue;
                }
            }
            put(b, "\\ufffd", 6);
            i++;
        }
    }
}

static void put_time(line *b) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char t[40];
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + n, sizeof t - n, ".%06ldZ", ts.tv_nsec / 1000);
    puts_(b, t);
}

static void write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;             /* stderr is gone: nothing else to tell */
        p += w;
        n -= (size_t)w;
    }
}

void hostlog_write(hostlog_level lv, const char *event, uint64_t agent_id, const char *agent,
                   const char *message, size_t len) {
    char stack[2048];
    line b = {.p = stack, .cap = sizeof stack};
    if (hostlog_get_format() == HOSTLOG_JSON) {
        puts_(&b, "{\"time\":\"");
        put_time(&b);
        puts_(&b, "\",\"level\":\"");
        puts_(&b, hostlog_level_name(lv));
        puts_(&b, "\",\"event\":\"");
        put_json_string(&b, event, strlen(event));
        puts_(&b, "\"");
        if (agent_id) {
            char id[40];
            snprintf(id, sizeof id, ",\"agent_id\":%llu", (unsigned long long)agent_id);
            puts_(&b, id);
        }
        if (agent) {
            puts_(&b, ",\"agent\":\"");
            put_json_string(&b, agent, strlen(agent));
            puts_(&b, "\"");
        }
        puts_(&b, ",\"message\":\"");
        put_json_string(&b, message, len);
        if (b.cut)
            put_end(&b, "...(cut: out of memory)");
        put_end(&b, "\"}\n");
    } else {
        pthread_once(&journal_once, decide_journal);
        char prefix[16];
        snprintf(prefix, sizeof prefix, "<%d>", (int)lv);
        /* every line of the message its own journal entry, each with the
         * priority; the first names the host */
        const char *p = message, *end = message + len;
        bool first = true;
        do {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *stop = nl ? nl : end;
            if (to_journal)
                puts_(&b, prefix);
            if (first)
                puts_(&b, "ms-host: ");
            first = false;
            put(&b, p, (size_t)(stop - p));
            put_end(&b, "\n");
            p = nl ? nl + 1 : end;
        } while (p < end && !b.cut);
        if (b.cut)
            put_end(&b, "\nms-host: (the line above was cut: out of memory)\n");
    }
    write_all(b.p, b.len);
    if (b.heap)
        free(b.p);
}

void hostlog(hostlog_level lv, const char *event, uint64_t agent_id, const char *agent,
             const char *fmt, ...) {
    char stack[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stack, sizeof stack, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char *msg = stack;
    if ((size_t)n >= sizeof stack) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = big;
        } else {
            n = sizeof stack - 1;       /* what fitted: better cut than lost */
        }
    }
    hostlog_write(lv, event, agent_id, agent, msg, (size_t)n);
    if (msg != stack)
        free(msg);
}
