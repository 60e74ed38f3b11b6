-- ms.http.request: the HTTP client (docs/http.md, "Client"), against real
-- peers on loopback that the spec starts on ports the kernel picks and
-- stops by pid: Debian's /usr/bin/python3 http.server (plain, and HTTPS
-- with a self-signed certificate made here by /usr/bin/openssl), and
-- hand-made hostile peers (spec/support/http_servers.py).  Each case runs
-- `ms-host run` on a script that checks itself (assert) and prints what
-- the case then looks for, so the spec also runs against the sanitizer
-- builds' ms-host.  Nothing here passes or fails on how long something
-- took: waits are for conditions, under generous bounds.
-- spec-kind: subprocess
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp
local PYTHON = "/usr/bin/python3"
local PEER = "spec/support/http_servers.py"

-- Runs script (text) with ms-host; returns status, stdout, stderr.
local function run(script, extra)
    local path = h.tmpfile(script, ".lua")
    local out, err = os.tmpname(), os.tmpname()
    local rc = os.execute(("timeout -k 5 180 %s run %s --workers 2 %s >%s 2>%s </dev/null")
        :format(q(HOST), q(path), extra or "", q(out), q(err)))
    local o, e = slurp(out), slurp(err)
    os.remove(path) os.remove(out) os.remove(err)
    return rc, o, e
end

local function ok_run(script, extra)
    local rc, out, err = run(script, extra)
    assert(rc == 0 or rc == true,
        ("ms-host exited %s\n--- stdout:\n%s--- stderr:\n%s"):format(tostring(rc), out, err))
    return out, err
end

-- Starts a peer (http_servers.py args, or another script) in the
-- background; returns { pid, port, dir, err() }.
local peers = {}
local function start_peer(args, script)
    local dir = proc.new_dir()
    proc.sh(("(%s %s %s >%s/out 2>%s/err </dev/null & echo $! >%s/pid)"):format(
        PYTHON, script or PEER, args, q(dir), q(dir), q(dir)))
    local p = { dir = dir, pid = tonumber(slurp(dir .. "/pid"):match("%d+")) }
    assert(proc.wait_until(30, function()
        p.port = tonumber(slurp(dir .. "/out"):match("^(%d+)\n"))
        return p.port ~= nil
    end), "the peer did not start: " .. slurp(dir .. "/err"))
    function p.err() return slurp(dir .. "/err") end
    peers[#peers + 1] = p
    return p
end

-- SIGTERM first: nginx's master then ends its workers (a SIGKILL would
-- leave them running); SIGKILL if a peer is still there after 20 s.
local function stop_peers()
    for _, p in ipairs(peers) do
        proc.sh(("kill -TERM %d 2>/dev/null"):format(p.pid))
        proc.wait_until(20, function()
            return not proc.sh(("kill -0 %d 2>/dev/null"):format(p.pid))
        end)
        proc.sh(("kill -KILL %d 2>/dev/null"):format(p.pid))
        proc.sh("rm -rf " .. q(p.dir))
    end
    peers = {}
end

-- A self-signed certificate for cn and the subjectAltName san, made by
-- openssl in dir: dir/cert and dir/key.
local function make_cert(dir, cert, key, cn, san)
    assert(proc.sh(("/usr/bin/openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
        .. "-subj /CN=%s -addext subjectAltName=%s -keyout %s/%s -out %s/%s >%s/log 2>&1")
        :format(cn, san, q(dir), key, q(dir), cert, q(dir))),
        "openssl: " .. slurp(dir .. "/log"))
end

-- Shared by the scripts: a wait for a condition with a generous bound.
local PRELUDE = [[
local function eventually(cond, what)
    for _ = 1, 3000 do
        if cond() then return end
        ms.sleep(0.01)
    end
    error("never happened: " .. what, 2)
end
local function get(url, opts)
    opts = opts or {}
    opts.url = url
    return ms.http.request(opts)
end
]]

local function script(text, vars)
    return PRELUDE .. text:gsub("%$(%u+)", function(k)
        return assert(vars[k], "no value for $" .. k)
    end)
end

