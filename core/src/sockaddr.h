/*
 * sockaddr.h - numeric socket addresses for the core's TCP listeners and
 * connections (listen.c) and UDP sockets (udp.c): one parser for both.
 */
#ifndef MS_SOCKADDR_H
#define MS_SOCKADDR_H

#include <stdint.h>
#include <sys/socket.h>

#include "ms.h"

/* Fills *ss (and *len, when not NULL) from a numeric IPv4 or IPv6 address
 * or "localhost" (NULL too: 127.0.0.1) and a port.  0, or
 * MS_E_INVALID_ARGUMENT in err naming the host.  Names are resolved before
 * (ms_resolve), never here. */
int sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
                   ms_error *err);

#endif
