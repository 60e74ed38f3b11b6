-- Stop means stop: OTP's two kinds of stop, preemption of running agents,
-- monitors and links, the runaway policy, the sandbox.  Every case runs
-- `ms-host run` on a script, so the spec also runs against the sanitizer
-- builds' ms-host.
-- spec-kind: subprocess
local h = require "spec.support.helpers"

local HOST, q = h.host, h.shell_quote

-- Runs script (text) with ms-host; returns status, stdout, stderr.
local function run(script, extra, workers)
    local path = h.tmpfile(script, ".lua")
    local out, err = os.tmpname(), os.tmpname()
    local rc = os.execute(("timeout -k 5 60 %s run %s --workers %d %s >%s 2>%s </dev/null")
        :format(q(HOST), q(path), workers or 2, extra or "", q(out), q(err)))
    local o, e = h.slurp(out), h.slurp(err)
    os.remove(path) os.remove(out) os.remove(err)
    return rc, o, e
end

local function ok_run(script)
    local rc, out, err = run(script)
    assert(rc == 0, ("ms-host exited %s\n--- stdout:\n%s--- stderr:\n%s"):format(tostring(rc), out, err))
    return out
end

describe("a:stop()", function()
    it("ends a jit = false agent looping in pcall at once, and its permit comes back", function()
        local out = ok_run([[
local sem = ms.semaphore(1)
local a = ms.agent.spawn{ jit = false, args = sem, fn = function(s)
    local p = s:acquire()
    while true do pcall(function() while true do end end) end
end }
ms.monitor(a)
while sem:available() > 0 do ms.sleep(0.01) end   -- it holds the permit and loops
local echo = ms.agent.spawn{ fn = function() local m, r = ms.recv() r(m) end }
print("call meanwhile: " .. tostring(echo:call("hi", 20)))
a:stop("enough")
local m = ms.recv(20)
print("exit: " .. tostring(m and m.reason) .. " " .. tostring(m and m.message))
local p = sem:acquire(1, 20)
print("permit back: " .. tostring(p ~= nil))
]])
        assert.matches("call meanwhile: hi", out, 1, true)
        assert.matches("exit: killed enough", out, 1, true)
        assert.matches("permit back: true", out, 1, true)
    end)

    it("ends an interpreted loop that never yields (JIT on, not yet compiled)", function()
        local out = ok_run([[
local a = ms.agent.spawn{ fn = function() local x = 0 while true do x = x + 1 end end }
ms.monitor(a)
ms.sleep(0.05)
a:stop()
local m = ms.recv(20)
print("exit: " .. tostring(m and m.reason))
]])
        assert.matches("exit: killed", out, 1, true)
    end)

    it("ends a loop inside a table.sort comparator (a C function in between)", function()
        local out = ok_run([[
local a = ms.agent.spawn{ jit = false, fn = function()
    local t = {} for i = 1, 100 do t[i] = i end
    while true do pcall(table.sort, t, function(x, y) while true do end end) end
end }
ms.monitor(a)
ms.sleep(0.05)
a:stop()
local m = ms.recv(20)
print("exit: " .. tostring(m and m.reason))
]])
        assert.matches("exit: killed", out, 1, true)
    end)
end)

