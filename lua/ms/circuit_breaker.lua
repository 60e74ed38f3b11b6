-- ms.circuit_breaker: stop calling something that keeps failing.
--
--   local cb = ms.circuit_breaker{ failure_threshold = 5, reset_timeout = 30,
--                                  half_open_max = 1, on_change = nil }
--   cb:call(fn, ...)   -- fn's results | nil, err (fn failed) | nil, "circuit open"
--   cb:state()         -- "closed" | "open" | "half_open"
--   cb:reset()         -- back to closed, counts cleared
--   cb:stats()         -- { state, failures, calls, successes, failed, rejected, opened }
--   cb:retry_in()      -- seconds until an open breaker lets a trial through (0 otherwise)
--
-- closed: calls go through; failure_threshold consecutive failures open it.
-- open: calls are refused at once with nil, "circuit open"; after
--   reset_timeout seconds it becomes half_open.
-- half_open: up to half_open_max trial calls go through at a time (others
--   are refused); a trial that succeeds closes the breaker, one that fails
--   opens it again for another reset_timeout.
--
-- A call fails when fn raises (the error is caught and returned as nil,
-- err) or returns nil plus a non-nil second value, as for ms.retry.
-- on_change(from, to) is called on every state change.
--
-- Lower-level, for callers that do not wrap a function call (the
-- supervisor uses these for children): cb:allow() -> true | false,
-- cb:success(), cb:failure().
--
-- Time is ms.now(), so a breaker works inside agents and from plain luajit
-- alike.  A breaker is a Lua object of one agent: it cannot be sent to
-- another (share it by putting it behind an agent).  The value this module
-- returns is ms.circuit_breaker itself.

local ms = require "ms"
local backoff = require "ms.backoff"

local KNOWN = {
    failure_threshold = true, reset_timeout = true, half_open_max = true, on_change = true,
}

local Breaker = {}
Breaker.__index = Breaker

local function pack(...)
    return { n = select("#", ...), ... }
end

local function set_state(self, to)
    local from = self._state
    if from == to then
        return
    end
    self._state = to
    if to == "open" then
        self._opened_at = ms.now()
        self._opened = self._opened + 1
    end
    if to ~= "half_open" then
        self._trials = 0
    end
    if self._on_change then
        self._on_change(from, to)
    end
end

-- An open breaker whose reset_timeout has passed is half-open.
local function refresh(self)
    if self._state == "open" and ms.now() - self._opened_at >= self._reset_timeout then
        set_state(self, "half_open")
    end
end

function Breaker:state()
    refresh(self)
    return self._state
end

function Breaker:retry_in()
    refresh(self)
    if self._state ~= "open" then
        return 0
    end
    return math.max(0, self._opened_at + self._reset_timeout - ms.now())
end

-- May a call go through now?  In half_open this takes one trial slot,
-- which success() or failure() gives back.
function Breaker:allow()
    refresh(self)
    local s = self._state
    if s == "closed" then
        return true
    end
    if s == "half_open" and self._trials < self._half_open_max then
        self._trials = self._trials + 1
        return true
    end
    self._rejected = self._rejected + 1
    return false
end

local function release_trial(self)
    if self._trials > 0 then
        self._trials = self._trials - 1
    end
end

function Breaker:success()
    self._successes = self._successes + 1
    refresh(self)
    if self._state == "half_open" then
        release_trial(self)
        self._failures = 0
        set_state(self, "closed")
    elseif self._state == "closed" then
        self._failures = 0
    end
end

function Breaker:failure()
    self._failed = self._failed + 1
    refresh(self)
    if self._state == "half_open" then
        release_trial(self)
        set_state(self, "open")
    elseif self._state == "closed" then
        self._failures = self._failures + 1
        if self._failures >= self._threshold then
            set_state(self, "open")
        end
    end
end

function Breaker:call(fn, ...)
    if type(fn) ~= "function" then
        error(("circuit_breaker:call: expects a function, got %s"):format(type(fn)), 2)
    end
    if not self:allow() then
        return nil, "circuit open"
    end
    self._calls = self._calls + 1
    local res = pack(pcall(fn, ...))
    if not res[1] then
        self:failure()
        return nil, res[2]
    end
    if res[2] == nil and res.n >= 3 and res[3] ~= nil then
        self:failure()
        return nil, res[3]
    end
    self:success()
    return unpack(res, 2, res.n)
end

function Breaker:reset()
    self._failures = 0
    set_state(self, "closed")
end

function Breaker:stats()
    return {
        state = self:state(),
        failures = self._failures,       -- consecutive, while closed
        calls = self._calls,
        successes = self._successes,
        failed = self._failed,
        rejected = self._rejected,
        opened = self._opened,           -- how many times it opened
    }
end

Breaker.__tostring = function(self)
    return ("ms.circuit_breaker(%s, %d/%d failures)"):format(
        self:state(), self._failures, self._threshold)
end

local function new(opts)
    opts = backoff.options(opts, KNOWN)
    if opts.on_change ~= nil and type(opts.on_change) ~= "function" then
        error(("on_change must be a function, got %s"):format(type(opts.on_change)), 0)
    end
    return setmetatable({
        _threshold = backoff.number(opts, "failure_threshold", 5, 1, nil, true),
        _reset_timeout = backoff.number(opts, "reset_timeout", 30, 0),
        _half_open_max = backoff.number(opts, "half_open_max", 1, 1, nil, true),
        _on_change = opts.on_change,
        _state = "closed",
        _failures = 0,
        _trials = 0,
        _opened_at = 0,
        _opened = 0,
        _calls = 0,
        _successes = 0,
        _failed = 0,
        _rejected = 0,
    }, Breaker)
end

return function(opts)
    local ok, cb = pcall(new, opts)
    if not ok then
        error("ms.circuit_breaker: " .. cb, 2)
    end
    return cb
end
