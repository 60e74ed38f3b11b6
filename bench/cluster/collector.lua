-- bench/cluster/collector.lua: R3's collector, spawned on host b by host a.
-- Takes args.n messages, then tells args.back.
local args = ...
for _ = 1, args.n do ms.recv() end
args.back:send("collected")
