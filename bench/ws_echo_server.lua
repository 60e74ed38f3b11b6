-- bench/ws_echo_server.lua ADDRESS [AGENTS]: a WebSocket echo server on
-- ms.http.serve (a pool of AGENTS agents, default 2; every path), for
-- bench/ws_echo.  Prints "listening on ws://HOST:PORT" once ready.
local addr, agents = arg[1] or "127.0.0.1:0", tonumber(arg[2]) or 2
local srv = assert(ms.http.serve{ listen = addr, agents = agents, name = "wsbench",
    max_connections = 100000, queue = 100000,
    websocket = function(ws)
        while true do
            local data, kind = ws:receive()
            if not data then return end
            ws:send(data, kind)
        end
    end })
local host, port = srv:address()
print(("listening on ws://%s:%d"):format(host, port))
io.stdout:flush()
ms.on_shutdown(function() srv:close(1) end)
while true do ms.sleep(3600) end
