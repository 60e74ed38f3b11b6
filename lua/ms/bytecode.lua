-- ms.bytecode (internal): carries a Lua function to another agent.
--
-- Functions cannot cross agents as values; a policy or a child's `fn` goes
-- as { code = string.dump(fn), ms = { upvalue indices } }.  The function
-- may capture no upvalue except the ms module itself, which the receiving
-- side re-binds to its own ms (as ms.agent.spawn does for `fn`).

local debug = require "debug"

local M = {}

-- fn -> transferable table.  Raises (level 0) naming the upvalues that
-- cannot cross, or saying why the function cannot be dumped.
function M.dump(fn, what)
    if type(fn) ~= "function" then
        error(("%s must be a function, got %s"):format(what, type(fn)), 0)
    end
    local ms = package.loaded.ms
    local ms_slots, bad = {}, {}
    local i = 1
    while true do
        local name, value = debug.getupvalue(fn, i)
        if name == nil then
            break
        end
        if ms ~= nil and rawequal(value, ms) then
            ms_slots[#ms_slots + 1] = i
        else
            bad[#bad + 1] = name ~= "" and name or "?"
        end
        i = i + 1
    end
    if #bad > 0 then
        error(("%s captures upvalues (%s); it runs in another agent, which shares "
            .. "nothing, so pass data through args or the spec instead"):format(
            what, table.concat(bad, ", ")), 0)
    end
    local ok, code = pcall(string.dump, fn)
    if not ok then
        error(("%s cannot be copied to another agent: %s"):format(what, tostring(code)), 0)
    end
    return { code = code, ms = ms_slots }
end

-- The function back from M.dump's table, with ms re-bound.
function M.load(t, what)
    local fn, err = loadstring(t.code, what)
    if not fn then
        error(("cannot load %s: %s"):format(what, tostring(err)), 0)
    end
    if #t.ms > 0 then
        local ms = require "ms"
        for _, slot in ipairs(t.ms) do
            debug.setupvalue(fn, slot, ms)
        end
    end
    return fn
end

return M
