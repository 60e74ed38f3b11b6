-- Specs for ms.supervisor: strategies, restart types, restart intensity
-- and escalation (nested supervisors), shutdown order and timeouts,
-- dynamic children, the handle's calls, custom policies, backoff, events.
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/supervisor_spec.lua
--
-- Children are the `worker` function below: it reports what happens to it
-- on a log channel from its args, so the specs see start and stop order.
-- No check depends on how fast the machine is: waits are for events or
-- states, with deadlines that only turn a hang into a failure; delays are
-- checked as the supervisor computed them (the restarted event's delay),
-- and elapsed time only as a lower bound (a restart is never early).

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
package.path = spec_dir .. "/../lua/?.lua;lua/?.lua;" .. package.path

local ms = require "ms"

local early_notices

local function run(fn)
    early_notices = {}
    local ok, err = ms.run(fn, { worker_threads = "2" })
    if not ok then
        error(tostring(type(err) == "table" and err.message or err) .. "\n"
            .. tostring(type(err) == "table" and err.traceback or ""), 0)
    end
end

local function assert_contains(haystack, needle)
    assert(type(haystack) == "string" and haystack:find(needle, 1, true),
        ("expected %q\n  to contain %q"):format(tostring(haystack), needle))
end

local function error_of(fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error")
    return tostring(err)
end

-- A child.  Logs "start:<id>" on args.log, then serves its mailbox:
--   "crash" -> raises; "exit" -> returns (reason normal); "oom" -> runs out
--   of its memory_limit; { event = "shutdown" } -> logs "stop:<id>" and
--   returns, or with args.stubborn logs "ignored:<id>" and carries on.
local function worker(args)
    local log = args.log
    -- It handles { event = "shutdown" } itself (child() spawns it with
    -- trap_exit = true): otherwise a supervisor stops it at once, OTP's
    -- rule for processes that do not trap exits.
    if log then log:send("start:" .. args.id) end
    while true do
        local m = ms.recv()
        if type(m) == "table" and m.event == "shutdown" then
            if log then log:send((args.stubborn and "ignored:" or "stop:") .. args.id) end
            if not args.stubborn then return end
        elseif m == "crash" then
            error("asked to crash: " .. args.id, 0)
        elseif m == "exit" then
            return
        elseif m == "oom" then
            local t = {}
            for i = 1, 1e8 do t[i] = ("x"):rep(64) .. i end
        end
    end
end

local function child(id, log, fields, args)
    local a = { id = id, log = log }
    for k, v in pairs(args or {}) do a[k] = v end
    local c = { id = id, start = { fn = worker, args = a, trap_exit = true }, shutdown = 2 }
    for k, v in pairs(fields or {}) do c[k] = v end
    return c
end

-- The next n entries of a log channel.
local function read_log(log, n, timeout)
    local out = {}
    for i = 1, n do
        local v, err = log:recv(timeout or 5)
        assert(v, ("log entry %d of %d: %s (so far: %s)"):format(
            i, n, tostring(err), table.concat(out, " ")))
        out[i] = v
    end
    return out
end

local function assert_quiet(log, wait)
    local v = log:recv(wait or 0.1)
    assert(v == nil, "unexpected log entry " .. tostring(v))
end

local function children_by_id(sup)
    local out = {}
    for _, c in ipairs(assert(sup:which_children())) do out[c.id] = c end
    return out
end

-- Children are spawned in order, but each runs its own code concurrently,
-- so the order of their "start:" lines is not fixed: compare those as sets,
-- and the spawn order by agent id (ids grow with each spawn).
local function sorted(list)
    local copy = { unpack(list) }
    table.sort(copy)
    return copy
end

local function assert_spawn_order(sup, ids)
    local kids = children_by_id(sup)
    for i = 2, #ids do
        assert(kids[ids[i - 1]].agent:id() < kids[ids[i]].agent:id(),
            ids[i - 1] .. " was not started before " .. ids[i])
    end
end

local function agent_of(sup, id)
    local c = children_by_id(sup)[id]
    return c and c.agent
end

-- Polls pred() every 10 ms until it returns a true value; fails after timeout.
local function wait_for(pred, timeout, what)
    local deadline = ms.now() + (timeout or 5)
    while true do
        local v = pred()
        if v then return v end
        assert(ms.now() < deadline, "timed out waiting for " .. (what or "a condition"))
        ms.sleep(0.01)
    end
end

-- The exit notice of a monitored agent.  Notices of other agents read on
-- the way are kept for later calls; other messages are dropped.
local function await_exit(a, timeout)
    for i, m in ipairs(early_notices) do
        if m.agent == a then return table.remove(early_notices, i) end
    end
    local deadline = ms.now() + (timeout or 5)
    while true do
        local m = ms.recv(math.max(0, deadline - ms.now()))
        assert(m ~= nil, "no exit notice for " .. tostring(a))
        if type(m) == "table" and m.event == "exit" then
            if m.agent == a then return m end
            early_notices[#early_notices + 1] = m
        end
    end
end

local function restarted(sup, id, old)
    return function()
        local c = children_by_id(sup)[id]
        return c and c.status == "running" and c.agent ~= old and c.agent
    end
end

describe("ms.supervisor", function()
    it("starts children in order, reports them and stops them in reverse order", function()
        run(function()
            local log = ms.channel()
            local sup = assert(ms.supervisor{
                name = "basic",
                children = { child("a", log), child("b", log), child("c", log) },
            })
            assert.are.same({ "start:a", "start:b", "start:c" }, sorted(read_log(log, 3)))
            assert_spawn_order(sup, { "a", "b", "c" })
            local list = sup:which_children()
            assert.are.equal(3, #list)
            for i, id in ipairs({ "a", "b", "c" }) do
                assert.are.equal(id, list[i].id)
                assert.are.equal("running", list[i].status)
                assert.are.equal("worker", list[i].type)
                assert.are.equal("permanent", list[i].restart)
                assert.are.equal("userdata", type(list[i].agent))
            end
            assert.are.same({ specs = 3, active = 3, supervisors = 0, workers = 3 },
                sup:count_children())
            assert.are.equal("basic", sup.agent:name())
            ms.monitor(sup.agent)
            assert.is_true(sup:stop())
            assert.are.same({ "stop:c", "stop:b", "stop:a" }, read_log(log, 3))
            assert.are.equal("normal", await_exit(sup.agent).reason)
        end)
    end)

    it("takes an exit notice only from the host: a forged one restarts nothing", function()
        run(function()
            local log = ms.channel()
            local sup = assert(ms.supervisor{
                strategy = "one_for_one",
                children = { child("a", log) },
            })
            read_log(log, 1)
            local a = agent_of(sup, "a")
            -- The same table the host sends, but from an agent (this one).
            assert(sup.agent:send({ event = "exit", agent = a, name = a:name(),
                reason = "error", message = "forged", unread = 0 }))
            -- A call after the forgery is served after it (one mailbox).
            local list = assert(sup:which_children())
            assert.are.equal(a, list[1].agent)
            assert.are.equal("running", list[1].status)
            assert_quiet(log)
            -- A real exit is still seen.
            a:send("crash")
            wait_for(restarted(sup, "a", a), 5, "a restarted")
            assert.are.same({ "start:a" }, read_log(log, 1))
            assert.is_true(sup:stop())
        end)
    end)

    describe("strategies", function()
        it("one_for_one restarts only the child that failed", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    strategy = "one_for_one",
                    children = { child("a", log), child("b", log), child("c", log) },
                })
                read_log(log, 3)
                local before = children_by_id(sup)
                before.b.agent:send("crash")
                local b2 = wait_for(restarted(sup, "b", before.b.agent), 5, "b restarted")
                assert.are.same({ "start:b" }, read_log(log, 1))
                assert_quiet(log)
                local after = children_by_id(sup)
                assert.are.equal(before.a.agent, after.a.agent)
                assert.are.equal(before.c.agent, after.c.agent)
                assert.are.equal(1, after.b.restarts)
                assert.are.equal(1, b2:info().restarts)
                assert.are.equal(1, sup:stats().restarts)
                sup:stop()
            end)
        end)

        it("one_for_all stops the others in reverse order and starts all in order", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    strategy = "one_for_all",
                    children = { child("a", log), child("b", log), child("c", log) },
                })
                read_log(log, 3)
                local before = children_by_id(sup)
                before.b.agent:send("crash")
                assert.are.same({ "stop:c", "stop:a" }, read_log(log, 2))
                assert.are.same({ "start:a", "start:b", "start:c" }, sorted(read_log(log, 3)))
                assert_spawn_order(sup, { "a", "b", "c" })
                local after = children_by_id(sup)
                for _, id in ipairs({ "a", "b", "c" }) do
                    assert.are_not.equal(before[id].agent, after[id].agent)
                    assert.are.equal("running", after[id].status)
                end
                assert.are.equal(1, sup:stats().restarts)
                sup:stop()
            end)
        end)

        it("rest_for_one restarts the child and those started after it", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    strategy = "rest_for_one",
                    children = { child("a", log), child("b", log), child("c", log), child("d", log) },
                })
                read_log(log, 4)
                local before = children_by_id(sup)
                before.b.agent:send("crash")
                assert.are.same({ "stop:d", "stop:c" }, read_log(log, 2))
                assert.are.same({ "start:b", "start:c", "start:d" }, sorted(read_log(log, 3)))
                assert_spawn_order(sup, { "b", "c", "d" })
                local after = children_by_id(sup)
                assert.are.equal(before.a.agent, after.a.agent)
                assert.are_not.equal(before.c.agent, after.c.agent)
                sup:stop()
            end)
        end)
    end)

    describe("restart types", function()
        it("permanent: restarted after a normal exit too", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{ children = { child("p", log) } })
                read_log(log, 1)
                local old = agent_of(sup, "p")
                old:send("exit")
                wait_for(restarted(sup, "p", old), 5, "p restarted")
                assert.are.same({ "start:p" }, read_log(log, 1))
                sup:stop()
            end)
        end)

        it("transient: restarted after a crash, not after a normal exit", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    children = { child("t", log, { restart = "transient" }) },
                })
                read_log(log, 1)
                local old = agent_of(sup, "t")
                old:send("crash")
                local new = wait_for(restarted(sup, "t", old), 5, "t restarted")
                read_log(log, 1)
                new:send("exit")
                wait_for(function() return children_by_id(sup).t.status == "stopped" end)
                assert_quiet(log, 0.2)
                local c = children_by_id(sup).t
                assert.is_nil(c.agent)
                assert.are.same({ specs = 1, active = 0, supervisors = 0, workers = 1 },
                    sup:count_children())
                sup:stop()
            end)
        end)

        it("temporary: never restarted, and forgotten once it exits", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    children = { child("tmp", log, { restart = "temporary" }), child("keep", log) },
                })
                read_log(log, 2)
                agent_of(sup, "tmp"):send("crash")
                wait_for(function() return #sup:which_children() == 1 end, 5, "tmp forgotten")
                assert_quiet(log, 0.2)
                assert.are.equal("keep", sup:which_children()[1].id)
                assert.are.equal(0, sup:stats().restarts)
                sup:stop()
            end)
        end)
    end)

    describe("restart intensity", function()
        it("past intensity restarts in period it stops its children and exits with an error", function()
            run(function()
                local log = ms.channel()
                local escalated = ms.events.subscribe("ms.supervisor.escalated")
                local sup = assert(ms.supervisor{
                    name = "fragile", intensity = 2, period = 5,
                    children = { child("a", log), child("b", log), child("c", log) },
                })
                read_log(log, 3)
                ms.monitor(sup.agent)
                for _ = 1, 2 do
                    local old = agent_of(sup, "b")
                    old:send("crash")
                    wait_for(restarted(sup, "b", old), 5, "b restarted")
                    assert.are.same({ "start:b" }, read_log(log, 1))
                end
                agent_of(sup, "b"):send("crash")
                local exit = await_exit(sup.agent)
                assert.are.equal("error", exit.reason)
                assert.are.equal("restart intensity exceeded", exit.message)
                assert.are.same({ "stop:c", "stop:a" }, read_log(log, 2))
                local e = escalated:recv(2)
                assert.are.equal("fragile", e.supervisor)
                assert.are.equal("restart intensity exceeded", e.message)
            end)
        end)

        it("intensity = 0 escalates at the first failure", function()
            run(function()
                local sup = assert(ms.supervisor{ intensity = 0, children = { child("a") } })
                ms.monitor(sup.agent)
                agent_of(sup, "a"):send("crash")
                assert.are.equal("restart intensity exceeded", await_exit(sup.agent).message)
            end)
        end)

        it("forgets restarts older than period", function()
            run(function()
                local sup = assert(ms.supervisor{ intensity = 1, period = 0.3, children = { child("a") } })
                for _ = 1, 3 do
                    local old = agent_of(sup, "a")
                    old:send("crash")
                    wait_for(restarted(sup, "a", old), 5, "a restarted")
                    ms.sleep(0.4)
                end
                assert.are.equal(3, sup:stats().restarts)
                sup:stop()
            end)
        end)

        it("escalates to a parent supervisor, which restarts the nested one", function()
            run(function()
                local log = ms.channel()
                local outer = assert(ms.supervisor{
                    name = "outer",
                    children = {
                        child("before", log),
                        { id = "inner", start = {
                            name = "inner", intensity = 0,
                            children = { child("w", log) },
                        } },
                        child("after", log),
                    },
                })
                assert.are.same({ "start:after", "start:before", "start:w" }, sorted(read_log(log, 3)))
                local info = children_by_id(outer).inner
                assert.are.equal("supervisor", info.type)
                assert.are.equal("permanent", info.restart)
                assert.are.same({ specs = 3, active = 3, supervisors = 1, workers = 2 },
                    outer:count_children())
                local inner = assert(ms.supervisor.attach(info.agent))
                assert.are.equal("inner", inner.name)
                agent_of(inner, "w"):send("crash")
                -- inner escalates (intensity 0), outer restarts inner, which starts w again
                assert.are.same({ "start:w" }, read_log(log, 1))
                local new_inner = wait_for(restarted(outer, "inner", info.agent), 5, "inner restarted")
                local s = outer:stats()
                assert.are.equal(1, s.escalations)
                assert.are.equal(1, s.restarts)
                assert.are.equal("running",
                    children_by_id(assert(ms.supervisor.attach(new_inner))).w.status)
                assert_quiet(log)
                outer:stop()
                assert.are.same({ "stop:after", "stop:w", "stop:before" }, read_log(log, 3))
            end)
        end)
    end)

    describe("shutdown", function()
        it("waits for a clean stop up to the timeout, then kills; brutal_kill kills at once", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    children = {
                        child("polite", log, { shutdown = 2 }),
                        child("stubborn", log, { shutdown = 0.3 }, { stubborn = true }),
                        child("brutal", log, { shutdown = "brutal_kill" }),
                    },
                })
                read_log(log, 3)
                local kids = children_by_id(sup)
                for _, c in pairs(kids) do ms.monitor(c.agent) end
                local t0 = ms.now()
                assert.is_true(sup:stop())
                local took = ms.now() - t0
                -- the stubborn child had its full 0.3 s before it was killed
                assert.is_true(took >= 0.3, "stop took " .. took)
                -- brutal first (no shutdown message), then stubborn, then polite
                assert.are.same({ "ignored:stubborn", "stop:polite" }, read_log(log, 2))
                local b = await_exit(kids.brutal.agent)
                assert.are.same({ "killed", "shutdown" }, { b.reason, b.message })
                local s = await_exit(kids.stubborn.agent)
                assert.are.same({ "killed", "shutdown" }, { s.reason, s.message })
                assert.are.equal("normal", await_exit(kids.polite.agent).reason)
            end)
        end)

        it("a supervisor stops its children when asked with { event = \"shutdown\" }", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{ children = { child("a", log), child("b", log) } })
                read_log(log, 2)
                ms.monitor(sup.agent)
                sup.agent:send({ event = "shutdown" })
                assert.are.same({ "stop:b", "stop:a" }, read_log(log, 2))
                assert.are.equal("normal", await_exit(sup.agent).reason)
            end)
        end)

        it("children do not outlive a supervisor that is killed", function()
            run(function()
                local sup = assert(ms.supervisor{ children = { child("a"), child("b") } })
                local kids = children_by_id(sup)
                ms.monitor(kids.a.agent)
                ms.monitor(kids.b.agent)
                sup.agent:stop()
                local e = await_exit(kids.a.agent)
                assert.are.same({ "killed", "supervisor exited" }, { e.reason, e.message })
                assert.are.equal("killed", await_exit(kids.b.agent).reason)
            end)
        end)
    end)

    describe("the handle", function()
        it("start_child, terminate_child, restart_child and delete_child on a static supervisor", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{ children = { child("a", log) } })
                read_log(log, 1)
                local d, id = sup:start_child(child("d", log))
                assert.are.equal("d", id)
                assert.are.equal("userdata", type(d))
                assert.are.same({ "start:d" }, read_log(log, 1))
                local none, err = sup:start_child(child("d", log))
                assert.is_nil(none)
                assert_contains(err, "exists already")
                assert.are.same({ "a", "d" }, { sup:which_children()[1].id, sup:which_children()[2].id })

                assert.is_true(sup:terminate_child("a"))
                assert.are.same({ "stop:a" }, read_log(log, 1))
                assert.are.equal("stopped", children_by_id(sup).a.status)
                assert.are.equal(1, sup:count_children().active)
                assert_quiet(log, 0.2)                      -- not restarted

                local again = assert(sup:restart_child("a"))
                assert.are.same({ "start:a" }, read_log(log, 1))
                assert.are.equal(again, agent_of(sup, "a"))
                assert.are.same({ nil, "running" }, { sup:restart_child("a") })
                assert.are.same({ nil, "running" }, { sup:delete_child("a") })

                assert.is_true(sup:terminate_child("a"))
                assert.is_true(sup:delete_child("a"))
                assert.are.equal(1, #sup:which_children())
                local missing, merr = sup:terminate_child("nope")
                assert.is_nil(missing)
                assert_contains(merr, "no child with id nope")
                assert_contains(error_of(sup.start_child, sup, { id = "x" }), "start: is missing")
                sup:stop()
            end)
        end)

        it("a dynamic (simple_one_for_one) supervisor starts many children of one spec", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    strategy = "simple_one_for_one",
                    children = { {
                        id = "conn", restart = "transient", shutdown = 1,
                        start = { fn = worker, args = { log = log }, trap_exit = true },
                    } },
                })
                assert.are.same({ specs = 0, active = 0, supervisors = 0, workers = 0 },
                    sup:count_children())
                local c1, id1 = sup:start_child({ id = "c1" })
                local _, id2 = sup:start_child({ id = "c2" })
                local _, id3 = sup:start_child({ id = "c3" })
                assert.are.same({ "conn-1", "conn-2", "conn-3" }, { id1, id2, id3 })
                assert.are.same({ "start:c1", "start:c2", "start:c3" }, sorted(read_log(log, 3)))
                assert.are.equal(3, sup:count_children().active)

                c1:send("crash")                            -- transient: restarted, same args
                wait_for(restarted(sup, "conn-1", c1), 5, "conn-1 restarted")
                assert.are.same({ "start:c1" }, read_log(log, 1))

                assert.is_true(sup:terminate_child("conn-2"))  -- stopped and forgotten
                assert.are.same({ "stop:c2" }, read_log(log, 1))
                agent_of(sup, "conn-3"):send("exit")       -- normal exit: forgotten
                wait_for(function() return #sup:which_children() == 1 end, 5, "conn-3 gone")
                assert.are.equal("conn-1", sup:which_children()[1].id)
                sup:stop()
                assert.are.same({ "stop:c1" }, read_log(log, 1))
            end)
        end)

        it("reports a child that fails to start, after stopping those started", function()
            run(function()
                local log = ms.channel()
                local squatter = ms.agent.spawn{ name = "taken", fn = function() ms.recv() end }
                local before = #ms.agents()
                local sup, err = ms.supervisor{
                    children = {
                        child("a", log),
                        { id = "b", start = { name = "taken", fn = worker, args = { id = "b" } } },
                    },
                }
                assert.is_nil(sup)
                assert_contains(err, "child b failed to start")
                assert_contains(err, "the name 'taken' is taken")
                assert.are.same({ "start:a", "stop:a" }, read_log(log, 2))
                wait_for(function() return #ms.agents() <= before end, 5, "agents gone")
                squatter:send("bye")
            end)
        end)
    end)

    describe("policies", function()
        it("a custom policy can ignore one child and defer to the strategy for the others", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    policy = function(exit, sup)
                        if exit.id == "fragile" then return "ignore" end
                        return sup.default(exit)
                    end,
                    children = { child("fragile", log), child("sturdy", log) },
                })
                read_log(log, 2)
                agent_of(sup, "fragile"):send("crash")
                wait_for(function() return children_by_id(sup).fragile.status == "stopped" end)
                local old = agent_of(sup, "sturdy")
                old:send("crash")
                wait_for(restarted(sup, "sturdy", old), 5, "sturdy restarted")
                assert.are.same({ "start:sturdy" }, read_log(log, 1))
                assert.are.equal("stopped", children_by_id(sup).fragile.status)
                sup:stop()
            end)
        end)

        it("a policy may escalate", function()
            run(function()
                local sup = assert(ms.supervisor{
                    policy = function(exit) return exit.reason == "error" and "escalate" or "restart" end,
                    children = { child("a") },
                })
                ms.monitor(sup.agent)
                agent_of(sup, "a"):send("crash")
                local e = await_exit(sup.agent)
                assert.are.equal("error", e.reason)
                assert.are.equal("escalated: child a exited (error: asked to crash: a)", e.message)
            end)
        end)

        it("a policy may delay a restart with { restart_after = s }", function()
            run(function()
                local exits = ms.events.subscribe("ms.supervisor.child_exited")
                local restarts = ms.events.subscribe("ms.supervisor.restarted")
                local sup = assert(ms.supervisor{
                    policy = function() return { restart_after = 0.3 } end,
                    children = { child("a") },
                })
                local old = agent_of(sup, "a")
                local t0 = ms.now()
                old:send("crash")
                local x = assert(exits:recv(10))
                assert.are.equal("{ restart_after=0.3 }", x.action)
                local r = assert(restarts:recv(10))
                local took = ms.now() - t0
                assert.are.same({ "a", 1, 0.3 }, { r.id, r.restarts, r.delay })
                assert.is_true(took >= 0.3, "restarted after " .. took)
                assert.are.equal(r.agent, agent_of(sup, "a"))
                sup:stop()
            end)
        end)

        it("a strategy can be a policy function of its own", function()
            run(function()
                local log = ms.channel()
                local sup = assert(ms.supervisor{
                    strategy = function(exit, sup)
                        return { restart = sup.all() }      -- one_for_all, whatever the reason
                    end,
                    children = { child("a", log), child("b", log) },
                })
                read_log(log, 2)
                agent_of(sup, "a"):send("exit")
                assert.are.same({ "stop:b" }, read_log(log, 1))
                assert.are.same({ "start:a", "start:b" }, sorted(read_log(log, 2)))
                sup:stop()
            end)
        end)

        it("a policy that raises or returns nonsense escalates", function()
            run(function()
                local sup = assert(ms.supervisor{
                    policy = function() return "reboot" end,
                    children = { child("a") },
                })
                ms.monitor(sup.agent)
                agent_of(sup, "a"):send("crash")
                assert_contains(await_exit(sup.agent).message, "invalid action: reboot")
                local sup2 = assert(ms.supervisor{
                    policy = function() error("policy bug") end,
                    children = { child("a") },
                })
                ms.monitor(sup2.agent)
                agent_of(sup2, "a"):send("crash")
                assert_contains(await_exit(sup2.agent).message, "the policy failed: ")
            end)
        end)

        it("the recovery table overrides what an exit reason leads to (oom -> escalate)", function()
            run(function()
                local sup = assert(ms.supervisor{
                    recovery = { oom = "escalate" },
                    children = { {
                        id = "hungry",
                        start = { fn = worker, args = { id = "hungry" }, memory_limit = 2 * 1024 * 1024 },
                    } },
                })
                ms.monitor(sup.agent)
                agent_of(sup, "hungry"):send("oom")
                assert_contains(await_exit(sup.agent, 10).message, "escalated: child hungry exited (oom")
            end)
        end)
    end)

    describe("backoff", function()
        it("delays restarts exponentially between min and max", function()
            run(function()
                local restarts = ms.events.subscribe("ms.supervisor.restarted")
                local sup = assert(ms.supervisor{
                    intensity = 10, backoff = { min = 0.05, max = 0.2 },
                    children = { child("a") },
                })
                local delays, took = {}, {}
                for i = 1, 5 do
                    local old = agent_of(sup, "a")
                    local t0 = ms.now()
                    old:send("crash")
                    local r = assert(restarts:recv(10))
                    took[i] = ms.now() - t0
                    assert.are.equal(i, r.restarts)
                    delays[i] = r.delay
                    wait_for(restarted(sup, "a", old), 10, "a restarted")
                end
                -- min, doubling, then capped at max (uncapped would go on
                -- to 0.4 and 0.8)
                assert.are.same({ 0.05, 0.1, 0.2, 0.2, 0.2 }, delays)
                for i = 1, 5 do
                    assert.is_true(took[i] >= delays[i], ("restart %d after %.3f s"):format(i, took[i]))
                end
                sup:stop()
            end)
        end)

        it("spreads backoff delays by jitter, never above max", function()
            run(function()
                local restarts = ms.events.subscribe("ms.supervisor.restarted")
                local sup = assert(ms.supervisor{
                    intensity = 100, period = 60,
                    backoff = { min = 0.01, max = 0.02, factor = 1, jitter = 0.5 },
                    children = { child("a") },
                })
                local lo, hi = math.huge, -math.huge
                for i = 1, 12 do
                    local old = agent_of(sup, "a")
                    old:send("crash")
                    local r = assert(restarts:recv(10))
                    assert.is_true(r.delay >= 0.005 and r.delay <= 0.015, "delay " .. r.delay)
                    lo, hi = math.min(lo, r.delay), math.max(hi, r.delay)
                    wait_for(restarted(sup, "a", old), 10, "a restarted")
                end
                assert.is_true(hi - lo > 0.001, ("no jitter: %.4f..%.4f"):format(lo, hi))
                sup:stop()
            end)
        end)

        it("a child's circuit breaker holds restarts back once it opens", function()
            run(function()
                local restarts = ms.events.subscribe("ms.supervisor.restarted")
                local sup = assert(ms.supervisor{
                    intensity = 10,
                    children = { child("a", nil, {
                        circuit_breaker = { failure_threshold = 2, reset_timeout = 0.4 },
                    }) },
                })
                local old = agent_of(sup, "a")
                old:send("crash")                            -- 1st failure: restarted at once
                local r = assert(restarts:recv(10))
                assert.are.same({ 1, 0 }, { r.restarts, r.delay })
                old = wait_for(restarted(sup, "a", old), 10, "a restarted")
                local t0 = ms.now()
                old:send("crash")                            -- 2nd: open, wait reset_timeout
                r = assert(restarts:recv(10))
                local took = ms.now() - t0
                assert.are.equal(2, r.restarts)
                -- held back for what was left of reset_timeout when it opened
                assert.is_true(r.delay > 0 and r.delay <= 0.4, "delay " .. r.delay)
                assert.is_true(took >= r.delay, "held back " .. took)
                sup:stop()
            end)
        end)
    end)

    describe("reporting", function()
        it("publishes restarts as events and counts them per agent", function()
            run(function()
                local restarts = ms.events.subscribe("ms.supervisor.restarted")
                local exits = ms.events.subscribe("ms.supervisor.child_exited")
                local sup = assert(ms.supervisor{ name = "reporter", children = { child("a") } })
                local old = agent_of(sup, "a")
                old:send("crash")
                local e = restarts:recv(5)
                assert.are.same({ "reporter", "a", 1 }, { e.supervisor, e.id, e.restarts })
                local x = exits:recv(5)
                assert.are.same({ "a", "error", "restart" }, { x.id, x.reason, x.action })
                local found
                for _, a in ipairs(ms.metrics().agents) do
                    if a.id == e.agent:id() then found = a end
                end
                assert.are.equal(1, found.restarts)
                assert.are.same({ restarts = 1, escalations = 0, exits = 1, ignored_messages = 0,
                    unkillable = 0 }, sup:stats())
                sup:stop()
            end)
        end)
    end)

    describe("bad specs", function()
        it("are refused with the field at fault", function()
            assert_contains(error_of(ms.supervisor, { strategy = "one_for_none" }),
                "spec.strategy: must be one_for_one")
            assert_contains(error_of(ms.supervisor, { children = { { id = "a", start = { fn = worker }, restart = "sometimes" } } }),
                "spec.children[1].restart: must be")
            assert_contains(error_of(ms.supervisor, { children = { child("a"), child("a") } }),
                "spec.children[2].id: a is used twice")
            assert_contains(error_of(ms.supervisor, { children = { { start = { fn = worker } } } }),
                "spec.children[1].id: must be a string or a number")
            local captured = 42
            assert_contains(error_of(ms.supervisor, { children = { { id = "a", start = { fn = function() return captured end } } } }),
                "captures upvalues (captured)")
            assert_contains(error_of(ms.supervisor, { strategy = "simple_one_for_one", children = {} }),
                "takes exactly one child spec")
            assert_contains(error_of(ms.supervisor, { children = { child("a", nil, { shutdown = -1 }) } }),
                "spec.children[1].shutdown: must be seconds")
            assert_contains(error_of(ms.supervisor, { intensty = 3 }), "unknown field 'intensty'")
            assert_contains(error_of(ms.supervisor, { backoff = { min = 1, max = 0.5 } }),
                "spec.backoff: max = 0.5 is out of range")
            assert_contains(error_of(ms.supervisor, { recovery = { oom = "panic" } }),
                "spec.recovery.oom: must be")
        end)
    end)
end)
