-- ms.console_agent: the console's dispatcher (lua/console.c spawns it as
-- the agent "ms.console" when the host has a console).  For each client
-- that connects, the C side sends it { id =, inbox =, outbox = }: two
-- channels to the connection.  It spawns one session agent per
-- connection, so each console gets its own isolated Lua state, and a
-- session that fails takes nothing else with it.
local ms = require "ms"

return function()
    while true do
        local conn = ms.recv()
        if type(conn) == "table" and conn.inbox and conn.outbox then
            local ok, err = pcall(ms.agent.spawn, {
                name = "console-" .. tostring(conn.id),
                module = "ms.console_session",
                args = { id = conn.id, inbox = conn.inbox, outbox = conn.outbox },
            })
            if not ok then
                -- The client is told why, then the connection ends.
                conn.outbox:try_send("o" .. "ms-host console: cannot start a session: "
                    .. tostring(err) .. "\n")
                conn.outbox:close()
                conn.inbox:close()
            end
        end
    end
end
