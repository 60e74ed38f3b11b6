-- A strict JSON reader for the specs: json.decode(text) returns the value
-- or raises an error naming the byte offset.  Objects become tables,
-- arrays tables with n = their length (so empty ones and nulls inside are
-- told apart), null becomes json.null.  Whitespace is allowed only where
-- RFC 8259 allows it, and nothing may follow the value.
local json = { null = setmetatable({}, { __tostring = function() return "null" end }) }

local function fail(s, i, what)
    error(string.format("JSON: %s at byte %d near %q", what, i, s:sub(i, i + 20)), 0)
end

local function skip(s, i)
    return s:find("[^ \t\r\n]", i) or #s + 1
end

local value

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                  r = "\r", t = "\t" }

local function utf8_char(cp)
    if cp < 0x80 then return string.char(cp) end
    if cp < 0x800 then
        return string.char(0xc0 + math.floor(cp / 64), 0x80 + cp % 64)
    end
    if cp < 0x10000 then
        return string.char(0xe0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64,
            0x80 + cp % 64)
    end
    return string.char(0xf0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
        0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function str(s, i)
    local out, j = {}, i + 1
    while true do
        local c = s:sub(j, j)
        if c == "" then fail(s, i, "unterminated string") end
        if c == '"' then return table.concat(out), j + 1 end
        if c:byte() < 0x20 then fail(s, j, "control character in a string") end
        if c == "\\" then
            local e = s:sub(j + 1, j + 1)
            if e == "u" then
                local hex = s:sub(j + 2, j + 5)
                if not hex:match("^%x%x%x%x$") then fail(s, j, "bad \\u escape") end
                out[#out + 1] = utf8_char(tonumber(hex, 16))
                j = j + 6
            elseif escapes[e] then
                out[#out + 1] = escapes[e]
                j = j + 2
            else
                fail(s, j, "bad escape")
            end
        else
            out[#out + 1] = c
            j = j + 1
        end
    end
end

local function num(s, i)
    local j = i
    if s:sub(j, j) == "-" then j = j + 1 end
    local int = s:match("^%d+", j)
    if not int or (#int > 1 and int:sub(1, 1) == "0") then fail(s, i, "bad number") end
    j = j + #int
    local frac = s:match("^%.%d+", j)
    if s:sub(j, j) == "." and not frac then fail(s, i, "bad number") end
    j = j + (frac and #frac or 0)
    if s:sub(j, j):match("[eE]") then
        local exp = s:match("^[eE][-+]?%d+", j)
        if not exp then fail(s, i, "bad number") end
        j = j + #exp
    end
    return tonumber(s:sub(i, j - 1)), j
end

local function array(s, i)
    local t, n = {}, 0
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then t.n = 0 return t, i + 1 end
    while true do
        local v
        v, i = value(s, i)
        n = n + 1
        t[n] = v
        i = skip(s, i)
        local c = s:sub(i, i)
        if c == "]" then t.n = n return t, i + 1 end
        if c ~= "," then fail(s, i, "expected , or ]") end
        i = skip(s, i + 1)
    end
end

local function object(s, i)
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
        if s:sub(i, i) ~= '"' then fail(s, i, "expected a key") end
        local k
        k, i = str(s, i)
        i = skip(s, i)
        if s:sub(i, i) ~= ":" then fail(s, i, "expected :") end
        i = skip(s, i + 1)
        if t[k] ~= nil then fail(s, i, "duplicate key " .. k) end
        t[k], i = value(s, i)
        i = skip(s, i)
        local c = s:sub(i, i)
        if c == "}" then return t, i + 1 end
        if c ~= "," then fail(s, i, "expected , or }") end
        i = skip(s, i + 1)
    end
end

value = function(s, i)
    local c = s:sub(i, i)
    if c == "{" then return object(s, i) end
    if c == "[" then return array(s, i) end
    if c == '"' then return str(s, i) end
    if c == "-" or c:match("%d") then return num(s, i) end
    if s:sub(i, i + 3) == "true" then return true, i + 4 end
    if s:sub(i, i + 4) == "false" then return false, i + 5 end
    if s:sub(i, i + 3) == "null" then return json.null, i + 4 end
    fail(s, i, "unexpected character")
end

function json.decode(s)
    local v, i = value(s, skip(s, 1))
    i = skip(s, i)
    if i <= #s then fail(s, i, "text after the value") end
    return v
end

return json
