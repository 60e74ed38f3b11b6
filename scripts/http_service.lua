-- http_service.lua: a small JSON API served by a supervised pool of agents
-- (ms.http.serve, docs/http.md).
--   ms-host run scripts/http_service.lua -- 127.0.0.1:8080
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
-- its own endpoints with curl and exits.

local address = arg[1] or "127.0.0.1:8080"
local check = arg[2] == "--check"

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

-- CLIENT: an agent calling an HTTPS endpoint with ms.http.request goes
-- here, registered as "upstream" and answering calls "last" with what it
-- fetched (ms.http.request is the client half of ms.http; see docs/http.md).

ms.on_shutdown(function()
    srv:close()
end)

if not check then
    while true do
        ms.sleep(3600)
    end
end

-- The self-test: ask every route with curl.
local url = srv:url()
local function curl(...)
    local argv = { "curl", "-s", "--max-time", "20", ... }
    argv.stdout = "pipe"
    local p = assert(ms.process.spawn(argv))
    local out = p.stdout:read("a") or ""
    p:wait()
    return out
end
local function expect(got, want, what)
    if got ~= want then
        error(("%s: got %s, want %s"):format(what, got, want), 2)
    end
end
expect(curl(url .. "/hello"), '{"hello":"world"}', "GET /hello")
expect(curl("-d", '{"a":[1,2]}', url .. "/echo"), '{"echo":{"a":[1,2]}}', "POST /echo")
expect(curl("-o", "/dev/null", "-w", "%{http_code}", "-d", "{nope", url .. "/echo"), "400",
    "POST /echo with bad JSON")
expect(curl("-o", "/dev/null", "-w", "%{http_code}", url .. "/nope"), "404", "GET /nope")
local who = ms.json.decode(curl(url .. "/whoami"))
assert(type(who.agent) == "string" and who.restarts == 0, "GET /whoami: " .. tostring(who.agent))
assert(srv:close(10), "the server did not close cleanly")
print("http_service: all checks passed")
