/*
 * sdnotify.c - systemd's readiness protocol (see sdnotify.h).
 *
 * The protocol is a datagram of "KEY=VALUE" lines sent to an AF_UNIX
 * socket; an address that starts with '@' is in the abstract namespace.
 * A socket is opened per message (as libsystemd does), so nothing stays
 * open for a service manager that never reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdnotify.h"

/* Written by sdnotify_init before any other thread exists; read-only
 * after. */
static struct sockaddr_un g_addr;
static socklen_t g_addr_len;     /* 0: no $NOTIFY_SOCKET, nothing is sent */
static uint64_t g_watchdog_ms;

static atomic_bool g_stopping_sent;
/* Workers stuck now, by the health monitor's reports (its thread writes,
 * the lifecycle task reads: relaxed, a hint for the next ping). */
static atomic_int g_stalled;

void sdnotify_init(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len = path ? strlen(path) : 0;
    if (len == 0 || len >= sizeof g_addr.sun_path || (path[0] != '/' && path[0] != '@'))
        return;
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sun_family = AF_UNIX;
    memcpy(g_addr.sun_path, path, len);
    if (path[0] == '@')
        g_addr.sun_path[0] = '\0';
    g_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    /* The watchdog is ours only if it names this process (or no one). */
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (usec && (!pid || strtol(pid, NULL, 10) == (long)getpid())) {
        unsigned long long us = strtoull(usec, NULL, 10);
        g_watchdog_ms = us >= 2000 ? us / 2000 : us > 0 ? 1 : 0;
    }
}

void sdnotify_send(const char *state) {
    if (g_addr_len == 0)
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t n;
    do
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&g_addr,
                   g_addr_len);
    while (n < 0 && errno == EINTR);
    close(fd);
}

void sdnotify_stopping(void) {
    if (!atomic_exchange(&g_stopping_sent, true))
        sdnotify_send("STOPPING=1");
}

uint64_t sdnotify_watchdog_ms(void) {
    return g_addr_len ? g_watchdog_ms : 0;
}

void sdnotify_worker_stalled(bool stalled) {
    atomic_fetch_add_explicit(&g_stalled, stalled ? 1 : -1, memory_order_relaxed);
}

bool sdnotify_workers_progress(void) {
    return atomic_load_explicit(&g_stalled, memory_order_relaxed) <= 0;
}
