-- Specs for ms-host's metrics collector (--metrics-file PATH, profile
-- fields metrics_file and metrics_interval): every line of the file is one
-- JSON object with a timestamp; the last line is the final state, written
-- at a normal end and during a graceful shutdown on SIGTERM; a file that
-- cannot be opened stops ms-host before it runs anything, naming the path
-- and the OS error; bad values name the field; ms.metrics_history() has
-- the collector's latest and previous snapshots.  Each case runs a real
-- ms-host.  Nothing depends on timing beyond "at least one tick passed".
--
-- Run from the repository root:
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/metrics_file_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local json = require "spec.support.json"

local h = require "spec.support.helpers"
local HOST, shell_quote, slurp, tmpfile = h.host, h.shell_quote, h.slurp, h.tmpfile

-- Runs `ms-host run script args`; returns the exit status and the output.
local function run(script, args)
    local out = os.tmpname()
    local p = io.popen(("timeout 60 %s run %s %s >%s 2>&1; echo \"exit=$?\""):format(
        shell_quote(HOST), shell_quote(script), args, shell_quote(out)))
    local status = p:read("*a")
    p:close()
    local text = slurp(out)
    os.remove(out)
    return tonumber(status:match("exit=(%d+)")), text
end

-- Every line of path, decoded; fails on a line that is not one JSON object.
local function lines_of(path)
    local text = slurp(path)
    assert.are.equal("\n", text:sub(-1), "the file ends with a newline")
    local docs = {}
    for line in text:gmatch("([^\n]*)\n") do
        local ok, doc = pcall(json.decode, line)
        assert(ok, "line " .. (#docs + 1) .. " is not JSON: " .. tostring(doc) .. "\n" .. line)
        assert.are.equal("table", type(doc))
        docs[#docs + 1] = doc
    end
    return docs
end

local function check_lines(docs, reason)
    assert.is_true(#docs >= 2, "at least one periodic line and the final one")
    local prev_time = 0
    for i, d in ipairs(docs) do
        assert.are.equal(i, d.seq, "seq counts the lines")
        assert.are.equal("number", type(d.time))
        assert.is_true(d.time >= prev_time, "time does not go back")
        prev_time = d.time
        assert.are.equal("number", type(d.uptime_ns))
        assert.are.equal(d.workers, d.per_worker.n)
        assert.are.equal("table", type(d.agents))
        assert.are.equal(i == #docs, d.final, "only the last line is final")
    end
    assert.are.equal(reason, docs[#docs].reason)
end

local short = tmpfile([[
for i = 1, 3 do
    ms.agent.spawn{ name = "w" .. i, fn = function() ms.sleep(0.1) end }
end
ms.sleep(0.3)
local latest, previous = ms.metrics_history()
assert(latest and previous, "the collector keeps two snapshots")
assert(latest.time >= previous.time and latest.uptime >= previous.uptime)
assert(latest.workers == 2 and #latest.per_worker == 2)
print("history ok")
]])

describe("ms-host --metrics-file", function()
    it("appends one JSON line per interval and a final line at a normal end", function()
        local path = os.tmpname()
        os.remove(path)
        local code, out = run(short, "--workers 2 --metrics-file " .. shell_quote(path)
            .. " --set metrics_interval=0.05")
        assert.are.equal(0, code, out)
        assert.truthy(out:find("history ok", 1, true), out)
        local docs = lines_of(path)
        check_lines(docs, "exit")
        -- The final line is the state at exit: every agent has ended.
        assert.are.equal(0, docs[#docs].agents.n)
        os.remove(path)
    end)

    it("appends to what the file holds, starting seq again", function()
        local path = tmpfile('{"earlier":true}\n')
        local code, out = run(short, "--workers 2 --metrics-file " .. shell_quote(path)
            .. " --set metrics_interval=0.05")
        assert.are.equal(0, code, out)
        local docs = lines_of(path)
        assert.is_true(docs[1].earlier)
        table.remove(docs, 1)
        check_lines(docs, "exit")
        os.remove(path)
    end)

    it("takes the file and the interval from the profile fields too", function()
        local path = os.tmpname()
        os.remove(path)
        local code, out = run(short, "--workers 2 --set metrics_file=" .. shell_quote(path)
            .. " --set metrics_interval=50ms")
        assert.are.equal(0, code, out)
        check_lines(lines_of(path), "exit")
        os.remove(path)
    end)

    it("writes a final line during a graceful shutdown on SIGTERM", function()
        local path = os.tmpname()
        os.remove(path)
        local script = tmpfile([[
ms.agent.spawn{ name = "looper", fn = function()
    while true do ms.sleep(0.01) end
end }
while true do ms.sleep(0.02) end
]])
        local out = os.tmpname()
        -- Signal once the collector has written a periodic line.
        local cmd = ([[
%s run %s --workers 2 --metrics-file %s --set metrics_interval=0.05 >%s 2>&1 &
p=$!
for i in $(seq 1 500); do [ -s %s ] && break; sleep 0.02; done
kill -TERM $p
wait $p
echo "exit=$?"
]]):format(shell_quote(HOST), shell_quote(script), shell_quote(path), shell_quote(out),
            shell_quote(path))
        local p = io.popen("timeout 60 sh -c " .. shell_quote(cmd))
        local status = p:read("*a")
        p:close()
        assert.are.equal("0", status:match("exit=(%d+)"), slurp(out))
        local docs = lines_of(path)
        check_lines(docs, "SIGTERM")
        os.remove(path)
        os.remove(out)
        os.remove(script)
    end)

    it("fails at startup, naming the path and the OS error, when it cannot open the file",
        function()
        local ran = os.tmpname()
        os.remove(ran)
        local script = tmpfile(("io.open(%q, 'w'):close()"):format(ran))
        local code, out = run(script, "--metrics-file /nonexistent-dir/m.jsonl")
        assert.are.equal(2, code, out)
        assert.truthy(out:find("/nonexistent-dir/m.jsonl", 1, true), out)
        assert.truthy(out:find("No such file or directory", 1, true), out)
        assert.is_nil(io.open(ran), "the script must not have run")
        os.remove(script)
    end)

    it("refuses a metrics_interval out of range, naming the field and the value", function()
        local code, out = run(short, "--metrics-file /dev/null --set metrics_interval=0")
        assert.are.equal(2, code, out)
        assert.truthy(out:find("metrics_interval", 1, true), out)
        assert.truthy(out:find("0", 1, true), out)
        code, out = run(short, "--set metrics_interval=soon")
        assert.are.equal(2, code, out)
        assert.truthy(out:find("metrics_interval", 1, true), out)
        assert.truthy(out:find("'soon'", 1, true), out)
    end)

    it("runs no collector without a file", function()
        local script = tmpfile([[
ms.sleep(0.1)
local latest, previous = ms.metrics_history()
assert(latest == nil and previous == nil)
print("none")
]])
        local code, out = run(script, "--set metrics_interval=0.01")
        assert.are.equal(0, code, out)
        assert.truthy(out:find("none", 1, true), out)
        os.remove(script)
    end)
end)
