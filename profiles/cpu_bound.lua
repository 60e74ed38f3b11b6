-- cpu_bound: computation-heavy work (parsing, compression, numerics) that
-- rarely waits on I/O or blocking calls.
return {
    extends = "default",
    description = "Computation-heavy work: one worker per CPU, a small blocking pool",

    -- One worker per CPU: every extra worker would steal time from another.
    worker_threads = "cpu_bound",

    -- Little blocking work is expected; 64 threads are plenty, and the cap
    -- keeps a stray burst of blocking calls from oversubscribing the CPUs
    -- the workers need.
    max_blocking_threads = 64,

    -- Blocking threads are rare here; let an idle one go after 10 s rather
    -- than keep it around for a minute.
    thread_keep_alive = 10,

    -- Budget, intervals and timeouts stay at the defaults: computation that
    -- does not call ms.* operations is not metered by the budget anyway.
}
