-- bench/cluster/bench.lua: host a of the cross-host benchmark
-- (bench/cluster/run), the workloads of shared/peers/erlang_dist:
--   R2_remote_call_10k       10,000 sequential calls to "pong" on host b
--   R3_remote_fan_in_4x250k  4 agents here send 250,000 messages each to a
--                            collector spawned on host b, which answers once
-- Prints NAME median_us=... min_us=... n=... (one warm-up run first).
io.stdout:setvbuf("line")
local function report(name, times)
  table.sort(times)
  print(("%s median_us=%.1f min_us=%.1f n=%d"):format(name,
    times[math.floor(#times / 2) + 1], times[1], #times))
end
local function runs(fn, n)
  fn()
  local t = {}
  for i = 1, n do
    local t0 = ms.now()
    fn()
    t[i] = (ms.now() - t0) * 1e6
  end
  return t
end

local pong
for _ = 1, 200 do
  pong = ms.agent.whereis("pong")
  if pong then break end
  ms.sleep(0.05)
end
assert(pong, "no pong agent in the cluster")
local b = assert(pong:call(1, 10) == 1 and ms.cluster.hosts()[2].id)
for _, h in ipairs(ms.cluster.hosts()) do
  if not h.self and not h.lost then b = h.id end
end

report("R2_remote_call_10k", runs(function()
  for i = 1, 10000 do
    local r = pong:call(i, 10)
    if r ~= i then error("R2: call " .. i .. " answered " .. tostring(r)) end
  end
end, tonumber(os.getenv("MS_R2_RUNS") or "20")))

local N, SENDERS = 250000, 4
report("R3_remote_fan_in_4x250k", runs(function()
  local c = assert(ms.agent.spawn{ host = b, file = "bench/cluster/collector.lua",
                                   args = { n = N * SENDERS, back = ms.self() } })
  for _ = 1, SENDERS do
    ms.agent.spawn{ args = { c = c, n = N }, fn = function(args)
      local c, n = args.c, args.n
      for i = 1, n do
        local ok, err = c:send(i)
        if not ok then error("R3: send " .. i .. ": " .. tostring(err)) end
      end
    end }
  end
  local m = ms.recv(120)
  if m ~= "collected" then error("R3: the collector did not answer in 120 s (messages lost?)") end
end, tonumber(os.getenv("MS_R3_RUNS") or "5")))
