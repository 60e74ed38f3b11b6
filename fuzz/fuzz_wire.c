/*
 * fuzz_wire.c - fuzz target: the cluster's wire decoder (agents/
 * cluster_wire.c), which reads whatever anyone publishes on a host's
 * subject.
 *
 * Input: the bytes of one envelope, in a heap block of exactly their size
 * (so that ASan sees a read past its end).
 *
 * What must hold: wire_decode either refuses (with "malformed message at
 * byte N of M ..." and an empty blob, every handle released) or rebuilds
 * a blob that wire_encode turns back into exactly the input bytes (the
 * format has one encoding per value, so the decoder took nothing the
 * encoder cannot write).  Agent addresses resolve to stand-in agents, host
 * 0 and agent 0 are refused as cluster.c refuses them, and every
 * reference is released exactly once (a double release is a use after
 * free for ASan, a missing one a leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cluster_wire.h"
#include "host.h"
#include "xfer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* agent_new reads the defaults of a host under its lock: a host with
 * nothing else (no runtime: the stand-ins never run). */
static host fake_host = {.lock = PTHREAD_MUTEX_INITIALIZER};

static agent *resolve(void *ctx, uint64_t hid, uint64_t id) {
    (void)ctx;
    if (hid == 0 || id == 0)
        return NULL;
    agent *a = agent_new(&fake_host);
    if (!a)
        return NULL;
    a->id = id;
    a->remote_host = hid;
    return a;
}

static void addr_of(void *ctx, agent *a, uint64_t *hid, uint64_t *id) {
    (void)ctx;
    *hid = a->remote_host;
    *id = a->id;
}

static const wire_peer PEER = {addr_of, resolve, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *bytes = malloc(size ? size : 1);
    if (!bytes)
        return 0;
    memcpy(bytes, data, size);
    xfer x;
    xfer_init(&x);
    wire_header h;
    char err[300];
    if (!wire_decode(bytes, size, &h, &x, &PEER, err, sizeof err)) {
        if (strncmp(err, "malformed message at byte ", 26) != 0 &&
            strncmp(err, "out of memory", 13) != 0) {
            fprintf(stderr, "unexpected refusal: %s\n", err);
            abort();
        }
        if (x.len != 0 || x.nhandles != 0) {
            fprintf(stderr, "a refused message left a blob of %zu bytes\n", x.len);
            abort();
        }
    } else {
        wbuf out = {0};
        if (!wire_encode(&out, &h, &x, &PEER, err, sizeof err)) {
            fprintf(stderr, "a decoded message does not encode: %s\n", err);
            abort();
        }
        if (out.len != size || memcmp(out.p, bytes, size) != 0) {
            fprintf(stderr, "round trip: %zu bytes in, %zu out\n", size, out.len);
            abort();
        }
        wbuf_free(&out);
    }
    xfer_clear(&x);
    free(bytes);
    return 0;
}
