-- ms.supervisor: supervision trees with OTP semantics.  See docs/supervision.md.
--
--   local sup = ms.supervisor{ name =, strategy =, intensity = 3, period = 5,
--                              backoff = { min =, max =, jitter = }, policy = fn,
--                              recovery = { reason = action }, on_event = fn,
--                              children = { child spec... } }
--   -> a handle, or nil, err when a child failed to start
--
-- This file runs in the caller's agent: it checks the spec (raising an
-- error that names the field at fault), turns the functions in it into
-- bytecode (they cannot cross agents as values), spawns the supervisor's
-- own agent (module ms.supervisor_agent, the spec as its args) and waits
-- until it has started its children.  The handle's methods are calls to
-- that agent.
--
-- The value this module returns is ms.supervisor: callable as the
-- constructor, with .attach(agent) (a handle for a supervisor agent you
-- got elsewhere, e.g. a nested one from which_children) and .policies
-- (the built-in strategies, as policy functions).

local ms = require "ms"
local bytecode = require "ms.bytecode"
local backoff = require "ms.backoff"
local policies = require "ms.supervisor_policies"

local KEY = "ms.supervisor"

local STRATEGIES = {
    one_for_one = "one_for_one", one_for_all = "one_for_all", rest_for_one = "rest_for_one",
    simple_one_for_one = "simple_one_for_one", dynamic = "simple_one_for_one",
}
local RESTART_TYPES = { permanent = true, transient = true, temporary = true }
local CHILD_TYPES = { worker = true, supervisor = true }
local SUP_KEYS = {
    name = true, strategy = true, intensity = true, period = true, backoff = true,
    policy = true, recovery = true, on_event = true, children = true, memory_limit = true,
    name_scope = true,
}
local CHILD_KEYS = {
    id = true, start = true, restart = true, shutdown = true, type = true,
    backoff = true, circuit_breaker = true, host = true,
}
local START_KEYS = {
    fn = true, file = true, module = true, args = true, name = true,
    memory_limit = true, jit = true, runaway = true, trap_exit = true, sandbox = true,
    name_scope = true,
}
-- What a spawn on another host carries (ms.agent.spawn{ host = ... }).
local REMOTE_START_KEYS = {
    fn = true, file = true, module = true, args = true, name = true, trap_exit = true,
}
local BACKOFF_KEYS = { min = true, max = true, jitter = true, factor = true, reset = true }
local BREAKER_KEYS = { failure_threshold = true, reset_timeout = true }

-- Validation raises with error(msg, 0); `at` is the path of the field.
local function fail(at, fmt, ...)
    error(("%s: " .. fmt):format(at, ...), 0)
end

local function within(at, fn, ...)
    local ok, res = pcall(fn, ...)
    if not ok then
        fail(at, "%s", res)
    end
    return res
end

local function check_type(at, v, want)
    if type(v) ~= want then
        fail(at, "must be a %s, got %s", want, type(v))
    end
end

local function convert_backoff(at, b)
    if b == nil then
        return nil
    end
    check_type(at, b, "table")
    within(at, backoff.known_keys, b, BACKOFF_KEYS, "the table")
    local min = within(at, backoff.number, b, "min", 0.1, 0)
    local max = within(at, backoff.number, b, "max", math.max(30, min), min)
    return {
        min = min,
        max = max,
        jitter = within(at, backoff.number, b, "jitter", 0, 0, 1),
        factor = within(at, backoff.number, b, "factor", 2, 1),
        reset = within(at, backoff.number, b, "reset", nil, 0),
    }
end

local function convert_breaker(at, b)
    if b == nil then
        return nil
    end
    check_type(at, b, "table")
    within(at, backoff.known_keys, b, BREAKER_KEYS, "the table")
    return {
        failure_threshold = within(at, backoff.number, b, "failure_threshold", 5, 1, nil, true),
        reset_timeout = within(at, backoff.number, b, "reset_timeout", 30, 0),
    }
end

