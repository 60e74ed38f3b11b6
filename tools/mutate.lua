-- tools/mutate.lua - reads tools/mutants.txt and applies one mutant; the
-- helper of tools/mutate (which copies the tree, builds and runs tests).
--
--   luajit tools/mutate.lua list MUTANTS          name TAB file TAB tests TAB what, one a line
--   luajit tools/mutate.lua check MUTANTS ROOT    every mutant applies to the tree at ROOT
--   luajit tools/mutate.lua apply MUTANTS NAME ROOT   applies NAME to the tree at ROOT
--
-- The file format (tools/mutants.txt): a mutant starts with [name]; then
-- one key a line, the key, blanks, and the value (to the end of the line):
--
--   file     the file it changes, relative to the tree's root
--   find     a text that occurs exactly once in that file...
--   replace  ...and what replaces it (may be empty: a deletion)
--            (several find/replace pairs may follow one another)
--   tests    the ctest names that must catch it, separated by blanks
--   what     the bug it models, in a few words
--
-- In find and replace, \n is a newline, \t a tab and \\ a backslash.
-- Lines starting with # and blank lines are ignored.

local function die(fmt, ...)
    io.stderr:write("mutate: " .. string.format(fmt, ...) .. "\n")
    os.exit(2)
end

local function unescape(s)
    return (s:gsub("\\(.)", function(c)
        if c == "n" then return "\n" end
        if c == "t" then return "\t" end
        if c == "\\" then return "\\" end
        die("unknown escape \\%s", c)
    end))
end

local function parse(path)
    local f = io.open(path) or die("cannot read %s", path)
    local mutants, byname, cur = {}, {}, nil
    local n = 0
    for line in f:lines() do
        n = n + 1
        if line:match("^%s*#") or line:match("^%s*$") then
            -- comment or blank
        elseif line:match("^%[") then
            local name = line:match("^%[([%w%-_%.]+)%]%s*$") or die("%s:%d: bad name line", path, n)
            if byname[name] then die("%s:%d: mutant %s defined twice", path, n, name) end
            cur = { name = name, pairs = {}, line = n }
            mutants[#mutants + 1] = cur
            byname[name] = cur
        else
            if not cur then die("%s:%d: a key before the first [name]", path, n) end
            local key, value = line:match("^(%a+)[ \t]*(.*)$")
            if not key then die("%s:%d: cannot read %q", path, n, line) end
            if key == "file" or key == "tests" or key == "what" then
                cur[key] = value
            elseif key == "find" then
                cur.pairs[#cur.pairs + 1] = { find = unescape(value) }
            elseif key == "replace" then
                local p = cur.pairs[#cur.pairs]
                if not p or p.replace then die("%s:%d: replace without its find", path, n) end
                p.replace = unescape(value)
            else
                die("%s:%d: unknown key %s", path, n, key)
            end
        end
    end
    f:close()
    for _, m in ipairs(mutants) do
        if not m.file or not m.tests or #m.pairs == 0 then
            die("%s:%d: mutant %s needs file, find, replace and tests", path, m.line, m.name)
        end
        for _, p in ipairs(m.pairs) do
            if not p.replace then die("%s: mutant %s: a find without its replace", path, m.name) end
        end
    end
    return mutants, byname
end

local function read(path)
    local f = io.open(path, "rb") or die("cannot read %s", path)
    local s = f:read("*a")
    f:close()
    return s
end

-- The mutated text of m's file at root, or nil and why.
local function mutated(m, root)
    local s = read(root .. "/" .. m.file)
    for i, p in ipairs(m.pairs) do
        local a, b = s:find(p.find, 1, true)
        if not a then
            return nil, ("find #%d not found in %s"):format(i, m.file)
        end
        if s:find(p.find, b + 1, true) then
            return nil, ("find #%d occurs more than once in %s"):format(i, m.file)
        end
        s = s:sub(1, a - 1) .. p.replace .. s:sub(b + 1)
    end
    return s
end

local cmd, file = arg[1], arg[2]
if not cmd or not file then die("usage: mutate.lua list|check|apply MUTANTS ...") end
local mutants, byname = parse(file)

if cmd == "list" then
    for _, m in ipairs(mutants) do
        print(table.concat({ m.name, m.file, m.tests, m.what or "" }, "\t"))
    end
elseif cmd == "check" then
    local root, bad = arg[3] or ".", 0
    for _, m in ipairs(mutants) do
        local s, why = mutated(m, root)
        if not s then
            io.stderr:write(("mutate: %s: %s\n"):format(m.name, why))
            bad = bad + 1
        end
    end
    os.exit(bad == 0 and 0 or 1)
elseif cmd == "apply" then
    local m = byname[arg[3] or ""] or die("no mutant named %s", tostring(arg[3]))
    local root = arg[4] or die("apply needs the tree's root")
    local s, why = mutated(m, root)
    if not s then die("%s: %s", m.name, why) end
    local f = io.open(root .. "/" .. m.file, "wb") or die("cannot write %s", m.file)
    f:write(s)
    f:close()
else
    die("unknown command %s", cmd)
end
