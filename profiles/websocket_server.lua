-- websocket_server: many long-lived connections, each with small messages
-- that should be answered quickly.
return {
    extends = "default",
    description = "Many long-lived connections: 2 workers per CPU, small budget, quick shutdown",

    -- 2 x CPUs: a spare worker per CPU so a connection woken by the network
    -- finds an idle worker at once, even while others are busy.
    worker_threads = "latency_sensitive",

    -- 32 operations per poll: one chatty connection yields often, so it
    -- cannot delay the frames of thousands of others.
    budget = 32,

    -- Frames and new connections wake their tasks from the driver thread,
    -- through the shared injection queue; look there every 31 ticks (twice
    -- as often as the default) so they wait less behind local work.
    global_queue_interval = 31,

    -- Clients reconnect on their own; holding a deploy for 30 s to let
    -- connections drain is not worth it.  10 s lets in-flight replies finish.
    shutdown_timeout = 10,

    -- Connections are served on the workers, not the blocking pool; let its
    -- rare idle threads go after 10 s.
    thread_keep_alive = 10,
}
