-- Specs for the same-agent fast path of ms.channel (agents/lchan.c): a
-- channel used only by the coroutines of the agent that made it keeps its
-- values as Lua values; the first copy of its handle to another agent
-- moves them, and its waiting coroutines, onto the shared channel.  Every
-- observable behaviour must be the one of a shared channel.
--
--   LUA_CPATH="build/agents/?.so;;" busted --lua=luajit spec/ms_chan_local_spec.lua

local ms = require "ms"

local h = require "spec.support.helpers"
local run, assert_contains = h.run, h.assert_contains

describe("a channel used by one agent only", function()
    it("keeps FIFO order across waiting senders on a full bounded channel", function()
        run(function()
            local c = ms.channel(1)
            assert.is_true(c:send(0))   -- full from here on
            -- Five senders queue one after the other: each is known to be
            -- waiting (it said so just before its send) before the next
            -- starts.  They must be served in that order, not the reverse.
            local tasks, waiting = {}, 0
            for s = 1, 5 do
                tasks[s] = ms.spawn(function()
                    waiting = s
                    assert.is_true(c:send(s))
                end)
                while waiting < s do ms.yield() end
            end
            local got = {}
            for _ = 1, 6 do got[#got + 1] = c:recv(5) end
            for _, t in ipairs(tasks) do assert.is_true((t:join(5))) end
            assert.are.same({ 0, 1, 2, 3, 4, 5 }, got)
            assert.are.equal(0, c:len())
        end)
    end)

    it("keeps each of several senders' order and loses nothing", function()
        run(function()
            local c = ms.channel(2)
            local tasks = {}
            for s = 1, 3 do
                tasks[s] = ms.spawn(function()
                    for i = 1, 5 do assert.is_true(c:send(s * 100 + i)) end
                end)
            end
            ms.yield()
            ms.yield()
            local got = {}
            for _ = 1, 15 do got[#got + 1] = c:recv(5) end
            for _, t in ipairs(tasks) do assert.is_true((t:join(5))) end
            -- Each sender's values in its own order, none lost or doubled.
            local last, seen = {}, {}
            for _, v in ipairs(got) do
                local s, i = math.floor(v / 100), v % 100
                assert.is_nil(seen[v])
                seen[v] = true
                assert.is_true(i > (last[s] or 0))
                last[s] = i
            end
            for s = 1, 3 do assert.are.equal(5, last[s]) end
            assert.are.equal(0, c:len())
        end)
    end)

    it("keeps FIFO order across waiting receivers", function()
        run(function()
            local c = ms.channel(1)
            local tasks, waiting = {}, 0
            for r = 1, 4 do
                tasks[r] = ms.spawn(function()
                    waiting = r
                    return c:recv(5)
                end)
                while waiting < r do ms.yield() end
            end
            for v = 1, 4 do assert.is_true(c:send(v * 10)) end
            for r = 1, 4 do
                local ok, v = tasks[r]:join(5)
                assert.is_true(ok)
                assert.are.equal(r * 10, v)
            end
        end)
    end)

    it("gives copies of tables and refuses what cannot be sent", function()
        run(function()
            local c = ms.channel()
            local v = { 1, { 2 } }
            c:send(v)
            v[1] = "changed after the send"
            local got = c:recv()
            assert.are.same({ 1, { 2 } }, got)
            assert.is_false(rawequal(v, got))
            local ok, err = pcall(c.send, c, { print })
            assert.is_false(ok)
            assert_contains(err, "channel:send: value[1] is a function")
            assert.are.same({ nil, "empty" }, { c:try_recv() })
        end)
    end)

    it("passes handles: a semaphore sent is the same semaphore", function()
        run(function()
            local c, s = ms.channel(1), ms.semaphore(2)
            c:send(s)
            local got = c:recv()
            local p = got:acquire(1)
            assert.are.equal(1, s:available())
            p:release()
        end)
    end)

    it("wakes a waiting receiver and a waiting sender on close", function()
        run(function()
            local c = ms.channel(1)
            local r = ms.spawn(function() return c:recv() end)
            ms.yield()
            c:close()
            assert.are.same({ true, nil, "closed" }, { r:join(5) })
            local d = ms.channel(1)
            d:send("kept")
            local s = ms.spawn(function() return d:send("refused") end)
            ms.yield()
            d:close()
            local ok, sent, err = s:join(5)
            assert.is_true(ok)
            assert.is_nil(sent)
            assert.are.equal("Closed", err.code)
            assert.are.equal("kept", d:recv())
            assert.are.same({ nil, "closed" }, { d:recv() })
        end)
    end)

    it("times out a waiting receiver; the next value goes to the next one", function()
        run(function()
            local c = ms.channel(1)
            assert.are.same({ nil, "timeout" }, { c:recv(0.01) })
            local r = ms.spawn(function() return c:recv(5) end)
            ms.yield()
            assert.is_true(c:send("x"))
            assert.are.same({ true, "x" }, { r:join(5) })
            assert.is_true(c:send("y"))
            assert.are.same({ nil, "timeout" }, { c:send("z", 0.01) })
            assert.are.equal("y", c:recv())
        end)
    end)

    it("lets other tasks run while one task sends without ever waiting", function()
        run(function()
            local c = ms.channel()
            local other_ran = false
            ms.spawn(function() other_ran = true end)
            for i = 1, 1000 do c:send(i) end
            assert.is_true(other_ran)
            assert.are.equal(1000, c:len())
        end)
    end)
end)

describe("a channel that starts local and is then shared", function()
    it("delivers the values buffered before, in order, then the waiting senders'", function()
        run(function()
            local c = ms.channel(3)
            for i = 1, 3 do c:send(i) end
            local waiting = ms.spawn(function()
                c:send(4)
                c:send(5)
            end)
            ms.yield()
            local got = ms.channel()
            ms.agent.spawn {
                args = { c = c, got = got },
                fn = function(args)
                    for _ = 1, 5 do args.got:send(args.c:recv(5)) end
                end,
            }
            for i = 1, 5 do assert.are.equal(i, got:recv(5)) end
            assert.is_true((waiting:join(5)))
        end)
    end)

    it("moves its waiting receivers onto the shared channel", function()
        run(function()
            local c = ms.channel()
            local rs = {}
            for i = 1, 3 do rs[i] = ms.spawn(function() return c:recv(5) end) end
            ms.yield()
            ms.agent.spawn {
                args = { c = c },
                fn = function(args) for i = 1, 3 do args.c:send(i) end end,
            }
            local sum = 0
            for i = 1, 3 do
                local ok, v = rs[i]:join(5)
                assert.is_true(ok)
                sum = sum + v
            end
            assert.are.equal(6, sum)
        end)
    end)

    it("mixes senders of this agent and of others without loss or duplication", function()
        run(function()
            local c = ms.channel(4)
            for p = 1, 2 do
                ms.agent.spawn {
                    args = { c = c, p = p },
                    fn = function(args)
                        for i = 1, 200 do args.c:send(args.p * 1000 + i) end
                    end,
                }
            end
            local mine = ms.spawn(function() for i = 1, 200 do c:send(3000 + i) end end)
            local seen, last = {}, {}
            for _ = 1, 600 do
                local v = assert(c:recv(10), "a value went missing")
                assert.is_nil(seen[v])
                seen[v] = true
                local p, i = math.floor(v / 1000), v % 1000
                assert.is_true(i > (last[p] or 0), "FIFO per sender")
                last[p] = i
            end
            assert.is_true((mine:join(5)))
            assert.are.same({ nil, "empty" }, { c:try_recv() })
        end)
    end)

    it("keeps its closed state and buffered values when shared after close", function()
        run(function()
            local c = ms.channel()
            c:send("a")
            c:close()
            local got = ms.channel()
            ms.agent.spawn {
                args = { c = c, got = got },
                fn = function(args)
                    args.got:send({ args.c:recv(5) })
                    args.got:send({ args.c:recv(5) })
                end,
            }
            assert.are.same({ "a" }, got:recv(5))
            assert.are.same({ nil, "closed" }, got:recv(5))
        end)
    end)

    it("can carry itself, and is shared when used from the blocking pool", function()
        run(function()
            local c = ms.channel()
            c:send(c)
            local self_ = c:recv()
            assert.is_true(self_:try_send("via the copy"))
            assert.are.equal("via the copy", c:recv())
            local d = ms.channel()
            d:send(1)
            local r = ms.spawn(function() return d:recv(5) end)
            assert.are.same({ true, true }, { ms.blocking(function(ch) return ch:try_send(2) end, d) })
            assert.are.same({ true, 1 }, { r:join(5) })
            assert.are.equal(2, d:recv(5))
        end)
    end)

    it("leaves nothing behind when an agent ends with values and waiters in its channels", function()
        run(function()
            local a = ms.agent.spawn {
                fn = function()
                    local c = ms.channel(2)
                    c:send({ big = string.rep("x", 1000) })
                    c:send("two")
                    ms.spawn(function() c:send("blocked") end)
                    ms.spawn(function() ms.channel():recv() end)
                    ms.sleep(0.01)
                end,
            }
            ms.monitor(a)
            local ex = ms.recv(5)
            assert.are.equal("normal", ex.reason)
        end)
    end)
end)
