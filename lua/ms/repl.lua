-- ms.repl: the REPL's Lua half, shared by `ms-host repl` (the terminal) and
-- every `ms-host attach` console session (lua/ms/console_session.lua).
--
-- A session turns input lines into output text:
--
--   local s = repl.session{ write = function(text) ... end }
--   s:feed("x = {1, 2,")   --> "more"  (the chunk is incomplete: ">> ")
--   s:feed("3}")           --> "done"
--   s:feed("=x")           --> "done", and write got "{ 1, 2, 3 }\n"
--
-- A line is first compiled as "return <chunk>", so a bare expression prints
-- its values; if that does not compile, as a statement.  A chunk whose
-- syntax error is at "<eof>" is incomplete: the next line is appended.
-- Errors (compile or run time) are written with a short traceback and the
-- session goes on.  Chunks run in the session's environment, whose globals
-- fall back to _G and include the helpers below; inside an agent they may
-- call anything in ms (they run in the agent's coroutine).
--
-- The helpers (metrics, agents, workers, hosts, top, tune) read the live runtime
-- through the ms module, so they need an agent; the pretty printer and the
-- session work without one.
local repl = {}

-- ---- the pretty printer ----
--
-- The values it shows are the user's, and a user's value may be hostile: a
-- __tostring or __index that raises or recurses forever, a __len, __pairs,
-- __eq or __metatable that lies.  So the printer walks tables raw (next,
-- rawget, rawlen, the real metatable through debug.getmetatable), never
-- compares user values with ==, and calls tostring only through
-- safe_tostring, which turns a failure into text naming it:
--   <table: 0x... (__tostring raised: stdin:1: boom)>

local MAX_DEPTH = 4       -- deeper tables print as {...}
local MAX_ITEMS = 200     -- per table; the rest is counted
local LINE = 96           -- a table that fits prints on one line

local real_metatable = (debug and debug.getmetatable) or getmetatable
-- LuaJIT without 5.2 compatibility has no rawlen, but then # does not
-- consult __len for a table either.
local rawlen = rawlen or function(t) return #t end

local function is_identifier(k)
    return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
        and not ({ ["and"] = 1, ["break"] = 1, ["do"] = 1, ["else"] = 1, ["elseif"] = 1,
            ["end"] = 1, ["false"] = 1, ["for"] = 1, ["function"] = 1, ["goto"] = 1,
            ["if"] = 1, ["in"] = 1, ["local"] = 1, ["nil"] = 1, ["not"] = 1, ["or"] = 1,
            ["repeat"] = 1, ["return"] = 1, ["then"] = 1, ["true"] = 1, ["until"] = 1,
            ["while"] = 1 })[k]
end

local function number_text(v)
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
        return string.format("%d", v)
    end
    return string.format("%.14g", v)
end

-- "table: 0x..." for any value, without running a metamethod (string.format's
-- %p reads the address; tostring would call __tostring).
local function raw_name(v)
    local t = type(v)
    if t == "nil" then return "nil" end
    if t == "boolean" then return v and "true" or "false" end
    if t == "number" then return number_text(v) end
    if t == "string" then return v end
    return t .. ": " .. string.format("%p", v)
end

-- The message of an error raised while formatting, as plain text.
local function raw_message(e)
    if type(e) == "string" then return e end
    if type(e) == "table" then
        local m = rawget(e, "message")
        if type(m) == "string" then return m end
    end
    return raw_name(e)
end

-- tostring(v), or, when that raises or does not give a string, text that
-- says so and names the value by its address.
local function safe_tostring(v)
    local t = type(v)
    if t == "string" then return v end
    if t == "nil" or t == "boolean" then return raw_name(v) end
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
    local why = ok and ("__tostring returned a " .. type(s))
        or ("__tostring raised: " .. raw_message(s))
    return "<" .. raw_name(v) .. " (" .. why .. ")>"
end
repl.safe_tostring = safe_tostring

local function scalar(v)
    local t = type(v)
    if t == "string" then
        return (string.format("%q", v):gsub("\\\n", "\\n"))
    elseif t == "number" then
        return number_text(v)
    end
    return safe_tostring(v)
end

-- True if v has a __tostring of its own (looked up raw, as tostring does).
local function has_tostring(v)
    local mt = real_metatable(v)
    return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- Keys in a stable, readable order: the array part first, then numbers,
-- then strings, then anything else, each group sorted (the last two by
-- their raw names, so that sorting runs no metamethod).
local KEY_RANK = { number = 1, string = 2, boolean = 3 }

local function sorted_keys(t)
    local n = rawlen(t)
    local keys, names = {}, {}
    local k = next(t)
    while k ~= nil do
        if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
            keys[#keys + 1] = k
            if not KEY_RANK[type(k)] or type(k) == "boolean" then names[k] = raw_name(k) end
        end
        k = next(t, k)
    end
    table.sort(keys, function(a, b)
        local ra, rb = KEY_RANK[type(a)] or 4, KEY_RANK[type(b)] or 4
        if ra ~= rb then return ra < rb end
        if ra <= 2 then return a < b end
        return names[a] < names[b]
    end)
    return n, keys
end

local format_value

local function key_text(k)
    if is_identifier(k) then return k end
    return "[" .. scalar(k) .. "]"
end

-- The items of t as strings, one per entry ("k = v" or just "v").
local function table_items(t, depth, indent, seen)
    local n, keys = sorted_keys(t)
    local items = {}
    local total = n + #keys
    for i = 1, n do
        if #items == MAX_ITEMS then break end
        items[#items + 1] = format_value(rawget(t, i), depth + 1, indent, seen)
    end
    for _, k in ipairs(keys) do
        if #items == MAX_ITEMS then break end
        items[#items + 1] = key_text(k) .. " = "
            .. format_value(rawget(t, k), depth + 1, indent, seen)
    end
    if total > #items then
        items[#items + 1] = string.format("... (%d more)", total - #items)
    end
    return items
end

format_value = function(v, depth, indent, seen)
    if type(v) ~= "table" then return scalar(v) end
    if has_tostring(v) then return safe_tostring(v) end
    if seen[v] then return "<cycle: " .. raw_name(v) .. ">" end
    if next(v) == nil then return "{}" end
    if depth >= MAX_DEPTH then return "{...}" end
    seen[v] = true
    local items = table_items(v, depth, indent .. "  ", seen)
    seen[v] = nil
    local one = "{ " .. table.concat(items, ", ") .. " }"
    if #one + #indent <= LINE and not one:find("\n", 1, true) then return one end
    local inner = indent .. "  "
    return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

-- The text of any value as the REPL shows it: tables nested, keys sorted,
-- at most MAX_DEPTH levels, a table met again inside itself marked
-- "<cycle: table: 0x...>".  It never raises for a hostile value (see
-- above); only running out of memory can stop it.
function repl.pretty(v)
    return format_value(v, 0, "", {})
end

-- ---- chunks ----

-- All the values, however many and whatever nils among them.
local function pack(...)
    return { n = select("#", ...), ... }
end

-- "incomplete" when src ends in the middle of a construct, "ok" with a
-- function that returns the chunk's values packed ({ n =, ... }), or
-- "error" with the message.
--
-- An expression is compiled as an argument list rather than after a
-- return: "return f()" is a tail call, which would take the chunk's frame
-- out of tracebacks and error positions ("stdin:1: boom" would lose its
-- "stdin:1:").  The newline before ")" keeps a trailing comment from
-- swallowing it.
function repl.compile(src, env)
    local fn = loadstring("local pack = ... return pack(" .. src .. "\n)", "=stdin")
    local run
    if fn then
        run = function() return fn(pack) end
    else
        local err
        fn, err = loadstring(src, "=stdin")
        if not fn then
            if err:sub(-7) == "'<eof>'" then return "incomplete" end
            return "error", err
        end
        run = function() return pack(fn()) end
    end
    if env then setfenv(fn, env) end
    return "ok", run
end

-- A field of an error value as text: a string as it is, anything else as
-- the printer shows it.
local function field_text(v)
    if type(v) == "string" then return v end
    return repl.pretty(v)
end

-- The message of an error value: ms error tables by their fields (read
-- raw: the value may be anyone's, with an __index that raises).  Never
-- raises for a hostile value.
local function error_text(e)
    if type(e) == "table" then
        if has_tostring(e) then return safe_tostring(e) end
        local message = rawget(e, "message")
        if message ~= nil then
            local code = rawget(e, "code")
            return (code ~= nil and (field_text(code) .. ": ") or "") .. field_text(message)
        end
        return repl.pretty(e)
    end
    return safe_tostring(e)
end
repl.error_text = error_text

-- A traceback cut down to the user's frames: it stops at the REPL's own
-- machinery (xpcall, this file), drops the frames of error() itself and
-- keeps at most 8 lines.
local function short_traceback(tb)
    local out = {}
    for line in tb:gmatch("[^\n]+") do
        if line:find("ms/repl.lua", 1, true) or line:find("xpcall", 1, true) then
            break
        end
        if line ~= "stack traceback:" and not line:find("[builtin#", 1, true)
            and not line:find("in function 'error'", 1, true)
            and not line:find("(tail call)", 1, true) then
            out[#out + 1] = line
            if #out == 8 then break end
        end
    end
    if #out == 0 then return nil end
    return "stack traceback:\n" .. table.concat(out, "\n")
end

-- What the chunk's error handler returns; a failed handler (a stack
-- overflow, say) leaves xpcall with something else.
local HANDLED = {}

local function handler(e)
    return { [HANDLED] = true, value = e, traceback = debug.traceback("", 2) }
end

-- ---- sessions ----

local Session = {}
Session.__index = Session

-- Appends a line; runs the chunk once complete.  Returns "more" when the
-- chunk needs another line, "done" otherwise.
function Session:feed(line)
    if self.buffer then
        self.buffer = self.buffer .. "\n" .. line
    else
        if line:sub(1, 1) == "=" then line = line:sub(2) end
        self.buffer = line
    end
    if self.buffer:match("^%s*$") then
        self.buffer = nil
        return "done"
    end
    local status, fn = repl.compile(self.buffer, self.env)
    if status == "incomplete" then return "more" end
    self.buffer = nil
    if status == "error" then
        self.write("error: " .. fn .. "\n")
        return "done"
    end
    self:run(fn)
    return "done"
end

-- True while a chunk waits for its next line.
function Session:pending()
    return self.buffer ~= nil
end

-- Drops a half-typed chunk.
function Session:reset()
    self.buffer = nil
end

-- Writes what the chunk returned, or the error it raised.
local function show(self, ok, r)
    if not ok then
        local e = r
        if type(e) ~= "table" or not rawget(e, HANDLED) then
            e = { value = e }
        end
        self.write("error: " .. error_text(e.value) .. "\n")
        local tb = type(e.value) == "table" and rawget(e.value, "traceback")
        tb = short_traceback(type(tb) == "string" and tb or e.traceback or "")
        if tb then self.write(tb .. "\n") end
        return
    end
    if r.n == 0 then return end
    local parts = {}
    for i = 1, r.n do parts[i] = repl.pretty(r[i]) end
    self.write(table.concat(parts, "\t") .. "\n")
end

-- Runs a compiled chunk and shows the outcome.  Nothing the chunk returns
-- or raises ends the session: showing it is protected as well (it can
-- still run out of memory), and a failure there is reported as one line.
function Session:run(fn)
    local ok, r = xpcall(fn, handler)
    local shown, err = pcall(show, self, ok, r)
    if not shown then
        pcall(self.write, "error: the REPL could not show the "
            .. (ok and "result" or "error") .. ": " .. raw_message(err) .. "\n")
    end
end

-- ---- helpers over the live runtime ----

local function ms_module()
    local ok, ms = pcall(require, "ms")
    if not ok then error("the ms module is not available: " .. tostring(ms), 3) end
    return ms
end

-- The runtime's totals, per worker and per agent, as ms.metrics() reports
-- them, grouped for reading.
function repl.metrics()
    local m = ms_module().metrics()
    local totals = {}
    for k, v in pairs(m) do
        if type(v) ~= "table" then totals[k] = v end
    end
    return { totals = totals, workers = repl.workers(m), agents = repl.agents(m.agents),
             events = m.events }
end

-- One row per agent: id, name, status, mailbox depth, memory (bytes).
function repl.agents(list)
    list = list or ms_module().agents()
    local rows = {}
    for _, a in ipairs(list) do
        rows[#rows + 1] = { id = a.id, name = a.name, status = a.state,
                            mailbox = a.mailbox, memory = a.memory }
    end
    table.sort(rows, function(x, y) return x.id < y.id end)
    return rows
end

-- One row per worker: active (false: retired by a resize), polls, busy
-- seconds, local queue depth, parked, seconds stalled in the current poll
-- (0 if none).
function repl.workers(m)
    m = m or ms_module().metrics()
    local rows = {}
    for i, w in ipairs(m.per_worker) do
        rows[i] = { worker = i, active = w.active ~= false, polls = w.poll_count, busy = w.busy,
                    queue = w.local_queue_depth, parked = w.parked, stalled = w.stalled }
    end
    return rows
end

local function pad(s, n)
    s = safe_tostring(s)
    if #s >= n then return s end
    return s .. string.rep(" ", n - #s)
end

-- One screen of top: workers, queues and the busiest agents, by the CPU
-- time their polls took since the previous screen when prev is given (a
-- table { [id] = cpu seconds } that the previous call returned), else in
-- total.
function repl.top_text(prev)
    local m = ms_module().metrics()
    local lines = {}
    lines[#lines + 1] = string.format(
        "uptime %.1fs  workers %d active of %d  tasks %d alive  injection queue %d  "
            .. "blocking %d/%d (queue %d)",
        m.uptime, m.active_workers or m.workers, m.workers, m.alive_tasks,
        m.injection_queue_depth, m.blocking_threads,
        m.max_blocking_threads, m.blocking_queue_depth)
    lines[#lines + 1] = ""
    lines[#lines + 1] = "worker      polls    busy(s)  queue  parked  stalled(s)"
    for i, w in ipairs(m.per_worker) do
        lines[#lines + 1] = string.format("%6d %10d %10.2f %6d  %-6s  %10.2f%s", i, w.poll_count,
            w.busy, w.local_queue_depth, safe_tostring(w.parked), w.stalled,
            w.active == false and "  (retired)" or "")
    end
    local cpu = {}
    local rows = {}
    for _, a in ipairs(m.agents) do
        local used = a.cpu or 0
        cpu[a.id] = used
        rows[#rows + 1] = { a = a, d = used - ((prev and prev[a.id]) or 0) }
    end
    table.sort(rows, function(x, y)
        if x.d ~= y.d then return x.d > y.d end
        return x.a.id < y.a.id
    end)
    local io = m.io
    if io then
        lines[#lines + 1] = string.format(
            "io: sockets %d  processes %d  read %d B  written %d B  accepted %d  "
                .. "connect failures %d  spawned %d",
            io.sockets_open, io.processes_open, io.bytes_read, io.bytes_written, io.accepted,
            io.connect_failures, io.processes_spawned)
    end
    lines[#lines + 1] = ""
    lines[#lines + 1] = prev and "agents by CPU in the last second" or "agents by CPU"
    lines[#lines + 1] = "    id  name                      status    mailbox     memory      polls"
        .. "    cpu(s)"
    for i = 1, math.min(#rows, 10) do
        local a = rows[i].a
        lines[#lines + 1] = string.format("%6d  %s  %s %8d %10d %10d %9.3f", a.id,
            pad(a.name, 24), pad(a.state, 8), a.mailbox, a.memory, a.polls, rows[i].d)
    end
    return table.concat(lines, "\n") .. "\n", cpu
end

-- The live task dump as text (ms.tasks with format = "text"): filter is
-- ms.tasks's ({ agent = NAME, state = STATE, ... }) or an agent's name.
function repl.tasks_text(filter)
    local f = {}
    if type(filter) == "string" then
        f.agent = filter
    elseif type(filter) == "table" then
        for k, v in pairs(filter) do f[k] = v end
    elseif filter ~= nil then
        error("tasks(): expected a filter table ({ agent = NAME, state = STATE }) or an "
            .. "agent's name, not a " .. type(filter), 2)
    end
    f.format = "text"
    local text, err = ms_module().tasks(f)
    if not text then error("tasks(): " .. safe_tostring(err), 2) end
    return text
end

-- One row per host of the cluster (docs/cluster.md): id, this one or not,
-- up or lost, seconds since last heard of, build; {} outside a cluster.
function repl.hosts()
    local rows = {}
    for _, h in ipairs(ms_module().cluster.hosts()) do
        rows[#rows + 1] = { id = h.id, self = h.self, state = h.lost and "lost" or "up",
                            silent = h.self and 0 or math.floor(h.silent * 1000) / 1000,
                            build = h.build }
    end
    return rows
end

-- ms.tune{...} when this build has it.
function repl.tune(settings)
    local ms = ms_module()
    local tune = ms.tune
    -- A function, or a table with __call (ms.tune also lists live_fields).
    local mt = type(tune) == "table" and real_metatable(tune)
    if type(tune) ~= "function" and not (type(mt) == "table" and rawget(mt, "__call")) then
        error("ms.tune is not available in this build", 2)
    end
    return tune(settings)
end

-- The session's globals: _G underneath, the helpers and print on top.
-- opts.top replaces the one-snapshot top() (the terminal's refreshes).
local function new_env(write, opts)
    local env = {}
    env.print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = safe_tostring((select(i, ...))) end
        write(table.concat(parts, "\t") .. "\n")
    end
    -- io.write too, so that a console session's output reaches its
    -- client rather than the host's stdout; the rest of io is io's.
    env.io = setmetatable({
        write = function(...)
            local parts = {}
            for i = 1, select("#", ...) do parts[i] = safe_tostring((select(i, ...))) end
            write(table.concat(parts))
        end,
    }, { __index = io })
    env.metrics = function() return repl.metrics() end
    env.agents = function() return repl.agents() end
    env.workers = function() return repl.workers() end
    env.hosts = function() return repl.hosts() end
    env.tune = function(settings) return repl.tune(settings) end
    env.top = opts.top or function() write(repl.top_text()) end
    env.tasks = function(filter) write(repl.tasks_text(filter)) end
    local has_ms, ms = pcall(require, "ms")
    if has_ms then env.ms = ms end
    env._G = env
    return setmetatable(env, { __index = _G })
end

-- A session: opts.write(text) receives everything it prints; opts.top
-- (optional) replaces top().
function repl.session(opts)
    assert(type(opts) == "table" and type(opts.write) == "function",
        "repl.session{ write = fn } needs a write function")
    local self = setmetatable({ write = opts.write }, Session)
    self.env = new_env(opts.write, opts)
    return self
end

function repl.banner()
    return string.format("ms-host REPL (%s) - helpers: metrics() agents() workers() top() "
        .. "tasks() tune{...}; Ctrl-D exits", jit and jit.version or _VERSION)
end

-- ---- the terminal (ms-host repl) ----

-- Runs the REPL on the terminal until end of input.  term is the C module
-- ms.repl_term: readline(prompt) -> line|nil runs on the blocking pool so
-- the workers keep running while the prompt waits.
function repl.terminal(term)
    local ms = ms_module()
    local function write(s) io.stdout:write(s); io.stdout:flush() end
    local function top()
        if not term.isatty() then
            write(repl.top_text())
            return
        end
        term.raw_mode(true)
        local ok, err = pcall(function()
            local prev
            repeat
                local text
                text, prev = repl.top_text(prev)
                write("\27[H\27[2J" .. text .. "\n(press a key to return)\n")
                local waited, key = ms.blocking(term.wait_key, 1)
            until not waited or key
        end)
        term.raw_mode(false)
        write("\n")
        if not ok then error(err, 0) end
    end
    local s = repl.session{ write = write, top = top }
    term.load_history()
    if term.isatty() then write(repl.banner() .. "\n") end
    while true do
        local ok, line = ms.blocking(term.readline, s:pending() and ">> " or "> ")
        if not ok then
            write("error: cannot read a line: " .. error_text(line) .. "\n")
            break
        end
        if line == nil then
            if term.isatty() then write("\n") end
            break
        end
        if line:match("%S") then term.add_history(line) end
        s:feed(line)
    end
    term.save_history()
end

return repl
