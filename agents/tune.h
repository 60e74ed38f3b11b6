/*
 * tune.h - live tuning of the host and its runtime: the primitive under
 * ms.tune, SIGHUP's reload and the tuner agents.
 */
#ifndef MS_AGENTS_TUNE_H
#define MS_AGENTS_TUNE_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"

typedef struct tune_req {
    const char *name;           /* a live profile field */
    double value;               /* normalised: count, seconds or bytes */
} tune_req;

typedef struct tune_change {
    const char *name;
    double old_value, new_value;
} tune_change;

/* Applies every request or none (returns the number changed, filling out
 * if not NULL; or a negative ms_err code with a message in err naming the
 * field and value).  source names who asked ("ms.tune", "SIGHUP"). */
int host_tune(host *h, const tune_req *req, int n, const char *source, tune_change *out,
              char *err, size_t errlen);
bool host_is_live_field(const char *name);
/* The host's own live settings now (the profile's live fields that are
 * not libms's), names and values in profile order, at most max; returns
 * how many.  Takes h->lock; the names are static. */
int host_settings(host *h, const char **names, double *values, int max);
/* Sets one of them (a profile value: bytes or a count); other names are
 * ignored.  Takes h->lock. */
void host_setting_set(host *h, const char *name, double value);
/* Pushes the C function behind ms.tune (ms._tune). */
void tune_push_primitive(lua_State *L);

#endif
