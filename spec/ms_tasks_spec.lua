-- Specs for the task and time half of the ms module: ms.spawn and task
-- handles (join, abort, status), ms.yield, ms.sleep, ms.now, ms.timeout,
-- ms.interval and ms.blocking, the errors tasks report through join, and
-- the errors the functions raise when misused.
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/ms_tasks_spec.lua

local ms = require "ms"

local h = require "spec.support.helpers"
local run, contains, assert_contains, error_of = h.run, h.contains, h.assert_contains, h.error_of

-- Spins on the calling thread for s seconds without yielding.
local function spin(s)
    local start = ms.now()
    while ms.now() - start < s do end
end

local BLOCKING_ONLY_IN_TASKS = "must be called from an agent's task"

describe("ms tasks", function()
    describe("ms.spawn and join", function()
        it("runs the function with its arguments and join returns true and its results", function()
            run(function()
                local t = ms.spawn(function(a, b, c)
                    return a + b, c, nil, "last"
                end, 40, 2, "x")
                local ok, sum, c, none, last = t:join()
                assert.is_true(ok)
                assert.are.equal(42, sum)
                assert.are.equal("x", c)
                assert.is_nil(none)
                assert.are.equal("last", last)
            end)
        end)

        it("passes tables by reference: a task shares its agent's state", function()
            run(function()
                local shared = { n = 0 }
                local t = ms.spawn(function(tbl)
                    tbl.n = tbl.n + 1
                    return tbl
                end, shared)
                local ok, same = t:join()
                assert.is_true(ok)
                assert.are.equal(shared, same)
                assert.are.equal(1, shared.n)
            end)
        end)

        it("returns just true for a task that returns nothing", function()
            run(function()
                local results = { ms.spawn(function() end):join() }
                assert.are.same({ true }, results)
            end)
        end)

        it("does not start the task until the spawner waits or yields", function()
            run(function()
                local started = false
                local t = ms.spawn(function() started = true end)
                assert.is_false(started)
                assert.is_true((t:join()))
                assert.is_true(started)
            end)
        end)

        it("lets a finished task be joined again with the same results", function()
            run(function()
                local t = ms.spawn(function() return 7 end)
                assert.are.same({ true, 7 }, { t:join() })
                assert.are.same({ true, 7 }, { t:join() })
            end)
        end)

        it("runs many tasks to completion, each joined for its own result", function()
            run(function()
                local tasks = {}
                for i = 1, 200 do
                    tasks[i] = ms.spawn(function(n)
                        ms.sleep(0.001 * (n % 5))
                        return n * n
                    end, i)
                end
                for i = 1, 200 do
                    local ok, sq = tasks[i]:join()
                    assert.is_true(ok)
                    assert.are.equal(i * i, sq)
                end
            end)
        end)

        it("joins finished tasks at once with every kind of outcome", function()
            run(function()
                local t = {
                    ms.spawn(function() end),
                    ms.spawn(function() return 1.5 end),
                    ms.spawn(function() return false end),
                    ms.spawn(function() return "s" end),
                    ms.spawn(function() return { k = 1 } end),
                    ms.spawn(function() return 1, nil, 3 end),
                    ms.spawn(function() error("boom", 0) end),
                }
                local queued = ms.spawn(function() ms.sleep(60) end)
                ms.yield() -- all but the sleeper have finished now
                queued:abort()
                assert.are.same({ true }, { t[1]:join() })
                assert.are.same({ true, 1.5 }, { t[2]:join() })
                assert.are.same({ true, false }, { t[3]:join() })
                assert.are.same({ true, "s" }, { t[4]:join() })
                assert.are.same({ true, { k = 1 } }, { t[5]:join() })
                local function pack(...) return { n = select("#", ...), ... } end
                local r = pack(t[6]:join())
                assert.are.equal(4, r.n)
                assert.are.same({ true, 1, nil, 3 }, { r[1], r[2], r[3], r[4] })
                local ok, err = t[7]:join()
                assert.is_nil(ok)
                assert.are.equal("boom", err.message)
                assert.are.same({ nil, "aborted" }, { queued:join() })
            end)
        end)

        it("still lets the agent's other tasks run while joining many finished ones", function()
            run(function()
                local done = {}
                for i = 1, 1000 do
                    done[i] = ms.spawn(function() return i end)
                end
                ms.yield()
                local ticks = 0
                local ticker = ms.spawn(function()
                    while true do
                        ticks = ticks + 1
                        ms.yield()
                    end
                end)
                local seen_before_end
                for i = 1, 1000 do
                    assert.are.same({ true, i }, { done[i]:join() })
                    seen_before_end = ticks
                end
                ticker:abort()
                -- Joins that complete at once yield every 64th time, so
                -- the ticker ran during the loop, not only after it.
                assert.is_true(seen_before_end > 0)
            end)
        end)

        it("runs a task whose handle was dropped and collected before it ran", function()
            run(function()
                local box = {}
                ms.spawn(function() box.v = "ran"; return { big = ("x"):rep(1000) } end)
                collectgarbage()
                collectgarbage()
                ms.yield()
                assert.are.equal("ran", box.v)
                -- A handle kept alive across collections still has its results.
                local t = ms.spawn(function() return "kept", 2 end)
                ms.yield()
                collectgarbage()
                assert.are.same({ true, "kept", 2 }, { t:join() })
                assert.are.equal("done", t:status())
            end)
        end)

        it("keeps nothing of a joined task in the registry (ms.timeout included)", function()
            run(function()
                local function live_refs()
                    local n = 0
                    for k, v in pairs(debug.getregistry()) do
                        -- Released references are kept as a free list of numbers.
                        if type(k) == "number" and type(v) ~= "number" then n = n + 1 end
                    end
                    return n
                end
                local before = live_refs()
                for i = 1, 500 do
                    assert.are.same({ true, "r" .. i }, { ms.timeout(10, function() return "r" .. i end) })
                    local ok, err = ms.spawn(function() error({ i = i }) end):join()
                    assert.is_nil(ok)
                    assert.are.equal(i, err.value.i)
                    assert.are.same({ true, { i } }, { ms.spawn(function() return { i } end):join() })
                end
                collectgarbage()
                assert.is_true(live_refs() - before < 10, ("%d references left"):format(live_refs() - before))
            end)
        end)

        it("reports a failed task that nobody joined, once its handle is collected", function()
            local script = os.tmpname()
            local f = assert(io.open(script, "w"))
            f:write([[
                local joined = ms.spawn(function() error("seen by join", 0) end)
                ms.spawn(function() error("nobody joins me", 0) end)
                ms.yield()
                assert(joined:join() == nil)
                collectgarbage()
                collectgarbage()
                print("end")
            ]])
            f:close()
            local p = assert(io.popen(("%s run %s 2>&1"):format(h.host, script)))
            local out = p:read("*a")
            p:close()
            os.remove(script)
            assert_contains(out, "end")
            assert_contains(out, "failed and was never joined: nobody joins me")
            assert.is_nil(out:find("seen by join", 1, true), out)
        end)

        it("gives tostring(task) as ms.task(<id>)", function()
            run(function()
                local t = ms.spawn(function() end)
                assert.is_truthy(tostring(t):match("^ms%.task%(%d+%)$"), tostring(t))
                t:join()
            end)
        end)
    end)

    describe("join with a timeout", function()
        it("returns nil, \"timeout\" when the task is still running, and the task goes on", function()
            run(function()
                local t = ms.spawn(function()
                    ms.sleep(0.3)
                    return "late"
                end)
                local ok, err = t:join(0.01)
                assert.is_nil(ok)
                assert.are.equal("timeout", err)
                assert.are.equal("waiting", t:status())
                assert.are.same({ true, "late" }, { t:join(10) })
            end)
        end)

        it("gives every joiner the outcome, whether it waited, timed out first or came late",
            function()
            run(function()
                local gate = ms.channel(1)
                local t = ms.spawn(function()
                    gate:recv()
                    return { "shared" }, 2
                end)
                local got = {}
                local joiners = {}
                for i = 1, 5 do
                    joiners[i] = ms.spawn(function()
                        if i == 5 then
                            -- Times out, then joins again without a timeout.
                            local ok, err = t:join(0.01)
                            got.timed_out = { ok, err }
                        end
                        local ok, v, n = t:join()
                        got[i] = { ok, v[1], n }
                    end)
                end
                ms.sleep(0.05)
                gate:send(true)
                for i = 1, 5 do
                    assert.is_true((joiners[i]:join()))
                    assert.are.same({ true, "shared", 2 }, got[i])
                end
                assert.are.same({ nil, "timeout" }, got.timed_out)
                -- And a join after everyone else.
                local ok, v = t:join()
                assert.is_true(ok)
                assert.are.equal("shared", v[1])
                -- Aborting a task wakes all its joiners with "aborted".
                local never = ms.spawn(function() gate:recv() end)
                local seen = {}
                for i = 1, 3 do
                    ms.spawn(function() seen[i] = { never:join() } end)
                end
                ms.yield()
                never:abort()
                ms.yield()
                ms.yield()
                for i = 1, 3 do assert.are.same({ nil, "aborted" }, seen[i]) end
                -- ms.timeout's work that fails or times out.
                local e = { ms.timeout(5, function() error("inner", 0) end) }
                assert.is_nil(e[1])
                assert.are.equal("inner", e[2].message)
                assert.are.same({ nil, "timeout" }, { ms.timeout(0.01, function() gate:recv() end) })
            end)
        end)

        it("returns the results at once for a finished task, even with timeout 0", function()
            run(function()
                local t = ms.spawn(function() return 1 end)
                ms.yield()
                assert.are.equal("done", t:status())
                assert.are.same({ true, 1 }, { t:join(0) })
            end)
        end)

        it("refuses a negative timeout, naming the argument", function()
            run(function()
                local t = ms.spawn(function() end)
                local msg = error_of(function()
                    local r = t:join(-1)
                    return r
                end)
                assert_contains(msg, "bad argument #1 to 'join'")
                assert_contains(msg, "timeout must be a number of seconds >= 0")
                t:join()
            end)
        end)

        it("refuses a timeout that is not a number", function()
            run(function()
                local t = ms.spawn(function() end)
                local msg = error_of(function()
                    local r = t:join("soon")
                    return r
                end)
                assert_contains(msg, "bad argument #1 to 'join'")
                assert_contains(msg, "number expected, got string")
                t:join()
            end)
        end)

        it("refuses a task joining itself", function()
            run(function()
                local box = {}
                box.t = ms.spawn(function()
                    local ok, err = pcall(function() return box.t:join() end)
                    return ok, err
                end)
                local ok, inner_ok, inner_err = box.t:join()
                assert.is_true(ok)
                assert.is_false(inner_ok)
                assert_contains(tostring(inner_err), "cannot join itself")
            end)
        end)
    end)

    describe("abort", function()
        it("ends a waiting task; join returns nil, \"aborted\" and its code never runs on", function()
            run(function()
                local reached = false
                local t = ms.spawn(function()
                    ms.sleep(10)
                    reached = true
                end)
                ms.yield()
                assert.are.equal("waiting", t:status())
                t:abort()
                assert.are.equal("aborted", t:status())
                local ok, err = t:join()
                assert.is_nil(ok)
                assert.are.equal("aborted", err)
                ms.sleep(0.05)
                assert.is_false(reached)
            end)
        end)

        it("ends a queued task before it ever runs", function()
            run(function()
                local ran = false
                local t = ms.spawn(function() ran = true end)
                assert.are.equal("ready", t:status())
                t:abort()
                assert.are.equal("aborted", t:status())
                assert.are.same({ nil, "aborted" }, { t:join() })
                ms.yield()
                ms.sleep(0.01)
                assert.is_false(ran)
            end)
        end)

        it("wakes a task that was joining the aborted one", function()
            run(function()
                local target = ms.spawn(function() ms.sleep(10) end)
                local joiner = ms.spawn(function() return target:join() end)
                ms.yield()
                target:abort()
                local ok, r1, r2 = joiner:join(5)
                assert.is_true(ok)
                assert.is_nil(r1)
                assert.are.equal("aborted", r2)
            end)
        end)

        it("does nothing to a task that already finished", function()
            run(function()
                local t = ms.spawn(function() return "kept" end)
                t:join()
                t:abort()
                assert.are.equal("done", t:status())
                assert.are.same({ true, "kept" }, { t:join() })
            end)
        end)

        it("refuses a task aborting itself", function()
            run(function()
                local box = {}
                box.t = ms.spawn(function()
                    local ok, err = pcall(function() box.t:abort() end)
                    return ok, err
                end)
                local _, ok, err = box.t:join()
                assert.is_false(ok)
                assert_contains(tostring(err), "cannot abort itself")
            end)
        end)
    end)

    describe("status", function()
        it("goes ready -> waiting -> done", function()
            run(function()
                local t = ms.spawn(function() ms.sleep(0.05) end)
                assert.are.equal("ready", t:status())
                ms.yield()
                assert.are.equal("waiting", t:status())
                t:join()
                assert.are.equal("done", t:status())
            end)
        end)

        it("is running for the task that asks about itself", function()
            run(function()
                local box = {}
                box.t = ms.spawn(function() return box.t:status() end)
                assert.are.same({ true, "running" }, { box.t:join() })
            end)
        end)

        it("is failed for a task that raised an error", function()
            run(function()
                local t = ms.spawn(function() error("no") end)
                t:join()
                assert.are.equal("failed", t:status())
            end)
        end)
    end)

    describe("ms.yield", function()
        it("lets the agent's other tasks run: two yielding tasks interleave", function()
            run(function()
                local log = {}
                local function worker(name)
                    for i = 1, 5 do
                        log[#log + 1] = name .. i
                        ms.yield()
                    end
                end
                local a = ms.spawn(worker, "a")
                local b = ms.spawn(worker, "b")
                a:join()
                b:join()
                assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4", "a5", "b5" }, log)
            end)
        end)

        it("returns nothing and the task carries on", function()
            run(function()
                assert.are.equal(0, select("#", ms.yield()))
            end)
        end)
    end)

    describe("ms.sleep", function()
        it("is never early", function()
            run(function()
                for _, s in ipairs({ 0.01, 0.05, 0.1 }) do
                    local start = ms.now()
                    ms.sleep(s)
                    assert.is_true(ms.now() - start >= s,
                        ("slept %.6f s for %.3f"):format(ms.now() - start, s))
                end
            end)
        end)

        it("accepts 0 and returns nothing", function()
            run(function()
                assert.are.equal(0, select("#", ms.sleep(0)))
            end)
        end)

        it("wakes concurrent sleepers in deadline order", function()
            run(function()
                local order = {}
                local tasks = {}
                for _, d in ipairs({ 0.15, 0.05, 0.1 }) do
                    tasks[#tasks + 1] = ms.spawn(function()
                        ms.sleep(d)
                        order[#order + 1] = d
                    end)
                end
                for _, t in ipairs(tasks) do t:join() end
                assert.are.same({ 0.05, 0.1, 0.15 }, order)
            end)
        end)

        it("sleeps tasks concurrently, not one after another", function()
            run(function()
                -- All 20 are asleep at the same time: each counts itself in
                -- before its sleep and out after it.  (Sleeps one after
                -- another would never have more than one asleep.)
                local asleep, most, tasks = 0, 0, {}
                for i = 1, 20 do
                    tasks[i] = ms.spawn(function()
                        asleep = asleep + 1
                        most = math.max(most, asleep)
                        ms.sleep(0.05)
                        asleep = asleep - 1
                    end)
                end
                for _, t in ipairs(tasks) do assert.is_true((t:join(20))) end
                assert.are.equal(20, most)
                assert.are.equal(0, asleep)
            end)
        end)

        it("refuses a negative duration, naming the argument", function()
            run(function()
                local msg = error_of(function()
                    local r = ms.sleep(-1)
                    return r
                end)
                assert_contains(msg, "bad argument #1 to 'sleep'")
                assert_contains(msg, "seconds must be between 0 and one week")
            end)
        end)

        it("refuses a duration that is not a number", function()
            run(function()
                local msg = error_of(function()
                    local r = ms.sleep("x")
                    return r
                end)
                assert_contains(msg, "bad argument #1 to 'sleep'")
                assert_contains(msg, "number expected, got string")
            end)
        end)

        it("refuses NaN and more than a week", function()
            run(function()
                assert_contains(error_of(function()
                    local r = ms.sleep(0 / 0)
                    return r
                end), "seconds must be between 0 and one week")
                assert_contains(error_of(function()
                    local r = ms.sleep(8 * 24 * 3600)
                    return r
                end), "seconds must be between 0 and one week")
            end)
        end)
    end)

    describe("ms.now", function()
        it("is a number of seconds that never goes backwards", function()
            local prev = ms.now()
            assert.are.equal("number", type(prev))
            for _ = 1, 10000 do
                local t = ms.now()
                assert(t >= prev, "ms.now went backwards")
                prev = t
            end
        end)

        it("advances with real time", function()
            run(function()
                local a = ms.now()
                ms.sleep(0.05)
                local b = ms.now()
                assert.is_true(b - a >= 0.05)
                assert.is_true(b - a < 5)
            end)
        end)

        it("works outside ms.run (no runtime needed)", function()
            assert.are.equal("number", type(ms.now()))
        end)
    end)

    describe("ms.timeout", function()
        it("returns true and the results when the work finishes in time", function()
            run(function()
                local ok, a, b = ms.timeout(5, function(x, y)
                    ms.sleep(0.01)
                    return x .. y, 3
                end, "a", "b")
                assert.is_true(ok)
                assert.are.equal("ab", a)
                assert.are.equal(3, b)
            end)
        end)

        it("returns nil, \"timeout\" when the time runs out, and aborts the work", function()
            run(function()
                local finished = false
                local start = ms.now()
                local ok, err = ms.timeout(0.05, function()
                    ms.sleep(0.3)
                    finished = true
                end)
                assert.is_nil(ok)
                assert.are.equal("timeout", err)
                assert.is_true(ms.now() - start >= 0.05)
                ms.sleep(0.5)
                assert.is_false(finished)
            end)
        end)

        it("reports an error raised by the work as nil, err", function()
            run(function()
                local ok, err = ms.timeout(5, function() error("inside") end)
                assert.is_nil(ok)
                assert.are.equal("table", type(err))
                assert_contains(err.message, "inside")
            end)
        end)

        it("checks its arguments", function()
            run(function()
                assert_contains(error_of(function()
                    local r = ms.timeout(-1, function() end)
                    return r
                end), "bad argument #1 to 'timeout'")
                assert_contains(error_of(function()
                    local r = ms.timeout(1, "not a function")
                    return r
                end), "bad argument #2 to 'timeout'")
            end)
        end)
    end)

    describe("ms.interval", function()
        it("ticks once per period, returning the tick time and the skipped count", function()
            run(function()
                local start = ms.now()
                local ticks = {}
                for tick, skipped in ms.interval(0.02) do
                    assert.are.equal("number", type(tick))
                    assert.are.equal(0, skipped)
                    ticks[#ticks + 1] = tick
                    if #ticks == 5 then break end
                end
                assert.is_true(ticks[1] >= start)
                for i = 2, #ticks do
                    assert.is_true(ticks[i] >= ticks[i - 1])
                end
                -- Five periods of 20 ms cannot take less than 80 ms after the first tick.
                assert.is_true(ticks[5] - start >= 0.09, "5 ticks in " .. (ticks[5] - start))
            end)
        end)

        -- The missed-tick policies, seen from Lua.  A 0.35 s stall after
        -- the first tick (0.05 s period) misses at least six ticks.  Only
        -- lower bounds are checked, against the end of the stall (which
        -- comes before the late tick's poll): that a burst catches up
        -- *quickly* is an upper bound, measured by bench/run
        -- interval_burst_gap instead (test_driver.c checks every policy on
        -- the deadlines the interval computes).
        local EPS = 1e-6   -- ms.now() is a float of nanoseconds

        it("with \"skip\", drops the ticks missed during a stall and reports how many", function()
            run(function()
                local ticks, skipped, stall_end = {}, {}, nil
                for tick, sk in ms.interval(0.05, "skip") do
                    ticks[#ticks + 1], skipped[#skipped + 1] = tick, sk
                    if #ticks == 1 then spin(0.35); stall_end = ms.now() end
                    if #ticks == 4 then break end
                end
                assert.are.equal(0, skipped[1])
                assert.is_true(skipped[2] >= 5, "skipped " .. skipped[2])
                -- Back on the grid after the stall: the next tick is a grid
                -- point after the late one, the one after that a period on.
                assert.is_true(ticks[3] > stall_end)
                assert.is_true(ticks[4] >= stall_end + 0.05 - EPS,
                    ("tick 4 came %.3f s after the stall"):format(ticks[4] - stall_end))
            end)
        end)

        it("with \"burst\" (the default), delivers every missed tick, skipping none", function()
            run(function()
                local ticks, stall_end = {}, nil
                for tick, sk in ms.interval(0.05) do
                    ticks[#ticks + 1] = tick
                    assert.are.equal(0, sk)
                    if #ticks == 1 then spin(0.35); stall_end = ms.now() end
                    if #ticks == 6 then break end
                end
                -- Ticks 2..6 were all due before the stall ended (0.05 to
                -- 0.25 s after tick 1): none was dropped, each came after it.
                assert.are.equal(6, #ticks)
                for i = 2, 6 do assert.is_true(ticks[i] >= stall_end) end
            end)
        end)

        it("with \"delay\", restarts the period after a late tick", function()
            run(function()
                local ticks, stall_end = {}, nil
                for tick, sk in ms.interval(0.05, "delay") do
                    ticks[#ticks + 1] = tick
                    assert.are.equal(0, sk)
                    if #ticks == 1 then spin(0.35); stall_end = ms.now() end
                    if #ticks == 4 then break end
                end
                -- Tick 2 is late and fires at once; the period starts again
                -- from it: tick 3 at least one period, tick 4 two periods
                -- after the stall (a burst or skip would be on the old grid).
                assert.is_true(ticks[2] >= stall_end)
                for i = 3, 4 do
                    assert.is_true(ticks[i] >= stall_end + (i - 2) * 0.05 - EPS,
                        ("tick %d came %.3f s after the stall"):format(i, ticks[i] - stall_end))
                end
            end)
        end)

        it("waited on by a second task at the same time is refused with a clear error", function()
            run(function()
                local iter = ms.interval(0.01)
                local first = ms.spawn(function() iter(); iter() end)
                ms.yield() -- the first task is now waiting on the interval
                local second = ms.spawn(function() return iter() end)
                local ok, err = second:join(3)
                assert.is_nil(ok)
                assert_contains(tostring(err.message), "another task is already waiting")
                assert.is_true((first:join(3)))
            end)
        end)

        it("refuses a period under a millisecond and an unknown policy", function()
            run(function()
                assert_contains(error_of(function()
                    local r = ms.interval(0.0001)
                    return r
                end), "an interval is at least 0.001 seconds")
                assert_contains(error_of(function()
                    local r = ms.interval(1, "sometimes")
                    return r
                end), "invalid option 'sometimes'")
            end)
        end)

        it("cannot be created without a runtime", function()
            assert_contains(error_of(ms.interval, 1), "no runtime")
        end)
    end)

    describe("ms.blocking", function()
        it("runs the function with its arguments and returns true and its results", function()
            run(function()
                local ok, prod, tag = ms.blocking(function(a, b) return a * b, "ok" end, 6, 7)
                assert.is_true(ok)
                assert.are.equal(42, prod)
                assert.are.equal("ok", tag)
            end)
        end)

        it("returns nil and an error value when the function raises", function()
            run(function()
                local ok, err = ms.blocking(function() error("disk on fire") end)
                assert.is_nil(ok)
                assert.are.equal("table", type(err))
                assert_contains(err.message, "disk on fire")
                assert_contains(tostring(err), "disk on fire")
            end)
        end)

        it("reports an error with a traceback, like a task's", function()
            run(function()
                local ok, err = ms.blocking(function()
                    local function read_block() error("bad sector") end
                    read_block()
                end)
                assert.is_nil(ok)
                assert_contains(err.message, "bad sector")
                assert_contains(err.traceback, "stack traceback")
                assert_contains(err.traceback, "read_block")
            end)
        end)

        it("keeps the message of a table error that has one, like a task's", function()
            run(function()
                local _, err = ms.blocking(function() error({ message = "as a table" }) end)
                assert.are.equal("as a table", err.message)
            end)
        end)

        it("refuses a function that yields", function()
            run(function()
                local ok, err = ms.blocking(function() coroutine.yield() end)
                assert.is_nil(ok)
                assert_contains(err.message, "yielded")
                local ok2, err2 = ms.blocking(function() ms.sleep(0.01) end)
                assert.is_nil(ok2)
                assert_contains(err2.message, BLOCKING_ONLY_IN_TASKS)
            end)
        end)

        it("holds the agent's other tasks while the function runs", function()
            run(function()
                local ticks, stop = 0, false
                local ticker = ms.spawn(function()
                    while not stop do
                        ticks = ticks + 1
                        ms.sleep(0.005)
                    end
                end)
                ms.sleep(0.03)
                local ok, before, after = ms.blocking(function()
                    local b = ticks
                    local start = ms.now()
                    while ms.now() - start < 0.2 do end
                    return b, ticks
                end)
                stop = true
                ticker:join()
                assert.is_true(ok)
                assert.are.equal(before, after)
            end)
        end)

        it("lets other agents run meanwhile", function()
            run(function()
                -- The blocking function waits (on the blocking thread, the
                -- agent not being polled meanwhile) until another agent has
                -- sent it five values: they can only come from an agent that
                -- runs while this one is blocked.  Up to 20 s, a hang guard.
                local stamps = ms.channel()
                local other = ms.agent.spawn {
                    args = { out = stamps },
                    fn = function(args)
                        for i = 1, 100000 do
                            if not args.out:send(i) then return end
                            ms.sleep(0.001)
                        end
                    end,
                }
                local ok, got = ms.blocking(function(c)
                    local n, give_up = 0, ms.now() + 20
                    while n < 5 and ms.now() < give_up do
                        if c:try_recv() then n = n + 1 end
                    end
                    return n
                end, stamps)
                other:stop()
                assert.is_true(ok)
                assert.are.equal(5, got)
            end)
        end)

        it("runs functions given from several tasks one after another", function()
            run(function()
                local tasks = {}
                for i = 1, 4 do
                    tasks[i] = ms.spawn(function(n)
                        return ms.blocking(function(x) return x + 100 end, n)
                    end, i)
                end
                for i = 1, 4 do
                    assert.are.same({ true, true, i + 100 }, { tasks[i]:join() })
                end
            end)
        end)
    end)

    describe("errors raised in tasks", function()
        it("come back through join as nil and an error value with message and traceback", function()
            run(function()
                local function deep() error("boom in a task") end
                local t = ms.spawn(function() deep() end)
                local ok, err = t:join()
                assert.is_nil(ok)
                assert.are.equal("table", type(err))
                assert_contains(err.message, "boom in a task")
                assert_contains(err.traceback, "stack traceback")
                assert_contains(err.traceback, "deep")
                assert.are.equal("Task", err.kind)
                assert.are.equal("TaskFailed", err.code)
                assert.are.equal("string", type(err.severity))
                assert.are.equal("table", type(err.recovery))
                assert.are.equal("string", type(err.recovery.strategy))
                assert_contains(tostring(err), "boom in a task")
            end)
        end)

        it("keep the message of a table error that has one", function()
            run(function()
                local _, err = ms.spawn(function() error({ message = "as a table" }) end):join()
                assert.are.equal("as a table", err.message)
            end)
        end)

        it("turn a non-string error value into text", function()
            run(function()
                local _, err = ms.spawn(function() error(42) end):join()
                assert_contains(err.message, "42")
            end)
        end)

        it("do not disturb the agent's other tasks", function()
            run(function()
                local bad = ms.spawn(function() error("bad") end)
                local good = ms.spawn(function() ms.sleep(0.02) return "fine" end)
                assert.is_nil((bad:join()))
                assert.are.same({ true, "fine" }, { good:join() })
            end)
        end)

        it("raised by ms.run's function make ms.run return nil and the error value", function()
            local ok, err = ms.run(function() error("main failed") end, { worker_threads = "2" })
            assert.is_nil(ok)
            assert.are.equal("table", type(err))
            assert_contains(err.message, "main failed")
            assert_contains(err.traceback, "stack traceback")
        end)
    end)

    describe("where a task cannot yield (inside a C function such as table.sort)", function()
        -- A comparator runs inside table.sort, a C function: a blocking
        -- ms.* call there cannot yield back to the agent's scheduler.

        it("blocking calls still work inside pcall (LuaJIT yields across pcall)", function()
            run(function()
                local ok, err = pcall(function()
                    ms.sleep(0.01)
                    error("after the sleep")
                end)
                assert.is_false(ok)
                assert_contains(err, "after the sleep")
                assert.is_true((pcall(ms.sleep, 0.01)))
            end)
        end)

        it("a blocking call raises a clear error naming the function", function()
            run(function()
                local ok, err = pcall(table.sort, { 3, 2, 1 }, function(x, y)
                    ms.sleep(0.01)
                    return x < y
                end)
                assert.is_false(ok)
                assert_contains(err, "ms.sleep cannot wait here")
            end)
        end)

        it("the failed call leaves no operation behind: the next ms.yield returns at once", function()
            run(function()
                -- In a task of its own, so that the join below can give up:
                -- had the failed hour-long sleep stayed behind, the task's
                -- next ms.yield would wait on it.
                local t = ms.spawn(function()
                    local ok = pcall(table.sort, { 3, 2, 1 }, function(x, y)
                        ms.sleep(3600)
                        return x < y
                    end)
                    ms.yield()
                    return ok
                end)
                assert.are.same({ true, false }, { t:join(20) })
            end)
        end)

        it("a failed ms.recv does not make a later ms.yield swallow a message", function()
            run(function()
                local me = ms.self()
                -- The sender waits on a timer, so that its message comes
                -- from whichever worker is free: this agent busy-waits
                -- below, and a task its own worker would run next waits
                -- for it to yield.
                ms.agent.spawn { args = me, fn = function(to) ms.sleep(0.05) to:send("hello") end }
                ms.sleep(0.01)
                pcall(table.sort, { 3, 2, 1 }, function(x, y)
                    ms.recv(5)
                    return x < y
                end)
                -- Wait for the message without yielding.
                local deadline = ms.now() + 20
                while me:info().mailbox == 0 and ms.now() < deadline do end
                assert.are.equal(1, me:info().mailbox)
                assert.are.equal(0, select("#", ms.yield()))
                assert.are.equal("hello", (ms.recv(1)))
            end)
        end)
    end)

    describe("outside an agent's task", function()
        it("blocking functions raise the documented error when no runtime runs", function()
            local sem, chan = ms.semaphore(1), ms.channel(1)
            local calls = {
                ["ms.sleep"] = function() return ms.sleep(0.01) end,
                ["ms.yield"] = function() return ms.yield() end,
                ["ms.recv"] = function() return ms.recv(0.01) end,
                ["ms.timeout"] = function() return ms.timeout(1, function() end) end,
                ["ms.blocking"] = function() return ms.blocking(function() end) end,
                ["semaphore:acquire"] = function() return sem:acquire() end,
                ["channel:send"] = function() return chan:send(1) end,
                ["channel:recv"] = function() return chan:recv(0.01) end,
            }
            for name, call in pairs(calls) do
                local msg = error_of(call)
                assert_contains(msg, name)
                assert_contains(msg, BLOCKING_ONLY_IN_TASKS)
            end
        end)

        it("blocking functions raise the documented error in a plain coroutine inside ms.run", function()
            run(function()
                local sem, chan = ms.semaphore(1), ms.channel(1)
                local t = ms.spawn(function() ms.sleep(0.01) end)
                local peer = ms.agent.spawn { fn = function() ms.recv(5) end }
                local iter = ms.interval(0.01)
                local calls = {
                    ["ms.sleep"] = function() return ms.sleep(0.01) end,
                    ["ms.yield"] = function() return ms.yield() end,
                    ["ms.recv"] = function() return ms.recv(0.01) end,
                    ["ms.timeout"] = function() return ms.timeout(1, function() end) end,
                    ["ms.blocking"] = function() return ms.blocking(function() end) end,
                    ["ms.interval"] = function() return iter() end,
                    ["task:join"] = function() return t:join() end,
                    ["agent:call"] = function() return peer:call("x", 1) end,
                    ["semaphore:acquire"] = function() return sem:acquire() end,
                    ["channel:send"] = function() return chan:send(1) end,
                    ["channel:recv"] = function() return chan:recv(0.01) end,
                }
                for name, call in pairs(calls) do
                    local co = coroutine.create(call)
                    local ok, msg = coroutine.resume(co)
                    assert.is_false(ok, name .. " should fail in a plain coroutine")
                    assert_contains(msg, name)
                    assert_contains(msg, BLOCKING_ONLY_IN_TASKS)
                end
                t:join()
                peer:stop()
            end)
        end)

        it("ms.spawn without ms.run says that no agent runs", function()
            assert_contains(error_of(ms.spawn, function() end), "no agent runs in this Lua state")
        end)

        it("argument errors of ms.spawn and ms.blocking name the argument", function()
            run(function()
                assert_contains(error_of(function()
                    local r = ms.spawn(42)
                    return r
                end), "bad argument #1 to 'spawn' (function expected, got number)")
                assert_contains(error_of(function()
                    local r = ms.blocking("f")
                    return r
                end), "bad argument #1 to 'blocking' (function expected, got string)")
            end)
        end)
    end)

    describe("ms.run", function()
        it("returns true when the function ends", function()
            assert.is_true(ms.run(function() end, { worker_threads = "2" }))
        end)

        it("can run again after a previous run ended", function()
            for i = 1, 3 do
                local got
                assert.is_true(ms.run(function() got = i end, { worker_threads = "1" }))
                assert.are.equal(i, got)
            end
        end)

        it("does not nest", function()
            run(function()
                assert_contains(error_of(ms.run, function() end), "does not nest")
            end)
        end)

        it("refuses an unknown configuration field", function()
            assert_contains(error_of(ms.run, function() end, { no_such_field = "1" }), "ms.run")
        end)

        it("refuses a value out of range", function()
            assert_contains(error_of(ms.run, function() end, { worker_threads = "0" }), "worker_threads")
        end)

        it("requires a function", function()
            assert_contains(error_of(ms.run, 42), "bad argument #1")
        end)
    end)
end)
