/*
 * lms_http.c - the ms.http table (see lms_http.h).
 */
#include "lms_http.h"
#include "lms_http_client.h"

void lms_http_push_module(lua_State *L) {
    lua_createtable(L, 0, 4);
    lms_http_client_register(L);
}
