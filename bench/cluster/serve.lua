-- bench/cluster/serve.lua: host b of the cross-host benchmark (bench/cluster/run).
-- "pong" answers every call with its message.  Runs until stopped.
io.stdout:setvbuf("line")
ms.agent.spawn{ name = "pong", fn = function()
  while true do
    local m, reply = ms.recv()
    reply(m)
  end
end }
print("READY " .. ms.cluster.id())
while true do ms.sleep(3600) end
