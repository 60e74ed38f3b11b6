-- jit_errors.lua - what one Lua error costs beside N agents holding
-- machine code (docs/host.md, "The JIT and its window": LuaJIT raises
-- errors as exceptions, and libgcc's unwinder searched every JIT state's
-- unwind table for each frame; ms-host/unwind_jit.c indexes them).
--
--   ms-host run bench/lua/jit_errors.lua --workers 2 --set jit_agent_limit=1000000 -- [N ...]
--
-- For each N (default 0 2000 10000): N agents each compile a loop and stay
-- alive; then one agent times 2,000 pcall(error, "x"), 5 times:
--   jit_errors_N median_us=... min_us=... n=5 jit_states=...
-- (microseconds per error).

local counts = {}
for i = 1, #arg do counts[#counts + 1] = assert(tonumber(arg[i]), "N: a count") end
if #counts == 0 then counts = { 0, 2000, 10000 } end
local self = ms.self()

local function compile_and_wait(a)
  local on = jit.status()
  local t, s = { a = 1 }, 0
  for _ = 1, 2000 do s = s + t.a end
  a.main:send(s)
  ms.recv()
end

local function time_errors(a)
  local v = {}
  for r = 1, 6 do
    local t0 = ms.now()
    for _ = 1, 2000 do pcall(error, "x") end
    v[r] = (ms.now() - t0) / 2000 * 1e6
  end
  table.remove(v, 1) -- the first run warms up
  table.sort(v)
  a.main:send(v)
end

for _, n in ipairs(counts) do
  local hs = {}
  for i = 1, n do
    hs[i] = ms.agent.spawn{ fn = compile_and_wait, args = { main = self } }
  end
  for _ = 1, n do ms.recv() end
  ms.agent.spawn{ fn = time_errors, args = { main = self } }
  local v = ms.recv()
  print(("jit_errors_%d median_us=%.2f min_us=%.2f n=%d jit_states=%d"):format(n,
    v[math.floor(#v / 2) + 1], v[1], #v, ms.metrics().jit.states))
  io.stdout:flush()
  for _, h in ipairs(hs) do h:send("stop") end
  while #ms.agents() > 1 do ms.sleep(0.05) end
end