describe("ms.http.request", function()
    local web
    setup(function() web = start_peer("http") end)
    teardown(stop_peers)

    it("gets a response: status, headers by lower-case name, body", function()
        local out = ok_run(script([[
local status, headers, body = get("http://127.0.0.1:$PORT/hello")
assert(status == 200, tostring(headers))
assert(headers["content-type"] == "application/json", headers["content-type"])
assert(headers["content-length"] == "17")
local doc = ms.json.decode(body)
print("HELLO " .. doc.hello)
]], { PORT = web.port }))
        assert.is_truthy(out:find("HELLO world", 1, true), out)
    end)

    it("sends the method, headers and body asked for", function()
        local out = ok_run(script([[
for _, m in ipairs({ "POST", "PUT", "PATCH", "DELETE" }) do
    local status, _, body = get("http://127.0.0.1:$PORT/echo",
        { method = m, headers = { ["X-Test"] = "yes", ["X-Num"] = 42 }, body = "payload " .. m })
    assert(status == 200, status)
    local doc = ms.json.decode(body)
    assert(doc.method == m, doc.method)
    assert(doc.headers["x-test"] == "yes" and doc.headers["x-num"] == "42")
    assert(doc.body == "payload " .. m, doc.body)
    -- no form type or Expect added by libcurl
    assert(doc.headers["content-type"] == nil, doc.headers["content-type"])
    assert(doc.headers["expect"] == nil)
end
local status, _, body = get("http://127.0.0.1:$PORT/echo", { method = "POST" })
assert(status == 200 and ms.json.decode(body).body == "")
local status2, headers, body2 = get("http://127.0.0.1:$PORT/big/10", { method = "HEAD" })
assert(status2 == 200 and headers["content-length"] == "10" and body2 == "")
print("METHODS OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("METHODS OK", 1, true), out)
    end)

    it("returns 4xx and 5xx as responses, not errors, and counts them by class", function()
        local out = ok_run(script([[
assert(get("http://127.0.0.1:$PORT/status/404") == 404)
assert(get("http://127.0.0.1:$PORT/status/503") == 503)
assert(get("http://127.0.0.1:$PORT/status/204") == 204)
local m = ms.metrics().http_client
assert(m.requests == 3 and m.responses_4xx == 1 and m.responses_5xx == 1
       and m.responses_2xx == 1, ms.json.encode(m))
assert(m.latency.count == 3 and m.latency.buckets[#m.latency.buckets].count == 3)
print("CLASSES OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("CLASSES OK", 1, true), out)
    end)

    it("returns redirects unless asked to follow them, then at most that many; uses a proxy when given", function()
        local out = ok_run(script([[
local status, headers = get("http://127.0.0.1:$PORT/redirect/2")
assert(status == 302 and headers.location == "/redirect/1", status)
local status2, _, body = get("http://127.0.0.1:$PORT/redirect/2", { redirects = 5 })
assert(status2 == 200 and body == "landed", status2)
local none, err = get("http://127.0.0.1:$PORT/redirect/3", { redirects = 1 })
assert(none == nil and err.reason == "redirects", tostring(err))
-- Through a proxy (this server answers as one); none unless asked.
local s3, _, via = get("http://example.invalid/x", { proxy = "http://127.0.0.1:$PORT" })
assert(s3 == 200 and via == "proxied http://example.invalid/x", tostring(via))
local none2, err2 = get("http://example.invalid/x", { proxy = "http://127.0.0.1:1" })
assert(none2 == nil and (err2.reason == "connect" or err2.reason == "proxy"), tostring(err2))
print("REDIRECTS OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("REDIRECTS OK", 1, true), out)
    end)

    it("reuses connections: one for sequential requests, at most one per concurrent request", function()
        local out = ok_run(script([[
local function conns()
    local _, _, body = assert(get("http://127.0.0.1:$PORT/conns"))
    return tonumber(body)
end
local before = conns()          -- this request's connection stays pooled
for _ = 1, 10 do assert(get("http://127.0.0.1:$PORT/hello") == 200) end
assert(conns() == before, "sequential requests opened connections")
-- 8 agents, 5 requests each, at once
local done = ms.channel(100)
for i = 1, 8 do
    ms.agent.spawn{ fn = function(args)
        local port, ch = args[1], args[2]
        for _ = 1, 5 do
            local status = ms.http.request{ url = "http://127.0.0.1:" .. port .. "/hello" }
            ch:send(status)
        end
    end, args = { $PORT, done } }
end
for _ = 1, 40 do assert(done:recv(60) == 200) end
local opened = conns() - before
print("OPENED " .. opened)
assert(opened <= 8, "more connections than concurrent requests: " .. opened)
local m = ms.metrics().http_client
assert(m.connections_opened <= 9, m.connections_opened)
assert(m.connections_open >= 1)
print("REUSE OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("REUSE OK", 1, true), out)
    end)

    it("refuses bad options with an error naming the option", function()
        local out = ok_run(script([[
local function fails(opts, text)
    local ok, err = pcall(ms.http.request, opts)
    assert(not ok, "accepted: " .. text)
    assert(tostring(err):find(text, 1, true), tostring(err))
end
fails(nil, "table of options")
fails({}, "url is required")
fails({ url = 5 }, "url must be a string")
fails({ url = "" }, "url must be 1 to")
fails({ url = "http://x/", bogus = 1 }, "unknown option 'bogus'")
fails({ url = "http://x/", [1] = 2 }, "option names are strings")
fails({ url = "http://x/", method = "GE T" }, "method 'GE T' is not a valid HTTP token")
fails({ url = "http://x/", headers = { ["a b"] = "c" } }, "header name 'a b'")
fails({ url = "http://x/", headers = { a = "c\r\nInjected: 1" } }, "CR, LF or NUL")
fails({ url = "http://x/", headers = { a = {} } }, "header a must be a string or a number")
fails({ url = "http://x/", headers = "a: b" }, "headers must be a table")
fails({ url = "http://x/", timeout = -1 }, "timeout = -1")
fails({ url = "http://x/", max_size = 0 }, "max_size = 0")
fails({ url = "http://x/", redirects = 51 }, "redirects = 51")
fails({ url = "http://x/", verify = "no" }, "verify must be a boolean")
fails({ url = "http://x/", ca_file = "/nonexistent/ca.pem" }, "ca_file '/nonexistent/ca.pem' cannot be read")
fails({ url = "http://x/", body = {} }, "body must be a string")
-- A hostile options table: its metamethods never run (raw reads).
local hostile = setmetatable({ url = "http://127.0.0.1:$PORT/hello" }, {
    __index = function() error("ran __index") end,
    __newindex = function() error("ran __newindex") end,
    __pairs = function() error("ran __pairs") end })
assert(ms.http.request(hostile) == 200)
-- Schemes other than http and https are refused (no file://, no ftp://).
local none, err = get("file:///etc/passwd")
assert(none == nil and err.reason == "url" and err.code == "InvalidArgument", tostring(err))
print("OPTIONS OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("OPTIONS OK", 1, true), out)
    end)

    it("fails a response past max_size, and keeps a whole body within the agent's memory limit", function()
        local out = ok_run(script([[
local none, err = get("http://127.0.0.1:$PORT/big/200000", { max_size = 100000 })
assert(none == nil and err.reason == "too_large" and err.code == "ResourceExhausted", tostring(err))
assert(err.message:find("max_size"), err.message)
assert(get("http://127.0.0.1:$PORT/big/100000", { max_size = 100000 }) == 200)
local a = ms.agent.spawn{ memory_limit = 2 * 1024 * 1024, fn = function(args)
    local port = args[1]
    local none2, err2 = ms.http.request{ url = "http://127.0.0.1:" .. port .. "/big/8000000" }
    assert(none2 == nil and err2.reason == "too_large", tostring(err2))
    assert(err2.message:find("memory limit"), err2.message)
    local status, _, body = ms.http.request{ url = "http://127.0.0.1:" .. port .. "/big/1000" }
    assert(status == 200 and #body == 1000)
    return "survived"
end, args = { $PORT } }
ms.monitor(a)
local exit = ms.recv(60)
assert(exit.reason == "normal", tostring(exit.reason) .. " " .. tostring(exit.message))
assert(ms.metrics().http_client.failed_too_large == 2)
print("LIMITS OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("LIMITS OK", 1, true), out)
    end)

    it("streams a large body in chunks, holding the server back while the reader waits", function()
        local out = ok_run(script([[
local N = 64 * 1024 * 1024
local status, headers, stream = get("http://127.0.0.1:$PORT/flood/" .. N, { stream = true })
assert(status == 200 and headers["content-length"] == tostring(N), status)
assert(tostring(stream):find("ms.http_stream"))
assert(ms.metrics().io.http_streams_open == 1)
local first = assert(stream:read())
-- The reader stops: the transfer pauses once the window is full, so the
-- server's writes stall in the kernel's buffers.
ms.sleep(2)
local _, _, written = get("http://127.0.0.1:$PORT/progress")
written = tonumber(written)
print("WRITTEN " .. written)
assert(written < 32 * 1024 * 1024, "the server wrote " .. written .. " bytes ahead of the reader")
local total = #first
while true do
    local chunk, err = stream:read(1024 * 1024, 60)
    if not chunk then assert(err == nil, tostring(err)) break end
    total = total + #chunk
end
assert(total == N, total)
assert(stream:read() == nil)
stream:close()
assert(stream:read() == nil)
assert(ms.metrics().io.http_streams_open == 0)
-- A stream dropped unread is closed by the collector.
local _, _, s2 = get("http://127.0.0.1:$PORT/big/1000000", { stream = true })
s2 = nil
collectgarbage() collectgarbage()
assert(ms.metrics().io.http_streams_open == 0)
print("STREAM OK")
]], { PORT = web.port }))
        assert.is_truthy(out:find("STREAM OK", 1, true), out)
    end)
end)

describe("ms.http.request over TLS", function()
    local dir, tls
    setup(function()
        dir = proc.new_dir()
        make_cert(dir, "cert.pem", "key.pem", "localhost", "IP:127.0.0.1,DNS:localhost")
        tls = start_peer(("http %s/cert.pem %s/key.pem"):format(q(dir), q(dir)))
    end)
    teardown(function()
        stop_peers()
        proc.sh("rm -rf " .. q(dir))
    end)

    it("verifies by default (a self-signed certificate fails), trusts a CA file, or skips when told", function()
        local out = ok_run(script([[
local url = "https://127.0.0.1:$PORT/hello"
local none, err = get(url)
assert(none == nil and err.reason == "tls" and err.code == "IoError", tostring(err))
print("DEFAULT " .. err.message)
local status, _, body = get(url, { ca_file = "$DIR/cert.pem" })
assert(status == 200 and ms.json.decode(body).hello == "world", tostring(status))
assert(get("https://localhost:$PORT/hello", { ca_file = "$DIR/cert.pem" }) == 200)
assert(get(url, { verify = false }) == 200)
local m = ms.metrics().http_client
assert(m.failed_tls == 1 and m.responses_2xx == 3, ms.json.encode(m))
print("TLS OK")
]], { PORT = tls.port, DIR = dir }))
        assert.is_truthy(out:find("TLS OK", 1, true), out)
    end)

    it("multiplexes concurrent requests of several agents over one HTTP/2 connection (nginx)", function()
        -- nginx (nginx-light, with its HTTP/2 module) on a port found free
        -- just before, logging each request's connection number.
        local port = tonumber(io.popen(PYTHON .. [[ -c "import socket; s=socket.socket(); ]]
            .. [[s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]]):read("*a"))
        local conf = ([[
daemon off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 64; }
http {
  log_format conns '$connection $server_protocol';
  client_body_temp_path DIR/tmp; proxy_temp_path DIR/tmp; fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp; scgi_temp_path DIR/tmp;
  server {
    listen 127.0.0.1:PORT ssl http2;
    ssl_certificate DIR/cert.pem; ssl_certificate_key DIR/key.pem;
    access_log DIR/access.log conns;
    location / { return 200 "ok"; }
  }
}
]]):gsub("DIR", dir):gsub("PORT", tostring(port))
        h.write_file(dir .. "/nginx.conf", conf)
        proc.sh("mkdir -p " .. q(dir .. "/tmp"))
        proc.sh(("(nginx -c %s/nginx.conf -p %s >%s/nginx.out 2>&1 & echo $! >%s/nginx.pid2)")
            :format(q(dir), q(dir), q(dir), q(dir)))
        local pid = tonumber(slurp(dir .. "/nginx.pid2"):match("%d+"))
        peers[#peers + 1] = { pid = pid, dir = proc.new_dir() }
        assert(proc.wait_until(30, function()
            return slurp(dir .. "/nginx.pid"):match("%d+") ~= nil
        end), "nginx did not start: " .. slurp(dir .. "/nginx.out") .. slurp(dir .. "/error.log"))
        local out = ok_run(script([[
local done = ms.channel(100)
for _ = 1, 4 do
    ms.agent.spawn{ fn = function(a)
        for j = 1, 5 do
            local status = ms.http.request{ url = "https://127.0.0.1:" .. a[1] .. "/r" .. j,
                                            ca_file = a[3] }
            a[2]:send(status)
        end
    end, args = { $PORT, done, "$DIR/cert.pem" } }
end
for _ = 1, 20 do assert(done:recv(60) == 200) end
assert(ms.metrics().http_client.connections_opened == 1, ms.metrics().http_client.connections_opened)
print("H2 OK")
]], { PORT = port, DIR = dir }))
        assert.is_truthy(out:find("H2 OK", 1, true), out)
        local conns, n = {}, 0
        for c, proto in slurp(dir .. "/access.log"):gmatch("(%d+) (%S+)") do
            assert.are.equal("HTTP/2.0", proto)
            conns[c] = true
            n = n + 1
        end
        assert.are.equal(20, n)
        assert.are.equal(1, #(function() local t = {} for c in pairs(conns) do t[#t + 1] = c end return t end)())
    end)

    it("runs the example scripts/http_client.lua against an HTTPS service", function()
        local function example(args)
            local out, err = os.tmpname(), os.tmpname()
            local rc = os.execute(("timeout -k 5 120 %s run scripts/http_client.lua -- %s >%s 2>%s")
                :format(q(HOST), args, q(out), q(err)))
            local o, e = slurp(out), slurp(err)
            os.remove(out) os.remove(err)
            return rc == 0 or rc == true, o .. e
        end
        local url = ("https://127.0.0.1:%d/hello"):format(tls.port)
        local ok, out = example(("%s hello %s/cert.pem"):format(url, q(dir)))
        assert(ok, out)
        assert.is_truthy(out:find("status 200\nhello = world\n", 1, true), out)
        ok, out = example(url .. " hello")
        assert(not ok, out)
        assert.is_truthy(out:find("request failed (tls)", 1, true), out)
    end)
end)

describe("ms.http.request against hostile peers", function()
    teardown(stop_peers)

    it("names what failed: a peer that vanishes, garbage, an endless body, a refused port, an unknown host", function()
        local vanish, garbage, endless = start_peer("raw vanish"), start_peer("raw garbage"),
            start_peer("raw endless")
        -- A port nobody listens on: bound, then closed.
        local out = ok_run(script([[
local function fails(url, reason, code, opts)
    local none, err = get(url, opts)
    assert(none == nil, url .. " answered")
    assert(err.reason == reason and err.code == code,
           url .. ": " .. tostring(err.reason) .. " " .. tostring(err))
    assert(err.url == url and err.method == "GET")
    print(reason .. ": " .. err.message)
end
fails("http://127.0.0.1:$VANISH/", "receive", "IoError")
fails("http://127.0.0.1:$GARBAGE/", "protocol", "IoError")
fails("http://127.0.0.1:$ENDLESS/", "too_large", "ResourceExhausted", { max_size = 1024 * 1024 })
local l = assert(ms.net.listen("127.0.0.1:0"))
local _, free = l:local_address()
l:close()
fails("http://127.0.0.1:" .. free .. "/", "connect", "IoError")
fails("http://no-such-host.invalid/", "dns", "IoError")
local m = ms.metrics().http_client
assert(m.failed_receive == 1 and m.failed_protocol == 1 and m.failed_too_large == 1
       and m.failed_connect == 1 and m.failed_dns == 1, ms.json.encode(m))
print("HOSTILE OK")
]], { VANISH = vanish.port, GARBAGE = garbage.port, ENDLESS = endless.port }))
        assert.is_truthy(out:find("HOSTILE OK", 1, true), out)
    end)

    it("times out on a server that never answers", function()
        local slow = start_peer("raw slow")
        local out = ok_run(script([[
local t0 = ms.now()
local none, err = get("http://127.0.0.1:$PORT/", { timeout = 0.5 })
assert(none == nil and err.reason == "timeout" and err.code == "Timeout", tostring(err))
assert(ms.now() - t0 >= 0.5)
assert(ms.metrics().http_client.failed_timeout == 1)
print("TIMEOUT OK")
]], { PORT = slow.port }))
        assert.is_truthy(out:find("TIMEOUT OK", 1, true), out)
    end)

    it("counts a waiting request against agent_io_limit", function()
        local slow = start_peer("raw slow")
        local out = ok_run(script([[
local url = "http://127.0.0.1:$PORT/"
local t1 = ms.spawn(function() return ms.http.request{ url = url, timeout = 0 } end)
local t2 = ms.spawn(function() return ms.http.request{ url = url, timeout = 0 } end)
eventually(function() return ms.metrics().io.http_requests_open == 2 end, "two waiting")
local none, err = ms.http.request{ url = url }
assert(none == nil and err.reason == "limit" and err.code == "ResourceExhausted", tostring(err))
assert(err.message:find("agent_io_limit", 1, true), err.message)
t1:abort() t2:abort()
eventually(function() return ms.metrics().io.http_requests_open == 0 end, "cancelled")
print("LIMIT OK")
]], { PORT = slow.port }), "--set agent_io_limit=2")
        assert.is_truthy(out:find("LIMIT OK", 1, true), out)
    end)

    it("cancels the request of an agent stopped while it waits, closing its connection", function()
        local slow = start_peer("raw slow")
        local out = ok_run(script([[
local a = ms.agent.spawn{ fn = function(args)
    local port = args[1]
    ms.http.request{ url = "http://127.0.0.1:" .. port .. "/", timeout = 0 }
    error("the request answered")
end, args = { $PORT } }
eventually(function() return ms.metrics().http_client.connections_open == 1 end, "connected")
ms.monitor(a)
a:stop()
local exit = ms.recv(60)
assert(exit.reason == "stopped" or exit.reason == "killed", tostring(exit.reason) .. " " .. tostring(exit.message))
eventually(function() return ms.metrics().http_client.connections_open == 0 end, "connection closed")
assert(ms.metrics().http_client.cancelled == 1)
-- ms.timeout cancels the same way.
local ok = ms.timeout(0.2, function()
    return ms.http.request{ url = "http://127.0.0.1:$PORT/", timeout = 0 }
end)
assert(ok == nil)
eventually(function() return ms.metrics().http_client.connections_open == 0 end, "second closed")
assert(ms.metrics().http_client.cancelled == 2)
print("CANCEL OK")
]], { PORT = slow.port }))
        assert.is_truthy(out:find("CANCEL OK", 1, true), out)
        -- The peer saw both connections end.
        assert(proc.wait_until(30, function()
            return slow.err():find("closed 2", 1, true) ~= nil
        end), slow.err())
        assert.is_truthy(slow.err():find("closed 1", 1, true), slow.err())
    end)
end)

describe("ms.http.websocket", function()
    local ws, web, garbage
    setup(function()
        ws = start_peer("", "spec/support/ws_peer.py")
        web = start_peer("http")
        garbage = start_peer("raw garbage")
    end)
    teardown(stop_peers)

    it("exchanges text, binary, a 3 MiB message and a ping, then closes with a code", function()
        local out = ok_run(script([[
local ws = assert(ms.http.websocket("ws://127.0.0.1:$PORT/echo"))
assert(tostring(ws):find("ms.websocket"))
assert(ws:send("hi"))
local data, kind = ws:receive(30)
assert(data == "hi" and kind == "text", tostring(data))
assert(ws:send("\0\1\2", "binary"))
data, kind = ws:receive(30)
assert(data == "\0\1\2" and kind == "binary")
assert(ws:ping("p1"))
data, kind = ws:receive(30)
assert(data == "p1" and kind == "pong", tostring(kind))
local big = string.rep("z", 3 * 1024 * 1024)
assert(ws:send(big))
data, kind = ws:receive(60)
assert(data == big and kind == "text")
assert(ws:close(4000, "done"))
assert(ws:closed())
local none, why = ws:receive()
assert(none == nil and why == "closed")
assert(select(2, ws:send("x")) == "closed")
assert(ms.metrics().io.sockets_open == 0)
print("WS OK")
]], { PORT = ws.port }))
        assert.is_truthy(out:find("WS OK", 1, true), out)
    end)

    it("reports the server's close code and reason, garbage frames as 1002, a message past max_message as 1009", function()
        local out = ok_run(script([[
local c = assert(ms.http.websocket("ws://127.0.0.1:$PORT/close"))
local none, why, code, reason = c:receive(30)
assert(none == nil and why == "closed" and code == 4001 and reason == "bye",
       tostring(why) .. " " .. tostring(code) .. " " .. tostring(reason))
local b = assert(ms.http.websocket("ws://127.0.0.1:$PORT/big/5000", { max_message = 1000 }))
none, why, code = b:receive(30)
assert(none == nil and why == "closed" and code == 1009, tostring(code))
local ok = assert(ms.http.websocket("ws://127.0.0.1:$PORT/big/5000", { max_message = 5000 }))
assert(#ok:receive(30) == 5000)
ok:close()
local g = assert(ms.http.websocket("ws://127.0.0.1:$PORT/garbage"))
none, why, code = g:receive(30)
assert(none == nil and why == "closed" and code == 1002, tostring(why) .. " " .. tostring(code))
assert(g:closed())
local h = assert(ms.http.websocket("ws://127.0.0.1:$PORT/headers", { headers = { ["X-Test"] = "yes" } }))
assert(h:receive(30) == "yes")
h:close()
print("CODES OK")
]], { PORT = ws.port }))
        assert.is_truthy(out:find("CODES OK", 1, true), out)
    end)

    it("refuses what is not a WebSocket server, and bad arguments", function()
        local out = ok_run(script([[
local none, err = ms.http.websocket("ws://127.0.0.1:$WEB/hello")
assert(none == nil and tostring(err):find("answered HTTP/1.1 200", 1, true), tostring(err))
none, err = ms.http.websocket("ws://127.0.0.1:$GARBAGE/")
assert(none == nil and tostring(err):find("handshake", 1, true), tostring(err))
local l = assert(ms.net.listen("127.0.0.1:0"))
local _, free = l:local_address()
l:close()
none, err = ms.http.websocket("ws://127.0.0.1:" .. free .. "/")
assert(none == nil and err.code == "IoError", tostring(err))
local function raises(text, ...)
    local ok, e = pcall(ms.http.websocket, ...)
    assert(not ok and tostring(e):find(text, 1, true), tostring(e))
end
raises("starts with ws:// or wss://", "http://127.0.0.1/")
raises("verify must be true or false", "wss://127.0.0.1/", { verify = "no" })
raises("ca_file must be a path", "wss://127.0.0.1/", { ca_file = 5 })
raises("ca_file: cannot read /no/such/ca.pem", "wss://127.0.0.1/", { ca_file = "/no/such/ca.pem" })
raises("url must be a string", 5)
raises("unknown option 'bogus'", "ws://127.0.0.1/", { bogus = 1 })
raises("CR, LF or NUL", "ws://127.0.0.1/", { headers = { a = "b\r\nc: d" } })
assert(ms.metrics().io.sockets_open == 0)
print("REFUSED OK")
]], { WEB = web.port, GARBAGE = garbage.port }))
        assert.is_truthy(out:find("REFUSED OK", 1, true), out)
    end)

    it("closes the connection of an agent stopped while it waits in receive", function()
        local out = ok_run(script([[
local a = ms.agent.spawn{ fn = function(args)
    local ws = assert(ms.http.websocket("ws://127.0.0.1:" .. args[1] .. "/echo"))
    ws:receive()
    error("the receive answered")
end, args = { $PORT } }
eventually(function() return ms.metrics().io.sockets_open == 1 end, "connected")
ms.monitor(a)
a:stop()
local exit = ms.recv(60)
assert(exit.reason == "stopped" or exit.reason == "killed", tostring(exit.reason))
eventually(function() return ms.metrics().io.sockets_open == 0 end, "socket closed")
print("WS STOP OK")
]], { PORT = ws.port }))
        assert.is_truthy(out:find("WS STOP OK", 1, true), out)
    end)
end)

describe("ms.http.websocket over wss://", function()
    local dir, good, other, hangup, garbage, silent, midframe
    setup(function()
        dir = proc.new_dir()
        -- good: for 127.0.0.1 and localhost; other: for elsewhere.example only
        make_cert(dir, "good.pem", "good-key.pem", "good", "IP:127.0.0.1,DNS:localhost")
        make_cert(dir, "other.pem", "other-key.pem", "other", "DNS:elsewhere.example")
        local WSS = "spec/support/wss_peers.py"
        good = start_peer(("%s/good.pem %s/good-key.pem"):format(q(dir), q(dir)), "spec/support/ws_peer.py")
        other = start_peer(("%s/other.pem %s/other-key.pem"):format(q(dir), q(dir)), "spec/support/ws_peer.py")
        hangup = start_peer("hangup", WSS)
        garbage = start_peer("garbage", WSS)
        silent = start_peer("silent", WSS)
        midframe = start_peer(("midframe %s/good.pem %s/good-key.pem"):format(q(dir), q(dir)), WSS)
    end)
    teardown(function()
        stop_peers()
        proc.sh("rm -rf " .. q(dir))
    end)

    it("verifies the certificate by default, trusts ca_file, checks the host name, sends SNI", function()
        local out = ok_run(script([[
local url = "wss://127.0.0.1:$PORT/echo"
local none, err = ms.http.websocket(url)
assert(none == nil and type(err) == "table", tostring(err))
assert(err.reason == "tls" and err.code == "IoError", tostring(err.reason))
assert(err.message:find("tls: certificate verify failed (self-signed certificate)", 1, true), err.message)
-- agents at once on the one shared context of the system's store
local done = ms.channel(8)
for i = 1, 4 do
    ms.agent.spawn{ fn = function(args)
        for _ = 1, 3 do
            local none, e = ms.http.websocket(args[1])
            assert(none == nil and e.message:find("self-signed certificate", 1, true))
        end
        args[2]:send(true)
    end, args = { url, done } }
end
for _ = 1, 4 do assert(done:recv(60) == true) end
local ws = assert(ms.http.websocket(url, { ca_file = "$DIR/good.pem" }))
assert(ws:send("hi"))
assert(ws:receive(30) == "hi")
local big = string.rep("z", 3 * 1024 * 1024)
assert(ws:send(big, "binary"))
local data, kind = ws:receive(60)
assert(data == big and kind == "binary")
assert(ws:ping("p1"))
data, kind = ws:receive(30)
assert(data == "p1" and kind == "pong", tostring(kind))
assert(ws:close(4000, "done"))
local byname = assert(ms.http.websocket("wss://localhost:$PORT/echo", { ca_file = "$DIR/good.pem" }))
assert(byname:send("named") and byname:receive(30) == "named")
byname:close()
-- the other server's certificate is for elsewhere.example only
none, err = ms.http.websocket("wss://localhost:$OTHER/echo", { ca_file = "$DIR/other.pem" })
assert(none == nil and err.reason == "tls", tostring(err))
assert(err.message:find("certificate verify failed (hostname mismatch)", 1, true), err.message)
none, err = ms.http.websocket("wss://127.0.0.1:$OTHER/echo", { ca_file = "$DIR/other.pem" })
assert(none == nil and err.message:find("certificate verify failed (IP address mismatch)", 1, true),
       tostring(err))
-- trusted, but not by this CA file
none, err = ms.http.websocket("wss://127.0.0.1:$OTHER/echo", { ca_file = "$DIR/good.pem" })
assert(none == nil and err.reason == "tls", tostring(err))
local unchecked = assert(ms.http.websocket("wss://127.0.0.1:$OTHER/echo", { verify = false }))
assert(unchecked:send("v") and unchecked:receive(30) == "v")
unchecked:close()
eventually(function() return ms.metrics().io.sockets_open == 0 end, "sockets closed")
print("WSS OK")
]], { PORT = good.port, OTHER = other.port, DIR = dir }))
        assert.is_truthy(out:find("WSS OK", 1, true), out)
        -- SNI: the name when connecting by name, none for an IP literal (RFC 6066)
        assert.is_truthy(good.err():find("sni localhost", 1, true), good.err())
        assert.is_truthy(good.err():find("sni none", 1, true), good.err())
    end)

    it("talks to our own server's tls websocket", function()
        local out = ok_run(script([[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1,
    tls = { cert = "$DIR/good.pem", key = "$DIR/good-key.pem" },
    websocket = function(ws)
        while true do
            local data, kind = ws:receive()
            if not data then return end
            ws:send(data, kind)
        end
    end })
local _, port = srv:address()
local ws = assert(ms.http.websocket("wss://127.0.0.1:" .. port .. "/any", { ca_file = "$DIR/good.pem" }))
for i = 1, 20 do
    local m = string.rep(tostring(i), i * 1000)
    assert(ws:send(m))
    assert(ws:receive(30) == m)
end
assert(ws:close(1000))
local none, err = ms.http.websocket("wss://127.0.0.1:" .. port .. "/any")
assert(none == nil and err.reason == "tls", tostring(err))
assert(srv:close(30))
print("OWN OK")
]], { DIR = dir }))
        assert.is_truthy(out:find("OWN OK", 1, true), out)
    end)

    it("fails with reason tls on a peer that hangs up or answers garbage, 1006 on one gone mid-frame", function()
        local out = ok_run(script([[
local opts = { ca_file = "$DIR/good.pem", timeout = 60 }
local failures = ms.metrics().http.websocket_client_tls_failures
local none, err = ms.http.websocket("wss://127.0.0.1:$HANGUP/", opts)
assert(none == nil and err.reason == "tls", tostring(err))
assert(err.message:find("during the handshake", 1, true), err.message)
none, err = ms.http.websocket("wss://127.0.0.1:$GARBAGE/", opts)
assert(none == nil and err.reason == "tls", tostring(err))
assert(err.message:find("tls: handshake failed (", 1, true), err.message)
none, err = ms.http.websocket("wss://127.0.0.1:$SILENT/", { ca_file = "$DIR/good.pem", timeout = 0.5 })
assert(none == nil and err.reason == "timeout" and err.code == "Timeout", tostring(err))
assert(ms.metrics().http.websocket_client_tls_failures == failures + 3)
local ws = assert(ms.http.websocket("wss://127.0.0.1:$MIDFRAME/", opts))
local data, why, code = ws:receive(60)
assert(data == nil and why == "closed" and code == 1006, tostring(why) .. " " .. tostring(code))
assert(ws:closed())
eventually(function() return ms.metrics().io.sockets_open == 0 end, "sockets closed")
print("HOSTILE OK")
]], { DIR = dir, HANGUP = hangup.port, GARBAGE = garbage.port, SILENT = silent.port,
      MIDFRAME = midframe.port }))
        assert.is_truthy(out:find("HOSTILE OK", 1, true), out)
    end)

    it("ends at once when the agent is stopped in the TLS handshake or in a receive", function()
        local out = ok_run(script([[
local function stopped_while(url, opts, state)
    local a = ms.agent.spawn{ fn = function(args)
        local ws = assert(ms.http.websocket(args[1], args[2]))
        ws:receive()
        error("the receive answered")
    end, args = { url, opts } }
    eventually(function() return ms.metrics().io.sockets_open == 1 end, "connected " .. state)
    ms.sleep(0.2) -- into the wait
    ms.monitor(a)
    a:stop()
    local exit = ms.recv(60)
    assert(exit and (exit.reason == "stopped" or exit.reason == "killed"), state)
    eventually(function() return ms.metrics().io.sockets_open == 0 end, "socket closed " .. state)
end
stopped_while("wss://127.0.0.1:$SILENT/", { verify = false, timeout = 0 }, "in the handshake")
stopped_while("wss://127.0.0.1:$GOOD/echo", { ca_file = "$DIR/good.pem" }, "in receive")
print("STOPPED OK")
]], { DIR = dir, SILENT = silent.port, GOOD = good.port }))
        assert.is_truthy(out:find("STOPPED OK", 1, true), out)
    end)
end)

describe("WebSocket keepalive (ping_interval, ping_timeout), client and server", function()
    it("the client ends a connection to a stopped peer with 1006, keeps a live idle one", function()
        local out = ok_run(script([[
local p = assert(ms.process.spawn{ "/usr/bin/python3", "spec/support/ws_peer.py", stdout = "pipe" })
local port = assert(tonumber(p.stdout:read("l", 60)))
local opts = { ping_interval = 0.3, ping_timeout = 0.5 }
local live = assert(ms.http.websocket("ws://127.0.0.1:" .. port .. "/echo", opts))
-- idle through several intervals: the peer answers the pings, none surfaces
local none, why = live:receive(1.5)
assert(none == nil and why == "timeout", tostring(why))
assert(live:send("still here") and live:receive(30) == "still here")
live:close()
local before = ms.metrics().http.websocket_client_ping_timeouts
local ws = assert(ms.http.websocket("ws://127.0.0.1:" .. port .. "/echo", opts))
assert(ws:send("a") and ws:receive(30) == "a")
p:kill("STOP") -- gone without a FIN: only the keepalive can tell
local data, what, code, reason = ws:receive(60)
assert(data == nil and what == "closed" and code == 1006, tostring(what) .. " " .. tostring(code))
assert(reason:find("did not answer a ping", 1, true), reason)
assert(ws:closed())
assert(ms.metrics().http.websocket_client_ping_timeouts == before + 1)
p:kill("CONT")
p:kill("KILL")
p:wait(30)
p:close()
eventually(function() return ms.metrics().io.sockets_open == 0 end, "sockets closed")
print("CLIENT KEEPALIVE OK")
]], {}))
        assert.is_truthy(out:find("CLIENT KEEPALIVE OK", 1, true), out)
    end)

    it("the server ends a stopped client's connection with 1006, keeps a live idle one", function()
        local out = ok_run(script([[
local srv = assert(ms.http.serve{ listen = "127.0.0.1:0", agents = 1,
    websocket = { ping_interval = 0.3, ping_timeout = 0.5, handler = function(ws)
        local data, what, code, reason = ws:receive()
        if data == nil and code == 1006 and tostring(reason):find("did not answer a ping", 1, true) then
            ms.events.publish("keepalive", "1006 seen")
        end
    end } })
local _, port = srv:address()
local sub = ms.events.subscribe("keepalive")
local url = "ws://127.0.0.1:" .. port .. "/"
local function client()
    local p = assert(ms.process.spawn{ "/usr/bin/python3", "spec/support/ws_clients.py", "hold", url,
                                       stdout = "pipe" })
    assert(p.stdout:read("l", 60) == "open")
    return p
end
local m0 = ms.metrics().http
local alive, stopped = client(), client()
stopped:kill("STOP")
eventually(function() return ms.metrics().http.websocket_ping_timeouts == m0.websocket_ping_timeouts + 1 end,
           "the ping timeout")
local seen = sub:recv(30)
assert(seen == "1006 seen" or (type(seen) == "table" and seen.value == "1006 seen"), tostring(seen))
-- the live client answers the pings: it outlives a few more intervals
ms.sleep(1.5)
local m = ms.metrics().http
assert(m.websocket_ping_timeouts == m0.websocket_ping_timeouts + 1)
assert(m.websocket_closed_abnormal == m0.websocket_closed_abnormal + 1)
assert(m.websockets_open == 1, tostring(m.websockets_open))
stopped:kill("CONT")
-- what the stopped client saw once it woke: the connection gone without a close
local line = stopped.stdout:read("l", 60)
assert(line and line:find("^closed 1006"), tostring(line))
stopped:wait(30)
assert(srv:close(30))
assert(alive.stdout:read("l", 60) == "closed 1001")
alive:wait(30)
local none = pcall(ms.http.serve, { listen = "127.0.0.1:0", websocket = { handler = function() end,
                                     ping_interval = -1 } })
assert(not none)
print("SERVER KEEPALIVE OK")
]], {}))
        assert.is_truthy(out:find("SERVER KEEPALIVE OK", 1, true), out)
    end)
end)
