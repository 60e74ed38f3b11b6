-- Specs for ms.http.serve's WebSocket server (docs/http.md, "WebSocket
-- server"): one ms-host runs four servers on free loopback ports (the
-- pool, per-connection agents, TLS, and one the spec closes), and the
-- specs talk to them with Debian's python3-websockets and with hand-made
-- hostile frames (spec/support/ws_clients.py), and with our own client,
-- ms.http.websocket: echo of text, binary and fragmented messages, ping
-- and pong, close codes both ways (1000, 1001 at close, 1002, 1007, 1009,
-- 1011 for a handler that raises), unmasked and malformed frames, a peer
-- that vanishes inside a frame, bad upgrades (400, 426), many connections,
-- back-pressure on a client that does not read, wss://, the metrics.
-- Every hostile connection must leave the others and the next ones
-- unharmed.
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local h = require "spec.support.helpers"
local q, slurp, write, contains, assert_contains =
    h.shell_quote, h.slurp, h.write_file, h.contains, h.assert_contains

local PY = "/usr/bin/python3"
local PEER = "spec/support/ws_clients.py"

local sh, run = h.sh, h.capture

local SCRIPT = [==[
local stop = arg[1]
local dir = stop:match("^(.*)/[^/]*$")
local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end

local function ws_handler(ws, req)
    local ms = require "ms"
    if req.path == "/boom" then
        error("boom in the websocket handler")
    elseif req.path == "/boom-object" then
        error(setmetatable({}, { __tostring = function() error("tostring raised too") end }))
    elseif req.path == "/flood" then
        -- 2000 messages of 10000 bytes to a client that does not read yet:
        -- ws:send waits once the outbox is full, so the count stops.
        local chunk = ("f"):rep(10000)
        for i = 1, 2000 do
            assert(ws:send(chunk))
            if i % 20 == 0 then
                local f = io.open(req.query .. "/flood.tmp", "w")
                f:write(i)
                f:close()
                os.rename(req.query .. "/flood.tmp", req.query .. "/flood")
            end
        end
        ws:send("end")
        ws:receive(30)
        return
    elseif req.path == "/deaf" then
        -- reads nothing until the spec says so, then counts
        while true do
            local go = io.open(req.query .. "/deaf-go")
            if go then go:close() break end
            ms.sleep(0.05)
        end
        local n = 0
        while true do
            local data = ws:receive(60)
            if data == "end" or not data then break end
            n = n + 1
        end
        ws:send(tostring(n))
        return
    elseif req.path == "/whoami" then
        ws:send(ms.self():name())
    elseif req.path == "/closer" then
        ws:close(4321, "handler says bye")
        return
    end
    while true do
        local data, kind = ws:receive()
        if not data then
            return
        end
        ws:send(data, kind)
    end
end

local PATHS = { "/echo", "/boom", "/boom-object", "/flood", "/whoami", "/closer", "/deaf" }
local pool = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 2, name = "wsp",
    handler = function(req) return "plain " .. req.path end,
    websocket = { path = PATHS, handler = ws_handler, max_message = 65536,
                  max_buffer = 65536 } })
local per = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, name = "wsa",
    websocket = { path = PATHS, handler = ws_handler, per_connection = true } })
local secure = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, name = "wss",
    handler = function() return "secure" end, websocket = ws_handler,
    tls = { cert = CERT_DIR .. "/cert.pem", key = CERT_DIR .. "/key.pem" } })
local closing = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, name = "wsc",
    websocket = { path = "/echo", handler = ws_handler } })
for _, bad in ipairs{
    { websocket = 42 },
    { websocket = { path = "no-slash", handler = ws_handler } },
    { websocket = { path = "/x" } },
    { websocket = { handler = ws_handler, max_message = 0 } },
    { websocket = { handler = ws_handler, per_connection = "yes" } },
    { websocket = { handler = ws_handler, bogus = 1 } },
} do
    bad.listen = "127.0.0.1:0"
    local ok, err = pcall(ms.http.serve, bad)
    print("bad option: " .. tostring(ok) .. " " .. tostring(err))
