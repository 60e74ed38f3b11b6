--[[
ms.profile - runtime profiles: Lua files describing how to configure the
runtime and the host, loaded along their `extends` chain, validated and
resolved to plain numbers.

A profile is data.  Its file runs in an empty environment (reading or
assigning a global is an error that names the line), may use arithmetic and
local variables, and returns a table of fields.  `extends = "name"` loads
the parent first and overlays the child on it; `--workers N` and
`--set key=value` overlay the result last.  Each file is validated as it is
loaded, so an error names the file that set the bad value (or the option
that did), the field, the value and what is allowed.

The result is uniform whatever the input looked like: workload rules are
numbers of threads, durations are seconds, sizes are bytes, and every
field has a value (the built-in default, which equals libms's
ms_config_default, when no file set it).  `to_config_pairs` turns it into
the key/text pairs ms_config_set accepts, so the C side applies a profile
one field at a time and validates it again with ms_config_validate.

Costs: loading runs one small Lua chunk per file in the chain; `list` runs
`ls` once per directory of the search path.  Paths are normalised
lexically ("a/b/../c" is "a/c"), which is wrong only across symbolic links
to directories.
]]

local profile = {}

local KIB = 1024
local MIB = 1024 * KIB
local GIB = 1024 * MIB

-- The workload rules for worker_threads: threads per CPU, rounded up.
local rules = {
    cpu_bound = { factor = 1, doc = "one worker per CPU" },
    io_bound = { factor = 4, doc = "4 workers per CPU" },
    mixed = { factor = 1.5, doc = "1.5 workers per CPU, rounded up" },
    latency_sensitive = { factor = 2, doc = "2 workers per CPU" },
}
profile.rules = rules

-- Every field a profile may set, as the host describes it (agents/facts.c,
-- which takes libms's fields from libms's own table, core/src/config.c):
-- kind; min/max, inclusive (durations in seconds, sizes in bytes; for path
-- kinds max is the longest accepted path in bytes); default, the built-in
-- value used when no file in the chain sets the field; config, set for
-- libms's fields; live, set for the fields ms.tune and SIGHUP may change;
-- zero, what 0 means where it means something special; doc.  `order` is
-- the order of describe and of to_config_pairs: the description, libms's
-- fields in ms_config's order, then the host's.
local fields, order = {}, {}
for i, f in ipairs(require("ms")._profile_fields()) do
    fields[f.name] = f
    order[i] = f.name
end

