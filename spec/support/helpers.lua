-- What the ms specs share: run a function as the main agent of a fresh
-- two-worker runtime (a failure inside fails the calling `it` with its
-- message and the task's traceback), and check error messages.
--   local h = require "spec.support.helpers"   (specs run from the repo root)
local ms = require "ms"

local helpers = {}

function helpers.run(fn, config)
    local ok, err = ms.run(fn, config or { worker_threads = "2" })
    if not ok then
        error(tostring(type(err) == "table" and err.message or err) .. "\n"
            .. tostring(type(err) == "table" and err.traceback or ""), 0)
    end
end

function helpers.contains(haystack, needle)
    return type(haystack) == "string" and haystack:find(needle, 1, true) ~= nil
end

function helpers.assert_contains(haystack, needle)
    assert(helpers.contains(haystack, needle),
        string.format("expected %q\n  to contain %q", tostring(haystack), needle))
end

-- The message of the error fn raises (fn must fail).
function helpers.error_of(fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error")
    return tostring(err)
end

return helpers
