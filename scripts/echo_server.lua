-- echo_server.lua: a line echo server, skynet's acceptor/handler pattern.
--   ms-host run scripts/echo_server.lua -- 127.0.0.1:9000
--   ms-host run scripts/echo_server.lua -- 127.0.0.1:0 --check   (a self-test)
--
--   root (one_for_one)
--   |-- handlers   a simple_one_for_one supervisor: one temporary
--   |              handler agent per connection
--   `-- acceptor   listens, accepts, starts a handler and hands it the
--                  connection in a message; the connection then belongs
--                  to the handler (docs/io.md, "Handing a socket to
--                  another agent")
--
-- Each handler echoes every line it reads until the client closes, then
-- ends; its socket is closed with it whatever way it ends.  A crash of the
-- acceptor restarts it (it listens again); a crash of a handler loses that
-- one connection only.  Without --check the server runs until SIGINT or
-- SIGTERM; with it, 20 clients each send 50 lines, check every echo and
-- the script exits.

local address = arg[1] or "127.0.0.1:9000"
local check = arg[2] == "--check"

-- One connection: sent by the acceptor right after the handler starts.
local function handler()
    local conn = ms.recv(30)
    if not conn then return end
    while true do
        local line = conn:read("L", 300)
        if not line or not conn:write(line) then break end
    end
    conn:close()
end

local function acceptor(addr)
    local listener = assert(ms.net.listen(addr))
    local host, port = listener:local_address()
    local main = ms.agent.whereis("main")
    if main then main:send({ listening = host .. ":" .. port }) end
    local handlers = ms.supervisor.attach(ms.agent.whereis("handlers"))
    while true do
        local conn, err = listener:accept()
        if conn then
            local agent = handlers:start_child()
            if not (agent and agent:send(conn)) then conn:close() end
        elseif err == "closed" then
            break
        else
            io.stderr:write("echo_server: accept: " .. tostring(err) .. "\n")
            ms.sleep(0.1) -- out of descriptors, or a limit: let some close
        end
    end
end

local sup = assert(ms.supervisor{
    name = "root", strategy = "one_for_one", intensity = 5, period = 10,
    children = {
        { id = "handlers", type = "supervisor", start = {
            name = "handlers", strategy = "simple_one_for_one",
            children = { { id = "handler", start = { fn = handler }, restart = "temporary" } },
        } },
        { id = "acceptor", start = { fn = acceptor, args = address } },
    },
})

local msg = assert(ms.recv(30), "the acceptor did not start")
print("echo_server: listening on " .. msg.listening)
io.stdout:flush()

if not check then
    ms.monitor(sup.agent)
    ms.recv() -- runs until the host shuts down (SIGINT, SIGTERM)
    return
end

local CLIENTS, LINES = 20, 50
local clients = {}
for c = 1, CLIENTS do
    clients[c] = ms.spawn(function()
        local s = assert(ms.net.connect(msg.listening, 30))
        for i = 1, LINES do
            local line = ("client %d line %d"):format(c, i)
            assert(s:write(line .. "\n", 30))
            local back = assert(s:read("l", 30))
            assert(back == line, ("client %d: sent %q, got %q"):format(c, line, back))
        end
        s:close()
        return LINES
    end)
end
local total = 0
for _, t in ipairs(clients) do
    local ok, n = t:join(60)
    assert(ok, tostring(n))
    total = total + n
end
print(("echo_server: %d clients, %d lines echoed"):format(CLIENTS, total))
sup:stop()
