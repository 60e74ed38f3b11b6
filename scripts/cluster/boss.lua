-- scripts/cluster/boss.lua: a supervisor, by hand, across hosts.  Keeps
-- one counter (counter.lua) running on another host of the cluster; when
-- that host is lost (the counter exits "noconnection") it starts the
-- counter again on another live host, or here if none is left, carrying
-- on from the last count it heard.  See README.md beside it.
--   ms-host run scripts/cluster/boss.lua --cluster nats://127.0.0.1:4222
io.stdout:setvbuf("line")
local me = ms.cluster.id()
assert(me, "run boss.lua with --cluster nats://HOST:PORT")

-- A live host other than this one, waiting up to `wait` seconds for one.
local function other_host(wait)
  local deadline = ms.now() + wait
  repeat
    for _, h in ipairs(ms.cluster.hosts()) do
      if not h.self and not h.lost then return h.id end
    end
    ms.sleep(0.2)
  until ms.now() > deadline
  return me
end

local last = 0
local restarts = 0
while true do
  local where = other_host(restarts == 0 and 30 or 2)
  local child, err = ms.agent.spawn{ host = where, file = "scripts/cluster/counter.lua",
                                     args = { boss = ms.self(), start = last } }
  if not child then
    print("boss: spawn on " .. where .. " failed: " .. tostring(err) .. "; trying again")
    ms.sleep(1)
  else
    print(("boss: counter started on %s%s (from %d)"):format(where,
      where == me and " (this host)" or "", last))
    ms.monitor(child)
    while true do
      local m = ms.recv()
      if type(m) == "table" and m.tick then
        last = m.tick
      elseif type(m) == "table" and m.event == "exit" then
        restarts = restarts + 1
        print(("boss: counter on %s exited (%s): restart %d"):format(where, m.reason, restarts))
        break
      end
    end
  end
end
