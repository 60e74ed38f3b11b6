/*
 * repl_term.c - the terminal under `ms-host repl`: the Lua module
 * ms.repl_term, preloaded in ms-host's main state only.
 *
 *   readline(prompt) -> line | nil at end of input
 *   add_history(line)   load_history()   save_history()
 *   isatty() -> boolean        (stdin and stdout are both terminals)
 *   raw_mode(on)        keys without Enter or echo (top()), or back
 *   wait_key(seconds) -> key | nil when none was pressed in time
 *
 * Line editing and history come from libedit's readline interface: a
 * well-kept library rather than terminal code of our own.  When stdin is
 * not a terminal (a pipe, a file, a test) lines are read plainly and no
 * prompt is written, so the output holds only what the session printed.
 *
 * readline and wait_key block the calling thread: lua/ms/repl.lua calls
 * them through ms.blocking, so they run on the blocking pool and the
 * workers go on running every other agent while the prompt waits.  Only
 * the REPL's one agent calls into this module, one call at a time, which
 * is what libedit's global state needs.
 */
#include <editline/readline.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "repl_term.h"

#define RT_HISTORY_FILE ".ms_host_history"
#define RT_HISTORY_LINES 1000

static bool rt_tty(void) {
    return isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
}

/* Plain reading for pipes: one line without its newline, any length. */
static int rt_read_plain(lua_State *L) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        if (ferror(stdin))
            return luaL_error(L, "reading stdin: %s", strerror(errno));
        lua_pushnil(L);
        return 1;
    }
    if (n > 0 && line[n - 1] == '\n')
        n--;
    lua_pushlstring(L, line, (size_t)n);
    free(line);
    return 1;
}

static int rt_readline(lua_State *L) {
    const char *prompt = luaL_optstring(L, 1, "> ");
    if (!rt_tty())
        return rt_read_plain(L);
    char *line = readline(prompt);
    if (!line) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, line);
    free(line);
    return 1;
}

static int rt_add_history(lua_State *L) {
    if (rt_tty())
        add_history(luaL_checkstring(L, 1));
    return 0;
}

/* ~/.ms_host_history, or false without a HOME. */
static bool rt_history_path(char *buf, size_t len) {
    const char *home = getenv("HOME");
    if (!home || !*home)
        return false;
    return (size_t)snprintf(buf, len, "%s/%s", home, RT_HISTORY_FILE) < len;
}

/* History is a convenience: a missing, unreadable or unwritable file is
 * not worth an error, so both calls ignore failures. */
static int rt_load_history(lua_State *L) {
    char path[4096];
    if (rt_tty() && rt_history_path(path, sizeof path)) {
        stifle_history(RT_HISTORY_LINES);
        read_history(path);
    }
    return 0;
}

static int rt_save_history(lua_State *L) {
    char path[4096];
    if (rt_tty() && rt_history_path(path, sizeof path))
        write_history(path);
    return 0;
}

static int rt_isatty(lua_State *L) {
    lua_pushboolean(L, rt_tty());
    return 1;
}

/* The terminal's settings while top() holds it in raw mode.  Only the
 * REPL's agent calls raw_mode and wait_key, one call at a time (from the
 * agent's thread or through ms.blocking), so a plain static suffices. */
static struct termios rt_saved;
static bool rt_raw;

/* raw_mode(true): keys arrive one by one without Enter and unechoed;
 * raw_mode(false) puts the settings back.  top() keeps raw mode for its
 * whole display rather than for each wait: a key typed between two waits
 * would otherwise be taken by the line discipline in canonical mode, and
 * a Ctrl-D typed later at the prompt could then be lost. */
static int rt_raw_mode(lua_State *L) {
    bool on = lua_toboolean(L, 1);
    if (on && !rt_raw && tcgetattr(STDIN_FILENO, &rt_saved) == 0) {
        struct termios raw = rt_saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        rt_raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    } else if (!on && rt_raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &rt_saved);
        rt_raw = false;
    }
    return 0;
}

/* Waits for one key (raw mode makes it arrive without Enter). */
static int rt_wait_key(lua_State *L) {
    double seconds = luaL_checknumber(L, 1);
    int ms = seconds <= 0 ? 0 : seconds > 3600 ? 3600000 : (int)(seconds * 1000);
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, ms);
    while (rc < 0 && errno == EINTR);
    char key = 0;
    ssize_t n = 0;
    if (rc > 0)
        n = read(STDIN_FILENO, &key, 1);
    if (rc > 0 && n == 1)
        lua_pushlstring(L, &key, 1);
    else if (rc > 0)
        lua_pushliteral(L, ""); /* end of input also ends the wait */
    else
        lua_pushnil(L);
    return 1;
}

int luaopen_ms_repl_term(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"readline", rt_readline},         {"add_history", rt_add_history},
        {"load_history", rt_load_history}, {"save_history", rt_save_history},
        {"isatty", rt_isatty},             {"wait_key", rt_wait_key},
        {"raw_mode", rt_raw_mode},         {NULL, NULL},
    };
    lua_createtable(L, 0, 7);
    luaL_register(L, NULL, fns);
    return 1;
}
