-- fault/driver.lua: the script of the allocation-failure sweep
-- (fault/sweep.lua runs it once per refused allocation, under
-- ms-host-fault; see docs/testing.md).  It touches every ms.* function,
-- every handle method, a supervision tree, an HTTP server, the console (through
-- `ms-host attach`), the metrics endpoint and file, and ends with a
-- graceful ms.shutdown.
--
--   ms-host-fault run fault/driver.lua --workers 2 --console SOCK \
--       --metrics-file FILE --metrics-listen 127.0.0.1:PORT -- ATTACH_BIN PORT SOCK
--
-- Without an injected failure (MS_FAULT unset) every check must hold: the
-- script prints "driver: ok", or raises with the list of failed checks.
-- With one, a failed check is expected (an operation returns its error,
-- an agent ends with reason "oom"); the script prints what failed and
-- ends normally, and fault/sweep.lua judges the process: it must end by
-- itself, with status 0 or 1 (1 with a message), without a crash, a
-- panic, a sanitizer report or a leak.
--
-- Agent functions capture no upvalues (the host refuses them): what they
-- need comes in args.

local attach_bin, port, sock, child_file = ...
local injected = os.getenv("MS_FAULT") ~= nil
-- How long to wait for an answer that should come at once.  Without a
-- fault it is a hang guard only (docs/testing.md: events, not durations),
-- so it is generous; with one the answer often never comes, and the waits
-- of one run must stay well inside fault/sweep.lua's limit.
WAIT = injected and 2 or 20
local failed = {}

