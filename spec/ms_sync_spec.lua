-- Specs for the shared synchronisation handles: ms.semaphore (permits,
-- waiting in order, timeouts, close, permits returned by the collector)
-- and ms.channel (bounded back-pressure, unbounded queues, close and
-- drain, timeouts, values crossing agents).
--
-- Run from the repository root (LUA_CPATH must reach build/agents/ms.so):
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/ms_sync_spec.lua

local ms = require "ms"

local h = require "spec.support.helpers"
local run, contains, assert_contains, error_of = h.run, h.contains, h.assert_contains, h.error_of

-- Yields until cond() is true or `timeout` seconds pass.
local function wait_until(cond, timeout)
    local deadline = ms.now() + (timeout or 5)
    while not cond() do
        assert(ms.now() < deadline, "condition not met in time")
        ms.sleep(0.002)
    end
end

describe("ms.semaphore", function()
    it("starts with the permits given and counts them as they are taken and released", function()
        run(function()
            local s = ms.semaphore(3)
            assert.are.equal(3, s:available())
            local p1 = s:acquire()
            local p2 = s:acquire(2)
            assert.are.equal(1, p1:count())
            assert.are.equal(2, p2:count())
            assert.are.equal(0, s:available())
            p2:release()
            assert.are.equal(2, s:available())
            p1:release()
            assert.are.equal(3, s:available())
        end)
    end)

    it("releasing a permit twice gives the permits back once", function()
        run(function()
            local s = ms.semaphore(1)
            local p = s:acquire()
            p:release()
            p:release()
            assert.are.equal(1, s:available())
            assert.are.equal(0, p:count())
        end)
    end)

    it("wakes waiters in the order they began waiting", function()
        run(function()
            local s = ms.semaphore(0)
            local order = {}
            local tasks = {}
            for i = 1, 5 do
                tasks[i] = ms.spawn(function()
                    local p = s:acquire()
                    order[#order + 1] = i
                    p:release()
                end)
                ms.yield()
            end
            s:add_permits(1)
            for _, t in ipairs(tasks) do t:join(5) end
            assert.are.same({ 1, 2, 3, 4, 5 }, order)
        end)
    end)

    it("does not let a later, smaller request overtake a waiter for more permits", function()
        run(function()
            local s = ms.semaphore(0)
            local order = {}
            local big = ms.spawn(function()
                local p = s:acquire(2)
                order[#order + 1] = "big"
                return p
            end)
            ms.yield()
            local small = ms.spawn(function()
                local p = s:acquire(1)
                order[#order + 1] = "small"
                return p
            end)
            ms.yield()
            s:add_permits(1)
            ms.sleep(0.05)
            assert.are.same({}, order)
            s:add_permits(2)
            big:join(5)
            small:join(5)
            assert.are.same({ "big", "small" }, order)
        end)
    end)

    it("acquire with a timeout returns nil, \"timeout\" and leaves the count alone", function()
        run(function()
            local s = ms.semaphore(1)
            local held = s:acquire()
            local start = ms.now()
            local p, err = s:acquire(1, 0.05)
            assert.is_nil(p)
            assert.are.equal("timeout", err)
            assert.is_true(ms.now() - start >= 0.05)
            held:release()
            assert.are.equal(1, s:available())
            -- The timed-out waiter is gone: the permit goes to the next one.
            local again = s:acquire(1, 1)
            assert.is_truthy(again)
        end)
    end)

    it("acquire with a timeout succeeds when a permit comes in time", function()
        run(function()
            local s = ms.semaphore(0)
            ms.spawn(function()
                ms.sleep(0.02)
                s:add_permits(1)
            end)
            local p = s:acquire(1, 5)
            assert.is_truthy(p)
            assert.are.equal(1, p:count())
        end)
    end)

    it("a waiter that times out gives back the permits it had been assigned", function()
        run(function()
            local s = ms.semaphore(0)
            local w = ms.spawn(function() return s:acquire(2, 0.1) end)
            ms.yield()
            s:add_permits(1)   -- goes to the waiter, which still needs one more
            assert.are.same({ true, nil, "timeout" }, { w:join(5) })
            assert.are.equal(1, s:available())
        end)
    end)

    it("keeps its count whole under contention with timeouts, across agents", function()
        run(function()
            local s, done = ms.semaphore(2), ms.channel()
            for i = 1, 6 do
                ms.agent.spawn {
                    args = { s = s, done = done, i = i },
                    fn = function(args)
                        for k = 1, 200 do
                            local p = args.s:acquire(1 + k % 2, 0.0005 * (args.i % 3))
                            if p then
                                if k % 3 == 0 then ms.yield() end
                                p:release()
                            end
                        end
                        args.done:send(true)
                    end,
                }
            end
            for _ = 1, 6 do assert(done:recv(20), "an agent did not finish") end
            assert.are.equal(2, s:available())
        end)
    end)

    it("try_acquire returns a permit, or nil, \"unavailable\" without waiting", function()
        run(function()
            local s = ms.semaphore(2)
            local p = s:try_acquire(2)
            assert.is_truthy(p)
            assert.are.equal(2, p:count())
            local none, why = s:try_acquire()
            assert.is_nil(none)
            assert.are.equal("unavailable", why)
            p:release()
            assert.is_truthy(s:try_acquire())
        end)
    end)

    it("try_acquire works outside ms.run (it never waits)", function()
        local s = ms.semaphore(1)
        local p = s:try_acquire()
        assert.is_truthy(p)
        assert.are.equal(0, s:available())
        p:release()
        assert.are.equal(1, s:available())
    end)

    it("close wakes every waiter with nil and an error value", function()
        run(function()
            local s = ms.semaphore(0)
            local waiters = {}
            for i = 1, 3 do
                waiters[i] = ms.spawn(function() return s:acquire() end)
            end
            ms.yield()
            s:close()
            for i = 1, 3 do
                local ok, p, err = waiters[i]:join(5)
                assert.is_true(ok)
                assert.is_nil(p)
                assert.are.equal("table", type(err))
                assert.are.equal("Closed", err.code)
                assert_contains(err.message, "closed")
            end
        end)
    end)

    it("once closed, acquire fails at once and try_acquire says \"closed\"", function()
        run(function()
            local s = ms.semaphore(5)
            s:close()
            local p, err = s:acquire()
            assert.is_nil(p)
            assert_contains(err.message, "closed")
            local q, why = s:try_acquire()
            assert.is_nil(q)
            assert.are.equal("closed", why)
        end)
    end)

    it("gives a permit back when it is collected without a release", function()
        run(function()
            local s = ms.semaphore(2)
            local p = s:acquire(2)
            assert.are.equal(0, s:available())
            p = nil -- luacheck: ignore
            collectgarbage()
            collectgarbage()
            assert.are.equal(2, s:available())
        end)
    end)

    it("a collected permit wakes a waiter", function()
        run(function()
            local s = ms.semaphore(1)
            local holder = { p = s:acquire() }
            local waiter = ms.spawn(function() return s:acquire(1, 5) ~= nil end)
            ms.yield()
            holder.p = nil
            collectgarbage()
            collectgarbage()
            assert.are.same({ true, true }, { waiter:join(5) })
        end)
    end)

    it("add_permits adds, forget removes what is available and says how many", function()
        run(function()
            local s = ms.semaphore(1)
            s:add_permits(4)
            assert.are.equal(5, s:available())
            assert.are.equal(3, s:forget(3))
            assert.are.equal(2, s:available())
            assert.are.equal(2, s:forget(10))
            assert.are.equal(0, s:available())
            assert.are.equal(0, s:forget(1))
        end)
    end)

    it("forget does not take permits that are held", function()
        run(function()
            local s = ms.semaphore(2)
            local p = s:acquire()
            assert.are.equal(1, s:forget(2))
            p:release()
            assert.are.equal(1, s:available())
        end)
    end)

    it("describes itself with tostring", function()
        assert.are.equal("ms.semaphore(3 available)", tostring(ms.semaphore(3)))
    end)

    it("refuses bad permit counts, naming the argument", function()
        run(function()
            local s = ms.semaphore(1)
            assert_contains(error_of(ms.semaphore, -1), "permits must be a whole number >= 0")
            assert_contains(error_of(ms.semaphore, 1.5), "permits must be a whole number >= 0")
            assert_contains(error_of(ms.semaphore, "many"), "number expected")
            assert_contains(error_of(function()
                local p = s:acquire(0)
                return p
            end), "bad argument #1 to 'acquire' (permits must be a whole number >= 1)")
            assert_contains(error_of(function()
                local p = s:acquire(1, -1)
                return p
            end), "bad argument #2 to 'acquire' (timeout must be a number of seconds >= 0)")
            assert_contains(error_of(function()
                local p = s:try_acquire(2.5)
                return p
            end), "permits must be a whole number >= 1")
            assert_contains(error_of(function()
                local r = s:add_permits(-1)
                return r
            end), "bad argument #1 to 'add_permits'")
            assert_contains(error_of(function()
                local r = s:forget(-1)
                return r
            end), "bad argument #1 to 'forget'")
        end)
    end)

    it("refuses to grow past its maximum", function()
        run(function()
            local s = ms.semaphore(1)
            assert_contains(error_of(s.add_permits, s, 2 ^ 62), "too many permits")
        end)
    end)

    it("a request for more permits than exist waits, and can time out", function()
        run(function()
            local s = ms.semaphore(1)
            local p, err = s:acquire(5, 0.05)
            assert.is_nil(p)
            assert.are.equal("timeout", err)
        end)
    end)
end)

describe("ms.channel", function()
    it("delivers values in the order sent", function()
        run(function()
            local c = ms.channel(0)
            for i = 1, 100 do assert.is_true(c:send(i)) end
            for i = 1, 100 do assert.are.equal(i, c:recv()) end
        end)
    end)

    it("copies tables: the receiver gets an equal, separate table", function()
        run(function()
            local c = ms.channel()
            local v = { a = { 1, 2, 3 }, s = "x\0y" }
            c:send(v)
            local got = c:recv()
            assert.are.same(v, got)
            assert.are_not.equal(v, got)
        end)
    end)

    it("bounded: a sender waits while the channel is full, until a recv makes room", function()
        run(function()
            local c = ms.channel(1)
            local sent = 0
            local sender = ms.spawn(function()
                for i = 1, 3 do
                    c:send(i)
                    sent = i
                end
            end)
            ms.sleep(0.05)
            assert.are.equal(1, sent)
            assert.are.equal(1, c:len())
            assert.are.equal("waiting", sender:status())
            assert.are.equal(1, c:recv())
            wait_until(function() return sent == 2 end)
            assert.are.equal(2, c:recv())
            assert.are.equal(3, c:recv())
            assert.is_true((sender:join(5)))
            assert.are.equal(3, sent)
        end)
    end)

    it("bounded: send with a timeout on a full channel returns nil, \"timeout\" and sends nothing", function()
        run(function()
            local c = ms.channel(1)
            assert.is_true(c:send("first"))
            local ok, err = c:send("second", 0.05)
            assert.is_nil(ok)
            assert.are.equal("timeout", err)
            assert.are.equal(1, c:len())
            assert.are.equal("first", c:recv())
            local v, why = c:recv(0.02)
            assert.is_nil(v)
            assert.are.equal("timeout", why)
        end)
    end)

    it("unbounded (capacity 0 or none): sends never wait", function()
        run(function()
            for _, c in ipairs({ ms.channel(), ms.channel(0) }) do
                for i = 1, 1000 do assert.is_true(c:try_send(i)) end
                assert.are.equal(1000, c:len())
            end
        end)
    end)

    it("try_send says \"full\", try_recv says \"empty\"", function()
        run(function()
            local c = ms.channel(1)
            assert.is_true(c:try_send(1))
            assert.are.same({ nil, "full" }, { c:try_send(2) })
            assert.are.equal(1, c:try_recv())
            assert.are.same({ nil, "empty" }, { c:try_recv() })
        end)
    end)

    it("try_send and try_recv work outside ms.run", function()
        local c = ms.channel(2)
        assert.is_true(c:try_send("a"))
        assert.are.equal("a", c:try_recv())
    end)

    it("recv with a timeout returns nil, \"timeout\" on an empty channel", function()
        run(function()
            local c = ms.channel()
            local start = ms.now()
            local v, err = c:recv(0.05)
            assert.is_nil(v)
            assert.are.equal("timeout", err)
            assert.is_true(ms.now() - start >= 0.05)
        end)
    end)

    it("close lets the receiver drain what was sent, then recv says \"closed\"", function()
        run(function()
            local c = ms.channel(4)
            c:send(1)
            c:send(2)
            c:send(3)
            c:close()
            assert.are.equal(1, c:recv())
            assert.are.equal(2, c:recv())
            assert.are.equal(3, c:recv())
            assert.are.same({ nil, "closed" }, { c:recv() })
            assert.are.same({ nil, "closed" }, { c:recv(1) })
            assert.are.same({ nil, "closed" }, { c:try_recv() })
        end)
    end)

    it("close wakes a waiting receiver with nil, \"closed\"", function()
        run(function()
            local c = ms.channel()
            local r = ms.spawn(function() return c:recv() end)
            ms.yield()
            assert.are.equal("waiting", r:status())
            c:close()
            assert.are.same({ true, nil, "closed" }, { r:join(5) })
        end)
    end)

    it("close wakes a waiting sender with nil and an error; its value is not delivered", function()
        run(function()
            local c = ms.channel(1)
            c:send("queued")
            local s = ms.spawn(function() return c:send("blocked") end)
            ms.yield()
            c:close()
            local ok, sent, err = s:join(5)
            assert.is_true(ok)
            assert.is_nil(sent)
            assert.are.equal("table", type(err))
            assert_contains(err.message, "closed")
            assert.are.equal("queued", c:recv())
            assert.are.same({ nil, "closed" }, { c:recv() })
        end)
    end)

    it("send on a closed channel returns nil and an error; try_send says \"closed\"", function()
        run(function()
            local c = ms.channel()
            c:close()
            local ok, err = c:send(1)
            assert.is_nil(ok)
            assert.are.equal("Closed", err.code)
            assert.are.same({ nil, "closed" }, { c:try_send(1) })
        end)
    end)

    it("carries values between agents, with back-pressure on a bounded channel", function()
        run(function()
            local c = ms.channel(2)
            local producer = ms.agent.spawn {
                args = { c = c },
                fn = function(args)
                    for i = 1, 50 do args.c:send({ n = i, sq = i * i }) end
                    args.c:close()
                end,
            }
            ms.monitor(producer)
            ms.sleep(0.05)
            assert.is_true(c:len() <= 2)
            local n = 0
            while true do
                local v = c:recv(10)
                if v == nil then break end
                n = n + 1
                assert.are.same({ n = n, sq = n * n }, v)
            end
            assert.are.equal(50, n)
            local ex = ms.recv(10)
            assert.are.equal("normal", ex.reason)
        end)
    end)

    it("carries handles: a semaphore sent on a channel is the same semaphore", function()
        run(function()
            local c, s = ms.channel(), ms.semaphore(3)
            local a = ms.agent.spawn {
                args = { c = c },
                fn = function(args)
                    local sem = args.c:recv(10)
                    local p = sem:acquire(2)
                    local _, reply = ms.recv(10)
                    reply(sem:available())
                    ms.recv(10)
                    p:release()
                end,
            }
            c:send(s)
            assert.are.equal(1, a:call("how many?", 10))
            assert.are.equal(1, s:available())
            a:send("release")
            wait_until(function() return s:available() == 3 end)
        end)
    end)

    it("many producers and consumers in different agents lose and duplicate nothing", function()
        run(function()
            local work, done = ms.channel(8), ms.channel()
            for p = 1, 4 do
                ms.agent.spawn {
                    args = { work = work, p = p },
                    fn = function(args)
                        for i = 1, 100 do args.work:send(args.p * 1000 + i) end
                    end,
                }
            end
            for _ = 1, 3 do
                ms.agent.spawn {
                    args = { work = work, done = done },
                    fn = function(args)
                        while true do
                            local v = args.work:recv()
                            if v == nil then return end
                            args.done:send(v)
                        end
                    end,
                }
            end
            local seen = {}
            for _ = 1, 400 do
                local v = assert(done:recv(10), "a value went missing")
                assert(not seen[v], "duplicate " .. v)
                seen[v] = true
            end
            work:close()
        end)
    end)

    it("loses and duplicates nothing when sends and receives keep timing out", function()
        run(function()
            for _, cap in ipairs({ 0, 1, 4 }) do
                local c, n = ms.channel(cap), 2000
                ms.agent.spawn {
                    args = { c = c, n = n },
                    fn = function(args)
                        for i = 1, args.n do
                            repeat until args.c:send(i, 0.0003)
                            if i % 50 == 0 then ms.sleep(0.0005) end
                        end
                        args.c:close()
                    end,
                }
                local got, sum = 0, 0
                while true do
                    local v, err = c:recv(0.0002)
                    if v then
                        got, sum = got + 1, sum + v
                    elseif err == "closed" then
                        break
                    end
                end
                assert.are.equal(n, got, "capacity " .. cap)
                assert.are.equal(n * (n + 1) / 2, sum, "capacity " .. cap)
            end
        end)
    end)

    it("refuses values that cannot cross, naming the path", function()
        run(function()
            local c = ms.channel()
            assert_contains(error_of(c.send, c, { f = print }), "channel:send: value.f is a function")
            assert_contains(error_of(c.try_send, c, coroutine.create(print)),
                "channel:try_send: value is a thread")
            assert.are.equal(0, c:len())
        end)
    end)

    it("refuses a bad capacity or timeout, naming the argument", function()
        run(function()
            local c = ms.channel(1)
            assert_contains(error_of(ms.channel, -1), "capacity must be a whole number (0 = unbounded)")
            assert_contains(error_of(ms.channel, 1.5), "capacity must be a whole number (0 = unbounded)")
            assert_contains(error_of(function()
                local v = c:recv(-1)
                return v
            end), "bad argument #1 to 'recv'")
            assert_contains(error_of(function()
                local v = c:send(1, -1)
                return v
            end), "bad argument #2 to 'send'")
        end)
    end)

    it("describes itself with tostring", function()
        local c = ms.channel(4)
        c:try_send(1)
        assert.are.equal("ms.channel(1 queued, capacity 4)", tostring(c))
    end)
end)

describe("a channel or semaphore referenced only by the call waiting on it", function()
    it("stays alive through garbage collections until the wait ends", function()
        run(function()
            local t = ms.spawn(function() return ms.channel(1):recv(0.2) end)
            local u = ms.spawn(function() return ms.semaphore(0):acquire(1, 0.2) end)
            local w = ms.spawn(function()
                local c = ms.channel(1)
                c:send(1)
                return c:send(2, 0.2)
            end)
            for _ = 1, 5 do
                collectgarbage()
                collectgarbage()
                ms.sleep(0.02)
            end
            for _, task in ipairs({ t, u, w }) do
                local ok, v, err = task:join(5)
                assert.is_true(ok)
                assert.is_nil(v)
                assert.are.equal("timeout", err)
            end
        end)
    end)
end)
