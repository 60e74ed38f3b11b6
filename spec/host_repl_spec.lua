-- Specs for `ms-host repl` driven through stdin (not a terminal: no
-- prompts, no line editing): what a script piping lines in sees.  The
-- terminal itself is checked by lua.repl_pty (lua/test/pty_drive.c).
--
-- Run from the repository root; MS_HOST names the binary:
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/host_repl_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"
local assert_contains = h.assert_contains

local HOST = h.host
local shell_quote, slurp = h.shell_quote, h.slurp

describe("ms-host repl (stdin not a terminal)", function()
    local dir

    before_each(function()
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir " .. shell_quote(dir)) == 0)
    end)

    after_each(function()
        os.execute("rm -rf " .. shell_quote(dir))
    end)

    -- Runs ms-host repl with input on stdin; returns status, stdout, stderr.
    local function repl_run(input, ...)
        h.write_file(dir .. "/in", input)
        local args = {}
        for i = 1, select("#", ...) do args[i] = shell_quote((select(i, ...))) end
        os.execute(("HOME=%s timeout 60 %s repl --workers 2 %s <%s/in >%s/out 2>%s/err; echo $? >%s/code")
            :format(shell_quote(dir), shell_quote(HOST), table.concat(args, " "), dir, dir, dir, dir))
        return tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"), slurp(dir .. "/err")
    end

    it("evaluates lines, prints values, survives errors, and exits 0 at end of input", function()
        local code, out, err = repl_run(table.concat({
            "1+1",
            "t = {1, 2,",
            "  x = 'y'}",
            "t",
            "error('boom')",
            "function sq(n)",
            "  return n * n",
            "end",
            "sq(12)",
            "=#agents()",
            "print('done')",
        }, "\n") .. "\n")
        assert.are.equal(0, code, err)
        assert.are.equal(table.concat({
            "2",
            '{ 1, 2, x = "y" }',
            "error: stdin:1: boom",
            "144",
            "1",
            "done",
        }, "\n") .. "\n", out:gsub("stack traceback:\n[^\n]*\n", ""))
    end)

    it("runs other agents while the prompt waits", function()
        local code, out, err = repl_run(table.concat({
            "a = ms.agent.spawn{ fn = function() local m, reply = ms.recv(10); reply(m.n * 2) end }",
            "a:call({ n = 21 }, 10)",
        }, "\n") .. "\n")
        assert.are.equal(0, code, err)
        assert_contains(out, "42")
    end)

    describe("survives a hostile value, shows what failed and runs the next lines", function()
        for _, case in ipairs(require "spec.support.hostile_values") do
            it(case.name, function()
                local code, out, err = repl_run(case.line .. "\n'next'\nprint('last')\n")
                assert.are.equal(0, code, err)
                for _, text in ipairs(case.expect) do
                    assert_contains(out, text)
                end
                assert_contains(out, '"next"\nlast\n')
                assert.is_nil(err:find("repl failed", 1, true), err)
            end)
        end

        it("tune{} with a settings table whose metamethods raise", function()
            local code, out, err = repl_run(table.concat({
                "raise = function() error('a metamethod ran') end",
                "s = setmetatable({ budget = 64 }, { __index = raise, __pairs = raise, "
                    .. "__len = raise, __tostring = raise })",
                "#tune(s)",
                "print('last')",
            }, "\n") .. "\n")
            assert.are.equal(0, code, err)
            assert.are.equal("1\nlast\n", out)
        end)

        it("all of them in one session", function()
            local lines = {}
            for _, case in ipairs(require "spec.support.hostile_values") do
                lines[#lines + 1] = case.line
            end
            lines[#lines + 1] = "print('last')"
            local code, out, err = repl_run(table.concat(lines, "\n") .. "\n")
            assert.are.equal(0, code, err)
            for _, case in ipairs(require "spec.support.hostile_values") do
                for _, text in ipairs(case.expect) do
                    assert_contains(out, text)
                end
            end
            assert.are.equal("last\n", out:sub(-5))
        end)
    end)

    it("exits 0 at once on empty input", function()
        local code, out, err = repl_run("")
        assert.are.equal(0, code, err)
        assert.are.equal("", out)
    end)

    it("takes the profile options of run", function()
        local code, out, err = repl_run("#workers()\n", "--profile", "default", "--set", "budget=64")
        assert.are.equal(0, code, err)
        assert.are.equal("2\n", out)
    end)
end)