-- worker_threads also takes a workload rule, and by default the one that
-- gives libms's own default (one worker per CPU).
do
    local names = {}
    for name in pairs(rules) do
        names[#names + 1] = name
    end
    table.sort(names)
    local w = fields.worker_threads
    w.kind, w.default = "workers", "cpu_bound"
    w.doc = w.doc .. ": a whole number or a workload rule (" .. table.concat(names, ", ") .. ")"
end
profile.fields = fields
profile.field_order = order

-- ------------------------------------------------------------------------
-- Paths

local function is_absolute(p)
    return p:sub(1, 1) == "/"
end

local function normalize(p)
    local absolute = is_absolute(p)
    local parts = {}
    for seg in p:gmatch("[^/]+") do
        if seg == ".." then
            if #parts > 0 and parts[#parts] ~= ".." then
                parts[#parts] = nil
            elseif not absolute then
                parts[#parts + 1] = ".."
            end
        elseif seg ~= "." then
            parts[#parts + 1] = seg
        end
    end
    local s = table.concat(parts, "/")
    if absolute then
        return "/" .. s
    end
    return s == "" and "." or s
end

local function dirname(p)
    local d = p:match("^(.*)/[^/]*$")
    if d == nil then
        return "."
    end
    return d == "" and "/" or d
end

local function join(dir, p)
    if is_absolute(p) then
        return normalize(p)
    end
    return normalize(dir .. "/" .. p)
end

-- The working directory: getcwd(3) through the ms module (ms._cwd), else
-- $PWD; nil when neither is available, and paths then stay relative.
local function current_dir()
    local dir = require("ms")._cwd()
    if dir ~= nil then
        return dir
    end
    local pwd = os.getenv("PWD")
    if pwd ~= nil and is_absolute(pwd) then
        return pwd
    end
    return nil
end

local cwd = current_dir()

local function absolute(p)
    if is_absolute(p) or cwd == nil then
        return normalize(p)
    end
    return join(cwd, p)
end

-- How a file is named in messages: relative to the working directory when
-- inside it ("profiles/io_bound.lua"), else absolute.
local function shown(abs)
    if cwd ~= nil and abs:sub(1, #cwd + 1) == cwd .. "/" then
        return abs:sub(#cwd + 2)
    end
    return abs
end

local function readable(p)
    local f = io.open(p, "r")
    if f == nil then
        return false
    end
    f:close()
    return true
end

-- ------------------------------------------------------------------------
-- The search path

local function default_search_path()
    local path = {}
    local src = debug.getinfo(1, "S").source
    if src:sub(1, 1) == "@" then
        path[#path + 1] = absolute(dirname(src:sub(2)) .. "/../../profiles")
    end
    path[#path + 1] = "./profiles"
    return path
end

local function env_search_path()
    local env = os.getenv("MS_PROFILE_PATH")
    if env == nil or env == "" then
        return nil
    end
    local path = {}
    for dir in env:gmatch("[^:]+") do
        path[#path + 1] = dir
    end
    return path
end

profile.search_path = env_search_path() or default_search_path()

-- ------------------------------------------------------------------------
-- CPUs

-- "0-3,5,7-8" (the kernel's CPU list format) -> 7.
local function count_cpu_list(s)
    local n = 0
    for item in s:gmatch("[^,%s]+") do
        local a, b = item:match("^(%d+)%-(%d+)$")
        if a ~= nil then
            n = n + tonumber(b) - tonumber(a) + 1
        elseif item:match("^%d+$") then
            n = n + 1
        else
            return nil
        end
    end
    return n > 0 and n or nil
end

local function read_all(p)
    local f = io.open(p, "r")
    if f == nil then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- Online CPUs, as libms counts them (sysconf(_SC_NPROCESSORS_ONLN) reads
-- the same file).  Cached: it is read once per process.
local detected_cpus
local function detect_cpus()
    if detected_cpus ~= nil then
        return detected_cpus
    end
    local n
    local online = read_all("/sys/devices/system/cpu/online")
    if online ~= nil then
        n = count_cpu_list(online)
    end
    if n == nil then
        local info = read_all("/proc/cpuinfo")
        if info ~= nil then
            local count = 0
            for _ in info:gmatch("\nprocessor%s*:") do
                count = count + 1
            end
            if info:match("^processor%s*:") then
                count = count + 1
            end
            n = count > 0 and count or nil
        end
    end
    if n == nil then
        local p = io.popen("nproc 2>/dev/null")
        if p ~= nil then
            n = tonumber(p:read("*l") or "")
            p:close()
        end
    end
    detected_cpus = n or 1
    return detected_cpus
end

-- ------------------------------------------------------------------------
-- Formatting values for messages and descriptions

local function quote(s)
    if #s > 40 then
        s = s:sub(1, 40) .. "..."
    end
    return "'" .. s .. "'"
end

local function number_text(v)
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
        return string.format("%d", v)
    end
    return tostring(v)
end

-- A value as the user wrote it.
local function given(v)
    local t = type(v)
    if t == "string" then
        return quote(v)
    elseif t == "number" then
        return number_text(v)
    elseif t == "boolean" or t == "nil" then
        return tostring(v)
    end
    return "a " .. t
end

local function round(x)
    return math.floor(x + 0.5)
end

-- Seconds as libms's duration text: whole seconds "60s", else "250ms".
local function duration_text(seconds)
    local ms = round(seconds * 1000)
    if ms % 1000 == 0 then
        return string.format("%ds", ms / 1000)
    end
    return string.format("%dms", ms)
end

local function size_text(bytes)
    if bytes >= GIB and bytes % GIB == 0 then
        return string.format("%d GiB", bytes / GIB)
    elseif bytes >= MIB and bytes % MIB == 0 then
        return string.format("%d MiB", bytes / MIB)
    elseif bytes >= KIB and bytes % KIB == 0 then
        return string.format("%d KiB", bytes / KIB)
    end
    return string.format("%d bytes", bytes)
end

local function range_text(f)
    if f.kind == "duration" then
        if f.min ~= math.floor(f.min) then
            return string.format("%s..%d seconds", number_text(f.min), f.max)
        end
        return string.format("%d..%d seconds", f.min, f.max)
    elseif f.kind == "size" then
        if f.nonzero_min ~= nil then
            return string.format("0 or %d..%d bytes", f.nonzero_min, f.max)
        end
        return string.format("%d..%d bytes", f.min, f.max)
    end
    return string.format("%d..%d", f.min, f.max)
end

-- ------------------------------------------------------------------------
-- Checking one value
--
-- check(name, value, ctx) returns the resolved value and, for a workload
-- rule, the rule's name; any problem raises "<ctx.where>: field '<name>':
-- ...".  ctx = { where = "profiles/x.lua" | "--set k=v", dir = directory
-- of the file or nil, cpus = N }.

local function fail(where, fmt, ...)
    error(where .. ": " .. string.format(fmt, ...), 0)
end

local function fail_field(ctx, name, fmt, ...)
    fail(ctx.where, "field '%s': " .. fmt, name, ...)
end

local function check_range(ctx, name, f, v, original)
    if v ~= v or v < f.min or v > f.max or (f.nonzero_min ~= nil and v ~= 0 and v < f.nonzero_min) then
        fail_field(ctx, name, "%s is out of range (allowed %s)", given(original), range_text(f))
    end
end

local function expected(ctx, name, what, v)
    fail_field(ctx, name, "expected %s, got %s", what, type(v) == "string"
        and "string " .. quote(v) or given(v))
end

local function check_count(ctx, name, f, v)
    if type(v) ~= "number" then
        expected(ctx, name, "a whole number", v)
    end
    if v == v and v > -math.huge and v < math.huge and v ~= math.floor(v) then
        fail_field(ctx, name, "%s is not a whole number", given(v))
    end
    check_range(ctx, name, f, v, v)
    return v
end

local function check_workers(ctx, name, f, v)
    if type(v) == "string" then
        local rule = rules[v]
        if rule == nil then
            local names = {}
            for k in pairs(rules) do
                names[#names + 1] = k
            end
            table.sort(names)
            fail_field(ctx, name, "%s is not a workload rule (%s) or a whole number",
                       quote(v), table.concat(names, ", "))
        end
        local n = math.ceil(rule.factor * ctx.cpus)
        return math.max(f.min, math.min(f.max, n)), v
    end
    return check_count(ctx, name, f, v)
end

local duration_units = { ms = 1, s = 1000, m = 60000, h = 3600000 }

local function check_duration(ctx, name, f, v)
    local ms
    if type(v) == "number" then
        if v ~= v then
            fail_field(ctx, name, "nan is not a duration")
        end
        ms = v * 1000
    elseif type(v) == "string" then
        if v:match("^%-%d") then
            fail_field(ctx, name, "%s is negative (allowed %s)", quote(v), range_text(f))
        end
        local num, unit = v:match("^(%d+)(%a*)$")
        if num == nil then
            num, unit = v:match("^(%d+%.%d+)(%a*)$")
        end
        if num == nil then
            fail_field(ctx, name, "%s is not a duration (a number with ms, s, m or h, "
                .. "e.g. \"250ms\", \"1.5s\", \"2m\"; a bare number is seconds)", quote(v))
        end
        local scale = duration_units[unit == "" and "s" or unit]
        if scale == nil then
            fail_field(ctx, name, "%s has an unknown unit (use ms, s, m or h)", quote(v))
        end
        ms = tonumber(num) * scale
    else
        expected(ctx, name, "seconds or a duration string such as \"250ms\"", v)
    end
    -- libms keeps whole milliseconds; allow for binary fractions (0.1 s).
    if ms > -math.huge and ms < math.huge and math.abs(ms - round(ms)) > 1e-6 * math.max(1, ms) then
        fail_field(ctx, name, "%s is not a whole number of milliseconds", given(v))
    end
    if ms == ms and ms > -math.huge and ms < math.huge then
        ms = round(ms)
    end
    check_range(ctx, name, f, ms / 1000, v)
    return ms / 1000
end

local size_units = { k = KIB, m = MIB, g = GIB }

local function check_size(ctx, name, f, v)
    local bytes
    if type(v) == "number" then
        if v == v and v > -math.huge and v < math.huge and v ~= math.floor(v) then
            fail_field(ctx, name, "%s is not a whole number of bytes", given(v))
        end
        bytes = v
    elseif type(v) == "string" then
        if v:match("^%-%d") then
            fail_field(ctx, name, "%s is negative (allowed %s)", quote(v), range_text(f))
        end
        local num, letter, rest = v:match("^(%d+)(%a?)(.*)$")
        local mul = letter ~= nil and (letter == "" and 1 or size_units[letter:lower()])
        if num == nil or mul == nil or not (rest == "" or (letter ~= "" and
                (rest == "B" or rest == "iB"))) then
            fail_field(ctx, name, "%s is not a size (bytes, or a number with K, M or G, "
                .. "e.g. \"512K\", \"2M\")", quote(v))
        end
        bytes = tonumber(num) * mul
    else
        expected(ctx, name, "bytes or a size string such as \"2M\"", v)
    end
    check_range(ctx, name, f, bytes, v)
    return bytes
end

local function check_bool(ctx, name, _, v)
    if type(v) ~= "boolean" then
        expected(ctx, name, "true or false", v)
    end
    return v
end

local function check_string(ctx, name, _, v)
    if type(v) ~= "string" then
        expected(ctx, name, "a string", v)
    end
    return v
end

local function check_listen(ctx, name, _, v)
    if v == false then
        return false
    end
    if type(v) ~= "string" then
        expected(ctx, name, "\"host:port\" or false", v)
    end
    local host, port = v:match("^%[([%x:%.]+)%]:(%d+)$")
    if host == nil then
        host, port = v:match("^([^:%[%]%s]+):(%d+)$")
    end
    if host == nil then
        fail_field(ctx, name, "%s is not host:port (e.g. \"127.0.0.1:9090\", \"[::1]:9090\")",
                   quote(v))
    end
    if tonumber(port) > 65535 then
        fail_field(ctx, name, "port %s of %s is out of range (allowed 0..65535)", port, quote(v))
    end
    return v
end

local function check_path(ctx, name, f, v)
    if v == false then
        return false
    end
    if type(v) ~= "string" then
        expected(ctx, name, "a path or false", v)
    end
    if v == "" or v:find("%z") then
        fail_field(ctx, name, "%s is not a path", quote(v))
    end
    local p = v
    if f.relative_to_profile then
        p = ctx.dir ~= nil and join(ctx.dir, v) or absolute(v)
    end
    if #p > f.max then
        fail_field(ctx, name, "%s is %d bytes long (allowed at most %d)", quote(p), #p, f.max)
    end
    if f.must_exist and not readable(p) then
        fail_field(ctx, name, "cannot read %s", quote(p))
    end
    return p
end

local checkers = {
    count = check_count,
    workers = check_workers,
    duration = check_duration,
    size = check_size,
    bool = check_bool,
    string = check_string,
    listen = check_listen,
    path_or_false = check_path,
}

local function check(name, v, ctx)
    local f = fields[name]
    return checkers[f.kind](ctx, name, f, v)
end

-- Text from the command line -> the Lua value a profile would have written
-- for it; check() then validates it the same way.
local function from_text(name, text)
    local kind = fields[name].kind
    local lower = text:lower()
    if kind == "bool" then
        if lower == "true" or lower == "on" or lower == "yes" or lower == "1" then
            return true
        elseif lower == "false" or lower == "off" or lower == "no" or lower == "0" then
            return false
        end
        return text
    elseif kind == "listen" or kind == "path_or_false" then
        if lower == "false" or lower == "off" or lower == "" then
            return false
        end
        return text
    elseif kind == "string" then
        return text
    end
    -- count, workers, duration, size: a plain decimal number is a number.
    if text:match("^%-?%d+$") or text:match("^%-?%d+%.%d+$") then
        return tonumber(text)
    end
    return text
end

-- ------------------------------------------------------------------------
-- Unknown names

-- Optimal string alignment distance: Levenshtein plus adjacent
-- transpositions, so "wokrer" is one edit from "worker".
local function edit_distance(a, b)
    local n, m = #a, #b
    local d = {}
    for i = 0, n do
        d[i] = { [0] = i }
    end
    for j = 0, m do
        d[0][j] = j
    end
    for i = 1, n do
        for j = 1, m do
            local cost = a:byte(i) == b:byte(j) and 0 or 1
            local best = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
                best = math.min(best, d[i - 2][j - 2] + 1)
            end
            d[i][j] = best
        end
    end
    return d[n][m]
end

local function nearest_field(key, extra)
    local best, best_d = nil, 3 -- suggest only within two edits
    local function consider(candidate)
        local dist = edit_distance(key, candidate)
        if dist < best_d then
            best, best_d = candidate, dist
        end
    end
    for _, name in ipairs(order) do
        consider(name)
    end
    if extra ~= nil then
        consider(extra)
    end
    return best
end

local function unknown_field(where, key, extra)
    local near = nearest_field(key, extra)
    if near ~= nil then
        fail(where, "unknown field '%s' (did you mean '%s'?)", key, near)
    end
    fail(where, "unknown field '%s'", key)
end

-- ------------------------------------------------------------------------
-- Running and validating one file

-- The environment of a profile chunk: empty, and loud about globals, since
-- a global read there is almost always a typo or a missing `local`.
local function data_env()
    return setmetatable({}, {
        __index = function(_, k)
            error(string.format("'%s' is not defined (a profile is data: it sees no "
                .. "globals, only its own locals)", tostring(k)), 2)
        end,
        __newindex = function(_, k)
            error(string.format("assignment to global '%s' (declare it local; settings "
                .. "go in the table the profile returns)", tostring(k)), 2)
        end,
    })
end

-- A profile is data, yet its file is a program: one that never returns
-- would hang the host's start, or a SIGHUP's reload for good.  So a file's
-- chunk gets at most this many Lua VM instructions -- far more than any
-- table of settings needs (default.lua takes a few hundred) -- and is
-- refused, naming the file, past them.  A count hook counts them; the JIT
-- is off for the chunk and everything it defines, since compiled code
-- runs no hooks.  Counting instructions rather than time keeps the
-- verdict the same on a loaded machine: 10^8 take well under a second.
local INSTRUCTION_LIMIT = 100000000
local HOOK_EVERY = 10000

local function run_limited(chunk, name_shown)
    local ok_jit, jit = pcall(require, "jit")
    if ok_jit and type(jit) == "table" and jit.off then
        jit.off(chunk, true)
    end
    -- A hook already set is the host's (an agent being stopped, a
    -- sandbox's budget: C hooks, which Lua cannot save and set back) or
    -- the caller's: it stays, and bounds the chunk by itself.
    if debug.gethook() ~= nil then
        return pcall(chunk)
    end
    local left = INSTRUCTION_LIMIT / HOOK_EVERY
    local function limit()
        left = left - 1
        if left <= 0 then
            debug.sethook()
            error(string.format("%s: did not finish within %d Lua instructions (a profile is "
                .. "data: does it loop forever?)", name_shown, INSTRUCTION_LIMIT), 0)
        end
    end
    debug.sethook(limit, "", HOOK_EVERY)
    local ok, result = pcall(chunk)
    -- Cleared only if still ours: a stop may have set its own meanwhile.
    if debug.gethook() == limit then
        debug.sethook()
    end
    return ok, result
end

local function run_file(abs, name_shown)
    -- Load by the shown name so that every message the compiler or the
    -- chunk produces ("profiles/x.lua:3: ...") names the file the same way.
    local chunk, err = loadfile(name_shown)
    if chunk == nil then
        error(err, 0)
    end
    setfenv(chunk, data_env())
    local ok, result = run_limited(chunk, name_shown)
    if not ok then
        if type(result) ~= "string" then
            fail(name_shown, "raised a %s as an error", type(result))
        end
        if result:sub(1, #name_shown + 1) ~= name_shown .. ":" then
            result = name_shown .. ": " .. result
        end
        error(result, 0)
    end
    if type(result) ~= "table" then
        fail(name_shown, "must return a table, got %s", type(result))
    end
    return result
end

-- Checks every key of the table a file returned; returns the layer:
-- { values, rules, extends }.
local function validate_file(t, ctx)
    local keys = {}
    for k in pairs(t) do
        if type(k) ~= "string" then
            fail(ctx.where, "field names must be strings, got %s %s", type(k), given(k))
        end
        keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        if k ~= "extends" and fields[k] == nil then
            unknown_field(ctx.where, k, "extends")
        end
    end
    if t.extends ~= nil and (type(t.extends) ~= "string" or t.extends == "") then
        fail(ctx.where, "field 'extends': expected a profile name or a .lua path, got %s",
             given(t.extends))
    end
    -- Required in every file, not inherited: a parent's description would
    -- describe the parent.
    if t.description == nil or t.description == "" then
        fail(ctx.where, "field 'description' is required: one line saying what the "
            .. "profile is for")
    end
    local layer = { values = {}, rules = {}, extends = t.extends }
    for _, k in ipairs(order) do
        if t[k] ~= nil then
            layer.values[k], layer.rules[k] = check(k, t[k], ctx)
        end
    end
    return layer
end

-- ------------------------------------------------------------------------
-- Finding files and following `extends`

local function valid_name(s)
    return s:match("^[%w_%-]+$") ~= nil
end

-- ref is a name or a path ending in ".lua"; dirs are searched in order for
-- a name, and the first (when given) resolves a relative path.  Returns
-- the absolute path, or nil and the list of places tried.
local function find(ref, dirs, base)
    if ref:sub(-4) == ".lua" then
        local p = absolute(base ~= nil and join(base, ref) or ref)
        if readable(p) then
            return p
        end
        return nil, { shown(p) }
    end
    local tried, seen = {}, {}
    for _, dir in ipairs(dirs) do
        local p = absolute(join(dir, ref .. ".lua"))
        if readable(p) then
            return p
        end
        if not seen[p] then
            seen[p] = true
            tried[#tried + 1] = shown(p)
        end
    end
    return nil, tried
end

local function profile_name(abs)
    return abs:match("([^/]+)%.lua$") or abs
end

-- Loads abs and, first, its ancestors; returns the layers root first.
-- stack holds the files being loaded, for cycle detection.
local function load_chain(abs, dirs, cpus, stack)
    local name = profile_name(abs)
    for i, entry in ipairs(stack) do
        if entry.file == abs then
            local names = {}
            for j = i, #stack do
                names[#names + 1] = stack[j].name
            end
            names[#names + 1] = name
            error(string.format("profile cycle: %s (%s extends '%s')",
                table.concat(names, " -> "), stack[#stack].shown, stack[#stack].extends), 0)
        end
    end

    local where = shown(abs)
    local t = run_file(abs, where)
    local ctx = { where = where, dir = dirname(abs), cpus = cpus }
    local layer = validate_file(t, ctx)
    layer.name, layer.file, layer.shown = name, abs, where

    local layers = {}
    if layer.extends ~= nil then
        if layer.extends:sub(-4) ~= ".lua" and not valid_name(layer.extends) then
            fail(where, "field 'extends': %s is not a profile name (letters, digits, _ "
                .. "and -) or a path ending in .lua", quote(layer.extends))
        end
        local search = { ctx.dir }
        for _, d in ipairs(dirs) do
            search[#search + 1] = d
        end
        local parent, tried = find(layer.extends, search, ctx.dir)
        if parent == nil then
            fail(where, "extends '%s', which was not found (looked for %s)", layer.extends,
                 table.concat(tried, ", "))
        end
        stack[#stack + 1] = { file = abs, name = name, shown = where, extends = layer.extends }
        layers = load_chain(parent, dirs, cpus, stack)
        stack[#stack] = nil
    end
    layers[#layers + 1] = layer
    return layers
end

-- ------------------------------------------------------------------------
-- Overrides

-- { workers = "4", budget = "0", ... } -> a sorted list of
-- { key, value, origin }.  `workers` is `--workers N`; anything else is
-- `--set key=value`.
local function override_list(overrides)
    local list = {}
    if overrides == nil then
        return list
    end
    if overrides.workers ~= nil and overrides.worker_threads ~= nil then
        error("overrides: both --workers and --set worker_threads given; use one", 0)
    end
    for k, v in pairs(overrides) do
        if type(k) ~= "string" then
            error("overrides: keys must be field names, got " .. type(k), 3)
        end
        local origin
        if k == "workers" then
            origin = "--workers " .. tostring(v)
            k = "worker_threads"
        else
            origin = "--set " .. k .. "=" .. tostring(v)
        end
        list[#list + 1] = { key = k, value = v, origin = origin }
    end
    table.sort(list, function(a, b) return a.key < b.key end)
    return list
end

-- ------------------------------------------------------------------------
-- Loading

local function check_opts(opts)
    if opts == nil then
        return {}
    end
    if type(opts) ~= "table" then
        error("profile.load: opts must be a table, got " .. type(opts), 3)
    end
    if opts.cpus ~= nil and (type(opts.cpus) ~= "number" or opts.cpus < 1
            or opts.cpus ~= math.floor(opts.cpus)) then
        error("profile.load: opts.cpus must be a whole number >= 1, got " .. given(opts.cpus), 3)
    end
    if opts.overrides ~= nil and type(opts.overrides) ~= "table" then
        error("profile.load: opts.overrides must be a table, got " .. type(opts.overrides), 3)
    end
    return opts
end

-- enable_all = true with enable_time or enable_io false is a contradiction
-- (libms's ms_config_validate says the same); blame whichever of the two
-- was set later in the chain.
local function check_enable(values, source, rank)
    if not values.enable_all then
        return
    end
    for _, off in ipairs({ "enable_time", "enable_io" }) do
        if values[off] == false then
            local blamed = rank.enable_all > rank[off] and "enable_all" or off
            local other = blamed == off and "enable_all" or off
            fail(source[blamed], "field '%s': %s = %s contradicts %s = %s (from %s); "
                .. "enable_all implies enable_time and enable_io, so set enable_all = false "
                .. "to turn one of them off",
                blamed, blamed, tostring(values[blamed]), other, tostring(values[other]),
                source[other])
        end
    end
end

-- profile.load(name_or_file [, opts]) -> resolved, or raises an error.
--
-- name_or_file is a profile name, looked up as NAME.lua along the search
-- path, or a path ending in ".lua".  opts (all optional):
--   cpus        CPUs the workload rules multiply (default: the machine's
--               online CPUs, as libms counts them)
--   overrides   { field = value }: values from `--set field=value`, as text
--               parsed by the field's kind ("4", "250ms", "2M", "off"), or
--               as Lua values; the key `workers` is `--workers N`
--   search_path directories to search instead of profile.search_path
--
-- resolved = { name, file (absolute), chain = { root, ..., name }, cpus,
--   values = { field = number | boolean | string | false },
--   source = { field = "profiles/x.lua" | "--set f=v" | "--workers N" |
--              "built-in default" },
--   rules = { worker_threads = "io_bound" } when a rule was used }
-- Durations are seconds, sizes bytes, worker_threads a number.
function profile.load(name_or_file, opts)
    if type(name_or_file) ~= "string" or name_or_file == "" then
        error("profile.load: expected a profile name or a .lua path, got "
            .. given(name_or_file), 2)
    end
    opts = check_opts(opts)
    local dirs = opts.search_path or profile.search_path
    local cpus = opts.cpus or detect_cpus()

    if name_or_file:sub(-4) ~= ".lua" and not valid_name(name_or_file) then
        error(string.format("profile %s is not a profile name (letters, digits, _ and -) "
            .. "or a path ending in .lua", quote(name_or_file)), 0)
    end
    local file, tried = find(name_or_file, dirs)
    if file == nil then
        error(string.format("profile '%s' not found (looked for %s)", name_or_file,
            table.concat(tried, ", ")), 0)
    end

    local layers = load_chain(file, dirs, cpus, {})
    local values, source, rank, rule_of = {}, {}, {}, {}
    local chain = {}
    for i, layer in ipairs(layers) do
        chain[i] = layer.name
        for k, v in pairs(layer.values) do
            values[k], source[k], rank[k], rule_of[k] = v, layer.shown, i, layer.rules[k]
        end
    end

    for _, o in ipairs(override_list(opts.overrides)) do
        if fields[o.key] == nil then
            unknown_field(o.origin, o.key)
        end
        local v = o.value
        if type(v) == "string" then
            v = from_text(o.key, v)
        end
        local ctx = { where = o.origin, dir = nil, cpus = cpus }
        values[o.key], rule_of[o.key] = check(o.key, v, ctx)
        source[o.key], rank[o.key] = o.origin, #layers + 1
    end

    for _, k in ipairs(order) do
        if values[k] == nil then
            local ctx = { where = "built-in default", cpus = cpus }
            values[k], rule_of[k] = check(k, fields[k].default, ctx)
            source[k], rank[k] = "built-in default", 0
        end
    end
    check_enable(values, source, rank)

    return {
        name = layers[#layers].name,
        file = file,
        chain = chain,
        cpus = cpus,
        values = values,
        source = source,
        rules = rule_of,
    }
end

-- ------------------------------------------------------------------------
-- Output

-- profile.check_field(name, value, where) -> the normalised value (and the
-- workload rule it came from, if any), checked exactly as a profile file's
-- would be; raises "<where>: field '<name>': ..." or "<where>: unknown
-- field ... (did you mean ...?)".  Text values are read as --set reads
-- them.  For ms.tune and SIGHUP.
function profile.check_field(name, value, where)
    if type(name) ~= "string" or fields[name] == nil then
        unknown_field(where, tostring(name))
    end
    if type(value) == "string" then
        value = from_text(name, value)
    end
    return check(name, value, { where = where, cpus = detect_cpus() })
end

-- The fields ms.tune and SIGHUP may change while the host runs.
local live = {}
for _, name in ipairs(order) do
    if fields[name].live then
        live[#live + 1] = name
    end
end
profile.live_fields = live

local function check_resolved(resolved, who)
    if type(resolved) ~= "table" or type(resolved.values) ~= "table" then
        error(who .. ": expected the table profile.load returned, got " .. type(resolved), 3)
    end
end

-- The text form ms_config_set accepts for a libms field.
local function config_text(name, v)
    local kind = fields[name].kind
    if kind == "duration" then
        return duration_text(v)
    elseif kind == "bool" then
        return v and "true" or "false"
    end
    return string.format("%d", v)
end

-- profile.to_config_pairs(resolved) -> { { key, text }, ... } for libms's
-- fields only, in ms_config's order: durations by their user-facing name
-- ("thread_keep_alive", "60s" or "250ms"), sizes as bytes, booleans as
-- "true"/"false".  Each pair is one ms_config_set call.
function profile.to_config_pairs(resolved)
    check_resolved(resolved, "profile.to_config_pairs")
    local pairs_out = {}
    for _, name in ipairs(order) do
        if fields[name].config then
            pairs_out[#pairs_out + 1] = { name, config_text(name, resolved.values[name]) }
        end
    end
    return pairs_out
end

local function value_text(resolved, name)
    local f, v = fields[name], resolved.values[name]
    local rule = resolved.rules and resolved.rules[name]
    if rule ~= nil then
        local exact = rules[rule].factor * resolved.cpus
        local note = ""
        if math.ceil(exact) > v then
            note = string.format(", capped at %d", v)
        elseif exact ~= v then
            note = ", rounded up"
        end
        return string.format("%d (%s: %s x %d CPUs%s)", v, rule,
            number_text(rules[rule].factor), resolved.cpus, note)
    elseif v == false then
        return "off"
    elseif f.kind == "duration" then
        return duration_text(v)
    elseif f.kind == "size" then
        if v == 0 and f.zero then
            return "0 (" .. f.zero .. ")"
        end
        local text = size_text(v)
        return text:match("bytes$") and text or string.format("%s (%d bytes)", text, v)
    elseif f.kind == "count" then
        if v == 0 and f.zero then
            return "0 (" .. f.zero .. ")"
        end
        return string.format("%d", v)
    elseif f.kind == "string" then
        return string.format("%q", v)
    end
    return tostring(v)
end

-- profile.describe(resolved) -> text for `ms-host profiles`: a heading
-- with the file, the chain and the CPU count, then one aligned line per
-- field: name = value with its unit, and where the value came from.
function profile.describe(resolved)
    check_resolved(resolved, "profile.describe")
    local lines = {
        string.format("profile %s (%s)", resolved.name, resolved.file),
        string.format("  chain: %s; cpus: %d", table.concat(resolved.chain, " -> "),
            resolved.cpus),
    }
    local texts, name_width, value_width = {}, 0, 0
    for _, name in ipairs(order) do
        texts[name] = value_text(resolved, name)
        name_width = math.max(name_width, #name)
        if name ~= "description" then
            value_width = math.max(value_width, #texts[name])
        end
    end
    -- Padded by hand: string.format's widths stop at 99, and a value
    -- (a listen address, say) may be longer.
    local function pad(s, width)
        return s .. string.rep(" ", width - #s)
    end
    for _, name in ipairs(order) do
        local width = name == "description" and 0 or value_width
        lines[#lines + 1] = string.format("  %s = %s  from %s", pad(name, name_width),
            pad(texts[name], width), resolved.source[name])
    end
    return table.concat(lines, "\n") .. "\n"
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- profile.list([search_path]) -> the sorted names of the profiles (NAME.lua
-- files) in the directories of the search path.
function profile.list(search_path)
    local dirs = search_path or profile.search_path
    local seen, names = {}, {}
    for _, dir in ipairs(dirs) do
        local p = io.popen("ls -1 -- " .. shell_quote(dir) .. " 2>/dev/null")
        if p ~= nil then
            for entry in p:lines() do
                local name = entry:match("^([%w_%-]+)%.lua$")
                if name ~= nil and not seen[name] then
                    seen[name] = true
                    names[#names + 1] = name
                end
            end
            p:close()
        end
    end
    table.sort(names)
    return names
end

return profile
