-- Specs for the per-worker histograms of poll duration and scheduling
-- delay (metrics_histograms): their shape in ms.metrics(), that they are
-- off by default, and /metrics exposing them as valid Prometheus
-- histograms (parsed: buckets cumulative and non-decreasing with growing
-- bounds, +Inf last and equal to _count, a _sum), and /metrics.json
-- carrying them.  Nothing here depends on how long a poll takes.
--
-- Run from the repository root:
--   LUA_CPATH="build/agents/?.so;;" MS_HOST=build/ms-host/ms-host \
--     busted --lua=luajit spec/metrics_histogram_spec.lua

local ms = require "ms"
local json = require "spec.support.json"

local h = require "spec.support.helpers"
local HOST, run, shell_quote, slurp, write, contains =
    h.host, h.run, h.shell_quote, h.slurp, h.write_file, h.contains

local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

-- Work for the workers: agents that yield and sleep, so tasks are polled,
-- woken by timers and rescheduled.
local function make_work()
    local agents = {}
    for i = 1, 4 do
        agents[i] = ms.agent.spawn{ name = "busy" .. i, fn = function()
            for _ = 1, 20 do
                ms.yield()
                ms.sleep(0.001)
            end
        end }
    end
    for _, a in ipairs(agents) do
        ms.monitor(a)
    end
    for _ = 1, #agents do
        ms.recv(10)
    end
end

