/*
 * collector.h - the metrics collector: a snapshot every metrics_interval,
 * kept as the host's latest (ms.metrics_history) and appended as one JSON
 * line to the metrics file.
 */
#ifndef MS_HOST_COLLECTOR_H
#define MS_HOST_COLLECTOR_H

#include "fwd.h"
#include "ms.h"

/* Starts the collector.  Fails, with err naming the path and the OS
 * error, when the file cannot be opened for appending or the thread
 * cannot start. */
int collector_start(host *h, const char *path, double interval_s, ms_error *err);
/* Stops the collector (if running) and appends the final line, marked
 * "final": true, with why as its "reason".  Idempotent; any thread; safe
 * to call right before _exit. */
void collector_finish(const char *why);

#endif
