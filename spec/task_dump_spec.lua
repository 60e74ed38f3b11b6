-- The live task dump (issue 18, docs/observability.md): ms.tasks(), the
-- REPL's tasks(), /debug/tasks and SIGUSR1.  Each case runs a real
-- `ms-host run` on a script that puts agents and tasks into known waits,
-- takes a dump and prints what it saw; the spec checks what an operator
-- would: each wait named with its target, how long, and a traceback that
-- names the script's line of the wait; call cycles reported; a stuck agent
-- shown as busy without its state being read; hostile agents harmless.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/task_dump_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp
local SCALE = tonumber(os.getenv("MS_TEST_SCALE") or "") or 1
local LIMIT = SCALE < 1 and 120 or 60

local FATAL = { "PANIC", "unprotected", "AddressSanitizer", "ThreadSanitizer",
    "LeakSanitizer", "runtime error" }

-- Runs `ms-host run` on script; returns status, stdout, stderr.
local function run(script, args)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0, "mkdir " .. dir)
    h.write_file(dir .. "/script.lua", script)
    os.execute(("timeout -k 5 %d %s run %s --workers 2 %s >%s 2>%s </dev/null; echo $? >%s")
        :format(LIMIT, q(HOST), q(dir .. "/script.lua"), args or "", q(dir .. "/out"),
            q(dir .. "/err"), q(dir .. "/code")))
    local code, out, err = tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"),
        slurp(dir .. "/err")
    os.execute("rm -rf " .. q(dir))
    for _, f in ipairs(FATAL) do
        assert(not err:find(f, 1, true), "stderr has " .. f .. ":\n" .. err)
    end
    return code, out, err
end

