-- tlr.crypto (modules/crypto.c, modules/x509.c, lua/tlr/crypto.lua), cross-checked
-- against the openssl command-line tool in both directions.
local crypto = require "tlr.crypto"
local sched = require "tlr.sched"
local tlr = require "tlr"

-- ========== helpers ==========

local tmpfiles = {}

local function tmpfile(content)
  local path = os.tmpname()
  tmpfiles[#tmpfiles + 1] = path
  if content then
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
  end
  return path
end

local readfile = require("helper").read

-- Runs a shell command; returns its combined output and whether it exited 0.
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc == 0
end

local function openssl(args)
  local out, ok = sh("openssl " .. args)
  assert(ok, "openssl " .. args .. " failed:\n" .. out)
  return out
end

local function relabel(pem, from, to)
  return (pem:gsub("BEGIN " .. from, "BEGIN " .. to):gsub("END " .. from, "END " .. to))
end

local function assert_fail(code, ok, msg, got)
  assert.is_nil(ok)
  assert.are.equal("string", type(msg))
  assert.are.equal(code, got, msg)
end

local function has(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local rsa_cache
local function rsa2048()
  rsa_cache = rsa_cache or assert(crypto.generate_key { type = "rsa", bits = 2048 })
  return rsa_cache
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

-- ========== bytes ==========

describe("tlr.crypto bytes", function()
  it("returns random bytes of the asked length, different each time", function()
    local a, b = crypto.random(32), crypto.random(32)
    assert.are.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.are.equal("", crypto.random(0))
    assert.has_error(function() crypto.random(-1) end)
  end)

  it("computes digests that match the published test vectors", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      crypto.sha256("abc", { hex = true }))
    assert.are.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
      crypto.sha512("abc", { hex = true }))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
      crypto.digest("sha1", "abc", { hex = true }))
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72",
      crypto.digest("md5", "abc", { hex = true }))
    assert.are.equal(32, #crypto.sha256("abc"))
    assert.are.equal(crypto.sha256("abc", { hex = true }), crypto.hex_encode(crypto.sha256("abc")))
    assert.has_error(function() crypto.digest("sha3", "abc") end)
    assert.has_error(function() crypto.sha256("abc", { hexx = true }) end)
  end)

  it("agrees with openssl dgst on binary data", function()
    local data = crypto.random(1000)
    local path = tmpfile(data)
    for _, alg in ipairs { "sha256", "sha512" } do
      local out = openssl("dgst -" .. alg .. " -r " .. path)
      assert.are.equal(out:match("^(%x+)"), crypto.digest(alg, data, { hex = true }))
    end
  end)

  it("computes HMACs that match RFC 4231 and RFC 2202", function()
    local key, data = "Jefe", "what do ya want for nothing?"
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      crypto.hmac("sha256", key, data, { hex = true }))
    assert.are.equal("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
      .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
      crypto.hmac("sha512", key, data, { hex = true }))
    assert.are.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
      crypto.hmac("sha1", key, data, { hex = true }))
    assert.are.equal("750c783e6ab0b503eaa86e310a5db738",
      crypto.hmac("md5", key, data, { hex = true }))
    -- an empty key is valid HMAC; compare with openssl
    local out = openssl("dgst -sha256 -hmac '' -r " .. tmpfile("x"))
    assert.are.equal(out:match("^(%x+)"), crypto.hmac("sha256", "", "x", { hex = true }))
  end)

  it("hashes in chunks like in one go, and closes after digest", function()
    local h = crypto.hash("sha256")
    h:update("a"):update("b")
    h:update("c")
    assert.are.equal(crypto.sha256("abc"), h:digest())
    assert.has_error(function() h:update("more") end)
    h:close() -- idempotent
  end)

  it("compares strings with equal()", function()
    assert.is_true(crypto.equal("abc", "abc"))
    assert.is_false(crypto.equal("abc", "abd"))
    assert.is_false(crypto.equal("abc", "ab"))
  end)

  it("encodes and decodes base64 (RFC 4648 vectors)", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(vectors) do
      assert.are.equal(enc, crypto.base64_encode(plain))
      assert.are.equal(plain, crypto.base64_decode(enc))
      local url = enc:gsub("=", "")
      assert.are.equal(url, crypto.base64_encode(plain, { url = true }))
      assert.are.equal(plain, crypto.base64_decode(url, { url = true }))
      assert.are.equal(plain, crypto.base64_decode(enc, { url = true })) -- padding accepted too
    end
    local bytes = "\251\255\191"
    assert.are.equal("+/+/", crypto.base64_encode(bytes))
    assert.are.equal("-_-_", crypto.base64_encode(bytes, { url = true }))
    assert.are.equal(bytes, crypto.base64_decode("-_-_", { url = true }))
    assert.are.equal("foobar", crypto.base64_decode("Zm9v\nYmFy\r\n"))
  end)

  it("round-trips random bytes through openssl base64", function()
    local data = crypto.random(301)
    local enc = openssl("base64 -A -in " .. tmpfile(data))
    assert.are.equal(enc, crypto.base64_encode(data))
    assert.are.equal(data, readfile((function()
      local out = tmpfile()
      openssl("base64 -d -A -in " .. tmpfile(crypto.base64_encode(data)) .. " -out " .. out)
      return out
    end)()))
  end)

  it("rejects bad base64 with EINVAL", function()
    assert_fail("EINVAL", crypto.base64_decode("Zm9vYg"))        -- std without padding
    assert_fail("EINVAL", crypto.base64_decode("Zm9vY"))         -- truncated
    assert_fail("EINVAL", crypto.base64_decode("Zm9vY", { url = true }))
    assert_fail("EINVAL", crypto.base64_decode("Zm9v!A=="))      -- bad character
    assert_fail("EINVAL", crypto.base64_decode("Zg==Zg=="))      -- data after padding
    assert_fail("EINVAL", crypto.base64_decode("Zm9v-_==", {}))  -- url chars in std
    assert_fail("EINVAL", crypto.base64_decode("Zm9v+/==", { url = true }))
    assert_fail("EINVAL", crypto.base64_decode("Zm8=="))         -- too much padding
    assert.has_error(function() crypto.base64_decode(42) end)
  end)

  it("encodes and decodes hex", function()
    assert.are.equal("00ff10ab", crypto.hex_encode("\0\255\16\171"))
    assert.are.equal("\0\255\16\171", crypto.hex_decode("00FF10ab"))
    assert_fail("EINVAL", crypto.hex_decode("abc"))
    assert_fail("EINVAL", crypto.hex_decode("zz"))
  end)
