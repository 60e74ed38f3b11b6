-- scripts/cluster/boss.lua: a supervisor with a child on other hosts.
-- Keeps one counter (counter.lua) running somewhere in the cluster
-- (host = "any": another live host if there is one, else this one).
-- When that host is lost the counter exits "noconnection" and the
-- supervisor starts it again elsewhere; the counter asks this agent for
-- the last count it heard and carries on from there.  See README.md.
--   ms-host run scripts/cluster/boss.lua --cluster nats://127.0.0.1:4222
io.stdout:setvbuf("line")
local me = ms.cluster.id()
assert(me, "run boss.lua with --cluster nats://HOST:PORT")

-- Give another host up to 30 s to show up: the first start goes there.
local deadline = ms.now() + 30
repeat
  local others = 0
  for _, h in ipairs(ms.cluster.hosts()) do
    if not h.self and not h.lost then others = others + 1 end
  end
  if others == 0 then ms.sleep(0.2) end
until others > 0 or ms.now() > deadline

local sup = assert(ms.supervisor{
  name = "counters", intensity = 5, period = 10, backoff = { min = 0.5, max = 2 },
  on_event = function(e)
    if e.event == "child_exited" then
      print(("boss: counter on %s exited (%s)"):format(tostring(e.host), tostring(e.reason)))
    elseif e.event == "restarted" then
      print(("boss: restart %d"):format(e.restarts))
    end
  end,
  children = {
    { id = "counter", host = "any",
      start = { file = "scripts/cluster/counter.lua", args = { boss = ms.self() } } },
  },
})

local last = 0
while true do
  local m, from = ms.recv()
  if type(m) == "table" and m.tick then
    last = m.tick
  elseif type(m) == "table" and m.hello then
    -- A counter starting: where it runs, and the count to go on from.
    print(("boss: counter started on %s%s (from %d)"):format(m.hello,
      m.hello == me and " (this host)" or "", last))
    pcall(from, { start = last })
  end
end
