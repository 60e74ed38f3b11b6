-- spec-kind: subprocess
-- Agent names unique across the cluster (docs/cluster.md, "Names"): a
-- JetStream key-value bucket holds every name registered on any host.  A
-- second host registering a name gets an error naming the holder's host;
-- the name is free again when its agent ends or its host is lost (a host
-- SIGKILLed with names); two hosts racing for one name: exactly one wins,
-- ten rounds; forged entries in the bucket are refused or lead nowhere,
-- never to a crash; a broker without JetStream leaves names unique per
-- host, and the host says so.
--
-- Every nats-server and ms-host here is started by the spec and stopped
-- by its pid.  Pass or fail is what the hosts printed.  ctest label:
-- cluster.
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"
local nats = require "spec.support.nats"
local q, contains = h.shell_quote, h.contains

local PUB = (os.getenv("MS_BUILD_DIR") or "build") .. "/agents/cluster_pub"

local S = nats.suite()
local new_dir = S.dir
local function names_host(url, mode, ...)
    local args = table.concat({ ... }, " ")
    local p = proc.start(new_dir(), ("run spec/cluster/names.lua --workers 2 --cluster %s -- %s %s"):format(
        url, mode, args), { guard = 180 })
    assert(p.wait_out("READY", 60), "host " .. mode .. " did not start: " .. p.err())
    p.id = p.out():match("READY (%x+)")
    return p
end
local function stop(p)
    p.signal("TERM")
    return p.wait_exit(60)
end

