-- A nats-server of the cluster specs' own (spec/cluster*_spec.lua): on
-- 127.0.0.1, the port chosen by the server (-p -1) and read from its
-- ports file, JetStream on with its store in a temporary directory,
-- stopped by its pid.
--   local nats = require "spec.support.nats"
--   local b = nats.start()      -- b.url, b.pid, b.dir
--   nats.start(port)            -- again on the same port (a restart)
--   nats.stop(b)
--   local S = nats.suite()      -- in a spec file: a broker for its tests
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"
local q, slurp = h.shell_quote, h.slurp

local nats = {}

function nats.start(port)
    local dir = proc.new_dir()
    proc.sh(("(nats-server -a 127.0.0.1 -p %s --ports_file_dir %s -js -sd %s/js >%s/log 2>&1 & " ..
             "echo $! >%s/pid)"):format(port or "-1", q(dir), q(dir), q(dir), q(dir)))
    local pid = tonumber(slurp(dir .. "/pid"):match("%d+"))
    local url
    assert(proc.wait_until(20, function()
        local ports = slurp(("%s/nats-server_%d.ports"):format(dir, pid))
        url = ports:match('"(nats://[^"]+)"')
        return url ~= nil
    end), "nats-server did not start: " .. slurp(dir .. "/log"))
    return { dir = dir, pid = pid, url = url }
end

function nats.stop(b)
    proc.sh(("kill -TERM %d 2>/dev/null"):format(b.pid))
    proc.wait_until(20, function() return not proc.sh(("kill -0 %d 2>/dev/null"):format(b.pid)) end)
    proc.sh(("kill -KILL %d 2>/dev/null"):format(b.pid))
    proc.sh("rm -rf " .. q(b.dir))
end

-- For a spec file: a broker started in busted's setup (S.B, which a test
-- may replace, as a broker restart does) and stopped in its teardown;
-- S.dir() makes a directory that the teardown removes, after killing a
-- host left running in it (proc.cleanup).
function nats.suite()
    -- busted's setup and teardown live in the spec file's environment.
    local env = getfenv(2)
    local S = { dirs = {} }
    function S.dir()
        local d = proc.new_dir()
        S.dirs[#S.dirs + 1] = d
        return d
    end
    env.setup(function() S.B = nats.start() end)
    env.teardown(function()
        for _, d in ipairs(S.dirs) do proc.cleanup(d) end
        if S.B then nats.stop(S.B) end
    end)
    return S
end

return nats
