-- lbench.lua - the Lua-level workloads of ../shared/peers (tarantool's
-- lua_bench.lua and erlang's bench.erl) on ms-host, with the same
-- parameters, the same number of timed runs and the same names, so that
-- the lines pair by name with the peers' output.
--
--   ms-host run bench/lua/lbench.lua [--workers N] -- [--iters N] [NAME ...]
--
-- NAME is a full name (L1_spawn_join_10k) or its short form (L1, A3,
-- agent_memory); no NAME runs them all.  --iters N replaces every
-- workload's run count (the defaults are the peers').
--
-- Output, one line per workload (bench/README.md):
--   NAME median_us=%.1f min_us=%.1f n=%d
-- and for agent_memory:
--   agent_memory heap_bytes=%d rss_bytes=%d n=%d
--
-- Every workload runs once untimed (warm-up), then n timed runs.  L* run
-- as coroutine tasks of this script's agent (the main agent); A* run in a
-- "driver" agent on the workers, which plays the Erlang bench's calling
-- process (see in_driver below); A*_main run the same from the main agent.
-- Any lost message, failed join or failed send is fatal.

local now = ms.now

local function fail(fmt, ...)
  error(string.format(fmt, ...), 2)
end

-- Runs f once untimed, then n times timed; returns the sorted times (us).
local function measure(n, f)
  f()
  local v = {}
  for i = 1, n do
    local t0 = now()
    f()
    v[i] = (now() - t0) * 1e6
  end
  table.sort(v)
  return v
end

local function report(name, v)
  local n = #v
  -- median = sorted[n/2] (0-based), as the peers and bench/README.md
  print(string.format("%s median_us=%.1f min_us=%.1f n=%d", name, v[math.floor(n / 2) + 1], v[1], n))
  io.stdout:flush()
end

local iters_override

local function time(name, n, f)
  report(name, measure(iters_override or n, f))
end

-- ---------------------------------------------------------------------
-- L: coroutine tasks inside one agent (peer: tarantool fibers).
-- ---------------------------------------------------------------------

-- L1: spawn 10,000 tasks that each return their index, then join each.
local function l1()
  local n = 10000
  local ts = {}
  for i = 1, n do
    ts[i] = ms.spawn(function() return i end)
  end
  for i = 1, n do
    local ok, v = ts[i]:join()
    if not ok or v ~= i then fail("L1: task %d: %s %s", i, tostring(ok), tostring(v)) end
  end
end

-- L2: 200 tasks each yield 1,000 times, then report on a channel of
-- capacity 200; the main task takes the 200 reports.
local function l2()
  local tasks, yields = 200, 1000
  local done = ms.channel(tasks)
  for _ = 1, tasks do
    ms.spawn(function()
      for _ = 1, yields do ms.yield() end
      done:send(true)
    end)
  end
  for i = 1, tasks do
    if done:recv() ~= true then fail("L2: report %d missing", i) end
  end
end

-- L3: 10,000 round trips between two tasks over two channels of capacity
-- 1 (a: requests, b: replies); the pinger reports on a third channel.
local function l3()
  local rounds = 10000
  local a, b, done = ms.channel(1), ms.channel(1), ms.channel(1)
  ms.spawn(function()
    for _ = 1, rounds do
      local x = a:recv()
      b:send(x)
    end
  end)
  ms.spawn(function()
    for i = 1, rounds do
      a:send(i)
      if b:recv() ~= i then fail("L3: round %d: wrong reply", i) end
    end
    done:send(true)
  end)
  if done:recv() ~= true then fail("L3: no completion") end
end

-- L5: 10,000 tasks each sleep 1 ms, then report on a channel of capacity
-- 10,000; the main task takes the 10,000 reports.
local function l5()
  local tasks = 10000
  local done = ms.channel(tasks)
  for _ = 1, tasks do
    ms.spawn(function()
      ms.sleep(0.001)
      done:send(true)
    end)
  end
  for i = 1, tasks do
    if done:recv() ~= true then fail("L5: report %d missing", i) end
  end
