-- bench/cluster/names.lua: what a cluster-wide name costs (docs/cluster.md,
-- Names).  On a host joined to a broker with JetStream: N spawns of a
-- named agent that ends at once, each timed from the spawn call to its
-- return (the claim in the bucket included), against the same spawn with
-- name_scope = "host" (no claim); and N whereis of a name this host does
-- not hold (a bucket get).  Prints benchmark lines (bench/README.md).
--   bench/cluster/names_run [N]
local n = tonumber((...)) or 200
assert(ms.metrics().cluster.names == "cluster", "run with a broker with JetStream (-js)")
local function idle() end
local function line(name, t)
  table.sort(t)
  print(("%s median_us=%.0f min_us=%.0f n=%d"):format(name, t[math.floor((#t + 1) / 2)] * 1e6,
    t[1] * 1e6, #t))
end
local function spawns(scope)
  local t = {}
  for i = 1, n do
    local name = ("bench-%s-%d"):format(scope, i)
    local t0 = ms.now()
    local a = ms.agent.spawn{ name = name, name_scope = scope, fn = idle }
    t[i] = ms.now() - t0
    ms.monitor(a)
    ms.recv(5)
  end
  return t
end
-- Interleaved: host, cluster, host, cluster ... in blocks of n.
local host_t, cluster_t = {}, {}
for _ = 1, 3 do
  for _, v in ipairs(spawns("host")) do host_t[#host_t + 1] = v end
  for _, v in ipairs(spawns("cluster")) do cluster_t[#cluster_t + 1] = v end
end
line("named_spawn_host_scope", host_t)
line("named_spawn_cluster_scope", cluster_t)
local held = ms.agent.spawn{ name = "bench-held", fn = function() ms.recv() end }
local w = {}
for i = 1, n do
  local t0 = ms.now()
  local found = ms.agent.whereis("bench-nobody-" .. i)
  w[i] = ms.now() - t0
  assert(found == nil)
end
line("whereis_miss_bucket_then_fanout", w)
held:stop()
