-- bench/ws_echo_client.lua NAME URL [CONNS] [MSGS] [SIZE]: CONNS
-- connections (default 40, spread over 4 agents, ms.http.websocket),
-- each sending MSGS (default 1000) text messages of SIZE bytes (default
-- 64) one after the other and waiting for each echo.  Prints
--   NAME median_us=... min_us=... p99_us=... n=... msgs_per_s=...
-- over every message's round trip (all connections together); the load
-- is ours (this host's client), the same for every server measured.
local name, url = arg[1], arg[2]
assert(name and url, "usage: ws_echo_client.lua NAME URL [CONNS] [MSGS] [SIZE]")
local conns, msgs, size = tonumber(arg[3]) or 40, tonumber(arg[4]) or 1000, tonumber(arg[5]) or 64
local AGENTS = 4
local done = ms.channel(AGENTS)
local t0 = ms.now()
for _ = 1, AGENTS do
    ms.agent.spawn{ fn = function(a)
        local ms = require "ms"
        local lat, tasks = {}, {}
        for i = 1, a.n do
            tasks[i] = ms.spawn(function()
                local ws = assert(ms.http.websocket(a.url, { timeout = 30 }))
                local payload = ("x"):rep(a.size)
                for _ = 1, a.msgs do
                    local t = ms.now()
                    assert(ws:send(payload))
                    local data = ws:receive(30)
                    assert(data == payload, "bad echo")
                    lat[#lat + 1] = (ms.now() - t) * 1e6
                end
                ws:close()
            end)
        end
        for _, t in ipairs(tasks) do assert(t:join()) end
        a.done:send(lat)
    end, args = { url = url, n = math.ceil(conns / AGENTS), msgs = msgs, size = size,
                  done = done } }
end
local all = {}
for _ = 1, AGENTS do
    for _, v in ipairs(done:recv(600)) do all[#all + 1] = v end
end
local secs = ms.now() - t0
table.sort(all)
print(("%s median_us=%.1f min_us=%.1f p99_us=%.1f n=%d msgs_per_s=%.0f"):format(name,
    all[math.floor((#all + 1) / 2)], all[1], all[math.floor(#all * 0.99)], #all, #all / secs))
