/*
 * lms_http_server.h - ms.http.serve: an HTTP/1.1 server whose requests
 * are answered by a supervised pool of agents (docs/http.md).
 *
 * The connections are libms tasks in C (lms_http_server.c): they read
 * and parse requests (web/http_request.h), keep the limits, timeouts and
 * the bounded queue, and write the answers; the agents of the pool
 * (lua/ms/http_server.lua) take requests from the queue, run the
 * handler and hand the answer back.
 */
#ifndef MS_AGENTS_LMS_HTTP_SERVER_H
#define MS_AGENTS_LMS_HTTP_SERVER_H

#include <lua.h>
#include <stdint.h>

#include "facts.h"

/* Adds serve (and the server's private primitives, _server) to the
 * table at the top of L (ms.http, built by lms_http.c). */
void lms_http_server_register(lua_State *L);

/* The servers' metrics are counted here, host-wide; facts.c describes
 * them (http_metric_descs), the Prometheus and JSON exporters and
 * ms.metrics().http read them. */

/* The latency histogram's buckets: upper bounds in microseconds, the last
 * one +Inf. */
#define HTTP_LAT_BUCKETS 12
extern const uint64_t http_latency_bounds_us[HTTP_LAT_BUCKETS - 1];

typedef struct http_stats {
    uint64_t v[HTTP_M_COUNT];
    uint64_t latency[HTTP_LAT_BUCKETS];  /* per bucket, not cumulative */
    uint64_t latency_sum_us;
} http_stats;

/* The counters now (relaxed reads: each value is exact, the set is not a
 * snapshot). */
void http_server_stats(http_stats *out);
/* Adds n to a counter (or gauge): http_ws.c counts the WebSocket ones. */
void http_server_stat_add(http_metric m, int64_t n);
/* Pushes ms.metrics().http: the counters by key, and latency = { bounds
 * (seconds, the last one math.huge), counts (per bucket), sum (seconds) }. */
void http_server_push_metrics(lua_State *L);

#endif