end
local ports = {}
for _, s in ipairs{ pool, per, secure, closing } do
    ports[#ports + 1] = select(2, s:address())
end
print("ready " .. table.concat(ports, " "))
io.stdout:flush()

-- Our own client against our own server.
ms.spawn(function()
    local ws, err = ms.http.websocket(("ws://127.0.0.1:%d/echo"):format(ports[1]))
    if not ws then print("ours: " .. tostring(err)) return end
    local lines = {}
    ws:send("ours text")
    lines[#lines + 1] = table.concat({ ws:receive(30) }, " ")
    ws:send(("\0\1\2"):rep(20000), "binary")
    local data, kind = ws:receive(30)
    lines[#lines + 1] = ("%s %d"):format(kind, #data)
    ws:ping("pp")
    lines[#lines + 1] = table.concat({ ws:receive(30) }, " ")
    ws:close(1000, "ours done")
    local c = assert(ms.http.websocket(("ws://127.0.0.1:%d/closer"):format(ports[1])))
    local _, what, code, reason = c:receive(30)
    lines[#lines + 1] = ("%s %s %s"):format(what, code, reason)
    print("ours: " .. table.concat(lines, " | "))
    io.stdout:flush()
end)

while not exists(stop) do
    if exists(dir .. "/close-now") then
        os.remove(dir .. "/close-now")
        print("closing server closed " .. tostring(closing:close(30)))
        io.stdout:flush()
    end
    ms.sleep(0.05)
end
per:close(5)
secure:close(5)
print("closed " .. tostring(pool:close(30)))
]==]

describe("ms.http.serve websocket", function()
    local bg, pool, per, secure, closing, dir, certs

    local function ws(args)
        return run(("timeout 120 %s %s %s 2>&1"):format(PY, PEER, args))
    end

    local function raw(port, path, case)
        return ws(("raw %d %s %s"):format(port, path, case))
    end

    local function metrics()
        return run(("curl -s --max-time 30 http://127.0.0.1:%d/metrics"):format(bg.port))
    end

    local function metric(text, name)
        return tonumber(text:match("\n" .. name .. " (%d+)"))
    end

    local function wait_for(what, fn)
        for _ = 1, 600 do
            local v = fn()
            if v then return v end
            sh("sleep 0.1")
        end
        error("timed out waiting for " .. what)
    end

    setup(function()
        certs = os.tmpname()
        os.remove(certs)
        assert(sh("mkdir " .. q(certs)))
        assert(sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
            .. "-subj /CN=localhost >/dev/null 2>&1"):format(q(certs .. "/key.pem"),
            q(certs .. "/cert.pem"))), "openssl could not make a certificate")
        bg = h.background_host(('local CERT_DIR = %q\n'):format(certs) .. SCRIPT,
            "--workers 2 --metrics-listen 127.0.0.1:0")
        dir = bg.dir
        pool, per, secure, closing = bg.out():match("ready (%d+) (%d+) (%d+) (%d+)")
        pool, per, secure, closing = tonumber(pool), tonumber(per), tonumber(secure),
            tonumber(closing)
        assert(pool, "no ports: " .. bg.out() .. bg.err())
    end)

    teardown(function()
        if bg then bg.stop() end
        if certs then sh("rm -rf " .. q(certs)) end
    end)

    it("refuses bad websocket options, naming them", function()
        local out = bg.out()
        assert_contains(out, "bad option: false ms.http.serve: websocket must be a handler")
        assert_contains(out, "websocket.path no-slash is not a path")
        assert_contains(out, "websocket.handler (a function(ws, req)) or websocket.module")
        assert_contains(out, "websocket.max_message must be a whole number")
        assert_contains(out, "websocket.per_connection must be true")
        assert_contains(out, "unknown option websocket.bogus")
    end)

    it("echoes text, binary, fragmented and large messages and answers pings", function()
        for _, port in ipairs{ pool, per } do
            local out = ws(("echo ws://127.0.0.1:%d/echo"):format(port))
            assert_contains(out, "text héllo")
            assert_contains(out, "binary 0001ff")
            assert_contains(out, "fragmented fragmented")
            assert_contains(out, "pong")
            assert_contains(out, "large 60000")
            assert_contains(out, "closed 1000")
        end
    end)

    it("serves plain HTTP beside the websocket paths, 426 on them without an upgrade",
        function()
        assert.are.equal("plain /other",
            run(("curl -s --max-time 30 http://127.0.0.1:%d/other"):format(pool)))
        local out = run(("curl -s -i --max-time 30 http://127.0.0.1:%d/echo"):format(pool))
        assert_contains(out, "HTTP/1.1 426")
        assert_contains(out, "Upgrade: websocket")
        -- a server without an HTTP handler answers 404
        assert_contains(run(("curl -s -i --max-time 30 http://127.0.0.1:%d/x"):format(per)),
            "HTTP/1.1 404")
    end)

    it("refuses bad upgrades with 400 or 426, and accepts a good one", function()
        local function upgrade(req)
            local path = dir .. "/.upgrade"
            write(path, req)
            return ws(("upgrade %d %s"):format(pool, q(path)))
        end
        local base = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        local key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        local out = upgrade("GET /echo HTTP/1.1\r\n" .. base .. key
            .. "Sec-WebSocket-Version: 13\r\n\r\n")
        assert_contains(out, "HTTP/1.1 101")
        -- RFC 6455's own example key and accept
        assert_contains(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        out = upgrade("GET /echo HTTP/1.1\r\n" .. base .. key .. "Sec-WebSocket-Version: 8\r\n\r\n")
        assert_contains(out, "HTTP/1.1 426")
        assert_contains(out, "Sec-WebSocket-Version: 13")
        out = upgrade("GET /echo HTTP/1.1\r\n" .. base .. "Sec-WebSocket-Version: 13\r\n\r\n")
        assert_contains(out, "HTTP/1.1 400")
        out = upgrade("GET /echo HTTP/1.1\r\n" .. base
            .. "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert_contains(out, "HTTP/1.1 400")
        out = upgrade("POST /echo HTTP/1.1\r\n" .. base .. key
            .. "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
        assert_contains(out, "HTTP/1.1 400")
        out = upgrade("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" .. key
            .. "Sec-WebSocket-Version: 13\r\n\r\n")
        assert_contains(out, "HTTP/1.1 400")
        assert(metric(metrics(), "ms_http_websocket_upgrades_rejected_total") >= 5)
    end)

    it("fails hostile frames with the RFC's close codes, then closes the connection", function()
        for case, want in pairs{
            unmasked = "close 1002", rsv = "close 1002", opcode = "close 1002",
            orphan = "close 1002", long_ping = "close 1002", frag_ping = "close 1002",
            garbage = "close 1002", close_1005 = "close 1002",
            bad_utf8 = "close 1007", too_big = "close 1009", huge_header = "close 1009",
            close_4000 = "close 4000 app",
        } do
            local out = raw(pool, "/echo", case)
            assert_contains(out, want)
            assert_contains(out, "then eof")
        end
        -- a character split between fragments is whole once joined; a ping
        -- between fragments is answered and the message still arrives
        assert_contains(raw(pool, "/echo", "split_utf8"), "text café")
        local out = raw(pool, "/echo", "ping_between")
        assert_contains(out, "pong pp")
        assert_contains(out, "text abcd")
        local m = metrics()
        assert(metric(m, "ms_http_websocket_closed_protocol_error_total") >= 8, m)
        assert(metric(m, "ms_http_websocket_closed_invalid_utf8_total") >= 1, m)
        assert(metric(m, "ms_http_websocket_closed_too_big_total") >= 2, m)
        -- and the server is as good as new
        assert_contains(ws(("echo ws://127.0.0.1:%d/echo"):format(pool)), "closed 1000")
    end)

    it("survives a peer that vanishes inside a frame", function()
        local before = metric(metrics(), "ms_http_websocket_closed_abnormal_total") or 0
        for _ = 1, 5 do
            assert_contains(raw(pool, "/echo", "vanish"), "vanished")
        end
        wait_for("the vanished connections to be counted", function()
            return metric(metrics(), "ms_http_websocket_closed_abnormal_total") >= before + 5
        end)
        assert_contains(ws(("echo ws://127.0.0.1:%d/echo"):format(pool)), "closed 1000")
    end)

    it("closes with 1011 when the handler raises, and the pool goes on", function()
        for _, port in ipairs{ pool, per } do
            assert_contains(ws(("hold ws://127.0.0.1:%d/boom"):format(port)), "closed 1011")
            assert_contains(ws(("hold ws://127.0.0.1:%d/boom-object"):format(port)),
                "closed 1011")
            assert_contains(ws(("echo ws://127.0.0.1:%d/echo"):format(port)), "closed 1000")
        end
        assert_contains(bg.err(), "boom in the websocket handler")
        assert_contains(bg.err(), "its __tostring raised")
        -- a handler's own close code reaches the client
        assert_contains(ws(("hold ws://127.0.0.1:%d/closer"):format(pool)), "closed 4321")
    end)

    it("runs one agent per connection when asked, the pool's otherwise", function()
        local function name(port)
            local out = run(("timeout 60 %s -c %s"):format(PY, q(([[
import asyncio, websockets
async def m():
    async with websockets.connect("ws://127.0.0.1:%d/whoami") as ws:
        print(await ws.recv())
asyncio.run(m())]]):format(port))))
            return out:match("^(%S+)")
        end
        local n1, n2 = name(per), name(per)
        assert.is_truthy(n1 and n1:find("-ws-", 1, true), n1)
        assert.are_not.equal(n1, n2)
        local p1, p2 = name(pool), name(pool)
        assert.is_truthy(p1, "no name from the pool")
        assert.is_nil(p1:find("-ws-", 1, true))
        assert.is_truthy(p2)
    end)

    it("serves many connections at once", function()
        assert_contains(ws(("many ws://127.0.0.1:%d/echo 200"):format(pool)), "many 200/200")
        assert_contains(ws(("many ws://127.0.0.1:%d/echo 50"):format(per)), "many 50/50")
    end)

    it("holds a bounded amount for a client that does not read (back-pressure)", function()
        local flood = dir .. "/flood-client"
        os.remove(dir .. "/flood")
        sh(("(%s %s flood %s 4 >%s 2>&1 &)"):format(PY, PEER,
            q(("ws://127.0.0.1:%d/flood?%s"):format(pool, dir)), q(flood)))
        -- while the client sleeps, the handler's sends stop well short of
        -- the 2000 messages (20 MB): the outbox, the engine and the
        -- kernel's socket buffers hold what was sent
        wait_for("the handler to start sending", function()
            return tonumber(slurp(dir .. "/flood"))
        end)
        sh("sleep 2")
        local sent = tonumber(slurp(dir .. "/flood"))
        assert(sent < 2000, "the handler sent all " .. sent .. " messages to a client "
            .. "that reads nothing")
        -- then the client reads everything
        local out = wait_for("the flood client", function()
            local o = slurp(flood)
            return contains(o, "got") and o
        end)
        assert_contains(out, "got 2000 20000000")
    end)

    it("stops reading a client whose handler does not receive (back-pressure)", function()
        local client, progress = dir .. "/deaf-client", dir .. "/deaf-progress"
        os.remove(dir .. "/deaf-go")
        sh(("(%s %s flood_in %s 2000 %s >%s 2>&1 &)"):format(PY, PEER,
            q(("ws://127.0.0.1:%d/deaf?%s"):format(pool, dir)), q(progress), q(client)))
        wait_for("the client to start sending", function() return tonumber(slurp(progress)) end)
        sh("sleep 2")
        -- the server holds max_buffer (64 KiB) in its inbox and reads no
        -- more: the client's 20 MB stop in the kernel's buffers
        local sent = tonumber(slurp(progress))
        assert(sent < 2000, "the client sent all " .. sent .. " messages to a handler that "
            .. "reads nothing")
        write(dir .. "/deaf-go", "")
        local out = wait_for("the count", function()
            local o = slurp(client)
            return contains(o, "count") and o
        end)
        assert_contains(out, "count 2000")
    end)

    it("speaks wss:// over the server's TLS", function()
        local out = ws(("echo wss://127.0.0.1:%d/anything"):format(secure))
        assert_contains(out, "text héllo")
        assert_contains(out, "large 60000")
        assert_contains(out, "closed 1000")
        assert_contains(ws(("many wss://127.0.0.1:%d/echo 20"):format(secure)), "many 20/20")
    end)

    it("talks to our own client, ms.http.websocket", function()
        local ok, out = pcall(wait_for, "our client's lines", function()
            local o = bg.out()
            return contains(o, "ours: ") and o
        end)
        assert(ok, bg.out() .. bg.err())
        assert_contains(out, "ours: ours text text | binary 60000 | pp pong | "
            .. "closed 4321 handler says bye")
    end)

    it("closes open websockets with 1001 when the server closes", function()
        local held = dir .. "/held"
        sh(("(%s %s hold %s >%s 2>&1 &)"):format(PY, PEER,
            q(("ws://127.0.0.1:%d/echo"):format(closing)), q(held)))
        wait_for("the client to connect", function() return contains(slurp(held), "open") end)
        write(dir .. "/close-now", "")
        wait_for("the close", function() return contains(slurp(held), "closed") end)
        assert_contains(slurp(held), "closed 1001")
        wait_for("the server to close", function()
            return contains(bg.out(), "closing server closed true")
        end)
    end)

    it("counts websockets in the metrics", function()
        local m = metrics()
        for _, name in ipairs{ "ms_http_websockets_accepted_total",
            "ms_http_websocket_messages_in_total", "ms_http_websocket_messages_out_total",
            "ms_http_websocket_closed_normal_total", "ms_http_websocket_closed_other_total" } do
            assert(metric(m, name) and metric(m, name) > 0, name .. ": " .. m)
        end
        assert.is_truthy(metric(m, "ms_http_websockets_open"))
    end)
end)
