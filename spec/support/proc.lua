-- Running ms-host in the background for the fault specs
-- (spec/faults_spec.lua, spec/listeners_spec.lua): start it under a hang
-- guard, watch what it prints, signal it, wait for its exit.  Waits poll
-- for an event with a generous bound; nothing here decides by how long
-- something took.
--   local proc = require "spec.support.proc"
local h = require "spec.support.helpers"
local q, slurp, contains = h.shell_quote, h.slurp, h.contains

local proc = {}

function proc.sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

function proc.sleep(s)
    proc.sh("sleep " .. s)
end

-- Polls cond() every 50 ms for up to `seconds`; true once it held.
function proc.wait_until(seconds, cond)
    for _ = 1, seconds * 20 do
        if cond() then return true end
        proc.sleep(0.05)
    end
    return cond() and true or false
end

-- A new empty directory.
function proc.new_dir()
    local dir = os.tmpname()
    os.remove(dir)
    assert(proc.sh("mkdir " .. q(dir)))
    return dir
end

-- Kills a host still running in dir (a failed spec) and removes dir.
function proc.cleanup(dir)
    local pid = slurp(dir .. "/pid"):match("%d+")
    if pid and slurp(dir .. "/code") == "" then proc.sh("kill -KILL " .. pid .. " 2>/dev/null") end
    proc.sh("rm -rf " .. q(dir))
end

-- Starts `ms-host <args>` in the background in dir, under a hang guard of
-- opts.guard seconds (then SIGKILL, status 137).  opts.prefix is shell
-- text run first in the same shell (e.g. "ulimit -n 64;"); the host
-- replaces that shell, so p.pid is the host's own pid.  Returns p with
-- out(), err(), code() (nil while it runs), signal(sig),
-- wait_exit(seconds) -> code, wait_out(text, seconds) and
-- wait_err(text, seconds) -> true once stdout / stderr contains text.
function proc.start(dir, args, opts)
    opts = opts or {}
    for _, f in ipairs({ "pid", "out", "err", "code" }) do os.remove(dir .. "/" .. f) end
    local inner = ("echo $$ >%s; %s exec %s %s"):format(q(dir .. "/pid"), opts.prefix or "",
        q(h.host), args)
    proc.sh(("(timeout -s KILL %d sh -c %s >%s 2>%s </dev/null; echo $? >%s) &"):format(
        opts.guard or 120, q(inner), q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/code")))
    local p = {}
    function p.out() return slurp(dir .. "/out") end
    function p.err() return slurp(dir .. "/err") end
    function p.code() return tonumber(slurp(dir .. "/code"):match("%d+")) end
    assert(proc.wait_until(20, function() return slurp(dir .. "/pid"):match("%d+") end),
        "the host's shell did not start")
    p.pid = tonumber(slurp(dir .. "/pid"):match("%d+"))
    function p.signal(sig) proc.sh(("kill -%s %d 2>/dev/null"):format(sig, p.pid)) end
    function p.wait_exit(seconds)
        proc.wait_until(seconds or 120, function() return p.code() ~= nil end)
        return p.code()
    end
    function p.wait_out(text, seconds)
        return proc.wait_until(seconds or 30, function()
            return contains(p.out(), text) or p.code() ~= nil
        end) and contains(p.out(), text)
    end
    function p.wait_err(text, seconds)
        return proc.wait_until(seconds or 30, function()
            return contains(p.err(), text) or p.code() ~= nil
        end) and contains(p.err(), text)
    end
    return p
end

-- Runs `ms-host <args>` to its end (hang guard opts.guard seconds);
-- returns the exit status, stdout and stderr.
function proc.run(dir, args, opts)
    local p = proc.start(dir, args, opts)
    local code = p.wait_exit((opts and opts.guard or 120) + 10)
    return code, p.out(), p.err()
end

return proc
