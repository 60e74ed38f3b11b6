#!/usr/bin/python3
# Peers for spec/http_client_spec.lua, on loopback, port chosen by the
# kernel and printed as the first line of stdout.  Run with Debian's
# /usr/bin/python3 (http.server, ssl and socket from its standard library).
#
#   http_servers.py http [CERT KEY]   an HTTP/1.1 keep-alive server (HTTPS with
#                                  CERT and KEY): the routes below
#   http_servers.py raw MODE          a hand-made hostile peer:
#       vanish   answers half a response (Content-Length says more), closes
#       garbage  answers bytes that are not HTTP, closes
#       endless  answers a head without a length, then body bytes forever
#       slow     reads the request and never answers; writes "accepted N"
#                and "closed N" lines to stderr as connections come and go
#
# Routes of the http mode:
#   /hello            {"hello":"world"}
#   /echo             the request as JSON: method, path, headers, body
#   /status/N         an empty response with status N
#   /big/N            N bytes ("x"), with Content-Length
#   /redirect/N       302 to /redirect/N-1; /redirect/0 answers "landed"
#   /conns            how many connections the server has accepted
#   /flood/N          N bytes in 64 KiB writes; /progress says how many
#                     were written so far (a slow reader holds it back)
#   http://...        (an absolute URL: asked as a proxy) "proxied URL"
import http.server
import json
import socket
import ssl
import sys
import threading

conns = 0
flood_written = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        global flood_written
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("/")
        if self.path.startswith("http://"):
            # asked as a forward proxy: say so instead of forwarding
            self.send_body(200, ("proxied " + self.path).encode())
        elif self.path == "/hello":
            self.send_body(200, b'{"hello":"world"}', "application/json")
        elif self.path == "/echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("latin-1")}
            self.send_body(200, json.dumps(doc).encode(), "application/json")
        elif parts[1] == "status":
            self.send_body(int(parts[2]), b"")
        elif parts[1] == "big":
            self.send_body(200, b"x" * int(parts[2]))
        elif parts[1] == "redirect":
            n = int(parts[2])
            if n == 0:
                self.send_body(200, b"landed")
            else:
                self.send_response(302)
                self.send_header("Location", "/redirect/%d" % (n - 1))
                self.send_header("Content-Length", "0")
                self.end_headers()
        elif self.path == "/conns":
            with lock:
                n = conns
            self.send_body(200, str(n).encode())
        elif parts[1] == "flood":
            n = int(parts[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"y" * 65536
            sent = 0
            while sent < n:
                k = min(len(chunk), n - sent)
                self.wfile.write(chunk[:k])
                sent += k
                with lock:
                    flood_written = sent
        elif self.path == "/progress":
            with lock:
                n = flood_written
            self.send_body(200, str(n).encode())
        else:
            self.send_body(404, b"no such route")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        global conns
        sock, addr = super().get_request()
        with lock:
            conns += 1
        return sock, addr


def serve_http(args):
    srv = Server(("127.0.0.1", 0), Handler)
    if args:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[0], args[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def read_head(c):
    data = b""
    while b"\r\n\r\n" not in data:
        got = c.recv(4096)
        if not got:
            return False
        data += got
    return True


def raw_peer(mode, c, n):
    try:
        if not read_head(c):
            return
        if mode == "vanish":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"v" * 1000)
        elif mode == "garbage":
            c.sendall(b"\x00\x01garbage, not HTTP at all\r\n\r\n" * 20)
        elif mode == "endless":
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            chunk = b"e" * 65536
            while True:
                c.sendall(chunk)
        elif mode == "slow":
            sys.stderr.write("accepted %d\n" % n)
            sys.stderr.flush()
            while c.recv(4096):
                pass
            sys.stderr.write("closed %d\n" % n)
            sys.stderr.flush()
    except OSError:
        pass
    finally:
        c.close()


def serve_raw(mode):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    print(s.getsockname()[1], flush=True)
    n = 0
    while True:
        c, _ = s.accept()
        n += 1
        threading.Thread(target=raw_peer, args=(mode, c, n), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "http":
        serve_http(sys.argv[2:])
    else:
        serve_raw(sys.argv[2])
