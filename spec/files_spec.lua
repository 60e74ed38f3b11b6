-- ms.fs (docs/files.md): files and directories from agents, every call a
-- job on the blocking pool.  Each case runs a real `ms-host run` on a
-- script that checks what it wants with assert() and prints PASS; the
-- script gets a fresh directory as arg[1].
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/files_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local script_run = require "spec.support.script_run"
local h = require "spec.support.helpers"
local q = h.shell_quote

-- Helpers every script starts with: the directory, and error checks.
local PRELUDE = [[
local ms = require "ms"
local dir = assert(arg[1])
local function fails(errno, pattern, v, err)
    assert(v == nil, "expected a failure, got " .. tostring(v))
    assert(type(err) == "table", "expected an error value, got " .. tostring(err))
    assert(err.errno == errno, ("errno %s, wanted %s (%s)"):format(tostring(err.errno), errno,
        tostring(err.message)))
    assert(err.code == "IoError", tostring(err.code))
    assert(tostring(err.message):find(pattern, 1, true),
        ("message %q lacks %q"):format(tostring(err.message), pattern))
    return err
end
local function wait_until(cond, what)
    local deadline = ms.now() + 60
    while not cond() do
        assert(ms.now() < deadline, "not in time: " .. what)
        ms.sleep(0.01)
    end
end
]]

local function pass(body, opts)
    return script_run.pass(PRELUDE .. body, opts)
end

