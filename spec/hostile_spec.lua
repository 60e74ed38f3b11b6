-- Hostile agents (issue 11): one agent must never take the host down.
-- Each case runs a real `ms-host run` on a script whose main agent spawns
-- an agent that misbehaves at the boundary between its Lua code and the
-- host's C:
--
--   * it raises an error object whose metamethods raise or recurse;
--   * its __gc finalizers raise, yield or call ms.* while the host decodes
--     messages into its state;
--   * it sits at its memory limit and calls every ms.* function and handle
--     method;
--   * two agents take one name at the same moment, or a name is longer
--     than the host keeps.
--
-- The main agent monitors the hostile one, waits for its exit notice
-- ({ event = "exit", reason =, message = }), checks that the host still
-- serves (a new agent answers a:call), prints what it saw and returns.
-- The spec then wants: the process ended by itself, with the expected
-- status, the hostile agent's exit reason, the marker, and nothing on
-- stderr from a panic or a sanitizer.  The main agent raising the same
-- error objects must end ms-host with status 1 and a message.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/hostile_spec.lua
-- (MS_HOSTILE_SHOW=1 prints what every ms-host run wrote.)
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp
local SCALE = tonumber(os.getenv("MS_TEST_SCALE") or "") or 1
-- Seconds one ms-host run may take before it counts as hung (the
-- sanitizer builds run with a scale below 1 and are several times slower).
local LIMIT = SCALE < 1 and 60 or 30

local function scaled(n, min)
    return math.max(min or 1, math.floor(n * SCALE))
end

-- What stderr must never hold: the host panicked, or a sanitizer spoke.
local FATAL = { "PANIC", "unprotected", "AddressSanitizer", "ThreadSanitizer",
    "LeakSanitizer", "runtime error" }

-- Runs `ms-host run` on script (text); returns status, stdout, stderr.
local function run(script)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0, "mkdir " .. dir)
    h.write_file(dir .. "/script.lua", script)
    os.execute(("timeout -k 5 %d %s run %s --workers 2 >%s 2>%s </dev/null; echo $? >%s")
        :format(LIMIT, q(HOST), q(dir .. "/script.lua"), q(dir .. "/out"), q(dir .. "/err"),
            q(dir .. "/code")))
    local code, out, err = tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"),
        slurp(dir .. "/err")
    if os.getenv("MS_HOSTILE_KEEP") then io.stderr:write("kept " .. dir .. "\n") else os.execute("rm -rf " .. q(dir)) end
    if os.getenv("MS_HOSTILE_SHOW") then -- for a look at every case's outcome
        io.stderr:write(("\n== exit %s\n%s%s"):format(tostring(code), out, err))
    end
    return code, out, err
end

-- The process ended by itself with status want, and said nothing fatal.
local function assert_ended(want, code, out, err)
    local all = "\n--- stdout:\n" .. out .. "--- stderr:\n" .. err
    for _, bad in ipairs(FATAL) do
        assert(not err:find(bad, 1, true), "stderr holds '" .. bad .. "'" .. all)
    end
    assert(code ~= 124 and code ~= 137,
        "ms-host did not end by itself within " .. LIMIT .. " s" .. all)
    assert(code and code < 128, "ms-host died of signal " .. tostring(code and code - 128) .. all)
    assert(code == want, "ms-host exited " .. tostring(code) .. ", expected " .. want .. all)
end

local function assert_has(out, text, err)
    assert(out:find(text, 1, true), ("expected the output to hold %q\n--- stdout:\n%s--- stderr:\n%s")
        :format(text, out, err or ""))
end

