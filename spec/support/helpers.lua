-- What the ms specs share: run a function as the main agent of a fresh
-- two-worker runtime (a failure inside fails the calling `it` with its
-- message and the task's traceback), and check error messages.
--   local h = require "spec.support.helpers"   (specs run from the repo root)
--
-- The ms module is loaded only by helpers.run: a spec that drives the
-- ms-host binary alone (helpers.host) must not load it, because the
-- sanitizer builds run such specs with an instrumented ms-host and no
-- loadable module (see "subprocess specs" in CMakeLists.txt).

local helpers = {}

function helpers.run(fn, config)
    local ms = require "ms"
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
helpers.host = os.getenv("MS_HOST") or "build/ms-host/ms-host"

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

-- Runs a shell command; true when it exited 0.
local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end
helpers.sh = sh

-- Runs a shell command and returns what it wrote on stdout.
function helpers.capture(cmd)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    return out
end

-- Runs `ms-host run <script> <args> -- <stop file>` in the background, in
-- a fresh directory, and waits until the script prints "ready".  The
-- script is expected to return once the stop file exists (arg[1]).
-- Returns { dir, pid, port, out(), err(), stop() }: port is the one ms-host
-- reports for --metrics-listen 127.0.0.1:0, if any; stop() asks the
-- script to end (then kills it after 10 s) and removes the directory.
function helpers.background_host(script, args)
    local q = helpers.shell_quote
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir " .. q(dir)))
    local bg = { dir = dir }
    function bg.out() return helpers.slurp(dir .. "/out") end
    function bg.err() return helpers.slurp(dir .. "/err") end
    local function ended() return helpers.slurp(dir .. "/code") ~= "" end
    helpers.write_file(dir .. "/script.lua", script)
    sh(("(timeout 120 %s run %s %s -- %s >%s 2>%s </dev/null & echo $! >%s; wait $!; "
        .. "echo $? >%s) &"):format(q(helpers.host), q(dir .. "/script.lua"), args or "",
        q(dir .. "/stop"), q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/pid"),
        q(dir .. "/code")))
    for _ = 1, 400 do
        if helpers.contains(bg.out(), "ready") or ended() then break end
        sh("sleep 0.05")
    end
    function bg.stop()
        helpers.write_file(dir .. "/stop", "")
        for _ = 1, 200 do
            if ended() then break end
            sh("sleep 0.05")
        end
        if not ended() and bg.pid then
            sh("kill " .. bg.pid .. " 2>/dev/null")
        end
        sh("rm -rf " .. q(dir))
    end
    assert(helpers.contains(bg.out(), "ready"), "ms-host did not start: " .. bg.err())
    bg.pid = tonumber(helpers.slurp(dir .. "/pid"))
    bg.port = tonumber(bg.err():match("metrics on http://127%.0%.0%.1:(%d+)/metrics"))
    return bg
end

return helpers
