/*
 * notify_check.c - ctest host.sd_notify: ms-host speaks systemd's
 * readiness protocol to a fake service manager (a datagram socket named
 * by NOTIFY_SOCKET), and says nothing without one.
 *
 *   notify_check MS_HOST
 *
 * With NOTIFY_SOCKET and WATCHDOG_USEC: READY=1 once the main agent runs,
 * WATCHDOG=1 pings, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around
 * a SIGHUP, STOPPING=1 after SIGTERM, and a clean exit; no WATCHDOG=1
 * while the health monitor reports a stuck worker, and again after it
 * recovered.  Without
 * NOTIFY_SOCKET: no datagram at all.  Every wait is bounded by a generous
 * hang guard only.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUARD_MS 60000

static const char *host;
static char dir[64];
static int sock = -1;
static pid_t child = -1;        /* the ms-host running now, killed on a failure */

static void die(void) {
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    exit(1);
}

static void fail(const char *what) {
    fprintf(stderr, "notify_check: %s\n", what);
    die();
}

/* The next datagram into buf, or 0 when none came within ms. */
static size_t next_message(char *buf, size_t size, int ms) {
    struct pollfd p = {.fd = sock, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    ssize_t n = recv(sock, buf, size - 1, 0);
    if (n <= 0)
        fail("recv");
    buf[n] = '\0';
    return (size_t)n;
}

/* Reads messages until one starts with want; counts WATCHDOG=1 on the way. */
static void expect(const char *want, int *watchdogs) {
    char buf[512];
    for (;;) {
        if (!next_message(buf, sizeof buf, GUARD_MS)) {
            fprintf(stderr, "notify_check: no %s within %d s\n", want, GUARD_MS / 1000);
            die();
        }
        if (strcmp(buf, "WATCHDOG=1") == 0 && watchdogs)
            ++*watchdogs;
        if (strncmp(buf, want, strlen(want)) == 0) {
            printf("got %s\n", buf);
            return;
        }
    }
}

static bool exists(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static pid_t start_with(const char *script, bool notify, const char *extra);

static pid_t start(const char *script, bool notify) {
    return start_with(script, notify, NULL);
}

static pid_t start_with(const char *script, bool notify, const char *extra) {
    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        char path[128];
        snprintf(path, sizeof path, "%s/notify", dir);
        if (notify) {
            setenv("NOTIFY_SOCKET", path, 1);
            setenv("WATCHDOG_USEC", "100000", 1);
        } else {
            unsetenv("NOTIFY_SOCKET");
        }
        unsetenv("WATCHDOG_PID");
        if (extra)
            execl(host, host, "run", script, "--workers", "2", "--set", extra, "--", dir,
                  (char *)NULL);
        else
            execl(host, host, "run", script, "--workers", "2", (char *)NULL);
        _exit(127);
    }
    child = pid;
    return pid;
}

static int finish(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid)
        fail("waitpid");
    child = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    if (argc != 2)
        fail("usage: notify_check MS_HOST");
    host = argv[1];
    snprintf(dir, sizeof dir, "/tmp/ms-notify.XXXXXX");
    if (!mkdtemp(dir))
        fail("mkdtemp");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/notify", dir);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof addr) != 0)
        fail("cannot bind the notify socket");
    char waits[128], quick[128], stuck[128];
    snprintf(stuck, sizeof stuck, "%s/stuck.lua", dir);
    snprintf(waits, sizeof waits, "%s/waits.lua", dir);
    snprintf(quick, sizeof quick, "%s/quick.lua", dir);
    FILE *f = fopen(waits, "w");
    fputs("ms.sleep(3600)\n", f);
    fclose(f);
    f = fopen(quick, "w");
    fputs("ms.sleep(0.2)\n", f);
    fclose(f);
    /* A worker stuck in an agent's endless loop (jit = false, so that
     * stop ends it) until the test has watched the silence; the markers
     * are files in the directory given as arg[1]. */
    f = fopen(stuck, "w");
    fputs("local dir = ...\n"
          "local function mark(name) io.open(dir .. '/' .. name, 'w'):close() end\n"
          "local ev = ms.events.subscribe('ms.worker.stalled')\n"
          "local a = ms.agent.spawn{ jit = false, fn = function() while true do end end }\n"
          "assert(assert(ev:recv(60)).recovered == 'false')\n"
          "mark('stalled')\n"
          "while not io.open(dir .. '/release') do ms.sleep(0.01) end\n"
          "a:stop()\n"
          "assert(assert(ev:recv(60)).recovered == 'true')\n"
          "mark('recovered')\n"
          "while not io.open(dir .. '/done') do ms.sleep(0.01) end\n",
          f);
    fclose(f);

    /* With a service manager. */
    int watchdogs = 0;
    pid_t pid = start(waits, true);
    expect("READY=1", &watchdogs);
    watchdogs = 0;
    expect("WATCHDOG=1", &watchdogs);
    kill(pid, SIGHUP);
    expect("RELOADING=1\nMONOTONIC_USEC=", NULL);
    expect("READY=1", NULL);
    kill(pid, SIGTERM);
    expect("STOPPING=1", NULL);
    int code = finish(pid);
    if (code != 0) {
        fprintf(stderr, "notify_check: ms-host exited %d after SIGTERM\n", code);
        return 1;
    }
    /* Drain what came after STOPPING=1 (a last ping may have). */
    char buf[512];
    while (next_message(buf, sizeof buf, 0))
        ;

    /* A stuck worker holds the watchdog back. */
    pid = start_with(stuck, true, "stall_threshold=0.2");
    expect("READY=1", NULL);
    for (int i = 0; i < GUARD_MS / 10 && !exists("stalled"); i++)
        usleep(10000);
    if (!exists("stalled"))
        fail("the stall was not reported");
    /* Pings sent before the stall was counted are in the socket by now
     * (the marker was written after): drop them, then listen for 20 ping
     * periods. */
    while (next_message(buf, sizeof buf, 0))
        ;
    int silent_pings = 0;
    for (int i = 0; i < 20; i++) {
        if (next_message(buf, sizeof buf, 50) && strcmp(buf, "WATCHDOG=1") == 0)
            silent_pings++;
    }
    if (silent_pings) {
        fprintf(stderr, "notify_check: %d WATCHDOG=1 while a worker was stuck\n", silent_pings);
        die();
    }
    char marker[128];
    snprintf(marker, sizeof marker, "%s/release", dir);
    fclose(fopen(marker, "w"));
    for (int i = 0; i < GUARD_MS / 10 && !exists("recovered"); i++)
        usleep(10000);
    if (!exists("recovered"))
        fail("the worker did not recover");
    expect("WATCHDOG=1", NULL); /* fed again */
    snprintf(marker, sizeof marker, "%s/done", dir);
    fclose(fopen(marker, "w"));
    if (finish(pid) != 0)
        fail("the stuck-worker run failed");
    while (next_message(buf, sizeof buf, 0))
        ;

    /* Without one: nothing. */
    pid = start(quick, false);
    code = finish(pid);
    if (code != 0)
        fail("ms-host run without NOTIFY_SOCKET failed");
    if (next_message(buf, sizeof buf, 0)) {
        fprintf(stderr, "notify_check: without NOTIFY_SOCKET ms-host sent '%s'\n", buf);
        return 1;
    }
    unlink(addr.sun_path);
    unlink(waits);
    unlink(quick);
    unlink(stuck);
    static const char *const markers[] = {"stalled", "release", "recovered", "done"};
    for (int i = 0; i < 4; i++) {
        char m[128];
        snprintf(m, sizeof m, "%s/%s", dir, markers[i]);
        unlink(m);
    }
    rmdir(dir);
    printf("notify_check: passed\n");
    return 0;
}
