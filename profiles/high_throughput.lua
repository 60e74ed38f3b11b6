-- high_throughput: batch-like work where total work done per second matters
-- more than the latency of any one task (queues of jobs, bulk messaging).
return {
    extends = "default",
    description = "Most work per second: larger budget, fewer queue and driver checks",

    -- One worker per CPU: throughput comes from keeping each CPU busy, not
    -- from more threads to switch between.
    worker_threads = "cpu_bound",

    -- A task may do 512 operations per poll before it must yield: fewer
    -- forced yields, better cache locality; latency is not the goal here.
    budget = 512,

    -- Check the shared injection queue every 127 ticks (prime, about twice
    -- the default): less contention on its lock, at the cost of remote
    -- spawns and I/O wakes waiting a little longer behind local work.
    global_queue_interval = 127,

    -- Maintenance checks every 127 ticks: fewer interruptions of the run
    -- loop; a stop request waits a few more polls, which nobody notices.
    event_interval = 127,

    -- Queues may hold much work at shutdown; give it a minute to drain.
    shutdown_timeout = 60,
}
