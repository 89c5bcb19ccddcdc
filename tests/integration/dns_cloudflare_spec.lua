-- tlr.dns.cloudflare against the lab's Cloudflare API v4 fake, and the
-- fake's own fidelity (raw requests).
local L = require "lab_helper"
local cloudflare = require "tlr.dns.cloudflare"
local http = require "tlr.http"
local json = require "tlr.json"
local log = require "tlr.log"
local sched = require "tlr.sched"
local H = require "helper"

-- Run by /usr/bin/python3 with CLOUDFLARE_API_URL, REQUESTS_CA_BUNDLE, CF_TOKEN; argv[1] = a name.
local CERTBOT_CHECK = [[
import json, os, sys
import CloudFlare
from certbot import errors
from certbot_dns_cloudflare._internal.dns_cloudflare import _CloudflareClient
name, token = sys.argv[1], os.environ['CF_TOKEN']
out = {}
client = _CloudflareClient(api_token=token)
client.add_txt_record(name, '_acme-challenge.' + name, 'challenge-1', 120)
cf = CloudFlare.CloudFlare(token=token)
zone = cf.zones.get(params={'name': 'tlr.test'})[0]
query = {'type': 'TXT', 'name': '_acme-challenge.' + name}
out['added'] = [{k: r[k] for k in ('name', 'type', 'content', 'ttl', 'proxied')}
                for r in cf.zones.dns_records.get(zone['id'], params=query)]
client.del_txt_record(name, '_acme-challenge.' + name, 'challenge-1')
out['after_delete'] = len(cf.zones.dns_records.get(zone['id'], params=query))
try:
    _CloudflareClient(api_token='a' * 40).add_txt_record(name, '_acme-challenge.' + name, 'v', 120)
except errors.PluginError as e:
    out['bad_token'] = str(e)
try:
    cf.zones.dns_records.post(zone['id'], data={'type': 'A', 'name': 'x.' + name, 'content': '10.0.0.300'})
except CloudFlare.exceptions.CloudFlareAPIError as e:
    out['invalid'] = [int(e), str(e)]
print(json.dumps(out))
]]

