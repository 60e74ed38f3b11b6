-- bench/wss_connect.lua CERT KEY [N]: the cost of opening a WebSocket
-- client connection (ms.http.websocket) to our own server on loopback,
-- connect + upgrade + one echo + close, in interleaved rounds of N
-- (default 20):
--   ws_connect          ws://
--   wss_connect_ca_file wss:// trusting CERT through ca_file
--   wss_refused_system  wss:// verified against the system's CA store (the
--                       self-signed CERT is refused after the handshake:
--                       what loading the store and verifying cost)
-- One line each: NAME median_us=... min_us=... n=...
--   ms-host run bench/wss_connect.lua --workers 2 -- CERT KEY [N]
local cert, key, n = arg[1], arg[2], tonumber(arg[3]) or 20
assert(cert and key, "usage: bench/wss_connect.lua CERT KEY [N]")
local function echo(ws)
    local data = ws:receive()
    if data then ws:send(data) end
end
local plain = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, websocket = echo })
local secure = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, websocket = echo,
                                     tls = { cert = cert, key = key } })
local urls = { ws_connect = ("ws://127.0.0.1:%d/"):format(select(2, plain:address())),
               wss_connect_ca_file = ("wss://127.0.0.1:%d/"):format(select(2, secure:address())) }
urls.wss_refused_system = urls.wss_connect_ca_file
local names = { "ws_connect", "wss_connect_ca_file", "wss_refused_system" }
local samples = { ws_connect = {}, wss_connect_ca_file = {}, wss_refused_system = {} }
local function once(name)
    local t0 = ms.now()
    if name == "wss_refused_system" then
        assert(ms.http.websocket(urls[name]) == nil)
    else
        local ws = assert(ms.http.websocket(urls[name], name == "wss_connect_ca_file"
                                            and { ca_file = cert } or nil))
        assert(ws:send("x") and ws:receive(30) == "x")
        ws:close()
    end
    return (ms.now() - t0) * 1e6
end
for _, name in ipairs(names) do once(name) end -- warm-up
for _ = 1, n do
    for _, name in ipairs(names) do
        local s = samples[name]
        s[#s + 1] = once(name)
    end
end
for _, name in ipairs(names) do
    local s = samples[name]
    table.sort(s)
    print(("%s median_us=%.0f min_us=%.0f n=%d"):format(name, s[math.floor((#s + 1) / 2)], s[1], #s))
end
plain:close(5)
secure:close(5)
