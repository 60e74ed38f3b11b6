-- The live task dump's benchmarks (docs/observability.md), run by ms-host:
--
--   ms-host run bench/lua/dump_bench.lua --workers 2 -- [--iters N] [NAME ...]
--
-- tasks_dump_10k_agents    10,000 agents with three waiting tasks each
--                          (a receive, a sleep, a channel receive); the time
--                          of one ms.tasks() (the table), n runs
-- tasks_dump_text_10k      the same dump as text (format = "text")
-- tasks_dump_poll_delay    while 4 agents run at full speed (each loops on
--                          ms.yield(), timing every gap between two of its
--                          iterations), dumps are taken back to back; prints
--                          the longest time one agent's answer took inside
--                          its poll (max_answer, what the dump adds to a
--                          poll) and the spinners' longest gap with dumps
--                          and without (same length of time, interleaved)
--
-- Lines: NAME median_us=... min_us=... n=... (max_us=... for the delay).

local args = { ... }
local iters
local names = {}
local i = 1
while i <= #args do
    if args[i] == "--iters" then
        iters = tonumber(args[i + 1])
        i = i + 2
    else
        names[#names + 1] = args[i]
        i = i + 1
    end
end

local function report(name, v, extra)
    table.sort(v)
    local med = v[math.floor((#v + 1) / 2)]
    print(("%s median_us=%.0f min_us=%.0f n=%d%s"):format(name, med * 1e6, v[1] * 1e6, #v,
        extra or ""))
    io.stdout:flush()
end

local function waiter()
    local ch = ms.channel(1)
    ms.spawn(function() ms.sleep(3600) end)
    ms.spawn(function() ch:recv() end)
    ms.recv()
end

-- Grows the crowd of waiting agents to n, and waits until each has its
-- three tasks waiting.
local crowd = {}
local function spawn_crowd(n)
    for k = #crowd + 1, n do
        crowd[k] = ms.agent.spawn{ name = "w" .. k, fn = waiter }
    end
    for _ = 1, 600 do
        local d = ms.tasks{ state = "waiting" }
        local ready = 0
        for _, a in ipairs(d.agents) do
            if a.name:match("^w%d+$") and #a.tasks == 3 then ready = ready + 1 end
        end
        if ready >= n then return end
        ms.sleep(0.1)
    end
    error("the crowd never got into its waits")
end

local function dump_10k(format)
    spawn_crowd(10000)
    local times = {}
    for _ = 1, iters or 10 do
        local t0 = ms.now()
        local d = assert(ms.tasks{ format = format })
        times[#times + 1] = ms.now() - t0
        if format == "table" then
            assert(#d.agents >= 10001, "agents missing: " .. #d.agents)
        end
    end
    return times
end

local function poll_delay()
    spawn_crowd(1000)
    local rounds = iters or 5
    local answers, with, without = {}, {}, {}
    for _ = 1, rounds do
        for _, dumping in ipairs({ true, false }) do
            local stop_at = ms.now() + 1
            local spinners = {}
            for k = 1, 4 do
                spinners[k] = ms.agent.spawn{ name = "spin" .. k, fn = function(a)
                    local worst, t = 0, ms.now()
                    while t < a[1] do
                        ms.yield()
                        local now = ms.now()
                        if now - t > worst then worst = now - t end
                        t = now
                    end
                    ms.agent.whereis("main"):send(worst)
                end, args = { stop_at } }
            end
            while ms.now() < stop_at do
                if dumping then
                    local d = assert(ms.tasks())
                    answers[#answers + 1] = d.max_answer
                else
                    ms.sleep(0.01)
                end
            end
            local worst = 0
            for _ = 1, 4 do
                local w = ms.recv(30)
                if w > worst then worst = w end
            end
            local into = dumping and with or without
            into[#into + 1] = worst
        end
    end
    table.sort(answers)
    report("tasks_dump_poll_delay", answers, (" max_us=%.0f"):format(answers[#answers] * 1e6))
    table.sort(with)
    table.sort(without)
    report("tasks_dump_spinner_gap_dumping", with, (" max_us=%.0f"):format(with[#with] * 1e6))
    report("tasks_dump_spinner_gap_idle", without,
        (" max_us=%.0f"):format(without[#without] * 1e6))
end

local all = { "tasks_dump_poll_delay", "tasks_dump_10k_agents", "tasks_dump_text_10k" }
if #names == 0 then names = all end
for _, name in ipairs(names) do
    if name == "tasks_dump_10k_agents" then
        report(name, dump_10k("table"))
    elseif name == "tasks_dump_text_10k" then
        report(name, dump_10k("text"))
    elseif name == "tasks_dump_poll_delay" then
        poll_delay()
    else
        error("no benchmark " .. name)
    end
end
os.exit(0)
