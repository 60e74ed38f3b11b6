-- ms.json (docs/json.md): encode and decode, their value rules and their
-- errors, on hostile values and large inputs.  Each case runs a real
-- `ms-host run` on a script that checks what it wants with assert() and
-- prints PASS.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/json_spec.lua
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)
local script_run = require "spec.support.script_run"

local PRELUDE = [[
local ms = require "ms"
local json = ms.json
local function refused(pattern, path, v, err)
    assert(v == nil, "expected a refusal, got " .. tostring(v))
    assert(type(err) == "table" and err.code == "InvalidArgument", tostring(err))
    assert(err.message:find(pattern, 1, true), ("%q lacks %q"):format(err.message, pattern))
    if path then assert(err.path == path, tostring(err.path)) end
    return err
end
local function at(position, line, column, v, err)
    assert(v == nil and type(err) == "table", tostring(err))
    assert(err.position == position and err.line == line and err.column == column,
        ("%s: position %s line %s column %s"):format(err.message, tostring(err.position),
            tostring(err.line), tostring(err.column)))
    assert(err.message:find(("at byte %d (line %d, column %d)"):format(position, line, column),
        1, true), err.message)
    return err
end
]]

local function pass(body, opts)
    return script_run.pass(PRELUDE .. body, opts)
end

