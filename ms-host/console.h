/*
 * console.h - the console: `ms-host attach` sessions served on a Unix
 * socket by a dispatcher agent and one session agent per connection.
 */
#ifndef MS_HOST_CONSOLE_H
#define MS_HOST_CONSOLE_H

#include "fwd.h"
#include "ms.h"

/* Serves `ms-host attach` on the Unix socket path (mode 0600; a stale
 * socket there is replaced, anything else refused) until the runtime shuts
 * down, then removes it.  On failure returns an ms_err with err naming
 * path, and nothing is left running. */
int console_start(host *h, const char *path, ms_error *err);

#endif