-- What every case's main agent shares.  Agent functions may not capture
-- upvalues, so those spawned here use only globals and their args.
local PRELUDE = [=[
local reports = {}

-- Monitors a and waits for its exit notice; any other message is kept in
-- reports.
local function wait_exit(a, timeout)
    local name = a:name()
    ms.monitor(a)
    local deadline = ms.now() + (timeout or 20)
    while true do
        local left = deadline - ms.now()
        if left <= 0 then return { reason = "none (no exit notice in time)" } end
        local m = ms.recv(left)
        if type(m) == "table" and m.event == "exit" and m.name == name then return m end
        if m ~= nil then reports[#reports + 1] = m end
    end
end

-- An agent that answers calls with what it got, until "stop".
local function echo_fn()
    while true do
        local m, reply = ms.recv(60)
        if m == nil or m == "stop" then return end
        if type(m) ~= "table" or not m.keep then pcall(reply, m) end
    end
end

-- The host still serves: a new agent answers a:call, and so does peer.
local function serves(peer)
    local echo = ms.agent.spawn{ fn = echo_fn }
    local r1, r2 = echo:call("ping", 20), echo:call({ n = 42 }, 20)
    echo:send("stop")
    assert(r1 == "ping" and type(r2) == "table" and r2.n == 42,
        "a new agent did not answer its calls: " .. tostring(r1))
    if peer then
        assert(peer:call("again", 20) == "again", "the peer did not answer")
        peer:send("stop")
    end
    print("the host still serves")
end

local function report(notice)
    print("hostile exit: reason=" .. tostring(notice.reason) .. " message="
        .. type(notice.message) .. " (" .. tostring(notice.message) .. ")")
    for _, r in ipairs(reports) do
        if type(r) == "table" and r.op then
            print("op " .. r.op .. ": worked=" .. tostring(r.worked) .. " failed="
                .. tostring(r.failed) .. " last error=" .. tostring(r.err)
                .. " (filling stopped at: " .. tostring(r.filled) .. ")")
        end
    end
end
]=]

local MARKER = "hostile case done"

-- ---------------------------------------------------------------------
-- Error objects

-- Lua chunks that raise a hostile error object; each is the body of an
-- agent's function (no upvalues: it defines what it needs).
local ERROR_OBJECTS = {
    { name = "whose __index raises",
      body = [[error(setmetatable({}, { __index = function() error("index raised") end }))]] },
    { name = "whose __index recurses forever",
      body = [[error(setmetatable({}, { __index = function(t, k) return t[k] end }))]] },
    { name = "whose __tostring raises",
      body = [[error(setmetatable({}, { __tostring = function() error("tostring raised") end }))]] },
    { name = "whose __tostring recurses until the stack overflows",
      body = [[error(setmetatable({}, { __tostring = function(t) return "x" .. tostring(t) end }))]] },
    { name = "whose __eq raises",
      body = [[error(setmetatable({}, { __eq = function() error("eq raised") end }))]] },
    { name = "with a message whose other fields raise through __index",
      body = [[error(setmetatable({ message = "has a message" },
               { __index = function() error("index raised") end }))]] },
    { name = "whose message field is a table with raising metamethods",
      body = [[local function raise() error("metamethod raised") end
               local mt = { __index = raise, __tostring = raise, __eq = raise, __len = raise,
                            __concat = raise, __call = raise, __lt = raise, __le = raise }
               error({ code = setmetatable({}, mt), message = setmetatable({}, mt),
                       traceback = setmetatable({}, mt) })]] },
    { name = "that is a userdata whose __index and __tostring raise",
      body = [[local u = newproxy(true)
               local mt = getmetatable(u)
               mt.__index = function() error("index raised") end
               mt.__tostring = function() error("tostring raised") end
               error(u)]] },
    { name = "raised by a task and re-raised by the agent after the join",
      body = [[local t = ms.spawn(function()
                   error(setmetatable({}, { __index = function() error("index raised") end,
                                            __tostring = function() error("ts raised") end }))
               end)
               local _, err = t:join(10)
               error(err)]] },
}

describe("a hostile agent", function()
    describe("raising an error object", function()
        for _, case in ipairs(ERROR_OBJECTS) do
            it(case.name .. " ends with reason error; the host serves on", function()
                local code, out, err = run(PRELUDE .. [[
local hostile = ms.agent.spawn{ name = "hostile", fn = function()
    ]] .. case.body .. [[

end }
local notice = wait_exit(hostile)
serves()
report(notice)
print("]] .. MARKER .. [[")
]])
                assert_ended(0, code, out, err)
                assert_has(out, "hostile exit: reason=error message=string", err)
                assert_has(out, "the host still serves", err)
                assert_has(out, MARKER, err)
            end)
        end
    end)

    -- ------------------------------------------------------------------
    -- Finalizers

    -- The agent makes finalized userdata while the main agent floods it
    -- with messages, so that GC steps (and finalizers) run while the host
    -- decodes a message into its state.  Each finalizer ends by raising,
    -- whatever the call before it did, so the agent ends with error.
    local FINALIZERS = {
        { name = "raises", body = [[error("gc raised")]] },
        { name = "yields (coroutine.yield)", body = [[coroutine.yield("from gc") error("gc after yield")]] },
        { name = "calls ms.sleep", body = [[ms.sleep(0.001) error("gc after sleep")]] },
        { name = "calls ms.recv", body = [[ms.recv(0.001) error("gc after recv")]] },
        { name = "calls ms.self():send", body = [[ms.self():send("from gc") error("gc after send")]] },
        { name = "calls ms.spawn", body = [[ms.spawn(function() return 1 end) error("gc after spawn")]] },
    }

    describe("whose __gc finalizer", function()
        for _, case in ipairs(FINALIZERS) do
            it(case.name .. " ends with reason error; the host serves on", function()
                local code, out, err = run(PRELUDE .. ([[
local hostile = ms.agent.spawn{ name = "hostile", args = { rounds = %d }, fn = function(args)
    local newproxy, getmetatable = newproxy, getmetatable
    local function finalizer()
        %s
    end
    for _ = 1, args.rounds do
        if ms.recv(10) == nil then return end
        for _ = 1, 20 do
            getmetatable(newproxy(true)).__gc = finalizer
        end
    end
end }
local blob = {}
for i = 1, 200 do blob[i] = { text = string.rep("b", 40) .. i, n = i } end
for _ = 1, %d do
    if not hostile:send({ blob = blob }) then break end
    ms.yield()
end
local notice = wait_exit(hostile)
serves()
report(notice)
print("%s")
]]):format(scaled(4000, 400), case.body, scaled(4000, 400), MARKER))
                assert_ended(0, code, out, err)
                assert_has(out, "hostile exit: reason=error message=string", err)
                assert_has(out, "the host still serves", err)
                assert_has(out, MARKER, err)
            end)
        end
    end)

    -- ------------------------------------------------------------------
    -- At the memory limit

    -- Each op runs in an agent whose heap is filled to its limit, then
    -- given back a little headroom: none, then a little more each round
    -- (ROUNDS rounds, up to about 24 KB), so that the op's first, second,
    -- ... allocation is the one refused, whichever that is.  setup runs
    -- once before any filling; op inside a pcall.  The agent either
    -- survives every round (each op worked or raised a catchable error),
    -- frees its filler, reports and ends normally, or ends with reason
    -- oom.  peer is an echo agent; msg a small table; i the round (1..).
    local ROUNDS = 40
    local OPS = {
        { name = "a:info()", op = "return peer:info()" },
        { name = "a:name() and a:id()", op = "return peer:name(), peer:id()" },
        { name = "tostring of a handle", op = "return tostring(peer)" },
        { name = "ms.self()", op = "return ms.self()" },
        { name = "ms.metrics()", op = "return ms.metrics()" },
        { name = "ms.agents()", op = "return ms.agents()" },
        { name = "a:send", op = "return peer:send(msg)" },
        { name = "a:call", op = "return peer:call(msg, 10)" },
        { name = "ms.recv of a waiting message",
          setup = [[for _ = 1, ROUNDS do
                        ms.self():send({ text = string.rep("r", 2000), list = { 1, 2, 3 } })
                    end]],
          op = "return ms.recv(1)" },
        { name = "ms.channel", op = "return ms.channel(4)" },
        { name = "channel send (local)", setup = "local c = ms.channel()",
          op = "return c:send(msg)" },
        { name = "channel recv (local)",
          setup = [[local c = ms.channel()
                    for _ = 1, ROUNDS do c:send({ text = string.rep("v", 40) }) end]],
          op = "return c:recv(1)" },
        { name = "channel send (shared)",
          setup = "local c = ms.channel() peer:send({ keep = true, chan = c })",
          op = "return c:send(msg)" },
        { name = "channel recv (shared)",
          setup = [[local c = ms.channel() peer:send({ keep = true, chan = c })
                    for _ = 1, ROUNDS do c:send({ text = string.rep("v", 2000) }) end]],
          op = "return c:recv(1)" },
        { name = "ms.semaphore", op = "return ms.semaphore(2)" },
        { name = "semaphore acquire", setup = "local s = ms.semaphore(ROUNDS)",
          op = "return s:acquire(1, 1)" },
        { name = "permit release",
          setup = [[local s, permits = ms.semaphore(ROUNDS), {}
                    for k = 1, ROUNDS do permits[k] = s:acquire(1, 1) end]],
          op = "return permits[i]:release()" },
        { name = "ms.events.subscribe", setup = "local events = ms.events",
          op = [[return events.subscribe("hostile.topic")]] },
        { name = "ms.events.publish",
          setup = [[local events = ms.events local sub = events.subscribe("hostile.topic")]],
          op = [[return events.publish("hostile.topic", msg)]] },
        { name = "ms.events.stats",
          setup = [[local events = ms.events local sub = events.subscribe("hostile.topic")]],
          op = "return events.stats()" },
        { name = "ms.spawn", setup = "local function task() return 1 end",
          op = "return ms.spawn(task)" },
        { name = "ms.agent.spawn", setup = "local agent, spec = ms.agent, { fn = function() end }",
          op = "return agent.spawn(spec)" },
        { name = "ms.monitor", op = "return ms.monitor(peer)" },
        { name = "ms.agent.whereis", setup = "local agent = ms.agent",
          op = [[return agent.whereis("peer")]] },
        { name = "ms.sleep", op = "return ms.sleep(0.001)" },
        { name = "ms.timeout", setup = "local function quick() return 1 end",
          op = "return ms.timeout(1, quick)" },
        { name = "ms.blocking", setup = "local function job() return 1 end",
          op = "return ms.blocking(job)" },
    }

    describe("at its memory limit", function()
        for _, case in ipairs(OPS) do
            it("calling " .. case.name .. " ends only that agent (oom) or gets an error",
                function()
                local code, out, err = run(PRELUDE .. ([[
local peer = ms.agent.spawn{ name = "peer", fn = echo_fn }
local hostile = ms.agent.spawn{ name = "hostile", memory_limit = 65536,
    args = { peer = peer, main = ms.self(), op = %q, rounds = %d }, fn = function(args)
    local peer, main, ROUNDS = args.peer, args.main, args.rounds
    -- Everything the rounds use is looked up now: a library opened on
    -- first use would allocate at the brink.
    local ms, pcall, tostring, collectgarbage, rep = ms, pcall, tostring, collectgarbage, string.rep
    local floor = math.floor
    local msg = { text = "hello", list = { 1, 2, 3 } }
    local i = 0
    %s
    local function op()
        %s
    end
    -- The filler: a chain of tables made by table.new, which leave no
    -- garbage behind (a collection frees only what is dropped on purpose).
    -- (table is read first: require "table.new" fails in an agent until the
    -- table library has been opened.)
    local tnew = table and require "table.new"
    local keep, slots = nil, 1
    local function grow()
        while true do
            local t = tnew(slots, 0)
            t[1] = keep
            keep = t
        end
    end
    local sizes = { 4096, 512, 64, 8, 1 }
    local worked, failed, last_err, fill_err = 0, 0, "none", "none"
    for round = 1, ROUNDS do
        i = round
        keep = nil
        collectgarbage()
        -- The headroom: a reserve taken before the filling, dropped after
        -- (none in round 1, about 24 KB in round 40).
        local reserve = round > 1 and tnew(floor((round - 1) ^ 2 * 2), 0) or nil
        for k = 1, #sizes do
            slots = sizes[k]
            local _
            _, fill_err = pcall(grow)
        end
        reserve = nil
        collectgarbage()
        local ok, e = pcall(op)
        if ok then worked = worked + 1 else failed = failed + 1 last_err = e end
    end
    keep = nil
    collectgarbage()
    main:send({ op = args.op, worked = worked, failed = failed, err = tostring(last_err),
                filled = tostring(fill_err) })
end }
local notice = wait_exit(hostile, 60)
serves(peer)
report(notice)
print("%s")
]]):format(case.name, ROUNDS, case.setup or "", case.op, MARKER))
                assert_ended(0, code, out, err)
                local oom = out:find("hostile exit: reason=oom", 1, true)
                local normal = out:find("hostile exit: reason=normal", 1, true)
                assert(oom or normal,
                    "the hostile agent did not end with oom or normally:\n" .. out .. err)
                if normal then -- then it ran every round, its heap full, and reported
                    assert_has(out, "op " .. case.name .. ": worked=", err)
                    assert_has(out, "(filling stopped at: not enough memory)", err)
                end
                assert_has(out, "the host still serves", err)
                assert_has(out, MARKER, err)
            end)
        end
    end)
end)

-- -------------------------------------------------------------------------
-- The main agent

describe("the main agent raising an error object", function()
    for _, case in ipairs(ERROR_OBJECTS) do
        it(case.name .. ": ms-host exits 1 with a message", function()
            local code, out, err = run(case.body .. "\n")
            assert_ended(1, code, out, err)
            assert(err:find("ms-host: ", 1, true) and err:find("failed", 1, true),
                "no message saying the main script failed:\n" .. err)
        end)
    end
end)

-- -------------------------------------------------------------------------
-- Names

describe("agent names", function()
    it("two agents spawning one name at the same moment: exactly one succeeds", function()
        local rounds = scaled(60, 10)
        local code, out, err = run(PRELUDE .. ([[
local rounds = %d
-- Each spawner waits on the go channel, then spawns the round's name with
-- a large args table (a wide window between any check and registration).
local function spawner(args)
    local big = {}
    for i = 1, 2000 do big[i] = "item " .. i end
    while true do
        local r = args.go:recv(30)
        if r == nil or r == "stop" then return end
        local ok, a = pcall(ms.agent.spawn, { name = "dup-" .. r, args = { big = big },
            fn = function() ms.sleep(3) end })
        args.main:send({ round = r, ok = ok,
            err = not ok and tostring(type(a) == "table" and a.message or a) or nil })
    end
end
local go = ms.channel()
local s1 = ms.agent.spawn{ fn = spawner, args = { go = go, main = ms.self() } }
local s2 = ms.agent.spawn{ fn = spawner, args = { go = go, main = ms.self() } }
local twice, none, refusals = 0, 0, {}
for r = 1, rounds do
    go:send(r)
    go:send(r)
    local wins = 0
    for _ = 1, 2 do
        local m = ms.recv(30)
        assert(m, "a spawner did not report")
        if m.ok then wins = wins + 1 else refusals[#refusals + 1] = m.err end
    end
    if wins == 2 then twice = twice + 1 elseif wins == 0 then none = none + 1 end
end
go:send("stop")
go:send("stop")
print("rounds " .. rounds .. ", taken twice " .. twice .. ", by none " .. none)
print("a refusal: " .. tostring(refusals[1]))
print("]] .. MARKER .. [[")
]]):format(rounds))
        assert_ended(0, code, out, err)
        assert_has(out, "taken twice 0, by none 0", err)
        assert_has(out, "taken", err)
        assert_has(out, MARKER, err)
    end)

    it("a name over the maximum is refused, saying so, or kept whole", function()
        local code, out, err = run(PRELUDE .. [[
local function sleeper() ms.recv(10) end
local names = {
    { "63 bytes", string.rep("n", 63) },
    { "100 bytes", string.rep("m", 100) },
    { "UTF-8 across byte 63", string.rep("\195\169", 40) },
}
for _, entry in ipairs(names) do
    local what, name = entry[1], entry[2]
    local ok, a = pcall(ms.agent.spawn, { name = name, fn = sleeper })
    if ok then
        local found = ms.agent.whereis(name)
        local whole = a:name() == name and found ~= nil and found:id() == a:id()
        print(what .. ": " .. (whole and "kept whole" or "CUT: " .. a:name()))
        a:send("bye")
    else
        local msg = type(a) == "table" and a.message or tostring(a)
        local cut = ms.agent.whereis(name:sub(1, 63))
        print(what .. ": refused: " .. msg .. (cut and " (BUT REGISTERED CUT)" or ""))
    end
end
print("]] .. MARKER .. [[")
]])
        assert_ended(0, code, out, err)
        assert_has(out, "63 bytes: kept whole", err)
        for _, what in ipairs({ "100 bytes", "UTF-8 across byte 63" }) do
            local line = out:match(what:gsub("%p", "%%%0") .. ": ([^\n]*)")
            assert(line, "no line for " .. what .. ":\n" .. out .. err)
            local kept = line == "kept whole"
            local refused = line:match("^refused: ") and not line:find("REGISTERED CUT", 1, true)
                and (line:find("63", 1, true) or line:find("long", 1, true)
                    or line:find("at most", 1, true) or line:find("maximum", 1, true))
            assert(kept or refused, what .. ": neither kept whole nor refused saying why: " .. line)
        end
        assert_has(out, MARKER, err)
    end)
end)
