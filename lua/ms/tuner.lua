-- ms.tuner: run a tuning function on an interval with the latest metrics.
--
--   local t = ms.tuner{
--       interval = 1,      -- seconds between runs (default 1)
--       cooldown = 3,      -- seconds a field rests after a change (default 0)
--       name = "workers",  -- for the trace and events (default "tuner")
--       log = true,        -- each change as a host log line, event tuner.change (or a function(line))
--       fn = function(now, prev, t)
--           -- now, prev: ms.metrics() snapshots, each with .time (ms.now()).
--           if t:rate("poll_count") < 1000 then
--               return { worker_threads = 1 }, "idle"
--           end
--       end,
--   }
--   ...
--   t:stop()
--
-- fn runs in a task of the calling agent.  It may return settings and a
-- reason, or call t:tune(settings, reason) itself; either way the change
-- goes through ms.tune (so the same checks apply), a field still cooling
-- down from its last change is left alone (the skip is counted), and each
-- change is appended to t.trace as { at, field, old, new, reason }.  An
-- error in fn is reported (stderr, t.errors) and the tuner keeps running.
--
-- Helpers, for decisions that do not flap:
--   t:rate(key[, worker])  change per second of a counter between prev and
--                          now (a per-worker one with worker = index)
--   t:delta(key)           now[key] - prev[key]
--   ms.tuner.hysteresis{ high = 100, low = 10, samples = 3 }
--       h:update(v) -> "high" once v has been >= high for `samples` updates
--       in a row, "low" once it has been <= low as long, else nil; it
--       reports a level once, when it is reached (h.state keeps it).

local ms = require "ms"

local KNOWN = { interval = true, cooldown = true, name = true, log = true, fn = true }

local Tuner = {}
Tuner.__index = Tuner

local function fail(fmt, ...)
    error("ms.tuner: " .. string.format(fmt, ...), 3)
end

local function positive_number(opts, key, default)
    local v = opts[key]
    if v == nil then
        return default
    end
    if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
        fail("%s must be a number of seconds >= 0, got %s", key, tostring(v))
    end
    return v
end

function Tuner:delta(key)
    local a, b = self.now and self.now[key], self.prev and self.prev[key]
    if type(a) ~= "number" or type(b) ~= "number" then
        error(string.format("ms.tuner: %s is not a number in the metrics", tostring(key)), 2)
    end
    return a - b
end

function Tuner:rate(key, worker)
    local now, prev = self.now, self.prev
    if worker ~= nil then
        now = now.per_worker[worker]
        prev = prev.per_worker[worker]
        if now == nil or prev == nil then
            return 0 -- the worker did not exist in one of the snapshots
        end
    end
    local a, b = now[key], prev[key]
    if type(a) ~= "number" or type(b) ~= "number" then
        error(string.format("ms.tuner: %s is not a number in the metrics", tostring(key)), 2)
    end
    local dt = self.now.time - self.prev.time
    if dt <= 0 then
        return 0
    end
    return (a - b) / dt
end

function Tuner:_say(line)
    if self.log == true then
        ms.log("info", "tuner.change", line)
    elseif type(self.log) == "function" then
        self.log(line)
    end
end