local function check(ok, what)
    if not ok then
        failed[#failed + 1] = what
    end
    return ok
end

-- Runs one part of the tour; an error in it is recorded, and the tour
-- goes on with the next part.
local function part(name, fn)
    io.stderr:write("driver: " .. name .. "\n") -- where a hung case hung
    local ok, err = pcall(fn)
    if not ok then
        failed[#failed + 1] = name .. ": " .. tostring(type(err) == "table" and err.message or err)
    end
end

-- ---------------------------------------------------------------------
-- Tasks and time

part("tasks", function()
    local t = ms.spawn(function(a, b) ms.yield() return a + b end, 1, 2)
    local ok, v = t:join(WAIT)
    check(ok and v == 3, "join returns the task's results")
    check(t:status() == "done", "status of a finished task")
    local s = ms.spawn(function() ms.sleep(10) end)
    check(s:status() == "ready" or s:status() == "waiting", "status of a new task")
    s:abort()
    check(s:status() == "aborted", "abort")
    local f = ms.spawn(function() error({ code = 7 }) end)
    local fok = f:join(WAIT)
    check(fok == nil, "join of a failed task")
    local t0 = ms.now()
    ms.sleep(0.002)
    check(ms.now() > t0, "ms.now advances")
    check(ms.timeout(0.001, function() ms.sleep(5) end) == nil, "timeout expires")
    local tok, tv = ms.timeout(5, function() return "in time" end)
    check(tok and tv == "in time", "timeout in time")
    local n = 0
    for _ in ms.interval(0.001) do
        n = n + 1
        if n == 3 then break end
    end
    check(n == 3, "interval ticks")
    for _ in ms.interval(0.001, "skip") do break end
    local bok, bv = ms.blocking(function(x) return x * 2 end, 21)
    check(bok and bv == 42, "blocking returns its results")
    check(ms.blocking(function() error("blocked and failed") end) == nil, "blocking failure")
    check(ms.timeout(0.001, function() ms.spawn(function() end):join() end) ~= false,
          "nested join")
end)

-- ---------------------------------------------------------------------
-- Agents and messages

-- Calls carry { op = ... }; anything else is a plain message.
local function echo(args)
    while true do
        local m, from = ms.recv()
        if m == "stop" then return "bye" end
        if type(m) == "table" and m.event == "shutdown" then return end
        local op = type(m) == "table" and m.op
        if op == "sem" then
            local p = m.sem:acquire(1, args.wait)
            from(p and p:count() or -1)
            if p then p:release() end
        elseif op == "chan" then
            m.chan:send(args.tag .. ":" .. tostring(m.v))
            from(m.chan:len())
        elseif op == "echo" then
            from({ echoed = m, by = ms.self():name() })
        end -- op == "drop": the reply handle is dropped without an answer
    end
end

part("agents", function()
    local a = ms.agent.spawn{ name = "fault.echo", fn = echo, args = { tag = "echo", wait = WAIT } }
    check(a:name() == "fault.echo" and a:id() > 0, "name and id")
    check(ms.agent.whereis("fault.echo") == a or ms.agent.whereis("fault.echo") ~= nil,
          "whereis")
    local r = a:call({ op = "echo", 1, "two", { three = true }, [4.5] = false }, WAIT)
    check(type(r) == "table" and r.echoed and r.echoed[2] == "two", "call and reply")
    check(a:call({ op = "drop" }, 0.01) == nil, "a dropped reply handle")
    a:call({ op = "echo" }, 0.000001) -- the reply comes after the caller gave up
    local sem = ms.semaphore(2)
    check(a:call({ op = "sem", sem = sem }, WAIT) == 1, "a semaphore in a message")
    local ch = ms.channel(4)
    check(a:call({ op = "chan", chan = ch, v = 9 }, WAIT) == 1, "a channel in a message")
    check(ch:recv(WAIT) == "echo:9", "a value through the shared channel")
    check(not pcall(a.send, a, { f = function() end }), "a function is refused")
    check(a:send("hello"), "send")
    check(a:send({ self = ms.self(), deep = { { { { "x" } } } } }), "send handles")
    local info = a:info()
    check(type(info) == "table" and info.name == "fault.echo", "info")
    local seen = false
    for _, row in ipairs(ms.agents()) do
        if row.name == "fault.echo" then seen = true end
    end
    check(seen, "ms.agents lists it")
    ms.monitor(a)
    check(a:send("stop"), "send stop")
    local note = ms.recv(WAIT)
    check(type(note) == "table" and note.event == "exit" and note.reason == "normal",
          "exit notice")
    check(a:send("late") == nil, "send to an exited agent")

    -- One from a file, with args and the main script's argument style.
    if child_file then
        local b = ms.agent.spawn{ file = child_file, args = { n = 5 } }
        ms.monitor(b)
        local m = ms.recv(WAIT)
        check(type(m) == "table" and m.event == "exit", "file agent ends")
    end

    check(ms.self():name() == "main", "ms.self")
end)

-- Agents that fail: with an error object, out of their memory limit, and
-- stopped in a loop (interpreted, so the stop interrupts it).  The loop
-- is stopped whatever else fails here: left running, it would hold the
-- graceful shutdown at the end until its deadline.
part("failing agents", function()
    local loop = ms.agent.spawn{ jit = false, fn = function() while true do end end }
    local ok, err = pcall(function()
        ms.monitor(loop)
        local bad = ms.agent.spawn{ fn = function()
            error(setmetatable({ message = "bad" }, {}))
        end }
        ms.monitor(bad)
        local oom = ms.agent.spawn{ memory_limit = 256 * 1024, fn = function()
            local t = {}
            for i = 1, 1e7 do t[i] = ("y"):rep(100) .. i end
        end }
        ms.monitor(oom)
        -- (The loop sends nothing: a task it woke would wait in its
        -- worker's LIFO slot, which no other worker takes while it loops.)
        ms.sleep(0.02)
        loop:stop("enough")
        local reasons, waiting = {}, 3
        local deadline = ms.now() + 3 * WAIT
        while waiting > 0 and ms.now() < deadline do
            local m = ms.recv(WAIT)
            if type(m) == "table" and m.event == "exit" then
                reasons[m.name] = m.reason
                waiting = waiting - 1
            end
        end
        check(reasons[bad:name()] == "error", "error exit")
        check(reasons[oom:name()] == "oom", "oom exit")
        check(reasons[loop:name()] == "killed", "stopped in a loop")
    end)
    loop:stop("enough")
    assert(ok, err)
end)

-- ---------------------------------------------------------------------
-- Semaphores and channels

part("sync", function()
    local s = ms.semaphore(3)
    local p = s:acquire(2, WAIT)
    check(p and p:count() == 2, "acquire")
    check(s:available() == 1, "available")
    local q = s:try_acquire(1)
    check(q ~= nil, "try_acquire")
    check(s:try_acquire(1) == nil, "try_acquire when none is left")
    p:release()
    q:release()
    s:add_permits(2)
    s:forget(1)
    if s.reduce_permits then s:reduce_permits(1) end
    local waiter = ms.spawn(function(sem) return sem:acquire(100, WAIT) end, s)
    ms.yield()
    s:close()
    check(waiter:join(WAIT) ~= nil, "a waiter on a closed semaphore")

    local c = ms.channel(2) -- local to this agent
    check(c:send("a", 1) and c:try_send("b"), "local channel send")
    check(not c:try_send("c"), "local channel full")
    check(c:len() == 2, "len")
    check(c:recv(1) == "a" and c:try_recv() == "b", "local channel recv")
    check(c:recv(0.001) == nil, "recv times out")
    local u = ms.channel()
    local reader = ms.spawn(function(ch)
        local got = {}
        while true do
            local v = ch:recv(WAIT)
            if v == nil then return got end
            got[#got + 1] = v
        end
    end, u)
    for i = 1, 20 do u:send({ i = i }) end
    u:close()
    local rok, got = reader:join(WAIT)
    check(rok and #got == 20, "local channel with a reader task")
    check(u:send(1) == nil, "send on a closed channel")

    -- A channel shared with another agent while it holds values.
    local sh = ms.channel(8)
    sh:send("before")
    local peer = ms.agent.spawn{ fn = function(args)
        local v = args.ch:recv(args.wait)
        args.ch:send("peer saw " .. tostring(v))
        ms.sleep(0.01)
    end, args = { ch = sh, wait = WAIT } }
    ms.sleep(0.02)
    check(sh:recv(WAIT) == "peer saw before", "a shared channel")
    ms.monitor(peer)
    ms.recv(WAIT)
    sh:close()
end)

-- ---------------------------------------------------------------------
-- Events, metrics, tuning

part("events", function()
    local sub = ms.events.subscribe("fault.topic", 8)
    local all = ms.events.subscribe("*", 2)
    ms.events.publish("fault.topic", { n = 1, s = "x" })
    local e = sub:recv(1)
    check(e ~= nil, "an event arrives")
    check(type(ms.events.stats()) == "table", "events.stats")
    sub:close()
    all:close()
end)

part("metrics", function()
    local m = ms.metrics()
    check(type(m) == "table" and m.workers and m.agents, "ms.metrics")
    local h = ms.metrics_history()
    check(h == nil or type(h) == "table", "ms.metrics_history")
end)

part("task dump", function()
    -- Agents in waits for the dump to describe; the profiler is left out
    -- (each profile takes its seconds, and the sweep runs this once per
    -- allocation).
    local db = ms.agent.spawn{ name = "dump-db", fn = function() ms.recv() end }
    local t = ms.spawn(function() ms.sleep(10) end)
    ms.yield()
    local d = ms.tasks()
    check(type(d) == "table" and type(d.agents) == "table", "ms.tasks")
    local text = ms.tasks{ format = "text", agent = "dump-db" }
    check(type(text) == "string", "ms.tasks as text")
    local json = ms.tasks{ format = "json", state = "waiting" }
    check(type(json) == "string", "ms.tasks as JSON")
    t:abort()
    db:stop()
end)

part("tune", function()
    local changes = ms.tune{ budget = 100 }
    check(type(changes) == "table", "ms.tune")
    ms.tune{ budget = 128 }
    check(not pcall(ms.tune, { worker_threads = 0 }), "ms.tune refuses a bad value")
    local runs = 0
    local tuner = ms.tuner{ interval = 0.005, fn = function(now, prev, t)
        runs = runs + 1
        if t:rate("spawned_tasks") < 0 then return { budget = 127 }, "never" end
    end }
    local deadline = ms.now() + 5
    repeat ms.sleep(0.01) until runs > 0 or ms.now() > deadline
    tuner:stop()
    check(runs > 0, "ms.tuner runs")
end)

-- ---------------------------------------------------------------------
-- Supervision, retry, circuit breaker

local function worker(args)
    while true do
        local m, from = ms.recv()
        if type(m) == "table" and m.event == "shutdown" then return end
        if m == "crash" then error("asked to crash", 0) end
        if type(from) == "userdata" then from("ok") end
    end
end

part("supervisor", function()
    local sup, err = ms.supervisor{
        name = "fault.sup", strategy = "one_for_one", intensity = 10, period = 5,
        backoff = { min = 0.001, max = 0.01 },
        children = {
            { id = "w1", start = { fn = worker, name = "fault.w1" }, shutdown = 1 },
            { id = "w2", start = { fn = worker }, shutdown = "brutal_kill" },
            { id = "sub", start = {
                strategy = "simple_one_for_one",
                children = { { id = "dyn", start = { fn = worker }, restart = "transient" } },
            } },
        },
    }
    if not check(sup ~= nil, "supervisor started: " .. tostring(err)) then return end
    local w1 = ms.agent.whereis("fault.w1")
    if w1 then w1:send("crash") end
    ms.sleep(0.02)
    local kids = sup:which_children()
    check(type(kids) == "table" and #kids == 3, "which_children")
    check(type(sup:count_children()) == "table", "count_children")
    local extra = sup:start_child({ id = "w3", start = { fn = worker } })
    check(extra ~= nil, "start_child")
    check(sup:terminate_child("w3") ~= nil, "terminate_child")
    check(sup:restart_child("w3") ~= nil, "restart_child")
    sup:terminate_child("w3")
    check(sup:delete_child("w3") ~= nil, "delete_child")
    for _, k in ipairs(kids or {}) do
        if k.id == "sub" and k.agent then
            local nested = ms.supervisor.attach(k.agent, 2)
            if nested then
                local d = nested:start_child({ x = 1 })
                check(d ~= nil, "a dynamic child")
            end
        end
    end
    check(type(sup:stats()) == "table", "stats")
    sup:stop()
end)

part("retry and breaker", function()
    local tries = 0
    local v = ms.retry{ max_attempts = 3, delay = 0.001 }(function()
        tries = tries + 1
        if tries < 2 then return nil, "not yet" end
        return "done"
    end)
    check(v == "done", "ms.retry")
    local cb = ms.circuit_breaker{ failure_threshold = 1, reset_timeout = 0.01 }
    cb:call(function() error("fails") end)
    check(cb:state() == "open", "the breaker opens")
    check(type(cb:stats()) == "table" and cb:retry_in() ~= nil, "breaker stats")
    cb:reset()
end)

part("the host log", function()
    -- longer than hostlog.c's stack buffer: the line is built on the heap,
    -- or cut (and says so) when the heap refuses
    check(pcall(ms.log, "info", "fault.long", ("x"):rep(5000)), "ms.log of a long line")
    check(not pcall(ms.log, "loud", "fault.bad", "m"), "ms.log refuses a bad level")
end)

part("files and json", function()
    -- Relative paths: each case runs in a directory of its own.
    local dir = "fsdir"
    check(ms.fs.mkdir(dir .. "/sub", { parents = true }) == true, "ms.fs.mkdir")
    local text = ms.json.encode({ list = { 1, 2.5, ms.json.null }, name = "x" }, { sort_keys = true })
    check(text and ms.fs.write_file(dir .. "/a.json", text) == true, "ms.json.encode, ms.fs.write_file")
    local back = ms.fs.read_file(dir .. "/a.json")
    local v = back and ms.json.decode(back)
    check(type(v) == "table" and v.name == "x", "ms.fs.read_file, ms.json.decode")
    check(select(2, ms.json.decode("[1,")) ~= nil, "ms.json.decode refuses bad text")
    check(select(2, ms.json.encode({ f = print })) ~= nil, "ms.json.encode refuses a function")
    local f = ms.fs.open(dir .. "/b", "w+")
    if check(f ~= nil, "ms.fs.open") then
        check(f:write("abc") == true, "file:write")
        check(f:seek("set", 0) == 0, "file:seek")
        check(f:read(2) == "ab", "file:read")
        check(f:close() == true, "file:close")
    end
    check(type(ms.fs.stat(dir .. "/b")) == "table", "ms.fs.stat")
    check(#(ms.fs.list(dir) or {}) == 3, "ms.fs.list")
    check(ms.fs.rename(dir .. "/b", dir .. "/c") == true, "ms.fs.rename")
    check(ms.fs.remove(dir .. "/c") == true, "ms.fs.remove")
    check(select(2, ms.fs.read_file(dir .. "/none")) ~= nil, "ms.fs.read_file of nothing")
    ms.fs.open(dir .. "/a.json") -- left open: closed when collected, or at the end
    -- An agent stopped while its file jobs come and go.
    local a = ms.agent.spawn{ fn = function()
        local ms = require "ms"
        while true do ms.fs.stat(".") end
    end }
    ms.sleep(0.01)
    a:stop()
end)

-- ---------------------------------------------------------------------
-- Sockets and processes (docs/io.md): a connection echoed through a
-- handler agent it was handed to, a datagram, a name, a refused connect,
-- a child process with a pipe.

local function net_handler()
    local conn = ms.recv(WAIT)
    if not conn then return end
    local line = conn:read("L", WAIT)
    if line then conn:write(line, WAIT) end
    conn:close()
end

part("sockets", function()
    local l, err = ms.net.listen("127.0.0.1:0")
    if not check(l ~= nil, "listen: " .. tostring(err)) then return end
    local _, lport = l:local_address()
    local handler = ms.agent.spawn{ fn = net_handler }
    local acceptor = ms.spawn(function()
        local c = l:accept(WAIT)
        if c then handler:send(c) end
    end)
    local c = ms.net.connect("127.0.0.1:" .. lport, WAIT)
    if check(c ~= nil, "connect") then
        c:write("line\n", WAIT)
        check(c:read("l", WAIT) == "line", "echo through a handed-over socket")
        check(c:read("a", WAIT) == "", "the handler closed it")
        c:close()
    end
    acceptor:join(WAIT)
    l:close()
    check(ms.net.connect("127.0.0.1:1", WAIT) == nil, "a refused connect is a value")
    check(type(ms.net.resolve("localhost", WAIT)) == "table", "resolve")
    local u, v = ms.net.udp("127.0.0.1:0"), ms.net.udp("127.0.0.1:0")
    if check(u ~= nil and v ~= nil, "udp") then
        local _, uport = u:local_address()
        v:send("d", "127.0.0.1:" .. uport)
        check(u:recv(WAIT) == "d", "a datagram")
        u:close() v:close()
    end
end)

-- The HTTP client (docs/http.md): against a small server of this agent's
-- own (a task per connection): a whole response, a stream, a request
-- cancelled by ms.timeout while the server holds it, a refused port.
part("http client", function()
    local l, err = ms.net.listen("127.0.0.1:0")
    if not check(l ~= nil, "listen: " .. tostring(err)) then return end
    local _, lport = l:local_address()
    local base = "http://127.0.0.1:" .. lport
    local server = ms.spawn(function()
        while true do
            local c = l:accept(WAIT)
            if not c then return end
            ms.spawn(function()
                local head = ""
                while not head:find("\r\n\r\n", 1, true) do
                    local got = c:read(nil, WAIT)
                    if not got then c:close() return end
                    head = head .. got
                end
                if head:find("GET /hang", 1, true) then
                    c:read("a", WAIT) -- until the client goes
                else
                    c:write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n"
                            .. "\r\nhello", WAIT)
                end
                c:close()
            end)
        end
    end)
    local status, headers, body = ms.http.request{ url = base .. "/a", timeout = WAIT }
    check(status == 200 and body == "hello", "an http response: " .. tostring(headers))
    local s, _, stream = ms.http.request{ url = base .. "/s", stream = true, timeout = WAIT }
    if check(s == 200, "an http stream") then
        check(stream:read(nil, WAIT) == "hello", "a stream's body")
        stream:close()
    end
    check(ms.timeout(0.1, function()
        return ms.http.request{ url = base .. "/hang", timeout = WAIT }
    end) == nil, "a request cancelled by ms.timeout")
    local none, e = ms.http.request{ url = "http://127.0.0.1:1/", timeout = WAIT }
    check(none == nil and type(e) == "table", "a refused request is a value")
    l:close()
    server:join(WAIT)
end)

-- The WebSocket client (docs/http.md) against a one-message server of
-- this agent's own, written out by hand: handshake, an echoed text
-- frame, the close.
part("websocket client", function()
    local l, err = ms.net.listen("127.0.0.1:0")
    if not check(l ~= nil, "listen: " .. tostring(err)) then return end
    local _, lport = l:local_address()
    local server = ms.spawn(function()
        local c = l:accept(WAIT)
        if not c then return end
        local key
        repeat
            local line = c:read("l", WAIT)
            if not line then c:close() return end
            key = key or line:match("^Sec%-WebSocket%-Key: (%S+)")
        until line == ""
        c:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                .. "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                .. ms.http._ws_accept(key or "") .. "\r\n\r\n", WAIT)
        local head = c:read(2, WAIT) -- one short masked frame from the client
        if not head then c:close() return end
        local n = bit.band(head:byte(2), 0x7f)
        local mask, data = c:read(4, WAIT), c:read(n, WAIT)
        if mask and data then
            local plain = {}
            for i = 1, n do
                plain[i] = string.char(bit.bxor(data:byte(i), mask:byte((i - 1) % 4 + 1)))
            end
            c:write(string.char(0x81, n) .. table.concat(plain), WAIT)
        end
        c:read(2, WAIT) -- the client's close (its payload follows)
        c:write(string.char(0x88, 2, 0x03, 0xe8), WAIT) -- 1000
        c:close()
    end)
    local ws, werr = ms.http.websocket("ws://127.0.0.1:" .. lport .. "/", { timeout = WAIT })
    if check(ws ~= nil, "websocket: " .. tostring(werr)) then
        check(ws:send("abc") == true, "a websocket send")
        check(ws:receive(WAIT) == "abc", "a websocket echo")
        ws:close(1000, "", WAIT)
    end
    server:join(WAIT)
    l:close()
end)

part("processes", function()
    local p, err = ms.process.spawn{ "cat", stdin = "pipe" }
    if not check(p ~= nil, "spawn: " .. tostring(err)) then return end
    p.stdin:write("x", WAIT)
    p.stdin:shutdown(WAIT)
    check(p.stdout:read("a", WAIT) == "x", "a child's output")
    check(p:wait(WAIT) == 0, "its exit code")
    p:close()
    check(ms.process.spawn{ "/no/such/program" } == nil, "a missing program is a value")
end)

-- ---------------------------------------------------------------------
-- HTTP (docs/http.md): a server with a pool of one agent; a request with a
-- body answered, one whose handler raises answered 500, a malformed one
-- answered 400; then a graceful close.

part("http", function()
    local srv, err = ms.http.serve{ listen = "127.0.0.1:0", agents = 1, shutdown_timeout = WAIT,
        handler = function(req)
            if req.path == "/boom" then error("boom") end
            return { status = 200, body = req.method .. " " .. req.body }
        end }
    if not check(srv ~= nil, "serve: " .. tostring(err)) then return end
    local _, port = srv:address()
    local function exchange(request)
        local c = ms.net.connect("127.0.0.1:" .. port, WAIT)
        if not c then return nil end
        c:write(request, WAIT)
        local got = c:read("a", WAIT)
        c:close()
        return got
    end
    local ok = exchange("POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    check(ok and ok:find("^HTTP/1.1 200") and ok:find("POST abc", 1, true), "an HTTP answer")
    local boom = exchange("GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n")
    check(boom and boom:find("^HTTP/1.1 500"), "a raising handler: 500")
    local bad = exchange("garbage\r\n\r\n")
    check(bad and bad:find("^HTTP/1.1 400"), "a malformed request: 400")
    check(srv:close(WAIT), "a graceful close")
end)

-- The server's handler_timeout and Expect: 100-continue (docs/http.md): a
-- handler too slow for its request (504, its late answer dropped), and a
-- body sent after the interim 100.

part("http handler timeout and 100-continue", function()
    local srv, err = ms.http.serve{ listen = "127.0.0.1:0", agents = 1, shutdown_timeout = WAIT,
        handler_timeout = 0.2,
        handler = function(req)
            if req.path == "/slow" then ms.sleep(0.4) end
            return req.method .. " " .. #req.body
        end }
    if not check(srv ~= nil, "serve: " .. tostring(err)) then return end
    local _, port = srv:address()
    local c = ms.net.connect("127.0.0.1:" .. port, WAIT)
    if check(c ~= nil, "connect for the 504") then
        c:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", WAIT)
        local got = c:read("a", WAIT)
        check(got and got:find("^HTTP/1.1 504"), "a slow handler: 504")
        c:close()
    end
    c = ms.net.connect("127.0.0.1:" .. port, WAIT)
    if check(c ~= nil, "connect for the 100") then
        c:write("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
                .. "Connection: close\r\n\r\n", WAIT)
        check(c:read("l", WAIT) == "HTTP/1.1 100 Continue", "the interim 100")
        c:write("abc", WAIT)
        local got = c:read("a", WAIT)
        check(got and got:find("POST 3", 1, true), "the body after the 100")
        c:close()
    end
    ms.sleep(0.3) -- the slow handler's late answer
    check(srv:close(WAIT), "a graceful close after a 504")
end)

-- The WebSocket server (docs/http.md): an echo handler in a pool of one
-- agent, our own client sends a message and closes; then a graceful close.

part("websocket server", function()
    local srv, err = ms.http.serve{ listen = "127.0.0.1:0", agents = 1, shutdown_timeout = WAIT,
        websocket = { path = "/echo", handler = function(ws)
            while true do
                local data, kind = ws:receive()
                if not data then return end
                ws:send(data, kind)
            end
        end } }
    if not check(srv ~= nil, "serve websocket: " .. tostring(err)) then return end
    local _, port = srv:address()
    local ws, werr = ms.http.websocket("ws://127.0.0.1:" .. port .. "/echo", { timeout = WAIT })
    if check(ws ~= nil, "websocket to our server: " .. tostring(werr)) then
        check(ws:send("abc") == true, "a websocket send to our server")
        check(ws:receive(WAIT) == "abc", "our server's websocket echo")
        ws:close(1000, "", WAIT)
    end
    check(srv:close(WAIT), "a graceful close with websockets")
end)

-- ---------------------------------------------------------------------
-- The console (ms-host attach) and the metrics endpoint, from the
-- blocking pool: each is a client process of this host.

local function shell(cmd)
    local ok, out = ms.blocking(function(c)
        local p = io.popen(c)
        local text = p:read("*a")
        p:close()
        return text
    end, cmd)
    return ok and out or ""
end

-- wss:// (docs/http.md, "WebSocket client"): our TLS server's websocket
-- and our client, trusting a certificate made here by openssl; a client
-- that verifies against the system's store is refused, as a value.
part("websocket over tls", function()
    local dir = shell("mktemp -d 2>/dev/null"):match("^(%S+)")
    if not check(dir ~= nil, "a temporary directory") then return end
    shell(("/usr/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        .. "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 "
        .. "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1"):format(dir, dir))
    local srv, err = ms.http.serve{ listen = "127.0.0.1:0", agents = 1, shutdown_timeout = WAIT,
        tls = { cert = dir .. "/cert.pem", key = dir .. "/key.pem" },
        websocket = function(ws)
            local data, kind = ws:receive()
            if data then ws:send(data, kind) end
        end }
    if check(srv ~= nil, "serve wss: " .. tostring(err)) then
        local _, sport = srv:address()
        local url = "wss://127.0.0.1:" .. sport .. "/"
        local ws, werr = ms.http.websocket(url, { timeout = WAIT, ca_file = dir .. "/cert.pem" })
        if check(ws ~= nil, "wss: " .. tostring(werr)) then
            check(ws:send("abc") == true, "a wss send")
            check(ws:receive(WAIT) == "abc", "a wss echo")
            ws:close(1000, "", WAIT)
        end
        local none, verr = ms.http.websocket(url, { timeout = WAIT })
        check(none == nil and type(verr) == "table", "an unverified wss server is refused")
        check(srv:close(WAIT), "a graceful close of the wss server")
    end
    shell("rm -rf " .. dir)
end)

if attach_bin and sock then
    part("console", function()
        local out = shell(("printf 'return 1+1\\nfunction f()\\nreturn 2 end\\nms.self():name()\\n' "
            .. "| timeout 5 %q attach %q 2>&1"):format(attach_bin, sock))
        check(out:find("2", 1, true) ~= nil, "console answers: " .. out)
    end)
end

if port then
    part("metrics endpoint", function()
        local function get(request)
            return shell(("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s && "
                .. "printf \"%s\" >&3 && cat <&3' 2>&1"):format(port, request))
        end
        -- printf's escapes: \r\n in the text reach the server as CR LF.
        check(get([[GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n]]):find("ms_workers", 1, true),
              "GET /metrics")
        check(get([[GET /metrics.json HTTP/1.0\r\n\r\n]]):find('"agents"', 1, true),
              "GET /metrics.json")
        check(get([[DELETE /metrics HTTP/1.1\r\n\r\n]]):find("405", 1, true), "405")
        check(get([[nonsense\r\n\r\n]]):find("400", 1, true), "400")
    end)
end

-- ---------------------------------------------------------------------
-- The end: what failed, then a graceful shutdown with a handler and a
-- few agents still running.

for i = 1, 3 do
    ms.agent.spawn{ fn = function() ms.on_shutdown(function() ms.sleep(0.001) end) ms.recv() end }
end
local handled = false
ms.on_shutdown(function() handled = true end)

if #failed > 0 then
    print("driver: " .. #failed .. " failed:")
    for _, f in ipairs(failed) do print("  " .. f) end
    if not injected then
        error("checks failed without an injected fault (see above)", 0)
    end
else
    print("driver: ok")
end
io.stdout:flush()
ms.shutdown(10)
