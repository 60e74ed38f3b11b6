-- ms.net: TCP and Unix sockets for agents.  Each case runs `ms-host run`
-- on a script that checks itself (assert) and prints what the case then
-- looks for, so the spec also runs against the sanitizer builds' ms-host.
-- Descriptors are counted in /proc/PID/fd of the host itself.
-- spec-kind: subprocess
local h = require "spec.support.helpers"

local HOST, q = h.host, h.shell_quote

-- Runs script (text) with ms-host; returns status, stdout, stderr.
local function run(script, extra, prefix)
    local path = h.tmpfile(script, ".lua")
    local out, err = os.tmpname(), os.tmpname()
    local rc = os.execute(("%s timeout -k 5 120 %s run %s --workers 2 %s >%s 2>%s </dev/null")
        :format(prefix or "", q(HOST), q(path), extra or "", q(out), q(err)))
    local o, e = h.slurp(out), h.slurp(err)
    os.remove(path) os.remove(out) os.remove(err)
    return rc, o, e
end

local function ok_run(script, extra, prefix)
    local rc, out, err = run(script, extra, prefix)
    assert(rc == 0 or rc == true,
        ("ms-host exited %s\n--- stdout:\n%s--- stderr:\n%s"):format(tostring(rc), out, err))
    return out, err
end

-- Shared by the scripts: descriptors of this process, and a wait for a
-- condition with a generous bound (no timing decides a pass).
local PRELUDE = [[
local function fds()
    local ok, n = ms.blocking(function()
        local p = io.popen("ls /proc/$PPID/fd | wc -l")
        local n = tonumber(p:read("*a"))
        p:close()
        return n
    end)
    assert(ok, n)
    return n
end
local function eventually(cond, what)
    for _ = 1, 2000 do
        if cond() then return end
        ms.sleep(0.01)
    end
    error("never happened: " .. what, 2)
end
local function listener()
    local l = assert(ms.net.listen("127.0.0.1:0"))
    local _, port = l:local_address()
    return l, "127.0.0.1:" .. port
end
-- One connection made and closed first: libuv opens a descriptor or two
-- of its own on first use (and keeps them), which a count must not see.
local function warm_up()
    local l, addr = listener()
    local t = ms.spawn(function() local c = l:accept(30) c:read("a", 30) c:close() end)
    local c = assert(ms.net.connect(addr, 30))
    c:close()
    assert(t:join(30))
    l:close()
    ms.sleep(0.1)
end
]]

