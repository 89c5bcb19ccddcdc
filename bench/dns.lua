-- The DNS bench: 500 record upserts (an A record per name, replacing what
-- is there) against the lab's BIND 9, made by
--   * nsupdate driven by a shell loop, one process per record (the baseline:
--     "update delete NAME A" + "update add NAME TTL A IP" + "send"), and
--   * tlr.dns.rfc2136 ensure calls from 50 concurrent tasks (each one reads
--     the set and sends a guarded UPDATE), from one task, and as one call
--     that puts all 500 sets into a single UPDATE; plus a second tlr pass
--     where nothing changes (reads only).
-- A second baseline feeds all 500 updates to one nsupdate process (no
-- process start-up per record).  Figures only, nothing asserted.   build/tlr bench/dns.lua
-- Uses the shared lab's BIND ($TLR_LAB_ENV or build/lab/env) when it runs,
-- else starts a private one with tests/lab/bind/start.sh.
-- TLR_BENCH_DNS_RECORDS (default 500) and TLR_BENCH_DNS_TASKS (50) scale it.
package.path = "./tests/?.lua;./bench/?.lua;" .. package.path
local L = require "lab_helper"
local H = require "helper"
local dns = require "tlr.dns"
local sched = require "tlr.sched"

local now = sched.now
local N = math.tointeger(tonumber(os.getenv("TLR_BENCH_DNS_RECORDS") or "")) or 500
local TASKS = math.tointeger(tonumber(os.getenv("TLR_BENCH_DNS_TASKS") or "")) or 50

local out = require "out"
local report = out.report

local quote = out.quote
local function alive(pid) return pid and os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

local env, own_dir
do
  local shared = L.read_env(os.getenv("TLR_LAB_ENV") or "build/lab/env")
  if shared and shared.DNS_SERVER and alive(shared.DNS_PID) then
    env = shared
  else
    own_dir = H.tmpdir()
    local out, rc = H.capture("tests/lab/bind/start.sh " .. quote(own_dir) .. " 127.53")
    assert(rc == 0, "BIND did not start: " .. out)
    env = assert(L.read_env(own_dir .. "/env"))
  end
end

