-- Specs for ms.profile: runtime profiles as Lua files, their extends
-- chains, overrides from the command line, and the errors that name the
-- file, field, value and range at fault.
--
-- Run from the repository root:  busted --lua=luajit spec/profile_spec.lua

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local root = spec_dir .. "/.."
package.path = root .. "/lua/?.lua;lua/?.lua;" .. package.path

local profile = require("ms.profile")

local SHIPPED = {
    "agent_system", "cpu_bound", "data_pipeline", "default",
    "high_throughput", "io_bound", "websocket_server",
}

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A fresh directory under the system's temporary directory, named after an
-- os.tmpname() file (removed first, so the name is ours).
local function temp_dir()
    local name = os.tmpname()
    os.remove(name)
    assert(os.execute("mkdir " .. shell_quote(name)) == 0, "mkdir " .. name)
    return name
end

local function write(dir, file, text)
    local path = dir .. "/" .. file
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
end

-- The message of the error fn raises.
local function error_of(fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error")
    return err
end

local function contains(haystack, needle)
    return haystack:find(needle, 1, true) ~= nil
end

local function assert_contains(haystack, needle)
    assert(contains(haystack, needle),
        string.format("expected %q\n  to contain %q", haystack, needle))
end

local function starts_with(s, prefix)
    return s:sub(1, #prefix) == prefix
end

describe("ms.profile", function()
    local dir

    before_each(function()
        dir = temp_dir()
    end)

    after_each(function()
        os.execute("rm -rf " .. shell_quote(dir))
    end)

    -- load with the temporary directory first on the search path, then the
    -- shipped profiles, on a pretend 8-CPU machine.
    local function load(name, overrides)
        return profile.load(name, {
            cpus = 8,
            overrides = overrides,
            search_path = { dir, root .. "/profiles" },
        })
    end

    describe("the shipped profiles", function()
        it("are the seven presets", function()
            assert.are.same(SHIPPED, profile.list({ root .. "/profiles" }))
        end)

        it("are found by list() on the default search path", function()
            local names = profile.list()
            for _, name in ipairs(SHIPPED) do
                local found = false
                for _, n in ipairs(names) do
                    found = found or n == name
                end
                assert.is_true(found, name .. " missing from profile.list()")
            end
        end)

        it("each load, validate and set every field", function()
            for _, name in ipairs(SHIPPED) do
                local r = profile.load(name, { cpus = 8 })
                assert.are.equal(name, r.name)
                assert.is_truthy(starts_with(r.file, "/"), "file is absolute: " .. r.file)
                assert.is_truthy(r.file:find("/profiles/" .. name .. ".lua", 1, true))
                for _, field in ipairs(profile.field_order) do
                    assert.is_not_nil(r.values[field], name .. ": " .. field)
                    assert.is_not_nil(r.source[field], name .. ": source of " .. field)
                    assert.are_not.equal("built-in default", r.source[field],
                        name .. ": " .. field .. " should come from a profile file")
                end
            end
        end)

        it("each describe themselves in their own file", function()
            for _, name in ipairs(SHIPPED) do
                local r = profile.load(name, { cpus = 8 })
                assert.is_truthy(#r.values.description > 0)
                assert.is_truthy(r.source.description:find(name .. ".lua$"))
            end
        end)

        it("all extend default, which equals libms's defaults", function()
            for _, name in ipairs(SHIPPED) do
                local r = profile.load(name, { cpus = 8 })
                assert.are.equal("default", r.chain[1])
                assert.are.equal(name, r.chain[#r.chain])
            end
            local d = profile.load("default", { cpus = 8 }).values
            assert.are.equal(8, d.worker_threads)
            assert.are.equal(512, d.max_blocking_threads)
            assert.are.equal(60, d.thread_keep_alive)
            assert.are.equal(2 * 1024 * 1024, d.thread_stack_size)
            assert.is_true(d.enable_all and d.enable_time and d.enable_io)
            assert.are.equal(61, d.global_queue_interval)
            assert.are.equal(61, d.event_interval)
            assert.are.equal(128, d.budget)
            assert.are.equal(30, d.shutdown_timeout)
            assert.are.equal(1000000, d.jit_agent_limit)
            assert.are.equal(0, d.mailbox_limit)
            assert.are.equal(0, d.agent_memory_limit)
            assert.is_false(d.metrics_listen)
            assert.is_false(d.console)
            assert.is_false(d.tuner)
        end)

        it("differ from default where their purpose says so", function()
            local v = function(name) return profile.load(name, { cpus = 8 }).values end
            assert.are.equal(32, v("io_bound").worker_threads)
            assert.is_truthy(v("io_bound").max_blocking_threads > 512)
            assert.is_truthy(v("cpu_bound").max_blocking_threads < 512)
            assert.is_truthy(v("high_throughput").budget > 128)
            assert.is_truthy(v("high_throughput").global_queue_interval > 61)
            assert.is_truthy(v("high_throughput").event_interval > 61)
            assert.are.equal(16, v("websocket_server").worker_threads)
            assert.is_truthy(v("websocket_server").budget < 128)
            assert.is_truthy(v("websocket_server").shutdown_timeout < 30)
            assert.are.equal(12, v("data_pipeline").worker_threads)
            assert.is_truthy(v("data_pipeline").max_blocking_threads > 512)
            local agents = v("agent_system")
            assert.are.equal(8, agents.worker_threads)
            assert.is_truthy(agents.thread_stack_size < 2 * 1024 * 1024)
            assert.is_truthy(agents.agent_memory_limit > 0)
            assert.is_truthy(agents.mailbox_limit > 0)
        end)
    end)

    describe("extends", function()
        it("overlays the child on the parent and records who set what", function()
            write(dir, "base.lua", [[
                return { description = "base", budget = 100, max_blocking_threads = 7 }
            ]])
            local child = write(dir, "child.lua", [[
                return { extends = "base", description = "child", budget = 50 }
            ]])
            local r = load("child")
            assert.are.same({ "base", "child" }, r.chain)
            assert.are.equal(50, r.values.budget)
            assert.are.equal(7, r.values.max_blocking_threads)
            assert.are.equal("child", r.values.description)
            assert.is_truthy(contains(r.source.budget, "child.lua"))
            assert.is_truthy(contains(r.source.max_blocking_threads, "base.lua"))
            assert.are.equal("built-in default", r.source.event_interval)
            assert.are.equal(child, r.file)
        end)

        it("finds a parent beside the child before the search path", function()
            write(dir, "default.lua", [[
                return { description = "a local default", budget = 9 }
            ]])
            write(dir, "kid.lua", [[return { extends = "default", description = "kid" }]])
            assert.are.equal(9, load("kid").values.budget)
        end)

        it("extends a shipped profile from a file loaded by path", function()
            local path = write(dir, "mine.lua", [[
                return { extends = "io_bound", description = "mine", budget = 77 }
            ]])
            local r = load(path)
            assert.are.same({ "default", "io_bound", "mine" }, r.chain)
            assert.are.equal(32, r.values.worker_threads)
            assert.are.equal(77, r.values.budget)
        end)

        it("lets a profile use locals and arithmetic", function()
            write(dir, "calc.lua", [[
                local k = 1024
                return { description = "calc", thread_stack_size = 256 * k,
                         shutdown_timeout = 2 * 60 }
            ]])
            local r = load("calc")
            assert.are.equal(262144, r.values.thread_stack_size)
            assert.are.equal(120, r.values.shutdown_timeout)
        end)

        it("reports a cycle with the names in order", function()
            write(dir, "a.lua", [[return { extends = "b", description = "a" }]])
            write(dir, "b.lua", [[return { extends = "a", description = "b" }]])
            local err = error_of(load, "a")
            assert_contains(err, "profile cycle: a -> b -> a")
            assert_contains(err, "b.lua")
        end)

        it("reports a profile that extends itself", function()
            write(dir, "selfish.lua", [[return { extends = "selfish", description = "s" }]])
            assert_contains(error_of(load, "selfish"), "profile cycle: selfish -> selfish")
        end)

        it("reports a missing parent, naming the child file and the missing name", function()
            local child = write(dir, "orphan.lua", [[
                return { extends = "ghost", description = "orphan" }
            ]])
            local err = error_of(load, "orphan")
            assert.is_truthy(starts_with(err, child .. ": "), err)
            assert_contains(err, "'ghost'")
            assert_contains(err, "not found")
        end)
    end)

    describe("workload rules", function()
        local function workers(rule, cpus)
            write(dir, "w.lua", string.format(
                [[return { description = "w", worker_threads = %q }]], rule))
            return profile.load("w", { cpus = cpus, search_path = { dir } }).values.worker_threads
        end

        it("resolve against the CPU count (8 CPUs)", function()
            assert.are.equal(8, workers("cpu_bound", 8))
            assert.are.equal(32, workers("io_bound", 8))
            assert.are.equal(12, workers("mixed", 8))
            assert.are.equal(16, workers("latency_sensitive", 8))
        end)

        it("round mixed up", function()
            assert.are.equal(5, workers("mixed", 3))
            assert.are.equal(2, workers("mixed", 1))
        end)

        it("cap at libms's 1024 workers", function()
            assert.are.equal(1024, workers("io_bound", 512))
        end)

        it("keep the rule for describe", function()
            local r = load("io_bound")
            assert.are.equal("io_bound", r.rules.worker_threads)
            assert_contains(profile.describe(r), "32 (io_bound: 4 x 8 CPUs)")
        end)

        it("fall back to the machine's CPUs without opts.cpus", function()
            local r = profile.load("default")
            assert.is_truthy(r.cpus >= 1)
            assert.are.equal(r.cpus, math.min(r.values.worker_threads, 1024))
        end)

        it("reject an unknown rule, listing the known ones", function()
            local err = error_of(workers, "lots", 8)
            assert_contains(err, "field 'worker_threads': 'lots' is not a workload rule")
            assert_contains(err, "io_bound")
        end)
    end)

    describe("overrides", function()
        it("parse whole numbers and workload rules for --workers", function()
            local r = load("default", { workers = "4" })
            assert.are.equal(4, r.values.worker_threads)
            assert.are.equal("--workers 4", r.source.worker_threads)
            assert.are.equal(32, load("default", { workers = "io_bound" }).values.worker_threads)
        end)

        it("parse durations with units into seconds", function()
            local cases = { ["250ms"] = 0.25, ["1.5s"] = 1.5, ["2m"] = 120, ["45"] = 45,
                            ["1h"] = 3600, ["0"] = 0 }
            for text, seconds in pairs(cases) do
                local r = load("default", { shutdown_timeout = text })
                assert.are.equal(seconds, r.values.shutdown_timeout, text)
                assert.are.equal("--set shutdown_timeout=" .. text, r.source.shutdown_timeout)
            end
        end)

        it("parse sizes with K, M and G suffixes into bytes", function()
            local cases = { ["2M"] = 2097152, ["512K"] = 524288, ["1G"] = 1073741824,
                            ["65536"] = 65536, ["4MiB"] = 4194304, ["64k"] = 65536 }
            for text, bytes in pairs(cases) do
                assert.are.equal(bytes, load("default", { thread_stack_size = text })
                    .values.thread_stack_size, text)
            end
        end)

        it("parse booleans as true/false/on/off", function()
            local r = load("default", { enable_all = "false", enable_io = "off",
                                        enable_time = "on" })
            assert.is_false(r.values.enable_all)
            assert.is_false(r.values.enable_io)
            assert.is_true(r.values.enable_time)
        end)

        it("parse host fields: listen addresses, paths and false", function()
            local r = load("default", { metrics_listen = "127.0.0.1:9090",
                                        console = "ms-host.sock", mailbox_limit = "100" })
            assert.are.equal("127.0.0.1:9090", r.values.metrics_listen)
            assert.are.equal("ms-host.sock", r.values.console)
            assert.are.equal(100, r.values.mailbox_limit)
            assert.is_false(load("default", { metrics_listen = "off" }).values.metrics_listen)
            assert.are.equal("[::1]:0",
                load("default", { metrics_listen = "[::1]:0" }).values.metrics_listen)
        end)

        it("name the option in errors", function()
            assert.are.equal(
                "--set budget=0: field 'budget': 0 is out of range (allowed 1..1000000)",
                error_of(load, "default", { budget = "0" }))
            assert_contains(error_of(load, "default", { workers = "0" }),
                "--workers 0: field 'worker_threads': 0 is out of range (allowed 1..1024)")
            assert_contains(error_of(load, "default", { shutdown_timeout = "10x" }),
                "--set shutdown_timeout=10x: field 'shutdown_timeout': '10x' has an unknown unit")
            assert_contains(error_of(load, "default", { thread_stack_size = "2X" }),
                "'2X' is not a size")
            assert_contains(error_of(load, "default", { enable_io = "maybe" }),
                "field 'enable_io': expected true or false, got string 'maybe'")
            assert_contains(error_of(load, "default", { metrics_listen = "9090" }),
                "'9090' is not host:port")
            assert_contains(error_of(load, "default", { budget = "1.5" }),
                "1.5 is not a whole number")
            assert_contains(error_of(load, "default", { thread_keep_alive = "0.0001s" }),
                "is not a whole number of milliseconds")
        end)

        it("suggest the nearest field for an unknown key", function()
            assert.are.equal(
                "--set wokrer_threads=4: unknown field 'wokrer_threads' "
                    .. "(did you mean 'worker_threads'?)",
                error_of(load, "default", { wokrer_threads = "4" }))
        end)

        it("win over every profile in the chain", function()
            local r = load("websocket_server", { budget = "1000" })
            assert.are.equal(1000, r.values.budget)
            assert.are.equal("--set budget=1000", r.source.budget)
        end)
    end)

    describe("errors in a profile file", function()
        it("a syntax error names the file and the line", function()
            local path = write(dir, "broken.lua", "return {\n  description = 'x',\n  budget = ,\n}\n")
            local err = error_of(load, "broken")
            assert.is_truthy(starts_with(err, path .. ":3:"), err)
        end)

        it("a runtime error names the file and the line", function()
            local path = write(dir, "oops.lua",
                "local a\nlocal b = a.field\nreturn { description = 'x' }\n")
            local err = error_of(load, "oops")
            assert.is_truthy(starts_with(err, path .. ":2:"), err)
        end)

        it("a global is not visible, and the error says why", function()
            local path = write(dir, "glob.lua", "return { description = 'x', budget = cpus * 2 }\n")
            local err = error_of(load, "glob")
            assert.is_truthy(starts_with(err, path .. ":1:"), err)
            assert_contains(err, "'cpus' is not defined")
        end)

        it("an assignment to a global is refused", function()
            write(dir, "leak.lua", "budget = 5\nreturn { description = 'x' }\n")
            assert_contains(error_of(load, "leak"), "assignment to global 'budget'")
        end)

        it("a chunk that does not return a table is reported", function()
            local path = write(dir, "num.lua", "return 42\n")
            assert.are.equal(path .. ": must return a table, got number", error_of(load, "num"))
            local empty = write(dir, "empty.lua", "local x = 1\n")
            assert.are.equal(empty .. ": must return a table, got nil", error_of(load, "empty"))
        end)

        it("an unknown field suggests the nearest known one", function()
            local path = write(dir, "typo.lua",
                "return { description = 'x', wokrer_threads = 4 }\n")
            assert.are.equal(
                path .. ": unknown field 'wokrer_threads' (did you mean 'worker_threads'?)",
                error_of(load, "typo"))
        end)

        it("an unknown field far from every name gets no suggestion", function()
            local path = write(dir, "far.lua", "return { description = 'x', colour = 'red' }\n")
            assert.are.equal(path .. ": unknown field 'colour'", error_of(load, "far"))
        end)

        it("a bad value names the file, the field, the value and the range", function()
            local path = write(dir, "bad.lua", "return { description = 'x', budget = 0 }\n")
            assert.are.equal(
                path .. ": field 'budget': 0 is out of range (allowed 1..1000000)",
                error_of(load, "bad"))
        end)

        it("ranges follow libms's table", function()
            local function err_for(field, value)
                write(dir, "r.lua", string.format("return { description = 'x', %s = %s }\n",
                    field, value))
                return error_of(load, "r")
            end
            assert_contains(err_for("worker_threads", 1025), "(allowed 1..1024)")
            assert_contains(err_for("max_blocking_threads", 65537), "(allowed 1..65536)")
            assert_contains(err_for("thread_keep_alive", 7 * 86400 + 1),
                "(allowed 0..604800 seconds)")
            assert_contains(err_for("shutdown_timeout", -1), "-1 is out of range")
            assert_contains(err_for("thread_stack_size", 16383),
                "(allowed 16384..1073741824 bytes)")
            assert_contains(err_for("thread_stack_size", "'2G'"), "'2G' is out of range")
            assert_contains(err_for("global_queue_interval", 0), "(allowed 1..1000000)")
            assert_contains(err_for("event_interval", 1000001), "(allowed 1..1000000)")
            assert_contains(err_for("thread_name", "'x'"), "unknown field 'thread_name'")
        end)

        it("a wrong type names the expected one", function()
            local path = write(dir, "t.lua", "return { description = 'x', enable_io = 'yes' }\n")
            assert.are.equal(path .. ": field 'enable_io': expected true or false, got string 'yes'",
                error_of(load, "t"))
            write(dir, "t2.lua", "return { description = 'x', budget = '128' }\n")
            assert_contains(error_of(load, "t2"), "field 'budget': expected a whole number")
        end)

        it("a bad value in a parent names the parent's file", function()
            local parent = write(dir, "p.lua", "return { description = 'p', budget = -3 }\n")
            write(dir, "c.lua", "return { extends = 'p', description = 'c' }\n")
            local err = error_of(load, "c")
            assert.is_truthy(starts_with(err, parent .. ": field 'budget'"), err)
        end)

        it("a missing description is reported", function()
            local path = write(dir, "nodesc.lua", "return { extends = 'default', budget = 5 }\n")
            local err = error_of(load, "nodesc")
            assert.is_truthy(starts_with(err, path .. ": field 'description' is required"), err)
        end)

        it("enable_all = true with enable_io = false is a contradiction", function()
            local path = write(dir, "noio.lua",
                "return { extends = 'default', description = 'x', enable_io = false }\n")
            local err = error_of(load, "noio")
            assert.is_truthy(starts_with(err, path .. ": field 'enable_io'"), err)
            assert_contains(err, "contradicts enable_all = true")
            write(dir, "noio2.lua", "return { extends = 'default', description = 'x', "
                .. "enable_all = false, enable_io = false }\n")
            assert.is_false(load("noio2").values.enable_io)
        end)

        it("a tuner path is resolved beside the profile and must exist", function()
            write(dir, "tune.lua", "-- a tuner\n")
            write(dir, "tuned.lua", "return { description = 'x', tuner = 'tune.lua' }\n")
            assert.are.equal(dir .. "/tune.lua", load("tuned").values.tuner)
            local path = write(dir, "untuned.lua",
                "return { description = 'x', tuner = 'absent.lua' }\n")
            assert_contains(error_of(load, "untuned"),
                path .. ": field 'tuner': cannot read '" .. dir .. "/absent.lua'")
        end)

        it("an unknown profile name lists where it looked", function()
            local err = error_of(load, "no_such_profile")
            assert_contains(err, "profile 'no_such_profile' not found")
            assert_contains(err, dir .. "/no_such_profile.lua")
        end)
    end)

    describe("describe", function()
        it("mentions every field, its value with unit and its source", function()
            local r = load("agent_system", { budget = "64" })
            local text = profile.describe(r)
            for _, field in ipairs(profile.field_order) do
                local line = text:match("\n  (" .. field .. " [^\n]*)")
                assert.is_not_nil(line, "no line for " .. field .. " in\n" .. text)
                assert_contains(line, "from " .. r.source[field])
            end
            assert_contains(text, "from profiles/agent_system.lua")
            assert_contains(text, "from profiles/default.lua")
            assert_contains(text, "from --set budget=64")
            assert_contains(text, "60s")
            assert_contains(text, "1 MiB (1048576 bytes)")
            assert_contains(text, "64 MiB (67108864 bytes)")
            assert_contains(text, "default -> agent_system")
        end)
    end)

    describe("to_config_pairs", function()
        it("gives libms's fields only, as text ms_config_set accepts", function()
            local pairs_ = profile.to_config_pairs(load("default", {
                thread_keep_alive = "250ms", enable_io = "off", enable_all = "false" }))
            local got = {}
            for i, p in ipairs(pairs_) do
                assert.are.equal("string", type(p[2]))
                got[i] = p[1] .. "=" .. p[2]
            end
            assert.are.same({
                "worker_threads=8", "max_worker_threads=0", "max_blocking_threads=512",
                "thread_keep_alive=250ms", "thread_stack_size=2097152", "enable_all=false",
                "enable_time=true", "enable_io=false", "global_queue_interval=61",
                "event_interval=61", "budget=128", "shutdown_timeout=30s",
                "stall_threshold=2s",
                "replace_stalled_workers=true",
                "metrics_histograms=false",
            }, got)
        end)

        it("writes whole seconds as \"60s\" and the rest in milliseconds", function()
            local function keep_alive(text)
                for _, p in ipairs(profile.to_config_pairs(load("default",
                        { thread_keep_alive = text }))) do
                    if p[1] == "thread_keep_alive" then
                        return p[2]
                    end
                end
            end
            assert.are.equal("60s", keep_alive("1m"))
            assert.are.equal("1500ms", keep_alive("1.5s"))
            assert.are.equal("100ms", keep_alive("0.1"))
            assert.are.equal("0s", keep_alive("0"))
        end)

        -- The real check: libms itself accepts every pair of every shipped
        -- profile, and describes the result back the same way.  Needs a
        -- built libms (build/core/libms.so).
        it("is accepted by libms's ms_config_set", function()
            local lib_path = root .. "/build/core/libms.so"
            local f = io.open(lib_path, "r")
            if f == nil then
                pending("no " .. lib_path .. "; build first")
                return
            end
            f:close()
            local ffi = require("ffi")
            pcall(ffi.cdef, [[
                int ms_config_set(void *cfg, const char *key, const char *value, void *err);
                void ms_config_default(void *cfg);
                int ms_config_validate(const void *cfg, void *err);
                int ms_config_describe(const void *cfg, char *buf, size_t size);
            ]])
            local lib = ffi.load(lib_path)
            for _, name in ipairs(SHIPPED) do
                -- ms_config is opaque here: a generously sized, aligned buffer.
                local cfg = ffi.new("uint64_t[64]")
                local err = ffi.new("char[512]")
                lib.ms_config_default(cfg)
                local pairs_ = profile.to_config_pairs(profile.load(name, { cpus = 8 }))
                for _, p in ipairs(pairs_) do
                    local rc = lib.ms_config_set(cfg, p[1], p[2], err)
                    assert.are.equal(0, rc, name .. ": " .. p[1] .. "=" .. p[2] .. ": "
                        .. ffi.string(err + 4))
                end
                assert.are.equal(0, lib.ms_config_validate(cfg, err), ffi.string(err + 4))
                local buf = ffi.new("char[4096]")
                lib.ms_config_describe(cfg, buf, 4096)
                local described = ffi.string(buf)
                for _, p in ipairs(pairs_) do
                    assert_contains(described, p[1] .. " = " .. p[2] .. "\n")
                end
            end
        end)
    end)

    describe("list and the search path", function()
        it("lists profile names found on a search path, sorted, without duplicates", function()
            write(dir, "zeta.lua", "return { description = 'z' }\n")
            write(dir, "io_bound.lua", "return { description = 'shadow' }\n")
            write(dir, "notes.txt", "not a profile\n")
            local names = profile.list({ dir, root .. "/profiles" })
            local expected = { "zeta" }
            for _, n in ipairs(SHIPPED) do
                expected[#expected + 1] = n
            end
            table.sort(expected)
            assert.are.same(expected, names)
        end)

        it("prefers the first directory of the search path", function()
            write(dir, "io_bound.lua", "return { description = 'shadow', budget = 3 }\n")
            assert.are.equal(3, load("io_bound").values.budget)
        end)

        it("defaults to the repository's profiles directory", function()
            local found = false
            for _, d in ipairs(profile.search_path) do
                local f = io.open(d .. "/default.lua", "r")
                if f ~= nil then
                    f:close()
                    found = true
                end
            end
            assert.is_true(found, table.concat(profile.search_path, ":"))
        end)

        it("is replaced by MS_PROFILE_PATH, colon separated", function()
            local other = temp_dir()
            write(other, "only_here.lua", "return { description = 'x' }\n")
            local code = "package.path = " .. string.format("%q", root .. "/lua/?.lua;")
                .. " .. package.path; local p = require('ms.profile');"
                .. " io.write(table.concat(p.list(), ','), ';', #p.search_path)"
            -- In a sanitizer build the module needs its runtime preloaded,
            -- and the commands the child runs (profile.list's ls) must not
            -- get it.
            local preload = os.getenv("MS_SANITIZER_RUNTIME") or ""
            if preload ~= "" then
                code = "local ffi = require('ffi') ffi.cdef('int unsetenv(const char *)')"
                    .. " ffi.C.unsetenv('LD_PRELOAD') " .. code
            end
            local cmd = "MS_PROFILE_PATH=" .. shell_quote(dir .. ":" .. other)
                .. (preload ~= "" and " LD_PRELOAD=" .. shell_quote(preload) or "")
                .. " luajit -e " .. shell_quote(code)
            write(dir, "first.lua", "return { description = 'x' }\n")
            local pipe = assert(io.popen(cmd))
            local out = pipe:read("*a")
            pipe:close()
            os.execute("rm -rf " .. shell_quote(other))
            assert.are.equal("first,only_here;2", out)
        end)
    end)

    describe("the fields table", function()
        it("describes every field with a kind and a one-line doc", function()
            local kinds = { count = true, duration = true, size = true, bool = true,
                            string = true, listen = true, path_or_false = true, workers = true }
            local n = 0
            for name, f in pairs(profile.fields) do
                n = n + 1
                assert.is_true(kinds[f.kind], name)
                assert.are.equal("string", type(f.doc), name)
                assert.is_nil(f.doc:find("\n"), name)
            end
            assert.are.equal(#profile.field_order, n)
        end)

        it("matches libms's ranges", function()
            local f = profile.fields
            assert.are.same({ 1, 1024 }, { f.worker_threads.min, f.worker_threads.max })
            assert.are.same({ 1, 65536 }, { f.max_blocking_threads.min, f.max_blocking_threads.max })
            assert.are.same({ 0, 604800 }, { f.thread_keep_alive.min, f.thread_keep_alive.max })
            assert.are.same({ 0, 604800 }, { f.shutdown_timeout.min, f.shutdown_timeout.max })
            assert.are.same({ 16384, 2 ^ 30 }, { f.thread_stack_size.min, f.thread_stack_size.max })
            assert.are.same({ 1, 1000000 }, { f.budget.min, f.budget.max })
            assert.are.same({ 1, 1000000 }, { f.global_queue_interval.min, f.global_queue_interval.max })
            assert.are.same({ 1, 1000000 }, { f.event_interval.min, f.event_interval.max })
            assert.is_nil(f.thread_name)
        end)
    end)
end)
