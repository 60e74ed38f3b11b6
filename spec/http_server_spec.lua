-- Specs for ms.http.serve (docs/http.md): one ms-host runs three servers
-- on free loopback ports (a main one, one with short timeouts, one with a
-- pool of one agent and a queue of one), and the specs talk to them with
-- curl and with raw sockets (spec/support/http_clients.py on Debian's
-- python3): GET and POST, keep-alive, pipelining, malformed and
-- oversized requests, a slow client, handlers that raise, return garbage
-- or hostile objects, a crashing handler agent, back-pressure (503), a
-- graceful close with a request in flight, and the descriptor limit on
-- accept (EMFILE).  Every bad request must leave the other connections
-- and the next requests unharmed.
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local h = require "spec.support.helpers"
local q, slurp, write, contains, assert_contains =
    h.shell_quote, h.slurp, h.write_file, h.contains, h.assert_contains

local PY = "/usr/bin/python3"
local PEER = "spec/support/http_clients.py"

local sh, run = h.sh, h.capture

local SCRIPT = [==[
local stop = arg[1]
local dir = stop:match("^(.*)/[^/]*$")
local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end

local function handler(req)
    local ms = require "ms"
    local path = req.path
    if path == "/hello" then
        return { status = 200, headers = { ["Content-Type"] = "application/json" },
                 body = ms.json.encode({ hello = "world" }) }
    elseif path == "/echo" then
        return { status = 201, headers = { ["X-Method"] = req.method, ["X-Count"] = 3 },
                 body = req.method .. " " .. req.target .. " " .. #req.body .. " " .. req.body }
    elseif path == "/header" then
        return req.headers[req.query] or "none"
    elseif path == "/boom" then
        error("boom in the handler")
    elseif path == "/error-object" then
        error(setmetatable({}, { __tostring = function() error("tostring raised too") end }))
    elseif path == "/garbage" then
        return 42
    elseif path == "/bad-status" then
        return { status = "fine" }
    elseif path == "/bad-header" then
        return { headers = { ["X-Injected"] = "a\r\nSet-Cookie: evil=1" }, body = "x" }
    elseif path == "/hostile" then
        return setmetatable({}, { __index = function() error("index raised") end,
                                  __pairs = function() error("pairs raised") end })
    elseif path == "/hostile-headers" then
        return { body = "ok", headers = setmetatable({ ["X-A"] = "1" },
                 { __index = function() error("index raised") end }) }
    elseif path == "/crash" then
        ms.self():stop("crash")
        ms.sleep(3600)
    elseif path == "/whoami" then
        local info = ms.self():info()
        return ("%d %d"):format(info.id, info.restarts)
    elseif path == "/gated" then
        local gdir = req.query
        local f = io.open(gdir .. "/inflight", "w")
        f:close()
        while true do
            local r = io.open(gdir .. "/release")
            if r then r:close() break end
            ms.sleep(0.02)
        end
        return "released"
    end
    return { status = 404, body = "no route " .. path }
end

local main = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 2, handler = handler,
    max_header_bytes = 2048, max_headers = 20, max_body = 1000, header_timeout = 60,
    body_timeout = 60, idle_timeout = 60, name = "web" })
local quick = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, handler = handler,
    header_timeout = 0.5, body_timeout = 0.5, idle_timeout = 0.5, name = "quick" })
local busy = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, queue = 1,
    handler = handler, name = "busy" })
local secure = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, handler = handler,
    tls = { cert = CERT_DIR .. "/cert.pem", key = CERT_DIR .. "/key.pem" }, name = "secure" })
local ok, bad = pcall(ms.http.serve, { listen = "127.0.0.1:0", handler = handler,
    tls = { cert = CERT_DIR .. "/missing.pem", key = CERT_DIR .. "/key.pem" } })
