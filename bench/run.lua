-- tlr runtime benchmarks: every figure is a ratio against a baseline measured
-- in this same run, on this machine.  Nothing here is asserted; targets are
-- printed next to the figures.   Run: make bench  (or build/tlr bench/run.lua)
local http = require "tlr.http"
local json = require "tlr.json"
local yaml = require "tlr.yaml"
local sched = require "tlr.sched"
local cjson = require "cjson"

local now = sched.now
local bin = os.getenv("TLR_BIN") or "build/tlr"
local results = {}

local function report(name, value, unit, target)
  results[#results + 1] = { name = name, value = value, unit = unit, target = target }
  io.write(string.format("%-52s %10.3f %-6s %s\n", name, value, unit, target or ""))
  io.flush()
end

local function shell_seconds(cmd)
  local t0 = now()
  assert(os.execute(cmd), "failed: " .. cmd)
  return now() - t0
end

local function best_of(n, fn)
  local best = math.huge
  for _ = 1, n do
    collectgarbage()
    best = math.min(best, fn())
  end
  return best
end

-- ---------- start-up and memory ----------
do
  local runs = 200
  local loop = "for i in $(seq %d); do %s -e '' ; done"
  local t_tlr = best_of(3, function() return shell_seconds(loop:format(runs, bin)) end)
  local t_lua = best_of(3, function() return shell_seconds(loop:format(runs, "lua5.4")) end)
  report("start-up: tlr -e '' per run", t_tlr / runs * 1000, "ms")
  report("start-up: lua5.4 -e '' per run", t_lua / runs * 1000, "ms")
  report("start-up ratio tlr / lua5.4", t_tlr / t_lua, "x", "target <= 1.5")
  local p = io.popen("/usr/bin/time -f %M " .. bin .. " -e '' 2>&1")
  local kb = tonumber(p:read("a"):match("(%d+)%s*$"))
  p:close()
  report("peak RSS of tlr -e ''", kb / 1024, "MB", "target < 10")
end

-- ---------- YAML vs python3-yaml's C loader/dumper ----------
do
  local text = dofile("bench/yaml_gen.lua")(1024 * 1024)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local docs
  local t_dec = best_of(5, function()
    local t0 = now()
    docs = assert(yaml.decode_all(text))
    return now() - t0
  end)
  local t_enc = best_of(5, function()
    local t0 = now()
    assert(yaml.encode_all(docs))
    return now() - t0
  end)
  local py = [[
import sys, time, yaml
s = open(sys.argv[1]).read()
best_l = best_d = 1e9
for _ in range(5):
    t = time.perf_counter(); d = list(yaml.load_all(s, Loader=yaml.CLoader)); best_l = min(best_l, time.perf_counter() - t)
for _ in range(5):
    t = time.perf_counter(); yaml.dump_all(d, Dumper=yaml.CDumper); best_d = min(best_d, time.perf_counter() - t)
print(best_l, best_d)
]]
  local pyfile = os.tmpname()
  f = assert(io.open(pyfile, "w"))
  f:write(py)
  f:close()
  local p = io.popen("/usr/bin/python3 " .. pyfile .. " " .. path)
  local out = p:read("a")
  p:close()
  os.remove(pyfile)
  os.remove(path)
  local py_dec, py_enc = out:match("([%d.e-]+)%s+([%d.e-]+)")
  py_dec, py_enc = tonumber(py_dec), tonumber(py_enc)
  report(string.format("yaml decode %.1f MB: tlr", #text / 1e6), t_dec * 1000, "ms")
  report("yaml decode: python3-yaml CLoader", py_dec * 1000, "ms")
  report("yaml decode speed-up vs CLoader", py_dec / t_dec, "x", "target >= 2")
  report("yaml encode: tlr", t_enc * 1000, "ms")
  report("yaml encode: python3-yaml CDumper", py_enc * 1000, "ms")
  report("yaml encode speed-up vs CDumper", py_enc / t_enc, "x")
end

-- ---------- JSON vs raw lua-cjson ----------
do
  local text = dofile("bench/json_gen.lua")(3 * 1024 * 1024)
  local t_tlr = best_of(5, function()
    local t0 = now()
    assert(json.decode(text))
    return now() - t0
  end)
  local t_cjson = best_of(5, function()
    local t0 = now()
    cjson.decode(text)
    return now() - t0
  end)
  report(string.format("json decode %.1f MB /cluster/resources: tlr", #text / 1e6), t_tlr * 1000, "ms")
  report("json decode: raw cjson", t_cjson * 1000, "ms")
  report("json decode cost vs raw cjson (ints, arrays)", t_tlr / t_cjson, "x")
end

-- ---------- HTTP against a loopback server ----------
do
  local H = dofile("tests/helper.lua")
  local dir = H.tmpdir()
  local certs = H.make_server_cert(dir, { "127.0.0.1" })
  local server = H.start_node("tests/servers/http_server.js", { certs.paths.cert, certs.paths.key })
  local ok, err = pcall(function()
    local base = "http://127.0.0.1:" .. server.http
    local n = 1000
    assert(http.get(base .. "/echo")) -- warm: one connection in the cache
    local t_tlr = best_of(3, function()
      local t0 = now()
      for _ = 1, n do assert(http.get(base .. "/echo")) end
      return now() - t0
    end)
    local urls = {}
    for i = 1, n do urls[i] = base .. "/echo" end
    local list = os.tmpname()
    local lf = assert(io.open(list, "w"))
    for _, u in ipairs(urls) do lf:write("url = \"", u, "\"\noutput = \"/dev/null\"\n") end
    lf:close()
    local t_curl = best_of(3, function() return shell_seconds("curl -s -K " .. list) end)
    os.remove(list)
    report("1000 keep-alive GETs: tlr", t_tlr * 1000, "ms")
    report("1000 keep-alive GETs: curl CLI (one process)", t_curl * 1000, "ms")
    report("keep-alive GETs speed-up vs curl CLI", t_curl / t_tlr, "x")

    local delay = 0.05
    local t_conc = best_of(3, function()
      local t0 = now()
      local tasks = {}
      for i = 1, 100 do
        tasks[i] = sched.spawn(function()
          return assert(http.get(base .. "/delay", { query = { ms = 50 } })).status
        end)
      end
      sched.all(tasks)
      return now() - t0
    end)
    report("100 concurrent requests, server answers in 50 ms", t_conc * 1000, "ms")
    report("100 concurrent 50 ms requests / 50 ms bound", t_conc / delay, "x", "target <= 2")
  end)
  server.stop()
  os.execute("rm -rf " .. dir)
  if not ok then error(err, 0) end
end

io.write("\nbench done: ", #results, " figures\n")

-- the other benches print their own figures (see docs/bench.md)
for _, name in ipairs { "talos_config", "dns", "k8s", "proxmox", "bringup" } do
  io.write("\n== bench/", name, ".lua\n")
  io.flush()
  local ok, err = pcall(dofile, "bench/" .. name .. ".lua")
  if not ok then io.write("bench/", name, ".lua failed: ", tostring(err), "\n") end
end
