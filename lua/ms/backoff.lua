-- ms.backoff (internal): exponential delays with jitter, shared by
-- ms.retry and ms.supervisor.  Not part of the ms table.
--
--   backoff.delay(base, factor, max, jitter, n) -> seconds before try n + 1
--
-- The n-th delay (n >= 1) is base * factor^(n - 1), capped at max (when
-- given), then spread by jitter: a fraction in [0, 1], so 0.2 means a
-- uniformly random delay within +-20 % of the computed one.  The result is
-- never below 0 and never above max.
--
-- The random numbers come from math.random of the calling Lua state.

local M = {}

local random = math.random

function M.delay(base, factor, max, jitter, n)
    local d = base * factor ^ (n - 1)
    if max and d > max then
        d = max
    end
    if jitter and jitter > 0 then
        d = d * (1 + jitter * (2 * random() - 1))
    end
    if d < 0 then
        d = 0
    end
    if max and d > max then
        d = max
    end
    return d
end

-- Checks one numeric option.  Returns the value or the default; raises
-- (level 0, the caller adds where) with the option's name, value and range.
function M.number(opts, key, default, min, max, whole)
    local v = opts[key]
    if v == nil then
        return default
    end
    local bad = type(v) ~= "number" or v ~= v or v < min or (max and v > max)
        or (whole and v ~= math.floor(v))
    if bad then
        local range = max and ("%s..%s"):format(min, max) or (">= " .. min)
        error(("%s = %s is out of range (allowed: %s%s)"):format(
            key, tostring(v), whole and "a whole number " or "", range), 0)
    end
    return v
end

-- Rejects keys that are not in `known` (a set), naming the first one found
-- in sorted order, so a typo does not go unnoticed.
function M.known_keys(opts, known, what)
    local unknown = {}
    for k in pairs(opts) do
        if not known[k] then
            unknown[#unknown + 1] = tostring(k)
        end
    end
    if #unknown > 0 then
        table.sort(unknown)
        error(("%s has an unknown field '%s'"):format(what, unknown[1]), 0)
    end
end

-- The options table of ms.retry{...} or ms.circuit_breaker{...}: nil
-- means {}; anything but a table, or an unknown key, is an error.
function M.options(opts, known)
    if opts == nil then
        return {}
    end
    if type(opts) ~= "table" then
        error(("expects a table of options, got %s"):format(type(opts)), 0)
    end
    M.known_keys(opts, known, "the options table")
    return opts
end

return M