print("bad cert: " .. tostring(ok) .. " " .. tostring(bad))
-- The same port again: an error value, not a raise.
local again, err = ms.http.serve{ listen = "127.0.0.1:" .. select(2, main:address()),
    handler = handler }
print(("second serve: %s %s"):format(tostring(again), type(err) == "table" and err.code or "?"))
local _, p1 = main:address()
local _, p2 = quick:address()
local _, p3 = busy:address()
local _, p4 = secure:address()
print(("ready %d %d %d %d"):format(p1, p2, p3, p4))
io.stdout:flush()
-- The busy server's state, for the back-pressure spec.
ms.spawn(function()
    while true do
        local st = busy:state()
        local f = io.open(dir .. "/busy-state.tmp", "w")
        f:write(("queued=%d busy=%d\n"):format(st.queued, st.busy))
        f:close()
        os.rename(dir .. "/busy-state.tmp", dir .. "/busy-state")
        ms.sleep(0.02)
    end
end)
while not exists(stop) do
    ms.sleep(0.05)
end
quick:close(1)
busy:close(1)
secure:close(1)
print("closing")
io.stdout:flush()
print("closed " .. tostring(main:close(60)))
]==]

describe("ms.http.serve", function()
    local bg, main, quick, busy, secure, dir, certs

    local function file(name, text)
        return write(dir .. "/" .. name, text)
    end

    -- FILE's bytes on one connection, n responses: a list of
    -- { status, body } and whether the server closed.
    local function send(port, bytes, n)
        local path = file(".req", bytes)
        local out = run(("%s %s send %d %s %d"):format(PY, PEER, port, q(path), n or 1))
        local got = {}
        for status, body in out:gmatch("(%d%d%d) %d+ ([^\n]*)") do
            got[#got + 1] = { status = tonumber(status), body = body }
        end
        return got, contains(out, "\nclosed") or out:match("^closed") ~= nil, out
    end

    local function curl(args)
        return run("curl -s --max-time 30 " .. args)
    end

    setup(function()
        -- A self-signed certificate for the TLS server, made by openssl.
        certs = os.tmpname()
        os.remove(certs)
        assert(sh("mkdir " .. q(certs)))
        assert(sh(("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
            .. "-subj /CN=localhost >/dev/null 2>&1"):format(q(certs .. "/key.pem"),
            q(certs .. "/cert.pem"))), "openssl could not make a certificate")
        bg = h.background_host(('local CERT_DIR = %q\n'):format(certs) .. SCRIPT,
            "--workers 2 --metrics-listen 127.0.0.1:0")
        dir = bg.dir
        main, quick, busy, secure = bg.out():match("ready (%d+) (%d+) (%d+) (%d+)")
        main, quick, busy, secure = tonumber(main), tonumber(quick), tonumber(busy),
            tonumber(secure)
        assert(main, "no ports: " .. bg.out() .. bg.err())
    end)

    teardown(function()
        if bg then bg.stop() end
        if certs then sh("rm -rf " .. q(certs)) end
    end)

    it("returns nil and an IoError when the port is taken", function()
        assert_contains(bg.out(), "second serve: nil IoError")
    end)

    it("answers GET and POST from curl, with the handler's status, headers and body", function()
        local out = curl(("-i http://127.0.0.1:%d/hello"):format(main))
        assert_contains(out, "HTTP/1.1 200 OK")
        assert_contains(out, "Content-Type: application/json")
        assert_contains(out, '{"hello":"world"}')
        out = curl(("-i -d 'a=1&b=2' http://127.0.0.1:%d/echo?x"):format(main))
        assert_contains(out, "HTTP/1.1 201 Created")
        assert_contains(out, "X-Method: POST")
        assert_contains(out, "X-Count: 3")
        assert_contains(out, "POST /echo?x 7 a=1&b=2")
        -- HEAD: the headers, Content-Length of the body, no body
        out = curl(("-I http://127.0.0.1:%d/hello"):format(main))
        assert_contains(out, "Content-Length: 17")
        assert.is_nil(out:find("hello", 1, true))
        -- a chunked body from curl
        out = curl(("-H 'Transfer-Encoding: chunked' --data-binary 'chunky' "
            .. "http://127.0.0.1:%d/echo"):format(main))
        assert_contains(out, "POST /echo 6 chunky")
        -- header names reach the handler in lower case
        out = curl(("-H 'X-Thing: yes' http://127.0.0.1:%d/header?x-thing"):format(main))
        assert.are.equal("yes", out)
    end)

    it("keeps a connection alive across requests", function()
        local a = file("a", "GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        local b = file("b", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        local out = run(("%s %s sequence %d %s %s %s"):format(PY, PEER, main, q(a), q(b), q(a)))
        local statuses = {}
        for s in out:gmatch("(%d%d%d) ") do statuses[#statuses + 1] = tonumber(s) end
        assert.are.same({ 200, 201, 200 }, statuses, out)
        assert_contains(out, "POST /echo 3 abc")
        -- curl reuses its connection for two URLs
        local err = run(("curl -sv --max-time 30 http://127.0.0.1:%d/hello "
            .. "http://127.0.0.1:%d/hello 2>&1 >/dev/null"):format(main, main))
        assert_contains(err, "Re-using existing connection")
        -- HTTP/1.0 closes unless it asks for keep-alive
        local got, closed = send(main, "GET /hello HTTP/1.0\r\n\r\n")
        assert.are.equal(200, got[1].status)
        assert.is_true(closed)
        got = send(main, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            .. "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", 2)
        assert.are.equal(2, #got)
    end)

    it("answers pipelined requests in order", function()
        local req = ""
        for i = 1, 5 do
            req = req .. ("GET /echo?n=%d HTTP/1.1\r\nHost: x\r\n\r\n"):format(i)
        end
        req = req .. "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"
        local got, closed = send(main, req, 6)
        assert.are.equal(6, #got)
        for i = 1, 5 do
            assert.are.equal(("GET /echo?n=%d 0 "):format(i), got[i].body)
        end
        assert.are.equal('{"hello":"world"}', got[6].body)
        assert.is_true(closed)
    end)

    it("answers malformed requests 400 and closes, without disturbing others", function()
        for _, bad in ipairs({
            "garbage\r\n\r\n",
            "GET /x HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET /x HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /a\0b HTTP/1.1\r\n\r\n",
            "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        }) do
            local got, closed, out = send(main, bad)
            assert.are.equal(400, got[1] and got[1].status, ("%q: %s"):format(bad, out))
            assert.is_true(closed)
        end
        local got = send(main, "GET /x HTTP/2.0\r\n\r\n")
        assert.are.equal(505, got[1].status)
        assert.are.equal('{"hello":"world"}', curl(("http://127.0.0.1:%d/hello"):format(main)))
    end)

    it("refuses oversized headers (431) and bodies (413), naming the limit", function()
        local got = send(main, "GET /hello HTTP/1.1\r\nX-Big: " .. ("a"):rep(3000) .. "\r\n\r\n")
        assert.are.equal(431, got[1].status)
        assert_contains(got[1].body, "exceed 2048 bytes")
        local many = "GET /hello HTTP/1.1\r\n"
        for i = 1, 21 do many = many .. ("H%d: v\r\n"):format(i) end
        got = send(main, many .. "\r\n")
        assert.are.equal(431, got[1].status)
        assert_contains(got[1].body, "more than 20 header fields")
        got = send(main, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
        assert.are.equal(413, got[1].status)
        assert_contains(got[1].body, "5000 bytes is over the limit of 1000")
        got = send(main, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            .. "3e8\r\n" .. ("b"):rep(1000) .. "\r\n1\r\nc\r\n0\r\n\r\n")
        assert.are.equal(413, got[1].status)
        -- exactly at the limit is fine
        got = send(main, "POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" .. ("d"):rep(1000))
        assert.are.equal(201, got[1].status)
    end)

    it("answers 408 to slow headers and bodies, and closes idle connections", function()
        local got, closed = send(quick, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert.are.equal(408, got[1].status)
        assert_contains(got[1].body, "headers did not arrive in time")
        assert.is_true(closed)
        got = send(quick, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        assert.are.equal(408, got[1].status)
        assert_contains(got[1].body, "body did not arrive in time")
        -- an idle keep-alive connection is closed without an answer
        got, closed = send(quick, "GET /hello HTTP/1.1\r\n\r\n", 2)
        assert.are.equal(1, #got)
        assert.is_true(closed)
    end)

    it("serves other clients while one sends its request slowly (slow-loris)", function()
        local out = run(("%s %s slowloris %d 10"):format(PY, PEER, main))
        local _, fast = out:gsub("fast 200", "")
        assert.are.equal(10, fast, out)
        assert_contains(out, "slow silent")
    end)

    it("answers 500 when the handler raises, logging the request and the error", function()
        local out = curl(("-i http://127.0.0.1:%d/boom"):format(main))
        assert_contains(out, "HTTP/1.1 500 Internal Server Error")
        local err
        for _ = 1, 400 do
            err = bg.err()
            if contains(err, "boom in the handler") then break end
            sh("sleep 0.05")
        end
        assert_contains(err, "ms.http: GET /boom: handler error:")
        assert_contains(err, "boom in the handler")
        out = curl(("-i http://127.0.0.1:%d/error-object"):format(main))
        assert_contains(out, "HTTP/1.1 500")
        for _ = 1, 400 do
            if contains(bg.err(), "its __tostring raised") then break end
            sh("sleep 0.05")
        end
        assert_contains(bg.err(), "a table error value (its __tostring raised)")
    end)

    it("answers 500 to garbage returned by the handler, saying what is wrong", function()
        for path, why in pairs({
            ["/garbage"] = "must return a table {status=, headers=, body=} or a string, not a number",
            ["/bad-status"] = "status must be a whole number from 100 to 599",
            ["/bad-header"] = "must have no CR, LF or NUL",
        }) do
            local out = curl(("-i http://127.0.0.1:%d%s"):format(main, path))
            assert_contains(out, "HTTP/1.1 500")
            assert.is_nil(out:find("evil", 1, true))
            for _ = 1, 400 do
                if contains(bg.err(), why) then break end
                sh("sleep 0.05")
            end
            assert_contains(bg.err(), "GET " .. path .. ": answered 500: ")
            assert_contains(bg.err(), why)
        end
    end)

    it("reads a hostile handler's answer raw: no metamethod of it runs", function()
        local out = curl(("-i http://127.0.0.1:%d/hostile"):format(main))
        assert_contains(out, "HTTP/1.1 200 OK")
        assert_contains(out, "Content-Length: 0")
        out = curl(("-i http://127.0.0.1:%d/hostile-headers"):format(main))
        assert_contains(out, "X-A: 1")
        assert.is_nil(contains(bg.err(), "index raised") or nil)
    end)

    it("restarts a handler agent that crashes; its request gets 500", function()
        local before = curl(("http://127.0.0.1:%d/whoami"):format(main))
        assert.is_truthy(before:match("^%d+ %d+$"), before)
        local out = curl(("-i http://127.0.0.1:%d/crash"):format(main))
        assert_contains(out, "HTTP/1.1 500")
        -- the pool comes back: some agent reports a restart
        local restarted
        for _ = 1, 400 do
            local who = curl(("http://127.0.0.1:%d/whoami"):format(main))
            if who:match("^%d+ ([1-9]%d*)$") then restarted = who break end
            sh("sleep 0.05")
        end
        assert.is_truthy(restarted, "no restarted agent answered")
        assert_contains(bg.err(), "GET /crash: the handler's agent let go of the request")
    end)

    it("answers 503 when the queue is full, and serves the queued request after", function()
        local gate = dir .. "/busy-gate"
        sh("mkdir -p " .. q(gate))
        local function state()
            return slurp(dir .. "/busy-state")
        end
        -- A takes the only agent, B waits in the queue of one, C is refused.
        local a = file("ra", ("GET /gated?%s HTTP/1.1\r\nHost: x\r\n\r\n"):format(gate))
        local out_a, out_b = dir .. "/out-a", dir .. "/out-b"
        sh(("%s %s send %d %s >%s 2>&1 &"):format(PY, PEER, busy, q(a), q(out_a)))
        for _ = 1, 400 do
            if slurp(gate .. "/inflight") ~= nil and sh("test -e " .. q(gate .. "/inflight")) then
                break
            end
            sh("sleep 0.05")
        end
        local b = file("rb", "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        sh(("%s %s send %d %s >%s 2>&1 &"):format(PY, PEER, busy, q(b), q(out_b)))
        for _ = 1, 400 do
            if contains(state(), "queued=1") then break end
            sh("sleep 0.05")
        end
        assert_contains(state(), "queued=1")
        local got, closed = send(busy, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(503, got[1].status)
        assert_contains(got[1].body, "queue of 1 requests is full")
        assert.is_true(closed)
        write(gate .. "/release", "")
        for _ = 1, 400 do
            if contains(slurp(out_a), "released") and contains(slurp(out_b), "200") then break end
            sh("sleep 0.05")
        end
        assert_contains(slurp(out_a), "200 8 released")
        assert_contains(slurp(out_b), '200 17 {"hello":"world"}')
    end)

    it("keeps serving when accept runs out of descriptors (EMFILE)", function()
        -- A host of its own with few descriptors: 300 held connections
        -- exhaust them; once they are let go, requests are served again.
        local edir = dir .. "/emfile"
        sh("mkdir -p " .. q(edir))
        local script = write(edir .. "/s.lua", [[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1,
    handler = function() return "fine" end })
local _, port = srv:address()
print("port " .. port)
io.stdout:flush()
ms.sleep(3600)
]])
        sh(("(ulimit -n 256; exec timeout 120 %s run %s >%s 2>%s) & echo $! >%s"):format(
            q(h.host), q(script), q(edir .. "/out"), q(edir .. "/err"), q(edir .. "/pid")))
        local port
        for _ = 1, 400 do
            port = tonumber(slurp(edir .. "/out"):match("port (%d+)"))
            if port then break end
            sh("sleep 0.05")
        end
        assert(port, "the EMFILE host did not start: " .. slurp(edir .. "/err"))
        local fifo = edir .. "/fifo"
        sh("mkfifo " .. q(fifo))
        sh(("%s %s hold %d 300 <%s >%s 2>&1 &"):format(PY, PEER, port, q(fifo),
            q(edir .. "/held")))
        local keep = io.open(fifo, "w")      -- holds the peer's stdin open
        for _ = 1, 400 do
            if contains(slurp(edir .. "/held"), "held") then break end
            sh("sleep 0.05")
        end
        assert_contains(slurp(edir .. "/held"), "held 300")
        keep:close()                         -- the peer closes all 300
        local answer
        for _ = 1, 400 do
            answer = curl(("http://127.0.0.1:%d/"):format(port))
            if answer == "fine" then break end
            sh("sleep 0.05")
        end
        sh("kill " .. slurp(edir .. "/pid"):match("%d+") .. " 2>/dev/null")
        assert.are.equal("fine", answer)
    end)

    it("finishes a request in flight when the host shuts down (SIGTERM)", function()
        local sdir = dir .. "/sigterm"
        sh("mkdir -p " .. q(sdir))
        local script = write(sdir .. "/s.lua", ([[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, handler = function(req)
    local f = io.open(req.query .. "/inflight", "w")
    f:close()
    while true do
        local r = io.open(req.query .. "/release")
        if r then r:close() break end
        ms.sleep(0.02)
    end
    return "finished"
end })
ms.on_shutdown(function() srv:close() end)
local _, port = srv:address()
print("port " .. port)
io.stdout:flush()
ms.sleep(3600)
]]))
        sh(("(sh -c 'echo $$ >%s; exec %s run %s' >%s 2>%s; echo $? >%s) & "):format(
            q(sdir .. "/pid"), h.host, script, q(sdir .. "/out"), q(sdir .. "/err"),
            q(sdir .. "/code")))
        local port
        for _ = 1, 400 do
            port = tonumber(slurp(sdir .. "/out"):match("port (%d+)"))
            if port then break end
            sh("sleep 0.05")
        end
        assert(port, "the host did not start: " .. slurp(sdir .. "/err"))
        local req = write(sdir .. "/req", ("GET /x?%s HTTP/1.1\r\nHost: x\r\n\r\n"):format(sdir))
        sh(("%s %s send %d %s >%s 2>&1 &"):format(PY, PEER, port, q(req), q(sdir .. "/answer")))
        for _ = 1, 400 do
            if sh("test -e " .. q(sdir .. "/inflight")) then break end
            sh("sleep 0.05")
        end
        local pid = slurp(sdir .. "/pid"):match("%d+")
        sh("kill -TERM " .. pid)
        for _ = 1, 400 do
            if contains(slurp(sdir .. "/err"), "SIGTERM") then break end
            sh("sleep 0.05")
        end
        write(sdir .. "/release", "")
        for _ = 1, 400 do
            if slurp(sdir .. "/code") ~= "" then break end
            sh("sleep 0.05")
        end
        sh("kill -KILL " .. pid .. " 2>/dev/null") -- had it not ended (a failure)
        assert_contains(slurp(sdir .. "/answer"), "200 8 finished")
        assert.are.equal("0", slurp(sdir .. "/code"):match("%d+"), slurp(sdir .. "/err"))
    end)

    it("serves HTTPS with a certificate and key; a failed handshake is counted", function()
        local out = curl(("-k -i https://127.0.0.1:%d/hello"):format(secure))
        assert_contains(out, "HTTP/1.1 200 OK")
        assert_contains(out, '{"hello":"world"}')
        -- keep-alive over TLS: curl reuses the connection
        local err = run(("curl -skv --max-time 30 -d abc https://127.0.0.1:%d/echo "
            .. "https://127.0.0.1:%d/hello 2>&1"):format(secure, secure))
        assert_contains(err, "POST /echo 3 abc")
        assert_contains(err, "Re-using existing connection")
        -- verification against the certificate itself
        out = curl(("--cacert %s --resolve localhost:%d:127.0.0.1 https://localhost:%d/hello")
            :format(q(certs .. "/cert.pem"), secure, secure))
        assert.are.equal('{"hello":"world"}', out)
        -- plain HTTP to the TLS port: no answer, the connection closed
        local got, closed = send(secure, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(0, #got)
        assert.is_true(closed)
        -- a certificate that cannot be read is named
        assert_contains(bg.out(), "bad cert: false ms.http.serve: tls.cert: cannot use the "
            .. "certificate " .. certs .. "/missing.pem")
    end)

    it("counts requests by class, refusals, handler errors and latency in the metrics", function()
        local m = curl(("http://127.0.0.1:%d/metrics.json"):format(bg.port))
        local http = m:match('"http":(%b{})')
        assert(http, "no http in /metrics.json: " .. m:sub(1, 200))
        local function n(key)
            return tonumber(http:match('"' .. key .. '":(%d+)'))
        end
        -- what the specs above did, at least
        assert.is_true(n("requests_2xx") >= 20, http)
        assert.is_true(n("rejected_400") >= 5, http)
        assert.is_true(n("rejected_408") >= 2, http)
        assert.is_true(n("rejected_413") >= 2, http)
        assert.is_true(n("rejected_431") >= 2, http)
        assert.is_true(n("rejected_503") >= 1, http)
        assert.is_true(n("handler_errors") >= 6, http)
        assert.is_true(n("connections_accepted") >= 20, http)
        assert.is_true(n("tls_handshake_failures") >= 1, http)
        -- every answer written is in one class and one latency bucket
        local classes = n("requests_1xx") + n("requests_2xx") + n("requests_3xx")
            + n("requests_4xx") + n("requests_5xx")
        local counted = 0
        for c in http:match('"counts":%[([%d,]*)%]'):gmatch("%d+") do
            counted = counted + tonumber(c)
        end
        assert.are.equal(classes, counted)
        local prom = curl(("http://127.0.0.1:%d/metrics"):format(bg.port))
        assert_contains(prom, "# TYPE ms_http_request_duration_seconds histogram")
        assert_contains(prom, 'ms_http_request_duration_seconds_bucket{le="+Inf"} ' .. counted)
        assert_contains(prom, "ms_http_rejected_503_total " .. n("rejected_503"))
    end)

    it("closes gracefully: a request in flight is answered, new connections refused", function()
        local gate = dir .. "/close-gate"
        sh("mkdir -p " .. q(gate))
        local a = file("rc", ("GET /gated?%s HTTP/1.1\r\nHost: x\r\n\r\n"):format(gate))
        local out_a = dir .. "/out-close"
        sh(("%s %s send %d %s >%s 2>&1 &"):format(PY, PEER, main, q(a), q(out_a)))
        for _ = 1, 400 do
            if sh("test -e " .. q(gate .. "/inflight")) then break end
            sh("sleep 0.05")
        end
        write(dir .. "/stop", "")           -- the script calls main:close(60)
        for _ = 1, 400 do
            if contains(bg.out(), "closing") then break end
            sh("sleep 0.05")
        end
        assert_contains(run(("%s %s wait_refused %d"):format(PY, PEER, main)), "refused")
        write(gate .. "/release", "")
        for _ = 1, 400 do
            if contains(bg.out(), "closed ") then break end
            sh("sleep 0.05")
        end
        assert_contains(slurp(out_a), "200 8 released")
        assert_contains(slurp(out_a), "closed")
        assert_contains(bg.out(), "closed true")
    end)
end)

describe("ms.http.serve's handler_timeout", function()
    it("answers 504 to a request no handler answers in time, and drops the late answer", function()
        local script = h.tmpfile([==[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, handler_timeout = 0.5,
    shutdown_timeout = 1,
    handler = function(req)
        if req.path == "/never" then ms.sleep(3600) end
        if req.path == "/late" then ms.sleep(1.5) return "late" end
        return "fast"
    end })
local _, port = srv:address()
local function exchange(path)
    local c = assert(ms.net.connect("127.0.0.1:" .. port, 30))
    assert(c:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n", 30))
    local got = {}
    while true do -- to the end: a 504 closes the connection
        local bytes = c:read(nil, 60)
        if not bytes then break end
        got[#got + 1] = bytes
        local text = table.concat(got)
        if text:find("^HTTP/1.1 200") and text:find("fast$") then break end
    end
    c:close()
    return table.concat(got)
end
local function count(name) return ms.metrics().http[name] end
local t0, l0, e0 = count("handler_timeouts"), count("late_answers"), count("requests_5xx")
local r = exchange("/late")
assert(r:find("^HTTP/1.1 504 Gateway Timeout\r\n"), r)
assert(r:find("Connection: close", 1, true) and r:find("the handler did not answer within handler_timeout", 1, true), r)
local _, answers = r:gsub("HTTP/1%.1 ", "")
assert(answers == 1, r)
-- the handler answers a second later: dropped and counted, nothing else happens
for _ = 1, 3000 do -- a generous bound for a second's wait
    if count("late_answers") == l0 + 1 then break end
    ms.sleep(0.01)
end
assert(count("late_answers") == l0 + 1, "the late answer was not counted")
assert(exchange("/fast"):find("^HTTP/1.1 200"), "the agent serves again")
-- an agent held for ever: its request gets 504, and so does one queued behind it
local held = ms.spawn(exchange, "/never")
ms.sleep(0.1)
local queued = exchange("/fast")
assert(queued:find("^HTTP/1.1 504") and queued:find("no agent took the request", 1, true), queued)
local ok, never = held:join(60)
assert(ok and never:find("^HTTP/1.1 504"), tostring(never))
assert(count("handler_timeouts") == t0 + 3, tostring(count("handler_timeouts")))
assert(count("requests_5xx") >= e0 + 3)
assert(srv:state().queued == 0)
srv:close(1)
local bad = pcall(ms.http.serve, { listen = "127.0.0.1:0", handler = function() end, handler_timeout = -1 })
assert(not bad)
print("HANDLER TIMEOUT OK")
]==], ".lua")
        local out = run(("timeout -k 5 180 %s run %s --workers 2 2>&1"):format(q(h.host), q(script)))
        os.remove(script)
        assert_contains(out, "HANDLER TIMEOUT OK")
        assert_contains(out, "no answer within handler_timeout")
    end)
end)

describe("ms.http.serve and Expect: 100-continue", function()
    it("sends 100 Continue before the body, 417 to other expectations, 413 without a 100", function()
        local script = h.tmpfile([==[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1, max_body = 4 * 1024 * 1024,
    handler = function(req) return req.method .. " " .. #req.body end })
local _, port = srv:address()
local c0 = ms.metrics().http.continues
local c = assert(ms.net.connect("127.0.0.1:" .. port, 30))
assert(c:write("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 30))
-- the body is not sent until the 100 came
assert(c:read("l", 60) == "HTTP/1.1 100 Continue") -- lines come without their CR LF
assert(c:read("l", 60) == "")
assert(c:write("hello", 30))
assert(c:read("l", 60) == "HTTP/1.1 200 OK")
repeat local l = c:read("l", 60) until l == ""
assert(c:read(#"POST 5", 60) == "POST 5")
-- the same connection: an expectation the server does not know
assert(c:write("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: teapot\r\n\r\n", 30))
local refused = c:read("a", 60)
assert(refused:find("^HTTP/1.1 417 Expectation Failed\r\n") and refused:find("Connection: close", 1, true), refused)
c:close()
-- a body over max_body: 413 at once, never a 100
c = assert(ms.net.connect("127.0.0.1:" .. port, 30))
assert(c:write("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n", 30))
local big = c:read("a", 60)
assert(big:find("^HTTP/1.1 413") and not big:find("100 Continue", 1, true), big)
c:close()
-- curl, which waits for the 100 before a large body
local body = os.tmpname()
local f = io.open(body, "wb") f:write(string.rep("b", 2 * 1024 * 1024)) f:close()
local p = assert(ms.process.spawn{ "curl", "-sS", "-v", "--expect100-timeout", "600", "-H", "Expect: 100-continue",
    "--data-binary", "@" .. body, "http://127.0.0.1:" .. port .. "/up", stdout = "pipe", stderr = "pipe" })
local out = p.stdout:read("a", 120)
local err = p.stderr:read("a", 120)
assert(p:wait(120) == 0, err)
p:close()
os.remove(body)
assert(out == "POST 2097152", out)
assert(err:find("HTTP/1.1 100 Continue", 1, true), err)
assert(ms.metrics().http.continues == c0 + 2, tostring(ms.metrics().http.continues))
srv:close(10)
print("CONTINUE OK")
]==], ".lua")
        local out = run(("timeout -k 5 180 %s run %s --workers 2 2>&1"):format(q(h.host), q(script)))
        os.remove(script)
        assert_contains(out, "CONTINUE OK")
    end)
end)
