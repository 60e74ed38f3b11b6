-- The HTTP client's throughput on keep-alive connections: A agents each
-- make N sequential GETs of URL (ms.http.request), R timed rounds after
-- one warm-up round; one line per run in bench/run's format, the time
-- per request over all agents:
--   http_client_keepalive_AxN median_us=... min_us=... n=R connections=C
-- C is the connections the client opened in all (reuse: about A).
--   build-release/ms-host/ms-host run bench/net/http_client_bench.lua --workers 2 -- URL [A] [N] [R]
-- URL is a server that answers fast, e.g. nginx (docs: bench/README.md).
local url, agents, per, rounds = arg[1], tonumber(arg[2] or 4), tonumber(arg[3] or 2500),
    tonumber(arg[4] or 5)
assert(url, "usage: http_client_bench.lua URL [AGENTS] [PER_AGENT] [ROUNDS]")

local function round()
    local done = ms.channel(agents)
    local t0 = ms.now()
    for _ = 1, agents do
        ms.agent.spawn{ fn = function(a)
            local ok = 0
            for _ = 1, a[3] do
                if ms.http.request{ url = a[1] } == 200 then ok = ok + 1 end
            end
            a[2]:send(ok)
        end, args = { url, done, per } }
    end
    local ok = 0
    for _ = 1, agents do ok = ok + done:recv(300) end
    assert(ok == agents * per, "failed requests: " .. (agents * per - ok))
    return (ms.now() - t0) * 1e6 / (agents * per)
end

round() -- warm-up: connections opened, code compiled
local t = {}
for i = 1, rounds do t[i] = round() end
table.sort(t)
print(("http_client_keepalive_%dx%d median_us=%.2f min_us=%.2f n=%d connections=%d"):format(
    agents, per, t[math.floor((rounds + 1) / 2)], t[1], rounds,
    ms.metrics().http_client.connections_opened))
