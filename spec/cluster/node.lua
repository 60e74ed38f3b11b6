-- spec/cluster/node.lua: one host of the cluster spec (spec/cluster_spec.lua)
-- and of scripts/cluster/.  Registers an agent "echo-<tag>" that answers
-- calls with { echo = msg, host = its host's id } and forwards sends to
-- the main agent, which prints them; then prints READY and runs until it
-- is stopped.  ms-host run spec/cluster/node.lua --cluster URL -- TAG
local tag = ... or "a"
io.stdout:setvbuf("line")
local main = ms.self()
ms.agent.spawn{
  name = "echo-" .. tag,
  args = { main = main },
  fn = function(args)
    while true do
      local m, from = ms.recv()
      if type(from) == "function" or (type(from) == "userdata" and m and m.call) then
        from({ echo = m, host = ms.cluster.id() })
      elseif m and m.call == nil then
        args.main:send({ got = m })
      end
      if m and m.stop then return end
    end
  end,
}
print("READY " .. tostring(ms.cluster.id()))
while true do
  local m = ms.recv()
  if m and m.got then print("GOT " .. tostring(m.got.text)) end
end
