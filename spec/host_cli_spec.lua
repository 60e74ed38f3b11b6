-- Specs for the ms-host command line: --version and --help, `run` and its
-- exit status (0 the main agent ended, 1 it failed, 2 bad usage or
-- configuration), profiles and overrides, script arguments, and the
-- shipped example.
--
-- Run from the repository root; MS_HOST names the binary (default
-- build/ms-host/ms-host):
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/host_cli_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local HOST = os.getenv("MS_HOST") or "build/ms-host/ms-host"

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
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

local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

local function contains(haystack, needle)
    return type(haystack) == "string" and haystack:find(needle, 1, true) ~= nil
end

local function assert_contains(haystack, needle)
    assert(contains(haystack, needle),
        string.format("expected %q\n  to contain %q", tostring(haystack), needle))
end

describe("ms-host", function()
    local dir

    before_each(function()
        dir = temp_dir()
    end)

    after_each(function()
        os.execute("rm -rf " .. shell_quote(dir))
    end)

    -- Runs ms-host with the given arguments (quoted one by one); returns
    -- the exit status, stdout and stderr.  A 60 s limit keeps a hang from
    -- stalling the suite (status 124).
    local function host(...)
        local args = {}
        for i = 1, select("#", ...) do args[i] = shell_quote((select(i, ...))) end
        local out, err, code = dir .. "/.out", dir .. "/.err", dir .. "/.code"
        os.execute(("timeout 60 %s %s >%s 2>%s </dev/null; echo $? >%s"):format(
            shell_quote(HOST), table.concat(args, " "), out, err, code))
        return tonumber(slurp(code)), slurp(out), slurp(err)
    end

    local function script(text)
        return write(dir, "script.lua", text)
    end

    describe("--version", function()
        it("prints the version and LuaJIT's, and exits 0", function()
            local code, out = host("--version")
            assert.are.equal(0, code)
            assert.is_truthy(out:match("^ms%-host %d+%.%d+%.%d+ %(LuaJIT [^)]+%)\n$"), out)
        end)
    end)

    describe("--help", function()
        it("prints the usage on stdout and exits 0", function()
            for _, flag in ipairs({ "--help", "-h", "help" }) do
                local code, out, err = host(flag)
                assert.are.equal(0, code, flag)
                assert_contains(out, "usage: ms-host run FILE.lua")
                assert_contains(out, "--profile")
                assert_contains(out, "--workers")
                assert_contains(out, "--set")
                assert_contains(out, "exit status")
                assert.are.equal("", err)
            end
        end)
    end)

    describe("bad usage exits 2", function()
        it("with no command, printing the usage on stderr", function()
            local code, out, err = host()
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert_contains(err, "usage:")
        end)

        it("with an unknown command", function()
            local code, _, err = host("launch")
            assert.are.equal(2, code)
            assert_contains(err, "unknown command 'launch'")
        end)

        it("with run but no file", function()
            local code, _, err = host("run")
            assert.are.equal(2, code)
            assert_contains(err, "which file?")
        end)

        it("with an unknown option, naming it", function()
            local code, _, err = host("run", script("print(1)"), "--fast")
            assert.are.equal(2, code)
            assert_contains(err, "unknown option '--fast'")
        end)

        it("with an option missing its value", function()
            local code, _, err = host("run", script("print(1)"), "--workers")
            assert.are.equal(2, code)
            assert_contains(err, "--workers needs a value")
        end)

        it("with --set not of the form KEY=VALUE", function()
            local code, _, err = host("run", script("print(1)"), "--set", "budget")
            assert.are.equal(2, code)
            assert_contains(err, "KEY=VALUE")
        end)

        it("with --set of an unknown field, suggesting the right one", function()
            local code, out, err = host("run", script("print('ran')"), "--set", "worker_thread=2")
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert_contains(err, "worker_thread")
            assert_contains(err, "did you mean 'worker_threads'?")
        end)

        it("with --set of a value out of range, naming field and range", function()
            local code, _, err = host("run", script("print('ran')"), "--set", "budget=0")
            assert.are.equal(2, code)
            assert_contains(err, "budget")
            assert_contains(err, "out of range")
        end)

        it("with --workers 0", function()
            local code, out, err = host("run", script("print('ran')"), "--workers", "0")
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert_contains(err, "worker_threads")
        end)

        it("with a missing profile, naming it", function()
            local code, out, err = host("run", script("print('ran')"), "--profile", "no_such_profile")
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert_contains(err, "no_such_profile")
            assert_contains(err, "not found")
        end)
    end)

    describe("run", function()
        it("exits 0 when the script ends, with the script's output on stdout", function()
            local code, out, err = host("run", script([[
                print("hello from the main agent")
                io.write("no newline")
            ]]))
            assert.are.equal(0, code, err)
            assert.are.equal("hello from the main agent\nno newline", out)
            assert.are.equal("", err)
        end)

        it("gives the script the ms module as a global and through require", function()
            local code, out, err = host("run", script([[
                assert(ms == require("ms"), "two ms modules")
                local t = ms.spawn(function() ms.sleep(0.01) return "joined" end)
                print(select(2, t:join()))
            ]]))
            assert.are.equal(0, code, err)
            assert.are.equal("joined\n", out)
        end)

        it("exits 1 when the script raises, with the message and a traceback on stderr", function()
            local path = script([[
                local function inner() error("the disk is full") end
                inner()
            ]])
            local code, _, err = host("run", path)
            assert.are.equal(1, code)
            assert_contains(err, path)
            assert_contains(err, "the disk is full")
            assert_contains(err, "stack traceback")
            assert_contains(err, "inner")
        end)

        it("keeps the output the script printed before it failed", function()
            local code, out = host("run", script([[
                print("before")
                io.stdout:flush()
                error("after")
            ]]))
            assert.are.equal(1, code)
            assert.are.equal("before\n", out)
        end)

        it("exits 1 on a syntax error, naming file and line", function()
            local path = script("local ok = true\nlocal = 2\n")
            local code, out, err = host("run", path)
            assert.are.equal(1, code)
            assert.are.equal("", out)
            assert_contains(err, path .. ":2:")
        end)

        it("exits 1 when the file cannot be read, naming it", function()
            local code, _, err = host("run", dir .. "/missing.lua")
            assert.are.equal(1, code)
            assert_contains(err, dir .. "/missing.lua")
        end)

        it("exits 0 when an agent fails but the main agent ends normally", function()
            local code, out, err = host("run", script([[
                local a = ms.agent.spawn { fn = function() error("worker broke") end }
                ms.monitor(a)
                local ex = ms.recv(10)
                print(ex.reason)
            ]]))
            assert.are.equal(0, code, err)
            assert.are.equal("error\n", out)
        end)

        it("exits 0 promptly when the script ends while agents and tasks still wait", function()
            -- Hour-long waits: a host that waited for them would be ended
            -- by host()'s 60 s guard (status 124), not exit 0.
            local code, out, err = host("run", script([[
                ms.agent.spawn { fn = function() ms.sleep(3600) end }
                ms.agent.spawn { fn = function() ms.recv() end }
                ms.spawn(function() ms.sleep(3600) end)
                print("main done")
            ]]))
            assert.are.equal(0, code, err)
            assert.are.equal("main done\n", out)
        end)

        it("does not hang past shutdown_timeout on an agent that never yields", function()
            -- A host that hung on it would be ended by host()'s 60 s guard
            -- (status 124).
            local code, out = host("run", script([[
                ms.agent.spawn { fn = function() while true do end end }
                ms.sleep(0.1)
                print("main done")
            ]]), "--set", "shutdown_timeout=2")
            assert.is_truthy(code == 0 or code == 3, "exit status " .. tostring(code))
            assert.are.equal("main done\n", out)
        end)

        it("passes the arguments after -- as ... and in arg", function()
            local code, out, err = host("run", script([[
                local n = select("#", ...)
                print(n, ...)
                print(arg[0] ~= nil, #arg, arg[1], arg[2], arg[3])
            ]]), "--", "one", "two words", "--not-an-option")
            assert.are.equal(0, code, err)
            assert.are.equal("3\tone\ttwo words\t--not-an-option\n"
                .. "true\t3\tone\ttwo words\t--not-an-option\n", out)
        end)

        it("sets arg[0] to the script path and gives no arguments without --", function()
            local path = script([[print(arg[0], #arg, select("#", ...))]])
            local code, out = host("run", path)
            assert.are.equal(0, code)
            assert.are.equal(path .. "\t0\t0\n", out)
        end)

        it("--workers sets the number of worker threads", function()
            local code, out, err = host("run", script("print(ms.metrics().workers)"), "--workers", "3")
            assert.are.equal(0, code, err)
            assert.are.equal("3\n", out)
        end)

        it("--workers=N works too", function()
            local code, out = host("run", script("print(ms.metrics().workers)"), "--workers=2")
            assert.are.equal(0, code)
            assert.are.equal("2\n", out)
        end)

        it("--set overrides a profile field", function()
            local code, out, err = host("run", script("print(ms.metrics().max_blocking_threads)"),
                "--set", "max_blocking_threads=9")
            assert.are.equal(0, code, err)
            assert.are.equal("9\n", out)
        end)

        it("--set mailbox_limit bounds every agent's mailbox", function()
            local code, out, err = host("run", script([[
                local a = ms.agent.spawn { fn = function() ms.sleep(30) end }
                print(a:send(1), a:send(2))
                local ok, e = a:send(3)
                print(ok, e.message)
                a:stop()
            ]]), "--set", "mailbox_limit=2")
            assert.are.equal(0, code, err)
            assert_contains(out, "true\ttrue\n")
            assert_contains(out, "nil\tmailbox of agent")
            assert_contains(out, "is full")
        end)

        it("--set agent_memory_limit applies to agents that set none", function()
            local code, out, err = host("run", script([[
                local a = ms.agent.spawn { fn = function()
                    local t = {}
                    for i = 1, 1e7 do t[i] = { i } end
                end }
                print(a:info().memory_limit)
                ms.monitor(a)
                print(ms.recv(10).reason)
            ]]), "--set", "agent_memory_limit=2000000")
            assert.are.equal(0, code, err)
            assert.are.equal("2000000\noom\n", out)
        end)

        it("--profile NAME runs with a shipped profile", function()
            local code, out, err = host("run", script("print(ms.metrics().workers > 0)"),
                "--profile", "io_bound")
            assert.are.equal(0, code, err)
            assert.are.equal("true\n", out)
        end)

        it("--profile FILE runs with a profile file, --workers still overriding it", function()
            local prof = write(dir, "mine.lua", [[
                return { extends = "default", description = "spec", worker_threads = 3,
                         max_blocking_threads = 5 }
            ]])
            local path = script("local m = ms.metrics() print(m.workers, m.max_blocking_threads)")
            local code, out, err = host("run", path, "--profile", prof)
            assert.are.equal(0, code, err)
            assert.are.equal("3\t5\n", out)
            code, out = host("run", path, "--profile", prof, "--workers", "1")
            assert.are.equal(0, code)
            assert.are.equal("1\t5\n", out)
        end)

        it("--profile with a bad value in the file exits 2, naming the file and field", function()
            local prof = write(dir, "bad.lua", [[
                return { extends = "default", description = "bad", budget = -4 }
            ]])
            local code, out, err = host("run", script("print('ran')"), "--profile", prof)
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert_contains(err, "bad.lua")
            assert_contains(err, "budget")
        end)

        it("runs scripts/agents.lua to the end: exit 0 and a done: line", function()
            local code, out, err = host("run", "scripts/agents.lua")
            assert.are.equal(0, code, err)
            assert_contains(out, "done:")
            assert_contains(out, "expected")
            local total, expected = out:match("total (%d+) %(expected (%d+)%)")
            assert.is_truthy(total, out)
            assert.are.equal(expected, total)
        end)
    end)

    describe("profiles", function()
        it("lists every shipped profile and exits 0", function()
            local code, out, err = host("profiles")
            assert.are.equal(0, code, err)
            for _, name in ipairs({ "agent_system", "cpu_bound", "data_pipeline", "default",
                                    "high_throughput", "io_bound", "websocket_server" }) do
                assert_contains(out, name)
            end
        end)

        it("applies --workers to what it prints", function()
            local code, out = host("profiles", "--workers", "5")
            assert.are.equal(0, code)
            local profiles, fives = 0, 0
            for _ in out:gmatch("\nprofile ") do profiles = profiles + 1 end
            if out:sub(1, 8) == "profile " then profiles = profiles + 1 end
            for _ in out:gmatch("worker_threads%s+= 5%s") do fives = fives + 1 end
            assert.are.equal(7, profiles)
            assert.are.equal(profiles, fives)
        end)
    end)
end)
