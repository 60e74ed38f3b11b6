/*
 * lms_http_client.h - ms.http's client: ms.http.request for agents, on
 * libms's HTTP client (libcurl on the driver loop).  docs/http.md,
 * "Client".
 */
#ifndef MS_AGENTS_LMS_HTTP_CLIENT_H
#define MS_AGENTS_LMS_HTTP_CLIENT_H

#include <lua.h>

/* Adds the client's functions (request) to the table at the top of L. */
void lms_http_client_register(lua_State *L);

#include <stdint.h>

#include "facts.h"

/* The client's figures now (facts.h's http_client_metric_descs), any thread. */
void http_client_metric_values(uint64_t out[HCM_COUNT]);
/* The latency histogram's buckets (not cumulative) and sum, any thread. */
void http_client_latency_values(uint64_t buckets[HTTP_CLIENT_LATENCY_BUCKETS], uint64_t *sum_ns);
/* Pushes ms.metrics().http: the figures by key, and latency =
 * { count, sum (seconds), buckets = { { le = seconds, count = cumulative }, ...,
 * { count = all } } }. */
void lms_http_push_metrics(lua_State *L);

#endif
