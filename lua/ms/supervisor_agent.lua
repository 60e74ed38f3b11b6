-- ms.supervisor_agent: the main function of a supervisor's agent.
--
-- Spawned by ms.supervisor (lua/ms/supervisor.lua) with the converted spec
-- as its args.  One loop, one coroutine: it receives child exit notices
-- (it monitors every child), calls from supervisor handles, and a
-- { event = "shutdown" } request from its own supervisor; delayed restarts
-- are timers that bound how long it waits for the next message.  Being one
-- coroutine, it never has to lock its own state; while it waits for a
-- child to stop, the other messages it reads are put aside and handled
-- afterwards, in order.
--
-- A small guard agent watches the supervisor and, if it dies without
-- stopping its children (killed, or a bug), stops them: children never
-- outlive their supervisor (OTP's links).

local ms = require "ms"
local bytecode = require "ms.bytecode"
local backoff = require "ms.backoff"
local policies = require "ms.supervisor_policies"
local circuit_breaker = require "ms.circuit_breaker"

local KEY = "ms.supervisor"
local KILL_WAIT = 5          -- seconds to wait for an exit after a:stop
local START_CALL_WAIT = 10   -- seconds a failed supervisor waits to report it

-- An agent's key in the tables below: its id, or in a cluster its host
-- and id (agent ids are per host: a remote child may have a local one's).
local function agent_key(a)
    local host = a:host()
    return host and (host .. ":" .. a:id()) or a:id()
end

-- ---- the guard ----

-- Runs in an agent of its own (its bytecode is copied: no upvalues, so
-- it has its own copy of agent_key).
local function guard_main(args)
    local function agent_key(a)
        local host = a:host()
        return host and (host .. ":" .. a:id()) or a:id()
    end
    local sup_key = agent_key(args.sup)
    ms.monitor(args.sup)
    local children, added = {}, 0 -- key -> { agent, n }: n orders them
    while true do
        local m, from = ms.recv()
        -- Only messages of the host (from == nil: the notice) and of the
        -- supervisor itself count; another agent could forge either.
        if type(m) == "table" and (from == nil or from == args.sup) then
            if m.add then
                added = added + 1
                children[agent_key(m.add)] = { m.add, added }
            elseif m.remove then
                children[m.remove] = nil
            elseif from == nil and m.event == "exit" and m.agent
                and agent_key(m.agent) == sup_key then
                local list = {}
                for _, c in pairs(children) do
                    list[#list + 1] = c
                end
                table.sort(list, function(a, b) return a[2] > b[2] end) -- newest first
                for _, c in ipairs(list) do
                    c[1]:stop("supervisor exited")
                end
                return
            end
        end
    end
end

local function guard_add(S, a)
    if S.guard then
        S.guard:send({ add = a })
    end
end

local function guard_remove(S, key)
    if S.guard then
        S.guard:send({ remove = key })
    end
end

-- ---- events ----

local function emit(S, kind, data)
    data.event = kind
    data.supervisor = S.name
    if S.on_event then
        local ok, err = pcall(S.on_event, data)
        if not ok then
            local shown, text = pcall(tostring, err)
            ms.log("error", "supervisor.on_event_failed", ("supervisor %s: on_event failed: %s")
                :format(S.name, shown and type(text) == "string" and text
                    or "(an error value whose __tostring fails)"))
        end
    end
    local events = rawget(ms, "events")
    if type(events) == "table" and events.publish then
        pcall(events.publish, "ms.supervisor." .. kind, data)
    end
end

-- ---- the mailbox ----

-- The agent key (agent_key) of an exit notice, or nil for any other
-- message.  A notice comes from the host, with no sender: one from an
-- agent is a forgery (it would have a running child restarted twice) and
-- only a message.
local function notice_key(msg, from)
    if from ~= nil or type(msg) ~= "table" or msg.event ~= "exit"
        or type(msg.agent) ~= "userdata" then
        return nil
    end
    local ok, key = pcall(agent_key, msg.agent)
    return ok and key or nil
end

local function defer(S, msg, from)
    S.deferred[#S.deferred + 1] = { msg, from }
end

-- The next message: those put aside first, then the mailbox.
local function next_message(S, timeout)
    if #S.deferred > 0 then
        local m = table.remove(S.deferred, 1)
        return m[1], m[2]
    end
    return ms.recv(timeout)
end

-- Waits up to timeout seconds (nil: for ever) for the exit notice of the
-- agent with this key, putting other messages aside.  -> true | false
local function wait_exit(S, id, timeout)
    for i, m in ipairs(S.deferred) do
        if notice_key(m[1], m[2]) == id then
            table.remove(S.deferred, i)
            return true
        end
    end
    local deadline = timeout and ms.now() + timeout
    while true do
        local left
        if deadline then
            left = deadline - ms.now()
            if left <= 0 then
                return false
            end
        end
        local msg, from = ms.recv(left)
        if msg == nil and from == "timeout" then
            return false
        end
        if notice_key(msg, from) == id then
            return true
        end
        defer(S, msg, from)
    end
end

-- ---- children ----

local function find_index(S, c)
    for i, x in ipairs(S.children) do
        if x == c then
            return i
        end
    end
end

local function remove_child(S, c)
    local i = find_index(S, c)
    if i then
        table.remove(S.children, i)
    end
    S.by_id[c.id] = nil
end

local function new_child(spec)
    return {
        id = spec.id,
        start = spec.start,
        restart = spec.restart,
        type = spec.type,
        shutdown = spec.shutdown,
        backoff = spec.backoff,
        breaker = spec.circuit_breaker and circuit_breaker(spec.circuit_breaker),
        host = spec.host,           -- the allowed hosts (supervisor.lua), or nil
        status = "stopped",
        restarts = 0,
        fails = 0,
    }
end

local function add_child(S, spec)
    local c = new_child(spec)
    S.children[#S.children + 1] = c
    S.by_id[c.id] = c
    return c
end

local function load_fn(S, code, id)
    local fn = S.fn_cache[code]
    if not fn then
        fn = bytecode.load(code, "=" .. tostring(id))
        S.fn_cache[code] = fn
    end
    return fn
end

-- ---- placing a child on a host ----

-- How many of this supervisor's children run on each host (by id).
local function load_by_host(S)
    local n = {}
    for _, c in ipairs(S.children) do
        if c.status == "running" and c.host_id then
            n[c.host_id] = (n[c.host_id] or 0) + 1
        end
    end
    return n
end

-- The hosts child c may start on now, best first: its host list in
-- order, each entry the live hosts it names ("local": this one; "any":
-- the others, those running fewest of our children first, then this one).
local function candidate_hosts(S, c)
    local me = ms.cluster.id()
    local live = {}
    for _, row in ipairs(ms.cluster.hosts()) do
        if not row.lost then
            live[#live + 1] = row
        end
    end
    local out, seen = {}, {}
    local function add(id)
        if id and not seen[id] then
            seen[id] = true
            out[#out + 1] = id
        end
    end
    for _, want in ipairs(c.host) do
        if want == "local" then
            add(me or "local")
        elseif want == "any" then
            local load = load_by_host(S)
            local others = {}
            for _, row in ipairs(live) do
                if not row.self then
                    others[#others + 1] = row.id
                end
            end
            table.sort(others, function(a, b)
                local la, lb = load[a] or 0, load[b] or 0
                if la ~= lb then
                    return la < lb
                end
                return a < b
            end)
            for _, id in ipairs(others) do
                add(id)
            end
            add(me)
        else
            for _, row in ipairs(live) do
                if row.id == want or row.name == want then
                    add(row.id)
                end
            end
        end
    end
    return out
end

local function describe_hosts(list)
    return "{ " .. table.concat(list, ", ") .. " }"
end

-- Starts c's agent on another host.  -> the handle; raises otherwise.
local function spawn_remote(S, c, host)
    local st = c.start
    local a, err = ms.agent.spawn{
        host = host, fn = st.fn_code and load_fn(S, st.fn_code, c.id), file = st.file,
        module = st.module, name = st.name, args = st.args, trap_exit = st.trap_exit,
    }
    if not a then
        error(("on host %s: %s"):format(host, tostring(err)), 0)
    end
    return a
end

local function spawn_agent(S, c)
    local st = c.start
    if c.host then
        local hosts = candidate_hosts(S, c)
        local me = ms.cluster.id()
        local host = hosts[1]
        if not host then
            error(("no host it may run on is live (host = %s)"):format(describe_hosts(c.host)), 0)
        end
        c.host_id = me and host or nil
        if host ~= me and host ~= "local" then
            return spawn_remote(S, c, host)
        end
    end
    if st.supervisor_spec then
        return ms.agent.spawn{
            module = "ms.supervisor_agent", name = st.name, name_scope = st.name_scope, args = st,
            memory_limit = st.memory_limit, restarts = c.restarts, supervised = true,
        }
    end
    -- supervised: at a host shutdown this supervisor stops the child (in
    -- reverse start order), not the host.
    return ms.agent.spawn{
        fn = st.fn_code and load_fn(S, st.fn_code, c.id), file = st.file, module = st.module,
        name = st.name, args = st.args, memory_limit = st.memory_limit, jit = st.jit,
        runaway = st.runaway, trap_exit = st.trap_exit, sandbox = st.sandbox,
        name_scope = st.name_scope, restarts = c.restarts, supervised = true,
    }
end

local stop_agent

-- Starts child c.  -> true | nil, err
local function start_child(S, c)
    local ok, a = pcall(spawn_agent, S, c)
    if not ok then
        c.status = "stopped"
        return nil, tostring(a)
    end
    -- Until the child is watched, recorded and known to the guard, a
    -- failure here (out of memory) stops it at once: left running, nobody
    -- would stop it (the host leaves supervised agents to their
    -- supervisor), and a graceful shutdown would wait for it.
    local adopted, why = pcall(function()
        ms.monitor(a)
        local key = agent_key(a)
        c.agent, c.agent_key, c.status, c.started_at = a, key, "running", ms.now()
        S.by_agent[key] = c
        guard_add(S, a)
    end)
    if not adopted then
        a:stop("its supervisor could not take it on")
        if c.agent_key then S.by_agent[c.agent_key] = nil end
        c.agent, c.agent_key, c.status = nil, nil, "stopped"
        return nil, tostring(why)
    end
    if c.start.supervisor_spec then
        -- A nested supervisor has started when it has started its children.
        local r, err = a:call({ [KEY] = "await_start" })
        if not (r and r.ok) then
            local why = r and r.err or tostring(err)
            stop_agent(S, c, "brutal")
            return nil, why
        end
    end
    return true
end

-- Stops child c by its shutdown, as OTP does: a child that does not trap
-- exits (ms.trap_exit, ms.on_shutdown) is stopped at once, whatever its
-- shutdown; so is any child with "brutal_kill".  A trapping child with a
-- number of seconds (or "infinity") is sent { event = "shutdown" } and
-- given that long to end, then stopped.
stop_agent = function(S, c, brutal)
    local a, id = c.agent, c.agent_key
    if not a then
        return
    end
    S.by_agent[id] = nil
    local exited = false
    -- A child on another host traps exits if its start table said so
    -- (what it turned on later is not known here).
    local remote = c.host_id and c.host_id ~= ms.cluster.id()
    local traps
    if remote then
        traps = c.start.trap_exit
    else
        traps = a:info().trap_exit
    end
    if brutal or c.shutdown == "brutal_kill" or not traps then
        a:stop("shutdown")
    else
        a:send({ event = "shutdown", reason = "shutdown" })
        exited = wait_exit(S, id, c.shutdown ~= "infinity" and c.shutdown or nil)
        if not exited then
            a:stop("shutdown")
        end
    end
    if not exited and not wait_exit(S, id, KILL_WAIT) then
        -- Stuck where it cannot be interrupted (a loop in compiled code).
        S.stats.unkillable = S.stats.unkillable + 1
    end
    c.agent, c.agent_key = nil, nil
    c.status = "stopped"
    guard_remove(S, id)
end

local function cancel_timer(S, c)
    for _, t in ipairs(S.timers) do
        for i = #t.ids, 1, -1 do
            if t.ids[i] == c.id then
                table.remove(t.ids, i)
            end
        end
    end
    if c.status == "restarting" then
        c.status = "stopped"
    end
end

-- Stops every child, in reverse start order.
local function stop_all(S)
    for i = #S.children, 1, -1 do
        local c = S.children[i]
        if c then
            cancel_timer(S, c)
            stop_agent(S, c)
        end
    end
    S.timers = {}
end

local function escalate(S, message)
    if S.done then
        return
    end
    emit(S, "escalated", { message = message })
    stop_all(S)
    S.escalation = message
    S.done = true
end

-- ---- restarts ----

local function recent_restarts(S, now)
    local kept = {}
    for _, t in ipairs(S.restart_times) do
        if t > now - S.period then
            kept[#kept + 1] = t
        end
    end
    S.restart_times = kept
    return #kept
end

-- The backoff delay before restarting c after a run of `uptime` seconds
-- (0 without backoff), and the circuit breaker's say.
local function restart_delay(S, c, uptime)
    local delay = 0
    local b = c.backoff or S.backoff
    if b then
        if uptime and uptime >= (b.reset or S.period) then
            c.fails = 0
        end
        c.fails = c.fails + 1
        delay = backoff.delay(b.min, b.factor, b.max, b.jitter, c.fails)
    end
    if c.breaker then
        if uptime and uptime >= S.period then
            c.breaker:success()
        end
        c.breaker:failure()
        if c.breaker:state() == "open" then
            delay = math.max(delay, c.breaker:retry_in())
        end
    end
    return delay
end

local schedule

-- Starts the children with these ids again (those still waiting for it),
-- counting one restart against the intensity.  `delay`: the seconds the
-- restart was scheduled to wait (reported in the restarted event).
local function perform_restart(S, ids, delay)
    local due = {}
    for _, id in ipairs(ids) do
        local c = S.by_id[id]
        if c and c.status == "restarting" then
            due[#due + 1] = c
        end
    end
    if #due == 0 or S.done then
        return
    end
    local now = ms.now()
    S.restart_times[#S.restart_times + 1] = now
    if recent_restarts(S, now) > S.intensity then
        return escalate(S, "restart intensity exceeded")
    end
    S.stats.restarts = S.stats.restarts + 1
    for _, c in ipairs(due) do
        c.restarts = c.restarts + 1
        local ok, err = start_child(S, c)
        if ok then
            emit(S, "restarted", { id = c.id, agent = c.agent, restarts = c.restarts,
                delay = delay or 0, host = c.host_id })
        else
            -- A failed start is a failure like any other: try again (after
            -- the backoff); the intensity ends a loop of them.
            emit(S, "restart_failed", { id = c.id, message = err })
            c.status = "restarting"
            schedule(S, { c.id }, restart_delay(S, c, 0))
        end
    end
end

schedule = function(S, ids, delay)
    S.timers[#S.timers + 1] = { at = ms.now() + delay, ids = ids, delay = delay }
end

-- Restarts a group of children: those of `ids` that run are stopped (in
-- reverse start order), then all of them that ran, or were waiting for a
-- restart, or are `trigger` (the child whose exit caused this), start again
-- in start order, after `delay` seconds.  Temporary children stopped this
-- way are forgotten, as in OTP.
local function restart_group(S, ids, delay, trigger)
    local wanted = {}
    for _, id in ipairs(ids) do
        wanted[id] = true
    end
    local group = {}
    for _, c in ipairs(S.children) do
        if wanted[c.id] then
            group[#group + 1] = c
        end
    end
    local again = {}
    for i = #group, 1, -1 do
        local c = group[i]
        if c == trigger then
            again[c] = true
        elseif c.status == "running" then
            stop_agent(S, c)
            if c.restart == "temporary" then
                remove_child(S, c)
            else
                again[c] = true
            end
        elseif c.status == "restarting" then
            cancel_timer(S, c)
            again[c] = true
        end
    end
    local order = {}
    for _, c in ipairs(group) do
        if again[c] then
            c.status = "restarting"
            order[#order + 1] = c.id
        end
    end
    if delay > 0 then
        schedule(S, order, delay)
    else
        perform_restart(S, order, 0)
    end
end

local function run_due_timers(S)
    local i = 1
    while i <= #S.timers and not S.done do
        local t = S.timers[i]
        if t.at <= ms.now() then
            table.remove(S.timers, i)
            perform_restart(S, t.ids, t.delay)
        else
            i = i + 1
        end
    end
end

-- Seconds until the next timer, or nil when there is none.
local function next_wait(S)
    local at
    for _, t in ipairs(S.timers) do
        if not at or t.at < at then
            at = t.at
        end
    end
    return at and math.max(0, at - ms.now())
end

-- ---- policies ----

local function child_ids(S, from)
    local ids, on = {}, from == nil
    for _, c in ipairs(S.children) do
        if c.id == from then
            on = true
        end
        if on then
            ids[#ids + 1] = c.id
        end
    end
    return ids
end

local function policy_context(S)
    local children = {}
    for i, c in ipairs(S.children) do
        children[i] = { id = c.id, restart = c.restart, type = c.type, status = c.status }
    end
    local sup = {
        strategy = S.strategy_name,
        children = children,
        intensity = S.intensity,
        period = S.period,
        restarts_in_period = recent_restarts(S, ms.now()),
        recovery = S.recovery,
        now = ms.now(),
    }
    function sup.decide(exit)
        return policies.decide(exit, S.recovery)
    end
    function sup.default(exit)
        return S.strategy(exit, sup)
    end
    function sup.all()
        return child_ids(S)
    end
    function sup.rest(id)
        return child_ids(S, id)
    end
    return sup
end

local function describe(v)
    if type(v) ~= "table" then
        return tostring(v)
    end
    local parts = {}
    for k, x in pairs(v) do
        parts[#parts + 1] = tostring(k) .. "=" .. tostring(x)
    end
    table.sort(parts)
    return "{ " .. table.concat(parts, ", ") .. " }"
end

local function is_id_list(S, ids)
    if type(ids) ~= "table" then
        return false
    end
    for _, id in ipairs(ids) do
        if not S.by_id[id] then
            return false
        end
    end
    return true
end

local function apply(S, c, exit, action)
    if action == "ignore" then
        if S.dynamic or c.restart == "temporary" then
            remove_child(S, c)
        end
        return
    end
    if action == "escalate" then
        return escalate(S, ("escalated: child %s exited (%s%s)"):format(
            tostring(c.id), exit.reason, exit.message and (": " .. exit.message) or ""))
    end
    local t = type(action) == "table" and action or nil
    if action == "restart" or (t and t.restart == nil and type(t.restart_after) == "number") then
        local delay = restart_delay(S, c, exit.uptime)
        if t then
            delay = t.restart_after
        end
        return restart_group(S, { c.id }, delay, c)
    end
    if t and is_id_list(S, t.restart) and (t.after == nil or type(t.after) == "number") then
        local delay = restart_delay(S, c, exit.uptime)
        if t.after then
            delay = t.after
        end
        return restart_group(S, t.restart, delay, c)
    end
    escalate(S, "the policy returned an invalid action: " .. describe(action))
end

local function escalation_message(m)
    return type(m) == "string" and (m:find("restart intensity exceeded", 1, true) == 1
        or m:find("escalated", 1, true) == 1)
end

local function on_exit(S, msg, id)
    local c = S.by_agent[id]
    if not c then
        return -- an agent we already stopped or forgot
    end
    S.by_agent[id] = nil
    guard_remove(S, id)
    c.agent, c.agent_key, c.status = nil, nil, "stopped"
    S.stats.exits = S.stats.exits + 1
    local exit = {
        id = c.id, name = msg.name, reason = msg.reason, message = msg.message,
        traceback = msg.traceback, unread = msg.unread, restart = c.restart,
        type = c.type, restarts = c.restarts, uptime = ms.now() - (c.started_at or ms.now()),
        host = c.host_id,
    }
    if c.type == "supervisor" and msg.reason == "error" and escalation_message(msg.message) then
        S.stats.escalations = S.stats.escalations + 1
    end
    local ok, action = pcall(S.policy, exit, policy_context(S))
    emit(S, "child_exited", {
        id = c.id, name = msg.name, reason = msg.reason, message = msg.message, host = c.host_id,
        action = ok and (type(action) == "table" and describe(action) or tostring(action))
            or "escalate",
    })
    if not ok then
        return escalate(S, "the policy failed: " .. tostring(action))
    end
    apply(S, c, exit, action)
end

-- ---- calls ----

local handlers = {}

function handlers.await_start(S)
    return { name = S.name, strategy = S.strategy_name }
end
handlers.info = handlers.await_start

function handlers.which_children(S)
    local list = {}
    for i, c in ipairs(S.children) do
        list[i] = {
            id = c.id, agent = c.agent, type = c.type, restart = c.restart,
            status = c.status, restarts = c.restarts, host = c.host_id,
        }
    end
    return list
end

function handlers.count_children(S)
    local n = { specs = #S.children, active = 0, supervisors = 0, workers = 0 }
    for _, c in ipairs(S.children) do
        if c.status == "running" then
            n.active = n.active + 1
        end
        if c.type == "supervisor" then
            n.supervisors = n.supervisors + 1
        else
            n.workers = n.workers + 1
        end
    end
    return n
end

function handlers.stats(S)
    local s = {}
    for k, v in pairs(S.stats) do
        s[k] = v
    end
    return s
end

local function merged_args(template_args, args)
    if type(template_args) == "table" and type(args) == "table" then
        local out = {}
        for k, v in pairs(template_args) do
            out[k] = v
        end
        for k, v in pairs(args) do
            out[k] = v
        end
        return out
    end
    if args == nil then
        return template_args
    end
    return args
end

local function dynamic_spec(S, args)
    S.next_dynamic = S.next_dynamic + 1
    local n = S.next_dynamic
    local tpl = S.template
    local start = {}
    for k, v in pairs(tpl.start) do
        start[k] = v
    end
    if start.supervisor_spec then
        if start.name then
            start.name = start.name .. "-" .. n
        end
    else
        start.args = merged_args(tpl.start.args, args)
        if start.name then
            start.name = start.name .. "-" .. n
        end
    end
    local spec = {}
    for k, v in pairs(tpl) do
        spec[k] = v
    end
    spec.id = tostring(tpl.id) .. "-" .. n
    spec.start = start
    return spec
end

function handlers.start_child(S, arg)
    local spec
    if S.dynamic then
        spec = dynamic_spec(S, arg)
    else
        spec = arg
        if type(spec) ~= "table" or spec.id == nil then
            return nil, "start_child: expects a child spec"
        end
        if S.by_id[spec.id] then
            return nil, ("start_child: a child with id %s exists already"):format(
                tostring(spec.id))
        end
    end
    local c = add_child(S, spec)
    local ok, err = start_child(S, c)
    if not ok then
        remove_child(S, c)
        return nil, ("child %s failed to start: %s"):format(tostring(c.id), err)
    end
    emit(S, "child_started", { id = c.id, agent = c.agent })
    return c.agent, c.id
end

local function child_or_err(S, id)
    local c = S.by_id[id]
    if not c then
        return nil, ("no child with id %s"):format(tostring(id))
    end
    return c
end

function handlers.terminate_child(S, id)
    local c, err = child_or_err(S, id)
    if not c then
        return nil, err
    end
    cancel_timer(S, c)
    stop_agent(S, c)
    if S.dynamic then
        remove_child(S, c)
    end
    return true
end

function handlers.restart_child(S, id)
    local c, err = child_or_err(S, id)
    if not c then
        return nil, err
    end
    if c.status == "running" then
        return nil, "running"
    end
    cancel_timer(S, c)
    c.restarts = c.restarts + 1
    local ok, serr = start_child(S, c)
    if not ok then
        return nil, ("child %s failed to start: %s"):format(tostring(c.id), serr)
    end
    emit(S, "restarted", { id = c.id, agent = c.agent, restarts = c.restarts, delay = 0 })
    return c.agent
end

function handlers.delete_child(S, id)
    local c, err = child_or_err(S, id)
    if not c then
        return nil, err
    end
    if c.status == "running" then
        return nil, "running"
    end
    cancel_timer(S, c)
    remove_child(S, c)
    return true
end

function handlers.stop(S)
    stop_all(S)
    S.done = true
    return true
end

local function on_call(S, msg, reply)
    local h = handlers[msg[KEY]]
    local answer
    if not h then
        answer = { ok = false, err = "unknown supervisor request " .. tostring(msg[KEY]) }
    else
        local ok, value, extra = pcall(h, S, msg.arg)
        if not ok then
            answer = { ok = false, err = tostring(value) }
        elseif value == nil then
            answer = { ok = false, err = extra }
        else
            answer = { ok = true, value = value, extra = extra }
        end
    end
    -- `reply` is a reply handle for a call; anything else cannot answer.
    pcall(reply, answer)
end

-- ---- the loop ----

local function dispatch(S, msg, from)
    local id = notice_key(msg, from)
    if id then
        return on_exit(S, msg, id)
    end
    if type(msg) == "table" then
        if msg[KEY] ~= nil then
            return on_call(S, msg, from)
        end
        if msg.event == "shutdown" then
            stop_all(S)
            S.done = true
            return
        end
    end
    S.stats.ignored_messages = S.stats.ignored_messages + 1
end

local function load_policy(code, what)
    return code and bytecode.load(code, "=" .. what)
end

local function new_state(spec)
    local strategy = spec.strategy_code and load_policy(spec.strategy_code, "strategy")
        or policies[spec.strategy]
    local S = {
        name = spec.name or ms.self():name(),
        strategy_name = spec.strategy,
        strategy = strategy,
        policy = load_policy(spec.policy_code, "policy") or strategy,
        on_event = load_policy(spec.on_event_code, "on_event"),
        recovery = spec.recovery or {},
        intensity = spec.intensity,
        period = spec.period,
        backoff = spec.backoff,
        dynamic = spec.strategy == "simple_one_for_one",
        children = {},
        by_id = {},
        by_agent = {},
        deferred = {},
        timers = {},
        restart_times = {},
        fn_cache = {},
        next_dynamic = 0,
        stats = { restarts = 0, escalations = 0, exits = 0, ignored_messages = 0, unkillable = 0 },
    }
    if S.dynamic then
        S.template = spec.children[1]
    else
        for _, c in ipairs(spec.children) do
            add_child(S, c)
        end
    end
    return S
end

local function start_all(S)
    for _, c in ipairs(S.children) do
        local ok, err = start_child(S, c)
        if not ok then
            return nil, ("child %s failed to start: %s"):format(tostring(c.id), err)
        end
    end
    return true
end

-- The await_start call of whoever started this supervisor (ms.supervisor,
-- or a parent supervisor's start_child), which it sends right after the
-- spawn: it is read before any child starts, so that a child crashing
-- past the intensity at once cannot end this supervisor before its
-- starter hears it has started (OTP's start_link returns ok after init,
-- whatever follows).  Other messages are put aside.  -> the reply handle,
-- or nil if none came within START_CALL_WAIT.
local function await_starter(S)
    local deadline = ms.now() + START_CALL_WAIT
    while true do
        local left = deadline - ms.now()
        if left <= 0 then
            return nil
        end
        local msg, from = ms.recv(left)
        if msg == nil and from == "timeout" then
            return nil
        end
        if type(msg) == "table" and msg[KEY] == "await_start" then
            return from
        end
        defer(S, msg, from)
    end
end

-- A supervisor that could not start stops what it started, tells whoever
-- started it and exits with reason "error".
local function fail_start(S, err, starter)
    stop_all(S)
    if starter then
        pcall(starter, { ok = false, err = err })
    end
    error(err, 0)
end

local function main(spec)
    local S = new_state(spec)
    S.guard = ms.agent.spawn{
        fn = guard_main,
        args = { sup = ms.self() },
    }
    -- On a host shutdown, stop the children in reverse start order (each
    -- by its shutdown) before this agent ends.
    ms.on_shutdown(function()
        S.done = true
        stop_all(S)
    end)
    local starter = await_starter(S)
    local ok, err = start_all(S)
    if not ok then
        fail_start(S, err, starter)
    end
    if starter then
        on_call(S, { [KEY] = "await_start" }, starter)
    end
    while not S.done do
        run_due_timers(S)
        if S.done then
            break
        end
        local msg, from = next_message(S, next_wait(S))
        if not (msg == nil and from == "timeout") then
            dispatch(S, msg, from)
        end
    end
    if S.escalation then
        error(S.escalation, 0)
    end
end

return main
