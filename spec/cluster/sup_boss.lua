-- spec/cluster/sup_boss.lua: a supervisor with one child placed on other
-- hosts (docs/supervision.md, "Across hosts").
--   ms-host run spec/cluster/sup_boss.lua --cluster URL -- HOSTS NEED
-- HOSTS: the child spec's host, entries separated by commas ("w1,w2",
-- "any"); NEED: host names to wait for before starting (comma list, or -).
-- The child (sup_child.lua) reports ticks here; printed:
--   BOSS id                 this host's id
--   TICK host               the first tick, and each tick from another host
--                           than the previous one (a child that ran twice
--                           would show as a switch back)
--   EVENT kind host reason  the supervisor's events
--   STATUS status host      the child's status, when it changes
local hosts_arg, need = ...
io.stdout:setvbuf("line")
print("BOSS " .. ms.cluster.id())
local hosts = {}
for h in hosts_arg:gmatch("[^,]+") do hosts[#hosts + 1] = h end
if #hosts == 1 then hosts = hosts[1] end
-- The named hosts must be known (their heartbeats heard) before the start.
local deadline = ms.now() + 30
for name in (need or "-"):gmatch("[^,]+") do
  while name ~= "-" do
    local found = false
    for _, row in ipairs(ms.cluster.hosts()) do
      if row.name == name and not row.lost then found = true end
    end
    if found then break end
    assert(ms.now() < deadline, "host " .. name .. " not seen in 30 s")
    ms.sleep(0.05)
  end
end
local sup = assert(ms.supervisor{
  name = "sup", intensity = 20, period = 10, backoff = { min = 0.2, max = 0.5 },
  on_event = function(e)
    print(("EVENT %s %s %s"):format(e.event, tostring(e.host), tostring(e.reason)))
  end,
  children = {
    { id = "counter", host = hosts,
      start = { file = "spec/cluster/sup_child.lua", name = "sc-counter",
                args = { collector = ms.self() } } },
  },
})
local last_host, last_status = nil, nil
local function status()
  local rows = sup:which_children()
  local s = rows and rows[1] and (rows[1].status .. " " .. tostring(rows[1].host)) or "none"
  if s ~= last_status then
    print("STATUS " .. s)
    last_status = s
  end
end
while true do
  local m = ms.recv(0.1)
  if type(m) == "table" and m.tick and m.host ~= last_host then
    print("TICK " .. tostring(m.host))
    last_host = m.host
  end
  status()
end
