-- ms.console_agent: the console's dispatcher (lua/console.c spawns it as
-- the agent "ms.console" when the host has a console).  For each client
-- that connects, the C side sends it { id =, inbox =, outbox = }: two
-- channels to the connection.  It spawns one session agent per
-- connection, so each console gets its own isolated Lua state, and a
-- session that fails takes nothing else with it.
--
-- It also monitors the sessions: one that ends without closing its
-- outbox (stopped, out of memory, killed) would leave its client waiting
-- for a reply forever, so the dispatcher tells the client why and closes
-- both channels, which ends the connection.
local ms = require "ms"

local function refuse(conn, why)
    conn.outbox:try_send("oms-host console: " .. why .. "\n")
    conn.outbox:close()
    conn.inbox:close()
end

return function()
    local sessions = {} -- session agent name -> its connection's channels
    while true do
        local m = ms.recv()
        if type(m) == "table" and m.event == "exit" then
            local conn = sessions[m.name]
            sessions[m.name] = nil
            if conn then
                if m.reason ~= "normal" then
                    refuse(conn, ("the session ended (%s%s)"):format(m.reason,
                        m.message and (": " .. m.message) or ""))
                else
                    conn.outbox:close()
                    conn.inbox:close()
                end
            end
        elseif type(m) == "table" and m.inbox and m.outbox then
            local name = "console-" .. tostring(m.id)
            local ok, a = pcall(ms.agent.spawn, {
                name = name,
                module = "ms.console_session",
                args = { id = m.id, inbox = m.inbox, outbox = m.outbox },
            })
            if ok then
                sessions[name] = { inbox = m.inbox, outbox = m.outbox }
                ms.monitor(a)
            else
                refuse(m, "cannot start a session: " .. tostring(a))
            end
        end
    end
end
