/*
 * http_ws.h - a WebSocket connection of ms.http.serve after its upgrade
 * (docs/http.md, "WebSocket server"): what the connection's task and the
 * agent running the websocket handler share.
 *
 * The task (lms_http_server.c) owns the socket and TLS: it feeds the
 * bytes it reads to the framing engine (ws_frames.h) and writes what the
 * engine produces.  Complete messages wait in an inbox for the agent's
 * ws:receive(); ws:send() puts messages in an outbox for the task.  Both
 * are bounded (max_buffer bytes): the task stops reading while the inbox
 * is full or its own output has not gone out, and ws:send() waits while
 * the outbox is full, so a slow peer or a slow handler holds a bounded
 * amount of memory.
 *
 * Refcounted: the task and the agent's userdata.  h->lock guards the
 * fields marked so and is a leaf lock (nothing else is taken under it).
 */
#ifndef MS_AGENTS_HTTP_WS_H
#define MS_AGENTS_HTTP_WS_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ms.h"

typedef struct hws hws;

/* ---- the connection task's side ---- */

/* A connection just upgraded: the engine holds the 101 answer (with
 * accept, the Sec-WebSocket-Accept) as its first output.  NULL on no
 * memory. */
hws *hws_new(uint64_t max_message, size_t max_buffer, const char *accept);
/* Each poll of the task: the waker the agent's side wakes it with. */
void hws_task_waker(hws *h, const ms_waker *w);
/* Moves what the agent queued (messages, its close) into the engine once
 * the previous output is out; going_away: the server drains, close with
 * 1001 (once).  false: the engine failed (no memory): end. */
bool hws_pump(hws *h, bool going_away);
/* The engine's output, and how much of it went out. */
const char *hws_output(hws *h, size_t *n);
void hws_written(hws *h, size_t n);
/* Whether the task should read: the engine wants frames, the inbox has
 * room and the output has gone out. */
bool hws_can_read(hws *h);
/* Bytes from the peer.  false: the engine failed (no memory): end. */
bool hws_feed(hws *h, const char *p, size_t n);
/* The close handshake is over (or the engine stopped reading after an
 * error) and the output is out: the task closes the connection. */
bool hws_finished(hws *h);
/* A close frame was sent (the task then bounds the wait for the peer's). */
bool hws_close_sent(hws *h);
/* The oldest message received (free() it), or NULL; the agent's side
 * of the inbox (ws:receive), and the fuzzer's (fuzz/fuzz_ws.c). */
struct wsf_msg;
struct wsf_msg *hws_pop_message(hws *h);
/* Sends a keepalive ping (WSF_KEEPALIVE; its pong is not delivered).
 * false: the engine failed (no memory): end. */
bool hws_keepalive(hws *h);
/* Whether the inbox is full: the task does not read because the handler
 * has not taken what came, so the peer's silence says nothing. */
bool hws_inbox_full(hws *h);
/* The peer did not answer a keepalive in time: the agent's receive sees
 * 1006 with that reason once the task ends (hws_end). */
void hws_timed_out(hws *h);
/* The task ends: the agent's receive and send see "closed" (1006 when no
 * close was exchanged), the close is counted, the task's reference goes. */
void hws_end(hws *h);

/* ---- the agent's side ---- */

/* Pushes the userdata ws (taking a reference to h): its methods are
 * send, receive, ping, close, closed; collected unclosed, it closes the
 * connection with 1011. */
void hws_push(lua_State *L, hws *h);
void hws_ref(hws *h);
void hws_unref(hws *h);
/* Makes the ws object's metatable (once per state). */
void hws_register(lua_State *L);

#endif
