/*
 * http_tls.h - TLS engines on OpenSSL (libssl) with memory BIOs, for
 * ms.http.serve's connections (the server role) and the WebSocket
 * client's wss:// (the client role): whoever owns the socket moves the
 * bytes between it and the engine, so TLS needs nothing of the I/O layer
 * and a slow or silent peer costs what a plain one does.
 *
 * One htls per connection, used by one thread at a time (a server
 * connection's task, or the agent that owns a client); a server context
 * (certificate and key) is shared read-only by every connection of a
 * server; a client context belongs to its one connection, except the
 * system store's, which every verifying client without ca_file shares.
 */
#ifndef MS_AGENTS_HTTP_TLS_H
#define MS_AGENTS_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct htls_ctx htls_ctx;
typedef struct htls htls;

/* A server context from PEM files; NULL with err naming the file and
 * OpenSSL's reason. */
htls_ctx *htls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
void htls_ctx_free(htls_ctx *ctx);

/* A client context: the peer's certificate verified against the
 * system's CA store (one context, loaded once and shared: every call
 * takes a reference to it), or against the CAs of ca_file when it is not
 * NULL (a context of its own); nothing verified when !verify.  NULL with
 * err saying why (ca_file unreadable, no memory). */
htls_ctx *htls_client_ctx_new(bool verify, const char *ca_file, char *err, size_t errlen);

/* A server connection's engine; NULL without memory. */
htls *htls_new(htls_ctx *ctx);
/* A client connection's engine for host (a name or an IP literal): SNI
 * names it (not an IP, RFC 6066) and, when the context verifies, the
 * certificate must be for it.  NULL without memory. */
htls *htls_new_client(htls_ctx *ctx, const char *host);
/* Runs the handshake on the bytes put so far: 1 when it is complete, 0
 * when it needs more input (or has output to send first), -2 when it
 * failed: what (cap bytes) says why, the certificate check's reason when
 * it was that ("certificate verify failed (self-signed certificate)"). */
int htls_handshake(htls *t, char *what, size_t cap);
void htls_free(htls *t);
/* Bytes received from the peer; false without memory. */
bool htls_put(htls *t, const char *data, size_t n);
/* Decrypted bytes into buf: > 0 bytes, 0 when more input is needed, -1
 * when the peer closed (close_notify), -2 on a failure (a failed handshake
 * when !htls_established: *what says why). */
int htls_read(htls *t, char *buf, size_t cap, const char **what);
/* As htls_read, but the bytes stay in the engine until htls_consume
 * takes n of them: a caller that can fail between the two loses none. */
int htls_peek(htls *t, char *buf, size_t cap, const char **what);
void htls_consume(htls *t, size_t n);
/* Encrypts data into the output waiting for the peer; false on failure. */
bool htls_write(htls *t, const char *data, size_t n);
/* Queues a close_notify. */
void htls_close_notify(htls *t);
/* The output waiting for the peer: up to cap bytes moved into buf. */
size_t htls_take_output(htls *t, char *buf, size_t cap);
bool htls_has_output(const htls *t);
/* The output waiting for the peer, left in place (*data valid until the
 * next call on t); htls_drop_output then discards its first n bytes. */
size_t htls_peek_output(htls *t, const char **data);
void htls_drop_output(htls *t, size_t n);
bool htls_established(const htls *t);

#endif
