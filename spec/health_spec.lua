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
  -- The stuck agents below loop until stopped (jit = false, so that
  -- agent:stop() can end the loop): they stay stuck for as long as the
  -- spec needs, however slow the machine, instead of for a guessed time.
  local function endless() while true do end end

  it("reports a worker stuck in one agent's poll, naming the agent, then its recovery", function()
    run(function()
      local ev = ms.events.subscribe("ms.worker.stalled")
      local a = ms.agent.spawn{ name = "busy-loop", jit = false, fn = endless }
      local e = assert(ev:recv(20))
      assert.are.equal("busy-loop", e.agent)
      assert.are.equal("false", e.recovered)
      assert.is_true(e.stalled >= 0.1)
      assert.is_true(ms.metrics().stalls_total >= 1)
      assert.are.same({ nil, "timeout" }, { ev:recv(0) })   -- no recovery while stuck
      a:stop("enough")
      local r = assert(ev:recv(20))
      assert.are.equal("busy-loop", r.agent)
      assert.are.equal("true", r.recovered)
    end)
  end)

  it("keeps the rest of the host responsive while one worker is stuck", function()
    run(function()
      local ev = ms.events.subscribe("ms.worker.stalled")
      local stuck = ms.agent.spawn{ jit = false, fn = endless }
      ms.monitor(stuck)
      assert.are.equal("false", assert(ev:recv(20)).recovered)   -- it is stuck now
      local echo = ms.agent.spawn{ fn = function() local m, reply = ms.recv(); reply(m) end }
      -- Answered by the other worker while the first is still stuck: the
      -- stuck agent has not exited and its worker has not recovered.
      assert.are.equal("ping", echo:call("ping", 20))
      assert.are.same({ nil, "timeout" }, { ev:recv(0) })
      assert.are.equal("running", stuck:info().state)
      stuck:stop("enough")
      assert.are.equal("killed", assert(ms.recv(20)).reason)
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