describe("ms.net streams", function()
    it("connect, accept, and read by count, line, some bytes and to the end", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local srv = ms.spawn(function()
    local c = assert(l:accept(30))
    assert(c:write("abcdef"))
    assert(c:write("line one\r\nline two\nrest"))
    assert(c:shutdown(30))
    return true
end)
local c = assert(ms.net.connect(addr, 30))
assert(c:read(3, 30) == "abc")
assert(c:read(3, 30) == "def")
assert(c:read("l", 30) == "line one")
assert(c:read("L", 30) == "line two\n")
assert(c:read("a", 30) == "rest")
local v, e = c:read("l", 30)
assert(v == nil and e == "closed", tostring(e))
assert(srv:join(30))
local host, port = c:peer_address()
assert(host == "127.0.0.1" and port == tonumber(addr:match(":(%d+)$")))
assert(c:nodelay(true) == true and c:keepalive(true, 30) == true)
c:close()
assert(c:closed())
local v2, e2 = c:read(1)
assert(v2 == nil and e2 == "closed")
print("streams ok")
]])
        h.assert_contains(out, "streams ok")
    end)

    it("echo many lines through one connection both ways, and writes wait for room", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
ms.spawn(function()
    local c = assert(l:accept(30))
    while true do
        local line = c:read("L", 30)
        if not line then break end
        assert(c:write(line, 30))
    end
    c:close()
end)
local c = assert(ms.net.connect(addr, 30))
local big = string.rep("x", 200000) .. "\n"   -- past the write buffer: waits for room
local reader = ms.spawn(function()
    local total = 0
    for i = 1, 1000 do
        local line = assert(c:read("l", 30))
        total = total + #line
    end
    return total
end)
for i = 1, 999 do assert(c:write("hello " .. i .. "\n", 30)) end
assert(c:write(big, 30))
local ok, total = reader:join(60)
assert(ok and total > 200000, tostring(total))
print("echo ok", total)
]])
        h.assert_contains(out, "echo ok")
    end)

    it("Unix sockets connect and echo, and a closed listener removes its file", function()
        local out = ok_run(PRELUDE .. [[
local path = os.tmpname()
os.remove(path)
local l = assert(ms.net.listen("unix:" .. path))
assert(l:local_address() == path)
ms.spawn(function()
    local c = assert(l:accept(30))
    c:write(assert(c:read("L", 30)))
end)
local c = assert(ms.net.connect({ path = path }, 30))
assert(c:write("over unix\n"))
assert(c:read("l", 30) == "over unix")
l:close()
assert(io.open(path) == nil, "socket file left behind")
print("unix ok")
]])
        h.assert_contains(out, "unix ok")
    end)

    it("resolve and connect by name go through getaddrinfo", function()
        local out = ok_run(PRELUDE .. [[
local addrs = assert(ms.net.resolve("localhost", 30))
assert(#addrs >= 1)
local l = assert(ms.net.listen("127.0.0.1:0"))
local _, port = l:local_address()
ms.spawn(function() local c = l:accept(30) if c then c:write("hi") c:close() end end)
local c = assert(ms.net.connect("localhost:" .. port, 30))
assert(c:read(2, 30) == "hi")
print("resolve ok")
]])
        h.assert_contains(out, "resolve ok")
    end)
end)

describe("ms.net errors", function()
    it("are values: refused, unknown host, peer closed mid-read, timeouts", function()
        local out = ok_run(PRELUDE .. [[
local c, err = ms.net.connect("127.0.0.1:1", 30)   -- nothing listens on port 1
assert(c == nil and err.code == "IoError", tostring(err))
assert(err.message:find("refused"), err.message)
local c2, err2 = ms.net.connect("no-such-host.invalid:80", 30)
assert(c2 == nil and err2.message:find("unknown host"), tostring(err2))
local r, rerr = ms.net.resolve("no-such-host.invalid", 30)
assert(r == nil and rerr.message:find("unknown host"), tostring(rerr))
assert(ms.metrics().io.connect_failures >= 2)

local l2, addr2 = listener()
ms.spawn(function()
    local s = assert(l2:accept(30))
    s:write("part")
    s:close()                      -- the peer vanishes mid-read
end)
local s = assert(ms.net.connect(addr2, 30))
local v, e, partial = s:read(10, 30)
assert(v == nil and e == "closed" and partial == "part", tostring(e))

local l3, addr3 = listener()
local quiet = assert(ms.net.connect(addr3, 30))
local v3, e3 = quiet:read("l", 0.05)
assert(v3 == nil and e3 == "timeout")
local a3, ae3 = l3:accept(0.05)
local held = a3                    -- the connection above: accepted at once
local a4, ae4 = l3:accept(0.05)
assert(a4 == nil and ae4 == "timeout", tostring(ae4))
print("errors ok")
]])
        h.assert_contains(out, "errors ok")
    end)

    it("refuse bad arguments by name, and run no code of a hostile address", function()
        local out = ok_run(PRELUDE .. [[
local evil = setmetatable({}, {
    __index = function() error("index ran") end,
    __tostring = function() error("tostring ran") end,
    __len = function() error("len ran") end,
})
for _, bad in ipairs{ evil, 42, true, "nocolon", "host:99999", "host:x", "[::1", "unix:",
                       "::1:80", "host: 80", "host:+80", "host:-0", "a]b:80", "host\0x:80",
                       { host = "h" }, { port = 1 }, { path = 7 }, { host = "[::1]", port = 1 } } do
    local ok, e = pcall(ms.net.connect, bad, 1)
    assert(not ok and tostring(e):find("address"), tostring(e))
    local ok2, e2 = pcall(ms.net.listen, bad)
    assert(not ok2 and tostring(e2):find("address"), tostring(e2))
end
local errobj = select(2, ms.net.connect("127.0.0.1:1", 30))
local ok, e = pcall(ms.net.connect, errobj)
assert(not ok and tostring(e):find("address"))
local l, addr = listener()
local ok4, e4 = pcall(l.accept, l, -1)
assert(not ok4 and tostring(e4):find("timeout"))
local c = assert(ms.net.connect(addr, 30))
local ok5, e5 = pcall(c.read, c, "x")
assert(not ok5 and tostring(e5):find("format"))
local ok6, e6 = pcall(c.write, c, {})
assert(not ok6 and tostring(e6):find("data"))
local ok7, e7 = pcall(c.read, l)
assert(not ok7)
print("hostile ok")
]])
        h.assert_contains(out, "hostile ok")
    end)

    it("a line longer than the limit from a hostile peer is an error, not memory", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
ms.spawn(function()
    local s = assert(l:accept(30))
    local junk = string.rep("\0\255garbage", 10000)
    for i = 1, 20 do if not s:write(junk, 30) then break end end
end)
local c = assert(ms.net.connect(addr, 30))
local v, e = c:read("l", 30)
assert(v == nil and tostring(e):find("line longer"), tostring(e))
print("garbage ok")
]])
        h.assert_contains(out, "garbage ok")
    end)

    it("EMFILE is an error value, and the host goes on", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
ms.spawn(function() while true do local c = l:accept() if not c then break end end end)
local held, err = {}, nil
for i = 1, 200 do
    local c, e = ms.net.connect(addr, 30)
    if not c then err = e break end
    held[#held + 1] = c
end
assert(err, "no error with ulimit -n 64")
assert(err.code == "ResourceExhausted", tostring(err))
assert(tostring(err):find("EMFILE") or tostring(err):find("too many open files"), tostring(err))
for _, c in ipairs(held) do c:close() end
held = nil
eventually(function() return ms.net.connect(addr, 30) ~= nil end, "connect again")
print("emfile ok")
]], nil, "ulimit -n 64;")
        h.assert_contains(out, "emfile ok")
    end)