describe("ms.fs whole files", function()
    it("write_file then read_file gives the bytes back, NULs and all", function()
        pass [[
local data = "line one\n\0binary\255\254" .. string.rep("x", 100000)
assert(ms.fs.write_file(dir .. "/f.bin", data) == true)
assert(ms.fs.read_file(dir .. "/f.bin") == data)
assert(ms.fs.write_file(dir .. "/empty", "") == true)
assert(ms.fs.read_file(dir .. "/empty") == "")
print("PASS")
]]
    end)

    it("write_file replaces atomically: no temporary file is left, the mode is kept", function()
        pass [[
assert(ms.fs.write_file(dir .. "/cfg", "old", { mode = tonumber("600", 8) }))
assert(ms.fs.stat(dir .. "/cfg").mode == tonumber("600", 8))
assert(ms.fs.write_file(dir .. "/cfg", "new"))
assert(ms.fs.read_file(dir .. "/cfg") == "new")
assert(ms.fs.stat(dir .. "/cfg").mode == tonumber("600", 8), "the old file's mode")
local names = ms.fs.list(dir)
assert(#names == 1 and names[1] == "cfg", table.concat(names, ","))
print("PASS")
]]
    end)

    it("read_file refuses a file longer than the agent's memory limit leaves", function()
        pass [[
local big = string.rep("b", 8 * 1024 * 1024)
assert(ms.fs.write_file(dir .. "/big", big))
local a = ms.agent.spawn{ memory_limit = 4 * 1024 * 1024, args = { dir = dir }, fn = function(args)
    local ms = require "ms"
    local v, err = ms.fs.read_file(args.dir .. "/big")
    assert(v == nil and err.errno == "EFBIG", tostring(err and err.message))
    assert(err.message:find("cannot read " .. args.dir .. "/big: File too large", 1, true), err.message)
    local f = assert(ms.fs.open(args.dir .. "/big"))
    local part = assert(f:read(64 * 1024 * 1024))
    assert(#part > 0 and #part < 4 * 1024 * 1024, "a short read: " .. #part)
    f:close()
end }
ms.monitor(a)
local notice = ms.recv(60)
assert(notice.reason == "normal", notice.reason .. " " .. tostring(notice.message))
assert(#assert(ms.fs.read_file(dir .. "/big")) == #big, "no limit in the main agent")
print("PASS")
]]
    end)

    it("read_file of a missing file, of a directory; write_file into a missing directory", function()
        pass [[
fails("ENOENT", "ms.fs.read_file: cannot open " .. dir .. "/nope: No such file or directory",
    ms.fs.read_file(dir .. "/nope"))
fails("EISDIR", "cannot open " .. dir .. ": Is a directory", ms.fs.read_file(dir))
local err = fails("ENOENT", dir .. "/no/such/f", ms.fs.write_file(dir .. "/no/such/f", "x"))
assert(err.path == dir .. "/no/such/f")
print("PASS")
]]
    end)
end)

describe("ms.fs file handles", function()
    it("open, write, seek, read, close", function()
        pass [[
local f = assert(ms.fs.open(dir .. "/h.txt", "w+"))
assert(f:path() == dir .. "/h.txt")
assert(f:write("hello ") == true)
assert(f:write("world") == true)
assert(f:seek("cur") == 11)
assert(f:seek("set", 6) == 6)
assert(f:read(3) == "wor")
assert(f:read() == "ld")
assert(f:read() == "", "end of file reads as an empty string")
assert(f:seek("end") == 11)
assert(f:close() == true)
assert(f:close() == true, "a second close does nothing")
assert(f:path() == nil)
local ok, err = pcall(f.read, f)
assert(not ok and err:find("the file is closed", 1, true), err)
local a = assert(ms.fs.open(dir .. "/h.txt", "a"))
assert(a:write("!"))
assert(a:close())
assert(ms.fs.read_file(dir .. "/h.txt") == "hello world!")
local ok2, err2 = pcall(ms.fs.open, dir .. "/h.txt", "rw")
assert(not ok2 and err2:find("mode must be", 1, true), err2)
fails("EEXIST", "File exists", ms.fs.open(dir .. "/h.txt", "wx"))
print("PASS")
]]
    end)

    it("a handle serves one call at a time; a second task gets an error, not a race", function()
        pass [[
-- A FIFO opened for reading and writing: a read waits until data comes.
assert(os.execute("mkfifo " .. dir .. "/one") == 0)
local f = assert(ms.fs.open(dir .. "/one", "r+"))
local t1 = ms.spawn(function() return f:read(10) end)
local t2 = ms.spawn(function() return pcall(f.read, f, 10) end)
local ok2, pok, v2 = t2:join(60)
assert(ok2 and pok == false and v2:find("another task is using", 1, true), tostring(v2))
local w = assert(ms.fs.open(dir .. "/one", "w"))
assert(w:write("zz"))
local ok1, s1 = t1:join(60)
assert(ok1 and s1 == "zz", tostring(s1))
assert(w:close() and f:close())
print("PASS")
]]
    end)

    it("open of a missing file, a directory, and a file inside a file", function()
        pass [[
fails("ENOENT", "ms.fs.open: cannot open " .. dir .. "/nope: No such file or directory",
    ms.fs.open(dir .. "/nope"))
fails("EISDIR", "Is a directory", ms.fs.open(dir, "r"))
assert(ms.fs.write_file(dir .. "/plain", "x"))
fails("ENOTDIR", "Not a directory", ms.fs.open(dir .. "/plain/inner", "w"))
print("PASS")
]]
    end)

    it("handles an agent forgets are closed when collected and when the agent ends", function()
        pass [[
local base = ms.metrics().files.open
for i = 1, 20 do assert(ms.fs.open(dir .. "/g" .. i, "w")) end
collectgarbage(); collectgarbage()
assert(ms.metrics().files.open == base, "collected handles closed their files")
local a = ms.agent.spawn{ args = { dir = dir }, fn = function(args)
    local ms = require "ms"
    local keep = {}
    for i = 1, 5 do keep[i] = assert(ms.fs.open(args.dir .. "/k" .. i, "w")) end
    ms.recv() -- holds them until stopped
end }
ms.monitor(a)
wait_until(function() return ms.metrics().files.open == base + 5 end, "the agent's 5 files")
a:stop()
local notice = ms.recv(60)
assert(notice and notice.event == "exit")
assert(ms.metrics().files.open == base, "the ended agent's files are closed")
print("PASS")
]]
    end)
end)

describe("ms.fs directories and paths", function()
    it("stat, list, mkdir, rename, remove", function()
        pass [[
assert(ms.fs.mkdir(dir .. "/a/b/c", { parents = true }))
assert(ms.fs.mkdir(dir .. "/a/b/c", { parents = true }), "parents: an existing one is fine")
fails("EEXIST", "cannot make the directory " .. dir .. "/a: File exists", ms.fs.mkdir(dir .. "/a"))
fails("ENOENT", "No such file or directory", ms.fs.mkdir(dir .. "/x/y"))
assert(ms.fs.write_file(dir .. "/a/z", "12345"))
assert(ms.fs.write_file(dir .. "/a/m", ""))
local names = ms.fs.list(dir .. "/a")
assert(table.concat(names, ",") == "b,m,z", table.concat(names, ","))
local st = ms.fs.stat(dir .. "/a/z")
assert(st.type == "file" and st.size == 5 and st.mtime > 0 and st.nlink == 1)
assert(ms.fs.stat(dir .. "/a").type == "directory")
assert(ms.fs.rename(dir .. "/a/z", dir .. "/a/y"))
fails("ENOENT", "ms.fs.stat: cannot stat " .. dir .. "/a/z", ms.fs.stat(dir .. "/a/z"))
assert(ms.fs.read_file(dir .. "/a/y") == "12345")
fails("ENOENT", "ms.fs.rename: cannot rename " .. dir .. "/a/z", ms.fs.rename(dir .. "/a/z", dir .. "/q"))
fails("ENOTDIR", "ms.fs.list: cannot list " .. dir .. "/a/y: Not a directory", ms.fs.list(dir .. "/a/y"))
fails("ENOENT", "cannot list", ms.fs.list(dir .. "/none"))
fails("ENOTEMPTY", "ms.fs.remove: cannot remove " .. dir .. "/a", ms.fs.remove(dir .. "/a"))
assert(ms.fs.remove(dir .. "/a/y"))
fails("ENOENT", "cannot remove", ms.fs.remove(dir .. "/a/y"))
assert(ms.fs.remove(dir .. "/a/m"))
assert(ms.fs.remove(dir .. "/a/b/c"))
print("PASS")
]]
    end)

    it("refuses bad arguments with errors that name them", function()
        pass [[
for _, case in ipairs {
    { function() return ms.fs.read_file("") end, "the path is empty" },
    { function() return ms.fs.read_file("a\0b") end, "the path contains a NUL byte" },
    { function() return ms.fs.read_file(string.rep("p", 5000)) end, "longer than PATH_MAX" },
    { function() return ms.fs.stat(42 == 42 and {} ) end, "string expected" },
    { function() return ms.fs.write_file(dir .. "/w", "x", { mode = -1 }) end, "mode must be" },
    { function() local f = ms.fs.open(dir .. "/w", "w"); return f:read(0) end, "n must be 1" },
} do
    local ok, err = pcall(case[1])
    assert(not ok and tostring(err):find(case[2], 1, true), tostring(err))
end
print("PASS")
]]
    end)

    it("is not available in a sandboxed agent", function()
        pass [[
local a = ms.agent.spawn{ sandbox = true, fn = function()
    local ms = require "ms"
    ms.fs.read_file("/etc/hostname")
end }
ms.monitor(a)
local notice = ms.recv(60)
assert(notice.reason == "error", notice.reason)
assert(notice.message:find("files are not available in a sandboxed agent", 1, true), notice.message)
print("PASS")
]]
    end)
end)

describe("ms.fs limits", function()
    it("agent_io_limit caps each agent's files and sockets together, naming the field", function()
        pass([[
local f1 = assert(ms.fs.open(dir .. "/1", "w"))
local l = assert(ms.net.listen("127.0.0.1:0"))
local f3 = assert(ms.fs.open(dir .. "/3", "w"))
local v, err = ms.fs.open(dir .. "/4", "w")
assert(v == nil and err.code == "ResourceExhausted", tostring(err))
assert(err.message:find("ms.fs.open: agent main holds 3 open I/O handles", 1, true), err.message)
assert(err.message:find("agent_io_limit", 1, true), err.message)
-- the other way round: the files count against a socket
local s, serr = ms.net.listen("127.0.0.1:0")
assert(s == nil and tostring(serr):find("agent_io_limit", 1, true), tostring(serr))
-- a socket closed makes room for a file
l:close()
local f2 = assert(ms.fs.open(dir .. "/2", "w"))
assert(f2:close())
-- an agent that ends with files open closes them
local before = ms.metrics().files.open
local leaker = ms.agent.spawn{ args = { dir = dir }, fn = function(args)
    local ms = require "ms"
    _G.kept = { assert(ms.fs.open(args.dir .. "/l1", "w")), assert(ms.fs.open(args.dir .. "/l2", "w")) }
end }
ms.monitor(leaker)
assert(ms.recv(60).reason == "normal")
assert(ms.metrics().files.open == before, ms.metrics().files.open .. " " .. before)
-- another agent has its own count
local a = ms.agent.spawn{ args = { dir = dir }, fn = function(args)
    local ms = require "ms"
    local f = assert(ms.fs.open(args.dir .. "/other", "w"))
    return f:close()
end }
ms.monitor(a)
assert(ms.recv(60).reason == "normal")
assert(f3:close())
local f4 = assert(ms.fs.open(dir .. "/4", "w"))
-- live: raising the limit lets more open at once
ms.tune{ agent_io_limit = 10 }
assert(ms.fs.open(dir .. "/5", "w"))
print("PASS")
]], { args = "--set agent_io_limit=3" })
    end)

    it("EMFILE from the system is an error value, and the agent goes on", function()
        pass([[
local files, err = {}, nil
for i = 1, 1000 do
    local f, e = ms.fs.open(dir .. "/e" .. i, "w")
    if not f then err = e break end
    files[#files + 1] = f
end
assert(err, "the process limit was never reached")
assert(err.errno == "EMFILE", tostring(err.errno) .. " " .. tostring(err.message))
assert(err.message:find("Too many open files", 1, true), err.message)
for _, f in ipairs(files) do assert(f:close()) end
local again = assert(ms.fs.open(dir .. "/after", "w"))
assert(again:close())
print("PASS")
]], { prefix = "ulimit -n 100;", args = "--set agent_io_limit=0" })
    end)

    it("EACCES names the path", function()
        local dir = script_run.new_dir()
        h.write_file(dir .. "/secret", "s")
        os.execute("chmod 000 " .. q(dir .. "/secret") .. "; chmod 555 " .. q(dir))
        local root = (io.popen("id -u"):read("*l")) == "0"
        -- root passes permission checks: run as nobody (the directory and
        -- the script are world-readable).
        local prefix = root and "setpriv --reuid=65534 --regid=65534 --clear-groups" or ""
        os.execute("chmod 755 " .. q(dir) .. "/.. 2>/dev/null")
        local ok, err = pcall(pass, [[
fails("EACCES", "ms.fs.read_file: cannot open " .. dir .. "/secret: Permission denied",
    ms.fs.read_file(dir .. "/secret"))
fails("EACCES", "ms.fs.write_file: cannot create a temporary file beside " .. dir .. "/new: Permission denied",
    ms.fs.write_file(dir .. "/new", "x"))
fails("EACCES", "Permission denied", ms.fs.open(dir .. "/new", "w"))
fails("EACCES", "Permission denied", ms.fs.mkdir(dir .. "/sub"))
print("PASS")
]], { prefix = prefix, dir = dir })
        script_run.remove(dir)
        assert(ok, err)
    end)
end)

describe("ms.fs and stopping", function()
    it("a stopped agent does not wait for its job; the job's descriptor is closed when it ends", function()
        pass [[
local fifo = dir .. "/fifo"
assert(os.execute("mkfifo " .. fifo) == 0)
local before = ms.metrics()
-- Opening a FIFO for reading blocks (in the job) until a writer comes.
local a = ms.agent.spawn{ args = { fifo = fifo }, fn = function(args)
    local ms = require "ms"
    ms.fs.open(args.fifo, "r")
    error("the open returned")
end }
ms.monitor(a)
wait_until(function() return ms.metrics().files.jobs > before.files.jobs end, "the job started")
a:stop()
local notice = ms.recv(60)
assert(notice.event == "exit" and notice.reason == "killed", tostring(notice.reason))
-- The job is still blocked in open(2); nothing was opened for the agent.
assert(ms.metrics().files.open == before.files.open)
assert(ms.metrics().files.discarded == before.files.discarded)
-- A writer releases it: the result is discarded, its descriptor closed.
assert(os.execute("(echo x > " .. fifo .. ") &") == 0)
wait_until(function() return ms.metrics().files.discarded == before.files.discarded + 1 end,
    "the discarded result")
assert(ms.metrics().files.open == before.files.open)
print("PASS")
]]
    end)

    it("file calls run on the blocking pool and are counted there and in files", function()
        pass [[
local before = ms.metrics()
assert(ms.fs.write_file(dir .. "/c", string.rep("c", 1000)))
assert(#ms.fs.read_file(dir .. "/c") == 1000)
local after = ms.metrics()
assert(after.blocking_jobs_total >= before.blocking_jobs_total + 2)
assert(after.files.jobs == before.files.jobs + 2)
assert(after.files.bytes_written == before.files.bytes_written + 1000)
assert(after.files.bytes_read == before.files.bytes_read + 1000)
print("PASS")
]]
    end)
end)
