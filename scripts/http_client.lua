-- http_client.lua: an agent calling an HTTPS service and printing the
-- status and one field of its JSON answer (docs/http.md, "Client").
--   ms-host run scripts/http_client.lua -- URL [FIELD] [CA_FILE]
--   ms-host run scripts/http_client.lua -- https://api.github.com/zen
--   ms-host run scripts/http_client.lua -- https://api.github.com/repos/curl/curl stargazers_count
--
-- FIELD is a dotted path into the JSON ("owner.login"); without it the
-- body's first line is printed.  CA_FILE trusts that PEM file's CAs
-- instead of the system's store (a private CA or a self-signed server).
-- The request runs in its own agent under a memory limit, so a service
-- that answers too much fails that agent's request ("too_large"), not
-- the host; the main agent prints what came back and exits 0 on a 2xx,
-- 1 otherwise.

local url, field, ca_file = arg[1], arg[2], arg[3]
if not url then
    io.stderr:write("usage: ms-host run scripts/http_client.lua -- URL [FIELD] [CA_FILE]\n")
    os.exit(2)
end

-- The calling agent: its answer goes back to the main agent in a message.
local function caller(args)
    local status, headers, body = ms.http.request{
        url = args.url,
        headers = { Accept = "application/json" },
        timeout = 20,
        redirects = 3,
        ca_file = args.ca_file,
    }
    if not status then
        -- headers is the error value: reason says what failed
        args.reply:send({ error = headers.message, reason = headers.reason })
    else
        args.reply:send({ status = status, body = body })
    end
end

local function dig(doc, path)
    for key in path:gmatch("[^.]+") do
        if type(doc) ~= "table" then return nil end
        doc = doc[tonumber(key) or key]
    end
    return doc
end

local a = ms.agent.spawn{ name = "http-caller", fn = caller, memory_limit = 64 * 1024 * 1024,
                          args = { url = url, ca_file = ca_file, reply = ms.self() } }
ms.monitor(a)
local res = ms.recv(60)
if res and res.event == "exit" then -- it ended without answering
    res = { error = tostring(res.message), reason = res.reason }
end
if not res or res.error then
    print(("request failed (%s): %s"):format(res and res.reason or "no answer",
                                             res and res.error or "none in 60 s"))
    os.exit(1)
end
print("status " .. res.status)
if field then
    local doc, err = ms.json.decode(res.body)
    if doc == nil then
        print("not JSON: " .. tostring(err))
    else
        local v = dig(doc, field)
        print(field .. " = " .. (type(v) == "table" and ms.json.encode(v) or tostring(v)))
    end
else
    print((res.body:match("^[^\n]*")))
end
os.exit(res.status >= 200 and res.status < 300 and 0 or 1)
