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

-- The ms-host binary under test (ctest sets MS_HOST).
helpers.host = os.getenv("MS_HOST") or "build/lua/ms-host"

function helpers.shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The whole file, or "" when it cannot be read.
function helpers.slurp(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

function helpers.write_file(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
end

-- A new temporary file holding text (suffix, e.g. ".lua", appended to
-- the name); the caller removes it.
function helpers.tmpfile(text, suffix)
    local path = os.tmpname()
    if suffix then
        os.remove(path)
        path = path .. suffix
    end
    return helpers.write_file(path, text)
end

return helpers
