#!/usr/bin/python3
# A WebSocket server for spec/http_client_spec.lua, on loopback, port
# chosen by the kernel and printed as the first line of stdout: Debian's
# python3-websockets (/usr/bin/python3).  It answers pings by itself.
#   /echo      sends back every message, text as text, binary as binary
#   /close     closes at once with code 4001, reason "bye"
#   /big/N     sends one text message of N bytes, then echoes
#   /headers   sends the request's X-Test header as a text message
#   /garbage   writes bytes that are no WebSocket frame (reserved bits and
#              opcode set, a masked frame from a server), then waits
# With two arguments, CERT and KEY (PEM files), it serves wss:// instead
# and writes "sni NAME" on stderr for each TLS handshake (NAME the server
# name the client sent, "none" without one).
import asyncio
import ssl
import sys

import websockets


async def handler(ws, path=None):
    path = path or ws.path
    try:
        if path == "/close":
            await ws.close(4001, "bye")
            return
        if path.startswith("/big/"):
            await ws.send("b" * int(path.split("/")[2]))
        if path == "/garbage":
            ws.transport.write(b"\xff\xff" + b"\x00" * 64)
            await asyncio.sleep(60)
            return
        if path == "/headers":
            await ws.send(ws.request_headers.get("X-Test", "none"))
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    tls = None
    if len(sys.argv) == 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[1], sys.argv[2])

        def sni(sock, name, ctx):
            print("sni", name or "none", file=sys.stderr, flush=True)
        tls.sni_callback = sni
    server = await websockets.serve(handler, "127.0.0.1", 0, max_size=None, ssl=tls)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()


asyncio.run(main())
