-- jit_agents.lua - many agents, each running a loop the JIT speeds up
-- (issue 17's "no cliff at 100,000 agents"): does every agent keep its
-- speed as LuaJIT's machine-code window fills?
--
--   ms-host run bench/lua/jit_agents.lua --workers 2 --set metrics_histograms=true \
--       -- [--agents N] [--loop M] [--progress]
--
-- N agents (default 100,000) are spawned in batches of 1,000; each sums a
-- table's fields M times (default 50,000), reports its loop's time and
-- whether it had the JIT, and stays alive (blocked in ms.recv) so that its
-- state keeps its heap and its machine code, as a long-lived agent would.
-- Before them, 5 agents with jit = false time the same loop interpreted.
--
-- Output (bench/README.md):
--   jit_agents_batch_1000 median_us=... min_us=... n=BATCHES max_us=...
--       the wall time of each batch of 1,000 (spawn, loop, report)
--   jit_agents_loop median_us=... min_us=... n=N p99_us=... max_us=... interp_us=...
--       worst_vs_interp=... jit_on=... jit_off=... worst_poll_le_us=...
--       fallbacks=... refused=... window_free_areas=... window_areas=...
--       each agent's loop (wall time: a worker preempted by the OS
--       mid-loop counts); interp_us the interpreted loop's median;
--       worst_poll_le_us the bound of the highest poll-duration bucket any
--       worker recorded (needs --set metrics_histograms=true, else -1)
-- --progress prints one line per batch on stderr.

local agents, loop, progress = 100000, 50000, false
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--agents" then agents = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--loop" then loop = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--progress" then progress = true; i = i + 1
    else error("jit_agents.lua: unknown argument " .. tostring(a)) end
  end
  assert(agents and agents >= 1000 and agents % 1000 == 0, "--agents: a multiple of 1000")
  assert(loop and loop >= 1, "--loop: a count >= 1")
end

local BATCH = 1000

-- The agent: its loop, timed; then it waits until told to stop.
local function worker(args)
  local on = jit.status() -- also settles the JIT for this agent now
  local t = { a = 1, b = 2, c = 3, d = 4 }
  local n, s = args.loop, 0
  local t0 = ms.now()
  for _ = 1, n do s = s + t.a + t.b + t.c + t.d end
  local us = (ms.now() - t0) * 1e6
  args.main:send({ us = us, on = on, sum = s })
  if args.stay then ms.recv() end
end

local function sorted(v)
  table.sort(v)
  return v
end
local function median(v) return v[math.floor(#v / 2) + 1] end

local function receive_results(n, into, want_sum)
  local on = 0
  for _ = 1, n do
    local r = ms.recv()
    assert(type(r) == "table" and r.sum == want_sum, "a wrong or lost result")
    into[#into + 1] = r.us
    if r.on then on = on + 1 end
  end
  return on
end

local want = loop * 10
local self = ms.self()

-- The interpreter's time for the loop.
local interp = {}
for _ = 1, 5 do
  ms.agent.spawn{ fn = worker, jit = false, args = { main = self, loop = loop } }
  receive_results(1, interp, want)
end
local interp_us = median(sorted(interp))

local handles, loops, batches, on_total = {}, {}, {}, 0
for b = 1, agents / BATCH do
  local t0 = ms.now()
  for _ = 1, BATCH do
    handles[#handles + 1] = ms.agent.spawn{ fn = worker, args = { main = self, loop = loop, stay = true } }
  end
  local batch_loops = {}
  local on = receive_results(BATCH, batch_loops, want)
  batches[b] = (ms.now() - t0) * 1e6
  on_total = on_total + on
  for _, us in ipairs(batch_loops) do loops[#loops + 1] = us end
  if progress then
    local j = ms.metrics().jit
    io.stderr:write(("batch %d: %.1f ms, loop median %.0f us max %.0f us, jit on %d/%d, "
      .. "states %d, free areas %d, fallbacks %d, mappings %d, measurements %d\n"):format(b, batches[b] / 1e3,
      median(sorted(batch_loops)), batch_loops[#batch_loops], on, BATCH, j.states,
      j.window_free_areas, j.fallbacks, j.mappings, j.measurements))
  end
end

-- The worst poll any worker recorded: the bound of its highest bucket.
local m = ms.metrics()
local worst = -1
if m.histograms then
  for _, w in ipairs(m.per_worker or {}) do
    for _, bucket in ipairs(w.poll_duration.buckets) do
      if bucket.count > 0 then
        local le = bucket.le == math.huge and math.huge or bucket.le * 1e6
        if le > worst then worst = le end
      end
    end
  end
end

sorted(batches)
print(("jit_agents_batch_1000 median_us=%.1f min_us=%.1f n=%d max_us=%.1f"):format(
  median(batches), batches[1], #batches, batches[#batches]))
sorted(loops)
local j = m.jit
print(("jit_agents_loop median_us=%.1f min_us=%.1f n=%d p99_us=%.1f max_us=%.1f interp_us=%.1f "
  .. "worst_vs_interp=%.2f jit_on=%d jit_off=%d worst_poll_le_us=%s fallbacks=%d refused=%d "
  .. "window_free_areas=%d window_areas=%d"):format(median(loops), loops[1], #loops,
  loops[math.floor(#loops * 0.99) + 1], loops[#loops], interp_us, loops[#loops] / interp_us, on_total, agents - on_total,
  worst == math.huge and "inf" or ("%.0f"):format(worst), j.fallbacks, j.refused,
  j.window_free_areas, j.window_areas))
io.stdout:flush()

-- Let them end before the script does (else the shutdown stops them).
for _, h in ipairs(handles) do h:send("stop") end
handles = nil
while #ms.agents() > 1 do ms.sleep(0.1) end
