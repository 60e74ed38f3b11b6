-- Specs for ms.metrics(): the runtime's counters as a Lua table, one
-- table per worker, and the list of agents.
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/ms_metrics_spec.lua

local ms = require "ms"

local function run(fn, config)
    local ok, err = ms.run(fn, config or { worker_threads = "2" })
    if not ok then
        error(tostring(type(err) == "table" and err.message or err) .. "\n"
            .. tostring(type(err) == "table" and err.traceback or ""), 0)
    end
end

local function error_of(fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error")
    return tostring(err)
end

-- Every runtime-wide field and its type (all numbers are counts, depths,
-- or seconds for uptime and busy).
local RUNTIME_FIELDS = {
    "uptime", "workers", "blocking_threads", "idle_blocking_threads", "max_blocking_threads",
    "spawned_tasks", "remote_spawned_tasks", "alive_tasks", "failed_tasks", "cancelled_tasks",
    "injection_queue_depth", "blocking_queue_depth", "blocking_jobs_total",
    "timers_active", "timers_fired", "park_count", "noop_count", "steal_count",
    "steal_operations", "poll_count", "busy", "forced_yields", "overflow_count",
    "local_schedule_count", "local_queue_depth",
}

local WORKER_NUMBER_FIELDS = {
    "index", "park_count", "noop_count", "steal_count", "steal_operations", "poll_count",
    "busy", "forced_yields", "overflow_count", "local_schedule_count", "spawned_tasks",
    "local_queue_depth", "local_queue_capacity",
}

local AGENT_FIELDS = {
    id = "number", name = "string", state = "string", mailbox = "number",
    received = "number", memory = "number", memory_limit = "number", polls = "number",
}

local function is_count(v)
    return type(v) == "number" and v >= 0 and v == math.floor(v)
end

describe("ms.metrics", function()
    it("has every documented runtime field as a non-negative number", function()
        run(function()
            local m = ms.metrics()
            for _, k in ipairs(RUNTIME_FIELDS) do
                assert.are.equal("number", type(m[k]), k)
                assert.is_true(m[k] >= 0, k .. " is negative")
            end
        end)
    end)

    it("gives counts as whole numbers and uptime and busy as seconds", function()
        run(function()
            ms.sleep(0.01)
            local m = ms.metrics()
            for _, k in ipairs(RUNTIME_FIELDS) do
                if k ~= "uptime" and k ~= "busy" then
                    assert.is_true(is_count(m[k]), k .. " = " .. tostring(m[k]))
                end
            end
            assert.is_true(m.uptime > 0 and m.uptime < 3600)
            assert.is_true(m.busy >= 0 and m.busy < 3600)
        end)
    end)

    it("has one per_worker table per worker, indexed from 1", function()
        for _, n in ipairs({ 1, 2, 3 }) do
            run(function()
                local m = ms.metrics()
                assert.are.equal(n, m.workers)
                assert.are.equal("table", type(m.per_worker))
                assert.are.equal(m.workers, #m.per_worker)
                for i, w in ipairs(m.per_worker) do
                    assert.are.equal(i, w.index)
                end
            end, { worker_threads = tostring(n) })
        end
    end)

    it("gives every per_worker field with its type", function()
        run(function()
            ms.sleep(0.01)
            for _, w in ipairs(ms.metrics().per_worker) do
                for _, k in ipairs(WORKER_NUMBER_FIELDS) do
                    assert.are.equal("number", type(w[k]), "per_worker." .. k)
                    assert.is_true(w[k] >= 0, "per_worker." .. k .. " is negative")
                end
                assert.are.equal("boolean", type(w.parked))
                assert.is_true(w.local_queue_capacity > 0)
                assert.is_true(w.local_queue_depth <= w.local_queue_capacity)
            end
        end)
    end)

    it("reflects the configuration", function()
        run(function()
            local m = ms.metrics()
            assert.are.equal(3, m.workers)
            assert.are.equal(7, m.max_blocking_threads)
            assert.is_true(m.blocking_threads <= m.max_blocking_threads)
        end, { worker_threads = "3", max_blocking_threads = "7" })
    end)

    it("lists the agents, the main agent included, each with its info", function()
        run(function()
            local m = ms.metrics()
            assert.are.equal("table", type(m.agents))
            local main
            for _, info in ipairs(m.agents) do
                for k, t in pairs(AGENT_FIELDS) do
                    assert.are.equal(t, type(info[k]), "agents[]." .. k)
                end
                if info.name == "main" then main = info end
            end
            assert.is_truthy(main, "the main agent is missing from ms.metrics().agents")
            assert.are.equal(ms.self():id(), main.id)
            assert.are.equal("running", main.state)
        end)
    end)

    it("lists spawned agents with their mailbox depth and memory", function()
        run(function()
            local a = ms.agent.spawn {
                name = "metered", memory_limit = 8e6,
                fn = function() ms.sleep(30) end,
            }
            ms.sleep(0.02)
            a:send(1)
            a:send(2)
            local found
            for _, info in ipairs(ms.metrics().agents) do
                if info.name == "metered" then found = info end
            end
            assert.is_truthy(found)
            assert.are.equal(a:id(), found.id)
            assert.are.equal(2, found.mailbox)
            assert.is_true(found.memory > 0)
            assert.are.equal(8e6, found.memory_limit)
            a:stop()
        end)
    end)

    it("per agent: carries the restart count the design lists", function()
        run(function()
            local main
            for _, info in ipairs(ms.metrics().agents) do
                if info.name == "main" then main = info end
            end
            assert.are.equal("number", type(main.restarts), "agents[].restarts")
        end)
    end)

    it("has uptime growing with time", function()
        run(function()
            local a = ms.metrics().uptime
            ms.sleep(0.05)
            local b = ms.metrics().uptime
            assert.is_true(b - a >= 0.05)
        end)
    end)

    describe("counters grow after work", function()
        it("spawned_tasks, poll_count and busy after agents ran", function()
            run(function()
                local before = ms.metrics()
                local me = ms.self()
                for i = 1, 20 do
                    ms.agent.spawn {
                        args = { to = me, i = i },
                        fn = function(args)
                            local s = 0
                            for k = 1, 1e5 do s = s + k end
                            args.to:send(s)
                        end,
                    }
                end
                for _ = 1, 20 do assert(ms.recv(10)) end
                ms.sleep(0.02)
                local after = ms.metrics()
                assert.is_true(after.spawned_tasks >= before.spawned_tasks + 20,
                    ("spawned_tasks %d -> %d"):format(before.spawned_tasks, after.spawned_tasks))
                assert.is_true(after.poll_count >= before.poll_count + 20,
                    ("poll_count %d -> %d"):format(before.poll_count, after.poll_count))
                assert.is_true(after.busy > before.busy)
                local sum = 0
                for _, w in ipairs(after.per_worker) do sum = sum + w.poll_count end
                assert.are.equal(after.poll_count, sum)
            end)
        end)

        it("alive_tasks counts live agents and drops when they end", function()
            run(function()
                -- The main agent is a task too.
                local base = ms.metrics().alive_tasks
                local agents = {}
                for i = 1, 5 do
                    agents[i] = ms.agent.spawn { fn = function() ms.recv(30) end }
                end
                ms.sleep(0.02)
                assert.is_true(ms.metrics().alive_tasks >= 5)
                for _, a in ipairs(agents) do
                    ms.monitor(a)
                    a:stop()
                end
                for _ = 1, 5 do assert(ms.recv(10)) end
                local deadline = ms.now() + 5
                while ms.metrics().alive_tasks > base and ms.now() < deadline do ms.sleep(0.01) end
                assert.are.equal(base, ms.metrics().alive_tasks)
            end)
        end)

        it("timers_fired after sleeps", function()
            run(function()
                local before = ms.metrics().timers_fired
                for _ = 1, 3 do ms.sleep(0.005) end
                assert.is_true(ms.metrics().timers_fired >= before + 3)
            end)
        end)

        it("blocking_jobs_total and blocking_threads after ms.blocking", function()
            run(function()
                local before = ms.metrics().blocking_jobs_total
                assert.is_true((ms.blocking(function() return 1 end)))
                assert.is_true((ms.blocking(function() return 2 end)))
                local m = ms.metrics()
                assert.is_true(m.blocking_jobs_total >= before + 2)
                assert.is_true(m.blocking_threads >= 1)
                assert.is_true(m.idle_blocking_threads <= m.blocking_threads)
            end)
        end)

        it("failed_tasks after an agent fails", function()
            run(function()
                local before = ms.metrics().failed_tasks
                local a = ms.agent.spawn { fn = function() error("counted") end }
                ms.monitor(a)
                assert(ms.recv(10))
                local deadline = ms.now() + 5
                while ms.metrics().failed_tasks == before and ms.now() < deadline do ms.sleep(0.01) end
                assert.is_true(ms.metrics().failed_tasks >= before + 1)
            end)
        end)
    end)

    it("raises a clear error outside ms.run", function()
        local msg = error_of(ms.metrics)
        assert.is_truthy(msg:find("no runtime", 1, true), msg)
    end)
end)