local function check_action(at, a)
    if a == "restart" or a == "ignore" or a == "escalate" then
        return a
    end
    if type(a) == "table" and type(a.restart_after) == "number" and a.restart_after >= 0 then
        return { restart_after = a.restart_after }
    end
    fail(at, "must be \"restart\", \"ignore\", \"escalate\" or { restart_after = seconds }, got %s",
        tostring(a))
end

local function convert_recovery(at, r)
    if r == nil then
        return nil
    end
    check_type(at, r, "table")
    local out = {}
    for reason, action in pairs(r) do
        if type(reason) ~= "string" then
            fail(at, "keys must be exit reasons (strings), got %s", type(reason))
        end
        out[reason] = check_action(at .. "." .. reason, action)
    end
    return out
end

local function is_supervisor_start(start)
    return start.fn == nil and start.file == nil and start.module == nil
        and (start.children ~= nil or start.strategy ~= nil)
end

local convert_sup

local function convert_start(at, start)
    check_type(at, start, "table")
    if is_supervisor_start(start) then
        return convert_sup(at, start)
    end
    within(at, backoff.known_keys, start, START_KEYS,
        "the table (an ms.agent.spawn table or a supervisor spec)")
    local n = (start.fn ~= nil and 1 or 0) + (start.file ~= nil and 1 or 0)
        + (start.module ~= nil and 1 or 0)
    if n ~= 1 then
        fail(at, "give exactly one of fn, file or module (or a supervisor spec), got %d", n)
    end
    local out = {}
    for k, v in pairs(start) do
        out[k] = v
    end
    if start.fn ~= nil then
        out.fn = nil
        out.fn_code = within(at, bytecode.dump, start.fn, "fn")
    end
    if start.name ~= nil then
        check_type(at .. ".name", start.name, "string")
    end
    return out
end

local function convert_shutdown(at, v, child_type)
    if v == nil then
        return child_type == "supervisor" and "infinity" or 5
    end
    if v == "brutal_kill" or v == "infinity" then
        return v
    end
    if type(v) ~= "number" or v ~= v or v < 0 then
        fail(at, "must be seconds >= 0, \"brutal_kill\" or \"infinity\", got %s", tostring(v))
    end
    return v
end

-- A child's host: a string or a list of strings, each "local" (this
-- host), "any" (any live host of the cluster), a host id (16 hex digits)
-- or a host name (cluster_name).  -> the list, or nil for this host.
local function convert_host(at, host, start)
    if host == nil then
        return nil
    end
    local list = host
    if type(host) == "string" then
        list = { host }
    elseif type(host) ~= "table" then
        fail(at, "must be a host (\"any\", \"local\", an id or a name) or a list of them, got %s",
            type(host))
    end
    if #list == 0 then
        fail(at, "is an empty list (name at least one host, or \"any\")")
    end
    local out, remote = {}, false
    for i, h in ipairs(list) do
        if type(h) ~= "string" or not h:match("^[%w._-]+$") or #h > 47 then
            fail(("%s[%d]"):format(at, i), "must be \"any\", \"local\", a host id or a host name "
                .. "(letters, digits, . _ -), got %s", type(h) == "string" and ("'" .. h .. "'")
                or type(h))
        end
        remote = remote or h ~= "local"
        out[i] = h
    end
    for k in pairs(list) do
        if type(k) ~= "number" or k < 1 or k > #list or k % 1 ~= 0 then
            fail(at, "must be a list of hosts, got a key %s", tostring(k))
        end
    end
    if not remote then
        return out
    end
    if not ms.cluster.id() then
        fail(at, "names another host, but this host is in no cluster (--cluster URL)")
    end
    if start.supervisor_spec then
        fail(at, "a nested supervisor runs on its parent's host (host is for workers)")
    end
    for k in pairs(start) do
        if not REMOTE_START_KEYS[k] and k ~= "fn_code" then
            fail(at, "a child placed on another host is started with fn, file, module, args, "
                .. "name and trap_exit only, not start.%s", tostring(k))
        end
    end
    return out
