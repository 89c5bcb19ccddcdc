-- tlr.dns.rfc2136 against a real BIND 9 (tests/lab/bind), cross-checked
-- with BIND's own clients: what tlr writes is read back with dig, what
-- nsupdate writes is seen by tlr.  Uses the shared lab's BIND when `make
-- lab` runs one (DNS_* keys in $TLR_LAB_ENV or build/lab/env), else starts
-- a private one with tests/lab/bind/start.sh and stops it at the end.
local L = require "lab_helper"
local H = require "helper"
local dns = require "tlr.dns"
local net = require "tlr.net.core"
local sched = require "tlr.sched"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function alive(pid) return pid and os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

describe("tlr.dns.rfc2136 against BIND", function()
  local env, own_dir, p
  -- the shared BIND outlives this run: unique names
  local RUN = string.format("r%05x", math.floor(sched.now() * 1000) % 0xfffff)
  local function name(base) return base .. "-" .. RUN end

  local function provider(extra)
    local o = { server = env.DNS_SERVER, port = tonumber(env.DNS_PORT), zone = env.DNS_ZONE,
      key_name = env.DNS_KEY_NAME, key_algorithm = env.DNS_KEY_ALGORITHM,
      key_secret = env.DNS_KEY_SECRET, timeout = 2, retries = 1 }
    for k, v in pairs(extra or {}) do o[k] = v ~= false and v or nil end
    return dns.rfc2136(o)
  end

  -- dig's answer lines for name/type ("+short"), sorted
  local function dig(rname, rtype, extra)
    local out, rc = H.capture(string.format("dig +short +norecurse +time=2 +tries=1 %s -p %s @%s %s %s",
      extra or "", env.DNS_PORT, env.DNS_SERVER, quote(rname .. "." .. env.DNS_ZONE), rtype))
    assert.are.equal(0, rc, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    return lines
  end

  local function nsupdate(lines, key)
    local script = { "server " .. env.DNS_SERVER .. " " .. env.DNS_PORT, "zone " .. env.DNS_ZONE,
      "key " .. (key or (env.DNS_KEY_ALGORITHM .. ":" .. env.DNS_KEY_NAME .. " " .. env.DNS_KEY_SECRET)) }
    for _, l in ipairs(lines) do script[#script + 1] = l end
    script[#script + 1] = "send"
    local path = os.tmpname()
    H.write(path, table.concat(script, "\n") .. "\n")
    local out, rc = H.capture("nsupdate " .. path)
    os.remove(path)
    return rc, out
  end

  local function serial()
    local soa = assert(p:query("@", "SOA"))
    return tonumber(soa.values[1]:match("^%S+ %S+ (%d+)"))
  end

  setup(function()
    local shared = L.read_env(os.getenv("TLR_LAB_ENV") or "build/lab/env")
    if shared and shared.DNS_SERVER and alive(shared.DNS_PID) then
      env = shared
    else
      own_dir = H.tmpdir()
      local net16 = "127." .. math.random(100, 250)
      local out, rc = H.capture("tests/lab/bind/start.sh " .. quote(own_dir) .. " " .. net16)
      assert(rc == 0, "BIND did not start: " .. out)
      env = assert(L.read_env(own_dir .. "/env"))
    end
    p = provider()
  end)

  teardown(function()
    if own_dir then
      os.execute("tests/lab/bind/stop.sh " .. quote(own_dir))
      os.execute("rm -rf " .. quote(own_dir))
    end
  end)

  it("writes an A set that dig reads back, idempotently", function()
    local n = name("node")
    local r = assert(p:ensure { name = n, type = "A", ttl = 300, values = { "10.0.0.12", "10.0.0.11" } })
    assert.is_true(r.changed)
    assert.are.same({ "10.0.0.11", "10.0.0.12" }, r.sets[1].add)
    assert.are.same({ "10.0.0.11", "10.0.0.12" }, dig(n, "A"))
    local ttl = H.capture(string.format("dig +noall +answer -p %s @%s %s.%s A", env.DNS_PORT,
      env.DNS_SERVER, n, env.DNS_ZONE))
    assert.is_truthy(ttl:find("%s300%s+IN%s+A%s"), ttl)
    local before = serial()
    r = assert(p:ensure { name = n, type = "A", ttl = 300, values = { "10.0.0.11", "10.0.0.12" } })
    assert.is_false(r.changed)
    assert.are.equal(before, serial()) -- nothing was sent
    r = assert(p:ensure { name = n, type = "A", ttl = 300, values = { "10.0.0.13", "10.0.0.11" } })
    assert.is_true(r.changed)
    assert.are.same({ "10.0.0.13" }, r.sets[1].add)
    assert.are.same({ "10.0.0.12" }, r.sets[1].remove)
    assert.are.same({ "10.0.0.11", "10.0.0.13" }, dig(n, "A"))
    r = assert(p:ensure { name = n, type = "A", ttl = 60, values = { "10.0.0.13", "10.0.0.11" } })
    assert.is_true(r.changed) -- only the TTL differs
    assert.are.equal(300, r.sets[1].old_ttl)
  end)

  it("writes AAAA, CNAME and TXT sets that dig reads back", function()
    local long = ("v"):rep(300)
    assert(p:ensure {
      { name = name("v6"), type = "AAAA", values = { "2001:DB8::0011", "2001:db8::12" } },
      { name = name("alias"), type = "CNAME", values = { name("node") .. "." .. env.DNS_ZONE } },
      { name = name("txt"), type = "TXT", values = { "hello world", 'quote " and ; semicolon', long } },
    })
    assert.are.same({ "2001:db8::11", "2001:db8::12" }, dig(name("v6"), "AAAA"))
    assert.are.same({ name("node") .. "." .. env.DNS_ZONE .. "." }, dig(name("alias"), "CNAME"))
    assert.are.same({ '"hello world"', '"quote \\" and ; semicolon"',
      '"' .. ("v"):rep(255) .. '" "' .. ("v"):rep(45) .. '"' }, dig(name("txt"), "TXT"))
    local txt = assert(p:query(name("txt"), "TXT"))
    assert.are.same({ "hello world", 'quote " and ; semicolon', long }, txt.values)
    assert.are.equal(4, #txt.records[3].strings + #txt.records[1].strings + #txt.records[2].strings)
    assert.is_false(assert(p:ensure { name = name("txt"), type = "TXT",
      values = { long, "hello world", 'quote " and ; semicolon' } }).changed)
  end)

  it("sees what nsupdate writes and replaces it exactly", function()
    local n = name("ns-written")
    local rc, out = nsupdate { string.format("update add %s.%s 120 A 10.1.0.1", n, env.DNS_ZONE),
      string.format("update add %s.%s 120 A 10.1.0.2", n, env.DNS_ZONE),
      string.format('update add %s.%s 120 TXT "a" "b"', n, env.DNS_ZONE) }
    assert.are.equal(0, rc, out)
    local set = assert(p:query(n, "A"))
    assert.are.same({ name = n .. "." .. env.DNS_ZONE .. ".", type = "A", ttl = 120,
      values = { "10.1.0.1", "10.1.0.2" } }, { name = set.name, type = set.type, ttl = set.ttl,
      values = set.values })
    -- a TXT record of two strings equals the value "ab"; replacing it needs
    -- the exact strings in the prerequisite
    assert.is_false(assert(p:ensure { name = n, type = "TXT", ttl = 120, values = { "ab" } }).changed)
    assert.is_true(assert(p:ensure { name = n, type = "TXT", ttl = 120, values = { "abc" } }).changed)
    assert.are.same({ '"abc"' }, dig(n, "TXT"))
    local r = assert(p:delete { name = n, type = "A" })
    assert.is_true(r.changed)
    assert.are.equal(2, r.deleted)
    assert.are.same({}, dig(n, "A"))
    local none, msg = p:query(n, "A")
    assert.is_nil(none)
    assert.is_nil(msg) -- no set is not a failure
    assert.is_false(assert(p:delete { name = n, type = "A" }).changed)
  end)

  it("puts many record sets into one UPDATE", function()
    local before = serial()
    local sets = {}
    for i = 1, 40 do
      sets[i] = { name = name("batch" .. i), type = "A", ttl = 60, values = { "10.2.0." .. i, "10.3.0." .. i } }
    end
    local r = assert(p:ensure(sets))
    assert.is_true(r.changed)
    assert.are.equal(before + 1, serial()) -- BIND bumps the serial once per UPDATE
    assert.are.same({ "10.2.0.17", "10.3.0.17" }, dig(name("batch17"), "A"))
    -- the whole zone, read by dig with the key, holds them all
    local out = H.capture(string.format("dig +noall +answer -y %s:%s:%s -p %s @%s %s AXFR",
      env.DNS_KEY_ALGORITHM, env.DNS_KEY_NAME, env.DNS_KEY_SECRET, env.DNS_PORT, env.DNS_SERVER, env.DNS_ZONE))
    local count = 0
    for _ in out:gmatch("batch%d+%-" .. RUN .. "%.") do count = count + 1 end
    assert.are.equal(80, count)
    -- and so does tlr's own transfer
    local zone = assert(p:axfr())
    assert.are.equal("SOA", zone[1].type)
    local mine = 0
    for _, rr in ipairs(zone) do
      if rr.name:find("^batch%d+%-" .. RUN .. "%.") then mine = mine + 1 end
    end
    assert.are.equal(80, mine)
    local zone_sets = assert(p:records())
    local found
    for _, s in ipairs(zone_sets) do
      if s.name == name("batch7") .. "." .. env.DNS_ZONE .. "." then found = s end
    end
    assert.are.same({ "10.2.0.7", "10.3.0.7" }, found.values)
    before = serial()
    assert(p:delete(sets))
    assert.are.equal(before + 1, serial())
  end)

  it("refuses an A set beside a CNAME, and a CNAME beside other data", function()
    assert(p:ensure { name = name("cn"), type = "CNAME", values = { "target.example." } })
    local r, msg, code = p:ensure { name = name("cn"), type = "A", values = { "10.9.0.1" } }
    assert.is_nil(r)
    assert.are.equal("EAPI", code)
    assert.is_truthy(msg:find("has a CNAME", 1, true), msg)
    assert.is_nil((p:query(name("cn"), "A"))) -- reading is fine: there is no A set
    assert.is_false(assert(p:delete { name = name("cn"), type = "A" }).changed)
    assert(p:ensure { name = name("cn-a"), type = "A", values = { "10.9.0.2" } })
    r, msg, code = p:ensure { name = name("cn-a"), type = "CNAME", values = { "target.example." } }
    assert.is_nil(r)
    assert.are.equal("EAPI", code)
    assert.is_truthy(msg:find("ignored the CNAME", 1, true), msg)
    assert.are.same({ "10.9.0.2" }, dig(name("cn-a"), "A"))
  end)

  it("detects a concurrent change instead of overwriting it", function()
    local n = name("race")
    assert(p:ensure { name = n, type = "A", values = { "10.4.0.1" } })
    local real_read = p._read
    p._read = function(self, ...) -- someone else changes the set right after tlr read it
      local rrs = real_read(self, ...)
      assert.are.equal(0, (nsupdate { string.format("update add %s.%s 60 A 10.4.0.99", n, env.DNS_ZONE) }))
      self._read = real_read
      return rrs
    end
    local r, msg, code = p:ensure { name = n, type = "A", values = { "10.4.0.2" } }
    p._read = nil
    assert.is_nil(r)
    assert.are.equal("EAPI", code)
    assert.is_truthy(msg:find("concurrent change", 1, true), msg)
    assert.are.same({ "10.4.0.1", "10.4.0.99" }, dig(n, "A"))
  end)

  it("signs with every algorithm BIND has keys for", function()
    for spec in env.DNS_KEYS:gmatch("%S+") do
      local alg, key, secret = spec:match("^([^:]+):([^:]+):(.+)$")
      local q = provider { key_name = key, key_algorithm = alg, key_secret = secret }
      local n = name(alg)
      assert(q:ensure { name = n, type = "TXT", values = { alg } })
      assert.are.same({ '"' .. alg .. '"' }, dig(n, "TXT"))
      assert.is_true(#assert(q:axfr()) > 3)
    end
  end)

  it("gives a clear BADSIG error for a wrong secret", function()
    local q = provider { key_secret = "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==" }
    local r, msg, code = q:ensure { name = name("badsig"), type = "A", values = { "10.5.0.1" } }
    assert.is_nil(r)
    assert.are.equal("EAUTH", code)
    assert.is_truthy(msg:find("BADSIG", 1, true), msg)
    assert.is_truthy(msg:find("tlr-key", 1, true) or msg:find(env.DNS_KEY_NAME, 1, true), msg)
    assert.is_falsy(msg:find("d3Jvbmcgc2VjcmV0", 1, true)) -- no secret in the message
  end)

  it("gives BADKEY for a key the server does not know", function()
    local q = provider { key_name = "no-such-key" }
    local r, msg, code = q:query("ns", "A")
    assert.is_nil(r)
    assert.are.equal("EAUTH", code)
    assert.is_truthy(msg:find("BADKEY", 1, true), msg)
  end)

  it("gives BADTIME with the clock difference when the signing time is off", function()
    local real_time = os.time
    os.time = function(t) return t and real_time(t) or real_time() - 3600 end
    local r, msg, code = p:query("ns", "A")
    os.time = real_time
    assert.is_nil(r)
    assert.are.equal("EAUTH", code)
    assert.is_truthy(msg:find("BADTIME", 1, true), msg)
    assert.is_truthy(msg:find("clocks differ by 360[01]s"), msg)
  end)

  it("is refused without a key, and with a key that may not update", function()
    local q = provider { key_name = false, key_secret = false, key_algorithm = false }
    assert.are.equal(env.DNS_SERVER, assert(q:query("ns", "A")).values[1]) -- reads need no key
    local r, msg, code = q:ensure { name = name("nokey"), type = "A", values = { "10.6.0.1" } }
    assert.is_nil(r)
    assert.are.equal("EFORBIDDEN", code)
    assert.is_truthy(msg:find("REFUSED", 1, true), msg)
    local alg, key, secret = env.DNS_KEY_READONLY:match("^([^:]+):([^:]+):(.+)$")
    local ro = provider { key_name = key, key_algorithm = alg, key_secret = secret }
    r, msg, code = ro:ensure { name = name("rokey"), type = "A", values = { "10.6.0.2" } }
    assert.is_nil(r)
    assert.are.equal("EFORBIDDEN", code)
    assert.is_truthy(msg:find("REFUSED", 1, true), msg)
    assert.are.same({}, dig(name("rokey"), "A"))
    local _, _, axfr_code = q:axfr()
    assert.are.equal("EFORBIDDEN", axfr_code) -- transfers need the key too
  end)

  it("times out after its retries when the server does not answer", function()
    local silent = assert(net.udp_bind(env.DNS_SERVER, 0)) -- bound, never read
    local _, port = silent:local_address()
    local q = provider { port = port, timeout = 0.2, retries = 2 }
    local t0 = sched.now()
    local r, msg, code = q:ensure { name = name("timeout"), type = "A", values = { "10.7.0.1" } }
    local took = sched.now() - t0
    silent:close()
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_truthy(msg:find("3 tries", 1, true), msg)
    assert.is_true(took >= 0.6 and took < 2, tostring(took))
  end)

  it("uses TCP for big replies and big updates", function()
    local values = {}
    for i = 1, 30 do values[i] = string.format("%03d-%s", i, ("t"):rep(90)) end
    assert(p:ensure { name = name("bigtxt"), type = "TXT", values = values })
    local reply = assert(p.client:query(name("bigtxt") .. "." .. env.DNS_ZONE, "TXT"))
    assert.are.equal("tcp", reply.via) -- the UDP answer came back truncated
    assert.are.equal(30, #reply.answer)
    assert.are.equal(30, #dig(name("bigtxt"), "TXT", "+tcp"))
    local t = provider { transport = "tcp" }
    assert.is_false(assert(t:ensure { name = name("bigtxt"), type = "TXT", values = values }).changed)
    -- 300 more: a 34 KB UPDATE (TCP only) and a zone BIND transfers in several messages,
    -- each checked against the previous MAC
    local many = {}
    for i = 1, 300 do many[i] = string.format("%03d-%s", i, ("m"):rep(100)) end
    assert(p:ensure { name = name("many"), type = "TXT", values = many })
    local stats = H.capture(string.format("dig +noall +answer +stats -y %s:%s:%s -p %s @%s %s AXFR",
      env.DNS_KEY_ALGORITHM, env.DNS_KEY_NAME, env.DNS_KEY_SECRET, env.DNS_PORT, env.DNS_SERVER,
      env.DNS_ZONE))
    local dig_records, messages = stats:match("XFR size: (%d+) records %(messages (%d+)")
    assert.is_true(tonumber(messages) >= 2, stats:sub(-300))
    local zone = assert(p:axfr())
    assert.are.equal(tonumber(dig_records) - 1, #zone) -- dig counts the closing SOA
    assert.is_true(assert(p:delete { name = name("many"), type = "TXT" }).changed)
  end)

  it("reports the plan without sending in dry-run mode", function()
    local before = serial()
    local r = assert(p:ensure({ name = name("dry"), type = "A", values = { "10.8.0.1" } }, { dry_run = true }))
    assert.is_true(r.changed)
    assert.are.same({ "10.8.0.1" }, r.sets[1].add)
    assert.are.equal(before, serial())
    assert.are.same({}, dig(name("dry"), "A"))
  end)

  it("rejects bad input as programmer errors", function()
    assert.has_error(function() p:ensure { name = "x", type = "MX", values = { "10 a." } } end)
    assert.has_error(function() p:ensure { name = "x", type = "A", values = {} } end)
    local ok, err = pcall(p.ensure, p, { { name = "x", type = "A", values = { "10.0.0.1" } },
      { name = "X", type = "a", values = { "10.0.0.2" } } })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("given twice", 1, true), tostring(err))
    assert.has_error(function() p:ensure { name = "x", type = "A", values = { "10.0.0.300" } } end)
    assert.has_error(function() p:ensure { name = "x.example.org.", type = "A", values = { "10.0.0.1" } } end)
    assert.has_error(function() p:ensure { name = "x", type = "A", values = { "1.2.3.4" }, bogus = 1 } end)
    assert.has_error(function() dns.rfc2136 { server = "127.0.0.1", zone = "z", key_secret = "x" } end)
  end)
end)
