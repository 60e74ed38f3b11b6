-- Input lines that hand the REPL a hostile value: one whose metamethods
-- raise, recurse or lie, as a result to print, an error to show, a key or
-- a field.  Shared by the REPL's specs (spec/repl_spec.lua, in-process),
-- `ms-host repl` (spec/host_repl_spec.lua) and the console
-- (spec/console_spec.lua).
--
-- Each case: name, line (one input line), and expect: texts the output
-- of that line must contain, each naming what failed (or, for a value
-- that only misbehaves when indexed, what the printer shows without
-- indexing it).  After any case the session must run its next line.
return {
    {
        name = "a value whose __tostring raises",
        line = [[setmetatable({}, {__tostring = function() error("boom") end})]],
        expect = { "<table: 0x", "(__tostring raised: stdin:1: boom)>" },
    },
    {
        name = "a value whose __tostring returns a number",
        line = [[setmetatable({}, {__tostring = function() return 42 end})]],
        expect = { "<table: 0x", "(__tostring returned a number)>" },
    },
    {
        name = "a value whose __tostring recurses until the stack overflows",
        line = [[setmetatable({}, {__tostring = function(s) return "x" .. tostring(s) end})]],
        expect = { "(__tostring raised: ", "stack overflow" },
    },
    {
        name = "a userdata whose __tostring raises",
        line = [[local u = newproxy(true); getmetatable(u).__tostring = function() ]]
            .. [[error("ud") end; return u]],
        expect = { "<userdata: 0x", "(__tostring raised: stdin:1: ud)>" },
    },
    {
        name = "a value whose __index raises (printed raw)",
        line = [[setmetatable({ k = 1 }, {__index = function() error("x") end})]],
        expect = { "{ k = 1 }\n" },
    },
    {
        name = "a value whose __index raises, indexed",
        line = [[setmetatable({}, {__index = function() error("idx") end}).field]],
        expect = { "error: stdin:1: idx" },
    },
    {
        name = "a value whose __index recurses forever",
        line = [[local t; t = setmetatable({}, {__index = function(s, k) return s[k] end}); ]]
            .. [[return t]],
        expect = { "{}\n" },
    },
    {
        name = "a value whose __len, __pairs, __eq and __metatable lie or raise",
        line = [[setmetatable({ 1, 2, 3 }, {__len = function() error("len") end, ]]
            .. [[__pairs = function() error("pairs") end, __eq = function() error("eq") end, ]]
            .. [[__lt = function() error("lt") end, ]]
            .. [[__metatable = {__tostring = function() error("fake") end}})]],
        expect = { "{ 1, 2, 3 }\n" },
    },
    {
        name = "a key whose __tostring raises",
        line = [[{ [setmetatable({}, {__tostring = function() error("key") end})] = 1 }]],
        expect = { "[<table: 0x", "(__tostring raised: stdin:1: key)>] = 1" },
    },
    {
        name = "a field whose __tostring raises, nested",
        line = [[{ inner = { v = setmetatable({}, {__tostring = function() error("deep") end}) } }]],
        expect = { "{ inner = { v = <table: 0x", "(__tostring raised: stdin:1: deep)> } }" },
    },
    {
        name = "print of a value whose __tostring raises",
        line = [[print(setmetatable({}, {__tostring = function() error("p") end}))]],
        expect = { "(__tostring raised: stdin:1: p)>" },
    },
    {
        name = "an error object whose __tostring raises",
        line = [[error(setmetatable({}, {__tostring = function() error("y") end}))]],
        expect = { "error: <table: 0x", "(__tostring raised: stdin:1: y)>" },
    },
    {
        name = "an error object whose __index raises",
        line = [[error(setmetatable({ why = "bad" }, {__index = function() error("x") end}))]],
        expect = { 'error: { why = "bad" }' },
    },
    {
        name = "an error object whose __index recurses forever",
        line = [[error(setmetatable({}, {__index = function(s, k) return s[k] end}))]],
        expect = { "error: {}\n" },
    },
    {
        name = "an error object whose __eq raises",
        line = [[error(setmetatable({ message = "eq" }, {__eq = function() error("eq raised") end}))]],
        expect = { "error: eq\n" },
    },
    {
        name = "an error table whose message has raising metamethods",
        line = [[error({ code = "Bad", message = setmetatable({}, {]]
            .. [[__tostring = function() error("msg") end, ]]
            .. [[__index = function() error("msg index") end}) })]],
        expect = { "error: Bad: <table: 0x", "(__tostring raised: stdin:1: msg)>" },
    },
    {
        name = "an error object whose __tostring raises an error object whose __tostring raises",
        line = [[error(setmetatable({}, {__tostring = function() ]]
            .. [[error(setmetatable({}, {__tostring = function() error("inner") end})) end}))]],
        expect = { "error: <table: 0x", "(__tostring raised: table: 0x" },
    },
}
