-- scripts/cluster/counter.lua: the child boss.lua keeps running somewhere
-- in the cluster.  Counts, reports each tick to its boss, answers calls
-- with where it runs.
local args = ...
io.stdout:setvbuf("line")
local n = args.start or 0
ms.spawn(function()
  while true do
    local m, reply = ms.recv()
    if type(m) == "table" and m.where then reply({ host = ms.cluster.id(), n = n }) end
  end
end)
while true do
  n = n + 1
  print(("counter on %s: %d"):format(ms.cluster.id(), n))
  args.boss:send({ tick = n, host = ms.cluster.id() })
  ms.sleep(1)
end
