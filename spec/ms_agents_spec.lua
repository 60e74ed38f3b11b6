-- Specs for agents: ms.agent.spawn from a function, a file or a module,
-- what may cross between agents (and the errors that name what may not),
-- messages (send, recv, call and reply), monitors and exit reasons, names,
-- ms.agents, and handles shared between agents.
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/ms_agents_spec.lua
--
-- Agent functions share nothing with this file: they may use only their
-- args, globals and the ms module, so they repeat the little they need.

local ms = require "ms"

local h = require "spec.support.helpers"
local run, contains, assert_contains, error_of = h.run, h.contains, h.assert_contains, h.error_of

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function temp_dir()
    local name = os.tmpname()
    os.remove(name)
    assert(os.execute("mkdir " .. shell_quote(name)) == 0, "mkdir " .. name)
    return name
end

local function write(dir, file, text)
    local path = dir .. "/" .. file
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
end

-- Waits for the exit notice of a monitored agent (other messages are
-- dropped); fails after `timeout` seconds.
-- Exit notices that arrived while waiting for another agent's, kept for
-- the wait that wants them (agents may exit in any order).
local early_exits = {}

local function await_exit(a, timeout)
    for i, m in ipairs(early_exits) do
        if m.agent == a then
            table.remove(early_exits, i)
            return m
        end
    end
    local deadline = ms.now() + (timeout or 10)
    while true do
        local left = deadline - ms.now()
        assert(left > 0, "no exit notice for " .. tostring(a))
        local m = ms.recv(left)
        if type(m) == "table" and m.event == "exit" then
            if m.agent == a then
                return m
            end
            early_exits[#early_exits + 1] = m
        end
    end
end

describe("ms agents", function()
    before_each(function()
        for i = #early_exits, 1, -1 do
            early_exits[i] = nil
        end
    end)

    describe("ms.agent.spawn", function()
        it("runs a function as an agent with its args as the one argument", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { n = 20, to = ms.self() },
                    fn = function(args, extra)
                        args.to:send({ doubled = args.n * 2, extra = extra == nil })
                    end,
                }
                local m, from = ms.recv(10)
                assert.are.same({ doubled = 40, extra = true }, m)
                assert.is_true(from == a)
            end)
        end)

        it("has every standard library, each opened on first use", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        -- A string method before anything named `string`:
                        -- the library opens behind the first method.
                        local first = ("ab"):rep(2)
                        reply({
                            first, ("x"):upper(), string.format("%03d", 7),
                            table.concat({ "a", "b" }, "-"), math.floor(2.5),
                            type(io.write), type(os.time()), bit.band(6, 3),
                            type(debug.traceback), type(jit.version),
                            type(require("ffi").new), getmetatable("").__index == string,
                            m,
                        })
                    end,
                }
                assert.are.same({ "abab", "X", "007", "a-b", 2, "function", "number", 2,
                                  "function", "string", "function", true, "ok" },
                                a:call("ok", 10))
            end)
        end)

        it("opens package and ms on first use: one ms table whichever way it is reached",
            function()
            run(function()
                local parent_path = package.path
                -- require "ms" before anything reads the global ms.
                local by_require = ms.agent.spawn {
                    fn = function()
                        local r = require("ms")
                        local m, reply = r.recv(10)
                        reply({ rawequal(r, ms), rawequal(package.loaded.ms, r),
                                type(module), package.path, m })
                    end,
                }
                assert.are.same({ true, true, "function", parent_path, "a" },
                                by_require:call("a", 10))
                -- The global first, then require.
                local by_global = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply({ rawequal(require("ms"), ms), type(package.loaded), m })
                    end,
                }
                assert.are.same({ true, "table", "b" }, by_global:call("b", 10))
                -- Neither: an agent that only uses a handle it was given.
                ms.agent.spawn {
                    fn = function(args) args.to:send(rawget(_G, "ms") == nil) end,
                    args = { to = ms.self() },
                }
                assert.is_true(ms.recv(10))
            end)
        end)

        it("gives the function its own ms module in place of a captured `ms` upvalue", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply(ms.self():name() .. ":" .. m)
                    end,
                    name = "uses-ms",
                }
                assert.are.equal("uses-ms:hi", a:call("hi", 10))
            end)
        end)

        it("runs a file, with args as `...`", function()
            local dir = temp_dir()
            local path = write(dir, "agent.lua", [[
                local args = ...
                local msg, reply = ms.recv(10)
                reply({ args = args, nargs = select("#", ...), msg = msg })
            ]])
            run(function()
                local a = ms.agent.spawn { file = path, args = { greeting = "hello" } }
                local r = a:call("ping", 10)
                assert.are.same({ args = { greeting = "hello" }, nargs = 1, msg = "ping" }, r)
            end)
            os.execute("rm -rf " .. shell_quote(dir))
        end)

        it("runs a module returning its main function or a table with main", function()
            local dir = temp_dir()
            write(dir, "spec_agent_fn.lua", [[
                return function(args)
                    local _, reply = ms.recv(10)
                    reply("fn:" .. args.tag)
                end
            ]])
            write(dir, "spec_agent_tbl.lua", [[
                local M = {}
                function M.main(args)
                    local _, reply = ms.recv(10)
                    reply("tbl:" .. args.tag)
                end
                return M
            ]])
            local saved = package.path
            package.path = dir .. "/?.lua;" .. package.path
            local ok, err = pcall(run, function()
                local a = ms.agent.spawn { module = "spec_agent_fn", args = { tag = "x" } }
                local b = ms.agent.spawn { module = "spec_agent_tbl", args = { tag = "y" } }
                assert.are.equal("fn:x", a:call("go", 10))
                assert.are.equal("tbl:y", b:call("go", 10))
            end)
            package.path = saved
            os.execute("rm -rf " .. shell_quote(dir))
            assert(ok, err)
        end)

        it("reports a module that returns no function as a startup error", function()
            local dir = temp_dir()
            write(dir, "spec_agent_bad.lua", "return 5\n")
            local saved = package.path
            package.path = dir .. "/?.lua;" .. package.path
            local ok, err = pcall(run, function()
                local a = ms.agent.spawn { module = "spec_agent_bad" }
                ms.monitor(a)
                local ex = await_exit(a)
                assert.are.equal("error", ex.reason)
                assert_contains(ex.message, "spec_agent_bad")
                assert_contains(ex.message, "returned number")
            end)
            package.path = saved
            os.execute("rm -rf " .. shell_quote(dir))
            assert(ok, err)
        end)

        it("reports a missing file or module as a startup error naming it", function()
            run(function()
                local f = ms.agent.spawn { file = "/nonexistent/agent.lua" }
                local m = ms.agent.spawn { module = "no_such_spec_module" }
                ms.monitor(f)
                ms.monitor(m)
                local ef, em = await_exit(f), await_exit(m)
                assert.are.equal("error", ef.reason)
                assert_contains(ef.message, "/nonexistent/agent.lua")
                assert.are.equal("error", em.reason)
                assert_contains(em.message, "no_such_spec_module")
            end)
        end)

        it("reports a syntax error in a file as a startup error naming file and line", function()
            local dir = temp_dir()
            local path = write(dir, "broken.lua", "local x = 1\nlocal = 2\n")
            run(function()
                local a = ms.agent.spawn { file = path }
                ms.monitor(a)
                local ex = await_exit(a)
                assert.are.equal("error", ex.reason)
                assert_contains(ex.message, "broken.lua:2")
            end)
            os.execute("rm -rf " .. shell_quote(dir))
        end)

        it("runs an agent with the JIT off (jit = false)", function()
            run(function()
                local a = ms.agent.spawn {
                    jit = false,
                    fn = function()
                        local _, reply = ms.recv(10)
                        local s = 0
                        for i = 1, 1000 do s = s + i end
                        reply({ s, jit.status() })
                    end,
                }
                local r = a:call("go", 10)
                assert.are.equal(500500, r[1])
                assert.is_false(r[2])
            end)
        end)

        it("lets an agent spawn agents of its own", function()
            run(function()
                local parent = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        local child = ms.agent.spawn {
                            args = { to = args.to },
                            fn = function(a) a.to:send("from the grandchild") end,
                        }
                        ms.monitor(child)
                        ms.recv(10)
                    end,
                }
                assert.are.equal("from the grandchild", (ms.recv(10)))
                ms.monitor(parent)
                assert.are.equal("normal", await_exit(parent).reason)
            end)
        end)

        describe("refuses a bad spec", function()
            it("that is not a table", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, 42), "expects a table, got number")
                end)
            end)

            it("with no source, or more than one", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, {}), "exactly one of fn, file or module")
                    assert_contains(error_of(ms.agent.spawn, { fn = function() end, file = "x.lua" }),
                        "exactly one of fn, file or module")
                end)
            end)

            it("with a C function as fn", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, { fn = print }), "fn must be a Lua function")
                end)
            end)

            it("with a file or module that is not a string", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, { file = {} }), "file must be a path string")
                    assert_contains(error_of(ms.agent.spawn, { module = true }), "module must be a module name")
                end)
            end)

            it("with a name that is not a string", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, { fn = function() end, name = {} }),
                        "name must be a string")
                end)
            end)

            it("with a memory_limit under 16384 bytes or negative", function()
                run(function()
                    assert_contains(error_of(ms.agent.spawn, { fn = function() end, memory_limit = 5 }),
                        "memory_limit must be 0 (none) or at least 16384 bytes")
                    assert_contains(error_of(ms.agent.spawn, { fn = function() end, memory_limit = -1 }),
                        "memory_limit")
                end)
            end)

            it("outside ms.run", function()
                assert_contains(error_of(ms.agent.spawn, { fn = function() end }), "no runtime")
            end)
        end)

        it("refuses a function capturing upvalues, naming them", function()
            run(function()
                local config, counter = { x = 1 }, 0
                local msg = error_of(ms.agent.spawn, {
                    fn = function() return config.x + counter end,
                })
                assert_contains(msg, "upvalues")
                assert_contains(msg, "config")
                assert_contains(msg, "counter")
                assert_contains(msg, "args")
            end)
        end)

        it("refuses a captured upvalue even beside the ms module", function()
            run(function()
                local limit = 3
                local msg = error_of(ms.agent.spawn, {
                    fn = function() return ms.now() + limit end,
                })
                assert_contains(msg, "(limit)")
            end)
        end)
    end)

    describe("values crossing between agents", function()
        it("round-trip args: nested tables, numbers, booleans, strings with NULs", function()
            run(function()
                local args = {
                    int = 42, neg = -7, frac = 0.125, big = 2 ^ 53, huge = math.huge,
                    yes = true, no = false,
                    bin = "a\0b\0\255c",
                    empty = "",
                    list = { 1, "two", { three = 3 }, false },
                    nested = { a = { b = { c = { d = "deep" } } } },
                    [7] = "number key", [true] = "boolean key",
                }
                local a = ms.agent.spawn {
                    args = args,
                    fn = function(got)
                        local _, reply = ms.recv(10)
                        reply(got)
                    end,
                }
                local back = a:call("echo", 10)
                assert.are.same(args, back)
                assert.are.equal(6, #back.bin)
            end)
        end)

        it("copy a table shared twice in a value (no cycle) into two copies", function()
            run(function()
                local shared = { v = 1 }
                local a = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply({ same = m.x == m.y, x = m.x.v, y = m.y.v })
                    end,
                }
                assert.are.same({ same = false, x = 1, y = 1 }, a:call({ x = shared, y = shared }, 10))
            end)
        end)

        it("carry a 10 MB string intact", function()
            run(function()
                local big = string.rep("0123456789abcdef", 640 * 1024) .. "\0end"
                local a = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply({ len = #m, tail = m:sub(-4), back = m })
                    end,
                }
                local r = a:call(big, 20)
                assert.are.equal(#big, r.len)
                assert.are.equal("\0end", r.tail)
                assert.is_true(r.back == big)
            end)
        end)

        it("refuse a value nested more than 100 levels deep", function()
            run(function()
                local deep, cur = {}, nil
                cur = deep
                for _ = 1, 150 do
                    cur.n = {}
                    cur = cur.n
                end
                local me = ms.self()
                assert_contains(error_of(me.send, me, deep), "nested too deeply")
            end)
        end)

        it("send nil as a message", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply({ is_nil = m == nil })
                    end,
                }
                assert.are.same({ is_nil = true }, a:call(nil, 10))
            end)
        end)

        it("refuse a function, naming its path", function()
            run(function()
                local me = ms.self()
                local msg = error_of(me.send, me, { handlers = { 1, function() end } })
                assert_contains(msg, "message.handlers[2] is a function")
                assert_contains(msg, "cannot be sent to another agent")
            end)
        end)

        it("refuse a coroutine, naming its path", function()
            run(function()
                local me = ms.self()
                local msg = error_of(me.send, me, { job = { co = coroutine.create(print) } })
                assert_contains(msg, "message.job.co is a thread")
            end)
        end)

        it("refuse a table with a metatable, naming its path", function()
            run(function()
                local me = ms.self()
                local msg = error_of(me.send, me, { obj = setmetatable({}, {}) })
                assert_contains(msg, "message.obj is a table with a metatable")
            end)
        end)

        it("refuse a cycle, naming its path", function()
            run(function()
                local me = ms.self()
                local loop = { inner = {} }
                loop.inner.back = loop
                local msg = error_of(me.send, me, loop)
                assert_contains(msg, "message.inner.back contains itself (a cycle)")
            end)
        end)

        it("refuse userdata that is not a handle, naming its path", function()
            run(function()
                local me = ms.self()
                assert_contains(error_of(me.send, me, { out = io.stdout }), "message.out is a userdata")
            end)
        end)

        it("refuse a table key that is not a string, number or boolean, naming its type", function()
            run(function()
                local me = ms.self()
                local msg = error_of(me.send, me, { [{}] = 1 })
                assert_contains(msg, "has a key of type table")
            end)
        end)

        it("refuse bad args at spawn time, naming the path under args", function()
            run(function()
                local msg = error_of(ms.agent.spawn, {
                    fn = function() end,
                    args = { opts = { cb = print } },
                })
                assert_contains(msg, "args.opts.cb is a function")
            end)
        end)

        it("refuse bad values in a call and a reply", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local _, reply = ms.recv(10)
                        local ok, err = pcall(reply, { f = print })
                        reply({ ok = ok, err = tostring(err) })
                    end,
                }
                assert_contains(error_of(a.call, a, { f = print }, 1), "message.f is a function")
                local r = a:call("q", 10)
                assert.is_false(r.ok)
                assert_contains(r.err, "reply.f is a function")
            end)
        end)
    end)

    describe("messages", function()
        it("arrive in the order sent, with the sender's handle", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        for i = 1, 50 do args.to:send(i) end
                    end,
                }
                for i = 1, 50 do
                    local m, from = ms.recv(10)
                    assert.are.equal(i, m)
                    assert.is_true(from == a)
                end
            end)
        end)

        -- A send never waits: without a limit on how long an agent may send
        -- in one go, a sender kept its worker until its loop ended (four
        -- senders on two workers left a collector half a million messages
        -- behind).  Sends now give the worker up every 256 in one poll, so
        -- on one worker another agent runs long before the loop ends.
        it("an agent sending in a loop lets other agents run", function()
            run(function()
                local me = ms.self()
                local sink = ms.agent.spawn {
                    fn = function()
                        while ms.recv(30) ~= "stop" do end
                    end,
                }
                ms.agent.spawn {
                    args = { sink = sink, parent = me },
                    fn = function(args)
                        args.parent:send("sender started")
                        for i = 1, 100000 do
                            if args.sink:send(i) ~= true then error("send " .. i) end
                        end
                        args.parent:send("sender done")
                    end,
                }
                -- The sender is in its loop: this agent runs again only if
                -- the sender gives the (one) worker up.
                assert.are.equal("sender started", ms.recv(60))
                ms.agent.spawn {
                    args = { parent = me },
                    fn = function(args) args.parent:send("other ran") end,
                }
                local first = ms.recv(60)
                local second = ms.recv(60)
                sink:send("stop")
                assert.are.equal("other ran", first)
                assert.are.equal("sender done", second)
            end, { worker_threads = "1" })
        end)

        it("a send deferred by the slice to an agent that exited meanwhile returns nil, err",
            function()
            run(function()
                -- It takes one message and exits; sends after that fail,
                -- deferred ones (every 257th) included.
                local target = ms.agent.spawn { fn = function() ms.recv(30) end }
                local r = ms.agent.spawn {
                    args = { t = target, parent = ms.self() },
                    fn = function(args)
                        local ok_n, failed, bad = 0, 0, nil
                        for i = 1, 3000 do
                            local ok, err = args.t:send(i)
                            if ok == true then
                                ok_n = ok_n + 1
                            elseif ok == nil and tostring(err):find("has exited", 1, true) then
                                failed = failed + 1
                            else
                                bad = tostring(ok) .. " " .. tostring(err)
                            end
                        end
                        args.parent:send({ ok = ok_n, failed = failed, bad = bad })
                    end,
                }
                local m = ms.recv(60)
                assert.is_nil(m.bad)
                assert.are.equal(3000, m.ok + m.failed)
                assert.is_true(m.failed >= 2000, "failed: " .. m.failed)
            end)
        end)

        it("sends from a coroutine of the agent's code and from a sort comparator all count",
            function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        -- Inside coroutine.wrap: a yield of the send would end
                        -- the wrap early; it must not happen.
                        local sent = 0
                        local co = coroutine.wrap(function()
                            for i = 1, 2000 do
                                if args.to:send(i) ~= true then error("send " .. i) end
                                sent = sent + 1
                            end
                            return "done"
                        end)
                        if co() ~= "done" or sent ~= 2000 then error("wrap ended early at " .. sent) end
                        -- A comparator cannot yield at all.
                        local t = {}
                        for i = 1, 64 do t[i] = 65 - i end
                        local n = 2000
                        table.sort(t, function(x, y)
                            if n < 4000 then
                                n = n + 1
                                if args.to:send(n) ~= true then error("send " .. n) end
                            end
                            return x < y
                        end)
                        args.to:send("end")
                    end,
                }
                local got = 0
                while true do
                    local m = ms.recv(30)
                    if m == "end" then break end
                    got = got + 1
                    assert.are.equal(got, m)
                end
                assert.is_true(got > 2000)
            end)
        end)

        it("a:send returns true; ms.recv returns the message and the sender", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local m, from = ms.recv(10)
                        from:send({ echo = m })
                    end,
                }
                assert.is_true(a:send("hello"))
                local m, from = ms.recv(10)
                assert.are.same({ echo = "hello" }, m)
                assert.is_true(from == a)
            end)
        end)

        it("ms.recv with a timeout returns nil, \"timeout\" on an empty mailbox", function()
            run(function()
                local start = ms.now()
                local m, err = ms.recv(0.05)
                assert.is_nil(m)
                assert.are.equal("timeout", err)
                assert.is_true(ms.now() - start >= 0.05)
            end)
        end)

        it("ms.recv refuses a negative timeout, naming the argument", function()
            run(function()
                assert_contains(error_of(function()
                    local m = ms.recv(-1)
                    return m
                end), "bad argument #1 to 'recv'")
            end)
        end)

        it("only one task of an agent receives at a time", function()
            run(function()
                local t = ms.spawn(function() return ms.recv(60) end)
                ms.yield()
                local msg = error_of(function()
                    local m = ms.recv(0.01)
                    return m
                end)
                assert_contains(msg, "already receiving")
                ms.self():send("done")
                local ok, m = t:join(20)
                assert.are.same({ true, "done" }, { ok, m })
            end)
        end)

        it("sending to an exited agent returns nil and an error naming it", function()
            run(function()
                local a = ms.agent.spawn { name = "gone", fn = function() end }
                ms.monitor(a)
                await_exit(a)
                local ok, err = a:send("anyone?")
                assert.is_nil(ok)
                assert.are.equal("table", type(err))
                assert_contains(err.message, "gone")
                assert_contains(err.message, "exited")
            end)
        end)

        it("left unread when an agent exits are counted in its exit notice", function()
            run(function()
                local a = ms.agent.spawn { fn = function() ms.sleep(0.2) end }
                ms.monitor(a)
                a:send(1)
                a:send(2)
                a:send(3)
                assert.are.equal(3, await_exit(a).unread)
            end)
        end)
    end)

    describe("call and reply", function()
        it("a:call returns the reply's value; reply returns true", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        local req, reply = ms.recv(10)
                        local answered = reply({ sum = req.a + req.b })
                        args.to:send({ answered = answered })
                    end,
                }
                assert.are.same({ sum = 5 }, a:call({ a = 2, b = 3 }, 10))
                assert.are.same({ answered = true }, (ms.recv(10)))
            end)
        end)

        it("a second reply is ignored and returns false", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        local _, reply = ms.recv(10)
                        reply("first")
                        args.to:send({ second = reply("second") })
                    end,
                }
                assert.are.equal("first", a:call("q", 10))
                assert.are.same({ second = false }, (ms.recv(10)))
            end)
        end)

        it("a reply of nil arrives as nil, not as an error", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local _, reply = ms.recv(10)
                        reply(nil)
                    end,
                }
                local v, err = a:call("q", 10)
                assert.is_nil(v)
                assert.is_nil(err)
            end)
        end)

        it("times out with nil, \"timeout\" when no reply comes in time", function()
            run(function()
                local a = ms.agent.spawn { fn = function() ms.recv(10) ms.sleep(10) end }
                local start = ms.now()
                local v, err = a:call("slow", 0.05)
                assert.is_nil(v)
                assert.are.equal("timeout", err)
                assert.is_true(ms.now() - start >= 0.05)
                a:stop()
            end)
        end)

        it("a late reply after the caller timed out returns false", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        local _, reply = ms.recv(10)
                        ms.sleep(0.2)
                        args.to:send({ late = reply("late") })
                    end,
                }
                assert.are.same({ nil, "timeout" }, { a:call("q", 0.02) })
                local m = ms.recv(10)
                assert.are.same({ late = false }, m)
            end)
        end)

        it("returns nil, \"no reply...\" when the reply handle is dropped unanswered", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local _, reply = ms.recv(10)
                        reply = nil
                        collectgarbage()
                        collectgarbage()
                        ms.recv(10)
                    end,
                }
                local v, err = a:call("ignored", 10)
                assert.is_nil(v)
                assert_contains(err, "no reply")
                a:stop()
            end)
        end)

        it("returns nil, \"no reply...\" when the callee exits without answering", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        ms.recv(10)
                        error("crashed while handling")
                    end,
                }
                local v, err = a:call("q", 10)
                assert.is_nil(v)
                assert_contains(err, "no reply")
            end)
        end)

        it("to an exited agent returns nil and an error", function()
            run(function()
                local a = ms.agent.spawn { fn = function() end }
                ms.monitor(a)
                await_exit(a)
                local v, err = a:call("q", 1)
                assert.is_nil(v)
                assert_contains(err.message, "exited")
            end)
        end)

        it("an agent cannot call itself", function()
            run(function()
                assert_contains(error_of(function()
                    local me = ms.self()
                    local r = me:call("me?", 1)
                    return r
                end), "cannot call itself")
            end)
        end)

        it("a reply handle can be passed on and answered by another agent", function()
            run(function()
                local worker = ms.agent.spawn {
                    fn = function()
                        local job = ms.recv(10)
                        job.reply("answered by the worker: " .. job.q)
                    end,
                }
                local front = ms.agent.spawn {
                    args = { worker = worker },
                    fn = function(args)
                        local q, reply = ms.recv(10)
                        args.worker:send({ q = q, reply = reply })
                    end,
                }
                assert.are.equal("answered by the worker: x", front:call("x", 10))
            end)
        end)
    end)

    describe("monitors and exit reasons", function()
        it("an agent whose function returns exits \"normal\"", function()
            run(function()
                local a = ms.agent.spawn { name = "quick", fn = function() ms.sleep(0.01) end }
                ms.monitor(a)
                local ex = await_exit(a)
                assert.are.equal("exit", ex.event)
                assert.is_true(ex.agent == a)
                assert.are.equal("quick", ex.name)
                assert.are.equal("normal", ex.reason)
                assert.are.equal(0, ex.unread)
                assert.is_nil(ex.message)
            end)
        end)

        it("an agent that raises exits \"error\" with the message and a traceback", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local function explode() error("kaboom") end
                        explode()
                    end,
                }
                ms.monitor(a)
                local ex = await_exit(a)
                assert.are.equal("error", ex.reason)
                assert_contains(ex.message, "kaboom")
                assert_contains(ex.traceback, "stack traceback")
                assert_contains(ex.traceback, "explode")
            end)
        end)

        it("a:stop() makes the agent exit \"killed\", with the reason given", function()
            run(function()
                local a = ms.agent.spawn { fn = function() ms.sleep(30) end }
                local b = ms.agent.spawn { fn = function() ms.recv(30) end }
                ms.monitor(a)
                ms.monitor(b)
                ms.sleep(0.02)
                a:stop()
                b:stop("shutting down the shop")
                local ea, eb = await_exit(a), await_exit(b)
                assert.are.equal("killed", ea.reason)
                assert.are.equal("killed", eb.reason)
                assert_contains(eb.message, "shutting down the shop")
                assert.are.equal("exited", a:info().state)
                assert.are.equal("killed", a:info().exit_reason)
            end)
        end)

        it("an agent past its memory_limit exits \"oom\"", function()
            run(function()
                local a = ms.agent.spawn {
                    memory_limit = 1e6,
                    fn = function()
                        local t = {}
                        for i = 1, 1e7 do t[i] = { i } end
                    end,
                }
                ms.monitor(a)
                local ex = await_exit(a)
                assert.are.equal("oom", ex.reason)
                assert_contains(ex.message, "memory")
            end)
        end)

        it("an agent whose memory_limit is too small to start exits \"oom\"", function()
            run(function()
                local a = ms.agent.spawn { memory_limit = 16384, fn = function() end }
                ms.monitor(a)
                local ex = await_exit(a)
                assert_contains(ex.message, "memory")
                assert.are.equal("oom", ex.reason)
            end)
        end)

        it("an agent ends \"normal\" when its main function returns, aborting its other tasks", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        ms.spawn(function() ms.sleep(3600) end)
                        ms.sleep(0.01)
                    end,
                }
                ms.monitor(a)
                -- Waiting for the hour-long sleep would miss this deadline.
                assert.are.equal("normal", await_exit(a, 30).reason)
            end)
        end)

        it("a:stop() right after spawn stops the agent", function()
            run(function()
                local a = ms.agent.spawn { fn = function() ms.sleep(3600) end }
                a:stop()
                ms.monitor(a)
                assert.are.equal("killed", await_exit(a, 30).reason)
            end)
        end)

        it("stopping the main agent makes ms.run return nil and an error with the reason", function()
            local ok, err = ms.run(function()
                ms.agent.spawn { args = ms.self(), fn = function(main) main:stop("stopped by a child") end }
                ms.sleep(10)
                error("not reached")
            end, { worker_threads = "2" })
            assert.is_nil(ok)
            assert.are.equal("TaskCancelled", err.code)
            assert_contains(err.message, "stopped by a child")
        end)

        it("a failed task inside an agent does not end the agent", function()
            run(function()
                local a = ms.agent.spawn {
                    fn = function()
                        local t = ms.spawn(function() error("sub-task failure") end)
                        local ok = t:join()
                        local _, reply = ms.recv(10)
                        reply({ joined_ok = ok == true })
                    end,
                }
                ms.monitor(a)
                assert.are.same({ joined_ok = false }, a:call("alive?", 10))
                assert.are.equal("normal", await_exit(a).reason)
            end)
        end)

        it("monitoring an agent that already exited delivers the notice at once", function()
            run(function()
                local a = ms.agent.spawn { fn = function() end }
                ms.monitor(a)
                await_exit(a)
                ms.monitor(a)
                local ex = await_exit(a, 1)
                assert.are.equal("normal", ex.reason)
            end)
        end)

        it("every monitor hears about the exit", function()
            run(function()
                local target = ms.agent.spawn { fn = function() ms.recv(10) end }
                local watchers = {}
                for i = 1, 3 do
                    watchers[i] = ms.agent.spawn {
                        args = { target = target, to = ms.self(), i = i },
                        fn = function(args)
                            ms.monitor(args.target)
                            args.to:send({ ready = args.i })
                            local ex = ms.recv(10)
                            args.to:send({ watcher = args.i, reason = ex and ex.reason })
                        end,
                    }
                end
                for _ = 1, 3 do assert.is_truthy((ms.recv(10)).ready) end
                target:stop()
                local heard = {}
                for _ = 1, 3 do
                    local m = ms.recv(10)
                    heard[m.watcher] = m.reason
                end
                assert.are.same({ "killed", "killed", "killed" }, heard)
            end)
        end)

        it("a crashing agent does not disturb the others", function()
            run(function()
                local steady = ms.agent.spawn {
                    fn = function()
                        local n = 0
                        while true do
                            local m, reply = ms.recv(10)
                            if m == "stop" then return end
                            n = n + 1
                            reply(n)
                        end
                    end,
                }
                for i = 1, 20 do
                    local c = ms.agent.spawn { fn = function() error("crash") end }
                    ms.monitor(c)
                    assert.are.equal(i, steady:call("count", 10))
                    assert.are.equal("error", await_exit(c).reason)
                end
                ms.monitor(steady)
                steady:send("stop")
                assert.are.equal("normal", await_exit(steady).reason)
            end)
        end)
    end)

    describe("identity and names", function()
        it("a named agent is found by ms.agent.whereis; an unknown name gives nil", function()
            run(function()
                local a = ms.agent.spawn { name = "registry-test", fn = function() ms.recv(10) end }
                local found = ms.agent.whereis("registry-test")
                assert.is_true(found == a)
                assert.is_nil(ms.agent.whereis("nobody-has-this-name"))
                a:stop()
            end)
        end)

        it("whereis needs a name", function()
            run(function()
                assert_contains(error_of(function()
                    local a = ms.agent.whereis()
                    return a
                end), "bad argument #1 to 'whereis'")
                assert.is_nil(ms.agent.whereis(""))
            end)
        end)

        it("monitor needs an agent handle", function()
            run(function()
                assert_contains(error_of(function()
                    local r = ms.monitor("main")
                    return r
                end), "bad argument #1 to 'monitor' (ms.agent expected")
            end)
        end)

        it("an unnamed agent is called agent-<id>", function()
            run(function()
                local a = ms.agent.spawn { fn = function() ms.recv(10) end }
                assert.are.equal("agent-" .. a:id(), a:name())
                a:stop()
            end)
        end)

        it("a duplicate name is refused, naming the holder", function()
            run(function()
                local a = ms.agent.spawn { name = "only-one", fn = function() ms.recv(10) end }
                local msg = error_of(ms.agent.spawn, { name = "only-one", fn = function() end })
                assert_contains(msg, "'only-one' is taken by agent " .. a:id())
                a:stop()
            end)
        end)

        it("after its exit notice arrives, an agent's name is free again", function()
            run(function()
                for _ = 1, 50 do
                    local a = ms.agent.spawn { name = "restartable", fn = function() ms.recv(10) end }
                    ms.monitor(a)
                    a:stop()
                    await_exit(a)
                    assert.is_nil(ms.agent.whereis("restartable"))
                end
            end)
        end)

        it("handles are equal (==) when they refer to the same agent", function()
            run(function()
                local a = ms.agent.spawn {
                    args = { to = ms.self() },
                    fn = function(args)
                        args.to:send({ me = ms.self(), parent = args.to })
                        ms.recv(10)
                    end,
                }
                local b = ms.agent.spawn { fn = function() ms.recv(10) end }
                local m = ms.recv(10)
                assert.is_true(m.me == a)
                assert.is_true(m.parent == ms.self())
                assert.is_false(a == b)
                assert.is_false(a == ms.self())
                a:stop()
                b:stop()
            end)
        end)

        it("id, name, tostring and info describe the agent", function()
            run(function()
                local a = ms.agent.spawn {
                    name = "described", memory_limit = 4e6,
                    fn = function() ms.recv(30) end,
                }
                -- Wait (up to 20 s, a hang guard) until it has run and waits.
                local deadline = ms.now() + 20
                while a:info().polls < 1 and ms.now() < deadline do ms.sleep(0.005) end
                assert.are.equal("number", type(a:id()))
                assert.are.equal("described", a:name())
                assert.are.equal("ms.agent(" .. a:id() .. " described)", tostring(a))
                local info = a:info()
                assert.are.equal(a:id(), info.id)
                assert.are.equal("described", info.name)
                assert.are.equal("running", info.state)
                assert.are.equal(0, info.mailbox)
                assert.are.equal(0, info.received)
                assert.are.equal(4e6, info.memory_limit)
                assert.is_true(info.memory > 0 and info.memory <= 4e6)
                assert.is_true(info.polls >= 1)
                assert.is_nil(info.exit_reason)
                a:send("x")
                while a:info().received < 1 and ms.now() < deadline + 20 do ms.sleep(0.005) end
                assert.are.equal(1, a:info().received)
            end)
        end)

        it("ms.self() in ms.run is the agent named main", function()
            run(function()
                assert.are.equal("main", ms.self():name())
                assert.are.equal("running", ms.self():info().state)
            end)
        end)

        it("ms.agents lists every live agent with its info", function()
            run(function()
                local names = { "lister-a", "lister-b", "lister-c" }
                local agents = {}
                for i, n in ipairs(names) do
                    agents[i] = ms.agent.spawn { name = n, fn = function() ms.recv(10) end }
                end
                ms.sleep(0.02)
                local listed = {}
                for _, info in ipairs(ms.agents()) do
                    assert.are.equal("number", type(info.id))
                    assert.are.equal("string", type(info.state))
                    listed[info.name] = info
                end
                assert.is_truthy(listed.main)
                for i, n in ipairs(names) do
                    assert.is_truthy(listed[n], n .. " missing from ms.agents()")
                    assert.are.equal(agents[i]:id(), listed[n].id)
                end
                for _, a in ipairs(agents) do a:stop() end
            end)
        end)

        it("ms.agents is empty outside ms.run", function()
            assert.are.same({}, ms.agents())
        end)
    end)

    describe("handles crossing agents", function()
        it("a semaphore passed in args limits concurrency across agents", function()
            run(function()
                local sem, events, gate = ms.semaphore(2), ms.channel(), ms.channel()
                local n = 6
                for i = 1, n do
                    ms.agent.spawn {
                        args = { sem = sem, events = events, gate = gate, i = i },
                        fn = function(args)
                            local permit = args.sem:acquire()
                            args.events:send("in")
                            args.gate:recv(10)      -- hold the permit until the gate opens
                            args.events:send("out")
                            permit:release()
                        end,
                    }
                end
                -- Two agents get in; the other four wait for a permit.
                assert.are.equal("in", events:recv(10))
                assert.are.equal("in", events:recv(10))
                assert.are.same({ nil, "timeout" }, { events:recv(0.2) })
                assert.are.equal(0, sem:available())
                for _ = 1, n do gate:send(true) end
                -- An agent sends "out" before it releases, and the next one
                -- sends "in" after it acquires: in the channel's order no more
                -- than two are ever inside.
                local inside, most = 2, 2
                for _ = 1, 2 * n - 2 do
                    local e = assert(events:recv(10))
                    inside = inside + (e == "in" and 1 or -1)
                    most = math.max(most, inside)
                end
                assert.are.equal(0, inside)
                assert.are.equal(2, most)
                local deadline = ms.now() + 5
                while sem:available() < 2 and ms.now() < deadline do ms.sleep(0.01) end
                assert.are.equal(2, sem:available())
            end)
        end)

        it("a channel passed in args carries values between two agents", function()
            run(function()
                local ch = ms.channel(4)
                ms.agent.spawn {
                    args = { ch = ch },
                    fn = function(args)
                        for i = 1, 100 do args.ch:send({ i = i }) end
                        args.ch:close()
                    end,
                }
                local consumer = ms.agent.spawn {
                    args = { ch = ch, to = ms.self() },
                    fn = function(args)
                        local sum, count, ordered, last = 0, 0, true, 0
                        while true do
                            local v = args.ch:recv(10)
                            if v == nil then break end
                            sum, count = sum + v.i, count + 1
                            ordered = ordered and v.i == last + 1
                            last = v.i
                        end
                        args.to:send({ sum = sum, count = count, ordered = ordered })
                    end,
                }
                local m, from = ms.recv(10)
                assert.is_true(from == consumer)
                assert.are.same({ sum = 5050, count = 100, ordered = true }, m)
            end)
        end)

        it("an agent handle in a message can be used by the receiver", function()
            run(function()
                local echo = ms.agent.spawn {
                    fn = function()
                        while true do
                            local m, reply = ms.recv(10)
                            if not reply then return end
                            reply("echo:" .. m)
                        end
                    end,
                }
                local middle = ms.agent.spawn {
                    fn = function()
                        local m, reply = ms.recv(10)
                        reply(m.target:call(m.text, 10))
                    end,
                }
                assert.are.equal("echo:hi", middle:call({ target = echo, text = "hi" }, 10))
                echo:stop()
            end)
        end)
    end)

    describe("many agents", function()
        it("1,000 agents each message back once and every message arrives", function()
            run(function()
                local me = ms.self()
                local n = 1000
                for i = 1, n do
                    ms.agent.spawn { args = { i = i, to = me }, fn = function(a) a.to:send(a.i) end }
                end
                local seen, count = {}, 0
                while count < n do
                    local v = ms.recv(20)
                    assert(v, "only " .. count .. " of " .. n .. " messages arrived")
                    assert(not seen[v], "message " .. tostring(v) .. " arrived twice")
                    seen[v] = true
                    count = count + 1
                end
                assert.are.equal(n, count)
            end)
        end)

        it("1,000 agents each answer a call", function()
            run(function()
                local agents = {}
                for i = 1, 1000 do
                    agents[i] = ms.agent.spawn {
                        args = i,
                        fn = function(i)
                            local m, reply = ms.recv(20)
                            reply(m + i)
                        end,
                    }
                end
                for i = 1, 1000 do
                    assert.are.equal(2 * i, agents[i]:call(i, 20))
                end
            end)
        end)
    end)
end)

describe("ms.version", function()
    it("is the version string, the same in every agent and in ms-host --version", function()
        assert.are.equal("string", type(ms.version))
        assert.is_truthy(ms.version:match("^%d+%.%d+%.%d+$"), ms.version)
        run(function()
            local out = ms.channel()
            ms.agent.spawn { args = { out = out }, fn = function(args) args.out:send(ms.version) end }
            assert.are.equal(ms.version, out:recv(20))
        end)
        local p = io.popen(("%q --version 2>&1"):format(h.host))
        local text = p:read("*a")
        p:close()
        assert.are.equal(ms.version, text:match("^ms%-host (%d+%.%d+%.%d+) "), text)
    end)
end)
