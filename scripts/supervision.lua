-- supervision.lua: a supervision tree, shown as it runs.
--   ms-host run scripts/supervision.lua
--
--   root (one_for_one, at most 3 restarts in 5 s)
--   |-- cache       permanent: crashes once, 0.3 s after it starts; restarted
--   |-- jobs        a nested supervisor (at most 2 restarts in 1 s)
--   |   |-- flaky   crashes at once, three times in a row: too many for jobs,
--   |   |           which stops its children and exits ("escalation");
--   |   |           root restarts jobs, and this time flaky stays up
--   |   `-- steady
--   |-- api         permanent, quiet
--   `-- migration   transient: does its work and exits normally; not restarted
--
-- Then the whole tree is stopped: children in reverse start order, each
-- asked to stop ({ event = "shutdown" }) and given its shutdown timeout.
--
-- Agents share nothing, so everything reports to the main agent (found by
-- its name, "main") as lines of text, which this script prints in arrival
-- order with the time since start.  The supervisors report through their
-- on_event hook.  It finishes by itself in about two seconds.

local started = ms.now()

-- Prints every line sent to this agent.
local printer = ms.spawn(function()
    while true do
        local line = ms.recv()
        if type(line) == "string" then
            print(("%5.2fs  %s"):format(ms.now() - started, line))
        end
    end
end)

-- The supervisors' hook: runs inside each supervisor's agent (it is copied
-- there as bytecode, so it may use only ms and globals).
local function report(e)
    local console = ms.agent.whereis("main")
    if not console then return end
    if e.event == "child_exited" then
        console:send(("%s: child %s exited (%s%s) -> %s"):format(e.supervisor, tostring(e.id),
            e.reason, e.message and (": " .. e.message) or "", e.action))
    elseif e.event == "restarted" then
        console:send(("%s: restarted %s (restart #%d)"):format(e.supervisor, tostring(e.id),
            e.restarts))
    elseif e.event == "escalated" then
        console:send(("%s: %s: stopping my children and exiting; my supervisor decides"):format(
            e.supervisor, e.message))
    end
end

-- A worker that says when it starts and stops cleanly when asked.
local function worker(args)
    local console = ms.agent.whereis("main")
    local restarts = ms.self():info().restarts
    -- It handles { event = "shutdown" } itself: a worker that does not trap
    -- exits is stopped at once by its supervisor (OTP's rule).
    ms.trap_exit(true)
    console:send(("%s: started%s"):format(args.name,
        restarts > 0 and (" (restart #" .. restarts .. ")") or ""))
    if args.crash_after and restarts == 0 then
        ms.sleep(args.crash_after)
        error(args.name .. ": corrupted state, crashing", 0)
    end
    while true do
        local m = ms.recv()
        if type(m) == "table" and m.event == "shutdown" then
            console:send(args.name .. ": shutting down cleanly")
            return
        end
    end
end

-- Crashes at once while `failures` has permits left (one per crash), so
-- its first three runs crash whatever supervisor runs them.
local function flaky(args)
    local console = ms.agent.whereis("main")
    if args.failures:forget(1) == 1 then
        console:send("flaky: started, cannot reach its backend: crashing")
        error("flaky: backend unreachable", 0)
    end
    ms.trap_exit(true) -- it shuts down cleanly on its supervisor's request
    console:send("flaky: started, backend reachable this time")
    while true do
        local m = ms.recv()
        if type(m) == "table" and m.event == "shutdown" then
            console:send("flaky: shutting down cleanly")
            return
        end
    end
end

local function migration()
    local console = ms.agent.whereis("main")
    console:send("migration: started, migrating")
    ms.sleep(0.2)
    console:send("migration: done, exiting normally")
end

local failures = ms.semaphore(3)

print("starting the tree")
local root = assert(ms.supervisor{
    name = "root",
    strategy = "one_for_one",
    intensity = 3, period = 5,
    on_event = report,
    children = {
        { id = "cache", start = { fn = worker, args = { name = "cache", crash_after = 0.3 } },
          shutdown = 1 },
        { id = "jobs", type = "supervisor", start = {
            name = "jobs", strategy = "one_for_one", intensity = 2, period = 1,
            on_event = report,
            children = {
                { id = "flaky", start = { fn = flaky, args = { failures = failures } }, shutdown = 1 },
                { id = "steady", start = { fn = worker, args = { name = "steady" } }, shutdown = 1 },
            },
        } },
        { id = "api", start = { fn = worker, args = { name = "api" } }, shutdown = 1 },
        { id = "migration", start = { fn = migration }, restart = "transient" },
    },
})

ms.sleep(1.2)

local function show(sup, indent)
    for _, c in ipairs(assert(sup:which_children())) do
        print(("%s%-10s %-10s %-9s %-10s restarts %d"):format(indent, tostring(c.id), c.type,
            c.restart, c.status, c.restarts))
        if c.type == "supervisor" and c.agent then
            show(assert(ms.supervisor.attach(c.agent)), indent .. "    ")
        end
    end
end

print("\nthe tree after 1.2 s:")
show(root, "  ")
local n, s = root:count_children(), root:stats()
print(("root: %d specs, %d active, %d supervisors, %d workers; %d restarts, %d escalations received\n")
    :format(n.specs, n.active, n.supervisors, n.workers, s.restarts, s.escalations))

print("stopping the tree (reverse start order)")
ms.monitor(root.agent)
assert(root:stop())
ms.sleep(0.1) -- let the last lines arrive
printer:abort()
print(("stopped after %.2f s"):format(ms.now() - started))