describe("ms.json.encode", function()
    it("writes plain values, arrays and objects", function()
        pass [=[
assert(json.encode(nil) == "null")
assert(json.encode(true) == "true" and json.encode(false) == "false")
assert(json.encode(3) == "3" and json.encode(3.0) == "3" and json.encode(-0.5) == "-0.5")
assert(json.encode(0.1) == "0.1", json.encode(0.1))
assert(json.encode(2^53) == "9.007199254741e+15" or tonumber(json.encode(2^53)) == 2^53)
assert(json.encode(1e300) == "1e+300", json.encode(1e300))
assert(json.encode("a\"b\\c\n\t\1/é") == [["a\"b\\c\n\t\u0001/é"]], json.encode("a\"b\\c\n\t\1/é"))
assert(json.encode("nul\0inside") == [["nul\u0000inside"]])
assert(json.encode({ 1, "two", { 3 } }) == '[1,"two",[3]]')
assert(json.encode({ b = 1, a = { c = true } }, { sort_keys = true }) == [[{"a":{"c":true},"b":1}]])
assert(json.encode({}) == "{}")
assert(json.encode({}, { empty_table = "array" }) == "[]")
assert(json.encode({ 1, json.null, 3 }) == "[1,null,3]")
-- a subtable used twice is not a cycle: it is written twice
local shared = { 1 }
assert(json.encode({ shared, shared }) == "[[1],[1]]")
local ok, e = pcall(json.encode, 1, { empty_table = "list" })
assert(not ok and e:find("empty_table must be", 1, true), e)
print("PASS")
]=]
    end)

    it("refuses what messages refuse, naming the path of the value", function()
        pass [=[
refused("value.items[3].f: a function cannot be encoded", "value.items[3].f",
    json.encode({ items = { 1, 2, { f = print } } }))
refused("a userdata cannot be encoded", "value.sem", json.encode({ sem = ms.semaphore(1) }))
refused("a thread cannot be encoded", "value[1]", json.encode({ coroutine.create(print) }))
local t = { a = { } }
t.a.back = t
refused("value.a.back: a cycle", "value.a.back", json.encode(t))
refused("a table with a metatable", "value[\"odd key\"]",
    json.encode({ ["odd key"] = setmetatable({}, {}) }))
refused("a sparse array (2 values, highest index 3)", "value", json.encode({ 1, nil, 3 }))
refused("both string and number keys", "value", json.encode({ 1, x = 2 }))
refused("the key 1.5", "value", json.encode({ [1.5] = 1 }))
refused("a boolean key", "value", json.encode({ [true] = 1 }))
refused("NaN cannot be encoded", "value.n", json.encode({ n = 0 / 0 }))
refused("inf cannot be encoded", "value[1]", json.encode({ math.huge }))
refused("-inf cannot be encoded", "value", json.encode(-math.huge))
refused("not valid UTF-8 (at byte 2)", "value.s", json.encode({ s = "a\255" }))
print("PASS")
]=]
    end)

    it("refuses nesting past 1000 levels instead of overflowing the stack", function()
        pass [=[
local function nest(n) local t = {} local cur = t for _ = 2, n do cur[1] = {} cur = cur[1] end return t end
assert(#json.encode(nest(1000)) == 2000)
refused("nesting deeper than 1000 levels", nil, json.encode(nest(1001)))
refused("nesting deeper than 1000 levels", nil, json.encode(nest(100000)))
print("PASS")
]=]
    end)

    it("encodes and decodes 1000 levels on the 1 MiB worker stacks of agent_system", function()
        pass([=[
local function nest(n) local t = {} local cur = t for _ = 2, n do cur[1] = {} cur = cur[1] end return t end
local text = assert(json.encode(nest(1000)))
assert(#json.encode(assert(json.decode(text))) == 2000)
refused("nesting deeper than 1000 levels", nil, json.encode(nest(1001)))
print("PASS")
]=], { args = "--profile agent_system" })
    end)

    it("never runs a hostile value's metamethods", function()
        pass [=[
local ran = false
local hostile = setmetatable({ message = "boom" }, {
    __index = function() ran = true error("__index ran") end,
    __newindex = function() ran = true error("__newindex ran") end,
    __tostring = function() ran = true error("__tostring ran") end,
    __pairs = function() ran = true error("__pairs ran") end,
    __len = function() ran = true error("__len ran") end,
    __eq = function() ran = true error("__eq ran") end,
})
refused("a table with a metatable", "value.err", json.encode({ ok = 1, err = hostile }))
refused("a table with a metatable", "value", json.encode(hostile))
-- an error value raised by a failed call, put in a message-like table
local _, errobj = pcall(error, hostile)
refused("a table with a metatable", "value.reason", json.encode({ reason = errobj }))
assert(not ran, "a metamethod ran")
print("PASS")
]=]
    end)
end)

describe("ms.json.decode", function()
    it("reads values; null is ms.json.null unless opts.null says otherwise", function()
        pass [=[
local v = assert(json.decode(' {"a": [1, 2.5, -3e2, true, false, null], "s": "\\u00e9\\n", "o": {}} '))
assert(v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == -300 and v.a[4] == true and v.a[5] == false)
assert(v.a[6] == json.null and #v.a == 6)
assert(v.s == "é\n" and next(v.o) == nil)
local w = assert(json.decode('[null, 1]', { null = false }))
assert(w[1] == false and w[2] == 1)
assert(json.decode("null") == json.null)
assert(json.decode('"x"') == "x" and json.decode("12") == 12)
local round = { list = { 1, 2, 3 }, name = "n", nested = { deep = { true } } }
local again = json.decode(json.encode(round))
assert(json.encode(again, { sort_keys = true }) == json.encode(round, { sort_keys = true }))
print("PASS")
]=]
    end)

    it("names the byte offset, line and column of bad input", function()
        pass [=[
at(7, 1, 8, json.decode('{"a":1,}'))
at(0, 1, 1, json.decode(''))
at(9, 2, 8, json.decode('{\n  "a": tru\n}'))
local e = at(8, 1, 9, json.decode('{"a":1} x'))
assert(e.message:find("unexpected text after the value", 1, true), e.message)
e = at(2, 1, 3, json.decode('"a\\u0000b"'))
assert(e.message:find("\\u0000", 1, true), e.message)
e = at(3, 1, 4, json.decode('"ab\1"'))
assert(e.message:find("control character", 1, true), e.message)
refused("a number out of the range of a double", "value[1]", json.decode("[1e400]"))
local ok, err = pcall(json.decode, 42 == 42 and {})
assert(not ok and err:find("string expected", 1, true), err)
print("PASS")
]=]
    end)

    it("refuses nesting past 1000 levels", function()
        pass [=[
assert(json.decode(string.rep("[", 1000) .. string.rep("]", 1000)))
local e = at(1000, 1, 1001, json.decode(string.rep("[", 1001) .. string.rep("]", 1001)))
assert(e.message:find("nesting deeper than 1000 levels", 1, true))
at(3000, 1, 3001, json.decode(string.rep('{"a":[', 500) .. "[" .. string.rep("]}", 500)))
e = json.decode(string.rep("[", 10 * 1000 * 1000))
print("PASS")
]=]
    end)
end)

describe("ms.json and memory", function()
    local MB = script_run.scale >= 1 and 100 or 20

    it(("round-trips a %d MB string in an agent without a memory limit"):format(MB), function()
        pass(([=[
local s = string.rep("0123456789", %d * 1024 * 1024 / 10)
local text = assert(json.encode({ s = s }))
assert(#text == #s + 8)
local back = assert(json.decode(text))
assert(back.s == s)
print("PASS")
]=]):format(MB))
    end)

    it("an agent over its memory limit ends with reason oom; the host goes on", function()
        pass(([=[
local a = ms.agent.spawn{ memory_limit = %d * 1024 * 1024 * 3 / 2, fn = function(args)
    local ms = require "ms"
    local s = string.rep("x", args.mb * 1024 * 1024)
    ms.json.encode({ s, s })
end, args = { mb = %d } }
ms.monitor(a)
local notice = ms.recv(120)
assert(notice.reason == "oom", notice.reason .. " " .. tostring(notice.message))
assert(json.encode({ still = "here" }) == '{"still":"here"}')
print("PASS")
]=]):format(MB, MB))
    end)

    it("refuses to decode a text whose tree would not fit the agent's memory limit", function()
        pass [=[
local a = ms.agent.spawn{ memory_limit = 64 * 1024 * 1024, fn = function()
    local ms = require "ms"
    local text = "[" .. string.rep("1,", 4 * 1024 * 1024) .. "1]"
    local v, err = ms.json.decode(text)
    assert(v == nil and err.message:find("more than the agent's memory limit leaves", 1, true),
        tostring(err and err.message))
    assert(#ms.json.decode("[" .. string.rep("1,", 999) .. "1]") == 1000)
end }
ms.monitor(a)
local notice = ms.recv(120)
assert(notice.reason == "normal", notice.reason .. " " .. tostring(notice.message))
print("PASS")
]=]
    end)
end)
