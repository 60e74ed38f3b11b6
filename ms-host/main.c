/*
 * main.c - ms-host, the command line.
 *
 *   ms-host run FILE.lua [--profile NAME|FILE] [--workers N] [--set k=v]...
 *                        [--console PATH] [-- ARGS...]
 *   ms-host repl [--profile NAME|FILE] [--workers N] [--set k=v]... [--console PATH]
 *   ms-host attach PATH
 *   ms-host profiles [--workers N] [--set k=v]...
 *   ms-host --help | --version
 *
 * run: resolves the profile (lua/ms/profile.lua), builds the runtime from
 * it, and runs FILE as the main agent (an agent like any other, on the
 * workers) while this thread waits for it; exits 0 when the
 * main agent ends, 1 when it fails (the error and its traceback on
 * stderr), 2 for bad usage or configuration; after a graceful shutdown
 * (SIGINT, SIGTERM, ms.shutdown) 0 if it completed in time, 3 if the
 * deadline forced it, 130 on a second SIGINT (lifecycle.c).
 *
 * repl: the same host, with an interactive Lua prompt as the main agent
 * (lua/ms/repl.lua on the terminal of repl_term.c); exits 0 at end of
 * input.  attach: a client of another host's console (attach.c,
 * console.c).
 */
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "attach.h"
#include "cluster.h"
#include "collector.h"
#include "console.h"
#include "host.h"
#include "hostlog.h"
#include "lerr.h"
#include "lifecycle.h"
#include "lms.h"
#include "metrics_http.h"
#include "paths.h"
#include "repl_term.h"
#include "sdnotify.h"
#include "spawn.h"
#include "tune.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: ms-host run FILE.lua [options] [-- ARGS...]\n"
            "       ms-host repl [options]\n"
            "       ms-host attach PATH\n"
            "       ms-host profiles [options]\n"
            "       ms-host --help | --version\n"
            "\n"
            "  run FILE.lua        run FILE as the main agent; exit when it ends\n"
            "  repl                an interactive Lua prompt as the main agent of a live\n"
            "                      runtime (helpers: metrics() agents() workers() top()\n"
            "                      tune{...}); Ctrl-D exits\n"
            "  attach PATH         a REPL inside the host serving the console socket PATH\n"
            "  profiles            print every profile and what it resolves to here\n"
            "\n"
            "options:\n"
            "  --profile NAME|FILE runtime profile (default: default), a name in profiles/\n"
            "                      or a path to a .lua profile\n"
            "  --workers N         worker threads (overrides the profile)\n"
            "  --set KEY=VALUE     any profile field, e.g. --set budget=64\n"
            "                      --set shutdown_timeout=5s\n"
            "  --metrics-listen HOST:PORT\n"
            "                      serve /metrics and /metrics.json over HTTP (the\n"
            "                      profile's metrics_listen), e.g. 127.0.0.1:9100\n"
            "  --metrics-file PATH append a metrics snapshot to PATH as one JSON line\n"
            "                      every metrics_interval (default 1 s), and a final\n"
            "                      line at exit (the profile's metrics_file)\n"
            "  --console PATH      serve `ms-host attach PATH` on a Unix socket (mode 0600;\n"
            "                      the profile's console)\n"
            "  --cluster URL       join the cluster on the NATS broker at URL, e.g.\n"
            "                      nats://127.0.0.1:4222 (the profile's cluster; docs/cluster.md)\n"
            "  --log-format text|json\n"
            "                      the host's own stderr lines as text (default; with\n"
            "                      syslog priorities under systemd) or one JSON object\n"
            "                      per line (docs/logs.md)\n"
            "\n"
            "exit status: 0 the main agent ended (or a graceful shutdown completed), 1 it\n"
            "failed, 2 bad usage or configuration, 3 a shutdown hit its timeout, 130 a\n"
            "second SIGINT during shutdown\n");
}

