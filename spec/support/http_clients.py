"""Raw HTTP/1.1 clients for spec/http_server_spec.lua (run by Debian's
/usr/bin/python3): each scenario prints lines the spec reads.

    http_clients.py send PORT FILE [N]     FILE's bytes on one connection, then
                                        N responses read (default 1):
                                        "STATUS LENGTH BODY" per response,
                                        then "closed" if the server closed
    http_clients.py sequence PORT FILE...  one request per FILE on one
                                        connection, each answer read before
                                        the next request is sent
    http_clients.py slowloris PORT N       a connection that sends half a
                                        request and stalls; meanwhile N
                                        requests on other connections;
                                        "fast STATUS" each, then "slow
                                        silent" if the stalled one got
                                        nothing meanwhile
    http_clients.py hold PORT N            N connections opened and held until
                                        stdin closes ("held K" once open)
    http_clients.py wait_refused PORT      until a connect is refused (20 s)

Responses are framed by Content-Length (the server always sends one).
"""
import select
import socket
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
        self.buf += data
        return bool(data)

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            if not self.fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self.fill():
                break
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body


def show(resp):
    status, headers, body = resp
    text = body.decode("latin-1").replace("\n", "\\n")
    print("%d %d %s" % (status, len(body), text), flush=True)


def send(port, path, n=1):
    s = connect(port)
    s.sendall(open(path, "rb").read())
    r = Reader(s)
    for _ in range(int(n)):
        resp = r.response()
        if resp is None:
            break
        show(resp)
    try:
        s.settimeout(10)
        while not r.closed and r.fill():
            pass
    except (socket.timeout, ConnectionResetError):
        pass
    if r.closed:
        print("closed", flush=True)


def sequence(port, paths):
    s = connect(port)
    r = Reader(s)
    for path in paths:
        s.sendall(open(path, "rb").read())
        resp = r.response()
        if resp is None:
            print("closed", flush=True)
            return
        show(resp)


def get(port, path):
    s = connect(port)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    resp = Reader(s).response()
    s.close()
    return resp


def slowloris(port, n):
    slow = connect(port)
    slow.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for _ in range(int(n)):
        resp = get(port, "/hello")
        print("fast %d" % (resp[0] if resp else 0), flush=True)
    ready, _, _ = select.select([slow], [], [], 0)
    print("slow silent" if not ready else "slow answered", flush=True)
    slow.close()


def hold(port, n):
    conns = []
    for _ in range(int(n)):
        try:
            conns.append(connect(port))
        except OSError:
            break
    print("held %d" % len(conns), flush=True)
    sys.stdin.read()
    for c in conns:
        c.close()


def wait_refused(port):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
            s.close()
        except ConnectionRefusedError:
            print("refused", flush=True)
            return
        time.sleep(0.05)
    print("still accepting", flush=True)


if __name__ == "__main__":
    cmd, port = sys.argv[1], sys.argv[2]
    if cmd == "send":
        send(port, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else 1)
    elif cmd == "sequence":
        sequence(port, sys.argv[3:])
    elif cmd == "slowloris":
        slowloris(port, sys.argv[3])
    elif cmd == "hold":
        hold(port, sys.argv[3])
    elif cmd == "wait_refused":
        wait_refused(port)
