/*
 * spawn.h - ms.agent.spawn's table read into a new agent, which is then
 * registered and started.
 */
#ifndef MS_AGENTS_SPAWN_H
#define MS_AGENTS_SPAWN_H

#include <lua.h>
#include <stddef.h>

#include "agent.h"
#include "fwd.h"

/* Creates and starts an agent from the spawn table at idx; pushes
 * nothing.  On failure returns NULL with a message in err naming the
 * field at fault.  The caller gets a reference. */
agent *spawn_agent(lua_State *L, int idx, char *err, size_t errlen);

/* A spawn from C, without a spawner's state: the main agent of ms-host
 * run, the console's and the tuner's agents. */
typedef struct spawn_spec {
    agent_src src;              /* SRC_FILE (text: path), SRC_MODULE (text:
                                   module name) or SRC_FN (text: Lua source
                                   or bytecode, len bytes) */
    const char *text;
    size_t len;                 /* 0: strlen(text) */
    const char *name;           /* NULL: agent-<id> */
    char *const *argv;          /* the main script's arguments, or NULL */
    int argc;
    bool main;                  /* ms-host's main agent: no memory limit,
                                   the JIT from the start */
    /* cluster.c: a spawn asked by another host.  args: the encoded args
     * (taken over, also on failure), or NULL; spawned_remotely: its
     * supervisor is there (fencing, cluster.h). */
    xfer *args;
    bool spawned_remotely;
    uint64_t spawner_host;      /* the host that asked (spawned_remotely) */
    bool trap_exit;             /* declared at spawn (ms.trap_exit) */
} spawn_spec;

agent *spawn_agent_spec(host *h, const spawn_spec *s, char *err, size_t errlen);

#endif
