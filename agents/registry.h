/*
 * registry.h - the host's registry of live agents: ids, names, and the
 * list the metrics and ms.agents() walk.  Under the host lock.
 */
#ifndef MS_AGENTS_REGISTRY_H
#define MS_AGENTS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"

/* Gives a its id and registers it under its name (a->name, or agent-<id>
 * when empty), atomically: if another live agent has the name, nothing is
 * registered and false is returned with err naming the holder.  The
 * registry takes a reference. */
bool registry_add(host *h, agent *a, char *err, size_t errlen);
/* Unregisters a (if registered), freeing its name. */
void registry_remove(host *h, agent *a);
/* The live agent registered under name, with a reference, or NULL. */
agent *registry_whereis(const char *name);

#endif