end)

describe("ms.net limits", function()
    it("agent_io_limit refuses the next socket with a clear error", function()
        local out = ok_run(PRELUDE .. [[
local server = ms.agent.spawn{ fn = function()
    local l = assert(ms.net.listen("127.0.0.1:0"))
    local _, port = l:local_address()
    local _, from = ms.recv()
    from:send(port)
    local held = {}
    while true do
        local c, e = l:accept()
        if c then held[#held + 1] = c elseif e == "closed" then break else ms.sleep(0.01) end
    end
end }
server:send("port?")
local addr = "127.0.0.1:" .. assert(ms.recv(30))
local a = assert(ms.net.connect(addr, 30))
local b = assert(ms.net.connect(addr, 30))
local c, e = ms.net.connect(addr, 30)
assert(c == nil and e.code == "ResourceExhausted" and e.message:find("agent_io_limit"),
       tostring(e))
assert(ms.metrics().io.limit_refusals >= 1)
print("limit ok")
]], "--set agent_io_limit=2")
        h.assert_contains(out, "limit ok")
    end)
end)

describe("ms.net and stopping", function()
    it("a stopped agent in a read, an accept and a connect releases every descriptor", function()
        local out = ok_run(PRELUDE .. [==[
local ffi = require "ffi"
ffi.cdef[[
int socket(int, int, int);
int listen(int, int);
int close(int);
typedef struct { unsigned short family; unsigned short port; unsigned int addr; char zero[8]; } sin_t;
int bind(int, const sin_t *, unsigned);
int getsockname(int, sin_t *, unsigned *);
]]
-- A listening socket that never accepts, its backlog full: connects to it hang.
local fd = ffi.C.socket(2, 1, 0)
local sa = ffi.new("sin_t", { family = 2, port = 0, addr = 0x0100007f })
assert(ffi.C.bind(fd, sa, 16) == 0 and ffi.C.listen(fd, 0) == 0)
local len = ffi.new("unsigned[1]", 16)
ffi.C.getsockname(fd, sa, len)
local port = bit.rshift(bit.bswap(sa.port), 16)
local blackhole = "127.0.0.1:" .. port

local l, addr = listener()
ms.spawn(function()
    while true do
        local c = l:accept()
        if not c then break end
        ms.spawn(function() c:read("a") c:close() end)
    end
end)
warm_up()
local before = fds()
local function agent(body)
    local a = ms.agent.spawn{ args = { addr = addr, blackhole = blackhole }, fn = body }
    ms.monitor(a)
    return a
end
local readers = agent(function(args)
    local c = assert(ms.net.connect(args.addr, 30))
    ms.spawn(function() c:read("l") end)
    local l2 = assert(ms.net.listen("127.0.0.1:0"))
    ms.spawn(function() l2:accept() end)
    for i = 1, 3 do ms.spawn(function() ms.net.connect(args.blackhole) end) end
    ms.recv()
end)
eventually(function()
    for _, a in ipairs(ms.metrics().agents) do
        if a.id == readers:id() and a.io_handles >= 2 then return true end
    end
end, "the agent holds its sockets")
ms.sleep(0.2)
readers:stop("enough")
local m = assert(ms.recv(30))
assert(m.event == "exit" and m.reason == "killed", tostring(m.reason))
eventually(function() return fds() <= before end, "descriptors back to " .. before)
ffi.C.close(fd)
print("stop ok")
]==])
        h.assert_contains(out, "stop ok")
    end)

    it("ms.timeout and t:abort interrupt a read; the socket stays usable", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local server
ms.spawn(function() server = assert(l:accept(30)) end)
local c = assert(ms.net.connect(addr, 30))
local ok, e = ms.timeout(0.05, function() return c:read("l") end)
assert(ok == nil and e == "timeout")
local t = ms.spawn(function() return c:read("l") end)
ms.sleep(0.05)
t:abort()
eventually(function() return server ~= nil end, "accepted")
server:write("after\n")
assert(c:read("l", 30) == "after")
print("interrupt ok")
]])
        h.assert_contains(out, "interrupt ok")
    end)

    it("a forgotten or collected socket is closed", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local peers = {}
ms.spawn(function() while true do local c = l:accept() if not c then break end peers[#peers+1] = c end end)
warm_up()
local before = fds()
local a = ms.agent.spawn{ args = addr, fn = function(addr)
    for i = 1, 5 do assert(ms.net.connect(addr, 30)) end   -- forgotten at its end
end }
ms.monitor(a)
assert(ms.recv(30).reason == "normal")
do local c = assert(ms.net.connect(addr, 30)) end
collectgarbage() collectgarbage()
eventually(function() return #peers == 6 end, "accepted all")
for _, p in ipairs(peers) do
    local v, e = p:read("a", 30)
    assert(v == "", tostring(e))               -- each peer sees the end
    p:close()
end
eventually(function() return fds() <= before end, "descriptors back")
print("forgotten ok")
]])
        h.assert_contains(out, "forgotten ok")
    end)
