-- spec/cluster/sup_worker.lua: a host that only runs what others start on
-- it (the cluster spec's supervision cases).  Prints "READY id", then
-- "CHILDREN n" whenever the number of its live agents named sc-* changes
-- (the supervised children sup_boss.lua places here).
io.stdout:setvbuf("line")
print("READY " .. ms.cluster.id())
local last = -1
while true do
  local n = 0
  for _, a in ipairs(ms.agents()) do
    if a.name:find("^sc%-") and a.state ~= "exited" then n = n + 1 end
  end
  if n ~= last then
    print("CHILDREN " .. n)
    last = n
  end
  ms.sleep(0.02)
end