end)

-- ========== keys ==========

describe("tlr.crypto keys", function()
  it("generates Ed25519 and ECDSA P-256 keys", function()
    local ed = assert(crypto.generate_key { type = "ed25519" })
    assert.are.equal("ed25519", ed:type())
    assert.are.equal(256, ed:bits())
    assert.is_nil(ed:curve())
    assert.is_true(ed:is_private())
    local ec = assert(crypto.generate_key { type = "ecdsa" })
    assert.are.equal("ecdsa", ec:type())
    assert.are.equal("P-256", ec:curve())
    assert.are.equal("P-384", crypto.generate_key { type = "ecdsa", curve = "P-384" }:curve())
    assert.matches("tlr.crypto.Key %(ed25519%-256, private%)", tostring(ed))
  end)

  it("rejects bad generate_key options", function()
    assert.has_error(function() crypto.generate_key { type = "dsa" } end)
    assert.has_error(function() crypto.generate_key { type = "ed25519", bits = 256 } end)
    assert.has_error(function() crypto.generate_key { type = "rsa", bits = 1024 } end)
    assert.has_error(function() crypto.generate_key { type = "ecdsa", curve = "P-192" } end)
    assert.has_error(function() crypto.generate_key { type = "ed25519", color = 1 } end)
  end)

  it("generates RSA on the worker pool while other tasks keep running", function()
    local ticks = {}
    local stop = false
    local ticker = sched.spawn("ticker", function()
      while not stop do
        ticks[#ticks + 1] = sched.now()
        tlr.sleep(0.001)
      end
    end)
    tlr.sleep(0.005)
    local t0 = sched.now()
    local key = assert(crypto.generate_key { type = "rsa", bits = 2048 })
    local t1 = sched.now()
    stop = true
    ticker:wait()
    local during = 0
    for _, t in ipairs(ticks) do
      if t > t0 and t < t1 then during = during + 1 end
    end
    assert.are.equal("rsa", key:type())
    assert.are.equal(2048, key:bits())
    assert.is_true(during >= 2,
      string.format("ticker ticked %d times in %.3fs of keygen", during, t1 - t0))
    rsa_cache = key
  end)

  it("cancels a task waiting for an RSA keygen, and the pool keeps working", function()
    local t = sched.spawn("keygen", function()
      return crypto.generate_key { type = "rsa", bits = 2048 }
    end)
    tlr.sleep(0.001)
    assert.is_true(t:cancel())
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(require("tlr.errors").is(err, "ECANCELED"))
    local key = assert(crypto.generate_key { type = "rsa", bits = 2048 })
    assert.are.equal(2048, key:bits())
  end)

  it("writes every PEM format and reads it back", function()
    local keys = {
      ed25519 = assert(crypto.generate_key { type = "ed25519" }),
      ecdsa = assert(crypto.generate_key { type = "ecdsa" }),
      rsa = rsa2048(),
    }
    local formats = {
      ed25519 = { pkcs8 = "PRIVATE KEY", ed25519 = "ED25519 PRIVATE KEY" },
      ecdsa = { pkcs8 = "PRIVATE KEY", sec1 = "EC PRIVATE KEY" },
      rsa = { pkcs8 = "PRIVATE KEY", pkcs1 = "RSA PRIVATE KEY" },
    }
    for kind, key in pairs(keys) do
      local pub = key:public_pem()
      assert.matches("^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n", pub)
      for format, label in pairs(formats[kind]) do
        local pem = key:pem { format = format }
        assert.matches("^%-%-%-%-%-BEGIN " .. label .. "%-%-%-%-%-\n", pem)
        local back = assert(crypto.load_key(pem))
        assert.are.equal(kind, back:type())
        assert.are.equal(pub, back:public_pem())
      end
      assert.are.equal(key:pem(), key:pem { format = "pkcs8" })
    end
    -- Talos's label wraps exactly the PKCS#8 DER
    local ed = keys.ed25519
    assert.are.equal(ed:pem(),
      relabel(ed:pem { format = "ed25519" }, "ED25519 PRIVATE KEY", "PRIVATE KEY"))
  end)

  it("writes keys that openssl reads", function()
    local ed = assert(crypto.generate_key { type = "ed25519" })
    local ec = assert(crypto.generate_key { type = "ecdsa" })
    local rsa = rsa2048()
    assert.matches("ED25519 Private%-Key", openssl("pkey -noout -text -in " .. tmpfile(ed:pem())))
    -- openssl cannot read Talos's label; the body is PKCS#8, so relabelled it can
    local talos = relabel(ed:pem { format = "ed25519" }, "ED25519 PRIVATE KEY", "PRIVATE KEY")
    assert.are.equal(ed:public_pem(), openssl("pkey -pubout -in " .. tmpfile(talos)))
    local ectext = openssl("ec -noout -text -in " .. tmpfile(ec:pem { format = "sec1" }))
    assert.matches("ASN1 OID: prime256v1", ectext)
    local sec1 = tmpfile(ec:pem { format = "sec1" })
    assert.are.equal(ec:public_pem(), openssl("pkey -pubout -in " .. sec1))
    assert.matches("Private%-Key: %(2048 bit, 2 primes%)", openssl("rsa -noout -text -in "
      .. tmpfile(rsa:pem { format = "pkcs1" })))
    local pkcs1 = tmpfile(rsa:pem { format = "pkcs1" })
    assert.are.equal(rsa:public_pem(), openssl("pkey -pubout -in " .. pkcs1))
    local edpub = tmpfile(ed:public_pem())
    assert.matches("ED25519 Public%-Key", openssl("pkey -pubin -noout -text -in " .. edpub))
  end)

  it("reads keys that openssl makes", function()
    local cases = {
      { "genpkey -algorithm ED25519 -out %s", "ed25519", "PRIVATE KEY" },
      { "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s", "ecdsa", "PRIVATE KEY" },
      -- ecparam writes an EC PARAMETERS block first
      { "ecparam -name prime256v1 -genkey -out %s", "ecdsa", "EC PRIVATE KEY" },
      { "genrsa -traditional -out %s 2048", "rsa", "RSA PRIVATE KEY" },
    }
    for _, c in ipairs(cases) do
      local path = tmpfile()
      openssl(c[1]:format(path))
      local pem = readfile(path)
      assert.matches("BEGIN " .. c[3], pem)
      local key = assert(crypto.load_key(pem))
      assert.are.equal(c[2], key:type())
      assert.is_true(key:is_private())
      local pub = openssl("pkey -pubout -in " .. path)
      assert.are.equal(pub, key:public_pem())
      local pubkey = assert(crypto.load_key(pub))
      assert.is_false(pubkey:is_private())
      assert.are.equal(c[2], pubkey:type())
    end
  end)

  it("signs and verifies, and openssl accepts the signatures", function()
    local data = "the quick brown fox"
    local dpath = tmpfile(data)
    for _, key in ipairs { assert(crypto.generate_key { type = "ed25519" }),
      assert(crypto.generate_key { type = "ecdsa" }), rsa2048() } do
      local sig = assert(key:sign(data))
      assert.is_true(key:verify(data, sig))
      assert.is_true(key:public_key():verify(data, sig))
      assert.is_false(key:verify(data .. "!", sig))
      assert.is_false(key:verify(data, "garbage"))
      local other_type = key:type() == "rsa" and "ecdsa" or key:type()
      local other = assert(crypto.generate_key { type = other_type })
      assert.is_false(other:verify(data, sig)) -- the wrong key
      local pub, spath = tmpfile(key:public_pem()), tmpfile(sig)
      local cmd = key:type() == "ed25519"
        and ("pkeyutl -verify -pubin -inkey " .. pub .. " -rawin -in " .. dpath
          .. " -sigfile " .. spath)
        or ("dgst -sha256 -verify " .. pub .. " -signature " .. spath .. " " .. dpath)
      local out = openssl(cmd)
      assert.is_truthy(out:find("Verified OK", 1, true)
        or out:find("Signature Verified Successfully", 1, true), out)
    end
  end)

  it("keeps public keys public", function()
    local key = assert(crypto.generate_key { type = "ed25519" })
    local pub = key:public_key()
    assert.is_false(pub:is_private())
    assert.are.equal(key:public_pem(), pub:public_pem())
    assert.has_error(function() pub:pem() end)
    assert.has_error(function() pub:sign("x") end)
  end)

  it("raises on a format that does not fit, unknown options and closed keys", function()
    local ed = assert(crypto.generate_key { type = "ed25519" })
    assert.has_error(function() ed:pem { format = "sec1" } end)
    assert.has_error(function() ed:pem { format = "pkcs1" } end)
    assert.has_error(function() ed:pem { format = "der" } end)
    assert.has_error(function() ed:pem { fmt = "pkcs8" } end)
    local ec = assert(crypto.generate_key { type = "ecdsa" })
    assert.has_error(function() ec:pem { format = "ed25519" } end)
    ed:close()
    ed:close()
    assert.has_error(function() ed:type() end, "attempt to use a closed key")
    do
      local k <close> = assert(crypto.generate_key { type = "ed25519" })
      assert.are.equal("ed25519", k:type())
    end
  end)

  it("returns EINVAL for keys it cannot read", function()
    local ec = assert(crypto.generate_key { type = "ecdsa" })
    local ed = assert(crypto.generate_key { type = "ed25519" })
    assert_fail("EINVAL", crypto.load_key("garbage"))
    assert_fail("EINVAL", crypto.load_key(""))
    -- a certificate is not a key
    local cert = assert(crypto.create_ca { key = ed, subject = { CN = "x" } })
    assert_fail("EINVAL", crypto.load_key(cert))
    -- an EC key under the RSA label, an RSA label on nonsense, Ed25519 under the EC label
    local sec1 = ec:pem { format = "sec1" }
    assert_fail("EINVAL", crypto.load_key(relabel(sec1, "EC PRIVATE KEY", "RSA PRIVATE KEY")))
    assert_fail("EINVAL", crypto.load_key(relabel(ed:pem(), "PRIVATE KEY", "EC PRIVATE KEY")))
    assert_fail("EINVAL", crypto.load_key(relabel(ec:pem(), "PRIVATE KEY", "ED25519 PRIVATE KEY")))
    -- truncated base64 body
    local pem = ec:pem()
    local lines = {}
    for line in pem:gmatch("[^\n]+") do lines[#lines + 1] = line end
    lines[2] = lines[2]:sub(1, 20)
    assert_fail("EINVAL", crypto.load_key(table.concat(lines, "\n") .. "\n"))
    -- an encrypted key is not supported
    local path = tmpfile()
    openssl("genpkey -algorithm ED25519 -aes256 -pass pass:x -out " .. path)
    local ok, msg, code = crypto.load_key(readfile(path))
    assert_fail("EINVAL", ok, msg, code)
    assert.matches("ENCRYPTED PRIVATE KEY", msg)
  end)
end)

-- ========== certificates ==========

describe("tlr.crypto certificates", function()
  local os_key, os_ca -- the Talos OS CA: Ed25519, O=talos

  setup(function()
    os_key = assert(crypto.generate_key { type = "ed25519" })
    os_ca = assert(crypto.create_ca { key = os_key, subject = { O = "talos" } })
  end)

  it("creates a Talos-style Ed25519 CA that openssl reads", function()
    local text = openssl("x509 -noout -text -in " .. tmpfile(os_ca))
    assert.matches("Signature Algorithm: ED25519", text)
    assert.matches("Subject: O = talos", text)
    assert.matches("Issuer: O = talos", text)
    assert.matches("X509v3 Basic Constraints: critical\n%s+CA:TRUE", text)
    assert.matches("X509v3 Key Usage: critical\n%s+Digital Signature, Certificate Sign\n", text)
    assert.matches("TLS Web Server Authentication, TLS Web Client Authentication", text)
    assert.matches("X509v3 Subject Key Identifier", text)
    local c = assert(crypto.parse_cert(os_ca))
    assert.are.equal(3, c.version)
    assert.is_true(c.is_ca)
    assert.is_true(c.self_signed)
    assert.are.same({ O = "talos" }, c.subject)
    assert.are.equal("O=talos", c.subject_text)
    assert.are.equal("ed25519", c.key_type)
    assert.are.same({ "digital_signature", "cert_sign" }, c.key_usage)
    assert.are.same({ "server_auth", "client_auth" }, c.ext_key_usage)
    assert.are.equal(3650 * 86400, c.not_after - c.not_before)
    assert.is_true(math.abs(c.not_before - os.time()) <= 5)
    assert.are.equal(os_key:public_pem(), c.public_key)
    -- 128-bit random positive serial, as openssl prints it
    assert.is_true(#c.serial <= 32 and #c.serial >= 20)
    local serial = openssl("x509 -noout -serial -in " .. tmpfile(os_ca)):gsub("\n", "")
    assert.are.equal("serial=" .. c.serial:upper(), serial)
    local again = assert(crypto.create_ca { key = os_key })
    assert.are_not.equal(c.serial, crypto.parse_cert(again).serial)
    -- self-signed CAs need no AKID; openssl verifies the CA against itself
    assert.is_nil(c.authority_key_id)
    local path = tmpfile(os_ca)
    assert.matches(": OK", openssl("verify -CAfile " .. path .. " " .. path))
  end)

  it("creates ECDSA P-256 CAs, including one with an empty subject", function()
    local key = assert(crypto.generate_key { type = "ecdsa" })
    local k8s = assert(crypto.create_ca { key = key, subject = { O = "kubernetes" } })
    local text = openssl("x509 -noout -text -in " .. tmpfile(k8s))
    assert.matches("Signature Algorithm: ecdsa%-with%-SHA256", text)
    assert.matches("NIST CURVE: P%-256", text)
    local aggkey = assert(crypto.generate_key { type = "ecdsa" })
    local agg = assert(crypto.create_ca { key = aggkey, subject = {} })
    local c = assert(crypto.parse_cert(agg))
    assert.are.same({}, c.subject)
    assert.are.same({}, c.issuer)
    assert.are.equal("", c.subject_text)
    assert.is_true(c.is_ca)
    assert.matches("Subject: *\n", openssl("x509 -noout -text -in " .. tmpfile(agg)))
    -- a front-proxy client cert under the empty-subject CA verifies in both tools
    local leaf = assert(crypto.sign_cert { ca_cert = agg, ca_key = aggkey,
      public_key = key:public_key(), subject = { CN = "front-proxy-client" },
      ext_key_usage = { "client_auth" } })
    assert.is_true(crypto.verify_chain(leaf, { agg }, { purpose = "client" }))
    assert.matches(": OK", openssl("verify -CAfile " .. tmpfile(agg) .. " " .. tmpfile(leaf)))
  end)

  it("signs the Talos admin client cert from a CSR", function()
    local admin = assert(crypto.generate_key { type = "ed25519" })
    local csr = assert(crypto.create_csr { key = admin, subject = { O = "os:admin" } })
    local req = openssl("req -noout -text -verify -in " .. tmpfile(csr))
    assert.matches("Subject: O = os:admin", req)
    local crt = assert(crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, csr = csr,
      ext_key_usage = { "client_auth" }, days = 365 })
    local c = assert(crypto.parse_cert(crt))
    local ca = assert(crypto.parse_cert(os_ca))
    assert.are.same({ O = "os:admin" }, c.subject)
    assert.are.same({ O = "talos" }, c.issuer)
    assert.are.same({ "client_auth" }, c.ext_key_usage)
    assert.are.same({ "digital_signature" }, c.key_usage)
    assert.is_false(c.is_ca)
    assert.is_false(c.self_signed)
    assert.are.equal(365 * 86400, c.not_after - c.not_before)
    assert.are.equal(ca.subject_key_id, c.authority_key_id)
    assert.are.equal(admin:public_pem(), c.public_key)
    local capath, crtpath = tmpfile(os_ca), tmpfile(crt)
    local text = openssl("x509 -noout -text -in " .. crtpath)
    assert.matches("X509v3 Extended Key Usage: *\n%s+TLS Web Client Authentication\n", text)
    assert.matches("X509v3 Authority Key Identifier", text)
    assert.matches("CA:FALSE", text)
    assert.matches(": OK",
      openssl("verify -purpose sslclient -CAfile " .. capath .. " " .. crtpath))
    local out, ok = sh("openssl verify -purpose sslserver -CAfile " .. capath .. " " .. crtpath)
    assert.is_false(ok, out)
    assert.is_true(crypto.verify_chain(crt, { os_ca }, { purpose = "client" }))
    assert_fail("ECRYPTO", crypto.verify_chain(crt, { os_ca }, { purpose = "server" }))
  end)

  it("signs a server leaf for a public key with DNS and IP SANs", function()
    local ca_key = assert(crypto.generate_key { type = "ecdsa" })
    local ca = assert(crypto.create_ca { key = ca_key, subject = { O = "kubernetes" } })
    local key = rsa2048()
    local now = os.time()
    local crt = assert(crypto.sign_cert { ca_cert = ca, ca_key = ca_key:pem(),
      public_key = key:public_pem(), subject = { CN = "kube-apiserver", O = { "a", "b" } },
      dns_names = { "kubernetes", "kubernetes.default.svc" },
      ip_addresses = { "10.96.0.1", "fd00::1" },
      ext_key_usage = { "server_auth" }, not_before = now - 60, not_after = now + 1000000 })
    local c = assert(crypto.parse_cert(crt))
    assert.are.same({ "kubernetes", "kubernetes.default.svc" }, c.dns_names)
    assert.are.same({ "10.96.0.1", "fd00::1" }, c.ip_addresses)
    assert.are.same({ CN = "kube-apiserver", O = { "a", "b" } }, c.subject)
    assert.are.equal(now - 60, c.not_before)
    assert.are.equal(now + 1000000, c.not_after)
    assert.are.same({ "digital_signature", "key_encipherment" }, c.key_usage)
    assert.are.equal("rsa", c.key_type)
    assert.are.equal(2048, c.key_bits)
    local text = openssl("x509 -noout -text -in " .. tmpfile(crt))
    assert.matches("DNS:kubernetes, DNS:kubernetes.default.svc, IP Address:10.96.0.1, "
      .. "IP Address:FD00:0:0:0:0:0:0:1", text)
    assert.matches("Subject: O = a, O = b, CN = kube%-apiserver", text)
    local at = now + 1000
    assert.matches(": OK", openssl("verify -attime " .. at .. " -purpose sslserver -CAfile "
      .. tmpfile(ca) .. " " .. tmpfile(crt)))
    assert.is_true(crypto.verify_chain(crt, { ca },
      { at = at, purpose = "server", host = "kubernetes" }))
    assert.is_true(crypto.verify_chain(crt, { ca }, { at = at, host = "10.96.0.1" }))
    assert_fail("ECRYPTO", crypto.verify_chain(crt, { ca }, { at = at, host = "example.com" }))
    assert_fail("ECRYPTO", crypto.verify_chain(crt, { ca }, { at = at, host = "10.96.0.2" }))
  end)

  it("reads certificates and CSRs that openssl makes", function()
    local key, crt = tmpfile(), tmpfile()
    openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " .. key
      .. " -out " .. crt .. " -days 10 -subj '/O=a/O=b/CN=openssl.test'"
      .. " -addext 'subjectAltName=DNS:foo.test,IP:192.0.2.7'"
      .. " -addext 'extendedKeyUsage=serverAuth'")
    local pem = readfile(crt)
    local c = assert(crypto.parse_cert(pem))
    assert.are.same({ O = { "a", "b" }, CN = "openssl.test" }, c.subject)
    assert.are.same({ "foo.test" }, c.dns_names)
    assert.are.same({ "192.0.2.7" }, c.ip_addresses)
    assert.are.same({ "server_auth" }, c.ext_key_usage)
    assert.are.equal("ecdsa", c.key_type)
    assert.are.equal("P-256", c.key_curve)
    local fp = openssl("x509 -noout -fingerprint -sha256 -in " .. crt):match("Fingerprint=([%x:]+)")
    assert.are.equal(fp, c.fingerprint_sha256)
    assert.matches("^%x%x:", c.fingerprint_sha256)
    assert.is_nil(c.fingerprint_sha256:find("%l"))
    local serial = openssl("x509 -noout -serial -in " .. crt):match("serial=(%x+)")
    assert.are.equal(serial:lower():gsub("^0+", ""), c.serial:gsub("^0+", ""))
    local enddate = openssl("x509 -noout -enddate -in " .. crt)
    assert.are.equal(10 * 86400, c.not_after - c.not_before, enddate)
    assert.are.equal(assert(crypto.load_key(readfile(key))):public_pem(), c.public_key)
    -- a CSR made by openssl, signed by a tlr CA, verified by openssl
    local csrkey, csr = tmpfile(), tmpfile()
    openssl("req -new -newkey ed25519 -nodes -keyout " .. csrkey .. " -out " .. csr
      .. " -subj '/CN=node1' -addext 'subjectAltName=DNS:node1.lab,IP:127.77.0.11'")
    local parsed = assert(crypto.parse_csr(readfile(csr)))
    assert.is_true(parsed.signature_valid)
    assert.are.same({ CN = "node1" }, parsed.subject)
    assert.are.same({ "node1.lab" }, parsed.dns_names)
    assert.are.same({ "127.77.0.11" }, parsed.ip_addresses)
    local leaf = assert(crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, csr = readfile(csr) })
    local lc = assert(crypto.parse_cert(leaf))
    assert.are.same({ "node1.lab" }, lc.dns_names)
    assert.are.same({ "127.77.0.11" }, lc.ip_addresses)
    assert.matches(": OK", openssl("verify -CAfile " .. tmpfile(os_ca) .. " " .. tmpfile(leaf)))
  end)

  it("parses a bundle of several certificates", function()
    local k2 = assert(crypto.generate_key { type = "ecdsa" })
    local ca2 = assert(crypto.create_ca { key = k2, subject = { CN = "second" } })
    local list = assert(crypto.parse_certs(os_ca .. ca2))
    assert.are.equal(2, #list)
    assert.are.same({ O = "talos" }, list[1].subject)
    assert.are.equal("second", list[2].subject.CN)
    assert.are.equal(list[2].fingerprint_sha256, crypto.parse_cert(list[2].pem).fingerprint_sha256)
    -- a leaf checks against a bundle of anchors
    local leaf = assert(crypto.sign_cert { ca_cert = ca2, ca_key = k2, public_key = os_key })
    assert.is_true(crypto.verify_chain(leaf, { os_ca .. ca2 }))
    assert_fail("EINVAL", crypto.parse_certs("no certs here"))
  end)

  it("verifies a chain through an intermediate", function()
    local rk = assert(crypto.generate_key { type = "ecdsa" })
    local ik = assert(crypto.generate_key { type = "ecdsa" })
    local lk = assert(crypto.generate_key { type = "ed25519" })
    local root = assert(crypto.create_ca { key = rk, subject = { CN = "root" } })
    local inter = assert(crypto.sign_cert { ca_cert = root, ca_key = rk, public_key = ik,
      subject = { CN = "inter" }, is_ca = true, path_len = 0,
      key_usage = { "cert_sign", "digital_signature" }, ext_key_usage = {} })
    local ic = assert(crypto.parse_cert(inter))
    assert.is_true(ic.is_ca)
    assert.are.equal(0, ic.path_len)
    local leaf = assert(crypto.sign_cert { ca_cert = inter, ca_key = ik, public_key = lk,
      subject = { CN = "leaf" } })
    assert.is_true(crypto.verify_chain(leaf, { root }, { untrusted = { inter } }))
    assert_fail("ECRYPTO", crypto.verify_chain(leaf, { root }))
    assert.matches(": OK", openssl("verify -CAfile " .. tmpfile(root)
      .. " -untrusted " .. tmpfile(inter)
      .. " " .. tmpfile(leaf)))
  end)

  it("reports why a chain does not verify", function()
    local k = assert(crypto.generate_key { type = "ed25519" })
    local leaf = assert(crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, public_key = k,
      days = 30 })
    local c = assert(crypto.parse_cert(leaf))
    local ok, msg, code = crypto.verify_chain(leaf, { os_ca }, { at = c.not_after + 86400 })
    assert_fail("ECRYPTO", ok, msg, code)
    assert.matches("expired", msg)
    ok, msg, code = crypto.verify_chain(leaf, { os_ca }, { at = c.not_before - 86400 })
    assert_fail("ECRYPTO", ok, msg, code)
    assert.matches("not yet valid", msg)
    local other_key = assert(crypto.generate_key { type = "ed25519" })
    local other = assert(crypto.create_ca { key = other_key, subject = { O = "talos" } })
    ok, msg, code = crypto.verify_chain(leaf, { other })
    assert_fail("ECRYPTO", ok, msg, code)
    local unrelated = assert(crypto.create_ca { key = other_key, subject = { O = "x" } })
    ok, msg, code = crypto.verify_chain(leaf, { unrelated })
    assert_fail("ECRYPTO", ok, msg, code)
    assert.matches("issuer", msg)
    assert_fail("EINVAL", crypto.verify_chain("garbage", { os_ca }))
    assert_fail("EINVAL", crypto.verify_chain(leaf, { "garbage" }))
    assert.has_error(function() crypto.verify_chain(leaf, { os_ca }, { purpose = "email" }) end)
    assert.has_error(function() crypto.verify_chain(leaf, nil) end)
  end)

  it("returns failures for bad certificate input", function()
    local k = assert(crypto.generate_key { type = "ed25519" })
    assert_fail("EINVAL", crypto.parse_cert("garbage"))
    assert_fail("EINVAL", crypto.parse_cert(k:pem())) -- wrong label
    local lines = {}
    for line in os_ca:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.remove(lines, 3) -- a line of the body missing
    assert_fail("EINVAL", crypto.parse_cert(table.concat(lines, "\n") .. "\n"))
    assert_fail("EINVAL", crypto.parse_csr(os_ca))
    -- the CA key must match the CA cert
    assert_fail("EINVAL", crypto.sign_cert { ca_cert = os_ca, ca_key = k, public_key = k })
    assert_fail("EINVAL", crypto.sign_cert { ca_cert = "nope", ca_key = os_key, public_key = k })
    assert_fail("EINVAL",
      crypto.sign_cert { ca_cert = os_ca, ca_key = "not a pem", public_key = k })
    assert_fail("EINVAL", crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, public_key = k,
      ip_addresses = { "10.0.0.300" } })
    assert_fail("EINVAL", crypto.create_csr { key = k, ip_addresses = { "fe80::1::2" } })
    -- a CSR whose signature was tampered with
    local csr = assert(crypto.create_csr { key = k, subject = { CN = "a" } })
    local der = assert(crypto.base64_decode(csr:match("%-\n(.-)\n%-%-%-%-%-END")))
    local bad = der:sub(1, -2) .. string.char((der:byte(-1) + 1) % 256)
    local badpem = "-----BEGIN CERTIFICATE REQUEST-----\n" .. crypto.base64_encode(bad)
      .. "\n-----END CERTIFICATE REQUEST-----\n"
    assert.is_false(assert(crypto.parse_csr(badpem)).signature_valid)
    assert_fail("ECRYPTO", crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, csr = badpem })
    -- a CSR for a key type tlr does not handle (DSA)
    local dsaparam, dsakey, dsacsr = tmpfile(), tmpfile(), tmpfile()
    openssl("genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:1024 -out " .. dsaparam)
    openssl("genpkey -paramfile " .. dsaparam .. " -out " .. dsakey)
    openssl("req -new -key " .. dsakey .. " -subj /CN=dsa -out " .. dsacsr)
    local dsa = assert(crypto.parse_csr(readfile(dsacsr)))
    assert.are.equal("DSA", dsa.key_type)
    assert_fail("EINVAL", crypto.sign_cert { ca_cert = os_ca, ca_key = os_key, csr = readfile(dsacsr) })
  end)

  it("raises on programmer errors in certificate options", function()
    local k = assert(crypto.generate_key { type = "ed25519" })
    assert.has_error(function() crypto.create_ca { key = k, subject = { XX = "a" } } end)
    assert.has_error(function() crypto.create_ca { key = k, colour = "red" } end)
    assert.has_error(function() crypto.create_ca { key = k, key_usage = { "fly" } } end)
    assert.has_error(function() crypto.create_ca { key = k, ext_key_usage = { "fly" } } end)
    assert.has_error(function() crypto.create_ca { key = k, days = 10, not_after = 5 } end)
    assert.has_error(function() crypto.create_ca { key = k:public_key() } end)
    assert.has_error(function() crypto.create_ca { key = 42 } end)
    assert.has_error(function() crypto.sign_cert { ca_cert = os_ca, ca_key = os_key } end)
    assert.has_error(function() crypto.create_csr { key = k, dns_names = { 1 } } end)
  end)

  it("makes a self-signed server cert with is_ca=false", function()
    local k = assert(crypto.generate_key { type = "ed25519" })
    local crt = assert(crypto.create_ca { key = k, is_ca = false, dns_names = { "maint.local" },
      ip_addresses = { "127.77.0.11" } })
    local c = assert(crypto.parse_cert(crt))
    assert.is_false(c.is_ca)
    assert.is_true(c.self_signed)
    assert.are.same({ "server_auth" }, c.ext_key_usage)
    assert.are.equal(365 * 86400, c.not_after - c.not_before)
    -- an empty subject makes the SAN extension critical (RFC 5280 4.2.1.6)
    local text = openssl("x509 -noout -text -in " .. tmpfile(crt))
    assert.matches("Subject Alternative Name: critical", text)
  end)
end)
