-- ms.http.websocket: a WebSocket client (RFC 6455) over an ms.net TCP
-- connection; docs/http.md, "WebSocket client".
--
--   local ws, err = ms.http.websocket(url[, { timeout = 10, headers = {...},
--                                           max_message = 16 MiB, verify = true,
--                                           ca_file = PATH }])
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
-- itself.  wss:// puts a TLS engine (agents/lms_tls_client.c, OpenSSL on
-- memory buffers) between the codec and the socket, fed the same way.

local ms = require "ms"

local M = {}
local WS = {}
WS.__index = WS

local KNOWN = { timeout = true, headers = true, max_message = true, verify = true,
                ca_file = true, ping_interval = true, ping_timeout = true }
-- The server's answer to the upgrade: its status line and headers.
local MAX_HEAD = 16 * 1024

local function parse_url(url)
    local scheme, rest = url:match("^(wss?)://(.+)$")
    if not rest then
        return nil, "a WebSocket URL starts with ws:// or wss://"
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
    port = port ~= "" and tonumber(port) or (scheme == "wss" and 443 or 80)
    if port < 1 or port > 65535 then return nil, "the URL's port is out of range" end
    return host, port, path, authority, scheme == "wss"
end

local function fail(err, what)
    if type(err) == "table" then return nil, err end
    return nil, what .. ": " .. tostring(err)
end

-- An error value naming the URL and what failed; err.reason is reason.
local function failure(self, reason, what)
    return ms.http._ws_error(reason, "websocket " .. self.url .. ": " .. reason .. ": " .. what)
end

-- Queues bytes for the peer, encrypted first on a wss:// connection.
local function queue_out(self, data)
    if self.tls then
        if data ~= "" then
            local ok, err = self.tls:write(data)
            if not ok then return nil, failure(self, "tls", err) end
        end
        data = self.tls:output()
    end
    if data ~= "" then self.pending = (self.pending or "") .. data end
    return true
end

-- Writes whatever the codec (and the TLS engine) has for the socket.  One
-- task writes at a time: while one does, another's bytes wait in pending
-- and the writing task takes them out after its own.
local function flush(self, timeout)
    local ok, qerr = queue_out(self, self.codec and self.codec:output() or "")
    if not ok then return nil, qerr end
    if self.writing or not self.pending then return true end
    self.writing = true
    while self.pending do
        local data = self.pending
        self.pending = nil
        local wok, err = self.sock:write(data, timeout)
        if not wok then
            self.writing = false
            return nil, err
        end
    end
    self.writing = false
    return true
end

