-- ms.tune: change the running host's settings.
--
--   local changes = ms.tune{ worker_threads = 4, thread_keep_alive = "2s" }
--   -- changes = { { field = "worker_threads", old = 2, new = 4 }, ... }
--
-- Fields are the profile's, and a value is checked the way a profile file's
-- is (same words in the error: the field, the value, what is allowed).
-- Only the live fields may change (ms.tune.live_fields); any other is
-- refused, naming it.  A request is applied whole or not at all, in a fixed
-- order; a field set to the value it already has is not a change.  Every
-- change is an "ms.tuned" event ({ field, old, new, source }) and counts in
-- ms.metrics().tune_changes.
--
-- What a change does:
--   worker_threads          grows at once (up to max_worker_threads); a
--                           smaller count retires the highest workers after
--                           their current poll, their queued tasks moving
--                           to the others.
--   max_blocking_threads    higher: threads start for jobs that wait;
--                           lower: the surplus leaves after its current job.
--   thread_keep_alive       also for threads already idle.
--   global_queue_interval, budget
--                           from each worker's next tick.
--   mailbox_limit           new agents and every running one; a mailbox
--                           above the new limit keeps what it holds and
--                           refuses sends until it drains below.
--   agent_memory_limit, jit_agent_limit
--                           agents spawned from now on.

local ms = require "ms"
local profile = require "ms.profile"

local live = {}
for _, name in ipairs(profile.live_fields) do
    live[name] = true
end

local M = { live_fields = profile.live_fields }

local function tune(_, settings, source)
    if type(settings) ~= "table" then
        error("ms.tune: expected a table of settings, e.g. { worker_threads = 4 }, got "
            .. type(settings), 2)
    end
    -- Read raw (next, rawget): the table is the caller's and may carry
    -- metamethods that raise.
    local names = {}
    local k = next(settings)
    while k ~= nil do
        if type(k) ~= "string" then
            error("ms.tune: setting names must be strings, got " .. type(k), 2)
        end
        names[#names + 1] = k
        k = next(settings, k)
    end
    table.sort(names)
    local normalised = {}
    for _, name in ipairs(names) do
        local ok, v = pcall(profile.check_field, name, rawget(settings, name), "ms.tune")
        if not ok then
            error(v, 2)
        end
        if not live[name] then
            error(string.format("ms.tune: field '%s' cannot change while the host runs "
                .. "(it takes a restart); live fields: %s", name,
                table.concat(profile.live_fields, ", ")), 2)
        end
        normalised[name] = v
    end
    if source ~= nil and type(source) ~= "string" then
        error("ms.tune: source must be a string, got " .. type(source), 2)
    end
    local ok, changes = pcall(ms._tune, normalised, source or "ms.tune")
    if not ok then
        error(changes, 2)
    end
    return changes
end

return setmetatable(M, { __call = tune })
