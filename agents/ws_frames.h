/*
 * ws_frames.h - the one place that drives wslay (RFC 6455 framing) for
 * both sides: the WebSocket client's codec (lms_http_wsc.c) and the
 * server's upgraded connections (http_ws.c).  docs/http.md.
 *
 * wslay reads and writes through callbacks; here its reads come from the
 * bytes fed in and its writes go to an output buffer, so the socket (and
 * TLS) stays with the caller.  wslay reassembles fragments, masks what a
 * client sends and insists on masked frames from a client, answers pings
 * and a close, and refuses a message past max_message with 1009.  A
 * server-side engine also refuses a text message (or a close reason)
 * that is not UTF-8, with 1007.
 *
 * One thread at a time: an engine belongs to its owner (an agent's codec
 * userdata, or a connection's task).
 */
#ifndef MS_AGENTS_WS_FRAMES_H
#define MS_AGENTS_WS_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

/* A message received (or, for the server, one to send). */
typedef struct wsf_msg {
    struct wsf_msg *next;
    uint8_t opcode;             /* WSLAY_TEXT_FRAME, _BINARY_FRAME, _PONG, _CONNECTION_CLOSE, _PING */
    uint16_t status;            /* a close's status code (0: none given) */
    size_t len;
    char data[];                /* NUL-terminated after len */
} wsf_msg;

typedef struct wsf {
    wslay_event_context_ptr ctx;    /* NULL once freed */
    const char *in;             /* bytes being fed (during wsf_feed only) */
    size_t in_len, in_off;
    char *out;                  /* bytes for the peer */
    size_t out_len, out_cap;
    wsf_msg *head, *tail;       /* messages received, oldest first */
    bool failed;                /* out of memory in a callback */
    bool server;
    uint16_t refused;           /* 1007: what this engine refused itself */
} wsf;

/* The payload of the pings an engine's owner sends on its own to see
 * whether a silent peer is still there (wsf_keepalive): their pongs are
 * not delivered as messages. */
#define WSF_KEEPALIVE "ms-keepalive"

/* Makes an engine (server: a server's side); -1 on no memory. */
int wsf_init(wsf *f, bool server, uint64_t max_message);
void wsf_free(wsf *f);
/* Hands bytes from the peer to wslay and lets it answer (pongs, a
 * close's reply): 0, or a wslay error (WSLAY_ERR_NOMEM: out of memory). */
int wsf_feed(wsf *f, const char *p, size_t n);
/* Queues a message (text, binary, ping, pong) or a close and lets wslay
 * write it to the output: 0, WSLAY_ERR_NO_MORE_MSG after a close, or a
 * wslay error. */
int wsf_queue(wsf *f, uint8_t opcode, const char *p, size_t n);
int wsf_queue_close(wsf *f, uint16_t code, const char *reason, size_t n);
/* Queues a keepalive ping (WSF_KEEPALIVE): as wsf_queue. */
int wsf_keepalive(wsf *f);
/* Appends raw bytes to the output (the server's 101 answer); false on no
 * memory. */
bool wsf_out_add(wsf *f, const char *p, size_t n);
/* Drops the first n bytes of the output (written to the peer). */
void wsf_out_consume(wsf *f, size_t n);
/* The oldest message received, taken off the list (free() it), or NULL. */
wsf_msg *wsf_pop(wsf *f);
/* True when nothing more is to be read (a close was received, or wslay
 * stopped reading after a protocol error) and the output is empty. */
bool wsf_finished(const wsf *f);

/* Sec-WebSocket-Accept for a key: base64 of SHA-1(key + GUID) into out
 * (29 bytes with the NUL); false when the key is longer than 64 bytes or
 * the digest fails. */
bool wsf_accept_of(const char *key, size_t n, char out[32]);
/* True when p[0..n) is well-formed UTF-8 (no overlongs, surrogates or
 * code points past U+10FFFF). */
bool wsf_utf8_ok(const char *p, size_t n);

#endif
