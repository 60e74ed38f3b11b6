-- Specs for the REPL's Lua half, shared by `ms-host repl` and the console
-- (lua/ms/repl.lua): pretty printer, expression or statement, incomplete
-- chunks, error display, the helpers.
--
-- Run from the repository root; MS_HOST names the binary:
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/repl_spec.lua
package.path = "lua/?.lua;" .. package.path
local repl = require "ms.repl"
local h = require "spec.support.helpers"
local assert_contains = h.assert_contains

-- A session whose output is collected: feed(line) returns the status and
-- what that line printed.
local function session()
    local out = {}
    local s = repl.session{ write = function(text) out[#out + 1] = text end }
    return function(line)
        local status = s:feed(line)
        local text = table.concat(out)
        out = {}
        return status, text
    end, s
end

describe("ms.repl", function()
    describe("pretty", function()
        it("prints scalars as Lua would read them back", function()
            assert.are.equal("42", repl.pretty(42))
            assert.are.equal("1.5", repl.pretty(1.5))
            assert.are.equal('"a\\nb"', repl.pretty("a\nb"))
            assert.are.equal("nil", repl.pretty(nil))
            assert.are.equal("true", repl.pretty(true))
        end)

        it("prints a small table on one line, array part first, keys sorted", function()
            assert.are.equal('{ 10, 20, a = 1, b = "x", ["two words"] = true }',
                repl.pretty({ 10, 20, b = "x", a = 1, ["two words"] = true }))
            assert.are.equal("{}", repl.pretty({}))
            assert.are.equal("{ [1.5] = 1, [2.5] = 2 }", repl.pretty({ [2.5] = 2, [1.5] = 1 }))
        end)

        it("nests, and breaks a table that does not fit on one line", function()
            local t = { name = string.rep("n", 70), inner = { list = { 1, 2, 3 },
                        more = string.rep("m", 70) } }
            assert.are.equal(table.concat({
                "{",
                "  inner = {",
                '    list = { 1, 2, 3 },',
                '    more = "' .. string.rep("m", 70) .. '"',
                "  },",
                '  name = "' .. string.rep("n", 70) .. '"',
                "}",
            }, "\n"), repl.pretty(t))
        end)

        it("limits the depth", function()
            assert.are.equal("{ a = { b = { c = { d = {...} } } } }",
                repl.pretty({ a = { b = { c = { d = { e = 1 } } } } }))
        end)

        it("marks cycles instead of following them", function()
            local t = { name = "loop" }
            t.self = t
            local s = repl.pretty(t)
            assert_contains(s, 'name = "loop"')
            assert_contains(s, "self = <cycle: " .. tostring(t) .. ">")
        end)

        it("prints a table twice when it is shared but not a cycle", function()
            local shared = { 1 }
            assert.are.equal("{ a = { 1 }, b = { 1 } }", repl.pretty({ a = shared, b = shared }))
        end)

        it("uses __tostring when a table has one", function()
            local t = setmetatable({}, { __tostring = function() return "<thing>" end })
            assert.are.equal("<thing>", repl.pretty(t))
        end)

        it("names a __tostring that raises or returns no string, by the value's address", function()
            local t = setmetatable({}, { __tostring = function() error("boom", 0) end })
            assert.are.equal("<table: " .. string.format("%p", t) .. " (__tostring raised: boom)>",
                repl.pretty(t))
            local n = setmetatable({}, { __tostring = function() return {} end })
            assert.are.equal("<table: " .. string.format("%p", n)
                .. " (__tostring returned a table)>", repl.pretty(n))
            assert.are.equal(repl.pretty(t), repl.safe_tostring(t))
        end)

        it("walks a table raw: no __index, __len, __pairs, __lt or __eq runs", function()
            local function raise() error("a metamethod ran") end
            local t = setmetatable({ 1, 2, a = "x" }, { __index = raise, __len = raise,
                __pairs = raise, __ipairs = raise, __lt = raise, __le = raise, __eq = raise,
                __concat = raise, __call = raise })
            assert.are.equal('{ 1, 2, a = "x" }', repl.pretty(t))
            local k1, k2 = setmetatable({}, getmetatable(t)), setmetatable({}, getmetatable(t))
            assert_contains(repl.pretty({ [k1] = 1, [k2] = 2 }), "] = 1")
        end)

        it("looks __tostring up in the real metatable, not the one __metatable shows", function()
            local t = setmetatable({ 1 }, { __metatable = { __tostring = function()
                error("the decoy ran") end } })
            assert.are.equal("{ 1 }", repl.pretty(t))
        end)

        it("shows the error fields of an error table without indexing through __index", function()
            local function raise() error("indexed") end
            local e = setmetatable({ code = "Bad", message = "worse" }, { __index = raise })
            assert.are.equal("Bad: worse", repl.error_text(e))
            assert.are.equal("{}", repl.error_text(setmetatable({}, { __index = raise })))
        end)
    end)

    describe("compile", function()
        it("takes an expression as one to return, all its values packed", function()
            local status, fn = repl.compile("1 + 1")
            assert.are.equal("ok", status)
            assert.are.same({ n = 1, 2 }, fn())
        end)

        it("takes a statement when it is not an expression", function()
            local status, fn = repl.compile("local x = 2; return x * 3")
            assert.are.equal("ok", status)
            assert.are.same({ n = 1, 6 }, fn())
        end)

        it("tells an incomplete chunk from a wrong one", function()
            assert.are.equal("incomplete", (repl.compile("function f()")))
            assert.are.equal("incomplete", (repl.compile("t = {1, 2,")))
            assert.are.equal("incomplete", (repl.compile("s = [[long")))
            assert.are.equal("incomplete", (repl.compile("if x then")))
            local status, err = repl.compile("x = = 1")
            assert.are.equal("error", status)
            assert_contains(err, "unexpected symbol")
        end)
    end)

    describe("session", function()
        it("prints the value of a bare expression", function()
            local feed = session()
            assert.are.same({ "done", "2\n" }, { feed("1+1") })
        end)

        it("prints every value, tab-separated, for =expr and multiple returns", function()
            local feed = session()
            assert.are.same({ "done", '1\t"two"\tnil\n' }, { feed("=1, 'two', nil") })
            assert.are.same({ "done", "1\t2\n" }, { feed("return 1, 2") })
        end)

        it("prints nothing for a statement, and keeps its globals", function()
            local feed = session()
            assert.are.same({ "done", "" }, { feed("x = 41") })
            assert.are.same({ "done", "42\n" }, { feed("x + 1") })
        end)

        it("keeps the session's globals out of _G", function()
            local feed = session()
            feed("repl_spec_global = 1")
            assert.is_nil(rawget(_G, "repl_spec_global"))
        end)

        it("continues an incomplete chunk on the next lines", function()
            local feed, s = session()
            assert.are.same({ "more", "" }, { feed("function double(n)") })
            assert.is_true(s:pending())
            assert.are.same({ "more", "" }, { feed("  return n * 2") })
            assert.are.same({ "done", "" }, { feed("end") })
            assert.is_false(s:pending())
            assert.are.same({ "done", "42\n" }, { feed("double(21)") })
        end)

        it("prints a table pretty", function()
            local feed = session()
            assert.are.same({ "done", "{ 1, 2, k = { 3 } }\n" }, { feed("{1, 2, k = {3}}") })
        end)

        it("shows a run-time error with a short traceback and goes on", function()
            local feed = session()
            feed("function fail() local t = nil; return t.field end")
            local status, out = feed("fail()")
            assert.are.equal("done", status)
            assert_contains(out, "error: stdin:1: attempt to index local 't' (a nil value)")
            assert_contains(out, "stack traceback:")
            assert_contains(out, "in function 'fail'")
            assert.is_nil(out:find("repl.lua", 1, true), out)
            assert.are.same({ "done", "3\n" }, { feed("1 + 2") })
        end)

        it("shows a syntax error and goes on", function()
            local feed = session()
            local status, out = feed("x = = 1")
            assert.are.equal("done", status)
            assert_contains(out, "error: stdin:1:")
            assert.are.same({ "done", "3\n" }, { feed("1 + 2") })
        end)

        it("shows the message of an error table", function()
            local feed = session()
            local _, out = feed("error({ code = 'Timeout', message = 'too slow' })")
            assert_contains(out, "error: Timeout: too slow")
        end)

        it("sends print to the session's output", function()
            local feed = session()
            assert.are.same({ "done", "a\t1\tnil\n" }, { feed("print('a', 1, nil)") })
        end)

        it("sends io.write to the session's output too", function()
            local feed = session()
            assert.are.same({ "done", "ab1" }, { feed("io.write('a', 'b', 1)") })
            assert.are.same({ "done", '"function"\n' }, { feed("type(io.read)") })
        end)

        it("ignores blank lines", function()
            local feed = session()
            assert.are.same({ "done", "" }, { feed("   ") })
        end)

        describe("survives a hostile value", function()
            for _, case in ipairs(require "spec.support.hostile_values") do
                it(case.name, function()
                    local feed = session()
                    local status, out = feed(case.line)
                    assert.are.equal("done", status)
                    for _, text in ipairs(case.expect) do
                        assert_contains(out, text)
                    end
                    assert.are.same({ "done", '"next"\n' }, { feed("'next'") })
                end)
            end
        end)

        it("reports a failure to show a result as one line and goes on", function()
            local out = {}
            local writes = 0
            local s = repl.session{ write = function(text)
                writes = writes + 1
                if writes == 1 then error("write failed") end
                out[#out + 1] = text
            end }
            assert.are.equal("done", s:feed("1 + 1"))
            assert_contains(table.concat(out), "error: the REPL could not show the result: ")
            assert_contains(table.concat(out), "write failed")
            out = {}
            assert.are.equal("done", s:feed("2 + 2"))
            assert.are.equal("4\n", table.concat(out))
        end)

        it("says clearly when ms.tune is absent", function()
            local ms = require "ms"
            local saved = ms.tune
            rawset(ms, "tune", false)
            local feed = session()
            local _, out = feed("tune{ budget = 64 }")
            rawset(ms, "tune", saved)
            assert_contains(out, "error: stdin:1: ms.tune is not available in this build")
        end)
    end)

    describe("helpers in an agent", function()
        it("list agents, workers and metrics", function()
            h.run(function()
                local feed = session()
                local _, out = feed("agents()")
                assert_contains(out, 'name = "main"')
                assert_contains(out, 'status = "running"')
                assert_contains(out, "mailbox = 0")
                _, out = feed("#workers()")
                assert.are.equal("2\n", out)
                _, out = feed("workers()[1]")
                for _, k in ipairs({ "polls", "busy", "queue", "parked", "stalled" }) do
                    assert_contains(out, k .. " = ")
                end
                _, out = feed("metrics().totals.workers")
                assert.are.equal("2\n", out)
                _, out = feed("#metrics().agents")
                assert.are.equal("1\n", out)
                _, out = feed("top()")
                assert_contains(out, "worker      polls")
                assert_contains(out, "main")
            end)
        end)

        it("tune{...} calls ms.tune", function()
            h.run(function()
                local feed = session()
                local _, out = feed("tune{ budget = 64 }")
                assert.is_nil(out:find("error", 1, true), out)
                _, out = feed("ms.tune{ budget = 128 }; return true")
                assert.are.equal("true\n", out)
            end)
        end)

        it("let a chunk wait on the runtime (ms.sleep, joins)", function()
            h.run(function()
                local feed = session()
                local _, out = feed("ms.sleep(0.01); return ms.spawn(function() return 7 end):join()")
                assert.are.equal("true\t7\n", out)
            end)
        end)
    end)
end)
