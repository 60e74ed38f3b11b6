/*
 * lms_http_wsc.h - the WebSocket client's framing (wslay over memory
 * buffers) for lua/ms/websocket.lua: ms.http._ws_codec and
 * ms.http._ws_key.  docs/http.md, "WebSocket client".
 */
#ifndef MS_AGENTS_LMS_HTTP_WSC_H
#define MS_AGENTS_LMS_HTTP_WSC_H

#include <lua.h>

/* Adds _ws_codec, _ws_key and _ws_accept to the table at the top of L. */
void lms_http_wsc_register(lua_State *L);

#endif
