-- ms.retry: call a function again after failures, with exponential backoff.
--
--   local try = ms.retry{ max_attempts = 3, delay = 1, backoff = 2,
--                         max_delay = nil, jitter = 0,
--                         retry_if = nil, on_retry = nil }
--   local a, b = try(fn, ...)      -- fn's results, or nil, last_err
--
-- An attempt fails when fn raises (caught with pcall: the error value
-- becomes last_err) or returns nil plus a non-nil second value (the Lua
-- "nil, err" convention: that err becomes last_err).  Any other return,
-- including no values or a lone nil, is a success and is returned as is.
--
-- Between attempts the calling task sleeps (ms.sleep, so other tasks and
-- agents run meanwhile): delay, delay * backoff, delay * backoff^2, ...
-- capped at max_delay, spread by jitter (a fraction: 0.1 = +-10 %).
-- retry_if(err, attempt) may return false to stop early (a permanent
-- error); on_retry(attempt, err, delay) is called before each sleep.
--
-- Must run in an agent's task (it sleeps).  The value this module returns
-- is ms.retry itself.

local ms = require "ms"
local backoff = require "ms.backoff"

local KNOWN = {
    max_attempts = true, delay = true, backoff = true, max_delay = true,
    jitter = true, retry_if = true, on_retry = true,
}

local function pack(...)
    return { n = select("#", ...), ... }
end

local function check_fn(opts, key)
    local v = opts[key]
    if v ~= nil and type(v) ~= "function" then
        error(("%s must be a function, got %s"):format(key, type(v)), 0)
    end
    return v
end

local function options(opts)
    opts = backoff.options(opts, KNOWN)
    return {
        max_attempts = backoff.number(opts, "max_attempts", 3, 1, nil, true),
        delay = backoff.number(opts, "delay", 1, 0),
        factor = backoff.number(opts, "backoff", 2, 1),
        max_delay = backoff.number(opts, "max_delay", nil, 0),
        jitter = backoff.number(opts, "jitter", 0, 0, 1),
        retry_if = check_fn(opts, "retry_if"),
        on_retry = check_fn(opts, "on_retry"),
    }
end

-- The error of a failed attempt, or nil for a success.
local function failure_of(res)
    if not res[1] then
        return res[2] == nil and "error (nil)" or res[2]
    end
    if res[2] == nil and res.n >= 3 and res[3] ~= nil then
        return res[3]
    end
    return nil
end

local function run(o, fn, ...)
    local last_err
    for attempt = 1, o.max_attempts do
        local res = pack(pcall(fn, ...))
        local err = failure_of(res)
        if err == nil then
            return unpack(res, 2, res.n)
        end
        last_err = err
        if attempt == o.max_attempts or (o.retry_if and not o.retry_if(err, attempt)) then
            break
        end
        local d = backoff.delay(o.delay, o.factor, o.max_delay, o.jitter, attempt)
        if o.on_retry then
            o.on_retry(attempt, err, d)
        end
        if d > 0 then
            ms.sleep(d)
        end
    end
    return nil, last_err
end

return function(opts)
    local ok, o = pcall(options, opts)
    if not ok then
        error("ms.retry: " .. o, 2)
    end
    return function(fn, ...)
        if type(fn) ~= "function" then
            error(("ms.retry: expects a function to call, got %s"):format(type(fn)), 2)
        end
        return run(o, fn, ...)
    end
end
