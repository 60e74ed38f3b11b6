-- ms.console_session: one `ms-host attach` console, as an agent of its
-- own.  Lines arrive on args.inbox as strings; each gets one reply on
-- args.outbox: "o" .. text (then the client shows its main prompt) or
-- "m" .. text (the chunk is incomplete: the continuation prompt).  The
-- first reply, before any line, is the banner.  When the client goes
-- away the connection closes both channels, and the session ends at its
-- next receive or send.  Evaluation is lua/ms/repl.lua, as in
-- `ms-host repl`; top() prints one snapshot (the client has no raw
-- terminal to refresh).
local ms = require "ms"
local repl = require "ms.repl"

return function(args)
    local out = {}
    local session = repl.session{ write = function(text) out[#out + 1] = text end }
    local function reply(kind)
        local text = table.concat(out)
        out = {}
        return args.outbox:send(kind .. text)
    end
    out[1] = repl.banner() .. "\nconsole " .. tostring(args.id) .. " (agent "
        .. tostring(ms.self():id()) .. ")\n"
    if not reply("o") then return end
    while true do
        local line = args.inbox:recv()
        if line == nil then break end
        local status = session:feed(tostring(line))
        if not reply(status == "more" and "m" or "o") then break end
    end
    args.outbox:close()
end