typedef struct opts {
    const char *cmd;
    const char *file;
    const char *profile;
    const char *sets[64];
    int nsets;
    const char *workers;
    const char *metrics_listen;
    const char *metrics_file;
    const char *cluster;        /* --cluster URL (the profile's cluster) */
    const char *console;
    char **args;
    int nargs;
} opts;

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    o->cmd = argv[1];
    if (!strcmp(o->cmd, "--help") || !strcmp(o->cmd, "-h") || !strcmp(o->cmd, "help")) {
        usage(stdout);
        exit(0);
    }
    if (!strcmp(o->cmd, "--version")) {
        printf("ms-host %s (%s)\n", MS_VERSION_STRING, LUAJIT_VERSION);
        exit(0);
    }
    if (strcmp(o->cmd, "run") != 0 && strcmp(o->cmd, "repl") != 0 &&
        strcmp(o->cmd, "attach") != 0 && strcmp(o->cmd, "profiles") != 0) {
        hostlog(HOSTLOG_ERROR, "usage", 0, NULL,
                "unknown command '%s' (run, repl, attach, profiles, --help, --version)", o->cmd);
        return 2;
    }
    int i = 2;
    if (!strcmp(o->cmd, "attach")) {
        if (argc != 3 || argv[2][0] == '-') {
            hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "attach: which socket? (ms-host attach PATH)");
            return 2;
        }
        o->file = argv[2];
        return 0;
    }
    if (!strcmp(o->cmd, "run")) {
        if (argc < 3 || argv[2][0] == '-') {
            hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "run: which file? (ms-host run FILE.lua)");
            return 2;
        }
        o->file = argv[2];
        i = 3;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            o->args = argv + i + 1;
            o->nargs = argc - i - 1;
            break;
        }
        const char *val = NULL;
        if (!strcmp(a, "--profile") || !strcmp(a, "--workers") || !strcmp(a, "--set") ||
            !strcmp(a, "--metrics-listen") || !strcmp(a, "--metrics-file") ||
            !strcmp(a, "--console") || !strcmp(a, "--cluster") || !strcmp(a, "--log-format")) {
            if (i + 1 >= argc) {
                hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "%s needs a value", a);
                return 2;
            }
            val = argv[++i];
        } else if (!strncmp(a, "--profile=", 10) || !strncmp(a, "--workers=", 10) ||
                   !strncmp(a, "--set=", 6) || !strncmp(a, "--metrics-listen=", 17) ||
                   !strncmp(a, "--metrics-file=", 15) || !strncmp(a, "--console=", 10) ||
                   !strncmp(a, "--cluster=", 10) || !strncmp(a, "--log-format=", 13)) {
            val = strchr(a, '=') + 1;
        } else {
            hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "unknown option '%s' (see ms-host --help)", a);
            return 2;
        }
        if (!strncmp(a, "--profile", 9))
            o->profile = val;
        else if (!strncmp(a, "--workers", 9))
            o->workers = val;
        else if (!strncmp(a, "--metrics-listen", 16))
            o->metrics_listen = val;
        else if (!strncmp(a, "--metrics-file", 14))
            o->metrics_file = val;
        else if (!strncmp(a, "--console", 9))
            o->console = val;
        else if (!strncmp(a, "--cluster", 9))
            o->cluster = val;
        else if (!strncmp(a, "--log-format", 12)) {
            hostlog_format f;
            if (!hostlog_parse_format(val, &f)) {
                hostlog(HOSTLOG_ERROR, "usage", 0, NULL,
                        "--log-format takes text or json, got '%s'", val);
                return 2;
            }
            hostlog_set_format(f);
        } else {
            if (!strchr(val, '=')) {
                hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "--set takes KEY=VALUE, got '%s'", val);
                return 2;
            }
            if (o->nsets == 64) {
                hostlog(HOSTLOG_ERROR, "usage", 0, NULL, "too many --set options (at most 64)");
                return 2;
            }
            o->sets[o->nsets++] = val;
        }
    }
    return 0;
}

