-- Regression tests for faults that the adversarial harnesses found (the
-- allocation-failure sweep, the fuzzers, the chaos soak; docs/testing.md).
-- Each case runs a real `ms-host run` on a small script and wants the
-- process to end by itself, with the expected output and nothing fatal on
-- stderr.  Every case failed before its fix.
--
--   MS_HOST=build/ms-host/ms-host busted --lua=luajit spec/harness_found_spec.lua
local h = require "spec.support.helpers"

local HOST, q, slurp = h.host, h.shell_quote, h.slurp
local FATAL = { "PANIC", "unprotected", "AddressSanitizer", "ThreadSanitizer",
    "LeakSanitizer", "runtime error" }

-- Runs `ms-host run` on script (text) with a time limit; returns status,
-- stdout, stderr.
local function run(script, limit)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0)
    h.write_file(dir .. "/script.lua", script)
    os.execute(("timeout -k 5 %d %s run %s --workers 2 >%s 2>%s </dev/null; echo $? >%s")
        :format(limit or 30, q(HOST), q(dir .. "/script.lua"), q(dir .. "/out"),
            q(dir .. "/err"), q(dir .. "/code")))
    local code, out, err = tonumber(slurp(dir .. "/code")), slurp(dir .. "/out"),
        slurp(dir .. "/err")
    os.execute("rm -rf " .. q(dir))
    return code, out, err
end

local function assert_ended(want, code, out, err)
    local all = "\n--- stdout:\n" .. out .. "--- stderr:\n" .. err
    for _, bad in ipairs(FATAL) do
        assert(not err:find(bad, 1, true), "stderr holds '" .. bad .. "'" .. all)
    end
    assert(code ~= 124 and code ~= 137, "ms-host did not end by itself" .. all)
    assert(code == want, "ms-host exited " .. tostring(code) .. ", expected " .. want .. all)
end

describe("found by the allocation-failure sweep", function()
    -- The unread request kept its reply slot alive in the closed mailbox
    -- until the last handle to the agent went: the caller waited forever.
    it("a:call to an agent that exits without reading the request returns 'no reply'", function()
        local code, out, err = run([[
            local a = ms.agent.spawn{ fn = function() ms.sleep(0.05) error("gone", 0) end }
            local v, e = a:call("hello")
            print("call:", v, e)
            local b = ms.agent.spawn{ fn = function() ms.sleep(0.05) end }
            print("call:", b:call({ "a table", 1 }))
        ]], 20)
        assert_ended(0, code, out, err)
        local n = 0
        for _ in out:gmatch("call:\tnil\tno reply") do n = n + 1 end
        assert(n == 2, "expected two 'no reply' answers:\n" .. out .. err)
    end)
end)

describe("found by the allocation-failure sweep (after the merge of issue 21's signal mask)", function()
    -- Runtime threads block SIGTERM, SIGINT, SIGCHLD... and a process an
    -- agent started kept that mask (the shell passes it on to a pipeline):
    -- `timeout` could neither stop its command nor see it end.
    it("a process started from an agent can be stopped with SIGTERM", function()
        local code, out, err = run([[
            local ok, text = ms.blocking(function()
                local p = io.popen("true | grep SigBlk /proc/self/status; "
                    .. "true | timeout 1 sleep 60; echo status $?")
                local t = p:read("*a")
                p:close()
                return t
            end)
            print("popen:", text)
            print("execute:", os.execute("true | timeout -s INT 1 sleep 60"))
        ]], 30)
        assert_ended(0, code, out, err)
        assert(out:find("SigBlk:\t0000000000000000", 1, true), "io.popen's mask: " .. out .. err)
        assert(out:find("status 124", 1, true), "io.popen: " .. out .. err)
        assert(out:find("execute:\t31744", 1, true), "os.execute: " .. out .. err)
    end)
end)
