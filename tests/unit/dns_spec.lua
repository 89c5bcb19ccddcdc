-- tlr.dns wire format (modules/dns.c), TSIG (modules/tsig.c), sockets
-- (modules/net.c) and the transport in lua/tlr/dns/init.lua, against
-- fixed vectors: queries that dig signed and replies that BIND 9.18 signed
-- (captured once from the real tools), and small fake servers on loopback.
local core = require "tlr.dns.core"
local tsig = require "tlr.tsig.core"
local net = require "tlr.net.core"
local dns = require "tlr.dns"
local crypto = require "tlr.crypto"
local sched = require "tlr.sched"

local hex, unhex = crypto.hex_encode, function(s) return assert(crypto.hex_decode(s)) end

-- ========== vectors ==========

-- `dig +nocookie -y ALG:vector-key.:SECRET node1.lab.test A` (BIND 9.18.49),
-- signed at time 1795702005 with fudge 300.
local DIG_SECRET = "tlr test vector key 0123456789abcdef"
local DIG_TIME = 1795702005
local DIG = {
  ["hmac-md5"] = "cfdf01200001000000000002056e6f646531036c61620474657374000001000100002904d00000000000000a766563746f722d6b65790000fa00ff00000000003a08686d61632d6d6435077369672d616c670372656703696e740000006b083cf5012c00100450062b0c522c0ab1752c08a7b9b368cfdf00000000",
  ["hmac-sha1"] = "0c7201200001000000000002056e6f646531036c61620474657374000001000100002904d00000000000000a766563746f722d6b65790000fa00ff00000000002f09686d61632d736861310000006b083cf5012c0014b6bafd08e97136a4191708ba958de1ce81be207f0c7200000000",
  ["hmac-sha256"] = "9c5801200001000000000002056e6f646531036c61620474657374000001000100002904d00000000000000a766563746f722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b083cf5012c002090e3ecd4ee65e684341e5c5f61a24b915c9ab6cbf8e179cdbc8a990b7d0b726f9c5800000000",
  ["hmac-sha512"] = "d3fd01200001000000000002056e6f646531036c61620474657374000001000100002904d00000000000000a766563746f722d6b65790000fa00ff00000000005d0b686d61632d7368613531320000006b083cf5012c0040fe5eca0452f12e501084a3c3d8bd71fa507a3357a6e7e8e17e71c60b0877778a93fdc31d59e1e7413996ee77a7d46f3fa0f6813c4531fd712a726511ecf7a292d3fd00000000",
}

-- BIND's replies to a tlr-signed query (id 0x4242, ns.lab.test A, time
-- 1795702010) of a throwaway lab key: correct key, wrong secret, unknown key.
local BIND_SECRET = "Dz72B3sEJLOskiNT9X1kq/hDxD/qlWbGW5ezYqmey8k="
local BIND_TIME = 1795702010
local BIND_GOOD_MAC = "191ce772f9353be10f919c77fc0b1879474f444d3cf401864ab6e7f5fe7dfe5b"
local BIND_GOOD = "424284000001000100010001026e73036c616204746573740000010001c00c000100010000003c00047f5b3535c00f000200010000003c0002c00c07746c722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b083cfa012c00206b17c0e3e436f65a39e8cedc128d91226951c0d477cc2e8e5cd7b31ef81a5da2424200000000"
local BIND_BADSIG = "424280090001000000000001026e73036c61620474657374000001000107746c722d6b65790000fa00ff00000000001d0b686d61632d7368613235360000006b083cfa012c0000424200100000"
local BIND_BADKEY = "424280090001000000000001026e73036c6162047465737400000100010b6e6f2d737563682d6b65790000fa00ff00000000001d0b686d61632d7368613235360000006b083cfa012c0000424200110000"

local function dig_key(alg)
  return { name = "vector-key.", algorithm = alg, secret = DIG_SECRET }
end

local function bind_key(name)
  return { name = name or "tlr-key", algorithm = "hmac-sha256", secret = crypto.base64_decode(BIND_SECRET) }
end