end

-- ---------------------------------------------------------------------
-- A: agents (peer: Erlang processes).  Agent functions take no upvalues
-- (an agent shares nothing): data arrives in args, `ms` is the agent's
-- own global.
-- ---------------------------------------------------------------------

local function reporter(args)
  args.parent:send(args.i)
end

-- A1: spawn 1,000 agents that each send one message back to the main
-- agent's mailbox; receive the 1,000 messages.
local function a1()
  local n = 1000
  local me = ms.self()
  for i = 1, n do
    ms.agent.spawn{ fn = reporter, args = { parent = me, i = i } }
  end
  local seen = 0
  for _ = 1, n do
    local v = ms.recv()
    if type(v) ~= "number" then fail("A1: expected an index, got %s", tostring(v)) end
    seen = seen + 1
  end
  if seen ~= n then fail("A1: %d of %d", seen, n) end
end

local function ponger()
  while true do
    local m, from = ms.recv()
    if m == "stop" then return end
    from:send("pong")
  end
end

-- A2: spawn a pong agent, then 10,000 times send it "ping" and wait for
-- its "pong" (send/recv pairs, as Erlang's `P ! {ping, self()}, receive
-- pong`: the sender travels with the message); finally tell it to stop.
local function a2()
  local rounds = 10000
  local p = ms.agent.spawn{ fn = ponger }
  for i = 1, rounds do
    local ok, err = p:send("ping")
    if not ok then fail("A2: send %d: %s", i, tostring(err)) end
    local r = ms.recv()
    if r ~= "pong" then fail("A2: round %d: got %s", i, tostring(r)) end
  end
  p:send("stop")
end

local function collector(args)
  for _ = 1, args.expect do
    ms.recv()
  end
  args.parent:send("collected")
end

local function sender(args)
  local c = args.collector
  for i = 1, args.count do
    local ok, err = c:send(i)
    if not ok then error("A3: send " .. i .. ": " .. tostring(err)) end
  end
end

-- A3: a collector agent counts 1,000,000 messages from 4 sender agents
-- (250,000 each), then tells the main agent.
local function a3()
  local senders, per = 4, 250000
  local c = ms.agent.spawn{ fn = collector, args = { expect = senders * per, parent = ms.self() } }
  for _ = 1, senders do
    ms.agent.spawn{ fn = sender, args = { collector = c, count = per } }
  end
  local r = ms.recv()
  if r ~= "collected" then fail("A3: got %s", tostring(r)) end
end

-- ---------------------------------------------------------------------
-- Footprint: memory per idle agent, time per agent spawn.
-- ---------------------------------------------------------------------

local PAGE = 4096 -- /proc/self/statm counts pages (4 KiB on x86-64 and arm64 Linux)

local function rss_bytes()
  local f = assert(io.open("/proc/self/statm", "r"))
  local _, resident = f:read("*n", "*n")
  f:close()
  return resident * PAGE
end

local function idler(args)
  args.parent:send(args.i)
  local m = ms.recv()
  if m ~= "stop" then error("idler: got " .. tostring(m)) end
end

-- Spawn 1,000 agents that report, then block in ms.recv(); read each one's
-- Lua heap from ms.metrics().agents and the process RSS growth.
local function agent_memory()
  local n = 1000
  collectgarbage()
  local me = ms.self()
  local rss0 = rss_bytes()
  local hs, ids = {}, {}
  for i = 1, n do
    hs[i] = ms.agent.spawn{ fn = idler, args = { parent = me, i = i } }
    ids[hs[i]:id()] = true
  end
  for _ = 1, n do
    if type(ms.recv(30)) ~= "number" then fail("agent_memory: a report is missing") end
  end
  ms.sleep(0.05) -- each has reached its ms.recv() by now
  local rss1 = rss_bytes()
  local heap, counted = 0, 0
  for _, info in ipairs(ms.metrics().agents) do
    if ids[info.id] then
      heap = heap + info.memory
      counted = counted + 1
    end
  end
  if counted ~= n then fail("agent_memory: metrics list %d of the %d agents", counted, n) end
  for i = 1, n do hs[i]:send("stop") end
  -- Wait until they are all gone, so that later workloads start clean.
  for i = 1, n do
    while hs[i]:info().state ~= "exited" do ms.sleep(0.001) end
  end
  print(string.format("agent_memory heap_bytes=%d rss_bytes=%d n=%d",
    math.floor(heap / n + 0.5), math.floor((rss1 - rss0) / n + 0.5), n))
  io.stdout:flush()
end

local function empty() end

-- agent_spawn: spawn 1,000 agents that return at once and wait until all
-- have exited; the time divided by 1,000 (the state is created, started
-- and closed on the workers, so the wait is part of the cost).
local function agent_spawn()
  local n = 1000
  local v = measure(iters_override or 20, function()
    local hs = {}
    for i = 1, n do hs[i] = ms.agent.spawn{ fn = empty } end
    for i = 1, n do
      while hs[i]:info().state ~= "exited" do ms.sleep(0.0005) end
    end
  end)
  for i = 1, #v do v[i] = v[i] / n end
  report("agent_spawn", v)
end

-- ---------------------------------------------------------------------
-- S: stopping agents (no peer; the targets of the "stop means stop" issue).
-- ---------------------------------------------------------------------

-- S1: a one_for_all supervisor restarts after a child crashes, while its
-- sibling sleeps and does not trap exits (it is stopped at once).  One
-- run: the crash until both children have started again.
local s1_state
local function s1()
  if not s1_state then
    local log = ms.channel(16)
    local sup = assert(ms.supervisor{
      strategy = "one_for_all", intensity = 1000000, period = 1,
      children = {
        { id = "crasher", start = { args = log, fn = function(log)
            log:send("crasher") if ms.recv() == "crash" then error("crash", 0) end end } },
        { id = "sleeper", start = { args = log, fn = function(log)
            log:send("sleeper") while true do ms.sleep(10) end end } },
      },
    })
    log:recv(10) log:recv(10)
    s1_state = { sup = sup, log = log }
  end
  local crasher
  for _, c in ipairs(s1_state.sup:which_children()) do
    if c.id == "crasher" then crasher = c.agent end
  end
  crasher:send("crash")
  for _ = 1, 2 do
    if not s1_state.log:recv(10) then fail("S1: no restart") end
  end
end

-- S2: a:stop() on an agent running a loop that never yields (interpreted):
-- from the stop to its exit notice.  The spawn is not timed.
local function s2_prepare()
  local a = ms.agent.spawn{ jit = false, args = ms.self(), fn = function(main)
    main:send("running") while true do end end }
  ms.monitor(a)
  if ms.recv(10) ~= "running" then fail("S2: did not start") end
  return a
end

-- n timed stops (after one untimed), sorted, in microseconds.
local function s2(n)
  local v = {}
  for i = 0, n do
    local a = s2_prepare()
    local t0 = now()
    a:stop()
    local m = ms.recv(10)
    if type(m) ~= "table" or m.event ~= "exit" then fail("S2: no exit notice") end
    if i > 0 then v[i] = (now() - t0) * 1e6 end
  end
  table.sort(v)
  return v
end

-- ---------------------------------------------------------------------
-- Where the A workloads run.  Erlang's bench runs each workload in an
-- ordinary process, scheduled like the ones it spawns.  Our main agent is
-- not like that: it is pinned to the main thread (Tokio's block_on), so
-- every message to it crosses threads.  So the paired A lines run in a
-- "driver" agent on the workers: it loads this file (file = arg[0]), runs
-- the workload (warm-up + n timed runs, timed inside the driver as Erlang
-- times inside its process) and sends the sorted times to the main agent.
-- The *_main lines run the same workloads from the main agent itself.
-- ---------------------------------------------------------------------

local A_FUNCS = { a1 = a1, a2 = a2, a3 = a3 }

local function in_driver(name, n, fname)
  local file = arg and arg[0]
  if not file then fail("lbench: arg[0] is not set; run me with ms-host run") end
  ms.agent.spawn{
    name = "lbench-driver-" .. fname,
    file = file,
    args = { lbench_driver = fname, n = iters_override or n, parent = ms.self() },
  }
  local v, err = ms.recv(600)
  if type(v) ~= "table" then fail("lbench: no times from the %s driver: %s", name, tostring(err or v)) end
  if v.error then fail("lbench: %s: %s", name, v.error) end
  report(name, v)
end

-- The driver agent: `...` is its args table.
local driver_args = ...
if type(driver_args) == "table" and driver_args.lbench_driver then
  local a = driver_args
  local ok, v = pcall(measure, a.n, A_FUNCS[a.lbench_driver])
  if ok then
    a.parent:send(v)
  else
    a.parent:send({ error = tostring(v) })
  end
  return
end

-- In the order the peers print them (agent_memory first: its RSS figure
-- needs a process whose heap has not yet grown and been freed); n as in
-- the peers.  Entries: full name, short name, function.
local WORKLOADS = {
  { "agent_memory", "agent_memory", agent_memory },
  { "L1_spawn_join_10k", "L1", function() time("L1_spawn_join_10k", 50, l1) end },
  { "L2_yield_many_200x1000", "L2", function() time("L2_yield_many_200x1000", 10, l2) end },
  { "L3_ping_pong_channel_10k", "L3", function() time("L3_ping_pong_channel_10k", 20, l3) end },
  { "L5_timers_10k_1ms", "L5", function() time("L5_timers_10k_1ms", 10, l5) end },
  { "A1_spawn_join_agents_1k", "A1", function() in_driver("A1_spawn_join_agents_1k", 50, "a1") end },
  { "A2_ping_pong_cross_agent_10k", "A2", function() in_driver("A2_ping_pong_cross_agent_10k", 20, "a2") end },
  { "A3_fan_in_4x250k", "A3", function() in_driver("A3_fan_in_4x250k", 5, "a3") end },
  { "A1_spawn_join_agents_1k_main", "A1m", function() time("A1_spawn_join_agents_1k_main", 50, a1) end },
  { "A2_ping_pong_cross_agent_10k_main", "A2m", function() time("A2_ping_pong_cross_agent_10k_main", 20, a2) end },
  { "A3_fan_in_4x250k_main", "A3m", function() time("A3_fan_in_4x250k_main", 5, a3) end },
  { "agent_spawn", "agent_spawn", agent_spawn },
  { "S1_one_for_all_restart_sleeping_sibling", "S1",
    function() time("S1_one_for_all_restart_sleeping_sibling", 50, s1) end },
  { "S2_stop_busy_agent", "S2", function() report("S2_stop_busy_agent", s2(iters_override or 50)) end },
}

local args = { ... }
local wanted, nwanted = {}, 0
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--iters" then
    iters_override = tonumber(args[i + 1])
    if not iters_override or iters_override < 1 or iters_override % 1 ~= 0 then
      io.stderr:write("lbench: --iters needs a whole number >= 1\n")
      os.exit(2)
    end
    i = i + 2
  else
    local found
    for _, w in ipairs(WORKLOADS) do
      if a == w[1] or a == w[2] then found = w[1] end
    end
    if not found then
      local names = {}
      for _, w in ipairs(WORKLOADS) do names[#names + 1] = w[1] end
      io.stderr:write("lbench: unknown workload '", a, "'; valid: ", table.concat(names, " "), "\n")
      os.exit(2)
    end
    if not wanted[found] then
      wanted[found] = true
      nwanted = nwanted + 1
    end
    i = i + 1
  end
end

for _, w in ipairs(WORKLOADS) do
  if nwanted == 0 or wanted[w[1]] then
    w[3]()
    collectgarbage()
  end
end
