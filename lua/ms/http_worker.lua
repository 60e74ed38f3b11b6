-- ms.http_worker (internal): the main function of an agent of
-- ms.http.serve's pool (lua/ms/http_server.lua, docs/http.md).
--
-- It attaches to the server (by id), loads the handler (a function copied
-- as bytecode, or a module returning one), and runs `concurrency` loops:
-- take a request, call the handler protected, hand back its answer.  An
-- error in the handler answers 500 and is logged with the request line;
-- so is a return value that is not a response.  The agent traps exits:
-- on the supervisor's shutdown message it lets the server drain (no new
-- connections, idle ones closed) and returns once no request is in
-- flight, or after its shutdown timeout; it also ends when the server is
-- closed (srv:take() returns nil).

local ms = require "ms"
local ws_agent = require "ms.http_ws_agent"

-- The error value's text, without trusting its metamethods.
local function describe(e)
    if type(e) == "string" then
        return e
    end
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then
        return s
    end
    return ("a %s error value (its __tostring raised)"):format(type(e))
end

local function traceback(e)
    local msg = describe(e)
    local ok, tb = pcall(debug.traceback, msg, 2)
    return ok and type(tb) == "string" and tb or msg
end

local function load_handler(args)
    if args.module then
        local h = require(args.module)
        if type(h) == "table" and type(rawget(h, "handler")) == "function" then
            h = rawget(h, "handler")
        end
        if type(h) ~= "function" then
            error(("ms.http.serve: module %s must return a handler function (or a table "
                .. "with one as handler), not a %s"):format(args.module, type(h)), 0)
        end
        return h
    end
    if args.no_handler then
        return function()
            return { status = 404, body = "not found\n" }
        end
    end
    return require("ms.bytecode").load(args.handler, "=ms.http handler")
end

return function(args)
    local srv = ms.http._server.attach(args.server)
    if not srv then
        return -- the server closed before this agent started
    end
    local handler = load_handler(args)
    local ws_handler = ws_agent.load(args)
    local me = ms.self()
    local told = false
    local function loop()
        while true do
            local request, req = srv:take()
            if not request then
                break
            end
            if req.websocket then
                if args.ws_per_connection then
                    -- An agent of its own: the connection is parked for
                    -- it to attach; if it cannot start, the connection
                    -- closes with 1011.
                    local id = request:_park()
                    local ok, a = pcall(ms.agent.spawn, {
                        module = "ms.http_ws_agent",
                        name = ("%s-ws-%d"):format(ms.self():name() or "http", id),
                        memory_limit = args.memory_limit,
                        args = { ws = id, req = req, ws_handler = args.ws_handler,
                                 ws_module = args.ws_module } })
                    if not ok or not a then
                        local ws = ms.http._ws_attach(id)
                        if ws then ws:close(1011, "no agent for the connection") end
                    end
                else
                    -- Each connection gets its own coroutine: it does not
                    -- hold this loop (nor a concurrency slot) while it lasts.
                    ms.spawn(ws_agent.run, ws_handler, request, req)
                end
                goto continue
            end
            local ok, resp = xpcall(handler, traceback, req)
            if ok then
                srv:respond(request, resp)
            else
                srv:fail(request, resp)
            end
            ::continue::
        end
        if not told then
            told = true
            me:send({ event = "http_closed" })
        end
    end
    for _ = 1, args.concurrency do
        ms.spawn(loop)
    end
    -- Shutdown: let the server drain, return once nothing is in flight.
    local grace = args.shutdown_timeout
    while true do
        local m = ms.recv()
        if type(m) == "table" and m.event == "http_closed" then
            return
        end
        if type(m) == "table" and m.event == "shutdown" then
            srv:drain()
            local deadline = ms.now() + grace
            while ms.now() < deadline do
                local st = srv:state()
                if st.busy == 0 and st.queued == 0 then
                    break
                end
                ms.sleep(0.01)
            end
            return
        end
    end
end
