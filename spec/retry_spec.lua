-- Specs for ms.retry (attempts, backoff, what counts as a failure) and
-- ms.circuit_breaker (closed -> open -> half_open -> closed|open).
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/retry_spec.lua
--
-- Timing checks use lenient bounds: they tell a sleep from no sleep, not
-- milliseconds apart.

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
            local t0 = ms.now()
            local a, n, extra = ms.retry{ delay = 1 }(fn, "arg")
            assert.are.same({ "ok", 1, "arg" }, { a, n, extra })
            assert.are.equal(1, calls.n)
            assert.is_true(ms.now() - t0 < 0.5)
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
            assert.are.equal("ok", (ms.retry{ max_attempts = 4, delay = 0.05, backoff = 2 }(fn)))
            local took = ms.now() - t0            -- 0.05 + 0.1 + 0.2 = 0.35
            assert.is_true(took >= 0.3, "took " .. took)
            assert.is_true(took < 2, "took " .. took)
        end)
    end)

    it("caps the delay at max_delay and reports each retry", function()
        run(function()
            local seen = {}
            local r = ms.retry{
                max_attempts = 4, delay = 0.02, backoff = 10, max_delay = 0.05,
                on_retry = function(attempt, err, delay) seen[#seen + 1] = { attempt, err, delay } end,
            }
            assert.is_nil((r(flaky(10))))
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
        for n = 1, 200 do
            local d = backoff.delay(1, 2, nil, 0.25, 2)
            assert.is_true(d >= 1.5 and d <= 2.5, "delay " .. d .. " at " .. n)
        end
        assert.are.equal(8, backoff.delay(1, 2, nil, 0, 4))
        for _ = 1, 50 do
            local capped = backoff.delay(1, 2, 5, 0.5, 10)   -- capped at 5, then spread down
            assert.is_true(capped >= 2.5 and capped <= 5, "capped delay " .. capped)
        end
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
            local cb = ms.circuit_breaker{ failure_threshold = 3, reset_timeout = 30 }
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
            assert.is_true(cb:retry_in() > 25)
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
            local slow = ms.spawn(function()
                return cb:call(function() ms.sleep(0.2); return "trial" end)
            end)
            ms.sleep(0.05)
            assert.are.same({ nil, "circuit open" }, { cb:call(function() return "second" end) })
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
