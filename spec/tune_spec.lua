-- Live tuning from Lua: ms.tune changes the running host (workers, the
-- blocking pool, scheduler knobs, agents' limits) with the profile's checks
-- and words, whole or not at all, as events and metrics; ms.tuner runs a
-- tuning function on an interval; a profile's tuner script runs beside the
-- main agent; a stalled worker gets a stand-in.
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/tune_spec.lua
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
package.path = spec_dir .. "/../lua/?.lua;lua/?.lua;" .. package.path

local ms = require "ms"
local h = require "spec.support.helpers"

local host = h.host

local function run(fn, cfg)
  h.run(fn, cfg or { worker_threads = "2", max_worker_threads = "6" })
end

local function by_field(changes)
  local t = {}
  for _, c in ipairs(changes) do
    t[c.field] = c
  end
  return t
end

describe("ms.tune", function()
  it("resizes the worker pool and reports each change", function()
    run(function()
      local m = ms.metrics()
      assert.are.equal(2, m.active_workers)
      assert.are.equal(6, m.max_workers)
      local c = by_field(ms.tune{ worker_threads = 5 })
      assert.are.same({ field = "worker_threads", old = 2, new = 5 }, c.worker_threads)
      m = ms.metrics()
      assert.are.equal(5, m.active_workers)
      assert.are.equal(5, m.workers)
      assert.is_true(m.worker_resizes >= 1)
      ms.tune{ worker_threads = 1 }
      assert.are.equal(1, ms.metrics().active_workers)
      -- Work still gets done on the one worker left.
      local echo = ms.agent.spawn{ fn = function() local v, reply = ms.recv(); reply(v * 2) end }
      assert.are.equal(42, echo:call(21, 5))
    end)
  end)

  it("changes the blocking pool and the scheduler's knobs, in profile units", function()
    run(function()
      local c = by_field(ms.tune{ max_blocking_threads = 3, thread_keep_alive = "1500ms",
                                  budget = 32, global_queue_interval = 31 })
      assert.are.equal(3, c.max_blocking_threads.new)
      assert.are.equal(1.5, c.thread_keep_alive.new)
      local m = ms.metrics()
      assert.are.equal(3, m.max_blocking_threads)
      assert.are.equal(1.5, m.thread_keep_alive)
      assert.are.equal(32, m.budget)
      assert.are.equal(31, m.global_queue_interval)
      assert.is_true(m.tune_changes >= 4)
      local e = h.error_of(ms.tune, { budget = 1000001 })
      assert.is_truthy(e:find("budget", 1, true), e)
      assert.is_truthy(e:find("1..1000000", 1, true), e)
      -- The same values again are not changes.
      assert.are.same({}, ms.tune{ budget = 32, max_blocking_threads = 3 })
    end)
  end)

  it("refuses bad values with the profile's words and applies nothing then", function()
    run(function()
      local before = ms.metrics()
      local e = h.error_of(ms.tune, { budget = 64, worker_threads = 0 })
      h.assert_contains(e, "ms.tune: field 'worker_threads': 0 is out of range (allowed 1..1024)")
      e = h.error_of(ms.tune, { budget = "lots" })
      h.assert_contains(e, "field 'budget': expected a whole number, got string 'lots'")
      e = h.error_of(ms.tune, { thread_keep_alive = "5parsecs" })
      h.assert_contains(e, "'5parsecs' has an unknown unit")
      e = h.error_of(ms.tune, { wroker_threads = 2 })
      h.assert_contains(e, "unknown field 'wroker_threads' (did you mean 'worker_threads'?)")
      e = h.error_of(ms.tune, { enable_io = false })
      h.assert_contains(e, "field 'enable_io' cannot change while the host runs")
      e = h.error_of(ms.tune, { budget = 64, worker_threads = 7 })
      h.assert_contains(e, "7 is above max_worker_threads = 6")
      e = h.error_of(ms.tune, "workers=4")
      h.assert_contains(e, "expected a table of settings")
      local after = ms.metrics()
      assert.are.equal(before.budget, after.budget)
      assert.are.equal(before.active_workers, after.active_workers)
      assert.are.equal(before.tune_changes, after.tune_changes)
    end)
  end)

  it("publishes each change as an ms.tuned event", function()
    run(function()
      local ev = ms.events.subscribe("ms.tuned")
      ms.tune({ budget = 77 }, "spec")
      local e = assert(ev:recv(5))
      assert.are.equal("budget", e.field)
      assert.are.equal(128, e.old)
      assert.are.equal(77, e.new)
      assert.are.equal("spec", e.source)
    end)
  end)

  it("lowers a running agent's mailbox limit without dropping what it holds", function()
    run(function()
      local gate = ms.channel()
      local sink = ms.agent.spawn{ args = { gate = gate }, fn = function(args)
        args.gate:recv()
        -- Counts messages until the call that asks for the count (it comes
        -- after all of them: one sender, in order).
        local n = 0
        while true do
          local m, reply = ms.recv(20)
          if m == "count?" then return reply(n) end
          assert(m ~= nil, "no call")
          n = n + 1
        end
      end }
      for i = 1, 5 do sink:send(i) end
      ms.tune{ mailbox_limit = 3 }
      local ok, e = sink:send(6)
      assert.is_nil(ok)
      h.assert_contains(tostring(e), "is full (3 messages, mailbox_limit)")
      assert.are.equal(5, sink:info().mailbox)
      ms.tune{ mailbox_limit = 0 }
      sink:send(6)
      gate:send(true)
      assert.are.equal(6, sink:call("count?", 20))
    end)
  end)

  it("loses no message and runs nothing twice while workers come and go", function()
    run(function()
      local N, SENDERS = 3000, 4
      local sum = ms.agent.spawn{ args = { expect = N * SENDERS }, fn = function(args)
        local seen, total = {}, 0
        for _ = 1, args.expect do
          local m = assert(ms.recv(20), "a message was lost")
          local key = m.from * 1000000 + m.i
          assert(not seen[key], "a message arrived twice")
          seen[key] = true
          total = total + 1
        end
        local _, reply = ms.recv(20)
        reply(total)
      end }
      for s = 1, SENDERS do
        ms.agent.spawn{ args = { to = sum, from = s, n = N }, fn = function(args)
          for i = 1, args.n do
            args.to:send({ from = args.from, i = i })
            if i % 50 == 0 then ms.yield() end
          end
        end }
      end
      local flips = 0
      for _ = 1, 60 do
        ms.tune{ worker_threads = math.random(1, 6) }
        flips = flips + 1
        ms.sleep(0.005)
      end
      assert.are.equal(N * SENDERS, sum:call("total?", 30))
      assert.is_true(flips == 60)
    end)
  end)
end)

describe("a semaphore's limit", function()
  it("is raised with add_permits and lowered with reduce_permits, held permits kept", function()
    run(function()
      local sem = ms.semaphore(4)
      local held = { sem:acquire(), sem:acquire(), sem:acquire() }
      local now, owed = sem:reduce_permits(3)
      assert.are.equal(1, now)   -- the one free permit goes at once
      assert.are.equal(2, owed)  -- the rest as holders give theirs back
      held[1]:release()
      held[2]:release()
      assert.are.equal(0, sem:available())
      held[3]:release()
      assert.are.equal(1, sem:available()) -- 4 - 3
      sem:add_permits(2)
      assert.are.equal(3, sem:available())
    end)
  end)
end)

describe("ms._tune, the primitive under ms.tune", function()
  it("applies live fields by their names and returns each change", function()
    run(function()
      local before = ms.metrics()
      local ev = ms.events.subscribe("ms.tuned")
      local changes = ms._tune({ budget = 99, global_queue_interval = 31 }, "primitive")
      -- in the order of the live-field table, not pairs() order
      assert.are.same({ "global_queue_interval", "budget" }, { changes[1].field, changes[2].field })
      local c = by_field(changes)
      assert.are.same({ before.budget, 99 }, { c.budget.old, c.budget.new })
      assert.are.same({ before.global_queue_interval, 31 },
        { c.global_queue_interval.old, c.global_queue_interval.new })
      assert.are.equal(99, ms.metrics().budget)
      for _ = 1, 2 do   -- one event per field changed
        assert.are.equal("primitive", assert(ev:recv(20)).source)
      end
      -- no source: "ms.tune"; nothing to change: no change reported
      assert.are.same({}, ms._tune({ budget = 99 }))
      assert.are.equal(1, #ms._tune({ budget = 98 }))
      assert.are.equal("ms.tune", assert(ev:recv(20)).source)
    end)
  end)

  it("refuses what is not a live field with a number, changing nothing", function()
    run(function()
      local budget = ms.metrics().budget
      h.assert_contains(h.error_of(ms._tune, { enable_io = 1 }), "enable_io is not a live field")
      h.assert_contains(h.error_of(ms._tune, { budget = "lots" }), "budget is not a live field with a number")
      h.assert_contains(h.error_of(ms._tune, { [1] = 5 }), "number is not a live field")
      h.assert_contains(h.error_of(ms._tune, "budget"), "table expected")
      h.assert_contains(h.error_of(ms._tune, { budget = 0 }), "budget")
      assert.are.equal(budget, ms.metrics().budget)
    end)
  end)

  it("needs a runtime", function()
    h.assert_contains(h.error_of(ms._tune, { budget = 5 }), "no runtime")
  end)
end)

describe("ms._profile_fields, the table ms.profile checks against", function()
  it("describes each field once, with a kind, and a default within its range", function()
    local fields, seen, config = ms._profile_fields(), {}, 0
    assert.is_true(#fields > 10)
    local kinds = { count = true, duration = true, size = true, bool = true, string = true,
                    listen = true, path_or_false = true, path = true }
    for _, f in ipairs(fields) do
      assert.are.equal("string", type(f.name))
      assert.is_nil(seen[f.name], "twice: " .. f.name)
      seen[f.name] = true
      assert.is_true(kinds[f.kind] ~= nil, f.name .. ": kind " .. tostring(f.kind))
      if f.kind == "count" or f.kind == "duration" or f.kind == "size" then
        assert.is_true(f.min <= f.default and f.default <= f.max,
          ("%s: %s not in %s..%s"):format(f.name, f.default, f.min, f.max))
      end
      if f.config then config = config + 1 end
      -- a fresh table per call: changing one changes no other caller's
      f.name = "changed"
    end
    assert.is_true(config > 10)
    assert.are_not.equal("changed", ms._profile_fields()[1].name)
    -- the live ones are exactly the fields ms.tune accepts
    local live = {}
    for _, f in ipairs(ms._profile_fields()) do
      if f.live then live[#live + 1] = f.name end
    end
    table.sort(live)
    local accepted = {}
    for _, name in ipairs(require("ms.profile").live_fields) do accepted[#accepted + 1] = name end
    table.sort(accepted)
    assert.are.same(accepted, live)
  end)
end)

describe("ms.tuner.new", function()
  it("is what calling ms.tuner does, and checks its options the same way", function()
    run(function()
      local runs = 0
      local t = ms.tuner.new{ interval = 0.01, name = "by-new", fn = function() runs = runs + 1 end }
      local deadline = ms.now() + 20
      while runs < 2 and ms.now() < deadline do ms.sleep(0.01) end
      t:stop()
      assert.is_true(runs >= 2)
      assert.are.equal("by-new", t.name)
      assert.are.equal(getmetatable(t), getmetatable(ms.tuner{ interval = 1, fn = function() end }))
    end)
    h.assert_contains(h.error_of(ms.tuner.new, 5), "expected a table")
    h.assert_contains(h.error_of(ms.tuner.new, { fn = print, intervall = 1 }), "unknown option 'intervall'")
    h.assert_contains(h.error_of(ms.tuner.new, { interval = 1 }), "fn must be a function")
    h.assert_contains(h.error_of(ms.tuner.new, { fn = print, interval = 0 }), "interval must be above 0")
  end)
end)

describe("ms.tuner", function()
  it("runs fn with the latest and the previous snapshot and applies what it returns", function()
    run(function()
      local seen = {}
      local t = ms.tuner{ interval = 0.02, fn = function(now, prev, tuner)
        seen[#seen + 1] = { now = now.time, prev = prev.time, rate = tuner:rate("poll_count") }
        if #seen == 2 then
          return { budget = 50 }, "second look"
        end
      end }
      while #seen < 4 do ms.sleep(0.01) end
      t:stop()
      for _, s in ipairs(seen) do
        assert.is_true(s.now > s.prev)
        assert.is_true(s.rate >= 0)
      end
      assert.are.equal(seen[1].now, seen[2].prev)
      assert.are.equal(50, ms.metrics().budget)
      assert.are.equal(1, #t.trace)
      assert.are.equal("budget", t.trace[1].field)
      assert.are.equal(128, t.trace[1].old)
      assert.are.equal(50, t.trace[1].new)
      assert.are.equal("second look", t.trace[1].reason)
      local runs = t.runs
      ms.sleep(0.1)
      assert.are.equal(runs, t.runs) -- stopped
    end)
  end)

  it("holds a field back during its cool-down", function()
    run(function()
      local n = 0
      local t = ms.tuner{ interval = 0.02, cooldown = 60, fn = function()
        n = n + 1
        return { budget = 100 + n }
      end }
      while n < 5 do ms.sleep(0.01) end
      t:stop()
      assert.are.equal(1, #t.trace)
      assert.are.equal(101, ms.metrics().budget)
      assert.is_true(t.skipped >= 3)
    end)
  end)

  it("reports an error in fn or a refused setting and keeps running", function()
    run(function()
      local n = 0
      local t = ms.tuner{ interval = 0.02, log = false, fn = function()
        n = n + 1
        if n == 1 then error("boom") end
        if n == 2 then return { enable_io = false } end
      end }
      while n < 4 do ms.sleep(0.01) end
      t:stop()
      assert.are.equal(2, t.errors)
      h.assert_contains(tostring(t.last_error), "enable_io")
    end)
  end)

  it("checks its options", function()
    run(function()
      h.assert_contains(h.error_of(ms.tuner, { interval = 1 }), "fn must be a function")
      h.assert_contains(h.error_of(ms.tuner, { fn = print, interval = 0 }),
        "interval must be above 0")
      h.assert_contains(h.error_of(ms.tuner, { fn = print, every = 1 }), "unknown option 'every'")
      h.assert_contains(h.error_of(ms.tuner, { fn = print, interval = "1s" }),
        "interval must be a number of seconds")
    end)
  end)

  it("has a hysteresis helper that reports each level once, after enough samples", function()
    local hy = ms.tuner.hysteresis{ high = 10, low = 2, samples = 2 }
    assert.is_nil(hy:update(11))
    assert.are.equal("high", hy:update(12))
    assert.is_nil(hy:update(15)) -- already high
    assert.is_nil(hy:update(5))  -- between: nothing
    assert.is_nil(hy:update(1))
    assert.are.equal("low", hy:update(0))
    assert.are.equal("low", hy.state)
    h.assert_contains(h.error_of(ms.tuner.hysteresis, { high = 1, low = 2 }),
      "low (2) must be below high (1)")
  end)
end)

describe("ms-host and tuning", function()
  local function tmpfile(text)
    return h.tmpfile(text, ".lua")
  end

  it("runs the profile's tuner script beside the main agent", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "'")
    local f = assert(io.open(dir .. "/t.lua", "w"))
    f:write('ms.tune({ budget = 99 }, "tuner-script")\nwhile true do ms.sleep(1) end\n')
    f:close()
    f = assert(io.open(dir .. "/p.lua", "w"))
    f:write('return { extends = "default", description = "t", tuner = "t.lua" }\n')
    f:close()
    local main = tmpfile([[
for _ = 1, 500 do
  if ms.metrics().budget == 99 then print("tuned by the script"); return end
  ms.sleep(0.01)
end
error("the tuner script did not run")
]])
    local p = io.popen(('"%s" run "%s" --profile "%s/p.lua" 2>&1; echo "exit=$?"')
      :format(host, main, dir))
    local out = p:read("*a")
    p:close()
    os.remove(main)
    os.execute("rm -rf '" .. dir .. "'")
    h.assert_contains(out, "tuned by the script")
    h.assert_contains(out, "exit=0")
  end)

  it("refuses a profile whose tuner script does not exist, naming it", function()
    local prof = tmpfile('return { extends = "default", description = "t", tuner = "nope.lua" }')
    local p = io.popen(('"%s" run /dev/null --profile "%s" 2>&1; echo "exit=$?"'):format(host, prof))
    local out = p:read("*a")
    p:close()
    os.remove(prof)
    h.assert_contains(out, "tuner")
    h.assert_contains(out, "nope.lua")
    h.assert_contains(out, "exit=2")
  end)

  it("brings in a stand-in worker while the only worker is stuck in an agent", function()
    h.run(function()
      local ev = ms.events.subscribe("ms.worker.stalled")
      -- Stuck until stopped (jit = false lets agent:stop() end the loop),
      -- not for a guessed time.
      local spinner = ms.agent.spawn{ name = "spinner", jit = false, fn = function()
        while true do end
      end }
      local e = assert(ev:recv(20))
      assert.are.equal("spinner", e.agent)
      assert.are.equal("true", e.replaced)
      -- With its only worker stuck (no recovery yet), this answer comes
      -- from the stand-in.
      local echo = ms.agent.spawn{ fn = function() local m, reply = ms.recv(); reply(m) end }
      assert.are.equal("ping", echo:call("ping", 20))
      assert.are.same({ nil, "timeout" }, { ev:recv(0) })
      assert.is_true(ms.metrics().worker_replacements >= 1)
      spinner:stop("enough")
      assert.are.equal("true", assert(ev:recv(20)).recovered)
    end, { worker_threads = "1", max_worker_threads = "2", stall_threshold = "100ms" })
  end)
end)