local function check_histogram(h, what)
    assert.are.equal("table", type(h), what)
    assert.are.equal(25, #h.buckets, what)
    local prev, total = 0, 0
    for i, b in ipairs(h.buckets) do
        assert.is_true(b.le > prev, what .. ": bounds grow")
        prev = b.le
        assert.is_true(b.count >= 0 and b.count == math.floor(b.count), what)
        total = total + b.count
        if i < #h.buckets then
            assert.are.equal(2 ^ (i - 1) * 1e-6, b.le, what .. ": bound " .. i)
        end
    end
    assert.are.equal(math.huge, h.buckets[#h.buckets].le, what .. ": last bound")
    assert.are.equal(total, h.count, what .. ": count is the buckets' sum")
    assert.is_true(h.sum >= 0, what)
    return h.count
end

describe("ms.metrics() histograms", function()
    it("are off by default: no histogram fields, histograms = false", function()
        run(function()
            make_work()
            local m = ms.metrics()
            assert.is_false(m.histograms)
            for _, w in ipairs(m.per_worker) do
                assert.is_nil(w.poll_duration)
                assert.is_nil(w.schedule_delay)
            end
        end)
    end)

    it("give every worker a poll_duration and a schedule_delay with bounds, sum, count",
        function()
        run(function()
            make_work()
            local m = ms.metrics()
            assert.is_true(m.histograms)
            local polls = 0
            for i, w in ipairs(m.per_worker) do
                polls = polls + check_histogram(w.poll_duration, "worker " .. i .. " poll_duration")
                check_histogram(w.schedule_delay, "worker " .. i .. " schedule_delay")
            end
            -- The four agents were polled on the workers.
            assert.is_true(polls >= 4)
        end, { worker_threads = "2", metrics_histograms = "true" })
    end)

    it("ms.metrics_history() is empty without a metrics collector", function()
        run(function()
            local latest, previous = ms.metrics_history()
            assert.is_nil(latest)
            assert.is_nil(previous)
        end)
    end)
end)

local SCRIPT = [[
for i = 1, 4 do
    ms.agent.spawn{ name = "w" .. i, fn = function()
        while true do ms.yield() ms.sleep(0.005) end
    end }
end
ms.sleep(0.2)
print("ready")
io.stdout:flush()
local stop = arg[1]
for _ = 1, 1200 do
    local f = io.open(stop)
    if f then f:close() return end
    ms.sleep(0.05)
end
]]

describe("ms-host /metrics with metrics_histograms", function()
    local dir, port, bg

    setup(function()
        bg = h.background_host(SCRIPT,
            "--workers 2 --set metrics_histograms=true --metrics-listen 127.0.0.1:0")
        dir, port = bg.dir, bg.port
        assert(port, "no 'metrics on' line: " .. bg.err())
    end)

    teardown(function()
        if bg then bg.stop() end
    end)

    -- The body of GET path, over a plain TCP connection (bash's /dev/tcp).
    local function get(path)
        local resp = dir .. "/.response"
        os.remove(resp)
        sh(("timeout 20 bash -c %s >%s 2>/dev/null </dev/null"):format(shell_quote(
            ("exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.1\\r\\n\\r\\n' >&3 "
                .. "&& cat <&3"):format(port, path)), shell_quote(resp)))
        local text = slurp(resp)
        local status = tonumber(text:match("^HTTP/1%.1 (%d+)"))
        return status, text:match("\r\n\r\n(.*)$")
    end

    it("exposes both families as valid Prometheus histograms for every worker", function()
        local status, body = get("/metrics")
        assert.are.equal(200, status)
        local families = { ms_worker_poll_duration_seconds = {},
                           ms_worker_schedule_delay_seconds = {} }
        local types = {}
        for line in body:gmatch("([^\n]*)\n") do
            local name, kind = line:match("^# TYPE (%S+) (%a+)$")
            if name then types[name] = kind end
            local fam, suffix, labels, value = line:match(
                "^(ms_worker_[%a_]+_seconds)_(%a+)(%b{}) (%S+)$")
            if fam and families[fam] then
                local worker = labels:match('worker="(%d+)"')
                assert(worker, line)
                local w = families[fam][worker] or { buckets = {} }
                families[fam][worker] = w
                assert(tonumber(value), "not a number: " .. line)
                if suffix == "bucket" then
                    local le = labels:match('le="([^"]+)"')
                    assert(le, "a bucket without le: " .. line)
                    assert(not w.count, "a bucket after _count: " .. line)
                    w.buckets[#w.buckets + 1] = { le = le, n = tonumber(value) }
                elseif suffix == "sum" then
                    w.sum = tonumber(value)
                elseif suffix == "count" then
                    w.count = tonumber(value)
                else
                    error("unexpected series " .. line)
                end
            end
        end
        for fam, workers in pairs(families) do
            assert.are.equal("histogram", types[fam], fam)
            for _, worker in ipairs({ "0", "1" }) do
                local w = workers[worker]
                assert(w, fam .. " has no series for worker " .. worker)
                assert.are.equal(25, #w.buckets, fam)
                local prev_le, prev_n = -1, 0
                for i, b in ipairs(w.buckets) do
                    local le = b.le == "+Inf" and math.huge or tonumber(b.le)
                    assert(le, "bad le " .. b.le)
                    assert.is_true(le > prev_le, fam .. ": le grows")
                    assert.is_true(b.n >= prev_n, fam .. ": buckets are cumulative")
                    assert.are.equal(i == #w.buckets, b.le == "+Inf")
                    prev_le, prev_n = le, b.n
                end
                assert.are.equal("0.000001", w.buckets[1].le)
                assert.are.equal(w.count, w.buckets[#w.buckets].n, fam .. ": +Inf = _count")
                assert.is_true(w.sum >= 0)
            end
        end
        -- The agents keep both workers polling.
        local polls = 0
        for _, w in pairs(families.ms_worker_poll_duration_seconds) do polls = polls + w.count end
        assert.is_true(polls > 0)
    end)

    it("puts both histograms in /metrics.json", function()
        local status, body = get("/metrics.json")
        assert.are.equal(200, status)
        local doc = json.decode(body)
        assert.is_true(doc.histograms)
        assert.are.equal(2, doc.per_worker.n)
        for i = 1, doc.per_worker.n do
            for _, k in ipairs({ "poll_duration", "schedule_delay" }) do
                local h = doc.per_worker[i][k]
                assert.are.equal(24, h.le_ns.n)
                assert.are.equal(25, h.buckets.n)
                local total = 0
                for b = 1, h.buckets.n do total = total + h.buckets[b] end
                assert.are.equal(h.count, total)
            end
        end
    end)
end)
