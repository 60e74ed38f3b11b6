-- ms.http.websocket: a WebSocket client (RFC 6455) over an ms.net TCP
-- connection; docs/http.md, "WebSocket client".
--
--   local ws, err = ms.http.websocket(url[, { timeout = 10, headers = {...},
--                                           max_message = 16 MiB }])
--   ws:send(data[, "text" | "binary"])      -- true | nil, err
--   ws:receive([timeout])                   -- data, "text" | "binary" | "pong"
--                                           -- | nil, "closed", code, reason
--                                           -- | nil, "timeout" | nil, err
--   ws:ping([data])                         -- true | nil, err (its pong comes to receive)
--   ws:close([code[, reason]][, timeout])   -- true once closed
--   ws:closed()
--
-- The socket and the handshake are here; the framing is wslay's, in C
-- (agents/lms_http_wsc.c), fed from and drained to the socket by these
-- functions, so every wait is an ms.net operation that a stop, a timeout
-- or ms.timeout interrupts.  wslay answers pings and the peer's close by
-- itself.  ws:// only: wss:// (TLS) is not supported yet.

local ms = require "ms"

local M = {}
local WS = {}
WS.__index = WS

local KNOWN = { timeout = true, headers = true, max_message = true }
local MAX_HEAD_LINES = 100

local function parse_url(url)
    local rest = url:match("^ws://(.+)$")
    if not rest then
        if url:match("^wss://") then
            return nil, "wss:// (WebSocket over TLS) is not supported yet; use ws://"
        end
        return nil, "a WebSocket URL starts with ws://"
    end
    local authority, path = rest:match("^([^/?#]+)(.*)$")
    if not authority then return nil, "the URL has no host" end
    if path == "" then path = "/" end
    if path:sub(1, 1) ~= "/" then path = "/" .. path end
    local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
    if not host then
        host, port = authority:match("^([^:]+):?(%d*)$")
    end
    if not host then return nil, "the URL's host is not host[:port]" end
    port = port ~= "" and tonumber(port) or 80
    if port < 1 or port > 65535 then return nil, "the URL's port is out of range" end
    return host, port, path, authority
end

local function fail(err, what)
    if type(err) == "table" then return nil, err end
    return nil, what .. ": " .. tostring(err)
end

-- Writes whatever the codec has for the socket.  One task writes at a
-- time: while one does, another's bytes wait in pending and the writing
-- task takes them out after its own.
local function flush(self, timeout)
    local out = self.codec:output()
    if out ~= "" then self.pending = (self.pending or "") .. out end
    if self.writing or not self.pending then return true end
    self.writing = true
    while self.pending do
        local data = self.pending
        self.pending = nil
        local ok, err = self.sock:write(data, timeout)
        if not ok then
            self.writing = false
            return nil, err
        end
    end
    self.writing = false
    return true
end

