/*
 * fuzz_console.c - fuzz target: the console's frame parser (ms-host/console.c:
 * parse_line), fed as the connection task feeds it, in chunks.
 *
 * Input: byte 0 is the chunk size (0: all at once), the rest the bytes a
 * client sends.  Each chunk is appended to the connection's input buffer
 * (as much as fits, as conn_poll reads), then frames are taken off its
 * front until the parser wants more or refuses.
 *
 * What must hold, beyond no crash: every decision is what the protocol of
 * docs/console.md says of the bytes (a model written here from the
 * protocol, not from the code): a frame is "line", a space, the payload's
 * length in decimal digits (at most 65536), a newline within the first 32
 * bytes, then the payload; anything else is refused.  A frame taken
 * carries exactly its payload and leaves exactly the bytes after it; a
 * refused stream stays refused (the connection ends).
 */
#include "console.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { M_MORE, M_LINE, M_BAD };

/* The frame at the front of buf (n bytes): M_LINE with the header's and
 * the payload's lengths, M_MORE, or M_BAD. */
static int model(const char *buf, size_t n, size_t *head, size_t *len) {
    size_t scan = n < CON_HEADER_MAX ? n : CON_HEADER_MAX;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        /* Without its newline yet: more is needed, up to the 32 bytes a
         * header may take. */
        if (n >= CON_HEADER_MAX)
            return M_BAD;
        return M_MORE;
    }
    size_t hl = (size_t)(nl - buf);
    if (hl < 6 || memcmp(buf, "line ", 5) != 0)
        return M_BAD;
    unsigned long v = 0;
    for (size_t i = 5; i < hl; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return M_BAD;
        v = v * 10 + (unsigned long)(buf[i] - '0');
        if (v > CON_MAX_LINE)
            return M_BAD;
    }
    *head = hl + 1;
    *len = v;
    return n < *head + v ? M_MORE : M_LINE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    con_conn *c = malloc(sizeof *c);
    memset(c, 0, offsetof(con_conn, in)); /* as conn_open does */
    /* A copy of the stream as the model sees it: what is still unparsed. */
    char *shadow = malloc(sizeof c->in);
    size_t at = 0;
    bool refused = false;
    while (at < size && !refused) {
        size_t room = sizeof c->in - c->rlen, k = size - at < chunk ? size - at : chunk;
        if (k > room)
            k = room;
        if (k == 0)
            break; /* a full buffer holding no whole frame: the model refused it */
        memcpy(c->in + c->rlen, data + at, k);
        c->rlen += k;
        at += k;
        for (;;) {
            size_t n = c->rlen, head = 0, len = 0;
            int want = model(c->in, n, &head, &len);
            if (want == M_LINE)
                memcpy(shadow, c->in, n); /* to check what the frame leaves */
            xfer *line = NULL;
            parse_result got = parse_line(c, &line);
            int g = got == PARSE_LINE ? M_LINE : got == PARSE_BAD ? M_BAD : M_MORE;
            if (g != want) {
                fprintf(stderr, "fuzz_console: parse_line says %d, the protocol %d (%zu bytes)\n",
                        g, want, n);
                abort();
            }
            if (g == M_BAD) {
                refused = true;
                break;
            }
            if (g == M_MORE)
                break;
            size_t plen;
            const char *p = xfer_get_lstr(line, &plen);
            if (!p || plen != len || memcmp(p, shadow + head, len) != 0 ||
                c->rlen != n - head - len || memcmp(c->in, shadow + head + len, c->rlen) != 0) {
                fprintf(stderr, "fuzz_console: a frame of %zu bytes came out wrong\n", len);
                abort();
            }
            xfer_free(line);
        }
    }
    free(shadow);
    free(c);
    return 0;
}
