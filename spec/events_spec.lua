-- The event bus: publish/subscribe across agents, a slow subscriber loses
-- events (counted) instead of blocking publishers, and the host publishes
-- its own events.
local ms = require "ms"

local function run(fn)
  local ok, err = ms.run(fn)
  assert(ok, tostring(err))
end

describe("ms.events", function()
  it("delivers a published value to every subscriber of the topic, in order", function()
    run(function()
      local a, b = ms.events.subscribe("orders"), ms.events.subscribe("orders")
      local other = ms.events.subscribe("other")
      for i = 1, 3 do ms.events.publish("orders", { id = i }) end
      for i = 1, 3 do
        assert.are.equal(i, a:recv(1).id)
        assert.are.equal(i, b:recv(1).id)
      end
      assert.are.same({ nil, "empty" }, { other:try_recv() })
    end)
  end)

  it("crosses agents", function()
    run(function()
      local sub = ms.events.subscribe("ping")
      ms.agent.spawn{ fn = function() ms.events.publish("ping", "from an agent") end }
      assert.are.equal("from an agent", sub:recv(5))
    end)
  end)

  it("drops events for a full subscriber and counts them, without blocking", function()
    run(function()
      local slow = ms.events.subscribe("burst", 2)
      local before = ms.events.stats().dropped
      -- Without blocking: all 100 publishes return in this one task while
      -- nobody reads (a blocking publish would wait here for ever).
      for i = 1, 100 do ms.events.publish("burst", i) end
      assert.are.equal(98, ms.events.stats().dropped - before)
      assert.are.equal(1, slow:recv(1))
      assert.are.equal(2, slow:recv(1))
      assert.is_true(ms.metrics().events.dropped >= 98)
    end)
  end)

  it("stops delivering to a subscription whose channel was closed", function()
    run(function()
      local sub = ms.events.subscribe("gone")
      sub:close()
      ms.events.publish("gone", 1)
      for _, s in ipairs(ms.events.stats().subscriptions) do
        assert.are_not.equal("gone", s.topic)
      end
    end)
  end)

  it("publishes agent starts and exits under ms.agent.*", function()
    run(function()
      local started = ms.events.subscribe("ms.agent.started")
      local exited = ms.events.subscribe("ms.agent.exited")
      ms.agent.spawn{ name = "short-lived", fn = function() error("on purpose") end }
      local s = started:recv(5)
      assert.are.equal("short-lived", s.name)
      local e = exited:recv(5)
      assert.are.equal("short-lived", e.name)
      assert.are.equal("error", e.reason)
      assert.truthy(e.message:find("on purpose", 1, true))
    end)
  end)

  it("refuses values that cannot cross agents, naming them", function()
    run(function()
      local ok, err = pcall(ms.events.publish, "x", { f = print })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("value.f is a function", 1, true))
    end)
  end)
end)
