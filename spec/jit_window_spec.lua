-- The JIT and its machine-code window (docs/host.md, "The JIT and its
-- window"): a state whose machine code cannot be allocated switches to the
-- interpreter once, instead of retrying for ever, and finishes its loop; a
-- new agent gets no JIT while the window has no room; both show in
-- ms.metrics().jit.
--
-- The window is filled for real: the script maps PROT_NONE memory (FFI
-- mmap, MAP_FIXED_NOREPLACE) over every gap within 1 GB of LuaJIT's code,
-- so every allocation LuaJIT tries there fails as it would on a host whose
-- other mappings took the window.  Nothing here depends on timing.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/jit_window_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local script_run = require "spec.support.script_run"

-- Maps PROT_NONE over the gaps within reach of LuaJIT's code; returns the
-- bytes mapped.  Two passes: another thread may map into a gap meanwhile.
local FILL = [[
local ffi = require "ffi"
ffi.cdef [=[
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int lua_pcall(void *L, int nargs, int nresults, int errfunc);
]=]
local MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x2, 0x20, 0x4000, 0x100000
local GB = 2 ^ 30
local function fill_window()
    local vm = tonumber(ffi.cast("uintptr_t", ffi.cast("void *", ffi.C.lua_pcall)))
    local total = 0
    for _ = 1, 2 do
        local ranges, lo, hi = {}
        for line in io.lines("/proc/self/maps") do
            local s, e = line:match("^(%x+)%-(%x+)")
            s, e = tonumber(s, 16), tonumber(e, 16)
            ranges[#ranges + 1] = { s, e }
            if s <= vm and vm < e then lo, hi = s - GB, e + GB end
        end
        assert(lo, "no mapping holds lua_pcall")
        local cursor = lo
        local function map_gap(a, b)
            if b <= a then return end
            local p = ffi.C.mmap(ffi.cast("void *", a), b - a, 0,
                MAP_PRIVATE + MAP_ANONYMOUS + MAP_NORESERVE + MAP_FIXED_NOREPLACE, -1, 0)
            if tonumber(ffi.cast("uintptr_t", p)) == a then total = total + (b - a) end
        end
        for _, r in ipairs(ranges) do
            local s, e = r[1], r[2]
            if e > cursor then
                map_gap(cursor, math.min(s, hi))
                cursor = e
            end
            if cursor >= hi then break end
        end
        map_gap(cursor, hi)
    end
    return total
end
]]

-- A hot loop's sum, the JIT's state before and after it, and the
-- allocation failures the agent's own trace handler saw.
local WORKER = [[
local function worker()
    local had = jit.status()
    local mcode_failures = 0
    jit.attach(function(what, _, _, _, err)
        if what == "abort" and err == 27 then mcode_failures = mcode_failures + 1 end
    end, "trace")
    local _, main = ms.recv()
    main:send(had)
    ms.recv() -- "go"
    jit.flush() -- whatever the state compiled so far: the loop needs a new area
    local t, s = { a = 1, b = 2, c = 3 }, 0
    for _ = 1, 50000 do s = s + t.a + t.b + t.c end
    local on_ok, on_err = pcall(jit.on)
    main:send({ had = had, now = (jit.status()), sum = s, mcode_failures = mcode_failures,
                on_ok = on_ok, on_err = tostring(on_err) })
end
]]

describe("the JIT's machine-code window", function()
    it("reports the window and the states with the JIT in ms.metrics().jit", function()
        script_run.pass([[
local ms = require "ms"
local a = ms.agent.spawn{ fn = function()
    local _, main = ms.recv()
    main:send(jit.status())
end }
a:send("hello")
assert(ms.recv() == true, "a new agent with room in the window has the JIT")
local j = ms.metrics().jit
assert(j.window_areas > 1000, "window_areas " .. tostring(j.window_areas))
assert(j.window_free_areas > j.window_reserve_areas, "a fresh host has room")
assert(j.states >= 1 and j.granted >= 2, ("states %d granted %d"):format(j.states, j.granted))
assert(j.fallbacks == 0 and j.refused == 0 and j.limited == 0)
assert(j.mappings > 0 and j.max_mappings >= j.mappings and j.measurements >= 1)
-- The trace error the fallback looks for is LuaJIT's allocation failure.
local ok, vmdef = pcall(require, "jit.vmdef")
if ok then
    assert(vmdef.traceerr[27] == "failed to allocate mcode memory", vmdef.traceerr[27])
else
    print("jit.vmdef not found: the error number is not checked")
end
print("PASS")
]])
    end)

    it("switches a state whose machine code cannot be allocated to the interpreter, once", function()
        script_run.pass(FILL .. WORKER .. [[
local ms = require "ms"
local w = ms.agent.spawn{ name = "worker", fn = worker }
w:send("hello")
assert(ms.recv() == true, "the worker starts with the JIT")
assert(fill_window() > 0, "nothing to fill")
w:send("go")
local r = ms.recv()
assert(r.sum == 300000, "the loop's sum: " .. tostring(r.sum))
assert(r.had == true and r.now == false, "the worker interprets after the failure")
-- One failure switches a state with no machine code off (two when it had
-- some: LuaJIT flushes it and the next first allocation fails too); the
-- retry storm would be thousands.
assert(r.mcode_failures >= 1 and r.mcode_failures <= 2, "failures " .. r.mcode_failures)
assert(not r.on_ok and r.on_err:find("could not allocate machine code", 1, true), r.on_err)
local j = ms.metrics().jit
assert(j.fallbacks >= 1, "fallbacks " .. j.fallbacks)

-- Agents opening jit start a measurement of the window (on the blocking
-- pool); once one has ended, a new agent gets no JIT: there is no room.
local m0 = j.measurements
for _ = 1, 600 do
    if ms.metrics().jit.measurements > m0 then break end
    ms.agent.spawn{ fn = function() return jit.status() end }
    ms.sleep(0.05)
end
assert(ms.metrics().jit.measurements > m0, "no measurement after the fallback")
local x = ms.agent.spawn{ fn = function()
    local _, main = ms.recv()
    local t, s = { a = 1 }, 0
    for _ = 1, 50000 do s = s + t.a end
    main:send({ on = (jit.status()), sum = s })
end }
x:send("hello")
local rx = ms.recv()
assert(rx.on == false and rx.sum == 50000, "the new agent interprets its loop")
assert(ms.metrics().jit.refused >= 1, "refusals " .. ms.metrics().jit.refused)
print("PASS")
]])
    end)

    it("keeps jit_agent_limit as the operator's bound", function()
        script_run.pass([[
local ms = require "ms"
local a = ms.agent.spawn{ fn = function()
    local _, main = ms.recv()
    main:send(jit.status())
end }
a:send("hello")
assert(ms.recv() == false, "past jit_agent_limit = 1 (the main agent) a new agent interprets")
assert(ms.metrics().jit.limited >= 1)
print("PASS")
]], { args = "--set jit_agent_limit=1" })
    end)

    it("calls the agent's own trace handler, and detaches it", function()
        script_run.pass([[
local ms = require "ms"
local a = ms.agent.spawn{ fn = function()
    local _, main = ms.recv()
    local stops = 0
    local function on_trace(what) if what == "stop" then stops = stops + 1 end end
    jit.attach(on_trace, "trace")
    local s = 0
    for i = 1, 1000 do s = s + i end
    local seen = stops
    jit.attach(on_trace)
    jit.flush()
    for i = 1, 1000 do s = s + i end
    main:send({ seen = seen, after = stops - seen })
end }
a:send("hello")
local r = ms.recv()
assert(r.seen >= 1, "the handler saw the loop's trace")
assert(r.after == 0, "a detached handler is not called")
print("PASS")
]])
    end)
end)
