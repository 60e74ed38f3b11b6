-- spec/cluster/child.lua: an agent started on another host by the cluster
-- spec's remote spawns (spawn{ host = ..., file = "spec/cluster/child.lua" }).
-- Says hello to args.back with its host's id, then answers calls.
local args = ...
args.back:send({ hello = args.greeting, host = ms.cluster.id() })
while true do
  local m, reply = ms.recv()
  if type(m) == "table" and m.call then reply({ host = ms.cluster.id(), name = ms.self():name() }) end
end
