#!/usr/bin/python3
# Hostile wss:// peers for spec/http_client_spec.lua, on loopback, port
# chosen by the kernel and printed as the first line of stdout; Debian's
# /usr/bin/python3 (socket, ssl, base64, hashlib from its standard library;
# read_head from ws_clients.py beside it).
#
#   wss_peers.py hangup             reads the client's first bytes (its
#                                   ClientHello), then closes: a peer gone
#                                   in the middle of the TLS handshake
#   wss_peers.py garbage            answers the ClientHello with bytes that
#                                   are no TLS record, then closes
#   wss_peers.py silent             accepts and never answers
#   wss_peers.py midframe CERT KEY  completes TLS and the WebSocket upgrade,
#                                   sends the first bytes of a frame that
#                                   announces 100 bytes, then closes the TCP
#                                   connection (no close_notify, no close frame)
import base64
import hashlib
import socket
import ssl
import sys
import time

from ws_clients import read_head

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def main():
    mode = sys.argv[1]
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    print(lst.getsockname()[1], flush=True)
    tls = None
    if mode == "midframe":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    held = []
    while True:
        c, _ = lst.accept()
        try:
            if mode == "hangup":
                c.recv(100)
                c.close()
            elif mode == "garbage":
                c.recv(4096)
                c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\xff" * 64)
                time.sleep(0.2)
                c.close()
            elif mode == "silent":
                held.append(c)
            elif mode == "midframe":
                s = tls.wrap_socket(c, server_side=True)
                head = read_head(s)
                key = ""
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("sec-websocket-key:"):
                        key = line.split(":", 1)[1].strip()
                accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
                s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept)
                          .encode())
                s.sendall(b"\x81\x64" + b"a" * 10)
                time.sleep(0.2)
                # the TCP connection goes without TLS's close_notify
                # (SSLSocket.shutdown drops the TLS layer first)
                s.shutdown(socket.SHUT_RDWR)
                s.close()
        except (OSError, ssl.SSLError) as e:
            print("peer:", e, file=sys.stderr, flush=True)


main()
