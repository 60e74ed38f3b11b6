-- Regression tests for the listener faults of issue 13: the metrics
-- endpoint and the console under hostile clients.
--
--   * At the process's descriptor limit (ulimit -n 64), connections to a
--     listener must not freeze the driver: timers keep firing and SIGTERM
--     ends the host (libuv's own listener looped accept -> EMFILE for good
--     once its reserve descriptor was gone).
--   * A console client that sends a malformed frame while a large reply is
--     on its way gets that reply, one `error` frame, and the end of its
--     connection -- nothing else (the connection task used to parse the
--     same bytes on every pass, appending an error frame each time, for
--     ever).
--   * 500 slow or idle connections that reopen when closed must not keep
--     scrapers or an attaching user out (they held every slot; newcomers
--     were closed at once).
--
-- The hostile peers are build/ms-host/netpeer (ms-host/test/netpeer.c),
-- on loopback or a Unix socket only, bounded in connections and time.
-- Pass or fail is decided by events and counts (ticks printed, frames
-- received, scrapes answered), never by how long something took; waits
-- have generous bounds.
--
-- Run from the repository root after building:
--   MS_HOST=build/ms-host/ms-host MS_BUILD_DIR=build busted --lua=luajit spec/listeners_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"
local q, slurp, write, contains, assert_contains =
    h.shell_quote, h.slurp, h.write_file, h.contains, h.assert_contains
local sh, wait_until, new_dir, start = proc.sh, proc.wait_until, proc.new_dir, proc.start

local NETPEER = (os.getenv("MS_BUILD_DIR") or "build") .. "/ms-host/netpeer"

-- Runs netpeer with args to its end; returns its output.
local function netpeer(args, guard)
    local p = io.popen(("timeout -s KILL %d %s %s 2>&1"):format(guard or 120, q(NETPEER), args))
    local out = p:read("*a")
    p:close()
    return out
end

-- Starts netpeer with args in the background, output to file.
local function netpeer_bg(args, file, guard)
    sh(("timeout -s KILL %d %s %s >%s 2>&1 &"):format(guard or 120, q(NETPEER), args, q(file)))
end

local function ticks(out)
    local n = 0
    for t in out:gmatch("tick (%d+)") do n = tonumber(t) end
    return n
end

