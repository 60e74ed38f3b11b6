-- spec/cluster/driver.lua: the other side of the cluster spec.
--   ms-host run spec/cluster/driver.lua --cluster URL -- SCENARIO TAG
-- Prints one line per finding; the spec reads them.
--   basic   whereis, call, send, stop and monitor on TAG's agents
--   watch   monitors TAG's agents, prints WATCHING, then calls echo-TAG
--           until a call fails (CALLFAIL ms error) and prints each exit
--           notice (DOWN reason wall-clock-seconds)
--   spawn   remote spawns on TAG's host (file =, fn =, errors)
--   fence   spawns a child on TAG's host, prints SPAWNED, and prints its
--           exit notice (DOWN reason)
--   restart monitors TAG's agents, prints WATCHING, waits for the file
--           FLAG (the broker was restarted), then calls echo-TAG and says
--           whether any monitor fired
local scenario, tag, flag = ...
io.stdout:setvbuf("line")
local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long tv_sec, tv_usec; } ms_tv; int gettimeofday(ms_tv *, void *);")
local function wall()
  local tv = ffi.new("ms_tv")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

local function find(name)
  for _ = 1, 200 do
    local a = ms.agent.whereis(name)
    if a then return a end
    ms.sleep(0.05)
  end
  error("whereis " .. name .. ": not found in 10 s")
end

if scenario == "basic" then
  local echo = find("echo-" .. tag)
  print("FOUND " .. echo:id())
  local r = assert(echo:call({ call = true, x = 42, nested = { list = { 1, 2, 3 } } }, 10))
  print("CALL " .. r.host .. " " .. r.echo.x .. " " .. #r.echo.nested.list)
  -- The reply carries a handle of ours back: it stays the same agent.
  local r2 = assert(echo:call({ call = true, me = ms.self() }, 10))
  print("SELF-BACK " .. tostring(r2.echo.me == ms.self()))
  print("SENT " .. tostring(echo:send({ text = "hello from " .. ms.cluster.id() })))
  -- What cannot cross hosts is refused at the sender with its path.
  local sent, err = echo:send({ deep = { sem = ms.semaphore(1) } })
  print("SEMREFUSED " .. tostring(not sent) .. " " .. tostring(err))
  local victim = find("victim-" .. tag)
  ms.monitor(victim)
  victim:stop("told to")
  local m = ms.recv(10)
  print("STOPEXIT " .. tostring(m and m.event) .. " " .. tostring(m and m.reason))
  -- A name nobody has: nil, after every host has answered.
  print("MISSING " .. tostring(ms.agent.whereis("nobody-has-this")))
  local hosts = ms.cluster.hosts()
  print("HOSTS " .. #hosts)
  local s = ms.metrics().cluster
  print("STATS " .. s.state .. " " .. s.sends .. " " .. s.calls)
elseif scenario == "watch" then
  local names = { "echo-" .. tag, "victim-" .. tag, "idle-" .. tag }
  local handles = {}
  for i, n in ipairs(names) do
    handles[i] = find(n)
    ms.monitor(handles[i])
  end
  -- A call answered proves the monitors were registered there (one
  -- sender, one receiver: in order).
  assert(handles[1]:call({ call = true }, 10))
  print("WATCHING")
  while true do
    local t0 = ms.now()
    local r, err = handles[1]:call({ call = true }, 30)
    if not r then
      print(("CALLFAIL %.1f %s"):format((ms.now() - t0) * 1000, tostring(err)))
      break
    end
    ms.sleep(0.01)
  end
  for _ = 1, #names do
    local m = ms.recv(30)
    if not m then print("NONOTICE") break end
    print(("DOWN %s %.6f %s"):format(tostring(m.reason), wall(), tostring(m.name)))
  end
  -- Once it is known lost, a call fails at once.
  local t0 = ms.now()
  local r, err = handles[1]:call({ call = true }, 30)
  print(("AFTER %s %.1f %s"):format(tostring(r), (ms.now() - t0) * 1000, tostring(err)))
end
if scenario == "spawn" then
  local echo = find("echo-" .. tag)
  local there = assert(echo:call({ call = true }, 10)).host
  local child, err = ms.agent.spawn{ host = there, file = "spec/cluster/child.lua",
                                     name = "child-" .. tag,
                                     args = { greeting = "hi", back = ms.self() } }
  print("SPAWNED " .. tostring(child) .. " " .. tostring(err))
  local m = ms.recv(10)
  print("CHILD " .. tostring(m and m.hello) .. " " .. tostring(m and m.host == there))
  print("CHILDNAME " .. tostring(ms.agent.whereis("child-" .. tag) == child))
  local r = child:call({ call = true }, 10)
  print("CHILDCALL " .. tostring(r and r.host == there) .. " " .. tostring(r and r.name))
  ms.monitor(child)
  child:stop()
  m = ms.recv(10)
  print("CHILDEXIT " .. tostring(m and m.reason))
  local f, ferr = ms.agent.spawn{ host = there, args = { back = ms.self() },
                                  fn = function(a) a.back:send({ fn_ran = ms.cluster.id() }) end }
  if f then
    m = ms.recv(10)
    print("FNSPAWN " .. tostring(m and m.fn_ran == there))
  else
    print("FNREFUSED " .. tostring(ferr))
  end
  local none, nerr = ms.agent.spawn{ host = "0123456789abcdef", module = "x" }
  print("NOHOST " .. tostring(none) .. " " .. tostring(nerr))
  local ok, bad = pcall(ms.agent.spawn, { host = there, module = "x", memory_limit = 1 })
  print("BADFIELD " .. tostring(ok) .. " " .. tostring(bad))
end
if scenario == "fence" then
  local echo = find("echo-" .. tag)
  local there = assert(echo:call({ call = true }, 10)).host
  local child = assert(ms.agent.spawn{ host = there, file = "spec/cluster/child.lua",
                                       name = "fenced-" .. tag,
                                       args = { greeting = "hi", back = ms.self() } })
  assert(ms.recv(10))
  ms.monitor(child)
  assert(child:call({ call = true }, 10))
  print("SPAWNED")
  local m = ms.recv(60)
  print("DOWN " .. tostring(m and m.reason))
end
if scenario == "restart" then
  local handles = {}
  for i, n in ipairs({ "echo-" .. tag, "victim-" .. tag, "idle-" .. tag }) do
    handles[i] = find(n)
    ms.monitor(handles[i])
  end
  assert(handles[1]:call({ call = true }, 10))
  print("WATCHING")
  while not io.open(flag) do ms.sleep(0.05) end
  local r, err
  for _ = 1, 100 do -- the host there may reconnect after us
    r, err = handles[1]:call({ call = true }, 2)
    if r then break end
    ms.sleep(0.1)
  end
  print("AFTER " .. tostring(r ~= nil) .. " " .. tostring(err))
  -- The new broker has no name registry yet: a named spawn makes it again.
  local named, nerr = pcall(ms.agent.spawn, { name = "after-restart-" .. tag, fn = function() end })
  print("NAMED " .. tostring(named) .. " " .. tostring(nerr))
  local m = ms.recv(0.5)
  print("NOTICE " .. tostring(m and m.reason))
  local s = ms.metrics().cluster
  print("RECONNECTS " .. s.reconnects .. " LOST " .. s.hosts_lost .. " " .. s.state)
end
print("DONE")
