-- agent_system: thousands of Lua agents exchanging messages under
-- supervision (the host's main use).
return {
    extends = "default",
    description = "Many supervised agents: one worker per CPU, bounded memory and mailboxes",

    -- One worker per CPU: agents are scheduled as units and stolen between
    -- workers; more workers would only move Lua states between threads.
    worker_threads = "cpu_bound",

    -- An agent's Lua stack lives on the heap; the C stack holds only the
    -- scheduler and LuaJIT's nested C calls (at most about 200 deep), so
    -- 1 MiB is ample, and halves the address space each thread reserves.
    thread_stack_size = "1M",

    -- 64 MiB per agent by default (an agent starts at about 40 KB): a
    -- runaway agent fails with an out-of-memory error its supervisor can
    -- restart, instead of taking the host down.  ms.agent.spawn's
    -- memory_limit overrides it per agent.
    agent_memory_limit = "64M",

    -- 10,000 messages per mailbox: bursts fit, and an agent that stops
    -- reading holds at most a few megabytes before senders get an error
    -- (back-pressure) rather than the host's memory growing without bound.
    mailbox_limit = 10000,

    -- As default.lua: the machine-code window decides (docs/host.md, "The
    -- JIT and its window").
    jit_agent_limit = 1000000,
}
