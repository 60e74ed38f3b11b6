/*
 * lms_http.h - the ms.http table, built in C on first use (ms_lazy_index
 * in lms.c): the client's functions (lms_http_client.c) and the
 * server's.
 */
#ifndef MS_AGENTS_LMS_HTTP_H
#define MS_AGENTS_LMS_HTTP_H

#include <lua.h>

/* Pushes a new ms.http table. */
void lms_http_push_module(lua_State *L);

#endif