-- The main script of the descriptor-limit cases: takes every descriptor
-- left under the limit, and keeps taking any that comes free (as a busy
-- host would), prints a tick every 50 ms until stopped, and at shutdown
-- the listener figures of ms.metrics().
local FD_SCRIPT = [[
local held = {}
local function grab()
    while true do
        local f = io.open("/dev/null")
        if not f then return end
        held[#held + 1] = f
    end
end
grab()
ms.spawn(function()
    while true do grab() ms.yield() end
end)
ms.on_shutdown(function()
    local m = ms.metrics()
    print("accept_errors " .. m.accept_errors .. " accept_pauses " .. m.accept_pauses)
    io.stdout:flush()
end)
print("ready " .. #held)
io.stdout:flush()
local n = 0
while true do
    ms.sleep(0.05)
    n = n + 1
    print("tick " .. n)
    io.stdout:flush()
end
]]

local IDLE_SCRIPT = 'print("ready") io.stdout:flush() while true do ms.sleep(0.05) end\n'

describe("listeners under hostile clients", function()
    local dir

    before_each(function() dir = new_dir() end)
    after_each(function() proc.cleanup(dir) end)

    -- One host at the descriptor limit with a listener; connections
    -- (idle, opened again when closed) past the limit for 3 s; the host
    -- must go on ticking and end on SIGTERM.
    local function at_fd_limit(listen_args, addr_of)
        local script = write(dir .. "/fd.lua", FD_SCRIPT)
        local p = start(dir, ("run %s --workers 2 %s"):format(q(script), listen_args),
            { prefix = "ulimit -n 64;", guard = 120 })
        assert.is_true(p.wait_out("ready", 30), p.err())
        local addr = addr_of(p)
        local before = ticks(p.out())
        local held = netpeer(("hold %s 100 3 idle"):format(addr), 60)
        assert_contains(held, "hold opened=")
        -- Timers still fire: 20 more ticks (1 s of them) after the flood.
        local after = ticks(p.out())
        assert.is_true(wait_until(60, function() return ticks(p.out()) >= after + 20 end),
            ("ticks stopped at %d (%d before the connections)\n%s"):format(ticks(p.out()),
                before, p.err()))
        p.signal("TERM")
        local code = p.wait_exit(60)
        assert.are.equal(0, code, p.err())
        assert_contains(p.err(), "shutdown complete")
        local errors, pauses = p.out():match("accept_errors (%d+) accept_pauses (%d+)")
        assert.is_true(tonumber(errors) > 0 and tonumber(pauses) > 0, p.out())
    end

    it("keeps its timers and ends on SIGTERM at the fd limit (metrics endpoint)", function()
        at_fd_limit("--metrics-listen 127.0.0.1:0", function(p)
            local port = p.err():match("metrics on http://127%.0%.0%.1:(%d+)/metrics")
            assert.is_truthy(port, p.err())
            return "tcp:127.0.0.1:" .. port
        end)
    end)

    it("keeps its timers and ends on SIGTERM at the fd limit (console)", function()
        local sock = dir .. "/c.sock"
        at_fd_limit("--console " .. q(sock), function() return "unix:" .. sock end)
    end)

    -- A client that breaks the protocol while a reply of 2 MB is being
    -- written gets the reply, one error frame, and the end of the
    -- connection; one that leaves instead is simply gone.  The host stays
    -- well: no worker stuck in a poll of the connection's task (a C task,
    -- "not an agent"), other consoles work, SIGTERM ends it at once.
    it("ends only the console connection that sends garbage", function()
        local sock = dir .. "/c.sock"
        local script = write(dir .. "/s.lua", IDLE_SCRIPT)
        local p = start(dir, ("run %s --workers 2 --console %s"):format(q(script), q(sock)),
            { guard = 180 })
        assert.is_true(p.wait_out("ready", 30), p.err())
        local read = netpeer(("console unix:%s read"):format(sock), 60)
        assert_contains(read, "console out=1 error=1 eof=1")
        local left = netpeer(("console unix:%s leave"):format(sock), 60)
        assert_contains(left, "console left")
        local attach = io.popen(("printf 'return 6*7\\n' | timeout -s KILL 30 %s attach %s 2>&1")
            :format(q(h.host), q(sock)))
        local answer = attach:read("*a")
        attach:close()
        assert_contains(answer, "42")
        p.signal("TERM")
        assert.are.equal(0, p.wait_exit(60), p.err())
        assert.is_false(contains(p.err(), "one poll of agent (not an agent)"), p.err())
    end)

    -- 500 connections that send a request line and then one header byte
    -- every 200 ms, reopened as soon as the server closes them, for 30 s;
    -- meanwhile 40 scrapes, each given 5 s.  Three quarters must succeed.
    it("serves scrapes while 500 slow connections come and go", function()
        local script = write(dir .. "/s.lua", IDLE_SCRIPT)
        local p = start(dir, ("run %s --workers 2 --metrics-listen 127.0.0.1:0"):format(q(script)),
            { guard = 240 })
        assert.is_true(p.wait_out("ready", 30), p.err())
        local port = p.err():match("metrics on http://127%.0%.0%.1:(%d+)/metrics")
        assert.is_truthy(port, p.err())
        local hold = dir .. "/hold.out"
        netpeer_bg(("hold tcp:127.0.0.1:%s 500 30 slow"):format(port), hold, 90)
        proc.sleep(1)
        local scraped = netpeer(("scrape tcp:127.0.0.1:%s 40 5"):format(port), 300)
        local ok = tonumber(scraped:match("scrape ok=(%d+) of=40"))
        assert.is_truthy(ok, scraped)
        assert.is_true(wait_until(90, function() return contains(slurp(hold), "hold opened=") end))
        -- The flood was real: the server closed many of its connections.
        local closed = tonumber(slurp(hold):match("closed=(%d+)"))
        assert.is_true(ok >= 30, ("only %d of 40 scrapes succeeded (%s)"):format(ok, slurp(hold)))
        assert.is_true(closed and closed >= 500, slurp(hold))
        p.signal("TERM")
        assert.are.equal(0, p.wait_exit(60), p.err())
    end)

    -- 500 console connections that send nothing, reopened as soon as they
    -- are closed, for 30 s; meanwhile 8 `ms-host attach` runs, each given
    -- 20 s.  Three quarters must get their answer.
    it("lets a user attach while 500 idle console connections come and go", function()
        local sock = dir .. "/c.sock"
        local script = write(dir .. "/s.lua", IDLE_SCRIPT)
        local p = start(dir, ("run %s --workers 2 --console %s"):format(q(script), q(sock)),
            { guard = 240 })
        assert.is_true(p.wait_out("ready", 30), p.err())
        local hold = dir .. "/hold.out"
        netpeer_bg(("hold unix:%s 500 30 idle"):format(sock), hold, 90)
        proc.sleep(1)
        local ok = 0
        for _ = 1, 8 do
            local attach = io.popen(("printf 'return 6*7\\n' | timeout -s KILL 20 %s attach %s 2>&1")
                :format(q(h.host), q(sock)))
            if contains(attach:read("*a"), "42") then ok = ok + 1 end
            attach:close()
        end
        assert.is_true(wait_until(90, function() return contains(slurp(hold), "hold opened=") end))
        local closed = tonumber(slurp(hold):match("closed=(%d+)"))
        assert.is_true(ok >= 6, ("only %d of 8 attaches succeeded (%s)"):format(ok, slurp(hold)))
        assert.is_true(closed and closed >= 100, slurp(hold))
        p.signal("TERM")
        assert.are.equal(0, p.wait_exit(60), p.err())
    end)
end)
