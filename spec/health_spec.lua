-- The health monitor and runaway agents: a worker stuck in one agent's
-- poll is reported as an event naming the agent, the host stays
-- responsive meanwhile, and an interpreted (jit = false) agent in an
-- endless loop can be stopped by the operator.
local ms = require "ms"

local function run(fn)
  local ok, err = ms.run(fn, { worker_threads = "2", stall_threshold = "100ms" })
  assert(ok, tostring(err))
end

describe("the health monitor", function()
  it("reports a worker stuck in one agent's poll, naming the agent, then its recovery", function()
    run(function()
      local ev = ms.events.subscribe("ms.worker.stalled")
      ms.agent.spawn{ name = "busy-loop", fn = function()
        local t = os.clock() + 0.5
        while os.clock() < t do end
      end }
      local e = assert(ev:recv(5))
      assert.are.equal("busy-loop", e.agent)
      assert.are.equal("false", e.recovered)
      assert.is_true(e.stalled >= 0.1)
      local r = assert(ev:recv(5))
      assert.are.equal("true", r.recovered)
      assert.is_true(ms.metrics().stalls_total >= 1)
    end)
  end)

  it("keeps the rest of the host responsive while one worker is stuck", function()
    run(function()
      ms.agent.spawn{ fn = function() local t = os.clock() + 0.5; while os.clock() < t do end end }
      ms.sleep(0.05)
      local echo = ms.agent.spawn{ fn = function() local m, reply = ms.recv(); reply(m) end }
      assert.are.equal("ping", echo:call("ping", 0.4))
    end)
  end)
end)

describe("a runaway agent", function()
  it("running with jit = false is stopped by agent:stop(), even in an endless loop", function()
    run(function()
      local a = ms.agent.spawn{ jit = false, fn = function() while true do end end }
      ms.monitor(a)
      ms.sleep(0.1)
      a:stop("operator")
      local e = assert(ms.recv(5))
      assert.are.equal("killed", e.reason)
      assert.are.equal("operator", e.message) -- the stop's reason
    end)
  end)
end)
