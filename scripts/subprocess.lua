-- subprocess.lua: a pipeline of two programs run by an agent,
--   seq 1 100000 | awk '{ s += $1 } END { printf "%.0f\n", s }'
-- with the agent as the pipe: a task copies the first program's stdout
-- into the second's stdin (reads and writes wait on back-pressure; no
-- worker blocks), and the second's output is collected and checked.
--   ms-host run scripts/subprocess.lua
-- docs/io.md describes ms.process; a program that does not exist, a
-- timeout and a kill are shown at the end.

local N = 100000

local seq = assert(ms.process.spawn{ "seq", "1", tostring(N) })
local sum = assert(ms.process.spawn{ "awk", "{ s += $1 } END { printf \"%.0f\\n\", s }", stdin = "pipe" })

-- The pipe between them.
local pump = ms.spawn(function()
    local bytes = 0
    while true do
        local chunk = seq.stdout:read(nil, 30)   -- whatever has arrived
        if not chunk then break end
        assert(sum.stdin:write(chunk, 30))
        bytes = bytes + #chunk
    end
    assert(sum.stdin:shutdown(30))               -- awk sees the end of its input
    return bytes
end)

local output = assert(sum.stdout:read("a", 30))
local _, bytes = assert(pump:join(30))
local seq_code = seq:wait(30)
local sum_code = sum:wait(30)
print(("subprocess: seq | awk: %d bytes through the agent, awk printed %s"):format(
    bytes, output:gsub("%s+$", "")))
print(("subprocess: exit codes seq %d, awk %d"):format(seq_code, sum_code))
assert(tonumber(output) == N * (N + 1) / 2, "wrong sum: " .. output)
assert(seq_code == 0 and sum_code == 0)

-- Errors are values: a missing program, a wait that times out, a kill.
local missing, err = ms.process.spawn{ "no-such-program-here" }
print("subprocess: a missing program: " .. tostring(err))
assert(missing == nil)
local slow = assert(ms.process.spawn{ "sleep", "60" })
print("subprocess: wait with a timeout: " .. tostring(select(2, slow:wait(0.1))))
slow:kill("TERM")
local code, signal = slow:wait(30)
print(("subprocess: after kill: code %s, signal %s"):format(tostring(code), tostring(signal)))
assert(code == nil and signal == 15)
print(("subprocess: %d processes spawned"):format(ms.metrics().io.processes_spawned))
