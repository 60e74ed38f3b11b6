-- ms.http_ws_agent (internal): runs ms.http.serve's websocket handler
-- (docs/http.md, "WebSocket server").  ms.http_worker uses its functions
-- for the pool; as a module main it is the agent of one connection
-- (websocket.per_connection = true): it attaches to the connection the
-- pool agent parked for it, runs the handler and ends.

local ms = require "ms"

local M = {}

-- The error value's text, without trusting its metamethods.
function M.describe(e)
    if type(e) == "string" then
        return e
    end
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then
        return s
    end
    return ("a %s error value (its __tostring raised)"):format(type(e))
end

function M.traceback(e)
    local msg = M.describe(e)
    local ok, tb = pcall(debug.traceback, msg, 2)
    return ok and type(tb) == "string" and tb or msg
end

-- The websocket handler of args (ws_handler bytecode or ws_module).
function M.load(args)
    if args.ws_module then
        local h = require(args.ws_module)
        if type(h) == "table" and type(rawget(h, "handler")) == "function" then
            h = rawget(h, "handler")
        end
        if type(h) ~= "function" then
            error(("ms.http.serve: module %s must return a websocket handler function (or a "
                .. "table with one as handler), not a %s"):format(args.ws_module, type(h)), 0)
        end
        return h
    end
    if args.ws_handler then
        return require("ms.bytecode").load(args.ws_handler, "=ms.http websocket handler")
    end
end

-- One connection: the handler runs protected; when it returns the
-- connection closes with 1000 (unless it closed it), when it raises with
-- 1011 (logged with the request's target).
function M.run(handler, ws, req)
    local ok, err = xpcall(handler, M.traceback, ws, req)
    if ok then
        ws:close(1000)
    else
        pcall(ms.log, "error", "http.websocket_handler_failed",
            ("ms.http: websocket %s: handler error: %s"):format(tostring(req.target),
                M.describe(err)))
        ws:close(1011, "internal error")
    end
end

-- As an agent's main: args = { ws = id, req = the request, ws_handler
-- or ws_module }.
function M.main(args)
    local ws = ms.http._ws_attach(args.ws)
    if not ws then
        return -- the client left before this agent started
    end
    local ok, handler = pcall(M.load, args)
    if not ok then
        ws:close(1011, "internal error")
        error(handler, 0)
    end
    M.run(handler, ws, args.req)
end

return M
