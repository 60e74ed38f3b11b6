/*
 * http_client.h - the HTTP client's part of the driver (http_client.c):
 * libcurl's multi interface on the driver loop.  The API is ms.h's
 * ms_http_request_*.
 */
#ifndef MS_HTTP_CLIENT_H
#define MS_HTTP_CLIENT_H

#include "driver.h"

/* Driver thread, when the driver stops: every request still in flight
 * ends with MS_HTTP_SHUTDOWN, the multi handle and its connections are
 * closed, and the client's libuv handles are closed with callbacks that
 * free them.  Idempotent. */
void httpc_stop(driver *d);

#endif
