-- http_service.lua: a small JSON API served by a supervised pool of agents
-- (ms.http.serve, docs/http.md).
--   ms-host run scripts/http_service.lua -- 127.0.0.1:8080 [UPSTREAM_URL]
--   ms-host run scripts/http_service.lua -- 127.0.0.1:0 --check   (a self-test)
--
--   GET  /hello     {"hello":"world"}
--   GET  /time      {"now": seconds on the host's monotonic clock}
--   POST /echo      the JSON body back, re-encoded ({"echo": value}); a body
--                   that is not JSON gets 400 with the parser's message
--   GET  /whoami    which pool agent answered, and how often it was restarted
--   GET  /upstream  what the client agent last fetched (see below)
--   anything else   404 {"error": "..."}
--
-- The pool (two agents, `agents = 2`) runs the handler below; a handler
-- that raises answers 500 and is logged, a crashed agent is restarted by
-- the pool's supervisor.  SIGINT or SIGTERM closes the server gracefully:
-- requests in flight are answered first.  With --check the script asks
-- its own endpoints (over ms.net) and exits.

local address = arg[1] or "127.0.0.1:8080"
local check = arg[2] == "--check"
-- The HTTPS endpoint the client agent polls (none in the self-test, which
-- must not depend on the network).
local upstream_url = not check and (arg[2] or "https://www.debian.org/") or nil

local function handler(req)
    local json = ms.json
    local function answer(status, value)
        return { status = status, headers = { ["Content-Type"] = "application/json" },
                 body = json.encode(value) }
    end
    if req.method == "GET" and req.path == "/hello" then
        return answer(200, { hello = "world" })
    elseif req.method == "GET" and req.path == "/time" then
        return answer(200, { now = ms.now() })
    elseif req.method == "POST" and req.path == "/echo" then
        local value, err = json.decode(req.body)
        if value == nil then
            local text = type(err) == "table" and err.message or tostring(err)
            return answer(400, { error = text })
        end
        return answer(200, { echo = value })
    elseif req.method == "GET" and req.path == "/whoami" then
        local info = ms.self():info()
        return answer(200, { agent = info.name, restarts = info.restarts })
    elseif req.method == "GET" and req.path == "/upstream" then
        -- CLIENT: the client agent (below) keeps what it last fetched from
        -- an HTTPS endpoint; ask it.
        local client = ms.agent.whereis("upstream")
        if not client then
            return answer(503, { error = "no upstream client in this build" })
        end
        return answer(200, { upstream = client:call("last", 5) })
    end
    return answer(404, { error = ("no route for %s %s"):format(req.method, req.path) })
end

local srv = assert(ms.http.serve{ listen = address, handler = handler, agents = 2,
                                  name = "http_service" })
io.stderr:write(("http_service: listening on %s\n"):format(srv:url()))

-- The client agent: calls the upstream HTTPS endpoint with ms.http.request
-- every 30 s (TLS verified against the system's CAs) and answers calls
-- "last" with what it got: the status and the body's size, or the error's
-- reason and message (no network is an answer too, not a crash).
if upstream_url then
    ms.agent.spawn{ name = "upstream", args = { url = upstream_url }, fn = function(args)
        local last = { url = args.url, pending = true }
        local function fetch()
            local status, headers_or_err, body = ms.http.request{ url = args.url,
                                                                   timeout = 10, redirects = 3 }
            if status then
                last = { url = args.url, status = status, bytes = #body, at = ms.now() }
            else
                local err = headers_or_err
                last = { url = args.url, error = err.reason, message = err.message,
                         at = ms.now() }
            end
        end
        ms.spawn(function()
            while true do
                fetch()
                ms.sleep(30)
            end
        end)
        while true do
            local msg, reply = ms.recv()
            if msg == "last" and reply then reply(last) end
        end
    end }
end

ms.on_shutdown(function()
    srv:close()
end)

if not check then
    while true do
        ms.sleep(3600)
    end
end

-- The self-test: ask every route over ms.net (an HTTP/1.1 client in a few
-- lines: one request per connection, "Connection: close", the answer read
-- to the end).
local host, port = srv:address()
local function request(method, path, body)
    local c = assert(ms.net.connect(("%s:%d"):format(host, port), 20))
    body = body or ""
    assert(c:write(("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
        .. "Content-Length: %d\r\n\r\n%s"):format(method, path, host, #body, body), 20))
    local answer = assert(c:read("a", 20))
    c:close()
    local status = tonumber(answer:match("^HTTP/1%.1 (%d%d%d) "))
    return status, answer:match("\r\n\r\n(.*)$")
end
local function expect(what, want_status, want_body, status, body)
    if status ~= want_status or (want_body and body ~= want_body) then
        error(("%s: got %s %s, want %s %s"):format(what, tostring(status), tostring(body),
            want_status, tostring(want_body)), 2)
    end
end
expect("GET /hello", 200, '{"hello":"world"}', request("GET", "/hello"))
expect("POST /echo", 200, '{"echo":{"a":[1,2]}}', request("POST", "/echo", '{"a":[1,2]}'))
expect("POST /echo with bad JSON", 400, nil, request("POST", "/echo", "{nope"))
expect("GET /nope", 404, nil, request("GET", "/nope"))
local status, body = request("GET", "/whoami")
local who = ms.json.decode(body)
assert(status == 200 and type(who.agent) == "string" and who.restarts == 0, "GET /whoami: " .. body)
assert(srv:close(10), "the server did not close cleanly")
print("http_service: all checks passed")
