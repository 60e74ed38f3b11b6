-- spec-kind: subprocess
-- Agents across hosts (docs/cluster.md): a nats-server of our own on
-- loopback (a random port, JetStream in a temporary directory) and two or
-- three ms-host processes.  Cross-host whereis, call, send, stop, monitor;
-- SIGKILL of a host (every monitor hears "noconnection", calls fail at
-- once); SIGTERM (reason "shutdown"); forged and malformed messages on a
-- host's subject (refused, counted, the host unharmed).
--
-- Pass or fail is what the hosts printed, never how long it took; the
-- detection latencies are printed as benchmark lines (bench/README.md).
-- Every process started here is stopped by its pid.  ctest label: cluster.
--
-- Run from the repository root: MS_HOST=build/ms-host/ms-host
-- MS_BUILD_DIR=build busted spec/cluster_spec.lua
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"
local q, slurp, contains = h.shell_quote, h.slurp, h.contains

local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long tv_sec, tv_usec; } ms_tv; int gettimeofday(ms_tv *, void *);")
local function wall()
    local tv = ffi.new("ms_tv")
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

local PUB = (os.getenv("MS_BUILD_DIR") or "build") .. "/agents/cluster_pub"

local broker = require "spec.support.nats"

local S = broker.suite()
local function host(args, opts)
    local dir = S.dir()
    return proc.start(dir, args, opts or { guard = 120 })
end
local function node(tag, sets)
    local p = host(("run spec/cluster/node.lua --workers 2 --cluster %s %s -- %s"):format(
        S.B.url, sets or "", tag))
    assert(p.wait_out("READY", 30), "node " .. tag .. " did not start: " .. p.err())
    p.id = p.out():match("READY (%x+)")
    return p
end
local function driver(scenario, tag, sets, flag)
    return host(("run spec/cluster/driver.lua --workers 2 --cluster %s %s -- %s %s %s"):format(
        S.B.url, sets or "", scenario, tag, flag or ""))
end

