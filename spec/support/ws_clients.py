#!/usr/bin/python3
"""WebSocket clients for spec/websocket_server_spec.lua (Debian's
/usr/bin/python3 with python3-websockets): each scenario prints lines the
spec reads.

    ws_clients.py echo URL            text, binary, a fragmented message and a
                                      ping through an echo handler, then close
    ws_clients.py many URL N          N connections at once, each echoing its
                                      own message: "many OK/N"
    ws_clients.py hold URL            connects, prints "open", then the close
                                      the server sends: "closed CODE"
    ws_clients.py flood URL PAUSE     reads nothing for PAUSE seconds, then
                                      counts what arrives: "got N BYTES"
    ws_clients.py flood_in URL N FILE sends N messages of 10000 bytes (the
                                      count so far in FILE every 20), then
                                      "end"; prints the server's answer:
                                      "count K"
    ws_clients.py raw PORT PATH CASE  a hand-made handshake, then hostile
                                      bytes (CASE below); prints what the
                                      server sent back: "close CODE", "text
                                      DATA", "eof"
    ws_clients.py upgrade PORT FILE   FILE's bytes as the request; prints the
                                      status line and the headers asked about

wss:// URLs are accepted with certificate checks off (the spec's
certificate is self-signed).
"""
import asyncio
import base64
import os
import socket
import ssl
import struct
import sys
import time

import websockets


def ssl_for(url):
    if not url.startswith("wss://"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(url, **kw):
    return websockets.connect(url, ssl=ssl_for(url), open_timeout=30, close_timeout=30,
                              max_size=None, **kw)


def close_code(e):
    return e.rcvd.code if e.rcvd is not None else 1006


async def echo(url):
    async with connect(url) as ws:
        await ws.send("héllo")
        print("text", await ws.recv())
        await ws.send(b"\x00\x01\xff")
        got = await ws.recv()
        print("binary", got.hex() if isinstance(got, bytes) else "not bytes")
        await ws.send(["frag", "men", "ted"])
        print("fragmented", await ws.recv())
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 30)
        print("pong")
        await ws.send("x" * 60000)
        print("large", len(await ws.recv()))
        await ws.close(1000, "done")
        print("closed", ws.close_code)


async def many(url, n):
    async def one(i):
        async with connect(url) as ws:
            await ws.send("m%d" % i)
            return await ws.recv() == "m%d" % i
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    print("many %d/%d" % (sum(1 for r in results if r is True), n))


async def hold(url):
    async with connect(url) as ws:
        print("open", flush=True)
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            print("closed", close_code(e))


async def flood(url, pause):
    async with connect(url) as ws:
        await asyncio.sleep(pause)
        n = size = 0
        try:
            while True:
                m = await asyncio.wait_for(ws.recv(), 30)
                if m == "end":
                    break
                n += 1
                size += len(m)
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
        print("got", n, size)


async def flood_in(url, n, progress):
    async with connect(url) as ws:
        chunk = "i" * 10000
        for i in range(1, n + 1):
            await ws.send(chunk)
            if i % 20 == 0:
                with open(progress + ".tmp", "w") as f:
                    f.write(str(i))
                os.replace(progress + ".tmp", progress)
        await ws.send("end")
        print("count", await asyncio.wait_for(ws.recv(), 60))


def frame(opcode, payload, mask=True, fin=True, rsv=0):
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


