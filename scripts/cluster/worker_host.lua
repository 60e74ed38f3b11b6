-- scripts/cluster/worker_host.lua: a host that only lends its workers to
-- the cluster.  Agents are started on it by other hosts (boss.lua's
-- remote spawns); it runs until it is stopped (Ctrl-C) or killed.
--   ms-host run scripts/cluster/worker_host.lua --cluster nats://127.0.0.1:4222
io.stdout:setvbuf("line")
print("worker host " .. ms.cluster.id() .. " ready")
while true do ms.sleep(3600) end