describe("a host and the cluster option", function()
    it("costs nothing without it: no id, the stats off", function()
        local dir = S.dir()
        local script = dir .. "/alone.lua"
        h.write_file(script, [[
local s = ms.metrics().cluster
print(tostring(ms.cluster.id()) .. " " .. tostring(s.on) .. " " .. s.state .. " " .. #ms.cluster.hosts())
print(tostring(ms.agent.whereis("nobody")))
]])
        local code, out, err = proc.run(dir, "run " .. q(script))
        assert.are.equal(0, code, err)
        assert.is_truthy(contains(out, "nil false off 0"), out)
        assert.is_truthy(contains(out, "nil"), out)
    end)

    it("does not start when the broker cannot be reached, and says why", function()
        local dir = S.dir()
        local script = dir .. "/never.lua"
        h.write_file(script, "print('ran')\n")
        -- Port 1 on loopback: nothing listens there.
        local code, out, err = proc.run(dir, "run " .. q(script) .. " --cluster nats://127.0.0.1:1")
        assert.are.equal(2, code, err)
        assert.is_falsy(contains(out, "ran"), out)
        assert.is_truthy(contains(err, "cluster nats://127.0.0.1:1: cannot join"), err)
    end)
end)

describe("a cluster of hosts", function()
    it("finds, calls, sends to, stops and monitors another host's agents", function()
        local a = node("a")
        local d = driver("basic", "a")
        assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
        local out = d.out()
        assert.is_truthy(out:match("FOUND %d+"), out)
        assert.is_truthy(contains(out, "CALL " .. a.id .. " 42 3"), out)
        assert.is_truthy(contains(out, "SELF-BACK true"), out)
        assert.is_truthy(contains(out, "SENT true"), out)
        assert.is_truthy(a.wait_out("GOT hello from", 20), a.out())
        assert.is_truthy(contains(out, "SEMREFUSED true"), out)
        assert.is_truthy(contains(out, "message.deep.sem is a semaphore"), out)
        assert.is_truthy(contains(out, "STOPEXIT exit killed"), out)
        assert.is_truthy(contains(out, "MISSING nil"), out)
        assert.is_truthy(contains(out, "HOSTS 2"), out)
        assert.is_truthy(out:match("STATS connected %d+ %d+"), out)
        a.signal("KILL")
        a.wait_exit(30)
    end)

    it("spawns agents on another host (file =, fn = between identical builds only)", function()
        local a = node("s")
        local d = driver("spawn", "s")
        assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
        local out = d.out()
        assert.is_truthy(out:match("SPAWNED ms%.agent%(%d+ remote%) nil"), out)
        assert.is_truthy(contains(out, "CHILD hi true"), out)
        assert.is_truthy(contains(out, "CHILDNAME true"), out)
        assert.is_truthy(contains(out, "CHILDCALL true child-s"), out)
        assert.is_truthy(contains(out, "CHILDEXIT killed"), out)
        assert.is_truthy(contains(out, "FNSPAWN true"), out)
        assert.is_truthy(contains(out, "NOHOST nil InvalidArgument: host 0123456789abcdef is not a live host"), out)
        assert.is_truthy(contains(out, "BADFIELD false"), out)
        assert.is_truthy(contains(out, "not memory_limit"), out)
        -- Another build: fn = is refused, naming both builds.
        local other = host(("run spec/cluster/driver.lua --workers 2 --cluster %s -- spawn s"):format(S.B.url),
            { guard = 120, prefix = "export MS_CLUSTER_BUILD_ID=other-build;" })
        assert.are.equal(0, other.wait_exit(60), other.out() .. other.err())
        out = other.out()
        assert.is_truthy(contains(out, "FNREFUSED InvalidArgument: fn travels only between identical builds: " ..
            "the spawner's build is other-build, host " .. a.id .. "'s is "), out)
        a.signal("TERM")
        assert.are.equal(0, a.wait_exit(30), a.err())
    end)

    it("tells every monitor of a killed host's agents 'noconnection', and calls fail at once", function()
        local rounds = tonumber(os.getenv("MS_CLUSTER_ROUNDS") or "3")
        local lat, fails = {}, {}
        for round = 1, rounds do
            local a = node("k" .. round)
            local d = driver("watch", "k" .. round)
            assert.is_truthy(d.wait_out("WATCHING", 60), d.out() .. d.err())
            proc.sleep(0.2)
            local t0 = wall()
            a.signal("KILL")
            assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
            local out = d.out()
            local n = 0
            for reason, t in out:gmatch("DOWN (%S+) ([%d.]+)") do
                assert.are.equal("noconnection", reason, out)
                lat[#lat + 1] = (tonumber(t) - t0) * 1000
                n = n + 1
            end
            assert.are.equal(3, n, out)
            -- The call in flight failed instead of waiting its 30 s.
            local ms_ = tonumber(out:match("CALLFAIL ([%d.]+)"))
            assert.is_truthy(ms_ and ms_ < 15000, out)
            fails[#fails + 1] = ms_
            assert.is_truthy(out:match("AFTER nil [%d.]+ .*noconnection"), out)
            a.wait_exit(30)
        end
        table.sort(lat)
        table.sort(fails)
        print(("cluster_kill_detect median_us=%.0f min_us=%.0f max_us=%.0f n=%d"):format(
            lat[math.floor((#lat + 1) / 2)] * 1000, lat[1] * 1000, lat[#lat] * 1000, #lat))
        print(("cluster_call_fail median_us=%.0f min_us=%.0f n=%d"):format(
            fails[math.floor((#fails + 1) / 2)] * 1000, fails[1] * 1000, #fails))
    end)

    it("tells monitors 'shutdown' when a host stops on SIGTERM", function()
        local a = node("t")
        local d = driver("watch", "t")
        assert.is_truthy(d.wait_out("WATCHING", 60), d.out() .. d.err())
        a.signal("TERM")
        assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
        local out = d.out()
        local n = 0
        for reason in out:gmatch("DOWN (%S+)") do
            assert.are.equal("shutdown", reason, out)
            n = n + 1
        end
        assert.are.equal(3, n, out)
        assert.are.equal(0, a.wait_exit(30), a.err())
    end)

    it("fences a host that was stopped past the threshold: its remote-spawned agents stop", function()
        local sets = "--set cluster_loss_after=1"
        local a = node("x", sets)
        local d = driver("fence", "x", sets)
        assert.is_truthy(d.wait_out("SPAWNED", 60), d.out() .. d.err())
        a.signal("STOP")
        -- Alive to the broker (its connection stays) but silent: lost.
        assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
        proc.sleep(0.5) -- stopped well past the threshold
        a.signal("CONT")
        assert.is_truthy(contains(d.out(), "DOWN noconnection"), d.out())
        -- Back, it sees its own silence and stops the child the other
        -- side has already counted as gone: it never runs twice.
        assert.is_truthy(a.wait_err("fenced 1 agent", 30), a.err())
        a.signal("TERM")
        assert.are.equal(0, a.wait_exit(30), a.err())
    end)

    it("declares nobody lost over a broker restart within the grace", function()
        local a = node("r")
        local flagdir = S.dir()
        local flag = flagdir .. "/restarted"
        local d = driver("restart", "r", nil, flag)
        assert.is_truthy(d.wait_out("WATCHING", 60), d.out() .. d.err())
        local port = S.B.url:match(":(%d+)$")
        broker.stop(S.B)
        proc.sleep(0.5)
        S.B = broker.start(port)
        h.write_file(flag, "yes")
        assert.are.equal(0, d.wait_exit(120), d.out() .. d.err())
        local out = d.out()
        assert.is_truthy(contains(out, "AFTER true nil"), out)
        assert.is_truthy(contains(out, "NAMED true"), out)
        assert.is_truthy(contains(out, "NOTICE nil"), out)
        assert.is_truthy(out:match("RECONNECTS [1-9]%d* LOST 0 connected"), out)
        a.signal("TERM")
        assert.are.equal(0, a.wait_exit(30), a.err())
    end)

    it("refuses forged and malformed messages, counts them, and carries on", function()
        local a = node("f")
        local subject = "ms.h." .. a.id
        local function le64(v)
            local t = {}
            for i = 1, 8 do t[i] = ("%02x"):format(v % 256); v = math.floor(v / 256) end
            return table.concat(t)
        end
        local other = "8877665544332211"
        -- A host id (16 hex digits) as its little-endian bytes.
        local function le_id(id)
            local t = {}
            for i = 15, 1, -2 do t[#t + 1] = id:sub(i, i + 1) end
            return table.concat(t)
        end
        local function env(version, kind, from, to, ref, value)
            return ("%02x%02x"):format(version, kind) .. from .. le64(to) .. le64(0) .. le64(ref) .. value
        end
        local str = "04" .. "05000000" .. ("hello"):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
        local bad = {
            "",                                                  -- empty
            "ff",                                                -- one byte
            env(2, 1, other, 2, 0, str),                         -- unknown version
            env(1, 99, other, 2, 0, str),                        -- unknown kind
            env(1, 1, other, 2, 0, "04ffffff7f41"),              -- a string longer than the bytes
            env(1, 1, other, 2, 0, "05ffffffff"),                -- a table of 4 billion pairs
            env(1, 1, other, 2, 0, ("05010000000401000000" .. "61"):rep(120) .. "00"), -- too deep
            env(1, 1, other, 2, 0, "060000000000000000" .. le64(5)), -- an agent of host 0
            env(1, 1, other, 2, 0, "05010000000300000000000000f87f00"), -- a NaN key
            env(1, 1, le64(0), 2, 0, str),                          -- a sender of host 0
            env(1, 1, le_id(a.id), 2, 0, str),                   -- ourselves
            env(1, 1, other, 2, 0, str) .. "00",                 -- bytes after the value
            env(1, 1, other, 2, 0, "07"),                        -- an unknown tag
        }
        local args = {}
        for i, b in ipairs(bad) do args[i] = q(b) end
        assert.is_true(proc.sh(("%s %s %s %s"):format(q(PUB), q(S.B.url), q(subject),
            table.concat(args, " "))))
        -- Heartbeats (HELLO, kind 10) whose value is not { build =, name = }
        -- strings: a bare string, a number for the name, a table for it, a
        -- name longer than a host name may be, a count of pairs past the end.
        local hb_from = "1122334455667788"
        local function s4(text)
            return "04" .. le64(#text):sub(1, 8) .. text:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
        end
        local bad_hb = {
            env(1, 10, hb_from, 0, 0, str),
            env(1, 10, hb_from, 0, 0, "0501000000" .. s4("name") .. "03" .. le64(0)),
            env(1, 10, hb_from, 0, 0, "0501000000" .. s4("name") .. "0500000000"),
            env(1, 10, hb_from, 0, 0, "0501000000" .. s4("name") .. s4(("n"):rep(300))),
            env(1, 10, hb_from, 0, 0, "0509000000" .. s4("name") .. s4("x")),
        }
        local hb_args = {}
        for i, b in ipairs(bad_hb) do hb_args[i] = q(b) end
        assert.is_true(proc.sh(("%s %s %s %s"):format(q(PUB), q(S.B.url), q("ms.hb"),
            table.concat(hb_args, " "))))
        -- The host still answers, and says what it refused.
        local d = driver("basic", "f")
        assert.are.equal(0, d.wait_exit(60), d.out() .. d.err())
        assert.is_truthy(a.wait_err("refused a message on " .. subject, 20), a.err())
        local refused = 0
        for _ in a.err():gmatch("refused a message on") do refused = refused + 1 end
        assert.is_true(refused >= 10, a.err())
        assert.is_truthy(contains(a.err(), "unknown version"), a.err())
        assert.is_truthy(contains(a.err(), "forged sender"), a.err())
        a.signal("TERM")
        assert.are.equal(0, a.wait_exit(30), a.err())
    end)
end)
