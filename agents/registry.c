/*
 * registry.c - the host's registry of live agents.
 *
 * Every live agent is on one list (ms.agents(), metrics) and, by name, in
 * a hash table of chains (whereis).  Both are under the host lock, and a
 * name is checked and taken in the same critical section: two spawns of
 * one name at the same moment cannot both succeed.  The name is freed
 * when the agent exits (before its monitors hear of it), so a supervisor
 * restarting it on the notice can take the name again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "host.h"
#include "registry.h"

/* FNV-1a: names are short; any decent spread will do. */
static size_t name_hash(const char *s) {
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Under the host lock. */
static agent *find_locked(host *h, const char *name) {
    if (!h->name_buckets)
        return NULL;
    for (agent *a = h->name_buckets[name_hash(name) & (h->nbuckets - 1)]; a; a = a->next_name)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

/* Doubles the table when it is as full as it has buckets (under the host
 * lock).  Without memory the table stays as it is: chains get longer. */
static void grow_locked(host *h) {
    if (h->nnamed < h->nbuckets)
        return;
    size_t n = h->nbuckets ? h->nbuckets * 2 : 64;
    agent **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        for (agent *a = h->name_buckets[i], *next; a; a = next) {
            next = a->next_name;
            size_t k = name_hash(a->name) & (n - 1);
            a->next_name = b[k];
            b[k] = a;
        }
    }
    free(h->name_buckets);
    h->name_buckets = b;
    h->nbuckets = n;
}

bool registry_add(host *h, agent *a, char *err, size_t errlen) {
    pthread_mutex_lock(&h->lock);
    if (a->name[0]) {
        agent *other = find_locked(h, a->name);
        if (other) {
            unsigned long long id = (unsigned long long)other->id;
            pthread_mutex_unlock(&h->lock);
            snprintf(err, errlen, "the name '%s' is taken by agent %llu", a->name, id);
            return false;
        }
    }
    a->id = h->next_agent_id++;
    if (!a->name[0]) /* named before anyone can read it through the registry */
        snprintf(a->name, sizeof a->name, "agent-%llu", (unsigned long long)a->id);
    /* An explicit name that looks like another agent's default one ("agent-7")
     * could still be taken by that agent: defaults are checked too. */
    else if (find_locked(h, a->name)) {
        pthread_mutex_unlock(&h->lock);
        snprintf(err, errlen, "the name '%s' is taken", a->name);
        return false;
    }
    grow_locked(h);
    if (h->name_buckets) {
        size_t k = name_hash(a->name) & (h->nbuckets - 1);
        a->next_name = h->name_buckets[k];
        h->name_buckets[k] = a;
        a->named = true;
        h->nnamed++;
    }
    a->next_reg = h->agents;
    if (h->agents)
        h->agents->prev_reg = a;
    h->agents = a;
    h->nagents++;
    agent_ref(a);
    pthread_mutex_unlock(&h->lock);
    return true;
}

static void unname_locked(host *h, agent *a) {
    if (!a->named)
        return;
    agent **p = &h->name_buckets[name_hash(a->name) & (h->nbuckets - 1)];
    while (*p && *p != a)
        p = &(*p)->next_name;
    if (*p)
        *p = a->next_name;
    a->next_name = NULL;
    a->named = false;
    h->nnamed--;
}

void registry_remove(host *h, agent *a) {
    pthread_mutex_lock(&h->lock);
    if (a->prev_reg)
        a->prev_reg->next_reg = a->next_reg;
    else if (h->agents == a)
        h->agents = a->next_reg;
    else {
        pthread_mutex_unlock(&h->lock);
        return; /* not registered */
    }
    if (a->next_reg)
        a->next_reg->prev_reg = a->prev_reg;
    a->next_reg = a->prev_reg = NULL;
    unname_locked(h, a);
    h->nagents--;
    pthread_mutex_unlock(&h->lock);
    agent_unref(a);
}

agent *registry_whereis(const char *name) {
    host *h = host_get();
    if (!h || !name || !*name)
        return NULL;
    pthread_mutex_lock(&h->lock);
    agent *found = find_locked(h, name);
    if (found)
        agent_ref(found);
    pthread_mutex_unlock(&h->lock);
    return found;
}
