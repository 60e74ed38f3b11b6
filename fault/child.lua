-- fault/child.lua: an agent spawned from a file by fault/driver.lua.
local args = ...
local t = {}
for i = 1, args.n do t[i] = { i, tostring(i) } end
ms.sleep(0.001)
return #t
