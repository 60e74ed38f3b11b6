-- Specs for the descriptor tables: each metric, each profile field and
-- each live flag is written once (core/src/metrics.c, core/src/config.c,
-- agents/facts.c), and what lists them elsewhere must agree: the docs
-- (docs/metrics.md, profiles/README.md, docs/tuning.md), the endpoint's
-- /metrics, ms.metrics(), ms.profile and ms.tune.
--
-- Run from the repository root:
--   LUA_CPATH="build/lua/?.so;;" MS_HOST=build/lua/ms-host \
--     busted --lua=luajit spec/facts_spec.lua

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local root = spec_dir .. "/.."
package.path = root .. "/lua/?.lua;lua/?.lua;" .. package.path

local ms = require "ms"
local h = require "spec.support.helpers"
local profile = require "ms.profile"

local function read(path)
    local text = h.slurp(root .. "/" .. path)
    assert(text ~= "", "cannot read " .. path)
    return text
end

local function keys(t)
    local list = {}
    for k in pairs(t) do
        list[#list + 1] = k
    end
    table.sort(list)
    return list
end

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The rows of markdown tables in text whose first cell holds names in
-- backticks matching pattern: { name = second cell }.  With from (a
-- heading line), only that section is read: up to the next heading of the
-- same or a higher level.
local function table_rows(text, pattern, from)
    local rows, inside, level = {}, from == nil, nil
    for line in text:gmatch("[^\n]+") do
        local hashes = line:match("^(#+) ")
        if from and line == from then
            inside, level = true, #hashes
        elseif inside and from and hashes and #hashes <= level then
            break
        elseif inside then
            local first, second = line:match("^|([^|]*)|([^|]*)|")
            for name in (first or ""):gmatch("`(" .. pattern .. ")`") do
                assert(rows[name] == nil, name .. " is listed twice")
                rows[name] = trim(second)
            end
        end
    end
    assert(inside, "no section " .. tostring(from))
    return rows
end

-- Every key of a, with its value, is in b and vice versa; names the
-- difference.
local function assert_same_names(a, b, what_a, what_b)
    for _, k in ipairs(keys(a)) do
        assert(b[k] ~= nil, k .. " is in " .. what_a .. " but not in " .. what_b)
    end
    for _, k in ipairs(keys(b)) do
        assert(a[k] ~= nil, k .. " is in " .. what_b .. " but not in " .. what_a)
    end
end

describe("the metric descriptors", function()
    local descs = ms._metric_descs()
    local by_prom = {}
    for _, d in ipairs(descs) do
        assert(by_prom[d.prom] == nil, "two descriptors for " .. d.prom)
        by_prom[d.prom] = d
    end

    it("are what docs/metrics.md lists, each with its type", function()
        local documented = table_rows(read("docs/metrics.md"), "ms_[%w_]+", "### Series")
        local described = {}
        for prom, d in pairs(by_prom) do
            described[prom] = d.type
        end
        assert_same_names(described, documented, "the descriptor tables", "docs/metrics.md")
        for prom, d in pairs(by_prom) do
            assert.are.equal(d.type, documented[prom], prom .. "'s type in docs/metrics.md")
        end
    end)

    -- The rules of promtool's `check metrics` (client_golang's promlint)
    -- that a name can break.
    it("have names promtool accepts", function()
        local abbreviations = { s = 1, ms = 1, us = 1, ns = 1, sec = 1, b = 1, kb = 1, mb = 1,
                                gb = 1, tb = 1, pb = 1, m = 1, h = 1, d = 1 }
        local non_base = { "minutes", "hours", "days", "weeks", "bits", "milliseconds",
                           "microseconds", "nanoseconds", "kilobytes", "megabytes" }
        for prom, d in pairs(by_prom) do
            assert(prom:match("^ms_[a-z0-9_]+$"), prom)
            assert.are.equal(d.type == "counter", prom:match("_total$") ~= nil, prom)
            local first = true
            for part in prom:gmatch("[^_]+") do
                if not first then
                    assert(not abbreviations[part], prom .. ": an abbreviated unit")
                    for _, unit in ipairs(non_base) do
                        assert(part ~= unit, prom .. ": use a base unit")
                    end
                    for _, t in ipairs({ "gauge", "counter", "histogram", "summary" }) do
                        assert(part ~= t, prom .. ": a type in the name")
                    end
                end
                first = false
            end
            if d.unit then
                assert(prom:match("_seconds$") or prom:match("_seconds_total$"),
                       prom .. ": a time not in seconds")
            end
            assert(d.help:match("%.$") and not d.help:find("\n"), prom .. "'s help")
        end
    end)

    it("name every field of ms.metrics(), runtime and per worker", function()
        local m
        h.run(function() m = ms.metrics() end,
              { worker_threads = "2", metrics_histograms = "true" })
        local want_top, want_worker = {}, { index = true }
        for _, d in ipairs(descs) do
            if d.scope == "runtime" then
                want_top[d.name] = true
            elseif d.scope == "worker" then
                want_worker[d.name] = true
            end
        end
        for _, d in ipairs(descs) do
            -- The workers' counters are summed at the top, where the
            -- runtime has a field of the same name.
            if d.scope == "worker" and m[d.name] ~= nil then
                want_top[d.name] = true
            end
        end
        for name in pairs(want_top) do
            assert(m[name] ~= nil, "ms.metrics()." .. name .. " is missing")
        end
        for _, w in ipairs(m.per_worker) do
            local got = {}
            for k in pairs(w) do
                got[k] = true
            end
            assert_same_names(want_worker, got, "the descriptors", "ms.metrics().per_worker[i]")
        end
        -- What ms.metrics() has beyond the runtime's metrics: its shape,
        -- and the host's own figures.
        local extra = { histograms = true, per_worker = true, agents = true, events = true,
                        tune_changes = true, mailbox_limit = true, agent_memory_limit = true,
                        jit_agent_limit = true, runaway_stop_after = true,
                        files = true,
                        agent_io_limit = true, host_io_limit = true, io = true,
                        jit = true, cluster = true, -- docs/cluster.md
                        http = true, http_client = true } -- docs/http.md
        for k in pairs(m) do
            assert(want_top[k] or extra[k], "ms.metrics()." .. k .. " is not described")
        end
        -- ms.metrics().jit has exactly the keys of the scope "jit" table.
        local jit_keys = {}
        for _, d in ipairs(descs) do
            if d.scope == "jit" then jit_keys[d.key] = true end
        end
        assert_same_names(jit_keys, m.jit, "the jit descriptors", "ms.metrics().jit")
    end)
end)

