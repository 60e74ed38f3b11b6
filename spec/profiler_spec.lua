-- The sampling profiler of one agent (issue 18, docs/observability.md):
-- ms.profiler.run{ agent =, seconds = } and GET /debug/profile return
-- folded stacks from LuaJIT's profiler run in that agent's VM; one profile
-- at a time.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/profiler_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp
local SCALE = tonumber(os.getenv("MS_TEST_SCALE") or "") or 1
local LIMIT = SCALE < 1 and 120 or 60

-- ThreadSanitizer delivers a signal only when its thread next makes a call
-- it intercepts: SIGPROF then lands at the agent's yields, never inside
-- JIT-compiled hot code, so its profiles are skewed to the yielding frame.
-- Under it the profile must still work (folded lines, samples counted), but
-- where the samples fall is not checked.
local TSAN = os.getenv("TSAN_OPTIONS") ~= nil

local FATAL = { "PANIC", "unprotected", "AddressSanitizer", "ThreadSanitizer",
    "LeakSanitizer", "runtime error" }

local function run(script)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0, "mkdir " .. dir)
    h.write_file(dir .. "/script.lua", script)
    os.execute(("timeout -k 5 %d %s run %s --workers 2 >%s 2>%s </dev/null; echo $? >%s")
        :format(LIMIT, q(HOST), q(dir .. "/script.lua"), q(dir .. "/out"), q(dir .. "/err"),
            q(dir .. "/code")))
    local code, out, err = tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"),
        slurp(dir .. "/err")
    os.execute("rm -rf " .. q(dir))
    for _, f in ipairs(FATAL) do
        assert(not err:find(f, 1, true), "stderr has " .. f .. ":\n" .. err)
    end
    return code, out, err
end

-- An agent whose time goes to hot_spot(), yielding between rounds.
local WORKER = [[
ms.agent.spawn{ name = "worker", fn = function()
    local function hot_spot(n)
        local x = 0
        for i = 1, n do x = x + math.sin(i) * math.cos(i) end
        return x
    end
    local function cold() return 1 end
    while true do
        hot_spot(60000)
        cold()
        ms.yield()
    end
end }
ms.sleep(0.1)
]]

describe("ms.profiler.run", function()
    it("names a known hot function in its heaviest stack", function()
        local code, out, err = run(WORKER .. [[
local folded = assert(ms.profiler.run{ agent = "worker", seconds = 1 })
print("HEAVIEST " .. folded:match("^[^\n]*"))
print("ANY " .. tostring(folded:find("hot_spot", 1, true) ~= nil))
local total = 0
for line in folded:gmatch("[^\n]+") do
    local stack, n = line:match("^(.-) (%d+)$")
    assert(stack and n, "not a folded line: " .. line)
    total = total + tonumber(n)
end
print("SAMPLES " .. total)
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        local heaviest = out:match("HEAVIEST ([^\n]*)")
        if not TSAN then
            assert(heaviest and heaviest:find("hot_spot", 1, true), out)
        end
        assert(tonumber(out:match("SAMPLES (%d+)")) > 0, out)
    end)

    it("refuses a second profile while one runs, and bad arguments, naming them", function()
        local code, out, err = run(WORKER .. [[
ms.agent.spawn{ name = "idle", fn = function() ms.recv() end }
local first = ms.spawn(function() return ms.profiler.run{ agent = "worker", seconds = 1 } end)
ms.sleep(0.2)
print("SECOND", ms.profiler.run{ agent = "idle", seconds = 0.1 })
print("FIRST", first:join() ~= nil)
print("NOBODY", ms.profiler.run{ agent = "nobody", seconds = 0.1 })
for _, bad in ipairs({ { seconds = 1 }, { agent = "worker", seconds = 0 },
                       { agent = "worker", seconds = 1e9 }, { agent = 3 },
                       { agent = "worker", colour = 1 }, { agent = "main" } }) do
    print("BAD", pcall(ms.profiler.run, bad))
end
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "a profile of agent 'worker' is already running: LuaJIT's "
            .. "profiler samples one VM at a time")
        h.assert_contains(out, "FIRST\ttrue")
        h.assert_contains(out, "no agent is named 'nobody'")
        h.assert_contains(out, "agent is required")
        h.assert_contains(out, "seconds must be a number in (0, 300]")
        h.assert_contains(out, "agent must be an agent's name")
        h.assert_contains(out, "unknown field 'colour'")
        h.assert_contains(out, "an agent cannot profile itself")
    end)

    it("reports an agent that ends during its profile, and then profiles again", function()
        local code, out, err = run(WORKER .. [[
local brief = ms.agent.spawn{ name = "brief", fn = function()
    local deadline = ms.now() + 0.3
    while ms.now() < deadline do ms.yield() end
end }
print("ENDED", ms.profiler.run{ agent = "brief", seconds = 3 })
print("AGAIN", (ms.profiler.run{ agent = "worker", seconds = 0.3 }) ~= nil)
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "the agent ended during the profile")
        h.assert_contains(out, "AGAIN\ttrue")
    end)

    it("says so when the agent is stuck in one poll, and the host goes on", function()
        local code, out, err = run([[
local spin = ms.agent.spawn{ name = "spin", jit = false, fn = function() while true do end end }
ms.sleep(0.1)
print("STUCK", ms.profiler.run{ agent = "spin", seconds = 0.2 })
spin:stop()
os.exit(0)
]])
        assert.are.equal(0, code, out .. err)
        h.assert_contains(out, "did not reach a poll boundary")
    end)
end)

describe("GET /debug/profile", function()
    it("returns the folded stacks of the agent named, or a clear error", function()
        local bg = h.background_host(WORKER .. [[
print("ready")
io.stdout:flush()
for _ = 1, 1200 do
    local f = io.open(arg[1])
    if f then f:close() return end
    ms.sleep(0.05)
end
]], "--workers 2 --metrics-listen 127.0.0.1:0")
        local function get(path)
            local p = io.popen(("timeout 30 bash -c %s"):format(q(
                ("exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.1\\r\\n\\r\\n' >&3 "
                 .. "&& cat <&3"):format(bg.port, path))))
            local resp = p:read("*a")
            p:close()
            return resp
        end
        local ok, e = pcall(function()
            assert(bg.port, "no port: " .. bg.err())
            local resp = get("/debug/profile?agent=worker&seconds=1")
            h.assert_contains(resp, "HTTP/1.1 200 OK")
            local body = resp:match("\r\n\r\n(.*)$")
            assert(TSAN or body:match("^[^\n]*"):find("hot_spot", 1, true), body)
            h.assert_contains(get("/debug/profile?agent=nobody"), "404 Not Found")
            h.assert_contains(get("/debug/profile?agent=worker&seconds=0"), "400 Bad Request")
            h.assert_contains(get("/debug/profile"), "agent=NAME is required")
        end)
        bg.stop()
        assert(ok, e)
    end)
end)
