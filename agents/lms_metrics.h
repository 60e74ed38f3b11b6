/*
 * lms_metrics.h - ms.metrics() and ms.metrics_history().
 */
#ifndef MS_AGENTS_LMS_METRICS_H
#define MS_AGENTS_LMS_METRICS_H

#include <lua.h>

/* Sets ms.metrics (a closure over the events module at -1) and
 * ms.metrics_history in the ms table at ms_idx. */
void lms_metrics_register(lua_State *L, int ms_idx);

#endif
