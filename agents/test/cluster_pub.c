/*
 * cluster_pub.c - publishes raw bytes on a NATS subject, for the cluster
 * spec's forged and malformed messages (spec/cluster_spec.lua).
 *
 *   cluster_pub URL SUBJECT HEX...   each HEX (pairs of hex digits, "" for
 *                                    an empty payload) one message
 *
 * Exits 0 once the broker has them all (a flush), 1 otherwise.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unhex(const char *s, char *out) {
    size_t n = strlen(s);
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (char)v;
    }
    return (int)(n / 2);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: cluster_pub URL SUBJECT HEX...\n");
        return 2;
    }
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, argv[1]);
    for (int i = 3; s == NATS_OK && i < argc; i++) {
        char *buf = malloc(strlen(argv[i]) / 2 + 1);
        int n = buf ? unhex(argv[i], buf) : -1;
        if (n < 0) {
            fprintf(stderr, "cluster_pub: argument %d is not hex\n", i);
            free(buf);
            natsConnection_Destroy(nc);
            return 2;
        }
        s = natsConnection_Publish(nc, argv[2], buf, n);
        free(buf);
    }
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(nc, 5000);
    if (s != NATS_OK)
        fprintf(stderr, "cluster_pub: %s\n", natsStatus_GetText(s));
    natsConnection_Destroy(nc);
    nats_Close();
    return s == NATS_OK ? 0 : 1;
}
