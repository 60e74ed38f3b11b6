-- The host's own stderr lines (docs/logs.md): --log-format text|json,
-- syslog priorities under the journal, ms.log from agents.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/logs_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"
local json = require "spec.support.json"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp

local FATAL = { "PANIC", "AddressSanitizer", "ThreadSanitizer", "LeakSanitizer",
    "runtime error" }

-- Runs SCRIPT with ARGS (a string of options); ENV is a prefix of
-- assignments for the shell.  stderr goes to a file, whose device and
-- inode JOURNAL_STREAM may name (journal = true).
local function run(script, args, opts)
    opts = opts or {}
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0)
    h.write_file(dir .. "/script.lua", script)
    local err = dir .. "/err"
    h.write_file(err, "")
    local env = ""
    if opts.journal then
        local p = io.popen("stat -c '%d:%i' " .. q(err))
        env = "JOURNAL_STREAM=" .. p:read("*l") .. " "
        p:close()
    elseif opts.journal_elsewhere then
        env = "JOURNAL_STREAM=1:1 "
    end
    os.execute(("%stimeout -k 5 60 %s run %s %s >%s 2>>%s </dev/null; echo $? >%s")
        :format(env, q(HOST), q(dir .. "/script.lua"), args or "", q(dir .. "/out"), q(err),
            q(dir .. "/code")))
    local code, out, e = tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"), slurp(err)
    os.execute("rm -rf " .. q(dir))
    for _, f in ipairs(FATAL) do
        assert(not e:find(f, 1, true), "stderr has " .. f .. ":\n" .. e)
    end
    return code, out, e
end

local function lines(s)
    local t = {}
    for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

-- Every stderr line as a JSON object (failing on any line that is not).
local function objects(err)
    local t = {}
    for _, l in ipairs(lines(err)) do
        local ok, v = pcall(json.decode, l)
        assert(ok and type(v) == "table", "not a JSON object line: " .. l .. "\n" .. tostring(v))
        t[#t + 1] = v
    end
    return t
end

local function find(objs, event)
    for _, o in ipairs(objs) do
        if o.event == event then return o end
    end
end

-- An agent that exits with unread mail (a warning about it), one ms.log
-- line with bytes that are not UTF-8 and control characters, and a
-- failing main agent with a traceback.
local SCRIPT = [[
local a = ms.agent.spawn{ name = "lazy", fn = function() ms.sleep(0.2) end }
a:send("one")
a:send("two")
ms.monitor(a)
ms.recv()
ms.log("warning", "app.odd", "bytes \255\254 and \1 and \"quotes\"\nsecond line")
error("the main agent fails")
]]

describe("--log-format json", function()
    it("writes every stderr line as one JSON object with time, level, event and agent", function()
        local code, _, err = run(SCRIPT, "--workers 2 --log-format json")
        assert.are.equal(1, code, err)
        local objs = objects(err)
        assert.is_true(#objs >= 3, err)
        for _, o in ipairs(objs) do
            assert.is_truthy(type(o.time) == "string" and
                o.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$"), err)
            assert.is_truthy(({ error = 1, warning = 1, notice = 1, info = 1 })[o.level], err)
            assert.are.equal("string", type(o.event))
            assert.are.equal("string", type(o.message))
        end
        local unread = assert(find(objs, "agent.exit_unread"), err)
        assert.are.equal("warning", unread.level)
        assert.are.equal("lazy", unread.agent)
        assert.are.equal("number", type(unread.agent_id))
        h.assert_contains(unread.message, "2 unread messages")
        local odd = assert(find(objs, "app.odd"), err)
        assert.are.equal("main", odd.agent)
        assert.are.equal("bytes \239\191\189\239\191\189 and \1 and \"quotes\"\nsecond line",
            odd.message)
        local failed = assert(find(objs, "main.failed"), err)
        assert.are.equal("error", failed.level)
        h.assert_contains(failed.message, "the main agent fails")
        h.assert_contains(failed.message, "stack traceback")
    end)

    it("covers usage errors, and refuses a format it does not know", function()
        local code, _, err = run("", "--log-format json --workers")
        assert.are.equal(2, code)
        local objs = objects(err)
        assert.are.equal("usage", objs[1].event)
        h.assert_contains(objs[1].message, "--workers needs a value")
        code, _, err = run("", "--log-format yaml")
        assert.are.equal(2, code)
        h.assert_contains(err, "--log-format takes text or json, got 'yaml'")
    end)

    it("logs the shutdown's start and end at SIGTERM", function()
        local code, _, err = run([[
ms.agent.spawn{ name = "idle", fn = function() while true do ms.sleep(1) end end }
ms.sleep(0.1)
os.execute("kill -TERM $PPID")
ms.sleep(30)
]], "--workers 2 --log-format json")
        assert.are.equal(0, code, err)
        local objs = objects(err)
        local start = assert(find(objs, "shutdown.start"), err)
        assert.are.equal("notice", start.level)
        h.assert_contains(start.message, "SIGTERM: shutting down")
        assert.is_truthy(find(objs, "shutdown.end"), err)
    end)
end)

describe("--log-format text", function()
    it("prefixes syslog priorities only when stderr is the journal's stream", function()
        local _, _, err = run(SCRIPT, "--workers 2", { journal = true })
        local ls = lines(err)
        assert.is_true(#ls >= 3, err)
        for _, l in ipairs(ls) do
            assert.is_truthy(l:match("^<[3-6]>"), "no priority: " .. l .. "\n" .. err)
        end
        h.assert_contains(err, "<4>ms-host: agent lazy")
        h.assert_contains(err, "<3>ms-host: ")
        -- the traceback's lines are entries of their own, each with its level
        h.assert_contains(err, "<3>stack traceback:")
        _, _, err = run(SCRIPT, "--workers 2", { journal_elsewhere = true })
        assert.is_falsy(err:find("<%d>"), err)
        h.assert_contains(err, "ms-host: agent lazy")
    end)
end)

describe("ms.log", function()
    it("refuses a level or event it cannot write, naming it", function()
        local code, out, err = run([[
print(pcall(ms.log, "loud", "x", "m"))
print(pcall(ms.log, "info", "has space", "m"))
print(pcall(ms.log, "info", "", "m"))
print(pcall(ms.log, "info", "ok", {}))
ms.log("info", "ok.event", "fine")
]], "--workers 1")
        assert.are.equal(0, code, err)
        h.assert_contains(out, "level must be error, warning, notice or info, got 'loud'")
        h.assert_contains(out, "event must be 1 to 64 letters")
        h.assert_contains(out, "string expected, got table")
        h.assert_contains(err, "ms-host: fine")
    end)

    it("reports a failing on_shutdown handler whose error cannot be shown", function()
        -- (the handlers run at the host's shutdown; a:stop() ends at once)
        local code, _, err = run([[
local a = ms.agent.spawn{ name = "hostile", fn = function()
    ms.on_shutdown(function()
        error(setmetatable({}, { __tostring = function() error("no") end }))
    end)
    while true do ms.sleep(1) end
end }
ms.sleep(0.1)
ms.shutdown(10)
ms.sleep(30)
]], "--workers 2 --log-format json")
        assert.are.equal(0, code, err)
        local failed = assert(find(objects(err), "agent.on_shutdown_failed"), err)
        assert.are.equal("hostile", failed.agent)
        h.assert_contains(failed.message, "whose __tostring fails")
    end)
end)
