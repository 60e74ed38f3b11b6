-- fault/sweep.lua: the allocation-failure sweep (docs/testing.md).
--
--   luajit fault/sweep.lua --host build/fault/ms-host-fault --attach build/ms-host/ms-host
--       [--cases N | --full] [--kinds c,lua,uv] [--jobs 2] [--timeout 60] [--seed S]
--       [--from N] [--to N] [--keep DIR] [--only KIND:N,KIND:N...]
--   luajit fault/sweep.lua --show CASE_DIR    (a kept case, symbolized)
--
-- First one run of fault/driver.lua under ms-host-fault without a fault
-- counts the allocations of each kind (lua: the agents' Lua allocator; c:
-- malloc and friends called by core/, agents/, ms-host/; uv: libuv's) and
-- must pass every check of the driver.  Then one run per case, each with
-- MS_FAULT=KIND:N (the N-th allocation of that kind fails): --full sweeps
-- every N of every kind (a little past the counted total, since the order
-- of allocations varies a little between runs); --cases N takes a sample
-- of about N cases spread over the runs of each kind (every uv allocation,
-- then c and lua evenly, each stratum at a random point from --seed).
-- --from/--to limit N; --only runs the cases given (to repeat one).
--
-- A case passes when ms-host-fault ended by itself within --timeout
-- seconds, with status 0 (the failure was absorbed: an operation returned
-- its error, an agent ended) or 1 or 2 with a message on stderr, and
-- stderr holds no panic ("unprotected Lua error"), no sanitizer report
-- (ASan, LeakSanitizer, UBSan's "runtime error") and no sign of a crash.
-- Every failing case is listed with the refused allocation's backtrace;
-- its files are kept (in --keep DIR, or a temporary directory that is
-- then named).  Exits 1 if any case failed, 2 on a broken baseline.

local opts = { cases = 120, kinds = "c,lua", jobs = 2, timeout = 30, seed = 13 }
do
    local i, a = 1, arg
    while i <= #a do
        local k = a[i]:match("^%-%-(.*)$")
        if not k then error("sweep: unexpected argument " .. a[i], 0) end
        if k == "full" then
            opts.full = true
            i = i + 1
        else
            opts[k] = a[i + 1]
            i = i + 2
        end
    end
end
for _, k in ipairs({ "cases", "jobs", "timeout", "seed", "from", "to" }) do
    opts[k] = opts[k] and tonumber(opts[k])
end
if not opts.show then
    assert(opts.host and opts.attach, "sweep: --host and --attach are required")
end

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "fault"
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd) return os.execute(cmd) == 0 end
local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end
local function abspath(p)
    if p:sub(1, 1) == "/" then return p end
    local pwd = os.getenv("PWD") or io.popen("pwd"):read("*l")
    return pwd .. "/" .. p
end

-- "  #i FILE +0xOFF" (fault/inject.c's backtrace) -> "  #i function at file:line".
local function symbolize(line)
    local pre, file, off = line:match("^(%s*#%d+) (%S+) %+(0x%x+)")
    if not pre then return line end
    local p = io.popen(("addr2line -f -p -C -e %s %s 2>/dev/null"):format(q(file), off))
    local where = p and p:read("*l")
    if p then p:close() end
    if not where or where:find("^%?%?") then
        return ("%s %s+%s\n"):format(pre, file:match("[^/]*$"), off)
    end
    return ("%s %s\n"):format(pre, where:gsub(" %(discriminator %d+%)", ""))
end

-- --show DIR: a kept case's stderr, its backtraces symbolized.
if opts.show then
    for line in slurp(opts.show .. "/err"):gmatch("[^\n]*\n?") do
        if line ~= "" then io.write(symbolize(line)) end
    end
    os.exit(0)
end

local host, attach = abspath(opts.host), abspath(opts.attach)
local driver, child = abspath(here .. "/driver.lua"), abspath(here .. "/child.lua")
local work = opts.keep or io.popen("mktemp -d /tmp/ms-fault.XXXXXX"):read("*l")
assert(sh("mkdir -p " .. q(work)), "sweep: cannot make " .. work)
local port_base = 20000 + (tonumber(work:match("(%d+)$") or "") or os.time()) % 20000

-- One case: a directory holding the command's out, err, status (and the
-- metrics file); run.sh runs it, so that xargs can run several at once.
local run_sh = work .. "/run.sh"
do
    local f = assert(io.open(run_sh, "w"))
    f:write(([[
#!/bin/sh
# run.sh NAME FAULT PORT: one case of the sweep (fault/sweep.lua).
dir=%s/"$1"
mkdir -p "$dir" && cd "$dir" || exit 1
if [ "$2" = none ]; then unset MS_FAULT; else MS_FAULT=$2; export MS_FAULT; fi
MS_FAULT_REPORT="$dir/report" timeout -k 5 %d %s run %s --workers 2 \
  --console "$dir/s.sock" --metrics-file "$dir/metrics.jsonl" \
  --metrics-listen 127.0.0.1:"$3" -- %s "$3" "$dir/s.sock" %s >out 2>err </dev/null
echo $? >status
]]):format(q(work), opts.timeout, q(host), q(driver), q(attach), q(child)))
    f:close()
end

local function outcome(name)
    local dir = work .. "/" .. name
    local status = tonumber(slurp(dir .. "/status"))
    local err, out = slurp(dir .. "/err"), slurp(dir .. "/out")
    local o = { name = name, status = status, err = err, out = out, dir = dir,
                refused = err:find("ms-fault: refused", 1, true) ~= nil }
    for _, bad in ipairs({ "unprotected Lua error", "AddressSanitizer", "LeakSanitizer",
                           "ThreadSanitizer", "runtime error:", "PANIC", "Segmentation" }) do
        if err:find(bad, 1, true) then
            o.fail = bad
            return o
        end
    end
    if status == nil then
        o.fail = "no status"
    elseif status == 124 or status == 137 then
        o.fail = "did not end within " .. opts.timeout .. " s"
    elseif status >= 128 then
        o.fail = "killed by signal " .. (status - 128)
    elseif status == 1 or status == 2 then
        -- A failure must say what it was.
        local said = err:gsub("ms%-fault: refused[^\n]*\n", ""):gsub("[^\n]*%[0x%x+%]\n", "")
        if not said:find("ms%-host") then o.fail = "status " .. status .. " without a message" end
        o.kind = "status " .. status
    elseif status ~= 0 then
        o.fail = "status " .. status
    else
        o.kind = "status 0"
    end
    return o
end

-- The baseline: no fault, every check of the driver passes.
io.stderr:write(("sweep: %s, cases in %s\n"):format(host, work))
local started = os.time()
sh(("sh %s baseline none %d"):format(q(run_sh), port_base))
local base = outcome("baseline")
if base.fail or base.status ~= 0 or not base.out:find("driver: ok", 1, true) then
    io.stderr:write(("sweep: the baseline run failed (status %s):\n%s%s"):format(
        tostring(base.status), base.out, base.err))
    os.exit(2)
end
local counts = {}
for k, n in slurp(base.dir .. "/report"):gmatch("(%a+)=(%d+)") do counts[k] = tonumber(n) end
-- A loaded machine: a case may take much longer than the clean run did.
local baseline_secs = os.time() - started + 1
if baseline_secs * 15 > opts.timeout then
    opts.timeout = baseline_secs * 15
    local f = assert(io.open(run_sh, "r"))
    local text = f:read("*a"):gsub("timeout %-k 5 %d+", "timeout -k 5 " .. opts.timeout)
    f:close()
    f = assert(io.open(run_sh, "w"))
    f:write(text)
    f:close()
end
io.stderr:write(("sweep: the driver makes %d lua, %d c and %d uv allocations\n"):format(
    counts.lua or 0, counts.c or 0, counts.uv or 0))

-- The cases.
local kinds = {}
for k in opts.kinds:gmatch("[^,]+") do kinds[#kinds + 1] = k end
math.randomseed(opts.seed)
local cases = {}
local function add(kind, n)
    if (not opts.from or n >= opts.from) and (not opts.to or n <= opts.to) then
        cases[#cases + 1] = { kind = kind, n = n }
    end
end
-- Most cases go to C allocations: fewer (about 600) and each one a failure
-- path of our own; a Lua allocation tests the protection around the state.
local weights = { c = 0.6, lua = 0.4, uv = 0 }
for kind, n in (opts.only or ""):gmatch("(%a+):(%d+)") do
    add(kind, tonumber(n))
end
local weight_sum = 0
for _, kind in ipairs(kinds) do weight_sum = weight_sum + (weights[kind] or 0.5) end
for _, kind in ipairs(opts.only and {} or kinds) do
    local total = counts[kind] or 0
    local last = math.ceil(total * 1.02) + 2 -- the order varies a little
    if opts.full or kind == "uv" or last <= 20 then
        for n = 1, last do add(kind, n) end
    else
        local want = math.max(1, math.floor(opts.cases * (weights[kind] or 0.5) / weight_sum))
        -- The first allocations (start-up) one by one, then strata.
        local first = math.min(last, math.floor(want / 5))
        for n = 1, first do add(kind, n) end
        local strata = want - first
        local width = (last - first) / math.max(1, strata)
        for s = 0, strata - 1 do
            add(kind, first + 1 + math.floor(s * width + math.random() * width))
        end
    end
end

do
    local list = work .. "/cases"
    local f = assert(io.open(list, "w"))
    for i, c in ipairs(cases) do
        c.name = ("%s-%d"):format(c.kind, c.n)
        f:write(("%s %s:%d %d\n"):format(c.name, c.kind, c.n, port_base + 1 + i % 5000))
    end
    f:close()
    io.stderr:write(("sweep: %d cases, %d at a time\n"):format(#cases, opts.jobs))
    sh(("xargs -P %d -L 1 sh %s < %s"):format(opts.jobs, q(run_sh), q(list)))
end

-- The verdict.
local tally, failures, not_reached = {}, {}, 0
for _, c in ipairs(cases) do
    local o = outcome(c.name)
    if o.fail then
        failures[#failures + 1] = o
    elseif not o.refused then
        not_reached = not_reached + 1
    else
        tally[o.kind] = (tally[o.kind] or 0) + 1
    end
end
local parts = {}
for k, n in pairs(tally) do parts[#parts + 1] = k .. ": " .. n end
table.sort(parts)
print(("sweep: %d cases: %s; %d past the last allocation; %d failed"):format(#cases,
    table.concat(parts, ", "), not_reached, #failures))
for _, o in ipairs(failures) do
    print(("\n== %s: %s (kept in %s)"):format(o.name, o.fail, o.dir))
    local shown = 0
    for line in o.err:gmatch("[^\n]*\n?") do
        if shown >= 40 or line == "" then break end
        io.write("   ", symbolize(line))
        shown = shown + 1
    end
end
if #failures == 0 and not opts.keep then
    sh("rm -rf " .. q(work))
else
    -- Keep only what failed (and the baseline).
    local keep = { baseline = true }
    for _, o in ipairs(failures) do keep[o.name] = true end
    for _, c in ipairs(cases) do
        if not keep[c.name] then sh("rm -rf " .. q(work .. "/" .. c.name)) end
    end
end
os.exit(#failures == 0 and 0 or 1)