-- ms.http.websocket(url[, opts]) -> ws | nil, err
function M.connect(url, opts)
    if type(url) ~= "string" then
        error("ms.http.websocket: url must be a string", 2)
    end
    opts = opts or {}
    if type(opts) ~= "table" then
        error("ms.http.websocket: options must be a table", 2)
    end
    for k in next, opts do
        if not KNOWN[k] then
            error("ms.http.websocket: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local timeout = rawget(opts, "timeout") or 10
    local max_message = rawget(opts, "max_message") or 16 * 1024 * 1024
    local headers = rawget(opts, "headers") or {}
    if type(timeout) ~= "number" or timeout < 0 then
        error("ms.http.websocket: timeout must be a number of seconds >= 0", 2)
    end
    if type(max_message) ~= "number" or max_message < 1 then
        error("ms.http.websocket: max_message must be a number of bytes >= 1", 2)
    end
    if type(headers) ~= "table" then
        error("ms.http.websocket: headers must be a table of name = value", 2)
    end
    local host, port, path, authority = parse_url(url)
    if not host then error("ms.http.websocket: " .. port .. " (" .. url .. ")", 2) end
    local key, accept = ms.http._ws_key()
    local lines = {
        "GET " .. path .. " HTTP/1.1",
        "Host: " .. authority,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " .. key,
        "Sec-WebSocket-Version: 13",
    }
    for name, value in next, headers do
        if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then
            error("ms.http.websocket: header name '" .. tostring(name) .. "' is not a token", 2)
        end
        value = tostring(value)
        if value:find("[\r\n%z]") then
            error("ms.http.websocket: header " .. name .. "'s value contains CR, LF or NUL", 2)
        end
        lines[#lines + 1] = name .. ": " .. value
    end
    local sock, err = ms.net.connect({ host = host, port = port }, timeout)
    if not sock then return fail(err, "websocket connect") end
    local ok, werr = sock:write(table.concat(lines, "\r\n") .. "\r\n\r\n", timeout)
    if not ok then sock:close() return fail(werr, "websocket handshake") end
    local status = sock:read("l", timeout)
    local code = status and tonumber(status:match("^HTTP/1%.[01] (%d%d%d)"))
    if code ~= 101 then
        sock:close()
        return nil, "websocket handshake: the server answered " .. tostring(status)
    end
    local got = {}
    for _ = 1, MAX_HEAD_LINES do
        local line, rerr = sock:read("l", timeout)
        if not line then sock:close() return fail(rerr, "websocket handshake") end
        if line == "" then break end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then got[name:lower()] = value end
    end
    if (got.upgrade or ""):lower() ~= "websocket"
        or not (got.connection or ""):lower():find("upgrade", 1, true)
        or got["sec-websocket-accept"] ~= accept then
        sock:close()
        return nil, "websocket handshake: the server's answer is not a WebSocket upgrade"
    end
    return setmetatable({ sock = sock, codec = ms.http._ws_codec(max_message),
                          url = url }, WS)
end

function WS:send(data, kind)
    if type(data) ~= "string" then error("ws:send: data must be a string", 2) end
    kind = kind or "text"
    if kind ~= "text" and kind ~= "binary" then
        error("ws:send: kind must be \"text\" or \"binary\"", 2)
    end
    if self.done then return nil, "closed" end
    local ok, err = self.codec:queue(kind, data)
    if not ok then return nil, err end
    return flush(self)
end

function WS:ping(data)
    if self.done then return nil, "closed" end
    local ok, err = self.codec:queue("ping", data or "")
    if not ok then return nil, err end
    return flush(self)
end

-- The connection is over: the socket closes, the codec's memory goes.
local function finish(self)
    if self.done then return end
    self.done = true
    self.sock:close()
    self.codec:free()
end

function WS:receive(timeout)
    while true do
        if self.done then
            return nil, "closed", self.close_code, self.close_reason
        end
        local data, kind, code = self.codec:next()
        if kind == "close" then
            self.close_code, self.close_reason = code, data
            flush(self, 1) -- wslay's answer to the close
            finish(self)
            return nil, "closed", code, data
        elseif kind then
            return data, kind
        end
        local bytes, err = self.sock:read(nil, timeout)
        if not bytes then
            if err == "timeout" then return nil, "timeout" end
            -- the peer went without a close frame: 1006, as RFC 6455 says
            self.close_code, self.close_reason = 1006, ""
            finish(self)
            if err == "closed" then return nil, "closed", 1006, "" end
            return nil, err
        end
        local ok, ferr = self.codec:feed(bytes)
        if not ok then
            -- wslay could not read the peer's bytes as frames: a
            -- protocol error, which ends the connection with 1002
            self.codec:queue("close", "protocol error", 1002)
            flush(self, 1)
            self.close_code, self.close_reason = 1002, "protocol error (" .. tostring(ferr) .. ")"
            finish(self)
            return nil, "closed", self.close_code, self.close_reason
        end
        flush(self, timeout) -- pongs, a close's answer
        local _, sent, want_read, queued, sent_code = self.codec:state()
        if not want_read and not queued then
            -- wslay gave up reading and sent a close: 1002 for a
            -- protocol error, 1009 for a message past max_message
            self.close_code = sent and sent_code or 1006
            self.close_reason = self.close_code == 1009 and "message too large (max_message)"
                                or "protocol error"
            finish(self)
            return nil, "closed", self.close_code, self.close_reason
        end
    end
end

function WS:close(code, reason, timeout)
    if self.done then return true end
    local ok = self.codec:queue("close", reason or "", code or 1000)
    if ok then flush(self, timeout or 5) end
    -- Wait for the peer's close (what was still on its way is dropped).
    local deadline = ms.now() + (timeout or 5)
    while not self.done do
        local left = deadline - ms.now()
        if left <= 0 then break end
        local data, kind = self:receive(left)
        if data == nil and kind ~= "closed" then break end
    end
    finish(self)
    return true
end

function WS:closed()
    return self.done == true
end

WS.__tostring = function(self)
    return "ms.websocket (" .. self.url .. (self.done and ", closed)" or ")")
end

return M