-- The next bytes from the peer (decrypted on wss://): bytes | nil,
-- "closed" | nil, "timeout" | nil, err.
local function recv(self, timeout)
    if not self.tls then return self.sock:read(nil, timeout) end
    while true do
        local plain, err = self.tls:read()
        if not plain then
            if err == "closed" then return nil, "closed" end -- its close_notify
            return nil, failure(self, "tls", err)
        end
        if plain ~= "" then return plain end
        -- what reading produced for the peer (a key update's answer)
        local ok, ferr = flush(self, timeout)
        if not ok then return nil, ferr end
        local bytes, rerr = self.sock:read(nil, timeout)
        if not bytes then return nil, rerr end
        self.tls:put(bytes)
    end
end

local function left(deadline)
    if not deadline then return nil end
    return math.max(0, deadline - ms.now())
end

-- The TLS handshake of a wss:// connection, within the deadline.
local function tls_handshake(self, deadline)
    while true do
        local done, why = self.tls:handshake()
        local ok, err = flush(self, left(deadline))
        if done == nil then return nil, failure(self, "tls", why) end
        if not ok then return nil, err end
        if done then return true end
        local bytes, rerr = self.sock:read(nil, left(deadline))
        if not bytes then
            if rerr == "timeout" then return nil, failure(self, "timeout", "the TLS handshake took too long") end
            if rerr == "closed" then
                return nil, failure(self, "tls", "the server closed the connection during the handshake")
            end
            local what = type(rerr) == "table" and rawget(rerr, "message") or tostring(rerr)
            return nil, failure(self, "tls", "the connection broke during the handshake ("
                                             .. tostring(what) .. ")")
        end
        self.tls:put(bytes)
    end
end

-- The server's answer head: its status line, its headers (lower-case
-- names) and the bytes after it (the first frames).
local function read_head(self, deadline)
    local buf = ""
    while true do
        local stop = buf:find("\r\n\r\n", 1, true)
        if stop or #buf > MAX_HEAD then
            local status = buf:match("^([^\r\n]*)")
            local code = tonumber(status:match("^HTTP/1%.[01] (%d%d%d)"))
            if code ~= 101 then
                return nil, "websocket handshake: the server answered " .. status:sub(1, 200)
            end
            if not stop then
                return nil, "websocket handshake: the server's answer head is over 16 KiB"
            end
            local got = {}
            for line in buf:sub(1, stop + 1):gmatch("([^\r\n]*)\r\n") do
                local name, value = line:match("^([^:]+):%s*(.-)%s*$")
                if name then got[name:lower()] = value end
            end
            return got, buf:sub(stop + 4)
        end
        local bytes, err = recv(self, left(deadline))
        if not bytes then
            if err == "closed" and buf ~= "" and not buf:match("^HTTP/1%.[01] 101") then
                return nil, "websocket handshake: the server answered " .. buf:match("^([^\r\n]*)"):sub(1, 200)
            end
            return fail(err, "websocket handshake")
        end
        buf = buf .. bytes
    end
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
    local verify = rawget(opts, "verify")
    local ca_file = rawget(opts, "ca_file")
    if type(timeout) ~= "number" or timeout < 0 then
        error("ms.http.websocket: timeout must be a number of seconds >= 0", 2)
    end
    if type(max_message) ~= "number" or max_message < 1 then
        error("ms.http.websocket: max_message must be a number of bytes >= 1", 2)
    end
    if type(headers) ~= "table" then
        error("ms.http.websocket: headers must be a table of name = value", 2)
    end
    local ping_interval = rawget(opts, "ping_interval") or 20
    local ping_timeout = rawget(opts, "ping_timeout") or 20
    if type(ping_interval) ~= "number" or not (ping_interval >= 0 and ping_interval <= 3600) then
        error("ms.http.websocket: ping_interval must be a number of seconds from 0 to 3600 "
            .. "(0: no keepalive)", 2)
    end
    if type(ping_timeout) ~= "number" or not (ping_timeout > 0 and ping_timeout <= 3600) then
        error("ms.http.websocket: ping_timeout must be a number of seconds over 0, at most 3600", 2)
    end
    if verify == nil then verify = true end
    if type(verify) ~= "boolean" then
        error("ms.http.websocket: verify must be true or false", 2)
    end
    if ca_file ~= nil and (type(ca_file) ~= "string" or ca_file == "") then
        error("ms.http.websocket: ca_file must be a path (a non-empty string)", 2)
    end
    local host, port, path, authority, secure = parse_url(url)
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
    local self = setmetatable({ url = url }, WS)
    if secure then
        -- raises naming ca_file when it cannot be read
        local ok, engine = pcall(ms.http._tls_client, host, verify, ca_file)
        if not ok then error("ms.http.websocket: " .. tostring(engine), 2) end
        self.tls = engine
    end
    local deadline = timeout > 0 and ms.now() + timeout or nil
    local function give_up(...)
        if self.sock then self.sock:close() end
        if self.tls then self.tls:free() end
        return ...
    end
    local sock, err = ms.net.connect({ host = host, port = port }, left(deadline))
    if not sock then return give_up(fail(err, "websocket connect")) end
    self.sock = sock
    if secure then
        local ok, terr = tls_handshake(self, deadline)
        if not ok then return give_up(nil, terr) end
    end
    local ok, werr = queue_out(self, table.concat(lines, "\r\n") .. "\r\n\r\n")
    if ok then ok, werr = flush(self, left(deadline)) end
    if not ok then return give_up(fail(werr, "websocket handshake")) end
    local got, rest = read_head(self, deadline)
    if not got then return give_up(nil, rest) end
    if (got.upgrade or ""):lower() ~= "websocket"
        or not (got.connection or ""):lower():find("upgrade", 1, true)
        or got["sec-websocket-accept"] ~= accept then
        return give_up(nil, "websocket handshake: the server's answer is not a WebSocket upgrade")
    end
    self.codec = ms.http._ws_codec(max_message)
    self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
    self.rx_at = ms.now()
    -- Frames that came with the answer's head.
    if rest ~= "" then self.early = rest end
    return self
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

-- The connection is over: the socket closes (after a TLS close_notify
-- on wss://, if the socket takes it within a second), the codec's and the
-- TLS engine's memory goes.
local function finish(self)
    if self.done then return end
    self.done = true
    if self.tls then
        self.tls:close_notify()
        flush(self, 1)
        self.tls:free()
    end
    self.sock:close()
    self.codec:free()
end

-- The next bytes from the peer for receive, keeping the keepalive: after
-- ping_interval without a byte from the peer a ping goes out; no byte
-- within ping_timeout after it and the peer is taken for gone (nil,
-- "keepalive").  The wait for bytes never outlasts the caller's deadline.
local function next_bytes(self, deadline)
    if self.early then
        local bytes = self.early
        self.early = nil
        return bytes
    end
    while true do
        local due
        if self.ping_interval > 0 then
            due = self.ping_at and self.ping_at + self.ping_timeout
                  or self.rx_at + self.ping_interval
        end
        local now = ms.now()
        local wait = deadline and math.max(0, deadline - now)
        if due and (not wait or due - now < wait) then wait = math.max(0, due - now) end
        local bytes, err = recv(self, wait)
        if bytes then
            self.rx_at, self.ping_at = ms.now(), nil
            return bytes
        end
        if err ~= "timeout" or not due or ms.now() < due then return nil, err end
        if self.ping_at then return nil, "keepalive" end
        local ok, qerr = self.codec:queue("keepalive")
        if not ok then return nil, qerr end
        self.ping_at = ms.now()
        local fok, ferr = flush(self, self.ping_timeout)
        if not fok then return nil, ferr == "timeout" and "keepalive" or ferr end
    end
end

function WS:receive(timeout)
    local deadline = timeout and ms.now() + timeout
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
        local bytes, err = next_bytes(self, deadline)
        if not bytes then
            if err == "timeout" then return nil, "timeout" end
            if err == "keepalive" then
                self.codec:ping_timed_out()
                self.close_code = 1006
                self.close_reason = "the server did not answer a ping within ping_timeout"
                finish(self)
                return nil, "closed", self.close_code, self.close_reason
            end
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