describe("tlr.dns.cloudflare", function()
  local lab, env, log_since
  -- the shared lab outlives this run: every name lives under a per-run label
  local RUN = string.format("r%05x", math.floor(sched.now() * 1000) % 0xfffff)
  local SUB = RUN .. ".tlr.test"

  local function provider(extra)
    local o = { token = env.CLOUDFLARE_TOKEN, zone = env.CLOUDFLARE_ZONE, api = env.CLOUDFLARE_API,
      ca_file = env.CLOUDFLARE_CA_FILE, retry_budget = 10 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return cloudflare.new(o)
  end

  local function mark()
    local entries = lab:control("GET", "/log?limit=1")
    log_since = entries[#entries] and entries[#entries].seq or 0
  end

  -- Cloudflare requests since the mark, optionally of one method
  local function requests(method)
    local out = {}
    for _, e in ipairs(lab:control("GET", "/log?service=cloudflare&since=" .. log_since .. "&limit=100000")) do
      if not method or e.method == method then out[#out + 1] = e end
    end
    return out
  end

  local function writes()
    local n = 0
    for _, e in ipairs(requests()) do
      if e.method ~= "GET" then n = n + 1 end
    end
    return n
  end

  -- the fake's records at an absolute name (all types), from the control endpoint
  local function stored(fqdn, rtype)
    local out = {}
    for _, z in ipairs(lab:control("GET", "/cloudflare/state").zones) do
      for _, r in ipairs(z.records) do
        if r.name == fqdn and (not rtype or r.type == rtype) then out[#out + 1] = r end
      end
    end
    table.sort(out, function(a, b) return a.content < b.content end)
    return out
  end

  local function contents(list)
    local out = {}
    for i, r in ipairs(list) do out[i] = r.content end
    return out
  end

  local function fault(rule)
    rule.service = "cloudflare"
    return lab:control("POST", "/faults", rule)
  end

  -- a raw API call: the decoded body and the response
  local function raw(method, path, o)
    o = o or {}
    local headers = o.headers or { Authorization = "Bearer " .. env.CLOUDFLARE_TOKEN }
    if o.body then headers["Content-Type"] = "application/json" end
    local r = assert(http.request { method = method, url = env.CLOUDFLARE_API .. path, query = o.query,
      headers = headers, body = o.body and json.encode(o.body), ca_file = env.CLOUDFLARE_CA_FILE })
    return json.decode(r.body), r
  end

  setup(function()
    lab = L.shared { args = { "--only", "cloudflare" } }
    if not lab.env.CLOUDFLARE_API then -- a shared lab started before the service existed
      lab = L.start { args = { "--only", "cloudflare" } }
    end
    env = lab.env
    lab:reset("test")
  end)

  teardown(function()
    lab:control("DELETE", "/cloudflare/records?suffix=" .. SUB)
    lab:stop()
  end)

  before_each(function()
    lab:reset("test")
    mark()
  end)

  describe("provider", function()
    it("looks the zone up by name once and caches its id", function()
      local p = provider()
      assert.is_nil(p:query("nothing." .. RUN, "A"))
      assert.is_nil(select(2, p:query("nothing." .. RUN, "A")))
      local zones = requests("GET")
      assert.are.equal("/zones", zones[1].path)
      assert.are.equal("tlr.test", zones[1].params.name)
      local n = 0
      for _, e in ipairs(zones) do
        if e.path == "/zones" then n = n + 1 end
      end
      assert.are.equal(1, n)
      assert.are.equal(env.CLOUDFLARE_ZONE_ID, p.zid)
    end)

    it("creates, skips when equal, updates in place and deletes a record set", function()
      local p = provider()
      local name = "web." .. RUN
      local fqdn = "web." .. SUB
      local r = assert(p:ensure { name = name, type = "A", values = { "10.0.0.1", "10.0.0.2" }, ttl = 300 })
      assert.are.same({ true, "create", 2 }, { r.changed, r.action, #r.changes })
      assert.are.same({ { "10.0.0.1", "10.0.0.2" }, {}, fqdn .. "." }, { r.add, r.remove, r.name })
      local recs = stored(fqdn, "A")
      assert.are.same({ "10.0.0.1", "10.0.0.2" }, contents(recs))
      assert.are.equal(300, recs[1].ttl)
      local ids = { recs[1].id, recs[2].id }

      mark()
      r = assert(p:ensure { name = name, type = "A", values = { "10.0.0.2", "10.0.0.1" }, ttl = 300 })
      assert.are.same({ false, "none" }, { r.changed, r.action })
      assert.are.equal(0, writes(), "a no-op run wrote")

      -- one value changes: the other record stays, the changed one is rewritten in place
      mark()
      r = assert(p:ensure { name = name, type = "A", values = { "10.0.0.1", "10.0.0.3" }, ttl = 300 })
      assert.are.equal("update", r.action)
      assert.are.same({ { "10.0.0.3" }, { "10.0.0.2" }, 300, 300 }, { r.add, r.remove, r.ttl, r.old_ttl })
      recs = stored(fqdn, "A")
      assert.are.same({ "10.0.0.1", "10.0.0.3" }, contents(recs))
      assert.are.same(ids, { recs[1].id, recs[2].id })
      assert.are.equal(1, #requests("PUT"))
      assert.are.equal(0, #requests("POST"))

      -- fewer values: the extra record goes; a TTL change rewrites the kept one
      mark()
      r = assert(p:ensure { name = name, type = "A", values = { "10.0.0.3" }, ttl = 600 })
      assert.are.equal("update", r.action)
      recs = stored(fqdn, "A")
      assert.are.same({ "10.0.0.3" }, contents(recs))
      assert.are.equal(600, recs[1].ttl)
      assert.are.same({ 1, 1 }, { #requests("PUT"), #requests("DELETE") })

      local set = assert(p:query(name, "A"))
      assert.are.same({ name = fqdn .. ".", type = "A", ttl = 600, values = { "10.0.0.3" }, proxied = false },
        set)

      r = assert(p:delete { name = name, type = "A" })
      assert.are.same({ true, 1, { "10.0.0.3" } }, { r.changed, r.deleted, r.sets[1].remove })
      assert.are.same({}, stored(fqdn))
      r = assert(p:delete { name = name, type = "A" })
      assert.are.same({ false, 0 }, { r.changed, r.deleted })
      assert.is_nil(p:query(name, "A"))
    end)

    it("reads names relative to the zone or absolute", function()
      local p = provider()
      local fqdn = "n." .. SUB
      assert.are.equal(fqdn, p:fqdn("n." .. RUN))
      assert.are.equal(fqdn, p:fqdn(fqdn))
      assert.are.equal(fqdn, p:fqdn(fqdn .. "."))
      assert.are.equal(fqdn, p:fqdn("N." .. RUN:upper() .. ".TLR.TEST."))
      assert.are.equal("tlr.test", p:fqdn("@"))
      assert.are.equal("tlr.test", p:fqdn("tlr.test."))
      -- without the trailing dot a name outside the zone is relative, as Cloudflare reads it
      assert.are.equal("www.other.test.tlr.test", p:fqdn("www.other.test"))
      assert.has_error(function() p:ensure { name = "www.other.test.", type = "A", values = { "10.0.0.1" } } end,
        "bad argument to 'ensure' (name 'www.other.test.' is outside zone tlr.test)")
      assert.has_error(function() p:query("x.other.test.", "A") end)
      assert.is_nil(p:fqdn("bad..name"))
      assert.are.equal(0, #requests(), "invalid names reached the API")

      assert(p:ensure { name = fqdn .. ".", type = "TXT", values = { "absolute" } })
      local r = assert(p:ensure { name = "n." .. RUN, type = "TXT", values = { "absolute" } })
      assert.are.equal("none", r.action)
      assert.are.same({ "absolute" }, contents(stored(fqdn, "TXT")))
    end)

    it("compares normalised values: IPv6 forms and CNAME case and dots", function()
      local p = provider()
      assert(p:ensure { name = "v6." .. RUN, type = "AAAA", values = { "2001:0DB8:0:0::0001" }, ttl = 60 })
      assert.are.same({ "2001:db8::1" }, contents(stored("v6." .. SUB, "AAAA")))
      mark()
      local r = assert(p:ensure { name = "v6." .. RUN, type = "AAAA", values = { "2001:db8:0::1" }, ttl = 60 })
      assert.are.equal("none", r.action)
      assert.are.equal(0, writes())
      assert(p:ensure { name = "alias." .. RUN, type = "CNAME", values = { "Target.Example.NET." } })
      assert.are.same({ "target.example.net" }, contents(stored("alias." .. SUB, "CNAME")))
      mark()
      r = assert(p:ensure { name = "alias." .. RUN, type = "CNAME", values = { "target.example.net" } })
      assert.are.equal("none", r.action)
      assert.are.same({ "target.example.net." }, assert(p:query("alias." .. RUN, "CNAME")).values)
      assert.are.equal(0, writes())
      assert.are.equal("2001:db8::1:0:0:1", cloudflare.ipv6("2001:db8:0:0:1:0:0:1"))
      assert.are.equal("::ffff:c000:280", cloudflare.ipv6("::ffff:192.0.2.128"))
      assert.are.equal("::", cloudflare.ipv6("0:0:0:0:0:0:0:0"))
      assert.is_nil(cloudflare.ipv6("1::2::3"))
      assert.is_nil(cloudflare.ipv6("12345::"))
    end)

    it("replaces a CNAME by A records and back", function()
      local p = provider()
      local name, fqdn = "flip." .. RUN, "flip." .. SUB
      assert(p:ensure { name = name, type = "CNAME", values = { "a.example.net" } })
      local cname_id = stored(fqdn)[1].id
      local r = assert(p:ensure { name = name, type = "A", values = { "10.0.0.5", "10.0.0.6" } })
      assert.are.equal("replace", r.action)
      local recs = stored(fqdn)
      assert.are.same({ "10.0.0.5", "10.0.0.6" }, contents(recs))
      assert.are.equal(cname_id, (recs[1].id == cname_id and recs[1] or recs[2]).id) -- rewritten in place
      r = assert(p:ensure { name = name, type = "CNAME", values = { "b.example.net" } })
      assert.are.equal("replace", r.action)
      recs = stored(fqdn)
      assert.are.equal(1, #recs)
      assert.are.same({ "CNAME", "b.example.net" }, { recs[1].type, recs[1].content })
    end)

    it("passes Cloudflare's refusals on with their codes", function()
      local p = provider()
      -- TXT next to a CNAME: 81054
      assert(p:ensure { name = "busy." .. RUN, type = "CNAME", values = { "x.example.net" } })
      local res, msg, code = p:ensure { name = "busy." .. RUN, type = "TXT", values = { "v" } }
      assert.is_nil(res)
      assert.are.equal("EAPI", code)
      assert.matches("81054", msg)
      -- a proxied record to a private address: 9003 is a validation error
      res, msg, code = p:ensure { name = "priv." .. RUN, type = "A", values = { "10.1.2.3" }, proxied = true }
      assert.is_nil(res)
      assert.are.equal("EINVAL", code)
      assert.matches("not allowed for a proxied record", msg)
      -- checked before anything is sent, raising like every tlr DNS provider:
      -- bad values, bad TTLs, two CNAME targets, an empty set, a bad set in a list
      mark()
      for _, spec in ipairs {
        { type = "A", values = { "10.0.0.256" } }, { type = "A", values = { "10.0.0.1" }, ttl = 30 },
        { type = "AAAA", values = { "10.0.0.1" } }, { type = "CNAME", values = { "a.test", "b.test" } },
        { type = "CNAME", values = { "192.0.2.1" } }, { type = "A", values = {} },
      } do
        spec.name = "bad." .. RUN
        assert.has_error(function() p:ensure(spec) end)
      end
      assert.has_error(function()
        p:ensure { { name = "ok." .. RUN, type = "A", values = { "10.0.0.1" } },
          { name = "bad." .. RUN, type = "A", values = { "x" } } }
      end)
      assert.are.equal(0, #requests())
      assert.has_error(function() p:ensure { name = "x", type = "TXT", values = { "v" }, proxied = true } end)
      assert.has_error(function() p:ensure { name = "x", type = "MX", values = { "10 mx.test" } } end)
      assert.has_error(function() p:ensure { name = "x", type = "A", value = "10.0.0.1" } end)
      assert.has_error(function() cloudflare.new { token = "t", zone = "tlr.test", zone_name = "x" } end)
    end)

    it("keeps proxied records at automatic TTL without rewriting them on every run", function()
      local p = provider()
      local name = "edge." .. RUN
      local r = assert(p:ensure { name = name, type = "A", values = { "198.51.100.7" }, ttl = 300, proxied = true })
      assert.are.equal("create", r.action)
      local rec = stored("edge." .. SUB)[1]
      assert.are.same({ true, 1, true }, { rec.proxied, rec.ttl, rec.proxiable })
      mark()
      r = assert(p:ensure { name = name, type = "A", values = { "198.51.100.7" }, ttl = 300, proxied = true })
      assert.are.equal("none", r.action)
      -- not saying `proxied` leaves it as it is, also through a content change
      r = assert(p:ensure { name = name, type = "A", values = { "198.51.100.8" }, ttl = 300 })
      assert.are.equal("update", r.action)
      rec = stored("edge." .. SUB)[1]
      assert.are.same({ "198.51.100.8", true }, { rec.content, rec.proxied })
      r = assert(p:ensure { name = name, type = "A", values = { "198.51.100.8" }, proxied = false, ttl = 120 })
      assert.are.equal("update", r.action)
      rec = stored("edge." .. SUB)[1]
      assert.are.same({ false, 120 }, { rec.proxied, rec.ttl })
    end)

    it("plans without writing in dry-run mode", function()
      local p = provider()
      local r = assert(p:ensure({ name = "dry." .. RUN, type = "A", values = { "10.0.0.9" } }, { dry_run = true }))
      assert.are.same({ true, "create" }, { r.changed, r.action })
      assert.are.same({ op = "create", type = "A", content = "10.0.0.9" }, r.changes[1])
      assert.are.equal(0, writes())
      assert.are.same({}, stored("dry." .. SUB))
    end)

    it("takes a list of sets, as the RFC 2136 provider does", function()
      local p = provider()
      local sets = { { name = "l1." .. RUN, type = "A", values = { "10.0.1.1" } },
        { name = "l2." .. RUN, type = "TXT", values = { "hello world" }, ttl = 120 } }
      local r = assert(p:ensure(sets))
      assert.are.same({ true, "update", 2 }, { r.changed, r.action, #r.sets })
      assert.are.same({ "create", "create" }, { r.sets[1].action, r.sets[2].action })
      assert.are.same({ "l1." .. SUB .. ".", { "hello world" } }, { r.sets[1].name, r.sets[2].add })
      r = assert(p:ensure(sets))
      assert.are.same({ false, "none" }, { r.changed, r.action })
      r = assert(p:delete(sets))
      assert.are.same({ true, 2 }, { r.changed, r.deleted })
      assert.are.same({}, stored("l1." .. SUB))
    end)

    it("walks every page of a zone with more records than a page", function()
      local recs = {}
      for i = 1, 230 do
        recs[i] = { type = "A", name = string.format("h%03d.page.%s", i, SUB), content = "10.9." .. (i // 200) .. "." .. (i % 200) }
      end
      lab:control("POST", "/cloudflare/records", { records = recs })
      mark()
      local p = provider { zone_id = env.CLOUDFLARE_ZONE_ID }
      local sets = assert(p:records())
      local total = 0
      for _, z in ipairs(lab:control("GET", "/cloudflare/state").zones) do
        if z.name == "tlr.test" then total = #z.records end
      end
      assert.is_true(total >= 230)
      local ours, values = 0, 0
      for _, s in ipairs(sets) do
        values = values + #s.values
        if s.name:match("^h%d%d%d%.page%." .. RUN:gsub("%p", "%%%0")) then ours = ours + 1 end
      end
      assert.are.equal(230, ours)
      assert.are.equal(total, values) -- every record of the zone, each once
      local pages = {}
      for _, e in ipairs(requests("GET")) do pages[#pages + 1] = tonumber(e.params.page) end
      assert.are.equal(math.ceil(total / 100), #pages)
      assert.are.same({ 1, 2, 3 }, { pages[1], pages[2], pages[3] })
      assert.are.equal("100", requests("GET")[1].params.per_page)
      lab:control("DELETE", "/cloudflare/records?suffix=page." .. SUB)
    end)

    it("serialises concurrent ensures of one name", function()
      local p = provider()
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = sched.spawn("ensure" .. i, function()
          return assert(p:ensure { name = "race." .. RUN, type = "A", values = { "10.0.0.7" } })
        end)
      end
      local results = sched.all(tasks)
      local actions = {}
      for i, r in ipairs(results) do actions[i] = r.action end
      table.sort(actions)
      assert.are.same({ "create", "none", "none" }, actions)
      assert.are.equal(1, #stored("race." .. SUB))
    end)
  end)

  describe("failures", function()
    it("waits out a 429 with Retry-After, then succeeds", function()
      local p = provider()
      assert(p:zone_id())
      fault { method = "GET", path = "/zones/*/dns_records", status = 429, count = 1 }
      mark()
      local t0 = sched.now()
      assert.is_nil(select(2, p:query("slow." .. RUN, "A")))
      assert.is_true(sched.now() - t0 >= 0.95, "did not wait for Retry-After")
      local list = requests("GET")
      assert.are.same({ 429, 200 }, { list[1].status, list[2].status })
      assert.are.same({ 971 }, list[1].codes)
      assert.are.equal(1, p.stats.retries)
    end)

    it("gives up when Retry-After exceeds the retry budget", function()
      local p = provider { retry_budget = 0.5 }
      assert(p:zone_id())
      fault { method = "GET", path = "/zones/*/dns_records", status = 429, count = 1 }
      local t0 = sched.now()
      local res, msg, code = p:query("slow." .. RUN, "A")
      assert.is_nil(res)
      assert.are.equal("EAPI", code)
      assert.matches("429", msg)
      assert.matches("budget", msg)
      assert.is_true(sched.now() - t0 < 0.5, "slept although the budget could not cover it")
    end)

    it("stays under the fake's rate limiter by honouring its Retry-After", function()
      lab:control("PATCH", "/profile", { cloudflare = { rate_limit = 3, rate_window = 2 } })
      local p = provider { zone_id = env.CLOUDFLARE_ZONE_ID }
      for i = 1, 5 do assert.is_nil(select(2, p:query("rl" .. i .. "." .. RUN, "A"))) end
      local limited, ok = 0, 0
      for _, e in ipairs(requests("GET")) do
        if e.status == 429 then limited = limited + 1 elseif e.status == 200 then ok = ok + 1 end
      end
      assert.are.equal(5, ok)
      assert.is_true(limited >= 1)
      assert.are.equal(limited, p.stats.retries)
    end)

    it("treats an HTTP 200 with success:false as an error with Cloudflare's messages", function()
      local p = provider()
      assert(p:zone_id())
      fault { method = "GET", path = "/zones/*/dns_records", status = 200, count = 1, body = {
        success = false, errors = { { code = 1001, message = "DNS backend hiccup" } }, messages = {},
        result = json.null } }
      local res, msg, code = p:query("x." .. RUN, "A")
      assert.is_nil(res)
      assert.are.equal("EAPI", code)
      assert.matches("success is false", msg)
      assert.matches("1001 DNS backend hiccup", msg)
    end)

    it("retries a 5xx on reads but never repeats a POST", function()
      local p = provider()
      assert(p:zone_id())
      fault { method = "GET", path = "/zones/*/dns_records", status = 502, count = 1 }
      assert.is_nil(select(2, p:query("x." .. RUN, "A")))
      fault { method = "POST", path = "/zones/*/dns_records", status = 500, count = 1 }
      mark()
      local res, msg, code = p:ensure { name = "once." .. RUN, type = "A", values = { "10.0.0.8" } }
      assert.is_nil(res)
      assert.are.equal("EAPI", code)
      assert.matches("500", msg)
      assert.are.equal(1, #requests("POST"))
      assert(p:ensure { name = "once." .. RUN, type = "A", values = { "10.0.0.8" } }) -- the next run converges
      assert.are.equal(1, #stored("once." .. SUB))
    end)

    it("reports a missing zone as ENOTFOUND", function()
      local p = provider { zone = "missing.test" }
      local res, msg, code = p:query("x", "A")
      assert.is_nil(res)
      assert.are.equal("ENOTFOUND", code)
      assert.matches("missing.test", msg)
    end)

    it("reports bad tokens as EAUTH, a read-only one as EFORBIDDEN, and never shows a token", function()
      local out = assert(io.tmpfile())
      log.configure { out = out, level = "debug" }
      local unknown = ("Zz9_-"):rep(8) -- well-formed, unknown
      local results = {}
      for _, token in ipairs { unknown, "short-token", env.CLOUDFLARE_TOKEN_READ } do
        local p = provider { token = token }
        local r = table.pack(p:query("x." .. RUN, "A"))
        if token == env.CLOUDFLARE_TOKEN_READ then
          assert.is_nil(r[2]) -- reading is allowed
          r = table.pack(p:ensure { name = "ro." .. RUN, type = "A", values = { "10.0.0.1" } })
        end
        results[#results + 1] = r
      end
      -- a retried request logs at debug level: the token must not show there either
      local p = provider()
      assert(p:zone_id())
      fault { method = "GET", path = "/zones/*/dns_records", status = 503, count = 1 }
      assert.is_nil(select(2, p:query("x." .. RUN, "A")))
      log.configure { out = io.stderr, level = "info" }
      out:seek("set")
      local logged = out:read("a")
      out:close()

      assert.are.same({ nil, "EAUTH" }, { results[1][1], results[1][3] })
      assert.matches("9109 Invalid access token", results[1][2])
      assert.are.equal("EAUTH", results[2][3])
      assert.matches("6111 Invalid format for Authorization header", results[2][2])
      assert.are.equal("EFORBIDDEN", results[3][3])
      assert.matches("10000 Authentication error", results[3][2])
      assert.matches("retrying", logged)
      -- every token a provider was made with is masked in anything tlr prints
      for _, token in ipairs { unknown, "short-token", env.CLOUDFLARE_TOKEN_READ } do
        assert.are.equal("token <redacted>.", log.mask("token " .. token .. "."))
      end
      local lab_log = json.encode(requests())
      for _, token in ipairs { unknown, "short-token", env.CLOUDFLARE_TOKEN_READ, env.CLOUDFLARE_TOKEN } do
        for _, r in ipairs(results) do
          assert.is_nil(r[2]:find(token, 1, true), "a token leaked into an error")
        end
        assert.is_nil(logged:find(token, 1, true), "a token leaked into the log")
        assert.is_nil(lab_log:find(token, 1, true), "a token shows in the fake's request log")
      end
    end)
  end)

  describe("the fake", function()
    local zone_path

    before_each(function() zone_path = "/zones/" .. env.CLOUDFLARE_ZONE_ID .. "/dns_records" end)

    it("answers auth failures with Cloudflare's status codes and envelopes", function()
      local body, r = raw("GET", "/zones", { headers = {} })
      assert.are.same({ 400, 9106 }, { r.status, body.errors[1].code })
      assert.is_nil(body.messages) -- this one comes without messages and result
      body, r = raw("GET", "/zones", { headers = { Authorization = "Bearer " .. ("a"):rep(40) } })
      assert.are.same({ 403, 9109, json.null }, { r.status, body.errors[1].code, body.result })
      body, r = raw("GET", zone_path, { headers = { Authorization = "Bearer " .. ("a"):rep(40) } })
      assert.are.same({ 401, 10000 }, { r.status, body.errors[1].code })
      body, r = raw("GET", "/user/tokens/verify", { headers = { Authorization = "Bearer " .. ("a"):rep(40) } })
      assert.are.same({ 401, 1000 }, { r.status, body.errors[1].code })
      body, r = raw("GET", "/user/tokens/verify")
      assert.are.same({ 200, true, "active" }, { r.status, body.success, body.result.status })
      body, r = raw("GET", "/zones", { headers = { ["X-Auth-Key"] = "k", ["X-Auth-Email"] = "e@x" } })
      assert.are.same({ 400, 6003, 6103 }, { r.status, body.errors[1].code, body.errors[1].error_chain[1].code })
    end)

    it("validates records like Cloudflare", function()
      local function post(rec)
        local body, r = raw("POST", zone_path, { body = rec })
        local e = body.errors[1]
        return r.status, e and (e.error_chain and e.error_chain[1].code or e.code)
      end
      local n = "val." .. SUB
      assert.are.same({ 400, 9005 }, { post { type = "A", name = n, content = "10.0.0" } })
      assert.are.same({ 400, 9006 }, { post { type = "AAAA", name = n, content = "10.0.0.1" } })
      assert.are.same({ 400, 9007 }, { post { type = "CNAME", name = n, content = "10.0.0.1" } })
      assert.are.same({ 400, 9021 }, { post { type = "A", name = n, content = "10.0.0.1", ttl = 30 } })
      assert.are.same({ 400, 9004 }, { post { type = "TXT", name = n, content = "x", proxied = true } })
      assert.are.same({ 400, 9000 }, { post { type = "A", name = "", content = "10.0.0.1" } })
      assert.are.same({ 400, 9300 }, { post { type = "A", name = n, content = "10.0.0.1", tags = { "a:b" } } })
      assert.are.same({ 200 }, { post { type = "A", name = "val." .. RUN, content = "10.0.0.1" } })
      assert.are.same({ 400, 81058 }, { post { type = "A", name = n, content = "10.0.0.1", ttl = 120 } })
      assert.are.same({ 400, 81053 }, { post { type = "CNAME", name = n, content = "t.example.net" } })
      local body = raw("GET", zone_path, { query = { name = n } })
      assert.are.equal(n, body.result[1].name) -- the relative name was made absolute
      local id = body.result[1].id
      body = raw("GET", zone_path .. "/" .. id)
      assert.are.same({ "10.0.0.1", 1, false }, { body.result.content, body.result.ttl, body.result.proxiable })
      local _, r = raw("PATCH", zone_path .. "/" .. id, { body = { ttl = 120 } })
      assert.are.equal(200, r.status)
      body = raw("GET", zone_path .. "/" .. id)
      assert.are.same({ "10.0.0.1", 120 }, { body.result.content, body.result.ttl })
      body, r = raw("DELETE", zone_path .. "/" .. id)
      assert.are.same({ 200, id }, { r.status, body.result.id })
      body, r = raw("GET", zone_path .. "/" .. id)
      assert.are.same({ 404, 81044 }, { r.status, body.errors[1].code })
      body, r = raw("GET", "/zones/not-an-id/dns_records")
      assert.are.same({ 400, 7003, 7000 }, { r.status, body.errors[1].code, body.errors[2].code })
    end)

    it("paginates with result_info and clamps per_page", function()
      local body = raw("GET", zone_path, { query = { name = "none." .. SUB } })
      assert.are.same({ page = 1, per_page = 100, count = 0, total_count = 0, total_pages = 1 }, body.result_info)
      body = raw("GET", "/zones", { query = { per_page = 1 } })
      assert.are.equal(5, body.result_info.per_page)
      assert.is_true(body.result_info.total_count >= 2)
    end)

    -- certbot's Cloudflare DNS-01 client (Debian's python3-certbot-dns-cloudflare on
    -- python3-cloudflare, Cloudflare's binding), unchanged, pointed at the lab
    it("serves certbot's Cloudflare client unchanged", function()
      local probe, status = H.capture("/usr/bin/python3 -c 'import certbot_dns_cloudflare, CloudFlare'")
      assert.are.equal(0, status, "python3-certbot-dns-cloudflare is missing (apt-get install "
        .. "python3-certbot-dns-cloudflare): " .. probe)
      local dir = H.tmpdir()
      H.write(dir .. "/check.py", CERTBOT_CHECK)
      local name = "cb." .. SUB
      local out, rc = H.capture(string.format(
        "CLOUDFLARE_API_URL='%s' REQUESTS_CA_BUNDLE='%s' CF_TOKEN='%s' /usr/bin/python3 %s/check.py %s",
        env.CLOUDFLARE_API, env.CLOUDFLARE_CA_FILE, env.CLOUDFLARE_TOKEN, dir, name))
      os.execute("rm -rf '" .. dir .. "'")
      assert.are.equal(0, rc, out)
      local r = json.decode(out:match("{.*}"))
      assert.are.same({ { name = "_acme-challenge." .. name, type = "TXT", content = "challenge-1", ttl = 120,
        proxied = false } }, r.added)
      assert.are.equal(0, r.after_delete)
      assert.matches("9109 Invalid access token.*Did you enter a valid Cloudflare Token", r.bad_token)
      assert.are.same({ 9005, "Content for A record must be a valid IPv4 address." }, r.invalid)
      -- its zone search walked up the name with per_page=1 (clamped by the API)
      local guesses = {}
      for _, e in ipairs(requests("GET")) do
        if e.path == "/zones" and e.params.per_page == "1" then guesses[#guesses + 1] = e.params.name end
      end
      assert.are.same({ name, SUB, "tlr.test" }, { guesses[1], guesses[2], guesses[3] })
    end)

    it("logs requests without the token", function()
      raw("GET", "/zones", { query = { name = "tlr.test" } })
      local e = requests("GET")[1]
      assert.are.same({ "/zones", "tlr.test", "token", "edit", 200 }, { e.path, e.params.name, e.auth, e.token, e.status })
      assert.is_nil(json.encode(e):find(env.CLOUDFLARE_TOKEN, 1, true))
    end)
  end)
end)