CASES = {
    # an unmasked frame from a client: 1002
    "unmasked": lambda: frame(1, b"hi", mask=False),
    # a text message that is not UTF-8: 1007
    "bad_utf8": lambda: frame(1, b"ok \xc3\x28 not"),
    # a text message split inside a character is fine once joined
    "split_utf8": lambda: frame(1, b"caf\xc3", fin=False) + frame(0, b"\xa9"),
    # reserved bits with no extension: 1002
    "rsv": lambda: frame(1, b"x", rsv=0x40),
    # an unknown opcode: 1002
    "opcode": lambda: frame(3, b"x"),
    # a continuation with nothing to continue: 1002
    "orphan": lambda: frame(0, b"x"),
    # a ping longer than 125 bytes: 1002
    "long_ping": lambda: frame(9, b"p" * 126),
    # a fragmented ping: 1002
    "frag_ping": lambda: frame(9, b"p", fin=False),
    # a message past max_message (the spec's server: 65536): 1009
    "too_big": lambda: frame(2, b"b" * 70000),
    # 2^40 bytes announced, 70000 sent: 1009 once max_message is passed
    "huge_header": lambda: bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 40) + b"mask"
    + b"h" * 70000,
    # a ping between fragments: answered, the message still arrives
    "ping_between": lambda: frame(1, b"ab", fin=False) + frame(9, b"pp") + frame(0, b"cd"),
    # a close with code 4000 and a reason: echoed
    "close_4000": lambda: frame(8, struct.pack("!H", 4000) + b"app"),
    # a close with an invalid code (1005 must not be sent): 1002
    "close_1005": lambda: frame(8, struct.pack("!H", 1005)),
    # half a frame, then the client vanishes
    "vanish": lambda: frame(2, b"z" * 100)[:20],
    # garbage that is not a frame at all
    "garbage": lambda: b"\xff" * 64,
}


def read_frames(s, out_limit=10):
    buf = b""
    lines = []
    s.settimeout(30)
    while len(lines) < out_limit:
        while True:
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                off = 2
                if n == 126 and len(buf) >= 4:
                    n = struct.unpack("!H", buf[2:4])[0]
                    off = 4
                elif n == 127 and len(buf) >= 10:
                    n = struct.unpack("!Q", buf[2:10])[0]
                    off = 10
                elif n >= 126:
                    n = None
                if n is not None and len(buf) >= off + n:
                    break
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                lines.append("eof")
                return lines
            buf += chunk
        op = buf[0] & 0x0F
        payload = buf[off:off + n]
        buf = buf[off + n:]
        if op == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            lines.append("close %d %s" % (code, payload[2:].decode("utf-8", "replace")))
        elif op == 1:
            lines.append("text " + payload.decode("utf-8", "replace"))
        elif op == 2:
            lines.append("binary %d" % len(payload))
        elif op == 10:
            lines.append("pong " + payload.decode("utf-8", "replace"))
        else:
            lines.append("opcode %d" % op)
    return lines


def handshake(port, path):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            raise SystemExit("no 101")
        head += c
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit("not 101: " + head.decode())
    return s


def raw(port, path, case):
    s = handshake(port, path)
    s.sendall(CASES[case]())
    if case == "vanish":
        s.close()
        print("vanished")
        return
    # the cases that leave the connection open: how many frames to read
    expect = {"split_utf8": 1, "ping_between": 2}.get(case, 10)
    for line in read_frames(s, expect):
        print(line)
        if line.startswith("close") or line == "eof":
            # after the close the server closes the TCP connection
            rest = read_frames(s, 1)
            print("then", rest[0])
            break


def read_head(s):
    """What s delivers up to the end of an HTTP head (CR LF CR LF), or
    to its end of file; also for spec/support/wss_peers.py."""
    data = b""
    while b"\r\n\r\n" not in data:
        c = s.recv(4096)
        if not c:
            break
        data += c
    return data


def upgrade(port, path):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    with open(path, "rb") as f:
        s.sendall(f.read())
    data = read_head(s)
    head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    print(head[0])
    for line in head[1:]:
        name = line.split(":")[0].lower()
        if name in ("upgrade", "sec-websocket-version", "sec-websocket-accept"):
            print(line)


def main():
    cmd = sys.argv[1]
    if cmd == "echo":
        asyncio.run(echo(sys.argv[2]))
    elif cmd == "many":
        asyncio.run(many(sys.argv[2], int(sys.argv[3])))
    elif cmd == "hold":
        asyncio.run(hold(sys.argv[2]))
    elif cmd == "flood":
        asyncio.run(flood(sys.argv[2], float(sys.argv[3])))
    elif cmd == "flood_in":
        asyncio.run(flood_in(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    elif cmd == "raw":
        raw(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "upgrade":
        upgrade(sys.argv[2], sys.argv[3])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