-- Loops for the JIT to compile: each chunk returns spin(limit), which runs
-- until limit (nil: for ever).  The agent runs spin(100000) first, so the
-- loop that the stop meets is one it has compiled (the trace count it
-- reports says so), then spin(nil).
local compiled_loops = {
    plain = [=[return function(limit) local x = 0 while x ~= limit do x = x + 1 end end]=],
    calls = [=[local function f(a) return a * 2 % 7 end
        return function(limit) local x, n = 0, 0 while n ~= limit do x = f(x) n = n + 1 end end]=],
    tables = [=[return function(limit)
        local t, i = {}, 0 while i ~= limit do i = i + 1 t[i % 100 + 1] = i end end]=],
    pcall_inside = [=[return function(limit) local n = 0
        while n ~= limit do
            pcall(function() local y = 0 while y ~= 100 and n ~= limit do y = y + 1 n = n + 1 end end)
        end end]=],
    lines = [=[return function(limit)
        local x, n = 0, 0
        while n ~= limit do
            x = x + 1
            if x % 3 == 0 then x = x - 1 end
            n = n + 1
        end
    end]=],
    coroutine = [=[return function(limit)
        coroutine.wrap(function() local x = 0 while x ~= limit do x = x + 1 end end)() end]=],
    strings = [=[return function(limit)
        local n, s = 0 while n ~= limit do s = string.format("%d", n % 10) n = n + 1 end end]=],
    nested_for = [=[return function(limit)
        local x = 0 for i = 1, limit or math.huge do for j = 1, 10 do x = x + j end end end]=],
    metamethod = [=[local t = setmetatable({}, { __index = function(t, k) return k end })
        return function(limit) local x, n = 0, 0 while n ~= limit do x = x + t[1] n = n + 1 end end]=],
    allocating = [=[return function(limit)
        local n = 0 while n ~= limit do local t = { n, n + 1 } n = n + 1 end end]=],
}