/* A state with the ms module preloaded and lua/ on the path. */
static lua_State *new_state(void) {
    lua_State *L = luaL_newstate();
    if (!L)
        return NULL;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *lua_dir = paths_lua_dir();
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    /* ms.profile takes its fields from the ms module (ms._profile_fields). */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_ms);
    lua_setfield(L, -2, "ms");
    lua_pop(L, 2);
    return L;
}

/* Pushes the resolved profile (a table) and returns true, or pushes the
 * error message (a string) and returns false.  Either way one value more
 * on L. */
static bool load_profile_quiet(lua_State *L, const opts *o, const char *name) {
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        const char *why = lua_tostring(L, -1);
        lua_pushfstring(L, "cannot load the profile module: %s", why ? why : "(no message)");
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return false;
    }
    lua_getfield(L, -1, "load");
    lua_pushstring(L, name);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1);
    lua_setfield(L, -2, "cpus");
    lua_createtable(L, 0, o->nsets + 1);
    for (int i = 0; i < o->nsets; i++) {
        const char *eq = strchr(o->sets[i], '=');
        lua_pushlstring(L, o->sets[i], (size_t)(eq - o->sets[i]));
        lua_pushstring(L, eq + 1);
        lua_settable(L, -3);
    }
    if (o->workers) {
        lua_pushstring(L, o->workers);
        lua_setfield(L, -2, "worker_threads");
    }
    if (o->metrics_listen) {
        lua_pushstring(L, o->metrics_listen);
        lua_setfield(L, -2, "metrics_listen");
    }
    if (o->metrics_file) {
        lua_pushstring(L, o->metrics_file);
        lua_setfield(L, -2, "metrics_file");
    }
    if (o->console) {
        lua_pushstring(L, o->console);
        lua_setfield(L, -2, "console");
    }
    if (o->cluster) {
        lua_pushstring(L, o->cluster);
        lua_setfield(L, -2, "cluster");
    }
    lua_setfield(L, -2, "overrides");
    bool ok = lua_pcall(L, 2, 1, 0) == 0;
    if (!ok && !lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "(error without a message)");
    }
    lua_remove(L, -2); /* the module */
    return ok;
}

/* Pushes the resolved profile (a table) or prints the error and returns
 * false (with nothing pushed). */
