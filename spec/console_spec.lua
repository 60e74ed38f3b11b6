-- Specs for the console: `ms-host run --console PATH` (or a profile's
-- console field) serves `ms-host attach PATH`, one isolated session agent
-- per connection, over the framed protocol of docs/console.md.  The
-- attach client is driven with stdin piped (no terminal: no prompts).
--
-- Run from the repository root; MS_HOST names the binary:
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/console_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local h = require "spec.support.helpers"
local assert_contains = h.assert_contains

local HOST = h.host
local q, write = h.shell_quote, h.write_file

-- The file's text, or nil while it does not exist (status files appear
-- when a background command ends).
local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function exists(path)
    return os.execute("test -e " .. q(path)) == 0
end

local function sleep(s)
    os.execute("sleep " .. s)
end

-- Waits up to 30 s for cond(); fails with what.
local function wait_for(what, cond)
    for _ = 1, 600 do
        if cond() then return end
        sleep(0.05)
    end
    error("timed out waiting for " .. what, 2)
end

describe("ms-host console", function()
    local dir, sock

    before_each(function()
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir " .. q(dir)) == 0)
        sock = dir .. "/console.sock"
    end)

    -- Hosts still running (a failed spec) are stopped, then killed by pid.
    after_each(function()
        write(dir .. "/stop", "")
        for _, name in ipairs({ "h", "h2" }) do
            local pid = slurp(dir .. "/" .. name .. ".pid")
            if pid and not slurp(dir .. "/" .. name .. ".code") then
                sleep(0.5)
                os.execute("kill -KILL " .. pid:match("%d+") .. " 2>/dev/null")
            end
        end
        os.execute("rm -rf " .. q(dir))
    end)

    -- The main job: ticks until DIR/stop exists, then prints how many.
    local function main_script()
        return write(dir .. "/main.lua", ([[
            local n = 0
            while true do
                local f = io.open(%q)
                if f then f:close() break end
                ms.sleep(0.02)
                n = n + 1
            end
            print("main ok " .. n)
        ]]):format(dir .. "/stop"))
    end

    -- Starts ms-host run in the background with extra arguments; returns
    -- a name for its files (DIR/NAME.out, .err, .code, .pid).
    local function start_host(name, ...)
        local args = {}
        for i = 1, select("#", ...) do args[i] = q((select(i, ...))) end
        local cmd = ("echo $$ >%s/%s.pid; exec %s run %s --workers 2 %s")
            :format(dir, name, q(HOST), q(main_script()), table.concat(args, " "))
        os.execute(("(timeout 120 sh -c %s >%s/%s.out 2>%s/%s.err; "
            .. "echo $? >%s/%s.code) </dev/null >/dev/null 2>&1 &")
            :format(q(cmd), dir, name, dir, name, dir, name))
        return name
    end

    -- The host's exit status, once the shell has written it: its
    -- redirection creates the file empty first, so an empty file is not
    -- an exit yet.
    local function exit_code(name)
        local c = slurp(dir .. "/" .. name .. ".code")
        return c and c:match("^%d+\n$") and c or nil
    end

    local function wait_listening(name)
        wait_for("the console of " .. name, function()
            return (slurp(dir .. "/" .. name .. ".err") or ""):find("console on", 1, true) ~= nil
                or exit_code(name) ~= nil
        end)
    end

    -- Stops the host started as name; returns its status, stdout, stderr.
    local function stop_host(name)
        write(dir .. "/stop", "")
        wait_for("ms-host to exit", function() return exit_code(name) end)
        os.remove(dir .. "/stop")
        return tonumber(slurp(dir .. "/" .. name .. ".code")), slurp(dir .. "/" .. name .. ".out"),
            slurp(dir .. "/" .. name .. ".err")
    end

    -- Runs ms-host attach with input piped in; returns status, stdout,
    -- stderr.
    local function attach(input, path)
        local inf = os.tmpname()
        write(inf, input)
        local src = "cat " .. q(inf)
        os.execute(("%s | HOME=%s timeout 60 %s attach %s >%s/a.out 2>%s/a.err; echo $? >%s/a.code")
            :format(src, q(dir), q(HOST), q(path or sock), dir, dir, dir))
        os.remove(inf)
        return tonumber(slurp(dir .. "/a.code")), slurp(dir .. "/a.out"), slurp(dir .. "/a.err")
    end

    it("evaluates what a client sends and leaves the host running", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        local code, out, err = attach("x = 20 + 1\nx * 2\nfunction f(n)\n  return n + 1\nend\n"
            .. "f(1)\nerror('boom')\n{ a = 1 }\n")
        assert.are.equal(0, code, err)
        assert_contains(out, "ms-host REPL")
        assert_contains(out, "42\n")
        assert_contains(out, "2\n")
        assert_contains(out, "error: stdin:1: boom")
        assert_contains(out, "{ a = 1 }\n")
        local status, hout, herr = stop_host(name)
        assert.are.equal(0, status, herr)
        assert_contains(hout, "main ok")
        assert_contains(herr, "console on " .. sock)
    end)

    it("survives hostile values: each session shows what failed and goes on", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        for _, case in ipairs(require "spec.support.hostile_values") do
            local code, out, err = attach(case.line .. "\n'next'\n")
            assert.are.equal(0, code, case.name .. ": " .. err)
            for _, text in ipairs(case.expect) do
                assert(out:find(text, 1, true), case.name .. ": expected " .. ("%q"):format(out)
                    .. "\n  to contain " .. ("%q"):format(text))
            end
            assert(out:find('"next"\n', 1, true), case.name .. ": the next line did not run: "
                .. out)
            assert.is_nil(out:find("the session ended", 1, true), case.name .. ": " .. out)
        end
        local status, hout, herr = stop_host(name)
        assert.are.equal(0, status, herr)
        assert_contains(hout, "main ok")
    end)

    it("creates the socket with mode 0600 and removes it at shutdown", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        local p = io.popen("stat -c %a " .. q(sock))
        local mode = p:read("*l")
        p:close()
        assert.are.equal("600", mode)
        stop_host(name)
        assert.is_false(exists(sock))
    end)

    it("takes the socket path from the profile's console field", function()
        local prof = write(dir .. "/withconsole.lua", ([[
            return { extends = "default", description = "a console", console = %q }
        ]]):format(sock))
        local name = start_host("h", "--profile", prof)
        wait_listening(name)
        local code, out, err = attach("1 + 1\n")
        assert.are.equal(0, code, err)
        assert_contains(out, "\n2\n")
        assert.are.equal(0, (stop_host(name)))
    end)

    it("serves several consoles at once, each in its own agent", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        -- Two clients connected at the same time, each setting its own x.
        -- Each waits (inside its session) until it sees the other's session
        -- too (main, the dispatcher and two sessions), says so in a file,
        -- and stays until the other has said so too (each wait up to 30 s,
        -- a hang guard), so that both see both however slow the machine.
        local function wait_both(tag, other)
            return ("seen = 0 for i = 1, 600 do seen = math.max(seen, #agents()) "
                .. "if seen >= 4 then break end ms.sleep(0.05) end "
                .. "io.open(%q, \"w\"):close() "
                .. "for i = 1, 600 do local f = io.open(%q) if f then f:close() break end "
                .. "ms.sleep(0.05) end"):format(dir .. "/" .. tag .. ".saw", dir .. "/" .. other .. ".saw")
        end
        local function bg(tag, other, value)
            os.execute(("((echo 'x = %d'; echo %s; echo 'x'; echo 'seen') | HOME=%s "
                .. "timeout 60 %s attach %s >%s/%s.out 2>&1; echo $? >%s/%s.code) &")
                :format(value, q(wait_both(tag, other)), q(dir), q(HOST), q(sock), dir, tag, dir, tag))
        end
        bg("c1", "c2", 111)
        bg("c2", "c1", 222)
        wait_for("both consoles", function()
            return exit_code("c1") and exit_code("c2")
        end)
        assert.are.equal("0\n", slurp(dir .. "/c1.code"))
        assert.are.equal("0\n", slurp(dir .. "/c2.code"))
        local o1, o2 = slurp(dir .. "/c1.out"), slurp(dir .. "/c2.out")
        assert_contains(o1, "\n111\n")
        assert_contains(o2, "\n222\n")
        -- main, the dispatcher, and both sessions were alive together.
        assert_contains(o1, "\n4\n")
        assert_contains(o2, "\n4\n")
        assert.are.equal(0, (stop_host(name)))
    end)

    it("survives a client killed in the middle of a request", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        -- The request sleeps 1 s; the client is killed after 0.3 s.
        os.execute(("{ (echo 'ms.sleep(1)'; sleep 5) | timeout -s KILL 0.3 %s attach %s "
            .. ">/dev/null 2>&1; } 2>/dev/null"):format(q(HOST), q(sock)))
        -- The session finishes its request and finds no client: wait for
        -- that (up to 20 s, a hang guard), asking a new session each time.
        local code2, out2, err2
        for _ = 1, 100 do
            code2, out2, err2 = attach("agents()\n'still here'\n")
            if code2 ~= 0 or not out2:find("console%-1\"") then break end
            sleep(0.2)
        end
        assert.are.equal(0, code2, err2)
        assert_contains(out2, '"still here"')
        -- The killed client's session ended: only main, the dispatcher and
        -- this session are listed.
        assert.is_nil(out2:find("console%-1\""), out2)
        local status, hout, herr = stop_host(name)
        assert.are.equal(0, status, herr)
        assert.is_truthy(hout:match("^main ok %d+\n$"), hout)
    end)

    it("ends the connection of a session that is stopped, and serves others", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        -- The stop takes effect at the session's next wait: the client
        -- learns it from the next reply or from the closed connection.
        local _, out, err = attach("ms.self():stop('bye')\nms.sleep(0.5)\n'unreachable'\n")
        assert.is_nil(out:find('"unreachable"', 1, true), out)
        assert.is_truthy(out:find("the session ended (killed: bye)", 1, true)
            or err:find("the host closed the connection", 1, true), out .. err)
        local code2, out2, err2 = attach("'next'\n")
        assert.are.equal(0, code2, err2)
        assert_contains(out2, '"next"')
        assert.are.equal(0, (stop_host(name)))
    end)

    it("ignores an exit notice forged by an agent: the session goes on", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        -- The session itself sends the dispatcher the table the host sends
        -- when a session ends; only the host's (no sender) may end one.
        local code, out, err = attach("d = ms.agent.whereis('ms.console')\n"
            .. "d:send({ event = 'exit', agent = ms.self(), name = ms.self():name(), "
            .. "reason = 'forged' })\n"
            .. "d:send({ id = 99, inbox = ms.channel(), outbox = ms.channel() })\n"
            .. "ms.sleep(0.3)\n'still here'\n")
        assert.are.equal(0, code, err)
        assert_contains(out, '"still here"')
        assert.is_nil(out:find("the session ended", 1, true), out)
        assert.are.equal(0, (stop_host(name)))
    end)

    it("reuses a stale socket left by a host that was killed", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        wait_for("the pid file", function() return slurp(dir .. "/h.pid") end)
        os.execute("kill -KILL " .. slurp(dir .. "/h.pid"):match("%d+"))
        wait_for("the killed host", function() return exit_code("h") end)
        assert.is_true(exists(sock))
        -- attach says no one listens there
        local code, _, err = attach("1\n")
        assert.are.equal(1, code)
        assert_contains(err, sock)
        assert_contains(err, "refused")
        local name2 = start_host("h2", "--console", sock)
        wait_listening(name2)
        local code2, out2, err2 = attach("3 * 3\n")
        assert.are.equal(0, code2, err2)
        assert_contains(out2, "\n9\n")
        assert.are.equal(0, (stop_host(name2)))
    end)

    it("refuses to start when PATH is not a socket, naming it", function()
        write(sock, "precious data\n")
        local name = start_host("h", "--console", sock)
        wait_for("ms-host to exit", function() return exit_code(name) end)
        assert.are.equal("2\n", slurp(dir .. "/h.code"))
        local err = slurp(dir .. "/h.err")
        assert_contains(err, "console " .. sock .. " exists and is not a socket")
        assert.are.equal("precious data\n", slurp(sock))
    end)

    it("refuses to start when another host listens on PATH", function()
        local name = start_host("h", "--console", sock)
        wait_listening(name)
        local other = start_host("h2", "--console", sock)
        wait_for("the second host to exit", function() return exit_code("h2") end)
        assert.are.equal("2\n", slurp(dir .. "/" .. other .. ".code"))
        assert_contains(slurp(dir .. "/h2.err"), "another process is listening on it")
        assert.are.equal(0, (stop_host(name)))
    end)

    describe("the wire protocol (docs/console.md), from a raw client", function()
        local ffi = require "ffi"
        pcall(ffi.cdef, [[
            struct ms_spec_sockaddr_un { unsigned short family; char path[108]; };
            int socket(int domain, int type, int protocol);
            int connect(int fd, const void *addr, unsigned int len);
            long write(int fd, const void *buf, unsigned long n);
            long read(int fd, void *buf, unsigned long n);
            int close(int fd);
        ]])
        local C = ffi.C

        local function connect()
            local fd = C.socket(1 --[[AF_UNIX]], 1 --[[SOCK_STREAM]], 0)
            assert(fd >= 0, "socket")
            local addr = ffi.new("struct ms_spec_sockaddr_un")
            addr.family = 1
            ffi.copy(addr.path, sock)
            assert(C.connect(fd, addr, ffi.sizeof(addr)) == 0, "connect " .. sock)
            return fd
        end

        local function send(fd, bytes)
            assert(C.write(fd, bytes, #bytes) == #bytes, "write")
        end

        -- Reads until the host closes the connection or want bytes came.
        local function receive(fd, want)
            local buf = ffi.new("char[65536]")
            local got = {}
            local len = 0
            while not want or len < want do
                local n = tonumber(C.read(fd, buf, want and want - len or 65536))
                if n <= 0 then break end
                got[#got + 1] = ffi.string(buf, n)
                len = len + n
            end
            return table.concat(got)
        end

        -- The banner frame, whole.
        local function banner(fd)
            local head = ""
            while not head:find("\n") do head = head .. receive(fd, 1) end
            local kind, n = head:match("^(%a+) (%d+)\n$")
            assert.are.equal("out", kind)
            return receive(fd, tonumber(n))
        end

        it("answers each line frame with one out or more frame", function()
            local name = start_host("h", "--console", sock)
            wait_listening(name)
            local fd = connect()
            assert_contains(banner(fd), "ms-host REPL")
            send(fd, "line 3\n1+1")
            assert.are.equal("out 2\n2\n", receive(fd, 8))
            send(fd, "line 12\nfunction f()")
            assert.are.equal("more 0\n", receive(fd, 7))
            send(fd, "line 13\nreturn 41 end" .. "line 5\nf()+1")
            assert.are.equal("out 0\nout 3\n42\n", receive(fd, 15))
            C.close(fd)
            assert.are.equal(0, (stop_host(name)))
        end)

        it("answers a malformed frame with an error frame and closes", function()
            local name = start_host("h", "--console", sock)
            wait_listening(name)
            local fd = connect()
            banner(fd)
            send(fd, "hello there\n")
            local rest = receive(fd)
            assert.is_truthy(rest:match("^error %d+\nprotocol error"), rest)
            C.close(fd)
            local code, out, err = attach("'fine'\n")
            assert.are.equal(0, code, err)
            assert_contains(out, '"fine"')
            assert.are.equal(0, (stop_host(name)))
        end)

        it("shrugs off a client that leaves in the middle of a frame", function()
            local name = start_host("h", "--console", sock)
            wait_listening(name)
            for _ = 1, 5 do
                local fd = connect()
                send(fd, "line 100\nreturn 'half")
                C.close(fd)
            end
            local code, out, err = attach("#agents()\n")
            assert.are.equal(0, code, err)
            local status, hout, herr = stop_host(name)
            assert.are.equal(0, status, herr)
            assert.is_truthy(hout:match("^main ok %d+\n$"), hout)
            assert_contains(out, "\n")
        end)
    end)

    describe("attach names PATH when it cannot connect", function()
        it("to a missing socket", function()
            local code, out, err = attach("1\n", dir .. "/absent.sock")
            assert.are.equal(1, code)
            assert.are.equal("", out)
            assert_contains(err, "cannot connect to " .. dir .. "/absent.sock")
            assert_contains(err, "No such file or directory")
        end)

        it("to a file that is not a socket", function()
            local path = write(dir .. "/plain", "x")
            local code, _, err = attach("1\n", path)
            assert.are.equal(1, code)
            assert_contains(err, "cannot connect to " .. path .. ": not a socket")
        end)

        it("to a socket it may not open", function()
            local p = io.popen("id -u")
            local uid = p:read("*l")
            p:close()
            if uid == "0" then return end -- root is not refused
            local name = start_host("h", "--console", sock)
            wait_listening(name)
            os.execute("chmod 000 " .. q(sock))
            local code, _, err = attach("1\n")
            assert.are.equal(1, code)
            assert_contains(err, "cannot connect to " .. sock)
            assert_contains(err, "Permission denied")
        end)
    end)

    it("exits 2 with usage help when attach has no PATH", function()
        os.execute(("%s attach >%s/u.out 2>%s/u.err; echo $? >%s/u.code"):format(q(HOST), dir,
            dir, dir))
        assert.are.equal("2\n", slurp(dir .. "/u.code"))
        assert_contains(slurp(dir .. "/u.err"), "ms-host attach PATH")
    end)
end)
