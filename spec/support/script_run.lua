-- Running one ms-host script for a subprocess spec (spec/files_spec.lua,
-- spec/json_spec.lua): the script checks what it wants with assert() and
-- prints "PASS" at its end; the spec wants status 0, the marker, and
-- nothing on stderr from a panic or a sanitizer.
--   local script_run = require "spec.support.script_run"
--   local out, err = script_run.pass(script [, { prefix =, args =, dir = }])
local h = require "spec.support.helpers"
local q, slurp = h.shell_quote, h.slurp

local SCALE = tonumber(os.getenv("MS_TEST_SCALE") or "") or 1
-- Seconds one run may take before it counts as hung (a hang guard only).
local LIMIT = SCALE < 1 and 180 or 60
local FATAL = { "PANIC", "unprotected", "AddressSanitizer", "ThreadSanitizer",
    "LeakSanitizer", "runtime error" }

local M = { scale = SCALE }
-- The binary, absolute: runs start in a directory of their own.
local HOST = h.host:sub(1, 1) == "/" and h.host or (os.getenv("PWD") .. "/" .. h.host)

-- A new empty directory; the caller removes it (M.remove).
function M.new_dir()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0, "mkdir " .. dir)
    return dir
end

function M.remove(dir)
    os.execute("chmod -R u+rwx " .. q(dir) .. " 2>/dev/null; rm -rf " .. q(dir))
end

-- Runs script with the working directory dir as arg[1]; returns status,
-- stdout, stderr.  opts.prefix: a shell command put before ms-host (e.g.
-- "ulimit -n 64;"); opts.args: more ms-host options.
function M.run(script, opts)
    opts = opts or {}
    local dir = opts.dir or M.new_dir()
    local run_dir = M.new_dir()
    h.write_file(run_dir .. "/script.lua", script)
    os.execute(("cd %s && (%s timeout -k 5 %d %s run %s --workers 2 %s -- %s >%s 2>%s </dev/null; echo $? >%s)")
        :format(q(run_dir), opts.prefix or "", LIMIT, q(HOST), q(run_dir .. "/script.lua"),
            opts.args or "", q(dir), q(run_dir .. "/out"), q(run_dir .. "/err"),
            q(run_dir .. "/code")))
    local code, out, err = tonumber(slurp(run_dir .. "/code")), slurp(run_dir .. "/out"),
        slurp(run_dir .. "/err")
    M.remove(run_dir)
    if not opts.dir then M.remove(dir) end
    return code, out, err
end

-- Runs script and asserts that it passed; returns stdout, stderr.
function M.pass(script, opts)
    local code, out, err = M.run(script, opts)
    for _, f in ipairs(FATAL) do
        assert(not err:find(f, 1, true), ("stderr has %q:\n%s"):format(f, err))
    end
    assert(code == 0 and out:find("PASS", 1, true),
        ("ms-host exited %s\nstdout:\n%s\nstderr:\n%s"):format(tostring(code), out, err))
    return out, err
end

return M
