/*
 * metrics_http.h - ms-host's metrics endpoint: GET /metrics (Prometheus
 * text format) and /metrics.json over HTTP/1.1, served by tasks on the
 * host's runtime.
 */
#ifndef MS_HOST_METRICS_HTTP_H
#define MS_HOST_METRICS_HTTP_H

#include "fwd.h"
#include "ms.h"

/* Listens on addr ("host:port" or "[v6]:port"; hosts are numeric or
 * localhost) and serves until the runtime shuts down; says where on
 * stderr.  On failure (a malformed address, the port in use...) returns
 * an ms_err with err naming the address, and nothing is left running. */
int metrics_http_start(host *h, const char *addr, ms_error *err);
/* The /metrics.json document for m (agents read now) as one line ending in
 * "\n", with prefix ("\"time\":1.5,") spliced in as its first members;
 * malloc'd, NULL without memory. */
char *metrics_json_line(host *h, const ms_metrics *m, const char *prefix);

#endif