static bool load_profile(lua_State *L, const opts *o, const char *name) {
    if (load_profile_quiet(L, o, name))
        return true;
    hostlog(HOSTLOG_ERROR, "config.invalid", 0, NULL, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
}

/* Applies the profile at the top of L to cfg.  Prints and returns false on
 * a value the C side refuses. */
static bool apply_profile(lua_State *L, ms_config *cfg, host *h) {
    int prof = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "to_config_pairs");
    lua_pushvalue(L, prof);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        hostlog(HOSTLOG_ERROR, "config.invalid", 0, NULL, "%s", lua_tostring(L, -1));
        return false;
    }
    int n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        ms_error err;
        if (ms_config_set(cfg, lua_tostring(L, -2), lua_tostring(L, -1), &err) != 0) {
            lua_getfield(L, prof, "file");
            hostlog(HOSTLOG_ERROR, "config.invalid", 0, NULL, "profile %s: %s", lua_tostring(L, -1),
                    err.message);
            return false;
        }
        lua_pop(L, 3);
    }
    lua_pop(L, 2);
    if (h) {
        /* The host's own live settings (agents' limits), from the
         * profile's values. */
        const char *names[16];
        double values[16];
        int nsettings = host_settings(h, names, values, 16);
        lua_getfield(L, prof, "values");
        for (int i = 0; i < nsettings; i++) {
            lua_getfield(L, -1, names[i]);
            if (lua_isnumber(L, -1))
                host_setting_set(h, names[i], lua_tonumber(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return true;
}

static int cmd_profiles(const opts *o) {
    lua_State *L = new_state();
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ms.profile");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        hostlog(HOSTLOG_ERROR, "config.invalid", 0, NULL, "%s", lua_tostring(L, -1));
        return 2;
    }
    int mod = lua_gettop(L);
    lua_getfield(L, mod, "list");
    lua_call(L, 0, 1);
    int list = lua_gettop(L);
    int n = (int)lua_objlen(L, list), status = 0;
    /* The last error printed (a registry ref): an error that does not
     * depend on the profile (a bad --set) is printed once, not once per
     * profile. */
    lua_pushnil(L);
    int last_err = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        int top = lua_gettop(L);
        lua_rawgeti(L, list, i);
        const char *name = lua_tostring(L, -1);
        if (!name || !load_profile_quiet(L, o, name)) {
            status = 2;
            if (name && !lua_equal(L, -1, last_err)) {
                hostlog(HOSTLOG_ERROR, "config.invalid", 0, NULL, "%s", lua_tostring(L, -1));
                lua_replace(L, last_err);
            }
            lua_settop(L, top);
            continue;
        }
        int prof = lua_gettop(L);
        ms_config cfg;
        ms_config_default(&cfg);
        if (!apply_profile(L, &cfg, NULL))
            status = 2;
        lua_settop(L, prof);
        lua_getfield(L, mod, "describe");
        lua_pushvalue(L, prof);
        lua_call(L, 1, 1);
        printf("%s\n", lua_tostring(L, -1));
        lua_settop(L, top);
    }
    lua_close(L);
    return status;
}

/* The main agent's failure, from its exit record. */
static void print_error(agent *a, const char *file) {
    pthread_mutex_lock(&a->mlock);
    hostlog(HOSTLOG_ERROR, "main.failed", a->id, a->name, "%s failed: %s: %s%s%s", file,
            ms_err_name(a->exit_code), a->exit_message ? a->exit_message : a->exit_reason,
            a->exit_traceback ? "\n" : "", a->exit_traceback ? a->exit_traceback : "");
    pthread_mutex_unlock(&a->mlock);
}

/* The main chunk of `ms-host repl`: the prompt, as the main agent. */
static const char repl_main[] =
    "return require('ms.repl').terminal(require('ms.repl_term'))";

/* What agents may require beyond the search paths: the REPL's terminal. */
static const luaL_Reg host_preload[] = {{"ms.repl_term", luaopen_ms_repl_term}, {NULL, NULL}};

/* The profile's string field, copied (NULL if absent).  The profile table
 * is at the top of L. */
static char *profile_string(lua_State *L, const char *field) {
    lua_getfield(L, -1, "values");
    lua_getfield(L, -1, field);
    char *v = lua_type(L, -1) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 2);
    return v;
}

/* Starts what the profile asks for beside the agents: the metrics
 * endpoint and file, the tuner agent, the console.  Prints and returns
 * false on failure. */
