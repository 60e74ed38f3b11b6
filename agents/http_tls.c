/*
 * http_tls.c - TLS engines for ms.http.serve and the WebSocket client
 * (http_tls.h) on OpenSSL's memory BIOs: what the socket delivers goes
 * into the read BIO, what the engine produces (handshake records,
 * encrypted data, close_notify) accumulates in the write BIO until the
 * socket's owner sends it.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_tls.h"

struct htls_ctx {
    SSL_CTX *ctx;
};

struct htls {
    SSL *ssl;
    BIO *rbio, *wbio;           /* owned by ssl */
};

static void reason(char *err, size_t errlen, const char *what, const char *path) {
    unsigned long e = ERR_get_error();
    char text[200] = "unknown reason";
    if (e)
        ERR_error_string_n(e, text, sizeof text);
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, path, text);
}

/* A context for method's role, TLS 1.2 at least; NULL with err. */
static htls_ctx *ctx_new(const SSL_METHOD *method, char *err, size_t errlen) {
    htls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "no memory for a TLS context");
        return NULL;
    }
    c->ctx = SSL_CTX_new(method);
    if (!c->ctx) {
        reason(err, errlen, "cannot make a TLS context", "");
        free(c);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    return c;
}

htls_ctx *htls_ctx_new(const char *cert, const char *key, char *err, size_t errlen) {
    htls_ctx *c = ctx_new(TLS_server_method(), err, errlen);
    if (!c)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) {
        reason(err, errlen, "tls.cert: cannot use the certificate", cert);
    } else if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
        reason(err, errlen, "tls.key: cannot use the key", key);
    } else if (SSL_CTX_check_private_key(c->ctx) != 1) {
        reason(err, errlen, "tls.key: does not match the certificate", key);
    } else {
        return c;
    }
    SSL_CTX_free(c->ctx);
    free(c);
    return NULL;
}

void htls_ctx_free(htls_ctx *c) {
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

/* The client context that verifies against the system's CA store, made
 * once and shared by every such connection: loading the store reads and
 * parses every CA certificate (tens of milliseconds), which a context per
 * connection would pay at each connect.  An SSL_CTX may serve SSL
 * objects on many threads at once; each connection's htls_ctx holds a
 * reference (SSL_CTX_up_ref).  Written once under system_lock (NULL
 * until it could be made, then for the process's life). */
static pthread_mutex_t system_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *system_ctx;

/* OpenSSL's default places (SSL_CERT_FILE and SSL_CERT_DIR override
 * them, as for SSL_CTX_set_default_verify_paths): the CA bundle, read
 * now, and the hashed directory, looked up by name when a chain needs
 * it.  Not SSL_CTX_set_default_verify_paths itself: OpenSSL 3 adds to
 * those its "store" loader, which lists the directory (opendir) at
 * verification time; that buys nothing over the hashed lookup, and
 * ThreadSanitizer cannot follow opendir's descriptor (it sees the
 * closedir only) and reports a race with whatever socket had the number
 * before.  false when neither could be used. */
static bool load_system_store(SSL_CTX *ctx) {
    const char *file = getenv(X509_get_default_cert_file_env());
    const char *dir = getenv(X509_get_default_cert_dir_env());
    bool from_file = SSL_CTX_load_verify_file(ctx, file ? file : X509_get_default_cert_file()) == 1;
    bool from_dir = SSL_CTX_load_verify_dir(ctx, dir ? dir : X509_get_default_cert_dir()) == 1;
    ERR_clear_error(); /* a missing bundle is fine when the directory is there */
    return from_file || from_dir;
}

static htls_ctx *client_ctx_system(char *err, size_t errlen) {
    htls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "no memory for a TLS context");
        return NULL;
    }
    pthread_mutex_lock(&system_lock);
    if (!system_ctx) {
        htls_ctx *made = ctx_new(TLS_client_method(), err, errlen);
        if (made) {
            SSL_CTX_set_verify(made->ctx, SSL_VERIFY_PEER, NULL);
            if (load_system_store(made->ctx)) {
                system_ctx = made->ctx;
                made->ctx = NULL;
            } else {
                snprintf(err, errlen, "cannot load the system's CA store (%s, %s)",
                         X509_get_default_cert_file(), X509_get_default_cert_dir());
            }
            htls_ctx_free(made);
        }
    }
    if (system_ctx)
        SSL_CTX_up_ref(system_ctx);
    c->ctx = system_ctx;
    pthread_mutex_unlock(&system_lock);
    if (!c->ctx) {
        free(c);
        return NULL;
    }
    return c;
}