describe("/metrics", function()
    local SCRIPT = [[
ms.agent.spawn{ name = "one", fn = function() ms.sleep(120) end }
print("ready")
io.stdout:flush()
for _ = 1, 1200 do
    local f = io.open(arg[1])
    if f then f:close() return end
    ms.sleep(0.05)
end
]]

    local function scrape(args)
        local bg = h.background_host(SCRIPT, "--workers 2 --metrics-listen 127.0.0.1:0 " .. args)
        assert(bg.port, "no port: " .. bg.err())
        local p = io.popen(("timeout 20 bash -c %s"):format(h.shell_quote(
            ("exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET /metrics HTTP/1.1\\r\\n\\r\\n' >&3 "
             .. "&& cat <&3"):format(bg.port))))
        local resp = p:read("*a")
        p:close()
        bg.stop()
        local body = resp:match("\r\n\r\n(.*)$")
        assert(body, "no answer: " .. resp)
        return body
    end

    -- { family = type } from the TYPE lines; every sample belongs to one.
    local function families(body)
        local types = {}
        for name, kind in body:gmatch("# TYPE ([%w_]+) (%a+)") do
            types[name] = kind
        end
        for line in body:gmatch("[^\n]+") do
            if line:sub(1, 1) ~= "#" then
                local name = line:match("^([%w_]+)")
                local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$")
                    or name:match("^(.*)_count$")
                assert(types[name] or (base and types[base] == "histogram"),
                       "a sample of no family: " .. line)
            end
        end
        return types
    end

    local function described(with_histograms)
        local t = {}
        for _, d in ipairs(ms._metric_descs()) do
            -- libms's histograms follow metrics_histograms; the host's
            -- (scope http) are always served.
            if with_histograms or d.type ~= "histogram" or d.scope == "http" then
                t[d.prom] = d.type
            end
        end
        return t
    end

    it("serves exactly the described families, with their types", function()
        for _, histograms in ipairs({ false, true }) do
            local served = families(scrape("--set metrics_histograms=" .. tostring(histograms)))
            local want = described(histograms)
            assert_same_names(want, served, "the descriptor tables", "/metrics")
            for name, kind in pairs(want) do
                assert.are.equal(kind, served[name], name)
            end
        end
    end)
end)

describe("the profile fields", function()
    it("are what profiles/README.md lists, each with its kind", function()
        local documented = table_rows(read("profiles/README.md"), "[%l_]+", "## Fields")
        local fields = {}
        for name, f in pairs(profile.fields) do
            fields[name] = f.kind
        end
        assert_same_names(fields, documented, "the profile's fields", "profiles/README.md")
        for name, kind in pairs(fields) do
            assert.are.equal(kind, (documented[name]:gsub(" ", "_")), name)
        end
    end)

    it("are live exactly where docs/tuning.md says what changes", function()
        local documented = table_rows(read("docs/tuning.md"), "[%l_]+", "## What can change")
        local live = {}
        for _, name in ipairs(profile.live_fields) do
            live[name] = true
            assert(profile.fields[name].live, name)
        end
        assert_same_names(live, documented, "the live fields", "docs/tuning.md")
        assert.are.same(profile.live_fields, ms.tune.live_fields)
    end)
end)