local RUN = string.format("b%05x", math.floor(now() * 1000) % 0xfffff)
local function host(i) return string.format("bench%03d-%s", i, RUN) end
local function ip(round, i) return string.format("10.%d.%d.%d", 100 + round, i // 250, i % 250 + 1) end

local p = dns.rfc2136 {
  server = env.DNS_SERVER, port = tonumber(env.DNS_PORT), zone = env.DNS_ZONE,
  key_name = env.DNS_KEY_NAME, key_algorithm = env.DNS_KEY_ALGORITHM, key_secret = env.DNS_KEY_SECRET,
}

-- nsupdate in a shell loop: one process per record, as a script would do it
local function nsupdate_loop(round)
  local script = os.tmpname()
  local lines = { "set -e", "keyfile=$1" }
  for i = 1, N do
    lines[#lines + 1] = string.format(
      "printf 'server %s %s\\nzone %s\\nupdate delete %s.%s A\\nupdate add %s.%s 300 A %s\\nsend\\n' | nsupdate -k \"$keyfile\"",
      env.DNS_SERVER, env.DNS_PORT, env.DNS_ZONE, host(i), env.DNS_ZONE, host(i), env.DNS_ZONE, ip(round, i))
  end
  H.write(script, table.concat(lines, "\n") .. "\n")
  local keyfile = os.tmpname()
  H.write(keyfile, string.format('key "%s" { algorithm %s; secret "%s"; };\n', env.DNS_KEY_NAME,
    env.DNS_KEY_ALGORITHM, env.DNS_KEY_SECRET))
  local t0 = now()
  local ok = os.execute("bash " .. script .. " " .. keyfile)
  local took = now() - t0
  os.remove(script)
  os.remove(keyfile)
  assert(ok, "the nsupdate loop failed")
  return took
end

-- nsupdate reading one script: one process, one UPDATE per record (no process start-up per record)
local function nsupdate_one(round)
  local script = os.tmpname()
  local lines = { string.format("server %s %s", env.DNS_SERVER, env.DNS_PORT),
    "zone " .. env.DNS_ZONE,
    string.format("key %s:%s %s", env.DNS_KEY_ALGORITHM, env.DNS_KEY_NAME, env.DNS_KEY_SECRET) }
  for i = 1, N do
    local fqdn = host(i) .. "." .. env.DNS_ZONE
    lines[#lines + 1] = "update delete " .. fqdn .. " A"
    lines[#lines + 1] = string.format("update add %s 300 A %s", fqdn, ip(round, i))
    lines[#lines + 1] = "send"
  end
  H.write(script, table.concat(lines, "\n") .. "\n")
  local t0 = now()
  local ok = os.execute("nsupdate " .. script)
  local took = now() - t0
  os.remove(script)
  assert(ok, "nsupdate failed")
  return took
end

local function upsert(round, i)
  return assert(p:ensure { name = host(i), type = "A", ttl = 300, values = { ip(round, i) } })
end

local function tlr_tasks(round, ntasks)
  local t0 = now()
  local tasks, changed = {}, 0
  for t = 1, ntasks do
    tasks[t] = sched.spawn("upsert " .. t, function()
      for i = t, N, ntasks do
        if upsert(round, i).changed then changed = changed + 1 end
      end
    end)
  end
  sched.all(tasks)
  return now() - t0, changed
end

local function tlr_batch(round)
  local sets = {}
  for i = 1, N do sets[i] = { name = host(i), type = "A", ttl = 300, values = { ip(round, i) } } end
  local t0 = now()
  local r = assert(p:ensure(sets))
  return now() - t0, r.changed
end

-- the zone must hold round's values for every name (checked with dig's AXFR)
local function check(round)
  local out = H.capture(string.format("dig +noall +answer -y %s:%s:%s -p %s @%s %s AXFR",
    env.DNS_KEY_ALGORITHM, env.DNS_KEY_NAME, env.DNS_KEY_SECRET, env.DNS_PORT, env.DNS_SERVER, env.DNS_ZONE))
  local n = 0
  for name, addr in out:gmatch("(bench%d+%-" .. RUN .. ")%.%S+%s+%d+%s+IN%s+A%s+(%S+)") do
    local i = tonumber(name:match("bench(%d+)"))
    if addr == ip(round, i) then n = n + 1 end
  end
  assert(n == N, string.format("round %d: %d of %d records have the expected value", round, n, N))
end

local ok, err = pcall(function()
  io.write(string.format("DNS bench: %d upserts against BIND at %s port %s\n", N, env.DNS_SERVER, env.DNS_PORT))
  assert(p:ensure { name = "warm-" .. RUN, type = "A", values = { "10.99.0.1" } })
  local t_ns = nsupdate_loop(1)
  check(1)
  local t_ns1 = nsupdate_one(5)
  check(5)
  local t_conc, changed = tlr_tasks(2, TASKS)
  assert(changed == N)
  check(2)
  local t_seq = tlr_tasks(3, 1)
  check(3)
  local t_batch = tlr_batch(4)
  check(4)
  local t_same = tlr_tasks(4, TASKS)
  report(string.format("%d upserts: nsupdate in a shell loop", N), t_ns, "s")
  report("  per record", t_ns / N * 1000, "ms")
  report(string.format("%d upserts: nsupdate, one process, one send each", N), t_ns1, "s")
  report(string.format("%d upserts: tlr ensure, %d tasks", N, TASKS), t_conc, "s")
  report("  per record", t_conc / N * 1000, "ms")
  report(string.format("speed-up tlr (%d tasks) vs nsupdate loop", TASKS), t_ns / t_conc, "x", "target > 1")
  report(string.format("%d upserts: tlr ensure, one task", N), t_seq, "s")
  report("speed-up tlr (one task) vs nsupdate loop", t_ns / t_seq, "x")
  report(string.format("speed-up tlr (%d tasks) vs nsupdate, one process", TASKS), t_ns1 / t_conc, "x")
  report("speed-up tlr (one task) vs nsupdate, one process", t_ns1 / t_seq, "x")
  report(string.format("%d sets in one tlr ensure (one UPDATE)", N), t_batch, "s")
  report("speed-up tlr (one UPDATE) vs nsupdate loop", t_ns / t_batch, "x")
  report(string.format("%d unchanged sets: tlr ensure, %d tasks (reads)", N, TASKS), t_same, "s")
  local sets = {}
  for i = 1, N do sets[i] = { name = host(i), type = "A" } end
  sets[#sets + 1] = { name = "warm-" .. RUN, type = "A" }
  assert(p:delete(sets))
end)
if own_dir then
  os.execute("tests/lab/bind/stop.sh " .. quote(own_dir))
  os.execute("rm -rf " .. quote(own_dir))
end
if not ok then error(err, 0) end
