-- scripts/cluster/counter.lua: the child boss.lua's supervisor keeps
-- running somewhere in the cluster.  Asks its boss where to count from,
-- then counts, reporting each tick to the boss.
local args = ...
io.stdout:setvbuf("line")
local r = args.boss:call({ hello = ms.cluster.id() }, 5)
local n = r and r.start or 0
while true do
  n = n + 1
  print(("counter on %s: %d"):format(ms.cluster.id(), n))
  args.boss:send({ tick = n, host = ms.cluster.id() })
  ms.sleep(1)
end
