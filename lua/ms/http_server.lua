-- ms.http.serve (docs/http.md): an HTTP/1.1 server whose requests are
-- answered by a supervised pool of agents.
--
-- The connections, the parser, the limits, the timeouts and the queue are
-- C (agents/lms_http_server.c); this file checks the options, starts the
-- pool under a supervisor (one_for_one: a crashed agent is restarted, its
-- in-flight request answered 500) and makes the handle:
--
--   srv:address()          -> host, port (the real port when listen asked for 0)
--   srv:url()              -> "http://host:port" ("https://..." with tls)
--   srv:state()            -> { connections, busy, queued, draining, closed }
--   srv:close([timeout])   -- graceful: no new connections, idle ones closed,
--                          -- requests in flight answered (at most timeout
--                          -- seconds, default shutdown_timeout), then the
--                          -- pool stops;  srv:stop() is the same
--   srv.supervisor         -- the pool's supervisor handle

local ms = require "ms"
local bytecode = require "ms.bytecode"

local M = {}

local OPTIONS = {
    listen = true, handler = true, module = true, agents = true, concurrency = true,
    name = true, memory_limit = true, max_header_bytes = true, max_headers = true,
    max_body = true, header_timeout = true, body_timeout = true, idle_timeout = true,
    write_timeout = true, handler_timeout = true, queue = true, max_connections = true, backlog = true,
    shutdown_timeout = true, intensity = true, period = true, tls = true, websocket = true,
}

local WS_OPTIONS = { handler = true, module = true, path = true, max_message = true,
                     max_buffer = true, per_connection = true, ping_interval = true,
                     ping_timeout = true }

-- websocket = function(ws, req) or { handler = | module =, path =,
-- max_message =, max_buffer = }: checked here, the handler copied as
-- bytecode for the pool; the C side reads path and the limits.
local function websocket_options(ws, worker)
    if type(ws) == "function" then
        ws = { handler = ws }
    elseif type(ws) ~= "table" then
        error("ms.http.serve: websocket must be a handler function(ws, req) or a table "
            .. "{ handler =, path =, max_message =, max_buffer = }", 3)
    end
    for k in next, ws do
        if not WS_OPTIONS[k] then
            error(("ms.http.serve: unknown option websocket.%s"):format(tostring(k)), 3)
        end
    end
    local handler, module = rawget(ws, "handler"), rawget(ws, "module")
    if handler ~= nil then
        local ok, t = pcall(bytecode.dump, handler, "ms.http.serve: websocket.handler")
        if not ok then
            error(t, 3)
        end
        worker.ws_handler = t
    elseif type(module) == "string" then
        worker.ws_module = module
    else
        error("ms.http.serve: websocket.handler (a function(ws, req)) or websocket.module "
            .. "(a module name) is required", 3)
    end
    local per = rawget(ws, "per_connection")
    if per ~= nil and type(per) ~= "boolean" then
        error("ms.http.serve: websocket.per_connection must be true (an agent per connection) "
            .. "or false (the pool's agents, the default)", 3)
    end
    worker.ws_per_connection = per or nil
    local path = rawget(ws, "path")
    local paths = type(path) == "string" and { path } or path
    if paths ~= nil then
        if type(paths) ~= "table" or #paths == 0 or #paths > 64 then
            error("ms.http.serve: websocket.path must be a path or a list of 1 to 64 paths", 3)
        end
        for i = 1, #paths do
            local p = rawget(paths, i)
            if type(p) ~= "string" or p:sub(1, 1) ~= "/" or #p > 1024 or p:find("[%s?#%z]") then
                error(("ms.http.serve: websocket.path %s is not a path (it starts with /, "
                    .. "has no space, ? or #)"):format(tostring(p)), 3)
            end
        end
    end
    for _, k in ipairs{ "max_message", "max_buffer" } do
        local v = rawget(ws, k)
        if v ~= nil and (type(v) ~= "number" or v ~= math.floor(v) or v < (k == "max_buffer"
            and 1024 or 1) or v > 2 ^ 31) then
            error(("ms.http.serve: websocket.%s must be a whole number of bytes from %d to "
                .. "2^31, got %s"):format(k, k == "max_buffer" and 1024 or 1, tostring(v)), 3)
        end
    end
    for _, k in ipairs{ "ping_interval", "ping_timeout" } do
        local v = rawget(ws, k)
        local min = k == "ping_interval" and 0 or 0.001
        if v ~= nil and (type(v) ~= "number" or v ~= v or v < min or v > 3600) then
            error(("ms.http.serve: websocket.%s must be a number of seconds from %g to 3600%s, "
                .. "got %s"):format(k, min, k == "ping_interval" and " (0: no keepalive)" or "",
                tostring(v)), 3)
        end
    end
    -- What the C side reads.
    return { path = paths and { unpack(paths) }, max_message = rawget(ws, "max_message"),
             max_buffer = rawget(ws, "max_buffer"), ping_interval = rawget(ws, "ping_interval"),
             ping_timeout = rawget(ws, "ping_timeout") }
