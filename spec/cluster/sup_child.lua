-- spec/cluster/sup_child.lua: the supervised child of the cluster spec's
-- supervision cases (sup_boss.lua).  Reports a tick with its host's id to
-- args.collector every 50 ms, for ever.
local args = ...
local n = 0
while true do
  n = n + 1
  args.collector:send({ tick = n, host = ms.cluster.id() })
  ms.sleep(0.05)
end
