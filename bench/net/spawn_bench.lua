-- spawn_bench.lua: N short processes (/bin/echo hello), at most C at a
-- time, each one's output read to the end and its exit waited for.
--   ms-host run bench/net/spawn_bench.lua -- [N] [C] [ROUNDS]
-- Prints per round: spawn_echo_<N> us=... and a final median line:
--   spawn_echo_<N> median_us=... min_us=... n=ROUNDS
local N, C, ROUNDS = tonumber(arg[1]) or 1000, tonumber(arg[2]) or 20, tonumber(arg[3]) or 5

local function one()
    local p = assert(ms.process.spawn{ "/bin/echo", "hello" })
    local out = assert(p.stdout:read("a", 30))
    assert(out == "hello\n", out)
    assert(p:wait(30) == 0)
    p:close()
end

local function round()
    local next_i, done = 0, 0
    local workers = {}
    for w = 1, C do
        workers[w] = ms.spawn(function()
            while next_i < N do
                next_i = next_i + 1
                one()
                done = done + 1
            end
        end)
    end
    for _, t in ipairs(workers) do assert(t:join(120)) end
    assert(done == N)
end

local times = {}
round() -- warm-up
for r = 1, ROUNDS do
    local t0 = ms.now()
    round()
    times[r] = (ms.now() - t0) * 1e6
    print(("spawn_echo_%d us=%.0f"):format(N, times[r]))
end
table.sort(times)
print(("spawn_echo_%d median_us=%.0f min_us=%.0f n=%d"):format(N, times[math.ceil(#times / 2)],
    times[1], #times))
