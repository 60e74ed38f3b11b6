/*
 * sockaddr.c - numeric socket addresses (see sockaddr.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "sockaddr.h"

int sockaddr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
                   ms_error *err) {
    memset(ss, 0, sizeof *ss);
    if (!host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    socklen_t n;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        n = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        n = sizeof *in6;
    } else {
        return ms_error_set(err, MS_E_INVALID_ARGUMENT,
                            "host \"%s\" is not a numeric IPv4/IPv6 address or localhost", host);
    }
    if (len)
        *len = n;
    return 0;
}
