-- Specs for ms-host's metrics endpoint (--metrics-listen HOST:PORT): one
-- ms-host runs a small script (a few agents, then it waits until told to
-- stop) with the endpoint on a free loopback port; the specs scrape it
-- with a plain TCP client and parse what comes back: /metrics in the
-- Prometheus text exposition format 0.0.4, /metrics.json, 404 and 405,
-- malformed, oversized and unfinished requests (400), and a second ms-host
-- on the same port (exit status 2 naming the port).  The endpoint must
-- answer again after every bad request, and the host must end normally.
--
-- Run from the repository root:
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/metrics_http_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local h = require "spec.support.helpers"
local HOST, shell_quote, slurp, write, contains, assert_contains =
    h.host, h.shell_quote, h.slurp, h.write_file, h.contains, h.assert_contains

local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

local function sleep(s)
    sh("sleep " .. s)
end

local function now()
    local p = io.popen("date +%s.%N")
    local t = tonumber(p:read("*l"))
    p:close()
    return t
end

local HAVE_CURL = sh("command -v curl >/dev/null 2>&1")

local dir, port, pid

-- Sends the bytes of request to the endpoint over a plain TCP connection
-- (bash's /dev/tcp) and returns everything the server sent back.
local function raw(request)
    local req = write(dir .. "/.request", request)
    local resp = dir .. "/.response"
    os.remove(resp)
    sh(("timeout 20 bash -c %s >%s 2>/dev/null </dev/null"):format(
        shell_quote(("exec 3<>/dev/tcp/127.0.0.1/%d && cat %s >&3 && cat <&3"):format(
            port, shell_quote(req))), shell_quote(resp)))
    return slurp(resp)
end

-- Splits an HTTP response into status, headers (lower-cased names) and
-- body.
local function parse_response(resp)
    local head, body = resp:match("^(.-)\r\n\r\n(.*)$")
    if not head then return nil, {}, resp end
    local status = tonumber(head:match("^HTTP/1%.[01] (%d%d%d)"))
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        headers[name:lower()] = value
    end
    return status, headers, body
end

-- GET (or another method) with curl when there is one, else by hand.
local function fetch(path, method)
    method = method or "GET"
    if HAVE_CURL then
        local p = io.popen(("curl -s -i --max-time 20 -X %s %s"):format(method,
            shell_quote(("http://127.0.0.1:%d%s"):format(port, path))))
        local resp = p:read("*a")
        p:close()
        return parse_response(resp)
    end
    return parse_response(raw(("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        .. "Connection: close\r\n\r\n"):format(method, path, port)))
end

local SCRIPT = [[
for _, name in ipairs({ "alpha", "beta", 'odd "name" \\ here' }) do
    ms.agent.spawn{ name = name, fn = function() ms.sleep(120) end }
end
print("ready")
io.stdout:flush()
local stop = arg[1]
for _ = 1, 1200 do                     -- at most a minute
    local f = io.open(stop)
    if f then f:close() return end
    ms.sleep(0.05)
end
]]

describe("ms-host --metrics-listen", function()
    local bg

    setup(function()
        -- Port 0: the kernel picks a free port and ms-host prints it.
        bg = h.background_host(SCRIPT, "--workers 2 --metrics-listen 127.0.0.1:0")
        dir, port, pid = bg.dir, bg.port, bg.pid
        assert(port and port > 0, "no 'metrics on' line on stderr: " .. bg.err())
    end)

    teardown(function()
        if bg then bg.stop() end
    end)

    it("prints where it listens, once", function()
        local err = slurp(dir .. "/err")
        local _, n = err:gsub("metrics on http://", "")
        assert.are.equal(1, n)
    end)

    it("serves /metrics in the Prometheus text format 0.0.4", function()
        local status, headers, body = fetch("/metrics")
        assert.are.equal(200, status)
        assert_contains(headers["content-type"], "text/plain; version=0.0.4")
        assert.are.equal(#body, tonumber(headers["content-length"]))
        local types, done, current, samples = {}, {}, nil, 0
        for line in body:gmatch("([^\n]*)\n") do
            if line:sub(1, 1) == "#" then
                local name, kind = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
                if name then
                    assert(types[name] == nil, "two TYPE lines for " .. name)
                    assert(kind == "counter" or kind == "gauge" or kind == "histogram", line)
                    types[name] = kind
                else
                    assert(line:match("^# HELP [%a_:][%w_:]* .+$"), "odd comment: " .. line)
                end
            else
                local name, value = line:match("^([%a_:][%w_:]*)%b{} ([%deE.+-]+)$")
                if not name then
                    name, value = line:match("^([%a_:][%w_:]*) ([%deE.+-]+)$")
                end
                assert(name, "not a sample line: " .. line)
                assert(tonumber(value), "not a number: " .. line)
                -- A histogram's samples: _bucket, _sum and _count of its family.
                local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$")
                    or name:match("^(.*)_count$")
                if base and types[base] == "histogram" then
                    name = base
                end
                assert(types[name], "no # TYPE before " .. line)
                if types[name] == "counter" then
                    assert(name:match("_total$"), "a counter without _total: " .. name)
                end
                -- Every family's samples are together.
                if name ~= current then
                    assert(not done[name], name .. " appears in two places")
                    if current then done[current] = true end
                    current = name
                end
                samples = samples + 1
            end
        end
        assert.is_true(samples > 20)
        assert.are.equal(body:sub(-1), "\n")
        assert_contains(body, "\nms_workers 2\n")
        assert_contains(body, "\nms_active_workers 2\n")
        assert_contains(body, 'ms_worker_active{worker="1"} 1\n')
        assert.are.equal("counter", types.ms_worker_resizes_total)
        assert_contains(body, 'ms_worker_polls_total{worker="0"} ')
        assert_contains(body, 'ms_worker_polls_total{worker="1"} ')
        assert.are.equal("counter", types.ms_worker_busy_seconds_total)
        assert.are.equal("counter", types.ms_spawned_tasks_total)
        assert.are.equal("gauge", types.ms_alive_tasks)
        assert.are.equal("gauge", types.ms_agent_mailbox_depth)
        assert.is_truthy(body:match('ms_agent_mailbox_depth{agent="alpha",id="%d+"} 0\n'))
        assert.is_truthy(body:match('ms_agent_memory_bytes{agent="beta",id="%d+"} %d+\n'))
        assert.is_truthy(body:match('ms_agent_restarts{agent="main",id="1"} 0\n'))
        -- Label values escape backslash and double quote.
        assert_contains(body, 'agent="odd \\"name\\" \\\\ here"')
    end)

    it("answers HEAD with the headers only", function()
        if not HAVE_CURL then return end
        local p = io.popen(("curl -s -I --max-time 20 http://127.0.0.1:%d/metrics"):format(port))
        local status, headers, body = parse_response(p:read("*a"))
        p:close()
        assert.are.equal(200, status)
        assert.is_true(tonumber(headers["content-length"]) > 0)
        assert.are.equal("", body)
    end)

    it("serves /metrics.json", function()
        local status, headers, body = fetch("/metrics.json")
        assert.are.equal(200, status)
        assert.are.equal("application/json", headers["content-type"])
        assert.are.equal("{", body:sub(1, 1))
        assert_contains(body, '"workers":2')
        assert_contains(body, '"per_worker":[')
        assert_contains(body, '"agents":[')
        assert_contains(body, '"name":"alpha"')
        assert_contains(body, '"name":"odd \\"name\\" \\\\ here"')
    end)

    it("answers 404 for other paths and 405 for other methods", function()
        local status = fetch("/nope")
        assert.are.equal(404, status)
        assert.are.equal(404, (fetch("/")))
        assert.are.equal(405, (fetch("/metrics", "POST")))
        local s, headers = fetch("/metrics", "DELETE")
        assert.are.equal(405, s)
        assert.are.equal("GET, HEAD", headers["allow"])
        assert.are.equal(200, (fetch("/metrics?name=x")))
    end)

    it("answers 400 to malformed requests and keeps serving", function()
        for _, req in ipairs({
            "garbage\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/9.9\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n folded: header\r\n\r\n",
            "GET /metr\0ics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\nBad\1: control\r\n\r\n",
        }) do
            local status, _, body = parse_response(raw(req))
            assert.are.equal(400, status, ("%q -> %s"):format(req, body))
        end
        assert.are.equal(200, (fetch("/metrics")))
    end)

    it("answers 400 to request headers over 8 KiB", function()
        local big = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(9000) .. "\r\n\r\n"
        local status, _, body = parse_response(raw(big))
        assert.are.equal(400, status)
        assert_contains(body, "8192")
        -- Just under the limit is fine.
        local fits = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(8000) .. "\r\n\r\n"
        assert.are.equal(200, (parse_response(raw(fits))))
    end)

    it("answers 400 to a request that stops for 2 s", function()
        local started = now()
        local status, _, body = parse_response(raw("GET /metrics HTTP/1.1\r\nHost: x\r\n"
            .. "X-Slow: "))
        -- raw() keeps its side open (cat <&3 waits), so only the server's
        -- timeout ends the exchange.
        local elapsed = now() - started
        assert.are.equal(400, status, body)
        assert_contains(body, "no byte of the request for 2 s")
        -- never before the server's 2 s (raw() itself gives up at 20 s)
        assert.is_true(elapsed >= 1.5, "took " .. elapsed .. " s")
        assert.are.equal(200, (fetch("/metrics")))
    end)

    it("answers 400 to a request that does not complete within 5 s", function()
        -- One more byte every 0.5 s: never idle for 2 s, never complete.
        local resp = dir .. "/.response"
        os.remove(resp)
        sh(("timeout 30 bash -c %s >%s 2>/dev/null </dev/null"):format(
            shell_quote(("exec 3<>/dev/tcp/127.0.0.1/%d || exit 1; printf 'GET /metrics "
                .. "HTTP/1.1\\r\\nX-Slow: ' >&3; (for i in $(seq 1 40); do sleep 0.5; "
                .. "printf a >&3 2>/dev/null || exit 0; done) & cat <&3"):format(port)),
            shell_quote(resp)))
        local status, _, body = parse_response(slurp(resp))
        assert.are.equal(400, status, body)
        assert_contains(body, "did not complete within 5 s")
        assert.are.equal(200, (fetch("/metrics")))
    end)

    it("refuses to start a second ms-host on the same port: exit 2 naming the port", function()
        local out, err, code = dir .. "/.out2", dir .. "/.err2", dir .. "/.code2"
        local qout, qerr, qcode = shell_quote(out), shell_quote(err), shell_quote(code)
        sh(("timeout 60 %s run %s --metrics-listen 127.0.0.1:%d -- %s >%s 2>%s </dev/null; "
            .. "echo $? >%s"):format(shell_quote(HOST), shell_quote(dir .. "/script.lua"), port,
            shell_quote(dir .. "/stop2"), qout, qerr, qcode))
        assert.are.equal(2, tonumber(slurp(code)))
        assert.are.equal("", slurp(out)) -- the script never ran
        assert_contains(slurp(err), "127.0.0.1:" .. port)
        assert_contains(slurp(err), "in use")
        -- Also through the profile field.
        sh(("timeout 60 %s run %s --set metrics_listen=127.0.0.1:%d -- %s >%s 2>%s </dev/null; "
            .. "echo $? >%s"):format(shell_quote(HOST), shell_quote(dir .. "/script.lua"), port,
            shell_quote(dir .. "/stop2"), qout, qerr, qcode))
        assert.are.equal(2, tonumber(slurp(code)))
        assert_contains(slurp(err), tostring(port))
    end)

    it("leaves the host to end normally", function()
        assert.are.equal(200, (fetch("/metrics")))
        write(dir .. "/stop", "")
        for _ = 1, 200 do
            if slurp(dir .. "/code") ~= "" then break end
            sleep(0.05)
        end
        assert.are.equal(0, tonumber(slurp(dir .. "/code")), slurp(dir .. "/err"))
    end)
end)
