-- adaptive_tuning.lua: a tuner that follows the load.
--
--   ms-host run scripts/adaptive_tuning.lua
--
-- The host starts small: one worker, one blocking thread.  A load
-- generator then runs for a few seconds: LOAD_AGENTS agents that each
-- compute for a while and sleep a millisecond, over and over (their timer
-- wake-ups arrive from the driver thread, so a worker that cannot keep up
-- shows as a deep injection queue), and a stream of blocking jobs (a 20 ms
-- sleep each, so one blocking thread falls behind).  Then the load stops.
--
-- The tuner looks every TICK seconds:
--   * injection queue deep (or workers all busy) for 2 looks in a row:
--     one more worker, up to MAX_WORKERS;
--   * blocking jobs waiting for 2 looks: twice the blocking threads;
--   * nothing queued and workers mostly idle for 3 looks: one worker
--     fewer, blocking threads back to 1 (they leave after a short
--     keep-alive);
-- with a cool-down so one burst does not cause a run of changes.  Each
-- change is printed with its reason as it happens, and the run ends with
-- the trace and where the settings ended up.  It finishes by itself in
-- about 7 seconds.

local LOAD_AGENTS, LOAD_SECONDS, CALM_SECONDS = 200, 3, 3
local TICK = 0.25
local ceiling = ms.metrics().max_workers   -- max_worker_threads: 4 per CPU by default
local MAX_WORKERS = math.max(2, math.min(ceiling, math.floor(ceiling / 2)))
local MAX_BLOCKING = 8

ms.tune{ worker_threads = 1, max_blocking_threads = 1, thread_keep_alive = "500ms" }
print(("start: 1 worker, 1 blocking thread (tuner may go up to %d workers, %d blocking threads)")
  :format(MAX_WORKERS, MAX_BLOCKING))

-- ---- the tuner ----

local deep_queue = ms.tuner.hysteresis{ high = 32, low = 2, samples = 2 }
local waiting_jobs = ms.tuner.hysteresis{ high = 2, low = 0, samples = 2 }
local quiet = 0

local tuner = ms.tuner{
  name = "adaptive",
  interval = TICK,
  cooldown = 2 * TICK,
  log = function(line) print(line) end,
  fn = function(now, prev, t)
    local busy = t:rate("busy") / math.max(now.active_workers, 1) -- 0..1 per worker
    local inj, blk = now.injection_queue_depth, now.blocking_queue_depth
    local q = deep_queue:update(inj)
    if (q == "high" or (deep_queue.state == "high" and busy > 0.9))
        and now.active_workers < MAX_WORKERS then
      t:tune({ worker_threads = now.active_workers + 1 },
        ("injection queue %d, workers %.0f%% busy"):format(inj, busy * 100))
    end
    local b = waiting_jobs:update(blk)
    if (b == "high" or (waiting_jobs.state == "high" and blk > 0))
        and now.max_blocking_threads < MAX_BLOCKING then
      t:tune({ max_blocking_threads = math.min(MAX_BLOCKING, now.max_blocking_threads * 2) },
        ("%d blocking jobs waiting"):format(blk))
    end
    if inj <= 2 and blk == 0 and busy < 0.3 then
      quiet = quiet + 1
    else
      quiet = 0
    end
    if quiet >= 3 then
      local why = ("quiet for %d looks: injection queue %d, workers %.0f%% busy")
        :format(quiet, inj, busy * 100)
      if now.active_workers > 1 then
        t:tune({ worker_threads = now.active_workers - 1 }, why)
      end
      if now.max_blocking_threads > 1 then
        t:tune({ max_blocking_threads = 1 }, why)
      end
    end
  end,
}

-- ---- the load ----

local stop = ms.channel()   -- closed when the load phase ends
local done = ms.channel()
for i = 1, LOAD_AGENTS do
  ms.agent.spawn{
    name = "load-" .. i,
    args = { stop = stop, done = done },
    fn = function(args)
      local rounds, x = 0, 0
      while true do
        for k = 1, 20000 do x = x + k % 7 end  -- some work
        rounds = rounds + 1
        ms.sleep(0.001)
        local v, err = args.stop:try_recv()
        if v == nil and err == "closed" then break end
      end
      args.done:send(rounds)
    end,
  }
end

-- Blocking jobs: each of these agents runs one at a time (ms.blocking
-- moves the agent's state to a blocking thread), so with one thread the
-- rest wait in the blocking queue.
local IO_AGENTS = 8
for i = 1, IO_AGENTS do
  ms.agent.spawn{
    name = "io-" .. i,
    args = { stop = stop, done = done },
    fn = function(args)
      local ffi = require "ffi"
      pcall(ffi.cdef, "int usleep(unsigned int usec);")
      local jobs = 0
      while true do
        ms.blocking(function() ffi.C.usleep(20000) end)  -- a 20 ms blocking call
        jobs = jobs + 1
        local v, err = args.stop:try_recv()
        if v == nil and err == "closed" then break end
      end
      args.done:send(-jobs)
    end,
  }
end

local peak_workers, peak_blocking, peak_queue = 1, 1, 0
local load_until = ms.now() + LOAD_SECONDS
for now in ms.interval(0.05, "skip") do
  if now >= load_until then break end
  local m = ms.metrics()
  peak_workers = math.max(peak_workers, m.active_workers)
  peak_blocking = math.max(peak_blocking, m.blocking_threads)
  peak_queue = math.max(peak_queue, m.injection_queue_depth)
end
stop:close()
local rounds, blocking_done = 0, 0
for _ = 1, LOAD_AGENTS + IO_AGENTS do
  local n = assert(done:recv(10), "a load agent did not finish")
  if n >= 0 then rounds = rounds + n else blocking_done = blocking_done - n end
end
print(("load stopped: %d rounds of work, %d blocking jobs; peak injection queue %d, "
  .. "peak %d workers, %d blocking threads"):format(rounds, blocking_done, peak_queue,
  peak_workers, peak_blocking))

ms.sleep(CALM_SECONDS)
tuner:stop()

local m = ms.metrics()
local ups, downs = 0, 0
for _, c in ipairs(tuner.trace) do
  if c.new > c.old then ups = ups + 1 else downs = downs + 1 end
end
print(("after the calm: %d active workers, max_blocking_threads %d, %d blocking threads alive")
  :format(m.active_workers, m.max_blocking_threads, m.blocking_threads))
print(("tuner: %d looks, %d changes (%d up, %d down), %d held back by the cool-down, %d errors")
  :format(tuner.runs, #tuner.trace, ups, downs, tuner.skipped, tuner.errors))

-- What this example exists to show; ctest runs it, so say so when it
-- did not happen.
assert(peak_workers > 1, "the tuner never added a worker under load")
assert(m.active_workers == 1 and m.max_blocking_threads == 1,
  "the tuner did not give the workers and blocking threads back after the load")
assert(tuner.errors == 0, "the tuner raised errors: " .. tostring(tuner.last_error))
