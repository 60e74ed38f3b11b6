/*
 * fuzz_ws.c - fuzz target: ms.http.serve's WebSocket framing path after
 * the upgrade (agents/http_ws.c on agents/ws_frames.c, wslay's server
 * side), driven as the connection's task drives it: bytes from a client
 * fed in chunks while the engine wants them and the inbox has room, the
 * engine's output taken as the socket would, and the messages taken out
 * as the agent's ws:receive() would.  (What the agent sends goes through
 * the same engine, wslay's writer, which the client side's specs and the
 * server's echo specs exercise; not fuzzed here.)
 *
 * Input: byte 0 is the chunk size (0: all at once), byte 1 picks
 * max_message (16 << (b % 12) bytes), the rest the bytes a client sends.
 *
 * What must hold, beyond no crash and no leak:
 *  - every text message delivered is UTF-8 and no message is longer than
 *    max_message;
 *  - the output is the 101 answer, then well-formed server frames:
 *    unmasked, no reserved bits, known opcodes, control frames of at most
 *    125 bytes and unfragmented, nothing after a close frame;
 *  - a close the server sends on its own carries 1002, 1007 or 1009 (or
 *    echoes the client's close code);
 *  - the messages delivered do not depend on how the bytes were cut: fed
 *    whole and fed in chunks, the same messages come out (as long as the
 *    connection is not failed, where how far wslay read may differ).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_ws.h"
#include "ws_frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run_out {
    char *msgs;                 /* each: opcode, 8-byte length, bytes */
    size_t len, cap;
    bool failed;                /* the server sent a close of its own */
} run_out;

static void add(run_out *o, const void *p, size_t n) {
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n)
            cap *= 2;
        o->msgs = realloc(o->msgs, cap);
        if (!o->msgs)
            abort();
        o->cap = cap;
    }
    memcpy(o->msgs + o->len, p, n);
    o->len += n;
}

/* Checks the server's output bytes: the 101, then frames (see above). */
static void check_output(const char *out, size_t n, bool *closed, uint16_t *close_code) {
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n";
    const char *end = memmem(out, n, "\r\n\r\n", 4);
    if (n < sizeof head - 1 || memcmp(out, head, sizeof head - 1) != 0 || !end)
        abort();
    const uint8_t *p = (const uint8_t *)end + 4, *e = (const uint8_t *)out + n;
    while (p < e) {
        if (*closed)
            abort(); /* a frame after the close */
        if (e - p < 2)
            abort();
        uint8_t b0 = p[0], b1 = p[1];
        uint8_t op = b0 & 0x0F;
        if ((b0 & 0x70) || (b1 & 0x80))
            abort(); /* reserved bits, or masked */
        uint64_t len = b1 & 0x7F;
        size_t off = 2;
        if (len == 126) {
            if (e - p < 4)
                abort();
            len = (uint64_t)p[2] << 8 | p[3];
            off = 4;
        } else if (len == 127) {
            if (e - p < 10)
                abort();
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            off = 10;
        }
        if ((uint64_t)(e - p) - off < len)
            abort();
        bool ctrl = op >= 8;
        if (!(op == 1 || op == 2 || op == 8 || op == 9 || op == 10))
            abort();
        if (ctrl && (len > 125 || !(b0 & 0x80)))
            abort();
        if (op == 8) {
            *closed = true;
            *close_code = len >= 2 ? (uint16_t)(p[off] << 8 | p[off + 1]) : 1005;
        }
        p += off + len;
    }
}

static void run(const uint8_t *data, size_t size, size_t chunk, uint64_t max, run_out *o) {
    hws *h = hws_new(max, 64 * 1024, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    if (!h)
        abort();
    char *out = NULL;
    size_t out_len = 0;
    size_t pos = 0;
    int idle = 0;
    while (idle < 3) {
        bool progress = false;
        if (!hws_pump(h, false))
            abort();
        size_t n;
        const char *b = hws_output(h, &n);
        if (n) {
            out = realloc(out, out_len + n);
            if (!out)
                abort();
            memcpy(out + out_len, b, n);
            out_len += n;
            hws_written(h, n);
            progress = true;
        }
        if (hws_finished(h))
            break;
        if (pos < size && hws_can_read(h)) {
            size_t k = chunk == 0 || size - pos < chunk ? size - pos : chunk;
            if (!hws_feed(h, (const char *)data + pos, k))
                abort();
            pos += k;
            progress = true;
        }
        for (struct wsf_msg *m; (m = hws_pop_message(h));) {
            if (m->len > max)
                abort();
            if (m->opcode == WSLAY_TEXT_FRAME && !wsf_utf8_ok(m->data, m->len))
                abort();
            uint64_t len = m->len;
            add(o, &m->opcode, 1);
            add(o, &len, sizeof len);
            add(o, m->data, m->len);
            free(m);
            progress = true;
        }
        idle = progress ? 0 : idle + 1;
        if (!progress && pos >= size)
            break;
    }
    bool closed = false;
    uint16_t code = 0;
    check_output(out ? out : "", out_len, &closed, &code);
    if (closed && !(code == 1002 || code == 1007 || code == 1009 || code == 1005 ||
                    (code >= 1000 && code <= 4999)))
        abort();
    o->failed = closed && (code == 1002 || code == 1007 || code == 1009);
    free(out);
    hws_end(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    size_t chunk = data[0];
    uint64_t max = (uint64_t)16 << (data[1] % 12);
    data += 2;
    size -= 2;
    run_out whole = {0}, cut = {0};
    run(data, size, 0, max, &whole);
    if (chunk) {
        run(data, size, chunk, max, &cut);
        if (!whole.failed && !cut.failed &&
            (whole.len != cut.len || (whole.len && memcmp(whole.msgs, cut.msgs, whole.len) != 0)))
            abort();
    }
    free(whole.msgs);
    free(cut.msgs);
    return 0;
}
