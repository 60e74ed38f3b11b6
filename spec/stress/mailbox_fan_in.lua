-- A stress run of the agents' mailbox and of same-agent channels through
-- ms-host, so that the sanitizer builds (which cannot run busted specs)
-- check them too:  ms-host run spec/stress/mailbox_fan_in.lua
--
--   1. fan-in: 4 sender agents push numbered messages to one collector,
--      some in bursts, some with pauses (so the collector keeps going to
--      sleep on an empty mailbox and being woken); the collector checks
--      that nothing is lost or duplicated and each sender's order holds;
--   2. an agent that stops with messages unread: its exit notice counts
--      exactly the ones it never received;
--   3. local channels used in an agent that ends with values and waiting
--      tasks in them (the address sanitizer checks nothing leaks);
--   4. local channels shared while they hold values, waiting senders and
--      waiting receivers, closed ones, and one used from the blocking pool.
-- Exits non-zero (an error in the main agent) on any failure.

local scale = tonumber(os.getenv("MS_TEST_SCALE") or "1") or 1
local per = math.max(200, math.floor(50000 * scale))
local senders = 4

local function collector(args)
  local next_of, total = {}, args.senders * args.per
  for _ = 1, total do
    local m = ms.recv(30)
    if type(m) ~= "table" then
      args.parent:send("lost: got " .. tostring(m))
      return
    end
    local want = (next_of[m.s] or 0) + 1
    if m.i ~= want then
      args.parent:send(("order: sender %d sent %d, expected %d"):format(m.s, m.i, want))
      return
    end
    next_of[m.s] = want
  end
  local extra = ms.recv(0.05)
  args.parent:send(extra == nil and "ok" or "duplicate: " .. tostring(extra))
end

local function sender(args)
  for i = 1, args.per do
    assert(args.to:send({ s = args.s, i = i }))
    if args.s % 2 == 0 and i % 97 == 0 then ms.sleep(0.0005) end
  end
end

local function stopper(args)
  for _ = 1, args.take do ms.recv(10) end
  args.parent:send("took")
  ms.sleep(10) -- stopped from outside, its mailbox still holding the rest
end

local function channel_user()
  local c = ms.channel(2)
  c:send({ string.rep("x", 500) })
  c:send("second")
  ms.spawn(function() c:send("blocked forever") end)
  ms.spawn(function() ms.channel():recv() end)
  local u = ms.channel()
  for i = 1, 100 do u:send({ i }) end
  ms.yield()
end

do
  local c = ms.agent.spawn { fn = collector, args = { senders = senders, per = per, parent = ms.self() } }
  for s = 1, senders do
    ms.agent.spawn { fn = sender, args = { to = c, s = s, per = per } }
  end
  local verdict = ms.recv(120)
  assert(verdict == "ok", "fan-in: " .. tostring(verdict))

  local a = ms.agent.spawn { fn = stopper, args = { take = 3, parent = ms.self() } }
  ms.monitor(a)
  for i = 1, 10 do assert(a:send(i)) end
  assert(ms.recv(10) == "took")
  a:stop("enough")
  local ex = ms.recv(10)
  assert(type(ex) == "table" and ex.event == "exit", "no exit notice")
  assert(ex.unread == 7, "unread: " .. tostring(ex.unread))

  for _ = 1, 20 do
    local u = ms.agent.spawn { fn = channel_user }
    ms.monitor(u)
    local e = ms.recv(10)
    assert(e.reason == "normal", "channel_user: " .. tostring(e.reason))
  end
  -- 4: sharing a local channel moves its values and waiters in order.
  local relay = function(args)
    for _ = 1, args.n do args.out:send(args.c:recv(10)) end
  end
  local c, out = ms.channel(2), ms.channel()
  c:send({ 1 })
  c:send(2)
  local blocked = ms.spawn(function() c:send("3") c:send(4) end)
  ms.yield()
  ms.agent.spawn { fn = relay, args = { c = c, out = out, n = 4 } }
  local want = { { 1 }, 2, "3", 4 }
  local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, x in pairs(a) do if not same(x, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  for i = 1, 4 do
    local v = out:recv(10)
    assert(same(v, want[i]), ("shared order %d: got %s, want %s"):format(
      i, type(v) == "table" and "{" .. tostring(v[1]) .. "}" or tostring(v),
      type(want[i]) == "table" and "{" .. tostring(want[i][1]) .. "}" or tostring(want[i])))
  end
  assert(blocked:join(10))
  local r = ms.channel()
  local waiting = {}
  for i = 1, 3 do waiting[i] = ms.spawn(function() return r:recv(10) end) end
  ms.yield()
  ms.agent.spawn { fn = function(args) for i = 1, 3 do args.r:send(i) end end, args = { r = r } }
  for i = 1, 3 do
    local ok, v = waiting[i]:join(10)
    assert(ok and v == i, "waiting receiver " .. i .. " got " .. tostring(v))
  end
  local closed = ms.channel()
  closed:send("last")
  closed:close()
  local got = ms.channel()
  ms.agent.spawn { fn = function(args)
    args.got:send({ args.c:recv(5) })
    args.got:send({ args.c:recv(5) })
  end, args = { c = closed, got = got } }
  assert(got:recv(10)[1] == "last")
  assert(got:recv(10)[2] == "closed")
  local b = ms.channel()
  b:send(1)
  local taker = ms.spawn(function() return b:recv(10) end)
  local _, sent = ms.blocking(function(ch) return ch:try_send(2) end, b)
  assert(sent == true, "try_send from the blocking pool")
  assert(select(2, taker:join(10)) == 1 and b:recv(10) == 2)
  print("mailbox_fan_in: ok")
end
