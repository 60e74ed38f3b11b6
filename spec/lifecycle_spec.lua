-- Graceful shutdown of a running ms-host: SIGTERM and SIGINT run every
-- agent's ms.on_shutdown handlers and exit 0; a deadline that passes exits
-- 3; a second SIGINT exits 130 at once; ms.shutdown() does the same from
-- Lua.  Each case starts a real ms-host and signals it from a shell.
--
-- spec-kind: subprocess (it drives the ms-host binary only and never loads
-- the ms module, so CMakeLists.txt runs it in every build, the sanitizer
-- builds' included, against that build's ms-host)

local host = os.getenv("MS_HOST") or "build/ms-host/ms-host"

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs script under ms-host with extra args, waits until it printed
-- "ready" (up to 20 s), sends the signals (each after a short pause), and
-- returns the exit status and the combined output.  A host still running
-- 60 s later is killed (status 137): a hang guard, not a timing check.
local function run_and_signal(script, args, signals)
  local out = os.tmpname()
  local cmd = ([[
"%s" run "%s" %s > "%s" 2>&1 &
p=$!
( sleep 60; kill -KILL $p ) >/dev/null 2>&1 & guard=$!
for i in $(seq 1 1000); do grep -q ready "%s" && break; sleep 0.02; done
for s in %s; do kill -$s $p; sleep 0.3; done
wait $p
echo "exit=$?"
kill $guard 2>/dev/null
]]):format(host, script, args or "", out, out, table.concat(signals, " "))
  local sh = io.popen("sh -c '" .. cmd:gsub("'", "'\\''") .. "'")
  local status = sh:read("*a")
  sh:close()
  local text = slurp(out)
  os.remove(out)
  return tonumber(status:match("exit=(%d+)")), text
end

local script = tmpfile([[
ms.agent.spawn{ name = "worker", fn = function()
  ms.on_shutdown(function() print("worker cleanup start"); ms.sleep(0.05); print("worker cleanup end") end)
  while true do ms.sleep(0.01) end
end }
ms.on_shutdown(function() print("main handler") end)
if arg[1] == "slow" then ms.on_shutdown(function() ms.sleep(30) end) end
ms.sleep(0.05)
print("ready")
io.stdout:flush()
while true do ms.sleep(0.02) end
]])

describe("graceful shutdown", function()
  it("runs every agent's handlers on SIGTERM and exits 0", function()
    local code, out = run_and_signal(script, "", { "TERM" })
    assert.are.equal(0, code)
    assert.truthy(out:find("SIGTERM: shutting down", 1, true))
    assert.truthy(out:find("main handler", 1, true))
    assert.truthy(out:find("worker cleanup end", 1, true))
    assert.truthy(out:find("shutdown complete", 1, true))
  end)

  it("runs the handlers on SIGINT too", function()
    local code, out = run_and_signal(script, "", { "INT" })
    assert.are.equal(0, code)
    assert.truthy(out:find("SIGINT: shutting down", 1, true))
    assert.truthy(out:find("worker cleanup end", 1, true))
  end)

  it("kills what is still running at the deadline and exits 3", function()
    local code, out = run_and_signal(script, "--set shutdown_timeout=500ms -- slow", { "TERM" })
    assert.are.equal(3, code)
    assert.truthy(out:find("timed out", 1, true))
    assert.truthy(out:find("shutdown forced", 1, true))
  end)

  it("exits at once with 130 on a second SIGINT", function()
    local code, out = run_and_signal(script, "-- slow", { "INT", "INT" })
    assert.are.equal(130, code)
    assert.truthy(out:find("second SIGINT", 1, true))
  end)

  it("stops a supervision tree's children in reverse start order on SIGTERM", function()
    local tree = tmpfile([[
local function child(args)
  ms.trap_exit(true) -- it handles { event = "shutdown" } itself
  while true do
    local m = ms.recv()
    if type(m) == "table" and m.event == "shutdown" then
      print("stopped " .. args.name)
      io.stdout:flush()
      return
    end
  end
end
local children = {}
for _, name in ipairs({ "first", "second", "third" }) do
  children[#children + 1] = { id = name, start = { fn = child, args = { name = name } }, shutdown = 5 }
end
local sup = ms.supervisor{ name = "root", strategy = "one_for_one", children = children }
ms.sleep(0.1)
print("ready")
io.stdout:flush()
while true do ms.sleep(0.05) end
]])
    local code, out = run_and_signal(tree, "", { "TERM" })
    os.remove(tree)
    assert.are.equal(0, code)
    local third = out:find("stopped third", 1, true)
    local second = out:find("stopped second", 1, true)
    local first = out:find("stopped first", 1, true)
    assert.truthy(third and second and first, out)
    assert.is_true(third < second and second < first, out)
  end)

  it("reloads the profile on SIGHUP: live settings change, the others are named", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p '" .. dir .. "'")
    local prof = dir .. "/p.lua"
    local function write_profile(text)
      local f = assert(io.open(prof, "w"))
      f:write(text)
      f:close()
    end
    write_profile('return { extends = "default", description = "t", mailbox_limit = 10 }')
    local s = tmpfile('print("ready"); io.stdout:flush(); while true do ms.sleep(0.02) end')
    local out = os.tmpname()
    -- Each reload is waited for by its last line on stderr (up to 20 s),
    -- not for a guessed time: the second profile must not replace the
    -- first before the first reload has read it.
    local cmd = ([[
"%s" run "%s" --profile "%s" > "%s" 2>&1 &
p=$!
( sleep 60; kill -KILL $p ) >/dev/null 2>&1 & guard=$!
for i in $(seq 1 1000); do grep -q ready "%s" && break; sleep 0.02; done
printf 'return { extends = "default", description = "t", mailbox_limit = 50, budget = 64, event_interval = 7 }' > "%s"
kill -HUP $p
for i in $(seq 1 1000); do grep -q "event_interval = 7 needs a restart" "%s" && break; sleep 0.02; done
printf 'return { extends = "default", description = "t", bogus = 1 }' > "%s"
kill -HUP $p
for i in $(seq 1 1000); do grep -q "profile not reloaded" "%s" && break; sleep 0.02; done
kill -TERM $p; wait $p; echo "exit=$?"
kill $guard 2>/dev/null
]]):format(host, s, prof, out, out, prof, out, prof, out)
    local sh = io.popen("sh -c '" .. cmd:gsub("'", "'\\''") .. "'")
    local status = sh:read("*a")
    sh:close()
    local text = slurp(out)
    os.remove(out)
    os.remove(s)
    os.execute("rm -rf '" .. dir .. "'")
    assert.truthy(status:find("exit=0", 1, true), text)
    assert.truthy(text:find("mailbox_limit 10 -> 50", 1, true), text)
    assert.truthy(text:find("budget 128 -> 64", 1, true), text)
    assert.truthy(text:find("event_interval = 7 needs a restart", 1, true), text)
    assert.truthy(text:find("profile not reloaded", 1, true), text)
    assert.truthy(text:find("unknown field 'bogus'", 1, true), text)
  end)

  it("shuts down from Lua with ms.shutdown()", function()
    local s = tmpfile([[
ms.on_shutdown(function() print("handler ran") end)
ms.spawn(function() ms.sleep(0.05); ms.shutdown(5) end)
while true do ms.sleep(0.01) end
]])
    local p = io.popen(('"%s" run "%s" 2>&1; echo "exit=$?"'):format(host, s))
    local out = p:read("*a")
    p:close()
    os.remove(s)
    assert.truthy(out:find("handler ran", 1, true))
    assert.truthy(out:find("exit=0", 1, true))
  end)
end)
