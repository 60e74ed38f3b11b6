/*
 * lms_http.h - the ms.http table, built in C on first use (ms's __index,
 * lms.c): the server's part (lms_http_server.c: serve) and the client's
 * (ms.http.request) each add their functions through a register call.
 */
#ifndef MS_AGENTS_LMS_HTTP_H
#define MS_AGENTS_LMS_HTTP_H

#include <lua.h>

/* Pushes a new ms.http table. */
void lms_http_push_module(lua_State *L);

#endif
