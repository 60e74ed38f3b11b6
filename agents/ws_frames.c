/*
 * ws_frames.c - wslay over memory buffers, for the WebSocket client and
 * the server (ws_frames.h).  Nothing here calls Lua: the callbacks only
 * copy bytes, so a raise can never unwind through wslay.
 */
#define _GNU_SOURCE
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ws_frames.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud) {
    wsf *f = ud;
    (void)flags;
    size_t left = f->in_len - f->in_off;
    if (left == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t k = left < len ? left : len;
    memcpy(buf, f->in + f->in_off, k);
    f->in_off += k;
    return (ssize_t)k;
}

bool wsf_out_add(wsf *f, const char *p, size_t n) {
    if (f->out_len + n > f->out_cap) {
        size_t cap = f->out_cap ? f->out_cap : 4096;
        while (cap < f->out_len + n)
            cap *= 2;
        char *grown = realloc(f->out, cap);
        if (!grown)
            return false;
        f->out = grown;
        f->out_cap = cap;
    }
    memcpy(f->out + f->out_len, p, n);
    f->out_len += n;
    return true;
}

void wsf_out_consume(wsf *f, size_t n) {
    if (n >= f->out_len) {
        f->out_len = 0;
        return;
    }
    memmove(f->out, f->out + n, f->out_len - n);
    f->out_len -= n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud) {
    wsf *f = ud;
    (void)flags;
    if (!wsf_out_add(f, (const char *)data, len)) {
        f->failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
    (void)ctx;
    (void)ud;
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

bool wsf_utf8_ok(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud) {
    wsf *f = ud;
    if (arg->opcode == WSLAY_PING || f->refused)
        return; /* wslay queued the pong; after a refusal nothing more is delivered */
    if (arg->opcode == WSLAY_PONG && arg->msg_length == sizeof WSF_KEEPALIVE - 1 &&
        memcmp(arg->msg, WSF_KEEPALIVE, sizeof WSF_KEEPALIVE - 1) == 0)
        return; /* the answer to our own keepalive: its arrival was what counted */
    size_t len = arg->msg_length;
    const uint8_t *p = arg->msg;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && len >= 2) {
        p += 2; /* the status code, given apart; the reason follows */
        len -= 2;
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        len = 0;
    }
    if (f->server && arg->opcode == WSLAY_TEXT_FRAME && !wsf_utf8_ok((const char *)p, len)) {
        /* RFC 6455 8.1: a text message that is not UTF-8 fails the
         * connection with 1007; wslay does not check it. */
        static const char why[] = "text message is not UTF-8";
        f->refused = 1007;
        wslay_event_queue_close(ctx, 1007, (const uint8_t *)why, sizeof why - 1);
        wslay_event_shutdown_read(ctx);
        return;
    }
    wsf_msg *m = malloc(sizeof *m + len + 1);
    if (!m) {
        f->failed = true;
        return;
    }
    m->next = NULL;
    m->opcode = arg->opcode;
    m->status = arg->status_code;
    m->len = len;
    if (len) /* an empty message comes with msg NULL */
        memcpy(m->data, p, len);
    m->data[len] = '\0';
    if (f->tail)
        f->tail->next = m;
    else
        f->head = m;
    f->tail = m;
}

int wsf_init(wsf *f, bool server, uint64_t max_message) {
    memset(f, 0, sizeof *f);
    f->server = server;
    static const struct wslay_event_callbacks cbs = {
        on_recv, on_send, on_genmask, NULL, NULL, NULL, on_msg};
    int rc = server ? wslay_event_context_server_init(&f->ctx, &cbs, f)
                    : wslay_event_context_client_init(&f->ctx, &cbs, f);
    if (rc != 0) {
        f->ctx = NULL;
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(f->ctx, max_message);
    return 0;
}

void wsf_free(wsf *f) {
    if (f->ctx)
        wslay_event_context_free(f->ctx);
    f->ctx = NULL;
    while (f->head) {
        wsf_msg *m = f->head;
        f->head = m->next;
        free(m);
    }
    f->tail = NULL;
    free(f->out);
    f->out = NULL;
    f->out_len = f->out_cap = 0;
}

int wsf_feed(wsf *f, const char *p, size_t n) {
    f->in = p;
    f->in_len = n;
    f->in_off = 0;
    int rc = wslay_event_recv(f->ctx);
    f->in = NULL;
    f->in_len = f->in_off = 0;
    if (!f->failed && rc != WSLAY_ERR_NOMEM) {
        /* Pongs, a close's answer, and the close wslay queued itself for
         * a protocol error (it then returns that error). */
        int src = wslay_event_send(f->ctx);
        bool broken = rc != 0 && rc != WSLAY_ERR_WOULDBLOCK;
        if (!broken)
            rc = src;
        /* A frame wslay's frame reader refuses (a control frame over 125
         * bytes or fragmented, garbage) makes it close with no status
         * code at all.  RFC 6455 7.4.1 has 1002 for that: the server's
         * close (unmasked, so the bytes are known) is rewritten with it. */
        if (broken && f->server && f->out_len >= 2 && (uint8_t)f->out[f->out_len - 2] == 0x88 &&
            f->out[f->out_len - 1] == 0x00) {
            static const char frame[] = "\x88\x10\x03\xea" "protocol error";
            f->out_len -= 2;
            if (!wsf_out_add(f, frame, sizeof frame - 1))
                f->failed = true;
            f->refused = 1002;
        }
    }
    if (f->failed)
        return WSLAY_ERR_NOMEM;
    return rc == WSLAY_ERR_WOULDBLOCK ? 0 : rc;
}

int wsf_queue(wsf *f, uint8_t opcode, const char *p, size_t n) {
    struct wslay_event_msg m = {opcode, (const uint8_t *)p, n};
    int rc = wslay_event_queue_msg(f->ctx, &m);
    if (rc == 0)
        rc = wslay_event_send(f->ctx);
    if (f->failed)
        return WSLAY_ERR_NOMEM;
    return rc == WSLAY_ERR_WOULDBLOCK ? 0 : rc;
}

int wsf_queue_close(wsf *f, uint16_t code, const char *reason, size_t n) {
    int rc = wslay_event_queue_close(f->ctx, code, (const uint8_t *)reason, n);
    if (rc == 0)
        rc = wslay_event_send(f->ctx);
    if (f->failed)
        return WSLAY_ERR_NOMEM;
    return rc == WSLAY_ERR_WOULDBLOCK ? 0 : rc;
}

int wsf_keepalive(wsf *f) {
    return wsf_queue(f, WSLAY_PING, WSF_KEEPALIVE, sizeof WSF_KEEPALIVE - 1);
}

wsf_msg *wsf_pop(wsf *f) {
    wsf_msg *m = f->head;
    if (m) {
        f->head = m->next;
        if (!f->head)
            f->tail = NULL;
        m->next = NULL;
    }
    return m;
}

bool wsf_finished(const wsf *f) {
    return !wslay_event_want_read(f->ctx) && f->out_len == 0;
}

bool wsf_accept_of(const char *key, size_t n, char out[32]) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    char text[64 + sizeof WS_GUID];
    if (n > 64)
        return false;
    memcpy(text, key, n);
    memcpy(text + n, WS_GUID, sizeof WS_GUID);
    unsigned int dlen = 0;
    if (!EVP_Digest(text, n + sizeof WS_GUID - 1, digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
        return false;
    EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
    return true;
}