end)

describe("handing a socket to another agent", function()
    it("moves it: the receiver owns it, the sender's handle is dead", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local handler = ms.agent.spawn{ fn = function()
    local conn = ms.recv()
    while true do
        local line = conn:read("L", 30)
        if not line then break end
        conn:write(line)
    end
end }
ms.spawn(function()
    local c = assert(l:accept(30))
    assert(handler:send(c))
    local ok, e = pcall(c.read, c)
    assert(not ok and tostring(e):find("handed to another agent"), tostring(e))
    local ok2, e2 = pcall(handler.send, handler, c)
    assert(not ok2 and tostring(e2):find("no longer holds"), tostring(e2))
end)
local c = assert(ms.net.connect(addr, 30))
c:write("through the handler\n")
assert(c:read("l", 30) == "through the handler")
print("handover ok")
]])
        h.assert_contains(out, "handover ok")
    end)

    it("refuses a busy socket and one socket twice in a message", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local other = ms.agent.spawn{ fn = function() ms.recv() ms.recv() end }
local c = assert(ms.net.connect(addr, 30))
local t = ms.spawn(function() c:read("l") end)
ms.sleep(0.05)
local ok, e = pcall(other.send, other, c)
assert(not ok and tostring(e):find("reading"), tostring(e))
t:abort()
local ok2, e2 = pcall(other.send, other, { c, c })
assert(not ok2 and tostring(e2):find("already in this message"), tostring(e2))
assert(other:send({ conn = c }))
print("refuse ok")
]])
        h.assert_contains(out, "refuse ok")
    end)

    it("closes it when the receiver is gone before receiving", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
local accepted
ms.spawn(function() accepted = assert(l:accept(30)) end)
local c = assert(ms.net.connect(addr, 30))
eventually(function() return accepted ~= nil end, "accepted")
local before = fds()
local sleeper = ms.agent.spawn{ fn = function() ms.sleep(1000) end }
ms.monitor(sleeper)
assert(sleeper:send(accepted))
sleeper:stop()
assert(ms.recv(30).event == "exit")
assert(c:read("a", 30) == "")            -- the peer sees the end
eventually(function() return fds() < before end, "descriptor closed")
print("orphan ok")
]])
        h.assert_contains(out, "orphan ok")
    end)
