-- Specs for ms.retry (attempts, backoff, what counts as a failure) and
-- ms.circuit_breaker (closed -> open -> half_open -> closed|open).
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/retry_spec.lua
--
-- No check depends on how fast the machine is: what ms.retry sleeps is
-- observed by wrapping ms.sleep (it looks ms.sleep up at each call), and
-- the only check on elapsed time is a lower bound (a sleep is never short).

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
package.path = spec_dir .. "/../lua/?.lua;lua/?.lua;" .. package.path

local ms = require "ms"
local backoff = require "ms.backoff"

local function run(fn)
    local ok, err = ms.run(fn, { worker_threads = "2" })
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

local function assert_contains(haystack, needle)
    assert(type(haystack) == "string" and haystack:find(needle, 1, true),
        ("expected %q\n  to contain %q"):format(tostring(haystack), needle))
end

-- A function that fails `failures` times (raising, or returning nil, err
-- when `soft`), then returns "ok", n; counts its calls in calls.n.
-- Runs fn with ms.sleep recording what it is asked to sleep; returns the
-- list of durations and fn's results.
local function recording_sleeps(fn)
    local slept, real = {}, ms.sleep
    ms.sleep = function(d, ...)
        slept[#slept + 1] = d
        return real(d, ...)
    end
    local res = { pcall(fn) }
    ms.sleep = real
    assert(res[1], tostring(res[2]))
    return slept, unpack(res, 2)
end

local function near(a, b)
    return math.abs(a - b) < 1e-9
end

local function flaky(failures, soft)
    local calls = { n = 0 }
    return function(...)
        calls.n = calls.n + 1
        if calls.n <= failures then
            if soft then
                return nil, "soft failure " .. calls.n
            end
            error("failure " .. calls.n, 0)
        end
        return "ok", calls.n, ...
    end, calls
end

describe("ms.retry", function()
    it("returns the function's results at once when it succeeds", function()
        run(function()
            local fn, calls = flaky(0)
            local slept, a, n, extra = recording_sleeps(function()
                return ms.retry{ delay = 1 }(fn, "arg")
            end)
            assert.are.same({ "ok", 1, "arg" }, { a, n, extra })
            assert.are.equal(1, calls.n)
            assert.are.same({}, slept)   -- not a single sleep
        end)
    end)

    it("retries errors and nil, err returns until one succeeds", function()
        run(function()
            local fn, calls = flaky(2)
            assert.are.same({ "ok", 3 }, { ms.retry{ max_attempts = 3, delay = 0.01 }(fn) })
            assert.are.equal(3, calls.n)
            local soft, soft_calls = flaky(1, true)
            assert.are.same({ "ok", 2 }, { ms.retry{ delay = 0.01 }(soft) })
            assert.are.equal(2, soft_calls.n)
        end)
    end)

    it("returns nil and the last error after max_attempts", function()
        run(function()
            local fn, calls = flaky(10)
            local r, err = ms.retry{ max_attempts = 4, delay = 0.01 }(fn)
            assert.is_nil(r)
            assert.are.equal("failure 4", err)
            assert.are.equal(4, calls.n)
            local soft = flaky(10, true)
            assert.are.same({ nil, "soft failure 2" }, { ms.retry{ max_attempts = 2, delay = 0 }(soft) })
        end)
    end)

    it("treats no values and a lone nil as success", function()
        run(function()
            local n = 0
            local r = { ms.retry{ delay = 0.01 }(function() n = n + 1 end) }
            assert.are.equal(0, #r)
            assert.are.equal(1, n)
            assert.are.equal(1, select("#", ms.retry{}(function() n = n + 1; return nil end)))
            assert.are.equal(2, n)
        end)
    end)

    it("sleeps delay * backoff^n between attempts", function()
        run(function()
            local fn = flaky(3)
            local t0 = ms.now()
            local slept, r = recording_sleeps(function()
                return ms.retry{ max_attempts = 4, delay = 0.05, backoff = 2 }(fn)
            end)
            local took = ms.now() - t0
            assert.are.equal("ok", r)
            assert.are.equal(3, #slept)
            assert.is_true(near(slept[1], 0.05) and near(slept[2], 0.1) and near(slept[3], 0.2),
                "slept " .. table.concat(slept, ", "))
            -- and really slept them: never less than asked (0.35 in all)
            assert.is_true(took >= 0.35 - 1e-6, "took " .. took)
        end)
    end)

    it("caps the delay at max_delay and reports each retry", function()
        run(function()
            local seen = {}
            local r = ms.retry{
                max_attempts = 4, delay = 0.02, backoff = 10, max_delay = 0.05,
                on_retry = function(attempt, err, delay) seen[#seen + 1] = { attempt, err, delay } end,
            }
            local slept, v = recording_sleeps(function() return r(flaky(10)) end)
            assert.is_nil(v)
            assert.are.same({ 0.02, 0.05, 0.05 }, slept)   -- what it reported, it slept
            assert.are.equal(3, #seen)
            assert.are.same({ 1, "failure 1", 0.02 }, seen[1])
            assert.are.same({ 2, "failure 2", 0.05 }, seen[2])
            assert.are.same({ 3, "failure 3", 0.05 }, seen[3])
        end)
    end)

    it("stops early when retry_if says the error is permanent", function()
        run(function()
            local fn, calls = flaky(10)
            local r, err = ms.retry{
                max_attempts = 5, delay = 0.01,
                retry_if = function(e) return e ~= "failure 2" end,
            }(fn)
            assert.is_nil(r)
            assert.are.equal("failure 2", err)
            assert.are.equal(2, calls.n)
        end)
    end)

    it("spreads delays by jitter within its bounds", function()
        -- 2 +- 25 %: every delay in [1.5, 2.5], and they do spread over
        -- both sides (with no jitter all would be 2; the chance that 400
        -- uniform draws miss either outer fifth is 2 * 0.8^400).
        local lo, hi = math.huge, -math.huge
        for n = 1, 400 do
            local d = backoff.delay(1, 2, nil, 0.25, 2)
            assert.is_true(d >= 1.5 and d <= 2.5, "delay " .. d .. " at " .. n)
            lo, hi = math.min(lo, d), math.max(hi, d)
        end
        assert.is_true(lo < 1.7 and hi > 2.3, ("jitter spread only %.3f..%.3f"):format(lo, hi))
        -- no jitter: exactly base * factor^(n - 1), uncapped without max
        assert.are.equal(8, backoff.delay(1, 2, nil, 0, 4))
        assert.are.equal(512, backoff.delay(1, 2, nil, 0, 10))
        -- with max: capped, exactly max without jitter
        assert.are.equal(5, backoff.delay(1, 2, 5, 0, 10))
        assert.are.equal(4, backoff.delay(1, 2, 5, 0, 3))
        lo, hi = math.huge, -math.huge
        for _ = 1, 400 do
            local capped = backoff.delay(1, 2, 5, 0.5, 10)   -- capped at 5, then spread down
            assert.is_true(capped >= 2.5 and capped <= 5, "capped delay " .. capped)
            lo, hi = math.min(lo, capped), math.max(hi, capped)
        end
        assert.is_true(lo < 3, "capped and jittered delays never went low: " .. lo)
        assert.are.equal(5, hi)   -- half the draws land above max and are cut to it
    end)

    it("jitters the delays it sleeps", function()
        run(function()
            local slept = recording_sleeps(function()
                return ms.retry{ max_attempts = 40, delay = 0.001, backoff = 1, jitter = 0.5 }(flaky(100))
            end)
            assert.are.equal(39, #slept)
            local lo, hi = math.huge, -math.huge
            for _, d in ipairs(slept) do
                assert.is_true(d >= 0.0005 and d <= 0.0015, "delay " .. d)
                lo, hi = math.min(lo, d), math.max(hi, d)
            end
            assert.is_true(hi - lo > 0.0002, "no spread: " .. lo .. ".." .. hi)
        end)
    end)

    it("works inside an agent", function()
        run(function()
            local out = ms.channel()
            ms.agent.spawn{
                args = { out = out },
                fn = function(args)
                    local n = 0
                    local r = ms.retry{ max_attempts = 3, delay = 0.01 }(function()
                        n = n + 1
                        if n < 3 then error("not yet") end
                        return n
                    end)
                    args.out:send(r)
                end,
            }
            assert.are.equal(3, out:recv(5))
        end)
    end)

    it("rejects bad options, naming the field", function()
        assert_contains(error_of(ms.retry, { max_attempts = 0 }), "max_attempts = 0 is out of range")
        assert_contains(error_of(ms.retry, { delay = -1 }), "delay = -1")
        assert_contains(error_of(ms.retry, { jitter = 2 }), "jitter = 2")
        assert_contains(error_of(ms.retry, { dealy = 1 }), "unknown field 'dealy'")
        assert_contains(error_of(ms.retry, 3), "expects a table")
        assert_contains(error_of(ms.retry{}, "nope"), "expects a function")
    end)
end)

describe("ms.circuit_breaker", function()
    it("stays closed while calls succeed and passes results through", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 2 }
            assert.are.equal("closed", cb:state())
            assert.are.same({ 1, 2 }, { cb:call(function(a, b) return a, b end, 1, 2) })
            assert.are.equal("closed", cb:state())
        end)
    end)

    it("opens after failure_threshold consecutive failures and then refuses at once", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 3, reset_timeout = 3600 }
            local fail = function() error("down", 0) end
            assert.are.same({ nil, "down" }, { cb:call(fail) })
            assert.are.same({ nil, "soft" }, { cb:call(function() return nil, "soft" end) })
            assert.are.equal("closed", cb:state())
            cb:call(fail)
            assert.are.equal("open", cb:state())
            local called = false
            assert.are.same({ nil, "circuit open" }, { cb:call(function() called = true end) })
            assert.is_false(called)
            local s = cb:stats()
            assert.are.equal(1, s.rejected)
            assert.are.equal(1, s.opened)
            local wait = cb:retry_in()   -- about the reset_timeout, counting down
            assert.is_true(wait <= 3600 and wait > 3000, "retry_in " .. wait)
        end)
    end)

    it("counts consecutive failures only: a success in between resets", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 2 }
            cb:call(error)
            cb:call(function() return true end)
            cb:call(error)
            assert.are.equal("closed", cb:state())
            cb:call(error)
            assert.are.equal("open", cb:state())
        end)
    end)

    it("goes half_open after reset_timeout; a successful trial closes it", function()
        run(function()
            local changes = {}
            local cb = ms.circuit_breaker{
                failure_threshold = 1, reset_timeout = 0.1,
                on_change = function(from, to) changes[#changes + 1] = from .. ">" .. to end,
            }
            cb:call(error)
            assert.are.equal("open", cb:state())
            ms.sleep(0.15)
            assert.are.equal("half_open", cb:state())
            assert.are.equal("fine", (cb:call(function() return "fine" end)))
            assert.are.equal("closed", cb:state())
            assert.are.same({ "closed>open", "open>half_open", "half_open>closed" }, changes)
        end)
    end)

    it("opens again when the half_open trial fails", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 1, reset_timeout = 0.1 }
            cb:call(error)
            ms.sleep(0.15)
            assert.are.equal("half_open", cb:state())
            cb:call(error)
            assert.are.equal("open", cb:state())
            assert.are.same({ nil, "circuit open" }, { cb:call(function() return 1 end) })
            assert.are.equal(2, cb:stats().opened)
        end)
    end)

    it("lets at most half_open_max trials through at a time", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 1, reset_timeout = 0.05, half_open_max = 1 }
            cb:call(error)
            ms.sleep(0.1)
            -- The trial stays in progress until the gate opens (not for a
            -- while that a loaded machine could outlast).
            local gate, in_trial = ms.channel(), false
            local slow = ms.spawn(function()
                return cb:call(function()
                    in_trial = true
                    gate:recv(10)
                    return "trial"
                end)
            end)
            while not in_trial do ms.yield() end
            assert.are.same({ nil, "circuit open" }, { cb:call(function() return "second" end) })
            gate:send(true)
            assert.are.same({ true, "trial" }, { slow:join(5) })
            assert.are.equal("closed", cb:state())
            assert.are.equal("again", (cb:call(function() return "again" end)))
        end)
    end)

    it("reset() closes it and clears the count", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 2, reset_timeout = 60 }
            cb:call(error)
            cb:call(error)
            assert.are.equal("open", cb:state())
            cb:reset()
            assert.are.equal("closed", cb:state())
            cb:call(error)
            assert.are.equal("closed", cb:state())
            assert.are.equal(1, cb:stats().failures)
        end)
    end)

    it("combines with ms.retry: retries stop hammering once it opens", function()
        run(function()
            local cb = ms.circuit_breaker{ failure_threshold = 2, reset_timeout = 60 }
            local calls = 0
            local r, err = ms.retry{ max_attempts = 5, delay = 0.01 }(function()
                return cb:call(function() calls = calls + 1; error("backend down", 0) end)
            end)
            assert.is_nil(r)
            assert.are.equal("circuit open", err)
            assert.are.equal(2, calls)
        end)
    end)

    it("rejects bad options, naming the field", function()
        assert_contains(error_of(ms.circuit_breaker, { failure_threshold = 0 }),
            "failure_threshold = 0 is out of range")
        assert_contains(error_of(ms.circuit_breaker, { reset_timeout = "x" }), "reset_timeout = x")
        assert_contains(error_of(ms.circuit_breaker, { half_open = 1 }), "unknown field 'half_open'")
        local cb = ms.circuit_breaker()
        assert_contains(error_of(cb.call, cb, 42), "expects a function")
    end)
end)