-- The message without its last (TSIG) record: ARCOUNT - 1, cut at the record.
local function strip_tsig(wire, tsig_len)
  local body = wire:sub(1, #wire - tsig_len)
  local ar = string.unpack(">I2", body, 11)
  return body:sub(1, 10) .. string.pack(">I2", ar - 1) .. body:sub(13)
end

describe("tlr.dns wire format", function()
  it("encodes a query with EDNS byte for byte", function()
    local w = core.encode { id = 0x1234, rd = true, question = { { name = "node1.lab.test", type = "A" } },
      edns = { udp_size = 1232 } }
    assert.are.equal("123401000001000000000001" .. "056e6f646531036c6162047465737400" .. "00010001"
      .. "00" .. "0029" .. "04d0" .. "00000000" .. "0000", hex(w))
  end)

  it("decodes BIND's reply, following compression pointers", function()
    local m = assert(core.decode(unhex(BIND_GOOD)))
    assert.are.equal(0x4242, m.id)
    assert.is_true(m.qr and m.aa)
    assert.are.equal("NOERROR", m.rcode)
    assert.are.same({ name = "ns.lab.test.", type = "A", class = "IN" }, m.question[1])
    assert.are.same({ name = "ns.lab.test.", type = "A", class = "IN", ttl = 60, data = "127.91.53.53" },
      m.answer[1])
    assert.are.same({ name = "lab.test.", type = "NS", class = "IN", ttl = 60, data = "ns.lab.test." },
      m.authority[1])
    assert.are.equal(0, #m.additional) -- the TSIG is taken out
    assert.are.equal("tlr-key.", m.tsig.name)
    assert.are.equal("hmac-sha256.", m.tsig.algorithm)
    assert.are.equal(BIND_TIME, m.tsig.time)
    assert.are.equal(300, m.tsig.fudge)
    assert.are.equal(32, #m.tsig.mac)
    assert.are.equal("NOERROR", m.tsig.error)
  end)

  it("compresses names on encode and reads them back", function()
    local upd = { opcode = "UPDATE", question = { { name = "lab.test", type = "SOA" } }, authority = {} }
    for i = 1, 20 do
      upd.authority[i] = { name = "host" .. i .. ".lab.test", type = "A", ttl = 60, data = "10.0.0." .. i }
    end
    local small = core.encode(upd)
    upd.compress = false
    local big = core.encode(upd)
    assert.are.equal(#big - 20 * 8, #small) -- "lab.test" (10 bytes) became a 2-byte pointer
    assert.is_truthy(small:find("\xc0\x0c", 1, true))
    local m = assert(core.decode(small))
    assert.are.equal("UPDATE", m.opcode)
    assert.are.equal("host20.lab.test.", m.authority[20].name)
    assert.are.equal("10.0.0.20", m.authority[20].data)
    assert.are.same(m, assert(core.decode(big)))
  end)

  it("rejects malformed messages with EPROTO", function()
    local cases = {
      "\0\1\0\0\0\1\0\0\0\0\0\0\3abc",                       -- name runs off the end
      "\0\1\0\0\0\1\0\0\0\0\0\0\xc0\x0c\0\1\0\1",            -- pointer to itself
      "\0\1\0\0\0\1\0\0\0\0\0\0\xc0\x20\0\1\0\1",            -- forward pointer
      "\0\1\0\0\0\1\0\0\0\0\0\0\0\0\1\0\1xx",                -- trailing bytes
      "\0\1\0\0\0\0\0\1\0\0\0\0\0\0\1\0\1\0\0\0\0\0\9\1\2",  -- rdata cut short
      "\0\1\0\0\0\0\0\1\0\0\0\0\0\0\1\0\1\0\0\0\0\0\3\1\2\3", -- A with 3 bytes
      "short",
    }
    for _, w in ipairs(cases) do
      local m, msg, code = core.decode(w)
      assert.is_nil(m)
      assert.are.equal("EPROTO", code, msg)
    end
  end)

  it("never raises or overreads on mangled replies", function()
    math.randomseed(42)
    local seeds = { unhex(BIND_GOOD), unhex(BIND_BADSIG), unhex(DIG["hmac-sha512"]) }
    local key = bind_key()
    for round = 1, 3000 do
      local w = seeds[round % #seeds + 1]
      local bytes = { w:byte(1, -1) }
      for _ = 1, math.random(1, 4) do bytes[math.random(1, #bytes)] = math.random(0, 255) end
      local cut = math.random(1, 8) == 1 and math.random(0, #bytes) or #bytes
      local mangled = string.char(table.unpack(bytes, 1, cut))
      local m, msg, code = core.decode(mangled)
      assert(m or code == "EPROTO", msg)
      local ok, info = tsig.verify(mangled, key, { now = BIND_TIME })
      assert(ok ~= nil or info ~= nil)
    end
  end)

  it("handles names: escapes, case, limits", function()
    assert.are.equal("a\\.b.lab.test.", (core.name("A\\.b.LAB.test")))
    assert.are.equal("\\032x.", (core.name("\\032x")))
    assert.are.equal(".", (core.name(".")))
    local m = assert(core.decode(core.encode { question = { { name = "a\\.b.lab.test" } } }))
    assert.are.equal("a\\.b.lab.test.", m.question[1].name)
    assert.are.equal("EINVAL", select(3, core.name(("x"):rep(64) .. ".test")))
    assert.are.equal("EINVAL", select(3, core.name(("abcdefg."):rep(32) .. "test")))
    assert.are.equal("EINVAL", select(3, core.name("a..b")))
    assert.has_error(function() core.encode { question = { { name = "a..b" } } } end)
  end)

  it("converts record data both ways", function()
    local function roundtrip(t, text) return (core.rdata_text(t, assert(core.rdata(t, text)))) end
    assert.are.equal("0a00000b", hex(core.rdata("A", "10.0.0.11")))
    assert.are.equal("2001:db8::1", roundtrip("AAAA", "2001:DB8:0:0::0001"))
    assert.are.equal("10 mail.lab.test.", roundtrip("MX", "10   mail.lab.test"))
    assert.are.equal("0 5 443 web.lab.test.", roundtrip("SRV", "0 5 443 web.lab.test."))
    assert.are.equal("ns. admin. 1 2 3 4 5", roundtrip("SOA", "ns admin 1 2 3 4 5"))
    assert.are.equal("\\# 3 abcdef", roundtrip("TYPE65280", "\\# 3 ABCDEF"))
    -- TXT: one value is split into 255-byte character-strings; a list is kept
    local long = ("x"):rep(600)
    local txt, strings = core.rdata_text("TXT", assert(core.rdata("TXT", long)))
    assert.are.equal(long, txt)
    assert.are.same({ ("x"):rep(255), ("x"):rep(255), ("x"):rep(90) }, strings)
    assert.are.equal("\2ab\1c", core.rdata("TXT", { "ab", "c" }))
    assert.are.equal("\0", core.rdata("TXT", ""))
    for t, bad in pairs { A = "10.0.0.256", AAAA = "1::2::3", MX = "mail", SRV = "1 2 x y",
      CNAME = "a..b", TYPE99 = "\\# 2 abc" } do
      local ok, msg, code = core.rdata(t, bad)
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.is_truthy(msg:find(t, 1, true))
    end
  end)

  it("encodes UPDATE deletes and prerequisites with empty data", function()
    local w = core.encode { opcode = "UPDATE", question = { { name = "lab.test", type = "SOA" } },
      answer = { { name = "a.lab.test", type = "A", class = "NONE" } },
      authority = { { name = "a.lab.test", type = "A", class = "ANY" },
        { name = "a.lab.test", type = "A", ttl = 300, data = "10.0.0.1" } } }
    local m = assert(core.decode(w))
    assert.are.same({ name = "a.lab.test.", type = "A", class = "NONE", ttl = 0 }, m.answer[1])
    assert.are.same({ name = "a.lab.test.", type = "A", class = "ANY", ttl = 0 }, m.authority[1])
    assert.are.equal("10.0.0.1", m.authority[2].data)
    assert.are.equal(5, (w:byte(3) >> 3) & 15) -- opcode UPDATE in the header
  end)

  it("reads EDNS and extended rcodes", function()
    local w = core.encode { qr = true, rcode = "BADVERS", question = { { name = "x" } },
      edns = { udp_size = 4096, ["do"] = true } }
    local m = assert(core.decode(w))
    assert.are.equal("BADVERS", m.rcode)
    assert.are.same({ udp_size = 4096, version = 0, ["do"] = true }, m.edns)
    assert.has_error(function() core.encode { rcode = "BADVERS" } end)
  end)
end)

describe("tlr.dns TSIG", function()
  for alg, vector in pairs(DIG) do
    it("verifies and reproduces dig's " .. alg .. " signature", function()
      local wire = unhex(vector)
      local ok, info = tsig.verify(wire, dig_key(alg), { now = DIG_TIME + 10 })
      assert.is_true(ok, info.status)
      assert.are.equal(DIG_TIME, info.time)
      -- signing the unsigned message again gives dig's bytes exactly
      local _, wire_name = tsig.canonical(alg)
      local tsig_len = (1 + #"vector-key" + 1) + 10 + (#wire_name + 1) + 16 + #info.mac
      local again = tsig.sign(strip_tsig(wire, tsig_len), dig_key(alg), { time = DIG_TIME })
      assert.are.equal(vector, hex(again))
    end)
  end

  it("computes the MAC over the documented fields (independent HMAC)", function()
    local key = bind_key()
    local msg = core.encode { id = 7, question = { { name = "x.lab.test", type = "A" } } }
    local _, mac = tsig.sign(msg, key, { time = 1700000000, fudge = 300 })
    local vars = "\7tlr-key\0" .. string.pack(">I2I4", 255, 0) .. "\11hmac-sha256\0"
      .. string.pack(">I2I4I2I2I2", 0, 1700000000, 300, 0, 0)
    assert.are.equal(hex(crypto.hmac("sha256", key.secret, msg .. vars)), hex(mac))
    -- a reply's MAC starts with the request MAC and its length
    local reply = core.encode { id = 7, qr = true, question = { { name = "x.lab.test", type = "A" } } }
    local _, rmac = tsig.sign(reply, key, { time = 1700000000, request_mac = mac })
    assert.are.equal(hex(crypto.hmac("sha256", key.secret, string.pack(">s2", mac) .. reply .. vars)),
      hex(rmac))
  end)

  it("verifies BIND's signed reply against the request MAC", function()
    local ok, info = tsig.verify(unhex(BIND_GOOD), bind_key(),
      { request_mac = unhex(BIND_GOOD_MAC), now = BIND_TIME })
    assert.is_true(ok, info.status)
    ok, info = tsig.verify(unhex(BIND_GOOD), bind_key(), { request_mac = ("\0"):rep(32), now = BIND_TIME })
    assert.is_false(ok)
    assert.are.equal("BADSIG", info.status)
    assert.are.equal("client", info.by)
  end)

  it("reports BIND's BADSIG and BADKEY answers as the server's verdict", function()
    local m = assert(core.decode(unhex(BIND_BADSIG)))
    assert.are.equal("NOTAUTH", m.rcode)
    assert.are.equal("BADSIG", m.tsig.error)
    local ok, info = tsig.verify(unhex(BIND_BADSIG), bind_key(), { now = BIND_TIME })
    assert.is_false(ok)
    assert.are.same({ "BADSIG", "server" }, { info.status, info.by })
    ok, info = tsig.verify(unhex(BIND_BADKEY), bind_key("no-such-key"), { now = BIND_TIME })
    assert.is_false(ok)
    assert.are.same({ "BADKEY", "server" }, { info.status, info.by })
  end)

  it("rejects tampering, a stale time, another key and short MACs", function()
    local wire = unhex(DIG["hmac-sha256"])
    local key = dig_key("hmac-sha256")
    local bad = wire:sub(1, 20) .. string.char(wire:byte(21) ~ 1) .. wire:sub(22)
    assert.are.equal("BADSIG", select(2, tsig.verify(bad, key, { now = DIG_TIME })).status)
    assert.are.equal("BADTIME", select(2, tsig.verify(wire, key, { now = DIG_TIME + 301 })).status)
    assert.is_true((tsig.verify(wire, key, { now = DIG_TIME - 300 })))
    assert.are.equal("BADKEY", select(2, tsig.verify(wire, { name = "other", algorithm = "hmac-sha256",
      secret = DIG_SECRET }, { now = DIG_TIME })).status)
    assert.are.equal("BADKEY", select(2, tsig.verify(wire, dig_key("hmac-sha512"), { now = DIG_TIME })).status)
    assert.are.equal("UNSIGNED", select(2, tsig.verify(core.encode { id = 1 }, key)).status)
    assert.are.equal("BADSIG", select(2, tsig.verify(wire, { name = "vector-key", algorithm = "hmac-sha256",
      secret = "wrong" }, { now = DIG_TIME })).status)
  end)

  it("chains the MACs of a multi-message transfer", function()
    local key = bind_key()
    local q = core.encode { id = 9, question = { { name = "lab.test", type = "AXFR" } } }
    local _, qmac = tsig.sign(q, key, { time = 1700000000 })
    local m1 = core.encode { id = 9, qr = true, answer = { { name = "a.lab.test", type = "A", data = "10.0.0.1" } } }
    local m2 = core.encode { id = 9, qr = true, answer = { { name = "b.lab.test", type = "A", data = "10.0.0.2" } } }
    local m3 = core.encode { id = 9, qr = true, answer = { { name = "c.lab.test", type = "A", data = "10.0.0.3" } } }
    local s1, mac1 = tsig.sign(m1, key, { time = 1700000001, request_mac = qmac })
    -- m2 goes unsigned; m3's MAC covers mac1, m2 and m3 with the timers only
    local s3 = tsig.sign(m3, key, { time = 1700000002, request_mac = mac1, prior = m2, timers_only = true })
    local ok, info = tsig.verify(s1, key, { request_mac = qmac, now = 1700000001 })
    assert.is_true(ok)
    assert.is_true((tsig.verify(s3, key, { request_mac = info.mac, prior = m2, timers_only = true,
      now = 1700000002 })))
    assert.is_false((tsig.verify(s3, key, { request_mac = info.mac, timers_only = true, now = 1700000002 })))
    assert.is_false((tsig.verify(s3, key, { request_mac = info.mac, prior = m2, now = 1700000002 })))
  end)

  it("knows the algorithms and rejects bad keys as programmer errors", function()
    assert.are.same({ "hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512" },
      tsig.algorithms())
    assert.are.equal("hmac-md5.sig-alg.reg.int.", select(2, tsig.canonical("HMAC-MD5")))
    assert.are.equal("hmac-sha1", (tsig.canonical("hmac-sha1.")))
    assert.has_error(function() tsig.sign("x", { name = "k", algorithm = "hmac-foo", secret = "s" }) end,
      "unknown TSIG algorithm 'hmac-foo' (hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384 or hmac-sha512)")
    assert.has_error(function() tsig.sign(("\0"):rep(12), { name = "k", algorithm = "hmac-sha1" }) end)
    assert.has_error(function() tsig.sign(("\0"):rep(12), bind_key(), { bogus = 1 }) end)
  end)
end)

describe("tlr.dns helpers", function()
  it("makes names absolute in a zone", function()
    assert.are.equal("node1.lab.test.", dns.fqdn("Node1", "lab.test"))
    assert.are.equal("lab.test.", dns.fqdn("@", "lab.test."))
    assert.are.equal("x.other.", dns.fqdn("x.other.", "lab.test"))
    assert.is_true(dns.in_zone("a.lab.test.", "lab.test."))
    assert.is_false(dns.in_zone("alab.test.", "lab.test."))
  end)

  it("normalizes values and compares sets", function()
    assert.are.equal("2001:db8::1", dns.normalize("AAAA", "2001:0DB8::1"))
    assert.are.equal("target.lab.test.", dns.normalize("CNAME", "Target.Lab.Test"))
    assert.are.equal("ab", dns.normalize("TXT", { "a", "b" }))
    assert.are.equal("EINVAL", select(3, dns.normalize("A", "x")))
    local same, add, remove = dns.diff_sets({ "1", "2", "2" }, { "2", "1" })
    assert.is_true(same)
    assert.are.same({}, add)
    same, add, remove = dns.diff_sets({ "1", "2" }, { "3", "2", "4" })
    assert.is_false(same)
    assert.are.same({ "3", "4" }, add)
    assert.are.same({ "1" }, remove)
  end)
end)

describe("tlr.dns transport", function()
  -- A fake DNS server on loopback: handler(query wire) -> reply wire or nil (silence).
  local function udp_server(handler)
    local sock = assert(net.udp_bind("127.0.0.1", 0))
    local _, port = sock:local_address()
    local srv = { port = port, seen = 0 }
    srv.task = sched.spawn("fake dns", function()
      while true do
        local data, host, from = sock:recvfrom()
        if data then
          srv.seen = srv.seen + 1
          local reply = handler(data)
          if reply then sock:sendto(reply, host, from) end
        else
          local id = sock:watch("r")
          sched.await(id)
          sock:unwatch()
        end
      end
    end)
    function srv.stop() srv.task:cancel() sock:close() end
    return srv
  end

  local function answer(query, extra)
    local q = assert(core.decode(query))
    local r = { id = q.id, qr = true, aa = true, question = q.question, answer = {} }
    for k, v in pairs(extra or {}) do r[k] = v end
    return core.encode(r)
  end

  it("exchanges over UDP and ignores replies with another id", function()
    local srv = udp_server(function(q)
      return answer(q, { id = (string.unpack(">I2", q) + 1) % 65536 })
    end)
    local q = core.encode { id = 4321, question = { { name = "x.test" } } }
    local reply, msg, code = dns.exchange("127.0.0.1", srv.port, q, { timeout = 0.2, retries = 1 })
    assert.is_nil(reply)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.are.equal(2, srv.seen) -- the first try and one retry
    srv.stop()
    srv = udp_server(function(query) return answer(query) end)
    local via
    reply, via = assert(dns.exchange("127.0.0.1", srv.port, q))
    assert.are.equal("udp", via)
    assert.are.equal(4321, core.decode(reply).id)
    srv.stop()
  end)

  it("times out after the retries against a silent server", function()
    local srv = udp_server(function() return nil end)
    local t0 = sched.now()
    local reply, msg, code = dns.exchange("127.0.0.1", srv.port, core.encode { id = 1 },
      { timeout = 0.1, retries = 2 })
    local took = sched.now() - t0
    assert.is_nil(reply)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal(3, srv.seen)
    assert.is_truthy(msg:find("no reply after 3 tries", 1, true))
    assert.is_true(took >= 0.3 and took < 1, tostring(took))
    srv.stop()
  end)

  it("reports a refused port", function()
    local sock = assert(net.udp_bind("127.0.0.1", 0))
    local _, port = sock:local_address()
    sock:close() -- nothing listens there now
    local reply, msg, code = dns.exchange("127.0.0.1", port, core.encode { id = 1 }, { timeout = 0.2, retries = 1 })
    assert.is_nil(reply)
    assert.are.equal("ECONNREFUSED", code, msg)
  end)

  it("falls back to TCP when the UDP reply is truncated", function()
    local big = {}
    for i = 1, 40 do big[i] = { name = "x.test", type = "TXT", ttl = 1, data = ("t"):rep(100) .. i } end
    local srv = udp_server(function(q) return answer(q, { tc = true }) end)
    local listener = assert(net.tcp_listen("127.0.0.1", srv.port))
    local tcp_seen = 0
    local tcp_task = sched.spawn("fake dns tcp", function()
      while true do
        local conn = listener:accept()
        if conn then
          local buf = ""
          while #buf < 2 or #buf < 2 + string.unpack(">I2", buf) do
            local data = conn:recv()
            if data then buf = buf .. data else
              local id = conn:watch("r")
              sched.await(id)
              conn:unwatch()
            end
          end
          tcp_seen = tcp_seen + 1
          local reply = string.pack(">s2", answer(buf:sub(3), { answer = big }))
          local pos = 1
          while pos <= #reply do pos = pos + conn:send(reply, pos) end
          conn:close()
        else
          local id = listener:watch("r")
          sched.await(id)
          listener:unwatch()
        end
      end
    end)
    local reply, via = assert(dns.exchange("127.0.0.1", srv.port, core.encode { id = 77, question = { { name = "x.test" } } }))
    assert.are.equal("tcp", via)
    assert.are.equal(1, srv.seen)
    assert.are.equal(1, tcp_seen)
    local m = assert(core.decode(reply))
    assert.are.equal(40, #m.answer)
    assert.is_true(#reply > 4000)
    tcp_task:cancel()
    listener:close()
    srv.stop()
  end)

  it("rejects non-numeric addresses and closes sockets idempotently", function()
    assert.has_error(function() net.udp("localhost", 53) end)
    local s = assert(net.udp("127.0.0.1", 53))
    s:close()
    s:close()
    assert.has_error(function() s:send("x") end, "attempt to use a closed socket")
  end)
end)