describe("agent names in a cluster", function()
    it("are unique across hosts: the second gets an error naming the holder, until it ends", function()
        local flagdir = new_dir()
        local a = names_host(S.B.url, "hold", "uniq,other", flagdir .. "/release")
        assert.is_truthy(a.wait_out("HELD other", 30), a.out() .. a.err())
        assert.is_truthy(contains(a.out(), "READY " .. a.id .. " cluster"), a.out())
        local b = names_host(S.B.url, "try", "uniq")
        assert.are.equal(0, b.wait_exit(60), b.err())
        local out = b.out()
        assert.is_truthy(contains(out, "TAKEN ms.agent.spawn: the name 'uniq' is taken in the cluster by agent "), out)
        assert.is_truthy(contains(out, "of host " .. a.id), out)
        -- whereis asks the bucket: the holder's handle.
        assert.is_truthy(contains(out, "WHERE " .. a.id), out)
        -- The holder's agents end: the names are free for another host.
        local c = names_host(S.B.url, "take", "uniq")
        h.write_file(flagdir .. "/release", "now")
        assert.is_truthy(a.wait_out("RELEASED", 30), a.out())
        assert.is_truthy(c.wait_out("TOOK uniq", 60), c.out() .. c.err())
        for _, p in ipairs({ a, c }) do assert.are.equal(0, stop(p)) end
    end)

    it("are freed when their host is lost", function()
        local k = names_host(S.B.url, "hold", "k-1,k-2,k-3")
        assert.is_truthy(k.wait_out("HELD k-3", 30), k.out() .. k.err())
        local w = names_host(S.B.url, "whereis", "k-2")
        assert.are.equal(0, w.wait_exit(60), w.err())
        assert.is_truthy(contains(w.out(), "WHERE " .. k.id), w.out())
        local takers = {}
        for i = 1, 3 do takers[i] = names_host(S.B.url, "take", "k-" .. i) end
        k.signal("KILL")
        k.wait_exit(30)
        for i = 1, 3 do
            assert.is_truthy(takers[i].wait_out("TOOK k-" .. i, 60), takers[i].out() .. takers[i].err())
        end
        for i = 1, 3 do assert.are.equal(0, stop(takers[i])) end
    end)

    it("go to exactly one of two hosts that race for them (10 rounds)", function()
        local dir = new_dir()
        local r1 = names_host(S.B.url, "race", dir)
        local r2 = names_host(S.B.url, "race", dir)
        for i = 1, 10 do
            assert.is_truthy(r1.wait_out("WAIT " .. i, 60) and r2.wait_out("WAIT " .. i, 60),
                r1.out() .. r2.out())
            h.write_file(dir .. "/go-" .. i, "go")
            local function done(p)
                return p.out():match("WON " .. i .. "\n") or p.out():match("LOST " .. i .. " ")
            end
            assert.is_truthy(proc.wait_until(60, function() return done(r1) and done(r2) end),
                r1.out() .. r2.out())
            local won1 = r1.out():match("WON " .. i .. "\n") ~= nil
            local won2 = r2.out():match("WON " .. i .. "\n") ~= nil
            assert.is_true(won1 ~= won2, ("round %d: %s\n---\n%s"):format(i, r1.out(), r2.out()))
            local loser, winner = won1 and r2 or r1, won1 and r1 or r2
            assert.is_truthy(loser.out():match("LOST " .. i .. " [^\n]*taken in the cluster by agent %d+ of host "
                .. winner.id), loser.out())
        end
        for _, p in ipairs({ r1, r2 }) do assert.are.equal(0, stop(p)) end
    end)

    it("are registered whatever their characters, and refused when the spawn table changes its name", function()
        local a = names_host(S.B.url, "hold", q("odd name/\xc3\xa4"))
        assert.is_truthy(a.wait_out("HELD odd name/", 30), a.out() .. a.err())
        local b = names_host(S.B.url, "try", q("odd name/\xc3\xa4"))
        assert.are.equal(0, b.wait_exit(60), b.err())
        assert.is_truthy(contains(b.out(), "TAKEN ms.agent.spawn: the name 'odd name/"), b.out())
        assert.is_truthy(contains(b.out(), "WHERE " .. a.id), b.out())
        local x = names_host(S.B.url, "hostile")
        assert.are.equal(0, x.wait_exit(60), x.err())
        assert.is_truthy(contains(x.out(), "CHANGING false ms.agent.spawn: the name changed from 'changing-1'"), x.out())
        assert.is_truthy(contains(x.out(), "QUICK true"), x.out())
        assert.is_truthy(contains(x.out(), "QUICKFREE"), x.out())
        assert.are.equal(0, stop(a))
    end)

    it("are unique per host only with name_scope = \"host\"", function()
        local a = names_host(S.B.url, "scoped")
        local b = names_host(S.B.url, "scoped")
        for _, p in ipairs({ a, b }) do
            assert.is_truthy(p.wait_out("BADSCOPE", 30), p.out() .. p.err())
            assert.is_truthy(contains(p.out(), "SCOPED true"), p.out())
            assert.is_truthy(contains(p.out(), "BADSCOPE false ms.agent.spawn: name_scope must be \"cluster\" or \"host\", got 'everywhere'"), p.out())
        end
        for _, p in ipairs({ a, b }) do assert.are.equal(0, stop(p)) end
    end)

    it("refuse or ignore forged entries in the bucket", function()
        local live = names_host(S.B.url, "hold", "honest")
        assert.is_truthy(live.wait_out("HELD honest", 30), live.out())
        local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
        -- Written straight into the bucket's stream, as anyone on the
        -- broker could: garbage, a host 0, and a live host's id with an
        -- agent it does not have.
        assert.is_true(proc.sh(("%s %s %s %s"):format(q(PUB), q(S.B.url), q("$KV.ms_names.n.garbage"), hex("not a holder"))))
        assert.is_true(proc.sh(("%s %s %s %s"):format(q(PUB), q(S.B.url), q("$KV.ms_names.n.nohost"), hex("0000000000000000 5"))))
        assert.is_true(proc.sh(("%s %s %s %s"):format(q(PUB), q(S.B.url), q("$KV.ms_names.n.ghost"),
            hex(live.id .. " 999999"))))
        local g = names_host(S.B.url, "try", "garbage")
        assert.are.equal(0, g.wait_exit(60), g.err())
        assert.is_truthy(contains(g.out(), "TAKEN ms.agent.spawn: the name 'garbage' is taken in the cluster (its entry is not ours to read)"), g.out())
        -- A holder that is no host is gone: the name is taken over.
        local n = names_host(S.B.url, "try", "nohost")
        assert.are.equal(0, n.wait_exit(60), n.err())
        assert.is_truthy(contains(n.out(), "GOT"), n.out())
        -- A live host's agent that does not exist: a dead handle.
        local w = names_host(S.B.url, "whereis", "ghost")
        assert.are.equal(0, w.wait_exit(60), w.err())
        assert.is_truthy(contains(w.out(), "WHERE " .. live.id), w.out())
        assert.is_truthy(contains(w.out(), "EXIT noproc"), w.out())
        assert.are.equal(0, stop(live))
    end)

    it("stay unique per host only without JetStream, and the host says so", function()
        local dir = new_dir()
        proc.sh(("(nats-server -a 127.0.0.1 -p -1 --ports_file_dir %s >%s/log 2>&1 & echo $! >%s/pid)"):format(
            q(dir), q(dir), q(dir)))
        local pid = tonumber(h.slurp(dir .. "/pid"):match("%d+"))
        local url
        assert(proc.wait_until(20, function()
            url = h.slurp(("%s/nats-server_%d.ports"):format(dir, pid)):match('"(nats://[^"]+)"')
            return url
        end))
        local a = names_host(url, "hold", "same")
        assert.is_truthy(a.wait_out("HELD same", 30), a.out())
        assert.is_truthy(contains(a.err(), "agent names are unique on each host only"), a.err())
        assert.is_truthy(contains(a.out(), "READY " .. a.id .. " host"), a.out())
        local b = names_host(url, "hold", "same")
        assert.is_truthy(b.wait_out("HELD same", 30), b.out())
        for _, p in ipairs({ a, b }) do assert.are.equal(0, stop(p)) end
        nats.stop({ pid = pid, dir = dir })
    end)
end)
