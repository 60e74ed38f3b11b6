/*
 * lms_http.c - ms.http: one table, filled by its parts.  Each part keeps
 * its own file and adds its functions to the table at the top of the
 * stack: the server (lms_http_server.c: serve); the client
 * (ms.http.request) registers the same way.
 */
#include <lua.h>

#include "lms_http.h"
#include "lms_http_server.h"

void lms_http_push_module(lua_State *L) {
    lua_createtable(L, 0, 4);
    lms_http_server_register(L);
    /* The client's part registers here (lms_http_client_register). */
}
