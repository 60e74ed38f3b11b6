-- spec-kind: subprocess
-- Supervision across hosts (docs/supervision.md, "Across hosts"): a
-- supervisor whose child spec names hosts starts the child there by a
-- remote spawn, sees the host's loss as the child's exit
-- ("noconnection"), restarts it on another host the spec allows (or on
-- the first again once a host of that name is back, or here), stops it
-- when it stops itself, and never has it run twice: a host stopped
-- (SIGSTOP) past the threshold loses the child to another host and fences
-- its own copy when it runs again.
--
-- The child (spec/cluster/sup_child.lua) reports ticks to the
-- supervisor's host, which prints each change of the reporting host
-- (spec/cluster/sup_boss.lua); the worker hosts print how many such
-- children they run (spec/cluster/sup_worker.lua).  Pass or fail is what
-- they printed, never how long it took.  nats-server is our own, stopped
-- by its pid; so is every host.  ctest label: cluster.
local h = require "spec.support.helpers"
local proc = require "spec.support.proc"
local broker = require "spec.support.nats"
local q, contains = h.shell_quote, h.contains

local S = broker.suite()
local function host(args)
    local dir = S.dir()
    return proc.start(dir, args, { guard = 180 })
end
-- A worker host named name; p.id is its host id.
local function worker(name, sets)
    local p = host(("run spec/cluster/sup_worker.lua --workers 2 --cluster %s --set cluster_name=%s %s"):format(
        S.B.url, name, sets or ""))
    assert(p.wait_out("READY", 60), "worker " .. name .. " did not start: " .. p.err())
    p.id = p.out():match("READY (%x+)")
    return p
end
-- The supervisor's host: HOSTS is the child spec's host (comma list),
-- NEED the names it waits for.
local function boss(hosts, need, sets)
    local p = host(("run spec/cluster/sup_boss.lua --workers 2 --cluster %s %s -- %s %s"):format(
        S.B.url, sets or "", hosts, need or "-"))
    assert(p.wait_out("BOSS", 60), "the boss did not start: " .. p.err())
    p.id = p.out():match("BOSS (%x+)")
    return p