describe("a:stop() on compiled code", function()
    it("ends loops the JIT compiled, one kind after another; their permits come back and calls are answered meanwhile", function()
        local names = {}
        for name in pairs(compiled_loops) do names[#names + 1] = name end
        table.sort(names)
        local lines = { "local loops = {" }
        for _, name in ipairs(names) do
            lines[#lines + 1] = ("  { %q, %q },"):format(name, compiled_loops[name])
        end
        lines[#lines + 1] = "}"
        local out = ok_run(table.concat(lines, "\n") .. [[

local sem = ms.semaphore(#loops)
local echo = ms.agent.spawn{ fn = function() while true do local m, r = ms.recv() r(m) end end }
for _, loop in ipairs(loops) do
    local a = ms.agent.spawn{ name = loop[1], args = { src = loop[2], sem = sem, parent = ms.self() },
        fn = function(args)
            local permit = args.sem:acquire()
            for i = 1, 40 do ms.sleep(0.001) end   -- past the polls before an agent compiles
            local traces = 0
            jit.attach(function(what) if what == "stop" then traces = traces + 1 end end, "trace")
            local spin = assert(loadstring(args.src))()
            spin(100000)
            args.parent:send({ traces = traces, jit = jit.status() })
            spin(nil)
        end }
    ms.monitor(a)
    local m = assert(ms.recv(20), "no word from " .. loop[1])
    ms.sleep(0.05)
    local answer = echo:call("hi", 20)
    a:stop("enough")
    local e = ms.recv(20)
    print(("%s: jit %s, compiled %s, call %s, exit %s %s"):format(loop[1], tostring(m.jit),
        tostring(m.traces > 0), tostring(answer), tostring(e and e.reason), tostring(e and e.message)))
end
print("permits back: " .. tostring(sem:acquire(#loops, 20) ~= nil))
]])
        for _, name in ipairs(names) do
            assert.matches(name .. ": jit true, compiled true, call hi, exit killed enough", out, 1, true)
        end
        assert.matches("permits back: true", out, 1, true)
    end)

    it("the runaway policy 'stop' ends a compiled loop at its first stall", function()
        local rc, out, err = run([[
local a = ms.agent.spawn{ runaway = "stop", fn = function()
    for i = 1, 40 do ms.sleep(0.001) end
    local function spin(limit) local x = 0 while x ~= limit do x = x + 1 end end
    spin(100000)
    spin(nil)
end }
ms.monitor(a)
local m = ms.recv(30)
print("exit: " .. tostring(m and m.reason))
]], "--set stall_threshold=0.2")
        assert(rc == 0, out .. err)
        assert.matches("exit: runaway", out, 1, true)
        assert.matches("stopping it (runaway policy)", err, 1, true)
    end)

    it("SIGTERM ends a host whose agent spins in compiled code", function()
        local path = h.tmpfile([[
ms.agent.spawn{ fn = function()
    for i = 1, 40 do ms.sleep(0.001) end
    local x = 0 while true do x = x + 1 end
end }
ms.sleep(0.5)
print("spinning") io.stdout:flush()
ms.recv()
]], ".lua")
        local out = os.tmpname()
        -- TERM once it said "spinning" (its agent is in the loop by then),
        -- not after a fixed time: a loaded sanitizer build may take longer
        -- than any fixed time to get there.
        local rc = os.execute(("(timeout -k 5 60 %s run %s --workers 2 >%s 2>&1 </dev/null & "
            .. "p=$!; for i in $(seq 600); do grep -q spinning %s && break; sleep 0.1; done; "
            .. "kill -TERM $p; wait $p)"):format(q(HOST), q(path), q(out), q(out)))
        local o = h.slurp(out)
        os.remove(path) os.remove(out)
        assert(rc == 0, "ms-host exited " .. tostring(rc) .. ":\n" .. o)
        assert.matches("spinning", o, 1, true)
    end)

    it("more agents spinning in compiled code than workers: the others still run, and the host ends", function()
        local rc, out, err = run([[
for i = 1, 4 do
    ms.agent.spawn{ fn = function()
        for i = 1, 40 do ms.sleep(0.001) end
        local x = 0 while true do x = x + 1 end
    end }
end
for k = 1, 3 do
    ms.sleep(0.5)
    print("main tick " .. k) io.stdout:flush()
end
]], "--set max_worker_threads=2 --set stall_threshold=0.2")
        assert(rc == 0, out .. err)
        assert.matches("main tick 3", out, 1, true)
        assert.matches("every worker is stalled and tasks wait", err, 1, true)
        assert.not_matches("still running after", err, 1, true)
    end)

    it("refuses jit.profile in an agent (ms-host keeps LuaJIT's one profiler)", function()
        local out = ok_run([[
local a = ms.agent.spawn{ fn = function()
    local ok, err = pcall(require, "jit.profile")
    print("jit.profile: " .. tostring(ok) .. " " .. tostring(err))
end }
ms.monitor(a) ms.recv(20)
]])
        assert.matches("jit.profile: false", out, 1, true)
        assert.matches("jit.profile is not available in an agent", out, 1, true)
    end)
end)

describe("an agent that never yields", function()
    it("does not strand an agent it woke on its own worker (1 worker, a stand-in takes over)", function()
        -- The woken main agent waits in the busy worker's LIFO slot; the
        -- health monitor hands it to the stand-in worker.
        local rc, out, err = run([[
local a = ms.agent.spawn{ jit = false, args = ms.self(), fn = function(main)
    main:send("running") local x = 0 while true do x = x + 1 end end }
ms.monitor(a)
print("heard: " .. tostring(ms.recv(30)))
a:stop()
print("exit: " .. tostring(ms.recv(30).reason))
]], "--set stall_threshold=0.1", 1)
        assert(rc == 0, out .. err)
        assert.matches("heard: running", out, 1, true)
        assert.matches("exit: killed", out, 1, true)
    end)

    it("does not strand an agent it woke (2 workers, no stall reported yet)", function()
        local out = ok_run([[
local a = ms.agent.spawn{ jit = false, args = ms.self(), fn = function(main)
    main:send("running") local x = 0 while true do x = x + 1 end end }
ms.monitor(a)
print("heard: " .. tostring(ms.recv(30)))
a:stop()
print("exit: " .. tostring(ms.recv(30).reason))
]])
        assert.matches("heard: running", out, 1, true)
        assert.matches("exit: killed", out, 1, true)
    end)
end)

describe("ms.trap_exit", function()
    it("is off by default, set by ms.trap_exit(true), ms.on_shutdown or trap_exit = true at spawn, shown by a:info()", function()
        local out = ok_run([[
local plain = ms.agent.spawn{ fn = function() ms.recv() end }
local trapping = ms.agent.spawn{ fn = function() ms.trap_exit(true) ms.recv() end }
local handler = ms.agent.spawn{ fn = function() ms.on_shutdown(function() end) ms.recv() end }
local declared = ms.agent.spawn{ trap_exit = true, fn = function() ms.recv() end }
print("at spawn", declared:info().trap_exit)
ms.sleep(0.05)
print(plain:info().trap_exit, trapping:info().trap_exit, handler:info().trap_exit)
print("was", ms.trap_exit(true), ms.trap_exit(false), ms.trap_exit())
for _, a in ipairs{ plain, trapping, handler, declared } do a:send("bye") end
]])
        assert.matches("at spawn\ttrue", out, 1, true)
        assert.matches("false\ttrue\ttrue", out, 1, true)
        assert.matches("was\tfalse\ttrue\tfalse", out, 1, true)
    end)
end)

describe("supervisors stop as OTP does", function()
    local SCRIPT = [[
local log = ms.channel(100)
local function sleeper(args)
    if args.trap then ms.trap_exit(true) end
    args.log:send("start:" .. args.id)
    while true do
        local m = ms.recv(10)
        if type(m) == "table" and m.event == "shutdown" then
            args.log:send("asked:" .. args.id)
            return
        end
    end
end
local function crasher(args)
    args.log:send("start:" .. args.id)
    if ms.recv() == "crash" then error("crash", 0) end
end
local sup = ms.supervisor{ strategy = "one_for_all", children = {
    { id = "crasher", start = { fn = crasher, args = { id = "crasher", log = log } } },
    { id = "sleeper", start = { fn = sleeper, args = { id = "sleeper", log = log, trap = TRAP } },
      shutdown = 30 },
} }
ms.monitor(sup)
for _ = 1, 2 do log:recv(20) end
local sleeper_agent
for _, c in ipairs(sup:which_children()) do if c.id == "sleeper" then sleeper_agent = c.agent end end
ms.monitor(sleeper_agent)
for _, c in ipairs(sup:which_children()) do if c.id == "crasher" then c.agent:send("crash") end end
local m = ms.recv(60)
while m and m.agent ~= sleeper_agent do m = ms.recv(60) end
print("sibling exit: " .. tostring(m and m.reason) .. " " .. tostring(m and m.message))
local seen = {}
for _ = 1, TRAP and 3 or 2 do seen[#seen + 1] = log:recv(60) end
table.sort(seen)
print("then: " .. table.concat(seen, " "))
print("more: " .. tostring(log:try_recv()))
sup:stop()
local n = ms.recv(20)
while n and not (n.event == "exit" and n.agent == sup.agent) do n = ms.recv(20) end
print("supervisor exit seen through ms.monitor(sup): " .. tostring(n ~= nil))
]]

    it("a one_for_all restart stops a sleeping sibling that does not trap exits at once", function()
        local out = ok_run("local TRAP = false\n" .. SCRIPT)
        assert.matches("sibling exit: killed shutdown", out, 1, true)
        assert.matches("then: start:crasher start:sleeper", out, 1, true)
        assert.matches("more: nil", out, 1, true)
        assert.matches("supervisor exit seen through ms.monitor(sup): true", out, 1, true)
    end)

    it("a sibling that traps exits is asked with { event = 'shutdown' } and ends by itself", function()
        local out = ok_run("local TRAP = true\n" .. SCRIPT)
        assert.matches("sibling exit: normal", out, 1, true)
        assert.matches("then: asked:sleeper start:crasher start:sleeper", out, 1, true)
        assert.matches("more: nil", out, 1, true)
    end)
end)

describe("SIGTERM", function()
    it("ends a host whose supervised workers sleep, with status 0", function()
        local path = h.tmpfile([[
local function sleeper() while true do ms.sleep(10) end end
ms.supervisor{ children = {
    { id = "a", start = { fn = sleeper } }, { id = "b", start = { fn = sleeper } } } }
print("ready")
io.stdout:flush()
ms.sleep(60)
]], ".lua")
        local out = os.tmpname()
        local rc = os.execute(("%s run %s --workers 2 >%s 2>&1 & pid=$!; "
            .. "for i in $(seq 1 200); do grep -q ready %s && break; sleep 0.05; done; "
            .. "kill -TERM $pid; wait $pid"):format(q(HOST), q(path), q(out), q(out)))
        local text = h.slurp(out)
        os.remove(path) os.remove(out)
        assert(rc == 0, "exit status " .. tostring(rc) .. "\n" .. text)
        assert.matches("shutdown complete", text, 1, true)
    end)
end)

describe("the runaway policy (spawn option runaway)", function()
    it("'stop' ends an agent at its first stall, with reason runaway, and a supervisor restarts it", function()
        local rc, out, err = run([[
local runs = ms.channel(10)
local sup = ms.supervisor{ children = {
    { id = "spinner", start = { runaway = "stop", jit = false, args = runs, fn = function(runs)
        runs:send(ms.self():info().restarts)
        if ms.self():info().restarts == 0 then while true do end end
        ms.recv()
    end } } } }
print("first run: " .. tostring(runs:recv(30)))
print("second run: " .. tostring(runs:recv(30)))
]], "--set stall_threshold=0.2")
        assert(rc == 0, out .. err)
        assert.matches("first run: 0", out, 1, true)
        assert.matches("second run: 1", out, 1, true)
        assert.matches("stopping it (runaway policy)", err, 1, true)
    end)

    it("a count N ends an agent at its Nth stall; 'report' (the default) only reports", function()
        local rc, out, err = run([[
local function staller(args)
    for i = 1, args.stalls do
        local t = ms.now()
        while ms.now() - t < 0.5 do end
        ms.sleep(0.01)
        args.log:send(i)
    end
end
local log = ms.channel(10)
local counted = ms.agent.spawn{ runaway = 2, jit = false, fn = staller, args = { stalls = 3, log = log } }
ms.monitor(counted)
local m = ms.recv(30)
print("counted: " .. tostring(m.reason) .. " after " .. tostring(log:try_recv()) .. ", "
    .. tostring(log:try_recv()))
local reported = ms.agent.spawn{ jit = false, fn = staller, args = { stalls = 2, log = log } }
ms.monitor(reported)
m = ms.recv(30)
print("reported: " .. tostring(m.reason))
print(select(2, pcall(ms.agent.spawn, { runaway = "sometimes", fn = staller })))
]], "--set stall_threshold=0.2")
        assert(rc == 0, out .. err)
        assert.matches("counted: runaway after 1, nil", out, 1, true)
        assert.matches("reported: normal", out, 1, true)
        assert.matches('runaway must be "report", "stop" or a count of stalls >= 1, got \'sometimes\'',
            out, 1, true)
    end)
end)

describe("sandbox = true", function()
    it("takes away ffi, debug, io, jit, binary chunks, C modules and the process parts of os", function()
        local out = ok_run([[
local a = ms.agent.spawn{ sandbox = true, fn = function()
    print("io", io, "debug", debug, "jit", jit)
    print("ffi", select(2, pcall(require, "ffi")))
    print("os", os.execute, os.exit, os.getenv, os.remove, type(os.time), type(os.clock))
    print("files", loadfile, dofile, package.loadlib)
    print("text", load("return 1 + 1")())
    print("binary", select(2, load(string.dump(function() return 1 end))))
    print("loadstring", select(2, loadstring(string.dump(function() return 1 end))))
    local child = ms.agent.spawn{ fn = function() print("child io", io, "ffi", pcall(require, "ffi")) end }
    ms.monitor(child)
    ms.recv(20)
end }
ms.monitor(a)
local m = ms.recv(20)
print("exit", m.reason, m.message)
]])
        assert.matches("io\tnil\tdebug\tnil\tjit\tnil", out, 1, true)
        assert.matches("ffi\tffi is not available in a sandboxed agent", out, 1, true)
        assert.matches("os\tnil\tnil\tnil\tnil\tfunction\tfunction", out, 1, true)
        assert.matches("files\tnil\tnil\tnil", out, 1, true)
        assert.matches("text\t2", out, 1, true)
        assert.matches("binary\tattempt to load chunk with wrong mode", out, 1, true)
        assert.matches("loadstring\tattempt to load chunk with wrong mode", out, 1, true)
        assert.matches("child io\tnil\tffi\tfalse", out, 1, true)
        assert.matches("exit\tnormal", out, 1, true)
    end)

    it("never cuts a coroutine of its own code short: a long coroutine still returns its values", function()
        local out = ok_run([[
local a = ms.agent.spawn{ sandbox = true, fn = function()
    local co = coroutine.create(function()
        local x = 0 for i = 1, 3e6 do x = x + i end   -- 30 of the sandbox's slices
        return "done", x
    end)
    print("coroutine:", coroutine.resume(co))
    print("status:", coroutine.status(co))
end }
ms.monitor(a) ms.recv(20)
]])
        assert.matches("coroutine:\ttrue\tdone\t4500001500000", out, 1, true)
        assert.matches("status:\tdead", out, 1, true)
    end)

    it("shares its worker: a sandboxed agent that never waits does not hold up others (1 worker)", function()
        local rc, out, err = run([[
local spin = ms.agent.spawn{ sandbox = true, fn = function() local x = 0 while true do x = x + 1 end end }
local echo = ms.agent.spawn{ fn = function() while true do local m, r = ms.recv() r(m) end end }
ms.sleep(0.05)
for i = 1, 3 do print("echo " .. tostring(echo:call(i, 30))) end
ms.monitor(spin)
spin:stop()
print("spin " .. tostring(ms.recv(30).reason))
]], "", 1)
        assert(rc == 0, out .. err)
        assert.matches("echo 3", out, 1, true)
        assert.matches("spin killed", out, 1, true)
    end)
end)

describe("ms.link", function()
    it("stops a linked agent that does not trap exits when the other fails, and tells one that traps", function()
        local out = ok_run([[
local a = ms.agent.spawn{ fn = function() ms.recv() error("boom", 0) end }
local b = ms.agent.spawn{ args = { a = a, main = ms.self() }, fn = function(x)
    ms.link(x.a) x.main:send("linked") ms.recv() end }
ms.monitor(b)
assert(ms.recv(20) == "linked")
a:send("go")
local m = ms.recv(20)
print("plain: " .. m.reason .. " / " .. m.message)
local c = ms.agent.spawn{ fn = function() ms.recv() error("boom", 0) end }
local d = ms.agent.spawn{ trap_exit = true, args = { c = c, main = ms.self() }, fn = function(x)
    ms.link(x.c) x.main:send("linked")
    local n = ms.recv()
    x.main:send(("%s link=%s reason=%s"):format(n.event, tostring(n.link), n.reason))
end }
assert(ms.recv(20) == "linked")
c:send("go")
print("trapping: " .. ms.recv(20))
]])
        assert.matches("plain: killed / linked agent agent-2 (2) exited (error)", out, 1, true)
        assert.matches("trapping: exit link=true reason=error", out, 1, true)
    end)

    it("leaves a non-trapping agent alone on a normal exit, and after ms.unlink", function()
        local out = ok_run([[
local e = ms.agent.spawn{ fn = function() ms.recv() end }
local u = ms.agent.spawn{ fn = function() ms.recv() error("boom", 0) end }
local f = ms.agent.spawn{ args = { e = e, u = u, main = ms.self() }, fn = function(x)
    ms.link(x.e) ms.link(x.u) ms.unlink(x.u) x.main:send("ok") ms.recv() end }
ms.monitor(f)
assert(ms.recv(20) == "ok")
e:send("bye")
u:send("go")
print("f meanwhile: " .. tostring(select(2, ms.recv(0.5))))
f:send("bye")
print("f: " .. ms.recv(20).reason)
]])
        assert.matches("f meanwhile: timeout", out, 1, true)
        assert.matches("f: normal", out, 1, true)
    end)

    it("to an agent that has already failed, stops the caller at once; takes a supervisor's handle", function()
        local out = ok_run([[
local dead = ms.agent.spawn{ fn = function() error("x", 0) end }
ms.monitor(dead)
ms.recv(20)
local g = ms.agent.spawn{ args = dead, fn = function(d) ms.link(d) ms.recv() end }
ms.monitor(g)
print("g: " .. ms.recv(20).reason)
local sup = ms.supervisor{ children = { { id = "w", start = { fn = function() ms.recv() end } } } }
local h = ms.agent.spawn{ args = sup.agent, fn = function(s)
    ms.link(setmetatable({ agent = s }, {})) ms.recv() end }
ms.monitor(h)
ms.sleep(0.05)
sup.agent:stop("test")
print("h: " .. ms.recv(20).reason)
]])
        assert.matches("g: killed", out, 1, true)
        assert.matches("h: killed", out, 1, true)
    end)
end)