end

local function convert_child(at, c, template)
    check_type(at, c, "table")
    within(at, backoff.known_keys, c, CHILD_KEYS, "the child spec")
    local id = c.id
    if id == nil and template then
        id = "child"
    end
    if type(id) ~= "string" and type(id) ~= "number" then
        fail(at .. ".id", "must be a string or a number, got %s", type(id))
    end
    if c.start == nil then
        fail(at .. ".start", "is missing (an ms.agent.spawn table or a supervisor spec)")
    end
    local start = convert_start(at .. ".start", c.start)
    local restart = c.restart or "permanent"
    if not RESTART_TYPES[restart] then
        fail(at .. ".restart", "must be \"permanent\", \"transient\" or \"temporary\", got %s",
            tostring(restart))
    end
    local ctype = c.type or (start.supervisor_spec and "supervisor" or "worker")
    if not CHILD_TYPES[ctype] then
        fail(at .. ".type", "must be \"worker\" or \"supervisor\", got %s", tostring(ctype))
    end
    return {
        id = id,
        start = start,
        restart = restart,
        type = ctype,
        shutdown = convert_shutdown(at .. ".shutdown", c.shutdown, ctype),
        backoff = convert_backoff(at .. ".backoff", c.backoff),
        circuit_breaker = convert_breaker(at .. ".circuit_breaker", c.circuit_breaker),
        host = convert_host(at .. ".host", c.host, start),
    }
end

local function convert_fn(at, fn)
    if fn == nil then
        return nil
    end
    return within(at, bytecode.dump, fn, "the function")
end

