/*
 * lms_http.c - ms.http: one table, filled by its parts, each in its own
 * file adding its functions to the table at the top of the stack: the
 * server (lms_http_server.c: serve) and the client (lms_http_client.c:
 * request, websocket).
 */
#include <lua.h>

#include "lms_http.h"
#include "lms_http_client.h"
#include "lms_http_server.h"

void lms_http_push_module(lua_State *L) {
    lua_createtable(L, 0, 4);
    lms_http_server_register(L);
    lms_http_client_register(L);
}