end
-- The hosts the child's ticks came from, in order of change.
local function ticks(p)
    local list = {}
    for id in p.out():gmatch("TICK (%x+)") do list[#list + 1] = id end
    return list
end
local function count(text, pattern)
    local n = 0
    for _ in text:gmatch(pattern) do n = n + 1 end
    return n
end

describe("a supervisor's child spec that names hosts", function()
    it("is refused with the field at fault when it cannot be placed", function()
        local dir = S.dir()
        local script = dir .. "/bad.lua"
        h.write_file(script, [[
local function try(host, start)
  local ok, err = pcall(ms.supervisor, { children = { { id = "c", host = host,
    start = start or { file = "x.lua" } } } })
  print(ok and "STARTED" or ("ERR " .. tostring(err)))
end
try("w1")
try({})
try({ "w1", 7 })
try("no spaces allowed")
try({ "local" }, { file = "x.lua", memory_limit = 1e6 }) -- only here: any field
try("any", { strategy = "one_for_one", children = {} })
]])
        local code, out, err = proc.run(dir, "run " .. q(script))
        assert.are.equal(0, code, err)
        assert.is_truthy(contains(out, "spec.children[1].host: names another host, but this host is in no cluster"), out)
        assert.is_truthy(contains(out, "spec.children[1].host: is an empty list"), out)
        assert.is_truthy(contains(out, "spec.children[1].host[2]: must be \"any\", \"local\", a host id or a host name"), out)
        assert.is_truthy(contains(out, "got 'no spaces allowed'"), out)
        -- host = "local" alone is this host: every spawn field is allowed.
        assert.is_truthy(contains(out, "STARTED"), out)
        local cl = host(("run %s --cluster %s"):format(q(script), S.B.url))
        assert.are.equal(0, cl.wait_exit(60), cl.err())
        out = cl.out()
        assert.is_truthy(contains(out, "spec.children[1].host: a nested supervisor runs on its parent's host"), out)
        -- A host name is checked at start: "any" would be ambiguous.
        local named = host(("run %s --cluster %s --set cluster_name=any"):format(q(script), S.B.url))
        assert.are.equal(2, named.wait_exit(60), named.err())
        assert.is_truthy(contains(named.err(), "cluster_name: 'any' is not a host name"), named.err())
    end)

    it("restarts the child on another allowed host when its host is killed, on the first once it is back, and not after a SIGTERM", function()
        local w1 = worker("w1")
        local w2 = worker("w2")
        local b = boss("w1,w2", "w1,w2")
        assert.is_truthy(b.wait_out("TICK " .. w1.id, 60), b.out() .. b.err())
        assert.is_truthy(w1.wait_out("CHILDREN 1", 30), w1.out())
        w1.signal("KILL")
        assert.is_truthy(b.wait_out("TICK " .. w2.id, 60), b.out() .. b.err())
        assert.is_truthy(contains(b.out(), "EVENT child_exited " .. w1.id .. " noconnection"), b.out())
        w1.wait_exit(30)
        -- A host of the same name comes back (a new id): the first choice again.
        local w1b = worker("w1")
        assert.are_not.equal(w1.id, w1b.id)
        proc.sleep(0.5) -- its heartbeats reach the boss (else: w2's loss leaves no host)
        w2.signal("KILL")
        assert.is_truthy(b.wait_out("TICK " .. w1b.id, 60), b.out() .. b.err())
        w2.wait_exit(30)
        -- A graceful stop of the child's host: reason "shutdown", no restart.
        w1b.signal("TERM")
        assert.are.equal(0, w1b.wait_exit(60), w1b.err())
        assert.is_truthy(b.wait_out("EVENT child_exited " .. w1b.id .. " shutdown", 60), b.out())
        assert.is_truthy(b.wait_out("STATUS stopped", 30), b.out())
        proc.sleep(1) -- a restart would come within its 0.2 s backoff
        local out = b.out()
        assert.are.same({ w1.id, w2.id, w1b.id }, ticks(b))
        assert.are.equal(2, count(out, "EVENT restarted"), out)
        assert.is_falsy(out:match("STATUS stopped[^\n]*\n.*STATUS running"), out)
        b.signal("TERM")
        assert.are.equal(0, b.wait_exit(60), b.err())
    end)

    it("stops its remote child when it stops, and a child whose supervisor's host is lost stops too", function()
        local w = worker("w3")
        -- SIGTERM: the supervisor stops the child before its host goes.
        local b = boss("any", "w3")
        assert.is_truthy(b.wait_out("TICK " .. w.id, 60), b.out() .. b.err())
        assert.is_truthy(w.wait_out("CHILDREN 1", 30), w.out())
        b.signal("TERM")
        assert.are.equal(0, b.wait_exit(60), b.err())
        assert.is_truthy(w.wait_out("CHILDREN 0", 30), w.out())
        assert.is_falsy(contains(w.err(), "spawned by host " .. b.id), w.err())
        -- SIGKILL: nobody stops it but its host, which sees the spawner lost.
        local b2 = boss("any", "w3")
        assert.is_truthy(b2.wait_out("TICK " .. w.id, 60), b2.out() .. b2.err())
        assert.is_truthy(proc.wait_until(30, function() return count(w.out(), "CHILDREN 1") == 2 end), w.out())
        b2.signal("KILL")
        assert.is_truthy(w.wait_err("stopped 1 agent spawned by host " .. b2.id, 30), w.err())
        assert.is_truthy(proc.wait_until(30, function() return count(w.out(), "CHILDREN 0") == 3 end), w.out())
        b2.wait_exit(30)
        -- "any" falls back to this host when no other is left.
        local b3 = boss("any", "w3")
        assert.is_truthy(b3.wait_out("TICK " .. w.id, 60), b3.out() .. b3.err())
        w.signal("KILL")
        assert.is_truthy(b3.wait_out("TICK " .. b3.id, 60), b3.out() .. b3.err())
        assert.is_truthy(contains(b3.out(), "EVENT child_exited " .. w.id .. " noconnection"), b3.out())
        b3.signal("TERM")
        assert.are.equal(0, b3.wait_exit(60), b3.err())
        w.wait_exit(30)
    end)

    it("moves the child off a host stopped past the threshold, which fences its copy: it never runs twice", function()
        local sets = "--set cluster_loss_after=1"
        local s1 = worker("s1", sets)
        local s2 = worker("s2", sets)
        local b = boss("s1,s2", "s1,s2", sets)
        assert.is_truthy(b.wait_out("TICK " .. s1.id, 60), b.out() .. b.err())
        assert.is_truthy(s1.wait_out("CHILDREN 1", 30), s1.out())
        s1.signal("STOP")
        assert.is_truthy(b.wait_out("TICK " .. s2.id, 60), b.out() .. b.err())
        assert.is_truthy(contains(b.out(), "EVENT child_exited " .. s1.id .. " noconnection"), b.out())
        proc.sleep(0.5) -- stopped well past the threshold
        s1.signal("CONT")
        -- Back, it finds it was cut off and stops its copy of the child.
        assert.is_truthy(s1.wait_err("fenced 1 agent", 30), s1.err())
        assert.is_truthy(s1.wait_out("CHILDREN 0", 30), s1.out())
        assert.is_truthy(s2.wait_out("CHILDREN 1", 30), s2.out())
        proc.sleep(1)
        -- The ticks the supervisor's host counted: s1's, then s2's only.
        assert.are.same({ s1.id, s2.id }, ticks(b))
        assert.are.equal(1, count(b.out(), "EVENT restarted"), b.out())
        -- Its own silence is not the others': it declared nobody lost, so
        -- their names stay registered (the supervisor's, "sup").
        assert.is_falsy(s1.err():match("host %x+ lost"), s1.err())
        local t = host(("run spec/cluster/names.lua --cluster %s -- try sup"):format(S.B.url))
        assert.are.equal(0, t.wait_exit(60), t.err())
        assert.is_truthy(contains(t.out(), "TAKEN ms.agent.spawn: the name 'sup' is taken in the cluster by agent"), t.out())
        assert.is_truthy(contains(t.out(), "of host " .. b.id), t.out())
        for _, p in ipairs({ b, s1, s2 }) do p.signal("TERM") end
        assert.are.equal(0, b.wait_exit(60), b.err())
        s1.wait_exit(60)
        s2.wait_exit(60)
    end)
end)
