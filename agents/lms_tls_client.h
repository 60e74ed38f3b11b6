/*
 * lms_tls_client.h - ms.http._tls_client: a client-side TLS engine on
 * memory buffers for lua/ms/websocket.lua's wss:// (docs/http.md,
 * "WebSocket client").
 */
#ifndef MS_AGENTS_LMS_TLS_CLIENT_H
#define MS_AGENTS_LMS_TLS_CLIENT_H

#include <lua.h>

/* Adds _tls_client to the table at the top of L. */
void lms_tls_client_register(lua_State *L);

#endif
