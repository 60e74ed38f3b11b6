-- The chaos soak (docs/testing.md): for a bounded time, agents that crash,
-- run out of memory, loop, raise from finalizers, are stopped and are
-- restarted by a supervisor, while senders flood them; then exact message
-- accounting and the host's memory back near its start.
--
--   ms-host run spec/stress/chaos.lua --set stall_threshold=0.2 --set mailbox_limit=2000 -- [SECONDS]
--   ./dev soak [SECONDS]          (ctest: host.chaos_soak, a few seconds, every build)
--
-- The cast:
--   * consumers c1..c4, children of a one_for_one supervisor with a
--     memory limit: each receives messages and counts them on a semaphore
--     of its own; a message may tell it to crash, to run out of memory, to
--     raise from a finalizer or to busy-loop for a while (the health
--     monitor reports the stall);
--   * senders s1..s3 flood the consumers (whichever incarnation the name
--     has now), counting per incarnation the sends the host accepted;
--   * a chaos agent stops consumers at random and starts interpreted
--     loopers (stopped while they loop) and agents that exhaust their
--     memory limit;
--   * this main agent: the ledger.  It monitors every consumer
--     incarnation, ends it all from the script (no signal), and checks:
--       - for every incarnation: accepted = received + unread, exactly
--         (received: the host's count of the messages the incarnation's
--         code got, a:info().received once it has exited; unread: its exit
--         notice, which counts a message a task held but never saw);
--       - the consumer's own count (incremented right after ms.recv)
--         equals received, or is one short when the incarnation was ended
--         from outside between the two (a stop interrupts any instruction);
--       - every agent it started has ended, no Lua heap of theirs is left,
--         and the process's resident memory is back near where it started.
-- Exits non-zero (an error in the main agent) on any failure, after
-- printing the figures.

local seconds = tonumber((...)) or tonumber(os.getenv("MS_SOAK_SECONDS") or "") or 3
local scale = tonumber(os.getenv("MS_TEST_SCALE") or "1") or 1
-- Resident memory may grow by this much (MiB) over the run: allocator
-- caches and arenas do not all go back to the system.  The sanitizer
-- builds keep freed memory in quarantine: they set it higher.
local rss_slack = tonumber(os.getenv("MS_SOAK_RSS_SLACK_MB") or "") or 64

local CONSUMERS, SENDERS = 4, 3

local function rss_mib()
    local f = io.open("/proc/self/statm")
    if not f then return 0 end
    local pages = f:read("*n") and f:read("*n")
    f:close()
    return (pages or 0) * 4096 / 1048576
end

-- ---- the cast (agent functions: no upvalues, everything in args) ----

local function consumer(args)
    local processed = ms.semaphore(0)
    args.ledger:send({ hello = ms.self(), processed = processed })
    while true do
        local m = ms.recv()
        processed:add_permits(1)
        local chaos = type(m) == "table" and m.chaos
        if chaos == "crash" then
            error("chaos: asked to crash", 0)
        elseif chaos == "oom" then
            local t = {}
            for i = 1, 1e8 do t[i] = ("m"):rep(40) .. i end
        elseif chaos == "finalizer" then
            local u = newproxy(true)
            getmetatable(u).__gc = function() error("chaos: raised from a finalizer", 0) end
            u = nil
            collectgarbage()
        elseif chaos == "loop" then
            local stop = ms.now() + 0.3
            while ms.now() < stop do end
        end
    end
end

