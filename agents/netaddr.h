/*
 * netaddr.h - the addresses agents give ms.net ("host:port", "[ipv6]:port",
 * "unix:/path", a path, or {host=, port=} | {path=}), read into a plain
 * struct without Lua: lms_net.c raises what these refuse, and
 * fuzz/fuzz_netaddr.c drives them with arbitrary bytes.
 */
#ifndef MS_AGENTS_NETADDR_H
#define MS_AGENTS_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

typedef struct net_addr {
    bool is_pipe;                           /* a Unix socket: path; else host and port */
    char host[256];                         /* a name or a numeric address, NUL-free */
    uint16_t port;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} net_addr;

/* Each returns NULL and fills its part of *out, or returns why it refuses
 * (a constant string naming what is wrong). */
const char *netaddr_set_path(net_addr *out, const char *p, size_t n);
const char *netaddr_set_host(net_addr *out, const char *h, size_t n);
const char *netaddr_set_port(net_addr *out, double port);

/* A whole address string of n bytes (NULs included, and refused). */
const char *netaddr_parse(net_addr *out, const char *s, size_t n);

#endif
