-- io_bound: network services and clients that spend most of their time
-- waiting on sockets, files, DNS and blocking libraries.
return {
    extends = "default",
    description = "I/O-heavy services: 4 workers per CPU and a large blocking pool",

    -- 4 x CPUs: agents do short bursts of Lua between waits, and a Lua call
    -- that blocks for a moment (a library without an async API) then holds
    -- one worker of many rather than one of a few.
    worker_threads = "io_bound",

    -- File I/O and getaddrinfo run on the blocking pool; with many
    -- connections in flight they need more than the default 512.
    max_blocking_threads = 1024,

    -- Wakes from I/O arrive through the shared injection queue (the driver
    -- runs on its own thread); look there every 31 ticks instead of 61, so
    -- a task whose socket became ready waits less behind local work.  One
    -- lock per 31 polls is cheap next to the system calls this work makes.
    global_queue_interval = 31,
}
