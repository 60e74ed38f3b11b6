-- ms.process: child processes for agents.  Each case runs `ms-host run` on
-- a script that checks itself, so the spec also runs against the
-- sanitizer builds' ms-host.  Children are counted with ps --ppid.
-- spec-kind: subprocess
local h = require "spec.support.helpers"

local HOST, q = h.host, h.shell_quote

local function ok_run(script, extra, prefix)
    local path = h.tmpfile(script, ".lua")
    local out, err = os.tmpname(), os.tmpname()
    local rc = os.execute(("%s timeout -k 5 120 %s run %s --workers 2 %s >%s 2>%s </dev/null")
        :format(prefix or "", q(HOST), q(path), extra or "", q(out), q(err)))
    local o, e = h.slurp(out), h.slurp(err)
    os.remove(path) os.remove(out) os.remove(err)
    assert(rc == 0 or rc == true,
        ("ms-host exited %s\n--- stdout:\n%s--- stderr:\n%s"):format(tostring(rc), o, e))
    return o
end

local PRELUDE = [[
-- The host's children: "STAT" of each (Z for a zombie), by ps.
local function children()
    local ok, list = ms.blocking(function()
        local p = io.popen("ps -o stat= --ppid $PPID")
        local t = {}
        for line in p:lines() do t[#t + 1] = line end
        p:close()
        return t
    end)
    assert(ok, list)
    return list
end
local function fds()
    local ok, n = ms.blocking(function()
        local p = io.popen("ls /proc/$PPID/fd | wc -l")
        local n = tonumber(p:read("*a"))
        p:close()
        return n
    end)
    assert(ok, n)
    return n
end
local function eventually(cond, what)
    for _ = 1, 2000 do
        if cond() then return end
        ms.sleep(0.01)
    end
    error("never happened: " .. what, 2)
end
-- ps itself is a child while it runs (and its shell): at most those two.
local function no_children() return #children() <= 2 end
]]

describe("ms.process", function()
    it("runs a program with args, env and cwd, its output and exit code read back", function()
        local out = ok_run(PRELUDE .. [[
local p = assert(ms.process.spawn{ "sh", "-c", "echo out; echo err >&2; echo $FOO; pwd; exit 3",
                                   env = { FOO = "bar" }, cwd = "/", stderr = "pipe" })
assert(p:pid() > 0)
assert(p.stdout:read("a", 30) == "out\nbar\n/\n")
assert(p.stderr:read("a", 30) == "err\n")
local code, sig = p:wait(30)
assert(code == 3 and sig == nil, tostring(code))
assert(p:wait() == 3)                -- again: the same answer
local cat = assert(ms.process.spawn{ "cat", stdin = "pipe" })
assert(cat.stdin:write("through cat\n"))
assert(cat.stdin:shutdown(30))
assert(cat.stdout:read("l", 30) == "through cat")
assert(cat:wait(30) == 0)
assert(ms.metrics().io.processes_spawned >= 2)
print("process ok")
]])
        h.assert_contains(out, "process ok")
    end)

    it("reports a program that does not exist, and bad specs by name", function()
        local out = ok_run(PRELUDE .. [[
local p, err = ms.process.spawn{ "/no/such/program" }
assert(p == nil and err.message:find("/no/such/program") and err.message:find("ENOENT"),
       tostring(err))
local p2, err2 = ms.process.spawn{ "no-such-program-in-path-xyz" }
assert(p2 == nil and tostring(err2):find("ENOENT"))
for _, bad in ipairs{ {}, { {} }, { "ls", stdout = "file" }, { "ls", env = { A = {} } },
                       { "ls", cwd = 3 }, { "a\0b" } } do
    local ok, e = pcall(ms.process.spawn, bad)
    assert(not ok and tostring(e):find("ms.process.spawn"), tostring(e))
end
local ok, e = pcall(ms.process.spawn, setmetatable({ "ls" }, { __index = function() error("ran") end }))
assert(not ok and tostring(e):find("plain table"), tostring(e))
local p3 = assert(ms.process.spawn{ "true" })
local ok4, e4 = pcall(p3.kill, p3, "NOPE")
assert(not ok4 and tostring(e4):find("signal"))
print("errors ok")
]])
        h.assert_contains(out, "errors ok")
    end)

    it("kills, times out a wait, and leaves no zombie", function()
        local out = ok_run(PRELUDE .. [[
local s = assert(ms.process.spawn{ "sleep", "1000" })
local v, e = s:wait(0.05)
assert(v == nil and e == "timeout")
assert(s:kill("KILL") == true)
local code, sig = s:wait(30)
assert(code == nil and sig == 9, tostring(sig))
for i = 1, 20 do assert(ms.process.spawn{ "true" }):wait(30) end
eventually(no_children, "every child reaped")
for _, st in ipairs(children()) do assert(not st:find("Z"), "a zombie") end
print("kill ok")
]])
        h.assert_contains(out, "kill ok")
    end)

    it("a stopped agent waiting on a process kills it and closes its pipes", function()
        local out = ok_run(PRELUDE .. [[
ms.process.spawn{ "true" }:wait(30)  -- warm up libuv's own descriptors
eventually(no_children, "no children at first")
local before = fds()
local a = ms.agent.spawn{ fn = function()
    local p = assert(ms.process.spawn{ "sleep", "1000", stdin = "pipe", stderr = "pipe" })
    local q = assert(ms.process.spawn{ "sleep", "1000" })
    ms.spawn(function() q.stdout:read("a") end)
    p:wait()
end }
ms.monitor(a)
eventually(function() return #children() >= 3 end, "the children run")
a:stop()
assert(ms.recv(30).reason == "killed")
eventually(no_children, "the children killed and reaped")
eventually(function() return fds() <= before end, "descriptors back")
local keep = ms.agent.spawn{ fn = function()
    ms.process.spawn{ "sh", "-c", "sleep 0.3", kill_on_exit = false }
end }
ms.monitor(keep)
ms.recv(30)
eventually(no_children, "the detached child ends and is reaped")
print("stop ok")
]])
        h.assert_contains(out, "stop ok")
    end)

    it("running out of descriptors is an error value", function()
        local out = ok_run(PRELUDE .. [[
local held, err = {}, nil
for i = 1, 100 do
    local p, e = ms.process.spawn{ "sleep", "1000", stdin = "pipe", stderr = "pipe" }
    if not p then err = e break end
    held[#held + 1] = p
end
assert(err, "no error with ulimit -n 64")
assert(tostring(err):find("EMFILE") or tostring(err):find("too many"), tostring(err))
for _, p in ipairs(held) do p:close() end
held = nil
eventually(no_children, "children killed")
print("emfile ok")
]], nil, "ulimit -n 64;")
        h.assert_contains(out, "emfile ok")
    end)
end)
