/*
 * fuzz_netaddr.c - fuzz target: the address strings agents give ms.net
 * (agents/netaddr.c), and the core's numeric parser behind them
 * (core/src/sockaddr.c).
 *
 * What must hold: netaddr_parse accepts or refuses with a reason, never
 * crashing or reading past the input; what it accepts is well formed (a
 * path or host of the right length with no NUL, a host with no bracket);
 * a host and port read back the same from "[host]:port"; and a host that
 * is a numeric IPv4 or IPv6 address is one sockaddr_parse accepts, with
 * the same port.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"
#include "sockaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_netaddr: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly size bytes, so ASan catches a read past it */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    net_addr a;
    const char *why = netaddr_parse(&a, s, size);
    if (why) {
        check(why[0] != '\0', "a refusal without a reason");
        free(s);
        return 0;
    }
    if (a.is_pipe) {
        size_t n = strlen(a.path);
        check(n > 0 && n < sizeof a.path, "a path of a bad length");
        check(memcmp(s + size - n, a.path, n) == 0, "the path is not the input's tail");
        free(s);
        return 0;
    }
    size_t hn = strlen(a.host);
    check(hn > 0 && hn < sizeof a.host, "a host of a bad length");
    check(!strchr(a.host, '[') && !strchr(a.host, ']'), "a host with a bracket");
    /* read back from the bracketed form */
    char again[sizeof a.host + 16];
    int n = snprintf(again, sizeof again, "[%s]:%u", a.host, (unsigned)a.port);
    net_addr b;
    why = netaddr_parse(&b, again, (size_t)n);
    if (a.host[0] != '/' && a.host[0] != '.') {
        check(why == NULL, "the bracketed form of an accepted address is refused");
        check(!b.is_pipe && strcmp(a.host, b.host) == 0 && a.port == b.port,
              "the bracketed form reads back differently");
    }
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, a.host, buf) == 1 || inet_pton(AF_INET6, a.host, buf) == 1) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        ms_error err;
        check(sockaddr_parse(a.host, a.port, &ss, &len, &err) == 0,
              "sockaddr_parse refuses a numeric host");
        uint16_t port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                                : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        check(port == a.port, "sockaddr_parse changed the port");
    }
    free(s);
    return 0;
}