-- The line of script that holds marker (a comment such as "-- @recv").
local function line_of(script, marker)
    local n = 0
    for line in (script .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if line:find(marker, 1, true) then return n end
    end
    error("no marker " .. marker)
end

-- What every script starts with: a dump taken as a table once cond(dump)
-- holds (polling, with a generous bound), as text lines for the spec.
local PRELUDE = [[
local function dump_when(cond, filter)
    local d
    for _ = 1, 400 do
        d = assert(ms.tasks(filter))
        if cond(d) then return d end
        ms.sleep(0.05)
    end
    error("the dump never showed what was expected:\n" .. ms.tasks{ format = "text" })
end
local function agent_of(d, name)
    for _, a in ipairs(d.agents) do if a.name == name then return a end end
end
local function waiting(a, kind)
    for _, t in ipairs(a and a.tasks or {}) do
        if t.state == "waiting" and t.wait.kind == kind then return t end
    end
end
local function show(t)
    local tb = (t.traceback or ""):gsub("\n", " | ")
    print(("TASK %s %s %s what=%s agent=%s secs=%.3f tb=%s"):format(t.id, t.state,
        t.wait and t.wait.kind or "-", t.wait and t.wait.what or "",
        t.wait and t.wait.agent and t.wait.agent.name or "", t.wait and t.wait.seconds or 0, tb))
end
]]

describe("ms.tasks()", function()
    local WAITS = PRELUDE .. [[
local db = ms.agent.spawn{ name = "db", fn = function()
    ms.recv() -- @recv
end }
local caller = ms.agent.spawn{ name = "caller", fn = function(args)
    args[1]:call("hello") -- @call
end, args = { ms.agent.spawn{ name = "silent", fn = function()
    local m = ms.recv()
    ms.sleep(3600) -- @sleep_holding
end } } }
local sem = ms.semaphore(1)
local held = sem:acquire()
local ch = ms.channel(1)
local shared = ms.channel(1)
shared:send("fills it")
ms.agent.spawn{ name = "sender", fn = function(args)
    args[1]:send("x") -- @shared_send
end, args = { shared } }
local t_sem = ms.spawn(function() sem:acquire(2) end) -- @sem
local t_recv = ms.spawn(function() ch:recv() end) -- @chan_recv
local t_sleep = ms.spawn(function() ms.sleep(3600) end) -- @nap
local t_join = ms.spawn(function() t_sleep:join() end) -- @join
local t_iv = ms.spawn(function() for _ in ms.interval(3600) do end end) -- @interval
local d = dump_when(function(d)
    return waiting(agent_of(d, "db"), "receive") and waiting(agent_of(d, "caller"), "call")
        and waiting(agent_of(d, "sender"), "channel send")
        and waiting(agent_of(d, "silent"), "sleep")
        and waiting(agent_of(d, "main"), "semaphore") and waiting(agent_of(d, "main"), "join")
        and waiting(agent_of(d, "main"), "channel receive")
        and waiting(agent_of(d, "main"), "interval")
end)
for _, a in ipairs(d.agents) do
    print(("AGENT %s %s mailbox=%d tasks=%d cpu=%s"):format(a.name, a.state, a.mailbox,
        #a.tasks, type(a.cpu)))
    for _, t in ipairs(a.tasks) do show(t) end
end
os.exit(0)
]]

    local code, out, err = run(WAITS)

    local function task_line(kind, agent_marker)
        for line in out:gmatch("[^\n]+") do
            if line:match("^TASK %d+ waiting " .. kind:gsub(" ", "%%s") .. " ") then
                if not agent_marker or line:find(agent_marker, 1, true) then return line end
            end
        end
        error("no task waiting on " .. kind .. " in:\n" .. out .. err)
    end

    it("runs to the end", function()
        assert.are.equal(0, code, out .. err)
    end)

    it("shows a receive with the script's line", function()
        local l = task_line("receive")
        h.assert_contains(l, "script.lua:" .. line_of(WAITS, "@recv"))
    end)

    it("shows a call naming the agent called", function()
        local l = task_line("call")
        h.assert_contains(l, "agent=silent")
        h.assert_contains(l, "script.lua:" .. line_of(WAITS, "@call"))
    end)

    it("shows a semaphore wait with the permits wanted", function()
        local l = task_line("semaphore")
        h.assert_contains(l, "2 permits wanted")
        h.assert_contains(l, "script.lua:" .. line_of(WAITS, "@sem"))
    end)

    it("shows channel waits, local and shared, with their direction", function()
        local l = task_line("channel receive")
        h.assert_contains(l, "script.lua:" .. line_of(WAITS, "@chan_recv"))
        local s = task_line("channel send")
        h.assert_contains(s, "script.lua:" .. line_of(WAITS, "@shared_send"))
    end)

    it("shows sleeps with the time left", function()
        local l = task_line("sleep", "script.lua:" .. line_of(WAITS, "@sleep_holding"))
        assert(l:match("what=3%d%d%d%.%d+ s left"), l)
        task_line("sleep", "script.lua:" .. line_of(WAITS, "@nap"))
    end)

    it("shows a join naming the task joined", function()
        local nap = task_line("sleep", "script.lua:" .. line_of(WAITS, "@nap"))
        local target = nap:match("^TASK (%d+)")
        local l = task_line("join")
        h.assert_contains(l, "what=task " .. target)
        h.assert_contains(l, "script.lua:" .. line_of(WAITS, "@join"))
    end)

    it("shows an interval wait", function()
        task_line("interval", "script.lua:" .. line_of(WAITS, "@interval"))
    end)

    it("lists every agent with its figures, the caller's own task waiting on the dump", function()
        for _, name in ipairs({ "main", "db", "caller", "silent", "sender" }) do
            assert(out:find("AGENT " .. name .. " idle mailbox=%d+ tasks=%d+ cpu=number"),
                name .. " in:\n" .. out)
        end
        task_line("tasks dump")
    end)
end)

describe("ms.tasks() hints", function()
    it("reports a call cycle between two agents with the chain", function()
        local code, out, err = run(PRELUDE .. [[
local function caller(args)
    local peer_name = args[1]
    local peer
    repeat ms.sleep(0.01); peer = ms.agent.whereis(peer_name) until peer
    peer:call("who goes first?")
end
ms.agent.spawn{ name = "alpha", fn = caller, args = { "beta" } }
ms.agent.spawn{ name = "beta", fn = caller, args = { "alpha" } }
local d = dump_when(function(d) return #d.cycles > 0 end)
local names = {}
for _, a in ipairs(d.cycles[1]) do names[#names + 1] = a.name end
print("CYCLE " .. table.concat(names, " -> "))
print(ms.tasks{ format = "text" })
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        local chain = out:match("CYCLE ([^\n]+)")
        assert(chain == "alpha -> beta -> alpha" or chain == "beta -> alpha -> beta", out)
        h.assert_contains(out, "CYCLE: ")
    end)

    it("flags waits older than the threshold", function()
        local code, out, err = run(PRELUDE .. [[
ms.agent.spawn{ name = "old", fn = function() ms.recv() end }
local d = dump_when(function(d)
    local t = waiting(agent_of(d, "old"), "receive")
    return t and t.wait.long
end, { long_wait = 0.2 })
print("LONG " .. tostring(waiting(agent_of(d, "old"), "receive").wait.long))
print(ms.tasks{ format = "text", long_wait = 0.2, agent = "old" })
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "LONG true")
        h.assert_contains(out, "  LONG")
    end)
end)

describe("ms.tasks() filters", function()
    it("keeps one agent, or one state, and refuses bad filters naming the field", function()
        local code, out, err = run(PRELUDE .. [[
ms.agent.spawn{ name = "db", fn = function() ms.recv() end }
ms.agent.spawn{ name = "web", fn = function() ms.sleep(3600) end }
dump_when(function(d) return waiting(agent_of(d, "db"), "receive") end)
local d = assert(ms.tasks{ agent = "db" })
print("ONLY " .. #d.agents .. " " .. d.agents[1].name)
local w = assert(ms.tasks{ state = "waiting" })
local all_waiting = true
for _, a in ipairs(w.agents) do
    for _, t in ipairs(a.tasks) do all_waiting = all_waiting and t.state == "waiting" end
end
print("WAITING " .. tostring(all_waiting) .. " " .. #w.agents)
for _, bad in ipairs({ { state = "sleepy" }, { agent = 1 }, { colour = "red" },
                       { wait = -1 }, { format = "xml" } }) do
    local ok, e = pcall(ms.tasks, bad)
    print("BAD " .. tostring(ok) .. " " .. tostring(e))
end
print("JSON " .. ms.tasks{ format = "json", agent = "web" })
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "ONLY 1 db")
        h.assert_contains(out, "WAITING true 3")
        h.assert_contains(out, "BAD false ms.tasks: ")
        h.assert_contains(out, "filter.state must be one of")
        h.assert_contains(out, "filter.agent must be")
        h.assert_contains(out, "unknown filter field 'colour'")
        h.assert_contains(out, "filter.wait must be")
        h.assert_contains(out, "filter.format must be")
        h.assert_contains(out, '"name":"web"')
        h.assert_contains(out, '"kind":"sleep"')
    end)
end)

describe("a stuck agent", function()
    it("is shown busy, from what C knows, without reading its state", function()
        local code, out, err = run(PRELUDE .. [[
local spin = ms.agent.spawn{ name = "spin", jit = false, fn = function()
    while true do end
end }
local d = dump_when(function(d)
    local a = agent_of(d, "spin")
    return a and a.state == "busy"
end, { wait = 0.2 })
local a = agent_of(d, "spin")
print(("SPIN %s tasks=%d busy_for=%s"):format(a.state, #a.tasks, type(a.busy_for)))
print(ms.tasks{ format = "text", agent = "spin", wait = 0.2 })
spin:stop()
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "SPIN busy tasks=0 busy_for=number")
        h.assert_contains(out, "BUSY: in one poll for")
    end)
end)

describe("hostile agents", function()
    it("a task waiting beside error objects with raising metamethods dumps cleanly", function()
        local code, out, err = run(PRELUDE .. [[
ms.agent.spawn{ name = "evil", fn = function()
    local bad = setmetatable({}, { __tostring = function() error("no tostring for you") end,
                                   __index = function() error("no index") end,
                                   __gc = function() error("no gc") end })
    ms.spawn(function()
        local ok = pcall(error, bad)
        ms.sleep(3600) -- keeps bad alive in this frame
        return bad
    end)
    local ok, e = pcall(function() ms.recv(); error(bad) end)
    ms.recv()
end }
local d = dump_when(function(d)
    local a = agent_of(d, "evil")
    return a and waiting(a, "receive") and waiting(a, "sleep")
end)
print("EVIL " .. agent_of(d, "evil").state .. " " .. #agent_of(d, "evil").tasks)
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "EVIL idle 2")
    end)

    it("an agent with a huge number of tasks is listed within the time budget", function()
        local n = math.max(2000, math.floor(50000 * SCALE))
        local code, out, err = run(PRELUDE .. ([[
local N = %d
ms.agent.spawn{ name = "crowd", args = { N }, fn = function(args)
    local N = args[1]
    local ch = ms.channel(1)
    for i = 1, N do ms.spawn(function() ch:recv() end) end
    ms.recv()
end }
-- Once its main task waits in ms.recv, all N are spawned.
local function main_of(a)
    for _, t in ipairs(a and a.tasks or {}) do if t.main then return t end end
end
local d = dump_when(function(d)
    local m = main_of(agent_of(d, "crowd"))
    return m and m.state == "waiting" and m.wait.kind == "receive"
end)
local a = agent_of(d, "crowd")
local with_tb = 0
for _, t in ipairs(a.tasks) do if t.traceback then with_tb = with_tb + 1 end end
print(("CROWD %%d tasks, %%d with a traceback, %%d without, truncated %%s"):format(#a.tasks,
    with_tb, a.no_traceback or 0, tostring(a.truncated == true)))
local text = ms.tasks{ format = "text", agent = "crowd" }
print("TEXT " .. #text)
-- A plain return, not os.exit: os.exit while an agent holds thousands of
-- tasks leaks one block of its state in main as well (LeakSanitizer).
]]):format(n))
        assert.are.equal(0, code, out .. err)
        local tasks, with_tb, without, truncated = out:match(
            "CROWD (%d+) tasks, (%d+) with a traceback, (%d+) without, truncated (%a+)")
        tasks = tonumber(tasks)
        -- All listed, or (the agent's time for the dump spent) the newest
        -- and the main task, said so.
        assert(tasks == n + 1 or (truncated == "true" and tasks > 16 and tasks <= n + 1), out)
        assert.are.equal(tasks, tonumber(with_tb) + tonumber(without))
        assert(tonumber(with_tb) >= 16, out)
    end)
end)

describe("where the dump shows", function()
    it("GET /debug/tasks and /debug/tasks.json, with filters, and SIGUSR1 to stderr", function()
        local bg = h.background_host([[
ms.agent.spawn{ name = "db", fn = function() ms.recv() end }
print("ready")
io.stdout:flush()
for _ = 1, 1200 do
    local f = io.open(arg[1])
    if f then f:close() return end
    ms.sleep(0.05)
end
]], "--workers 2 --metrics-listen 127.0.0.1:0")
        local function get(path)
            local p = io.popen(("timeout 20 bash -c %s"):format(q(
                ("exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.1\\r\\n\\r\\n' >&3 "
                 .. "&& cat <&3"):format(bg.port, path))))
            local resp = p:read("*a")
            p:close()
            return resp
        end
        local ok, e = pcall(function()
            assert(bg.port, "no port: " .. bg.err())
            local text
            for _ = 1, 100 do
                text = get("/debug/tasks?agent=db")
                if text:find("waiting on receive", 1, true) then break end
                os.execute("sleep 0.05")
            end
            h.assert_contains(text, "HTTP/1.1 200 OK")
            h.assert_contains(text, "agent db (#")
            h.assert_contains(text, "waiting on receive")
            assert(not text:find("agent main", 1, true), text)
            local json = get("/debug/tasks.json?state=waiting")
            h.assert_contains(json, "application/json")
            h.assert_contains(json, '"name":"db"')
            h.assert_contains(json, '"kind":"receive"')
            h.assert_contains(get("/debug/tasks?state=nope"), "400 Bad Request")
            h.assert_contains(get("/debug/tasks?colour=red"), "400 Bad Request")
            -- bg.pid is timeout(1)'s: the host is its child.
            os.execute("pkill -USR1 -P " .. bg.pid)
            local err
            for _ = 1, 200 do
                err = bg.err()
                if err:find("waiting on receive", 1, true) then break end
                os.execute("sleep 0.05")
            end
            h.assert_contains(err, "ms-host: SIGUSR1: task dump")
            h.assert_contains(err, "agent db (#")
        end)
        bg.stop()
        assert(ok, e)
    end)

    it("SIGUSR1 appends the dump to the profile's tasks_dump_file", function()
        local file = os.tmpname()
        os.remove(file)
        local bg = h.background_host([[
ms.agent.spawn{ name = "db", fn = function() ms.recv() end }
print("ready")
io.stdout:flush()
for _ = 1, 1200 do
    local f = io.open(arg[1])
    if f then f:close() return end
    ms.sleep(0.05)
end
]], "--workers 2 --set tasks_dump_file=" .. q(file))
        local ok, e = pcall(function()
            local text = ""
            for _ = 1, 200 do
                if not text:find("waiting on receive", 1, true) then
                    os.execute("pkill -USR1 -P " .. bg.pid)
                    os.execute("sleep 0.1")
                end
                text = slurp(file)
                if text:find("waiting on receive", 1, true) then break end
            end
            h.assert_contains(text, "ms-host: SIGUSR1: task dump at ")
            h.assert_contains(text, "agent db (#")
            h.assert_contains(bg.err(), "task dump appended to " .. file)
        end)
        bg.stop()
        os.remove(file)
        assert(ok, e)
    end)

    it("tasks() in the REPL prints the dump", function()
        local p = io.popen(("printf %s | timeout %d %s repl --workers 2 2>&1"):format(
            q('ms.agent.spawn{ name = "db", fn = function() ms.recv() end }\nms.sleep(0.2)\n'
              .. 'tasks{ agent = "db" }\ntasks("nobody")\ntasks(42)\n'),
            LIMIT, q(HOST)))
        local out = p:read("*a")
        p:close()
        h.assert_contains(out, "agent db (#")
        h.assert_contains(out, "waiting on receive")
        h.assert_contains(out, "0 agents, 0 tasks")
        h.assert_contains(out, "tasks(): expected a filter table")
    end)
end)