htls_ctx *htls_client_ctx_new(bool verify, const char *ca_file, char *err, size_t errlen) {
    if (verify && !ca_file)
        return client_ctx_system(err, errlen);
    htls_ctx *c = ctx_new(TLS_client_method(), err, errlen);
    if (!c)
        return NULL;
    if (!verify) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
        return c;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    /* ca_file replaces the system's store rather than adding to it: a
     * private CA is then the only one trusted. */
    if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) == 1)
        return c;
    reason(err, errlen, "ca_file: cannot read", ca_file);
    SSL_CTX_free(c->ctx);
    free(c);
    return NULL;
}

/* An engine on ctx with its two memory BIOs, in neither role yet. */
static htls *engine_new(htls_ctx *ctx) {
    htls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "more input", not the end. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    return t;
}

htls *htls_new(htls_ctx *ctx) {
    htls *t = engine_new(ctx);
    if (t)
        SSL_set_accept_state(t->ssl);
    return t;
}

htls *htls_new_client(htls_ctx *ctx, const char *host) {
    htls *t = engine_new(ctx);
    if (!t)
        return NULL;
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    bool ok = true;
    /* SNI carries names only (RFC 6066); an IP literal is checked
     * against the certificate's IP addresses instead of its names. */
    if (!is_ip)
        ok = SSL_set_tlsext_host_name(t->ssl, host) == 1;
    if (ok && SSL_CTX_get_verify_mode(ctx->ctx) != SSL_VERIFY_NONE)
        ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1
                   : SSL_set1_host(t->ssl, host) == 1;
    if (!ok) {
        htls_free(t);
        ERR_clear_error();
        return NULL;
    }
    return t;
}

int htls_handshake(htls *t, char *what, size_t cap) {
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    /* Without verification OpenSSL still records the chain's verdict:
     * only a context that verifies failed for it. */
    long verified = SSL_get_verify_mode(t->ssl) == SSL_VERIFY_NONE ? X509_V_OK
                                                                   : SSL_get_verify_result(t->ssl);
    unsigned long code = ERR_peek_error();
    if (verified != X509_V_OK) {
        snprintf(what, cap, "certificate verify failed (%s)",
                 X509_verify_cert_error_string(verified));
    } else {
        const char *why = code ? ERR_reason_error_string(code) : NULL;
        snprintf(what, cap, "handshake failed (%s)", why ? why : "protocol error");
    }
    ERR_clear_error();
    return -2;
}

void htls_free(htls *t) {
    if (!t)
        return;
    SSL_free(t->ssl); /* and its BIOs */
    free(t);
}

bool htls_put(htls *t, const char *data, size_t n) {
    return BIO_write(t->rbio, data, (int)n) == (int)n;
}

/* SSL_read or SSL_peek's result as htls_read's. */
static int read_result(htls *t, int n, const char **what) {
    if (n > 0)
        return n;
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return -1;
    default: {
        unsigned long e = ERR_peek_error();
        *what = e ? ERR_reason_error_string(e) : "protocol error";
        if (!*what)
            *what = "protocol error";
        ERR_clear_error();
        return -2;
    }
    }
}

int htls_read(htls *t, char *buf, size_t cap, const char **what) {
    return read_result(t, SSL_read(t->ssl, buf, (int)cap), what);
}

int htls_peek(htls *t, char *buf, size_t cap, const char **what) {
    return read_result(t, SSL_peek(t->ssl, buf, (int)cap), what);
}

void htls_consume(htls *t, size_t n) {
    char scratch[4096];
    while (n > 0) {
        int k = SSL_read(t->ssl, scratch, (int)(n < sizeof scratch ? n : sizeof scratch));
        if (k <= 0)
            break;
        n -= (size_t)k;
    }
    ERR_clear_error();
}

bool htls_write(htls *t, const char *data, size_t n) {
    size_t done = 0;
    while (done < n) {
        int k = SSL_write(t->ssl, data + done, (int)(n - done > 1 << 30 ? 1 << 30 : n - done));
        if (k <= 0) {
            ERR_clear_error();
            return false;
        }
        done += (size_t)k;
    }
    return true;
}

void htls_close_notify(htls *t) {
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t htls_take_output(htls *t, char *buf, size_t cap) {
    int n = BIO_read(t->wbio, buf, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

bool htls_has_output(const htls *t) {
    return BIO_ctrl_pending(t->wbio) > 0;
}

size_t htls_peek_output(htls *t, const char **data) {
    char *p = NULL;
    long n = BIO_get_mem_data(t->wbio, &p);
    *data = p;
    return n > 0 ? (size_t)n : 0;
}

void htls_drop_output(htls *t, size_t n) {
    char scratch[4096];
    while (n > 0) {
        int k = BIO_read(t->wbio, scratch, (int)(n < sizeof scratch ? n : sizeof scratch));
        if (k <= 0)
            break;
        n -= (size_t)k;
    }
}

bool htls_established(const htls *t) {
    return SSL_is_init_finished(t->ssl) == 1;
}
