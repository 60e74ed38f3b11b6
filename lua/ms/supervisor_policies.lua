-- ms.supervisor_policies: the built-in restart strategies, written as the
-- same kind of policy function an operator can pass (`policy = fn`).
--
-- A policy is called in the supervisor's agent for every exit of a child:
--
--   policy(exit, sup) -> action
--
-- exit: { id, name, reason, message, traceback, unread, restart, type,
--         restarts, uptime }   (reason: "normal" "shutdown" "error" "oom" "killed")
-- sup:  { strategy, children = { { id, restart, type, status }... },
--         restarts_in_period, intensity, period, recovery, now,
--         decide(exit)  -> the restart-type and recovery-table decision for
--                          this one child (see `decide` below),
--         default(exit) -> what the configured strategy would do,
--         all()         -> the ids of every child, in start order,
--         rest(id)      -> the ids of id and the children started after it }
--
-- action:
--   "restart"                       restart the child that exited
--   { restart_after = s }           the same, s seconds from now
--   { restart = { ids... }, after = s }   stop those of the listed children
--                                   that run (in reverse start order) and
--                                   start them all again (in start order),
--                                   after s seconds (optional)
--   "ignore"                        leave it stopped
--   "escalate"                      stop every child and exit, so that the
--                                   supervisor's own supervisor decides
--
-- Restarts without an explicit delay use the supervisor's backoff (if any).

local M = {}

-- What happens to an abnormal exit, by reason.  From docs/errors.md:
-- TaskFailed -> restart, OutOfMemory -> restart.  "killed" (someone
-- stopped the child behind its supervisor's back) is an abnormal exit as
-- in OTP, so a permanent or transient child is restarted; errors.md's
-- TaskCancelled -> ignore is about tasks cancelled by their owner.
M.recovery = {
    error = "restart",
    oom = "restart",
    killed = "restart",
    runaway = "restart", -- stopped by the health monitor (runaway policy)
}

local function is_normal(reason)
    return reason == "normal" or reason == "shutdown"
end
M.is_normal = is_normal

-- The decision for one child from its restart type:
--   temporary: never restarted;
--   transient: restarted after an abnormal exit only;
--   permanent: always restarted;
-- except that nothing is restarted after reason "shutdown": an agent ends
-- with it only when the whole host is shutting down.  An abnormal exit
-- then follows the recovery table (by reason; reasons it does not name
-- restart).
function M.decide(exit, recovery)
    if exit.restart == "temporary" or exit.reason == "shutdown" then
        return "ignore"
    end
    if is_normal(exit.reason) then
        return exit.restart == "permanent" and "restart" or "ignore"
    end
    local action = recovery and recovery[exit.reason]
    if action == nil then
        action = M.recovery[exit.reason] or "restart"
    end
    return action
end

-- Turns a one-child decision into a restart of a group of children.
local function widen(action, ids)
    if action == "restart" then
        return { restart = ids }
    end
    if type(action) == "table" and action.restart_after then
        return { restart = ids, after = action.restart_after }
    end
    return action
end

-- one_for_one: only the child that exited is restarted.
function M.one_for_one(exit, sup)
    return sup.decide(exit)
end

-- one_for_all: every child is stopped and started again.
function M.one_for_all(exit, sup)
    return widen(sup.decide(exit), sup.all())
end

-- rest_for_one: the child and those started after it.
function M.rest_for_one(exit, sup)
    return widen(sup.decide(exit), sup.rest(exit.id))
end

-- simple_one_for_one (dynamic): children of one spec, each on its own.
M.simple_one_for_one = M.one_for_one

return M
