-- spec/cluster/names.lua: one host of the cluster names spec
-- (spec/cluster_names_spec.lua).
--   ms-host run spec/cluster/names.lua --cluster URL -- MODE ARG...
-- Prints "READY id scope" first (scope: ms.cluster.stats().names), then one
-- line per finding:
--   hold NAMES [FLAG]  spawns an idle agent under each name (comma list):
--                      HELD name | REFUSED name err; once the file FLAG
--                      exists, stops them (RELEASED) and idles
--   take NAME          tries to spawn NAME every 50 ms for up to 30 s:
--                      TOOK name | NEVER name err
--   try NAME           one spawn (GOT | TAKEN err), then whereis: WHERE host
--   race DIR           10 rounds: WAIT i, then once DIR/go-i exists, a spawn
--                      of race-i: WON i | LOST i err
--   whereis NAME       WHERE host-of-the-handle | WHERE nil; with a handle,
--                      monitors it: EXIT reason
--   scoped             spawns "svc" with name_scope = "host" (SCOPED ok) and
--                      one with a bad name_scope (BADSCOPE err), then idles
--   hostile            a spawn table whose name changes at each read
--                      (CHANGING err), an agent that ends at once (QUICK
--                      and, once its name is free again, QUICKFREE)
local mode, arg1, arg2 = ...
io.stdout:setvbuf("line")
print("READY " .. ms.cluster.id() .. " " .. ms.cluster.stats().names)
local function idle() while true do ms.recv() end end
local function spawn(name)
  return pcall(ms.agent.spawn, { name = name, fn = function() while true do ms.recv() end end })
end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

if mode == "hold" then
  local held = {}
  for name in arg1:gmatch("[^,]+") do
    local ok, a = spawn(name)
    print((ok and "HELD " or "REFUSED ") .. name .. (ok and "" or (" " .. tostring(a))))
    if ok then held[#held + 1] = a end
  end
  if arg2 then
    while not exists(arg2) do ms.sleep(0.05) end
    for _, a in ipairs(held) do
      ms.monitor(a)
      a:stop()
      ms.recv(10)
    end
    print("RELEASED")
  end
  idle()
elseif mode == "take" then
  local deadline, err = ms.now() + 30, nil
  while ms.now() < deadline do
    local ok, a = spawn(arg1)
    if ok then
      print("TOOK " .. arg1)
      idle()
    end
    err = a
    ms.sleep(0.05)
  end
  print("NEVER " .. arg1 .. " " .. tostring(err))
elseif mode == "try" then
  local ok, a = spawn(arg1)
  print(ok and "GOT" or ("TAKEN " .. tostring(a)))
  local w = ms.agent.whereis(arg1)
  print("WHERE " .. tostring(w and w:host()))
elseif mode == "race" then
  for i = 1, 10 do
    print("WAIT " .. i)
    while not exists(arg1 .. "/go-" .. i) do ms.sleep(0.002) end
    local ok, a = spawn("race-" .. i)
    print((ok and "WON " or "LOST ") .. i .. (ok and "" or (" " .. tostring(a))))
  end
  idle()
elseif mode == "scoped" then
  local ok, err = pcall(ms.agent.spawn, { name = "svc", name_scope = "host", fn = idle })
  print("SCOPED " .. tostring(ok) .. " " .. tostring(err))
  local bad, berr = pcall(ms.agent.spawn, { name = "svc2", name_scope = "everywhere", fn = idle })
  print("BADSCOPE " .. tostring(bad) .. " " .. tostring(berr))
  idle()
elseif mode == "hostile" then
  local n = 0
  local t = setmetatable({ fn = function() while true do ms.recv() end end }, {
    __index = function(_, k)
      if k == "name" then n = n + 1 return "changing-" .. n end
    end,
  })
  local ok, err = pcall(ms.agent.spawn, t)
  print("CHANGING " .. tostring(ok) .. " " .. tostring(err))
  -- An agent that ends before its spawner binds its name: released.
  local ok2 = pcall(ms.agent.spawn, { name = "quick", fn = function() end })
  print("QUICK " .. tostring(ok2))
  for _ = 1, 200 do
    local ok3, a = spawn("quick")
    if ok3 then print("QUICKFREE") a:stop() break end
    ms.sleep(0.05)
  end
elseif mode == "whereis" then
  local w = ms.agent.whereis(arg1)
  print("WHERE " .. tostring(w and w:host()))
  if w then
    ms.monitor(w)
    local m = ms.recv(10)
    print("EXIT " .. tostring(m and m.reason))
  end
end
