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

-- Any agent may send to the dispatcher, so a message that only looks like
-- a connection must not end it: the channel calls are protected.
local function refuse(conn, why)
    pcall(function() conn.outbox:try_send("oms-host console: " .. why .. "\n") end)
    pcall(function() conn.outbox:close() end)
    pcall(function() conn.inbox:close() end)
end

local function close(conn)
    pcall(function() conn.outbox:close() end)
    pcall(function() conn.inbox:close() end)
end

-- The text of a spawn error (an ms error table, or anything).
local function error_text(e)
    if type(e) == "table" and type(rawget(e, "message")) == "string" then
        return rawget(e, "message")
    end
    return type(e) == "string" and e or type(e)
end

return function()
    local sessions = {} -- session agent name -> its connection's channels
    while true do
        -- Exit notices and connections come from the host (from == nil);
        -- the same tables from an agent are forgeries: one could end
        -- another client's session, or open a console for itself.
        local m, from = ms.recv()
        if from ~= nil then
            -- not the host's: ignored
        elseif type(m) == "table" and m.event == "exit" then
            local conn = sessions[m.name]
            sessions[m.name] = nil
            if conn then
                if m.reason ~= "normal" then
                    refuse(conn, ("the session ended (%s%s)"):format(tostring(m.reason),
                        type(m.message) == "string" and (": " .. m.message) or ""))
                else
                    close(conn)
                end
            end
        elseif type(m) == "table" and type(m.inbox) == "userdata"
            and type(m.outbox) == "userdata" then
            local name = "console-" .. tostring(m.id)
            local ok, a = pcall(ms.agent.spawn, {
                name = name, name_scope = "host", -- every host has its own
                module = "ms.console_session",
                args = { id = m.id, inbox = m.inbox, outbox = m.outbox },
            })
            if ok then
                sessions[name] = { inbox = m.inbox, outbox = m.outbox }
                ms.monitor(a)
            else
                refuse(m, "cannot start a session: " .. error_text(a))
            end
        end
    end
end