local function sender(args)
    local accepted, handles, seq = {}, {}, 0
    local kinds = { "crash", "oom", "finalizer", "loop" }
    math.randomseed(args.seed)
    while true do
        local m, reply = ms.recv(0)
        if m == "stop" then
            reply({ accepted = accepted, handles = handles, sent = seq })
            return
        end
        for _ = 1, 50 do
            local name = args.names[math.random(#args.names)]
            local a = ms.agent.whereis(name)
            if a then
                seq = seq + 1
                local chaos = math.random() < args.chaos_rate and kinds[math.random(#kinds)] or nil
                local payload = { s = args.id, n = seq, chaos = chaos, pad = ("p"):rep(seq % 64) }
                if a:send(payload) then
                    local id = a:id()
                    accepted[id] = (accepted[id] or 0) + 1
                    handles[id] = a
                end
            end
        end
        ms.yield()
    end
end

local function chaos_agent(args)
    math.randomseed(args.seed)
    local loopers, hogs, stops, rounds = 0, 0, 0, 0
    while true do
        local m, reply = ms.recv(0.02)
        if m == "stop" then
            reply({ loopers = loopers, hogs = hogs, stops = stops, rounds = rounds })
            return
        end
        rounds = rounds + 1
        -- Every round stops a consumer; every other round starts a looper
        -- or a memory hog (rounds are slow under a flood: this agent waits
        -- its turn like any other).
        local a = ms.agent.whereis(args.names[math.random(#args.names)])
        if a then
            a:stop("chaos")
            stops = stops + 1
        end
        if rounds % 4 == 1 then
            -- Interpreted, so a:stop interrupts its loop; it stays in one
            -- poll until then (a stall report when it lasts).
            local l = ms.agent.spawn{ jit = false, fn = function() while true do end end }
            ms.sleep(0.05)
            l:stop("chaos: enough looping")
            loopers = loopers + 1
        elseif rounds % 4 == 3 then
            ms.agent.spawn{ memory_limit = 64 * 1024, fn = function()
                local t = {}
                for i = 1, 1e8 do t[i] = { i } end
            end }
            hogs = hogs + 1
        end
    end
end

-- ---- the ledger ----

local names = {}
for i = 1, CONSUMERS do names[i] = "chaos.c" .. i end

collectgarbage()
local agents_at_start = #ms.agents()
local rss_start = rss_mib()

local children = {}
for i = 1, CONSUMERS do
    children[i] = { id = names[i], shutdown = "brutal_kill",
                    start = { fn = consumer, name = names[i], memory_limit = 1024 * 1024,
                              args = { ledger = ms.self() } } }
end
local sup = assert(ms.supervisor{ name = "chaos.sup", strategy = "one_for_one",
                                  intensity = 100000, period = 1, children = children })

local senders = {}
for i = 1, SENDERS do
    senders[i] = ms.agent.spawn{ name = "chaos.s" .. i, fn = sender,
                                 args = { id = i, names = names, seed = 1000 + i,
                                          chaos_rate = 0.002 } }
end
local chaos = ms.agent.spawn{ name = "chaos.monkey", fn = chaos_agent,
                              args = { names = names, seed = 7 } }

-- Incarnations: id -> { handle, processed (semaphore), exit (notice) }.
local inc = {}
local function note(m)
    if type(m) ~= "table" then return end
    if m.hello then
        local id = m.hello:id()
        inc[id] = inc[id] or {}
        inc[id].handle, inc[id].processed = m.hello, m.processed
        ms.monitor(m.hello)
    elseif m.event == "exit" and m.agent then
        local id = m.agent:id()
        inc[id] = inc[id] or { handle = m.agent }
        inc[id].exit = m
    end
end

local deadline = ms.now() + seconds
while ms.now() < deadline do
    note(ms.recv(math.max(0.001, deadline - ms.now())))
end

-- The end, from the script: senders first (their counts), then the chaos
-- agent, then the tree.
local accepted, sent = {}, 0
for _, s in ipairs(senders) do
    local report = assert(s:call("stop", 30), "a sender did not report")
    sent = sent + report.sent
    for id, n in pairs(report.accepted) do
        accepted[id] = (accepted[id] or 0) + n
        inc[id] = inc[id] or {}
        inc[id].handle = inc[id].handle or report.handles[id]
    end
end
local monkey = assert(chaos:call("stop", 30), "the chaos agent did not report")
sup:stop()
-- Every incarnation's exit notice (monitoring one that has exited sends
-- its notice at once).
for id, r in pairs(inc) do
    if not r.exit and r.handle and not r.monitored then ms.monitor(r.handle) end
end
local waiting_until = ms.now() + 30
while ms.now() < waiting_until do
    local missing = false
    for _, r in pairs(inc) do
        if not r.exit then missing = true break end
    end
    if not missing then break end
    note(ms.recv(1))
end

-- The books.
local failures, totals = {}, { accepted = 0, received = 0, unread = 0, processed = 0 }
local reasons, incarnations = {}, 0
for id, r in pairs(inc) do
    incarnations = incarnations + 1
    local a = accepted[id] or 0
    if not r.exit then
        failures[#failures + 1] = ("incarnation %d: no exit notice"):format(id)
    else
        local info = r.handle:info()
        local received, unread = info.received, r.exit.unread
        local processed = r.processed and r.processed:available() or 0
        reasons[r.exit.reason] = (reasons[r.exit.reason] or 0) + 1
        totals.accepted = totals.accepted + a
        totals.received = totals.received + received
        totals.unread = totals.unread + unread
        totals.processed = totals.processed + processed
        if a ~= received + unread then
            failures[#failures + 1] = ("incarnation %d (%s): accepted %d ~= received %d + unread %d")
                :format(id, r.exit.reason, a, received, unread)
        end
        local short = received - processed
        if short < 0 or short > 1 or (short == 1 and r.exit.reason == "normal") then
            failures[#failures + 1] = ("incarnation %d (%s): received %d, counted %d by itself")
                :format(id, r.exit.reason, received, processed)
        end
    end
end

-- Memory: every agent started here has ended; their heaps are gone.
ms.sleep(0.2)
collectgarbage()
collectgarbage()
local left = ms.agents()
local rss_end = rss_mib()
local heap = 0
for _, row in ipairs(left) do
    if row.name ~= "main" then heap = heap + row.memory end
end
if #left > agents_at_start then
    local names_left = {}
    for _, row in ipairs(left) do names_left[#names_left + 1] = row.name end
    failures[#failures + 1] = ("%d agents left (started with %d): %s"):format(#left,
        agents_at_start, table.concat(names_left, ", "))
end
if rss_end > rss_start + rss_slack then
    failures[#failures + 1] = ("resident memory %.1f MiB at the end, %.1f MiB at the start "
        .. "(allowed %d MiB more)"):format(rss_end, rss_start, rss_slack)
end

local rs = {}
for k, n in pairs(reasons) do rs[#rs + 1] = k .. " " .. n end
table.sort(rs)
print(("chaos: %.1f s, %d incarnations (%s); the chaos agent: %d rounds, %d stops, %d loopers, "
    .. "%d memory hogs"):format(seconds, incarnations, table.concat(rs, ", "), monkey.rounds,
    monkey.stops, monkey.loopers, monkey.hogs))
print(("chaos: sent %d, accepted %d = received %d + unread %d; counted by the consumers %d")
    :format(sent, totals.accepted, totals.received, totals.unread, totals.processed))
print(("chaos: resident memory %.1f MiB -> %.1f MiB; %d agents left, Lua heap of others %d bytes")
    :format(rss_start, rss_end, #left, heap))
if #failures > 0 then
    error("chaos: " .. #failures .. " failure(s):\n  " .. table.concat(failures, "\n  "), 0)
end
print("chaos: ok")