end)

describe("ms.net.udp", function()
    it("sends and receives datagrams, with the sender's address, and times out", function()
        local out = ok_run(PRELUDE .. [[
local a = assert(ms.net.udp("127.0.0.1:0"))
local b = assert(ms.net.udp("127.0.0.1:0"))
local _, pa = a:local_address()
local _, pb = b:local_address()
local v, e = a:recv(0.05)
assert(v == nil and e == "timeout")
local got = ms.spawn(function() return a:recv(30) end)
assert(b:send("ping", "127.0.0.1:" .. pa))
local ok, data, host, port = got:join(30)
assert(ok and data == "ping" and host == "127.0.0.1" and port == pb, tostring(data))
assert(a:send(string.rep("x", 60000), { host = "127.0.0.1", port = pb }))
assert(#b:recv(30) == 60000)
local ok2, e2 = pcall(a.send, a, "x", "unix:/tmp/x")
assert(not ok2 and tostring(e2):find("host:port"))
-- handed to another agent like any socket
local echo = ms.agent.spawn{ fn = function()
    local u = ms.recv()
    local d, h, p = u:recv(30)
    u:send(d, { host = h, port = p })
end }
assert(echo:send(b))
assert(a:send("via agent", "127.0.0.1:" .. pb))
assert(a:recv(30) == "via agent")
print("udp ok")
]])
        h.assert_contains(out, "udp ok")
    end)

    it("a stopped agent waiting in recv releases its socket", function()
        local out = ok_run(PRELUDE .. [[
warm_up()
local u0 = ms.net.udp() u0:close()
ms.sleep(0.1)
local before = fds()
local a = ms.agent.spawn{ fn = function() local u = assert(ms.net.udp()) u:recv() end }
ms.monitor(a)
eventually(function() return fds() > before end, "the socket open")
a:stop()
assert(ms.recv(30).reason == "killed")
eventually(function() return fds() <= before end, "descriptors back")
print("udp stop ok")
]])
        h.assert_contains(out, "udp stop ok")
    end)
end)

describe("ms.net metrics", function()
    it("count sockets, bytes and accepts in ms.metrics() and /metrics", function()
        local out = ok_run(PRELUDE .. [[
local l, addr = listener()
ms.spawn(function() local c = l:accept(30) c:write(c:read(5, 30)) end)
local c = assert(ms.net.connect(addr, 30))
c:write("12345")
assert(c:read(5, 30) == "12345")
local io = ms.metrics().io
assert(io.sockets_open >= 3, io.sockets_open)
assert(io.bytes_read >= 10 and io.bytes_written >= 10)
assert(io.accepted >= 1)
print("metrics ok")
]])
        h.assert_contains(out, "metrics ok")
    end)
end)
