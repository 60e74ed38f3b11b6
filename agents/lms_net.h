/*
 * lms_net.h - ms.net: TCP and Unix stream sockets and listeners for
 * agents, on libms's streams (core/src/stream.c, listen.c) and its name
 * resolution (resolve.c); and the hand-over of a socket to another agent
 * in a message (xfer.c's XH_SOCK handles).
 */
#ifndef MS_AGENTS_LMS_NET_H
#define MS_AGENTS_LMS_NET_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "fwd.h"
#include "ms.h"

/* Pushes the ms.net table (built on first use by ms's __index). */
void lms_net_push_module(lua_State *L);
/* The socket metatables' builders (lms.c's table of metatables). */
void lms_build_socket_mt(lua_State *L);
void lms_build_listener_mt(lua_State *L);
void lms_build_udp_mt(lua_State *L);

/* A socket, connected stream or listener, taking over stream (or
 * listener) with one reference for the new userdata; counted as a's
 * (agent_io_limit).  NULL with err set when a limit refuses it (the
 * stream is then closed).  Used by ms.process for its pipes. */
lsock *lsock_from_stream(agent *a, ms_stream *s, bool is_pipe, char *err, size_t errlen);
/* Pushes a userdata for ls, taking over one reference (also when it
 * raises: hold.h). */
void lsock_push(lua_State *L, lsock *ls);

/* References, for xfer.c (lh_ref_handle / lh_unref_handle): the last one
 * closes the socket if it is still open. */
void lsock_ref(lsock *ls);
void lsock_unref(lsock *ls);
/* Hand-over (xfer.c): may the userdata at idx be sent?  false with err
 * when it is closed, already handed over, or a task of this agent waits
 * on it. */
bool lsock_can_export(lua_State *L, int idx, char *err, size_t errlen);
/* A successful encode took ls: the sender's handle dies, the socket is in
 * flight. */
void lsock_exported(lsock *ls);
/* A decode hands ls (the blob's reference) to L's agent. */
void lsock_push_received(lua_State *L, lsock *ls);

#endif
