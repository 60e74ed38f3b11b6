/*
 * netaddr.c - address strings for ms.net (netaddr.h).
 *
 * Strict where a lenient reading would surprise: the port is 1 to 5
 * decimal digits and nothing else (strtol alone would take " 80", "+80"
 * and "-0"), a host or path with a NUL byte is refused rather than cut
 * short at it, a host never holds a bracket, and in a string an IPv6
 * address needs its brackets ("::1:80" would read as either "::1" port 80
 * or "::1:80" with no port).  So every address read from a string reads
 * back the same from "[host]:port".
 */
#include "netaddr.h"

#include <string.h>

const char *netaddr_set_path(net_addr *out, const char *p, size_t n) {
    if (n == 0)
        return "the Unix socket path is empty";
    if (n >= sizeof out->path)
        return "the Unix socket path is too long (at most 107 bytes)";
    if (memchr(p, '\0', n))
        return "the Unix socket path contains a NUL byte";
    out->is_pipe = true;
    memcpy(out->path, p, n);
    out->path[n] = '\0';
    return NULL;
}

const char *netaddr_set_host(net_addr *out, const char *h, size_t n) {
    if (n == 0)
        return "the host is empty";
    if (n >= sizeof out->host)
        return "the host name is too long";
    if (memchr(h, '\0', n))
        return "the host contains a NUL byte";
    if (memchr(h, '[', n) || memchr(h, ']', n))
        return "the host contains a bracket (an IPv6 address is written [addr]:port)";
    memcpy(out->host, h, n);
    out->host[n] = '\0';
    return NULL;
}

const char *netaddr_set_port(net_addr *out, double d) {
    if (!(d >= 0 && d <= 65535) || d != (double)(int)d)
        return "the port must be a whole number from 0 to 65535";
    out->port = (uint16_t)d;
    return NULL;
}

/* 1 to 5 decimal digits, at most 65535. */
static const char *parse_port(net_addr *out, const char *s, size_t n) {
    if (n == 0 || n > 5)
        return "the port must be a whole number from 0 to 65535";
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "the port must be a whole number from 0 to 65535";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return "the port must be a whole number from 0 to 65535";
    out->port = (uint16_t)v;
    return NULL;
}

const char *netaddr_parse(net_addr *out, const char *s, size_t n) {
    memset(out, 0, sizeof *out);
    if (n > 5 && memcmp(s, "unix:", 5) == 0)
        return netaddr_set_path(out, s + 5, n - 5);
    if (n > 0 && (s[0] == '/' || s[0] == '.'))
        return netaddr_set_path(out, s, n);
    const char *host = s, *colon = NULL;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close + 1 >= s + n || close[1] != ':')
            return "an IPv6 address needs the form [addr]:port";
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        for (const char *p = s + n; p > s; p--) {
            if (p[-1] == ':') {
                colon = p - 1;
                break;
            }
        }
        if (!colon)
            return "no port (\":PORT\")";
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen))
            return "an IPv6 address needs the form [addr]:port";
    }
    const char *why = netaddr_set_host(out, host, hlen);
    if (why)
        return why;
    return parse_port(out, colon + 1, (size_t)(s + n - colon - 1));
}
