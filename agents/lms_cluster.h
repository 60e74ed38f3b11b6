/*
 * lms_cluster.h - ms.cluster (id, hosts, stats) and the cluster-wide part
 * of ms.agent.whereis (docs/cluster.md).
 */
#ifndef MS_AGENTS_LMS_CLUSTER_H
#define MS_AGENTS_LMS_CLUSTER_H

#include <lua.h>

/* Sets ms.cluster in the table at ms_idx. */
void lms_cluster_register(lua_State *L, int ms_idx);
/* ms.agent.whereis(name) found nothing here: asks the cluster (yields),
 * or pushes nil when this host is in none.  Returns the results' count. */
int lms_cluster_whereis(lua_State *L, const char *name);
/* ms.agent.spawn{ host = ID, module | file | fn, name, args } (table at
 * 1): started on that host; yields; the handle, or nil and an error. */
int lms_cluster_spawn(lua_State *L);
/* In a cluster with cluster-wide names (cluster_names.h): replaces
 * ms.agent.spawn in the table at agent_idx by a wrapper that claims a
 * name in the cluster before the spawn.  Does nothing otherwise. */
void lms_cluster_wrap_spawn(lua_State *L, int agent_idx);
/* Pushes ms.metrics().cluster. */
void lms_cluster_push_stats(lua_State *L);

#endif
