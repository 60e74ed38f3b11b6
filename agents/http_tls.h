/*
 * http_tls.h - TLS for ms.http.serve's connections, on OpenSSL (libssl)
 * with memory BIOs: the connection task moves the bytes between its
 * socket and the TLS engine, so TLS needs nothing of the I/O layer and a
 * slow or silent peer costs what a plain one does.
 *
 * One htls per connection, used by that connection's task only; the
 * context (certificate and key) is shared read-only by every connection
 * of a server.
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

/* A connection's engine; NULL without memory. */
htls *htls_new(htls_ctx *ctx);
void htls_free(htls *t);
/* Bytes received from the peer; false without memory. */
bool htls_put(htls *t, const char *data, size_t n);
/* Decrypted bytes into buf: > 0 bytes, 0 when more input is needed, -1
 * when the peer closed (close_notify), -2 on a failure (a failed handshake
 * when !htls_established: *what says why). */
int htls_read(htls *t, char *buf, size_t cap, const char **what);
/* Encrypts data into the output waiting for the peer; false on failure. */
bool htls_write(htls *t, const char *data, size_t n);
/* Queues a close_notify. */
void htls_close_notify(htls *t);
/* The output waiting for the peer: up to cap bytes moved into buf. */
size_t htls_take_output(htls *t, char *buf, size_t cap);
bool htls_has_output(const htls *t);
bool htls_established(const htls *t);

#endif
