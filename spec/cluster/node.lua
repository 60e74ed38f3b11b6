-- spec/cluster/node.lua: one host of the cluster spec (spec/cluster_spec.lua).
--   ms-host run spec/cluster/node.lua --cluster URL -- TAG
-- Registers "echo-TAG", which answers calls ({ call = true, ... }) with
-- { echo = msg, host = its host's id, stats = ms.metrics().cluster } and
-- passes sends on to the main agent, which prints "GOT text"; and
-- "victim-TAG" and "idle-TAG", which only wait.  Prints "READY id" and
-- runs until it is stopped or killed.
local tag = ... or "a"
io.stdout:setvbuf("line")
local main = ms.self()
ms.agent.spawn{
  name = "echo-" .. tag,
  args = { main = main },
  fn = function(args)
    while true do
      local m, from = ms.recv()
      if type(m) == "table" and m.call then
        from({ echo = m, host = ms.cluster.id(), stats = ms.metrics().cluster })
      elseif type(m) == "table" then
        args.main:send({ got = m })
      end
    end
  end,
}
for _, name in ipairs({ "victim-" .. tag, "idle-" .. tag }) do
  ms.agent.spawn{ name = name, fn = function() while true do ms.recv() end end }
end
print("READY " .. tostring(ms.cluster.id()))
while true do
  local m = ms.recv()
  if type(m) == "table" and m.got then print("GOT " .. tostring(m.got.text)) end
end