end

-- Servers this agent serves: their handles stay alive (a collected handle
-- would close its server) until closed.
local live = {}

local Server = {}
Server.__index = Server

function Server:address()
    return self._raw:address()
end

function Server:url()
    local host, port = self._raw:address()
    if host:find(":", 1, true) then
        host = "[" .. host .. "]"
    end
    return ("%s://%s:%d"):format(self._tls and "https" or "http", host, port)
end

function Server:state()
    if self._closed then
        return { connections = 0, busy = 0, queued = 0, draining = true, closed = true }
    end
    return self._raw:state()
end

function Server:close(timeout)
    if self._closed then
        return true
    end
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
        error("srv:close: timeout must be a number of seconds >= 0", 2)
    end
    timeout = timeout or self._shutdown_timeout
    local raw = self._raw
    raw:drain()
    local deadline = ms.now() + timeout
    local drained = false
    while true do
        local st = raw:state()
        if st.busy == 0 and st.queued == 0 then
            drained = true
            break
        end
        if ms.now() >= deadline then
            break
        end
        ms.sleep(0.005)
    end
    self._closed = true
    live[self] = nil
    -- The pool first (its agents see the drained server and return), then
    -- whatever connection is left ends and any taker still waiting gets nil.
    pcall(self.supervisor.stop, self.supervisor)
    raw:close()
    return drained
end
Server.stop = Server.close

local function whole(name, v, min, max)
    if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
        error(("ms.http.serve: %s must be a whole number from %d to %d, got %s"):format(
            name, min, max, tostring(v)), 3)
    end
    return v
end

function M.serve(opts)
    if type(opts) ~= "table" then
        error("ms.http.serve: expects a table of options, got " .. type(opts), 2)
    end
    for k in next, opts do
        if not OPTIONS[k] then
            error(("ms.http.serve: unknown option %s"):format(tostring(k)), 2)
        end
    end
    local worker = { concurrency = 1 }
    local handler, module = rawget(opts, "handler"), rawget(opts, "module")
    if handler ~= nil then
        local ok, t = pcall(bytecode.dump, handler, "ms.http.serve: handler")
        if not ok then
            error(t, 2)
        end
        worker.handler = t
    elseif module ~= nil then
        if type(module) ~= "string" then
            error("ms.http.serve: module must be a module name (a string)", 2)
        end
        worker.module = module
    elseif rawget(opts, "websocket") ~= nil then
        worker.no_handler = true -- plain HTTP requests get 404
    else
        error("ms.http.serve: handler (a function) or module (a module returning one) is "
            .. "required", 2)
    end
    local agents = whole("agents", rawget(opts, "agents") or 2, 1, 1024)
    worker.concurrency = whole("concurrency", rawget(opts, "concurrency") or 1, 1, 10000)
    worker.memory_limit = rawget(opts, "memory_limit")
    local shutdown = rawget(opts, "shutdown_timeout") or 30
    if type(shutdown) ~= "number" or shutdown < 0 then
        error("ms.http.serve: shutdown_timeout must be a number of seconds >= 0", 2)
    end
    worker.shutdown_timeout = shutdown
    local start_opts = opts
    if rawget(opts, "websocket") ~= nil then
        start_opts = {}
        for k, v in next, opts do
            start_opts[k] = v
        end
        start_opts.websocket = websocket_options(rawget(opts, "websocket"), worker)
    end
    local ok, raw, err = pcall(ms.http._server.start, start_opts)
    if not ok then
        -- A bad option: blame the caller's line, not this file's.
        error((tostring(raw):gsub("^[^:]*:%d+: ", "")), 2)
    end
    if not raw then
        return nil, err
    end
    worker.server = raw:id()
    local name = rawget(opts, "name") or ("http-" .. worker.server)
    local children = {}
    for i = 1, agents do
        children[i] = {
            id = name .. "-" .. i,
            start = { module = "ms.http_worker", args = worker, trap_exit = true,
                      memory_limit = rawget(opts, "memory_limit") },
            restart = "transient",
            shutdown = shutdown + 1,
        }
    end
    local sup, serr = ms.supervisor{
        name = name, name_scope = "host", strategy = "one_for_one",
        intensity = rawget(opts, "intensity") or math.max(10, agents * 2),
        period = rawget(opts, "period") or 5,
        children = children,
    }
    if not sup then
        raw:close()
        return nil, serr
    end
    local srv = setmetatable({ _raw = raw, supervisor = sup, _shutdown_timeout = shutdown,
                               _tls = rawget(opts, "tls") ~= nil }, Server)
    live[srv] = true
    return srv
end

return M
