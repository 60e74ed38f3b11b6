-- default: the configuration every other profile starts from.  It sets
-- every field, so `ms-host profiles` shows where each value comes from, and
-- its runtime values equal libms's ms_config_default: a host run without a
-- profile and one run with this profile behave the same.
return {
    description = "General purpose: one worker per CPU, libms's defaults for everything else",

    -- One worker per CPU: workers never block (blocking work goes to the
    -- blocking pool), so more workers than CPUs would only time-slice.
    worker_threads = "cpu_bound",

    -- ms.tune and tuners may grow the pool up to 4 workers per CPU (0 =
    -- that automatic ceiling), and so may stand-ins for stuck workers.
    -- The array of workers is sized for it at start: about 3 KB each.
    max_worker_threads = 0,

    -- The blocking pool grows on demand up to this many threads.  512 is
    -- large enough that bursts of file I/O or DNS look-ups queue rarely, and
    -- small enough that a runaway burst cannot exhaust the process.
    max_blocking_threads = 512,

    -- An idle blocking thread lives a minute: long enough to be reused by
    -- the next burst, short enough that a quiet host sheds its threads.
    thread_keep_alive = 60,

    -- Thread stacks are reserved, not committed: 2 MiB costs address space
    -- only, and leaves room for deep C calls (LuaJIT's C stack, libuv).
    thread_stack_size = "2M",

    -- Timers and I/O on: agents expect ms.sleep, timeouts and sockets.
    enable_all = true,
    enable_time = true,
    enable_io = true,

    -- Every 61 ticks a worker takes from the shared injection queue even if
    -- its own queue has work.  Spawns from other threads and every wake from
    -- the driver thread (timers, sockets) arrive there, so this bounds how
    -- long they wait behind local work.  61 is prime, so the check does not
    -- fall into step with periodic work; it costs one lock per 61 polls.
    global_queue_interval = 61,

    -- Maintenance checks (today: whether the runtime is stopping) every 61
    -- ticks.  libms's driver runs on its own thread, so this does not delay
    -- timers or I/O; it only bounds how many polls a stop request waits for.
    event_interval = 61,

    -- 128 cooperative operations per poll before a task must yield: a busy
    -- task cannot hold a worker for long, and yields stay rare.
    budget = 128,

    -- A graceful shutdown waits 30 s for tasks before it cancels them: what
    -- service managers commonly allow (systemd's default stop timeout is 90 s,
    -- Kubernetes' grace period 30 s).
    shutdown_timeout = 30,

    -- A worker held by one poll for 2 s (an agent in an endless loop, a
    -- blocking call on a worker) is reported: long enough that a heavy but
    -- healthy poll never trips it, short enough to notice before users do.
    stall_threshold = 2,

    -- While a worker is stuck, a stand-in worker keeps the runtime's
    -- parallelism (it retires when the stuck poll ends).
    replace_stalled_workers = true,

    -- Per-worker histograms of poll duration and scheduling delay cost two
    -- clock reads per poll (and one per wake-up), measurable on workloads of
    -- tiny polls (docs/metrics.md has the figures): opt-in, as in Tokio.
    metrics_histograms = false,

    -- No metrics file unless asked (`--metrics-file PATH`); when there is
    -- one, a snapshot every second is fine-grained enough to plot and costs
    -- one wake-up a second.
    metrics_file = false,
    metrics_interval = 1,

    -- Nothing listens unless asked: metrics and the console are opt-in
    -- (`--set metrics_listen=127.0.0.1:9090`, `--set console=ms-host.sock`).
    metrics_listen = false,
    console = false,
    tuner = false,

    -- SIGUSR1 writes the live task dump to stderr; a path appends it to
    -- that file instead (docs/observability.md).
    tasks_dump_file = false,

    -- Agents are unlimited by default; agent_system sets a limit.
    agent_memory_limit = 0,

    -- Each JIT-compiling agent takes 64 KB or more of the one machine-code
    -- window all LuaJIT states share; the host measures the window and
    -- gives the JIT to new agents while it has room (docs/host.md, "The JIT
    -- and its window"), so this bound is at its maximum: the operator may
    -- lower it.
    jit_agent_limit = 1000000,

    -- Mailboxes are unbounded by default, like Erlang's; bound them in
    -- profiles where a slow consumer must push back on its senders.
    mailbox_limit = 0,

    -- An agent stuck in one poll past stall_threshold is reported, not
    -- stopped: a long computation may be legitimate.  1 stops it at its
    -- first stall (exit reason "runaway", which supervisors restart);
    -- its own spawn option `runaway` overrides this.
    runaway_stop_after = 0,

    -- Files, sockets, listeners and processes one agent may hold open (one
    -- count for every kind of OS handle): far more than a well-behaved
    -- agent needs, and a quarter of a typical descriptor limit (ulimit -n
    -- 16384), so that one leaking agent meets a clear error naming this
    -- field before the whole host meets EMFILE.  The host-wide limit is
    -- the OS's own unless set.
    agent_io_limit = 4096,
    host_io_limit = 0,

    -- No cluster unless asked (--cluster URL): a host alone pays nothing.
    -- Heartbeats every 100 ms.  A host that is gone is found at once (the
    -- broker has no subscriber for it: a probe after 250 ms of silence);
    -- one that is alive but silent for 3 s (hung, stopped) is declared
    -- lost, and a host cut off from the broker that long fences itself; after
    -- a broker outage of our own, nobody is declared lost for 5 s while
    -- the others reconnect (docs/cluster.md).
    cluster = "",
    -- A name the other hosts know this one by (child specs' host =); it
    -- stays when the host restarts, its id does not.
    cluster_name = "",
    cluster_heartbeat = 0.1,
    cluster_loss_after = 3,
    cluster_broker_grace = 5,
}