static bool start_services(lua_State *L, host *h) {
    ms_error err;
    char *listen = profile_string(L, "metrics_listen");
    int rc = listen ? metrics_http_start(h, listen, &err) : 0;
    free(listen);
    if (rc != 0) {
        hostlog(HOSTLOG_ERROR, "service.start_failed", 0, NULL, "%s", err.message);
        return false;
    }
    char *file = profile_string(L, "metrics_file");
    lua_getfield(L, -1, "values");
    lua_getfield(L, -1, "metrics_interval");
    double interval = lua_tonumber(L, -1);
    lua_pop(L, 2);
    rc = file ? collector_start(h, file, interval, &err) : 0;
    free(file);
    if (rc != 0) {
        hostlog(HOSTLOG_ERROR, "service.start_failed", 0, NULL, "%s", err.message);
        return false;
    }
    /* The profile's tuner script: an agent of its own beside the main one,
     * stopped with the others when the host stops. */
    char *tuner = profile_string(L, "tuner");
    if (tuner) {
        char why[512];
        spawn_spec spec = {.src = SRC_FILE, .text = tuner, .name = "tuner"};
        agent *ta = spawn_agent_spec(h, &spec, why, sizeof why);
        if (!ta)
            hostlog(HOSTLOG_ERROR, "service.start_failed", 0, NULL, "tuner %s: %s", tuner, why);
        free(tuner);
        if (!ta) {
            collector_finish("tuner failed");
            return false;
        }
        agent_unref(ta);
    }
    /* The cluster (docs/cluster.md) before the console: a host that
     * cannot join the cluster it was told to does not start. */
    char *cluster = profile_string(L, "cluster");
    if (cluster && *cluster) {
        lua_getfield(L, -1, "values");
        cluster_config cc = {.url = cluster};
        lua_getfield(L, -1, "cluster_heartbeat");
        cc.heartbeat = lua_tonumber(L, -1);
        lua_getfield(L, -2, "cluster_loss_after");
        cc.loss_after = lua_tonumber(L, -1);
        lua_getfield(L, -3, "cluster_broker_grace");
        cc.broker_grace = lua_tonumber(L, -1);
        lua_pop(L, 4);
        char *cluster_name = profile_string(L, "cluster_name");
        cc.name = cluster_name;
        rc = cluster_start(h, &cc, &err);
        free(cluster_name);
        if (rc != 0) {
            hostlog(HOSTLOG_ERROR, "service.start_failed", 0, NULL, "%s", err.message);
            free(cluster);
            collector_finish("cluster failed");
            return false;
        }
    }
    free(cluster);
    char *dump_file = profile_string(L, "tasks_dump_file");
    lifecycle_set_dump_file(dump_file);
    free(dump_file);
    char *console = profile_string(L, "console");
    rc = console ? console_start(h, console, &err) : 0;
    free(console);
    if (rc != 0) {
        hostlog(HOSTLOG_ERROR, "service.start_failed", 0, NULL, "%s", err.message);
        collector_finish("console failed");
        return false;
    }
    return true;
}