convert_sup = function(at, spec)
    check_type(at, spec, "table")
    within(at, backoff.known_keys, spec, SUP_KEYS, "the supervisor spec")
    local out = { supervisor_spec = true }
    if spec.name ~= nil then
        check_type(at .. ".name", spec.name, "string")
        out.name = spec.name
    end
    if spec.name_scope ~= nil and spec.name_scope ~= "host" and spec.name_scope ~= "cluster" then
        fail(at .. ".name_scope", "must be \"cluster\" or \"host\", got %s", tostring(spec.name_scope))
    end
    out.name_scope = spec.name_scope
    local strategy = spec.strategy or "one_for_one"
    if type(strategy) == "function" then
        out.strategy = "custom"
        out.strategy_code = convert_fn(at .. ".strategy", strategy)
    elseif STRATEGIES[strategy] then
        out.strategy = STRATEGIES[strategy]
    else
        fail(at .. ".strategy", "must be one_for_one, one_for_all, rest_for_one, "
            .. "simple_one_for_one (or dynamic) or a policy function, got %s", tostring(strategy))
    end
    out.intensity = within(at, backoff.number, spec, "intensity", 3, 0, nil, true)
    out.period = within(at, backoff.number, spec, "period", 5, 0.001)
    out.memory_limit = spec.memory_limit
    out.backoff = convert_backoff(at .. ".backoff", spec.backoff)
    out.recovery = convert_recovery(at .. ".recovery", spec.recovery)
    out.policy_code = convert_fn(at .. ".policy", spec.policy)
    out.on_event_code = convert_fn(at .. ".on_event", spec.on_event)
    local children = spec.children or {}
    check_type(at .. ".children", children, "table")
    local dynamic = out.strategy == "simple_one_for_one"
    if dynamic and #children ~= 1 then
        fail(at .. ".children", "a simple_one_for_one supervisor takes exactly one child "
            .. "spec (the template for start_child), got %d", #children)
    end
    out.children = {}
    local seen = {}
    for i, c in ipairs(children) do
        local child = convert_child(("%s.children[%d]"):format(at, i), c, dynamic)
        if seen[child.id] then
            fail(("%s.children[%d].id"):format(at, i), "%s is used twice", tostring(child.id))
        end
        seen[child.id] = true
        out.children[i] = child
    end
    return out
end

-- ---- the handle ----

local Supervisor = {}
Supervisor.__index = Supervisor

local function request(self, op, arg)
    local r, err = self.agent:call({ [KEY] = op, arg = arg })
    if r == nil then
        return nil, ("supervisor %s is not answering: %s"):format(self.name, tostring(err))
    end
    if not r.ok then
        return nil, r.err
    end
    return r.value, r.extra
end

-- { { id, agent, type, restart, status, restarts, host }... } in start
-- order; status is "running", "restarting" (waiting for a delayed restart)
-- or "stopped"; agent is nil unless running; host is the id of the host
-- the child runs (or last ran) on, for a child whose spec names one.
function Supervisor:which_children()
    return request(self, "which_children")
end

-- { specs, active, supervisors, workers }
function Supervisor:count_children()
    return request(self, "count_children")
end

-- A static supervisor takes a child spec (appended, started at once); a
-- simple_one_for_one one takes the new child's args (merged over the
-- template's when both are tables).  -> agent, id | nil, err
function Supervisor:start_child(spec_or_args)
    if self.dynamic then
        return request(self, "start_child", spec_or_args)
    end
    local ok, child = pcall(convert_child, "child spec", spec_or_args)
    if not ok then
        error("sup:start_child: " .. child, 2)
    end
    return request(self, "start_child", child)
end

-- Stops the child (its shutdown protocol); a static child's spec stays
-- (status "stopped"), a dynamic child is forgotten.  -> true | nil, err
function Supervisor:terminate_child(id)
    return request(self, "terminate_child", id)
end

-- Starts a stopped child again.  -> agent | nil, err ("running" if it runs)
function Supervisor:restart_child(id)
    return request(self, "restart_child", id)
end

-- Forgets a stopped child's spec.  -> true | nil, err
function Supervisor:delete_child(id)
    return request(self, "delete_child", id)
end

-- { restarts, escalations, exits, ignored_messages, unkillable }
function Supervisor:stats()
    return request(self, "stats")
end

-- Stops every child (reverse start order, each by its shutdown) and then
-- the supervisor, which exits with reason "normal"; returns when it has.
-- -> true | nil, err
function Supervisor:stop()
    local ok, err = request(self, "stop")
    if not ok then
        return nil, err
    end
    -- It exits right after answering: wait for that, so that its name is
    -- free when stop returns.
    local deadline = ms.now() + 5
    while self.agent:info().state ~= "exited" and ms.now() < deadline do
        ms.sleep(0.001)
    end
    return true
end

Supervisor.__tostring = function(self)
    return ("ms.supervisor(%s)"):format(self.name)
end

local function handle(agent, info)
    return setmetatable({
        agent = agent,
        name = info.name or agent:name(),
        strategy = info.strategy,
        dynamic = info.strategy == "simple_one_for_one",
    }, Supervisor)
end

-- A handle for a supervisor agent; an agent that does not answer within
-- timeout seconds (default 5) is not one.
local function attach(agent, timeout)
    local r, err = agent:call({ [KEY] = "info" }, timeout or 5)
    if r == nil then
        return nil, ("not a supervisor, or not answering: %s"):format(tostring(err))
    end
    if not r.ok then
        return nil, r.err
    end
    return handle(agent, r.value)
end

local function start(spec)
    local ok, conv = pcall(convert_sup, "spec", spec)
    if not ok then
        error("ms.supervisor: " .. conv, 3)
    end
    local agent = ms.agent.spawn{
        module = "ms.supervisor_agent",
        name = conv.name,
        name_scope = conv.name_scope,
        args = conv,
        memory_limit = conv.memory_limit,
    }
    local r, err = agent:call({ [KEY] = "await_start" })
    if r == nil then
        return nil, "ms.supervisor: the supervisor did not start: " .. tostring(err)
    end
    if not r.ok then
        return nil, "ms.supervisor: " .. tostring(r.err)
    end
    return handle(agent, r.value)
end

return setmetatable({
    attach = attach,
    policies = policies,
}, {
    __call = function(_, spec)
        return start(spec)
    end,
})
