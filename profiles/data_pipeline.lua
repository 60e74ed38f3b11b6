-- data_pipeline: stages that read, transform and write batches of data -
-- CPU work interleaved with file and network I/O.
return {
    extends = "default",
    description = "Read-transform-write stages: 1.5 workers per CPU, a large blocking pool",

    -- 1.5 x CPUs (rounded up): transforms keep the CPUs busy, and the extra
    -- half covers workers waiting between stages.
    worker_threads = "mixed",

    -- Reads, writes and compression libraries run on the blocking pool,
    -- several per stage; 2048 threads keep a wide pipeline from queueing.
    max_blocking_threads = 2048,

    -- Batches arrive in waves; keep idle blocking threads two minutes so the
    -- next wave reuses them instead of creating hundreds of threads again.
    thread_keep_alive = 120,

    -- Stages process records in loops; 256 operations per poll halve the
    -- forced yields inside a batch.
    budget = 256,

    -- At shutdown in-flight batches should reach their sink rather than be
    -- lost; give them two minutes.
    shutdown_timeout = 120,
}