/* run and repl: the same host; repl's main agent is the prompt. */
static int cmd_run(const opts *o) {
    bool repl = !strcmp(o->cmd, "repl");
    /* A state of its own for the profile (ms.profile is Lua); the agents,
     * the main one included, have theirs. */
    lua_State *L = new_state();
    if (!L) {
        hostlog(HOSTLOG_ERROR, "host.start_failed", 0, NULL, "cannot create a Lua state");
        return 2;
    }
    if (!load_profile(L, o, o->profile ? o->profile : "default"))
        return 2;
    ms_config cfg;
    ms_config_default(&cfg);
    if (!apply_profile(L, &cfg, NULL))
        return 2;
    ms_error err;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
    host *h = host_open(&cfg, lua_tostring(L, -2), lua_tostring(L, -1), &err);
    lua_pop(L, 3);
    if (!h) {
        hostlog(HOSTLOG_ERROR, "host.start_failed", 0, NULL, "%s: %s", ms_err_name(err.code),
                err.message);
        return 2;
    }
    apply_profile(L, &cfg, h);
    h->preload = host_preload;
    /* For SIGHUP: what the profile was resolved from. */
    h->profile_name = strdup(o->profile ? o->profile : "default");
    h->profile_config = cfg;
    h->profile_sets = calloc((size_t)o->nsets + 2, sizeof *h->profile_sets);
    for (int i = 0; h->profile_sets && i < o->nsets; i++)
        h->profile_sets[h->nprofile_sets++] = strdup(o->sets[i]);
    if (h->profile_sets && o->workers) {
        char buf[64];
        snprintf(buf, sizeof buf, "worker_threads=%s", o->workers);
        h->profile_sets[h->nprofile_sets++] = strdup(buf);
    }
    lifecycle_note_profile(L, lua_gettop(L)); /* for SIGHUP */
    if (cfg.enable_io && lifecycle_start(&err) != 0)
        hostlog(HOSTLOG_WARNING, "host.no_signals", 0, NULL,
                "no graceful shutdown on SIGINT/SIGTERM: %s", err.message);
    bool started = start_services(L, h);
    lua_close(L);
    if (!started) {
        host_shutdown();
        return 2;
    }

    /* The main agent: an agent like any other, on the workers; this thread
     * waits for it. */
    char why[512];
    spawn_spec spec = {.src = repl ? SRC_FN : SRC_FILE,
                       .text = repl ? repl_main : o->file,
                       .name = "main",
                       .argv = (char *const *)o->args,
                       .argc = o->nargs,
                       .main = true};
    agent *a = spawn_agent_spec(h, &spec, why, sizeof why);
    if (!a) {
        hostlog(HOSTLOG_ERROR, "main.start_failed", 0, NULL, "%s: %s", repl ? "repl" : o->file,
                why);
        collector_finish("main agent failed");
        host_shutdown();
        return 1;
    }
    /* systemd (Type=notify): the main agent is running. */
    sdnotify_send("READY=1");
    int rc = agent_join(a, &err);
    sdnotify_stopping();
    int status = 0;
    pthread_mutex_lock(&h->lock);
    bool stopped = h->phase == HOST_STOPPING;
    uint64_t since = h->shutdown_started_ns;
    pthread_mutex_unlock(&h->lock);
    if (stopped) {
        /* A graceful shutdown ended the main agent: the other agents are
         * still running their handlers.  The lifecycle task enforces the
         * deadline (killing them, then exiting); wait for them here. */
        for (;;) {
            pthread_mutex_lock(&h->lock);
            uint64_t left = h->nagents;
            pthread_mutex_unlock(&h->lock);
            if (left == 0)
                break;
            usleep(2000);
        }
        bool late = atomic_load(&h->shutdown_timed_out);
        hostlog(HOSTLOG_NOTICE, "shutdown.end", 0, NULL, "shutdown %s after %.3f s",
                late ? "forced" : "complete", (ms_now_ns() - since) / 1e9);
        status = late ? 3 : 0;
    } else if (rc != 0) {
        print_error(a, repl ? "repl" : o->file);
        status = 1;
    }
    agent_unref(a);
    /* The others hear we are going (cluster.h); agents still running
     * are seen there as ended with reason "shutdown". */
    cluster_stop();
    /* Every agent has ended: the metrics file's last line is the state
     * at exit.  The runtime must still exist for that snapshot. */
    collector_finish(stopped ? h->shutdown_reason : rc != 0 ? "main agent failed" : "exit");
    if (host_shutdown() != 0 && status == 0)
        status = 3;
    cluster_free(); /* no agent is left to publish */
    return status;
}

/* --log-format before anything else is read, so that a usage error is
 * already in the format asked for (parse() reports a bad value). */
static void early_log_format(int argc, char **argv) {
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *val = NULL;
        if (!strcmp(argv[i], "--log-format") && i + 1 < argc)
            val = argv[i + 1];
        else if (!strncmp(argv[i], "--log-format=", 13))
            val = argv[i] + 13;
        hostlog_format f;
        if (val && hostlog_parse_format(val, &f))
            hostlog_set_format(f);
    }
}

int main(int argc, char **argv) {
    opts o;
    early_log_format(argc, argv);
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (!strcmp(o.cmd, "profiles"))
        return cmd_profiles(&o);
    if (!strcmp(o.cmd, "attach"))
        return attach_main(o.file);
    sdnotify_init(); /* before any thread: it reads the environment */
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    /* glibc gives the top of a heap back to the kernel as soon as 128 KiB
     * of it is free.  A host that spawns and ends tasks, agents and
     * messages in bursts then pays, per burst, a madvise or brk to give
     * the pages back and a page fault per page to take them again: a
     * third of spawn_many_local's time, and most of it on a shared CPU
     * (docs/scheduler.md, "Memory").  Setting one threshold turns off
     * glibc's own adjustment of both, so both are set to where that
     * adjustment ends (mmap for blocks of 32 MiB and more, trim past
     * twice that): otherwise every block over 128 KiB (a large message,
     * a big Lua table) would be a fresh mmap and its page faults. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
    return cmd_run(&o);
}
