-- agents.lua: the first thing to run.   ms-host run scripts/agents.lua
--
-- A small job shop.  A producer agent hands out 40 jobs; four worker
-- agents take them from a shared channel and process each one while
-- holding a permit of a semaphore that stands for a scarce resource (two
-- "database connections"); a collector agent gathers the results.  The
-- main agent checksums a file on the blocking pool meanwhile, ticks a
-- progress line on a timer, waits for everything, and prints a summary
-- from ms.metrics().  It finishes by itself in a couple of seconds.

local JOBS, WORKERS, CONNECTIONS = 40, 4, 2

local jobs = ms.channel(8)            -- bounded: the producer feels back-pressure
local results = ms.channel()          -- unbounded
local db = ms.semaphore(CONNECTIONS)  -- the scarce resource

local collector = ms.agent.spawn{
  name = "collector",
  args = { results = results, expect = JOBS },
  fn = function(args)
    local by_worker, total = {}, 0
    for _ = 1, args.expect do
      local r = assert(args.results:recv(10), "collector: no result for 10 s")
      by_worker[r.worker] = (by_worker[r.worker] or 0) + 1
      total = total + r.value
    end
    -- Answer the main agent's request with what was collected.
    local _, reply = ms.recv()
    reply({ total = total, by_worker = by_worker })
  end,
}

for w = 1, WORKERS do
  ms.agent.spawn{
    name = "worker-" .. w,
    args = { id = w, jobs = jobs, results = results, db = db },
    fn = function(args)
      while true do
        local job = args.jobs:recv()
        if not job then return end                  -- channel closed and drained
        local permit = args.db:acquire()            -- wait for a connection
        ms.sleep(0.04 + (job.n % 5) * 0.01)         -- "query" while holding it
        permit:release()
        args.results:send({ worker = args.id, value = job.n * job.n })
      end
    end,
  }
end

ms.agent.spawn{
  name = "producer",
  args = { jobs = jobs, count = JOBS },
  fn = function(args)
    for n = 1, args.count do
      args.jobs:send({ n = n })   -- waits while 8 jobs are queued
    end
    args.jobs:close()             -- workers drain what is left, then stop
  end,
}

-- Meanwhile, on the blocking pool: a checksum of this file.  The workers
-- keep running agents while this thread reads and adds.
local sum_job = ms.spawn(function()
  local ok, sum, size = ms.blocking(function(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    local sum = 0
    for i = 1, #data do sum = (sum * 31 + data:byte(i)) % 2147483647 end
    return sum, #data
  end, arg and arg[0] or "scripts/agents.lua")
  if not ok then error(sum) end
  return sum, size
end)

-- A progress line every 250 ms until the collector has everything.
local ticker = ms.spawn(function()
  local start = ms.now()
  for _ in ms.interval(0.25) do
    local m = ms.metrics()
    print(string.format("  %.2fs  agents %d  jobs queued %d  results queued %d  db free %d",
      ms.now() - start, #m.agents, jobs:len(), results:len(), db:available()))
  end
end)

local started = ms.now()
local summary, err = collector:call("summary", 30)
ticker:abort()
if not summary then error("no summary from the collector: " .. tostring(err)) end
local ok, checksum, size = sum_job:join()

local m = ms.metrics()
print(("done: %d jobs in %.2f s, total %d (expected %d)"):format(
  JOBS, ms.now() - started, summary.total, JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6))
for w = 1, WORKERS do
  print(("  worker-%d processed %d jobs"):format(w, summary.by_worker[w] or 0))
end
print(("blocking job: checksum %d of %d bytes (ok=%s)"):format(checksum, size, tostring(ok)))
print(("runtime: %d workers, %d tasks spawned, %d polls, %d steals, %d parks, %d timers fired, %d blocking jobs"):format(
  m.workers, m.spawned_tasks, m.poll_count, m.steal_count, m.park_count, m.timers_fired,
  m.blocking_jobs_total))
assert(summary.total == JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6, "lost or duplicated a job")