function Tuner:tune(settings, reason)
    if type(settings) ~= "table" then
        error("ms.tuner: tune expects a table of settings, got " .. type(settings), 2)
    end
    local at = ms.now()
    local allowed, any = {}, false
    for k, v in pairs(settings) do
        local last = self.changed_at[k]
        if last ~= nil and at - last < self.cooldown then
            self.skipped = self.skipped + 1
        else
            allowed[k] = v
            any = true
        end
    end
    if not any then
        return {}
    end
    local changes = ms.tune(allowed, "tuner:" .. self.name)
    for _, c in ipairs(changes) do
        self.changed_at[c.field] = at
        local entry = { at = at, field = c.field, old = c.old, new = c.new, reason = reason }
        self.trace[#self.trace + 1] = entry
        self:_say(string.format("[%s %.2fs] %s %s -> %s%s", self.name, at - self.started,
            c.field, tostring(c.old), tostring(c.new), reason and (" (" .. reason .. ")") or ""))
    end
    return changes
end

function Tuner:stop()
    self.stopped = true
    -- From fn itself the loop ends after this run; from elsewhere the
    -- sleeping task is aborted at once.
    if self.task ~= nil and coroutine.running() ~= self.co then
        self.task:abort()
    end
end

local function run(self)
    self.co = coroutine.running()
    self.prev = ms.metrics()
    self.prev.time = ms.now()
    while not self.stopped do
        ms.sleep(self.interval)
        if self.stopped then
            break
        end
        local now = ms.metrics()
        now.time = ms.now()
        self.now = now
        self.runs = self.runs + 1
        local ok, settings, reason = pcall(self.fn, now, self.prev, self)
        if ok and settings ~= nil then
            ok, settings = pcall(self.tune, self, settings, reason)
        end
        if not ok then
            self.errors = self.errors + 1
            self.last_error = settings
            local shown, text = pcall(tostring, settings)
            ms.log("error", "tuner.failed", ("ms.tuner: %s: %s"):format(self.name,
                shown and type(text) == "string" and text
                    or "(an error value whose __tostring fails)"))
        end
        self.prev = now
    end
end

local M = {}

function M.new(opts)
    if type(opts) ~= "table" then
        fail("expected a table { interval = ..., fn = function(now, prev, tuner) end }, got %s",
            type(opts))
    end
    for k in pairs(opts) do
        if not KNOWN[k] then
            fail("unknown option '%s' (known: cooldown, fn, interval, log, name)", tostring(k))
        end
    end
    if type(opts.fn) ~= "function" then
        fail("fn must be a function(now, prev, tuner), got %s", type(opts.fn))
    end
    local interval = positive_number(opts, "interval", 1)
    if interval == 0 then
        fail("interval must be above 0 seconds")
    end
    if opts.name ~= nil and type(opts.name) ~= "string" then
        fail("name must be a string, got %s", type(opts.name))
    end
    if opts.log ~= nil and type(opts.log) ~= "boolean" and type(opts.log) ~= "function" then
        fail("log must be true, false or a function(line), got %s", type(opts.log))
    end
    local self = setmetatable({
        fn = opts.fn,
        interval = interval,
        cooldown = positive_number(opts, "cooldown", 0),
        name = opts.name or "tuner",
        log = opts.log or false,
        trace = {},
        changed_at = {},
        runs = 0,
        errors = 0,
        skipped = 0,
        stopped = false,
        started = ms.now(),
    }, Tuner)
    self.task = ms.spawn(run, self)
    return self
end

-- ---- hysteresis ----

local Hyst = {}
Hyst.__index = Hyst

function Hyst:update(v)
    if type(v) ~= "number" then
        error("hysteresis: update expects a number, got " .. type(v), 2)
    end
    local level
    if v >= self.high then
        level = "high"
    elseif v <= self.low then
        level = "low"
    end
    if level == nil or level ~= self.pending then
        self.pending, self.count = level, level and 1 or 0
    else
        self.count = self.count + 1
    end
    if level ~= nil and self.count >= self.samples and self.state ~= level then
        self.state = level
        return level
    end
    return nil
end

function M.hysteresis(opts)
    if type(opts) ~= "table" or type(opts.high) ~= "number" or type(opts.low) ~= "number" then
        fail("hysteresis expects { high = number, low = number[, samples = n] }")
    end
    if opts.low >= opts.high then
        fail("hysteresis: low (%s) must be below high (%s)", tostring(opts.low),
            tostring(opts.high))
    end
    local samples = opts.samples or 1
    if type(samples) ~= "number" or samples < 1 or samples ~= math.floor(samples) then
        fail("hysteresis: samples must be a whole number >= 1, got %s", tostring(samples))
    end
    return setmetatable({ high = opts.high, low = opts.low, samples = samples, count = 0 }, Hyst)
end

return setmetatable(M, {
    __call = function(_, opts)
        return M.new(opts)
    end,
})
