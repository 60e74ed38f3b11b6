-- bench/http_json.lua ADDRESS [AGENTS]: the server bench/http measures, a
-- small JSON answer produced by Lua code in ms.http.serve's pool.
local srv = assert(ms.http.serve{
    listen = arg[1] or "127.0.0.1:0",
    agents = tonumber(arg[2]) or 2,
    handler = function(req)
        return { status = 200, headers = { ["Content-Type"] = "application/json" },
                 body = ms.json.encode({ hello = "world", path = req.path }) }
    end,
})
io.stderr:write(("listening on %s\n"):format(srv:url()))
ms.on_shutdown(function() srv:close(1) end)
while true do
    ms.sleep(3600)
end
