-- Talos secrets bundle, talosctl's secrets.yaml and the admin client
-- certificate (lua/tlr/talos/secrets.lua).
local secrets = require "tlr.talos.secrets"
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local read = require("helper").read

local FIXTURE = "tests/fixtures/talos-config/secrets.yaml"
local DAY = 86400
local NOW = 1767225600 -- 2026-01-01T00:00:00Z

-- One full bundle (with its RSA-4096 key) for the whole file.
local full
local function bundle()
  full = full or assert(secrets.generate { now = NOW })
  return full
end

-- A bundle without a new RSA key: the service-account key comes from the fixture.
local function quick(o)
  local fixture = assert(secrets.decode(read(FIXTURE)))
  o = o or {}
  o.from = o.from or { certs = { k8sserviceaccount = fixture.certs.k8sserviceaccount } }
  return assert(secrets.generate(o))
end

local function pem_label(pem) return pem:match("^%-%-%-%-%-BEGIN ([%u%d ]+)%-%-%-%-%-") end

local function fails(pattern, ok, msg, code)
  assert.is_nil(ok)
  assert.are.equal("EINVAL", code)
  assert.matches(pattern, msg)
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

describe("tlr.talos.secrets", function()
  describe("generate", function()
    it("makes the OS CA Ed25519, O=talos, 10 years, a CA for server and client auth", function()
      local b = bundle()
      local ca = assert(crypto.parse_cert(b.certs.os.crt))
      assert.are.equal("ed25519", ca.key_type)
      assert.are.equal("ED25519", ca.signature_algorithm)
      assert.are.equal("O=talos", ca.subject_text)
      assert.is_true(ca.is_ca)
      assert.is_true(ca.self_signed)
      assert.are.equal(NOW, ca.not_before)
      assert.are.equal(3650 * DAY, ca.not_after - ca.not_before)
      table.sort(ca.key_usage)
      assert.are.same({ "cert_sign", "digital_signature" }, ca.key_usage)
      assert.are.same({ "server_auth", "client_auth" }, ca.ext_key_usage)
      assert.are.equal("ED25519 PRIVATE KEY", pem_label(b.certs.os.key))
      local key = assert(crypto.load_key(b.certs.os.key))
      assert.are.equal(ca.public_key, key:public_pem())
    end)

    it("makes the Kubernetes, aggregator and etcd CAs ECDSA P-256 with Talos's subjects", function()
      local b = bundle()
      for name, subject in pairs { k8s = "O=kubernetes", k8saggregator = "", etcd = "O=etcd" } do
        local ca = assert(crypto.parse_cert(b.certs[name].crt))
        assert.are.equal("ecdsa", ca.key_type, name)
        assert.are.equal("P-256", ca.key_curve, name)
        assert.are.equal("ecdsa-with-SHA256", ca.signature_algorithm, name)
        assert.are.equal(subject, ca.subject_text, name)
        assert.is_true(ca.is_ca, name)
        assert.are.equal(3650 * DAY, ca.not_after - ca.not_before, name)
        assert.are.equal("EC PRIVATE KEY", pem_label(b.certs[name].key), name)
      end
    end)

    it("gives every CA a random 128-bit serial and a 20-byte subject key id", function()
      local b = bundle()
      local serials = {}
      for _, name in ipairs { "os", "k8s", "k8saggregator", "etcd" } do
        local ca = crypto.parse_cert(b.certs[name].crt)
        assert.is_true(#ca.serial >= 20 and #ca.serial <= 32, ca.serial)
        assert.is_nil(serials[ca.serial])
        serials[ca.serial] = true
        assert.are.equal(40, #ca.subject_key_id)
      end
    end)

    it("makes the service-account key RSA-4096 in PKCS#1", function()
      local b = bundle()
      assert.are.equal("RSA PRIVATE KEY", pem_label(b.certs.k8sserviceaccount.key))
      local key = assert(crypto.load_key(b.certs.k8sserviceaccount.key))
      assert.are.equal("rsa", key:type())
      assert.are.equal(4096, key:bits())
    end)

    it("makes tokens, cluster id and secrets of Talos's shapes", function()
      local b = bundle()
      for _, t in ipairs { b.secrets.bootstraptoken, b.trustdinfo.token } do
        assert.matches("^[a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9]%.[a-z0-9]+$", t)
        assert.are.equal(23, #t)
      end
      assert.are_not.equal(b.secrets.bootstraptoken, b.trustdinfo.token)
      -- cluster id: base64url with padding; the secrets: standard base64; 32 bytes each
      assert.are.equal(44, #b.cluster.id)
      assert.matches("^[%w_-]+=$", b.cluster.id)
      assert.are.equal(32, #assert(crypto.base64_decode(b.cluster.id, { url = true })))
      for _, s in ipairs { b.cluster.secret, b.secrets.secretboxencryptionsecret } do
        assert.are.equal(32, #assert(crypto.base64_decode(s)))
      end
      assert.is_nil(b.secrets.aescbcencryptionsecret)
      assert.is_true(secrets.validate(b))
    end)

    it("draws token letters from the whole alphabet", function()
      local seen, n = {}, 0
      for _ = 1, 40 do
        local b = quick()
        for ch in (b.secrets.bootstraptoken .. b.trustdinfo.token):gmatch("[a-z0-9]") do
          if not seen[ch] then seen[ch], n = true, n + 1 end
        end
      end
      assert.are.equal(36, n)
    end)

    it("follows the contract: aescbc up to 1.2, an ECDSA service-account key up to 1.6", function()
      local old = assert(secrets.generate { talos_version = "v1.2.8" })
      assert.is_nil(old.secrets.secretboxencryptionsecret)
      assert.are.equal(32, #crypto.base64_decode(old.secrets.aescbcencryptionsecret))
      assert.are.equal("EC PRIVATE KEY", pem_label(old.certs.k8sserviceaccount.key))
      local v16 = assert(secrets.generate { talos_version = "1.6" })
      assert.is_not_nil(v16.secrets.secretboxencryptionsecret)
      assert.are.equal("EC PRIVATE KEY", pem_label(v16.certs.k8sserviceaccount.key))
      fails("bad Talos version", secrets.generate { talos_version = "latest" })
    end)

    it("keeps the parts given in `from` and makes only the missing ones", function()
      local fixture = assert(secrets.decode(read(FIXTURE)))
      local b = quick { from = { certs = { os = fixture.certs.os,
        k8sserviceaccount = fixture.certs.k8sserviceaccount }, cluster = { id = "given" } } }
      assert.are.equal(fixture.certs.os.crt, b.certs.os.crt)
      assert.are.equal(fixture.certs.k8sserviceaccount.key, b.certs.k8sserviceaccount.key)
      assert.are.equal("given", b.cluster.id)
      assert.are_not.equal(fixture.certs.k8s.crt, b.certs.k8s.crt)
      assert.are_not.equal(fixture.cluster.secret, b.cluster.secret)
    end)

    it("checks the parts given in `from`", function()
      local fixture = assert(secrets.decode(read(FIXTURE)))
      fails("from: certs%.os: the key does not belong", secrets.generate { from = {
        certs = { os = { crt = fixture.certs.os.crt, key = fixture.certs.k8s.key },
          k8sserviceaccount = fixture.certs.k8sserviceaccount } } })
      fails("from: trustdinfo%.token", secrets.generate { from = { trustdinfo = { token = "x" },
        certs = { k8sserviceaccount = fixture.certs.k8sserviceaccount } } })
    end)

    it("rejects unknown options", function()
      assert.has_error(function() secrets.generate { version = "v1.11" } end)
    end)
  end)

  describe("secrets.yaml", function()
    it("reads talosctl's file and writes it back byte for byte", function()
      local text = read(FIXTURE)
      local b = assert(secrets.decode(text))
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE", b.certs.os.crt)
      assert.are.equal("ED25519 PRIVATE KEY", pem_label(b.certs.os.key))
      assert.are.equal("inn7ol.u4ehnti8qyls9ymo", b.secrets.bootstraptoken)
      assert.are.equal("d8cwfa.eyvpi0xwxyarbfid", b.trustdinfo.token)
      assert.are.equal(text, secrets.encode(b))
    end)

    it("round-trips a generated bundle", function()
      local b = bundle()
      local text = assert(secrets.encode(b))
      local doc = yaml.decode(text)
      assert.are.equal(b.cluster.id, doc.cluster.id)
      assert.are.equal(b.certs.k8s.crt, crypto.base64_decode(doc.certs.k8s.crt))
      assert.are.same(b, assert(secrets.decode(text)))
    end)

    it("writes aescbcencryptionsecret for old contracts", function()
      local b = quick { talos_version = "v1.2" }
      local text = assert(secrets.encode(b))
      assert.matches("\n    aescbcencryptionsecret: ", text)
      assert.is_nil(text:find("secretbox", 1, true))
      assert.are.same(b, assert(secrets.decode(text)))
    end)

    it("rejects broken files with EINVAL", function()
      local text = read(FIXTURE)
      fails("a mapping expected", secrets.decode("just text"))
      fails("line %d+", secrets.decode("cluster: [\n"))
      fails("cluster.id is required", secrets.decode((text:gsub("    id: [^\n]+\n", ""))))
      fails("bootstraptoken must look like", secrets.decode((text:gsub("inn7ol%.", "INN7OL."))))
      fails("certs%.k8s%.crt", secrets.decode((text:gsub("(k8s:\n        crt: )", "%1!!"))))
      local b = assert(secrets.decode(text))
      local swapped = copy(b)
      swapped.certs.k8s.key = b.certs.etcd.key
      fails("certs%.k8s: the key does not belong", secrets.encode(swapped))
      local both = copy(b)
      both.secrets.aescbcencryptionsecret = b.secrets.secretboxencryptionsecret
      fails("exactly one of", secrets.validate(both))
      local no_sa = copy(b)
      no_sa.certs.k8sserviceaccount = nil
      fails("k8sserviceaccount", secrets.validate(no_sa))
    end)

    it("checks a bundle again after it changed", function()
      local b = assert(secrets.decode(read(FIXTURE)))
      assert.is_true(secrets.validate(b))
      assert.is_true(secrets.validate(b))
      b.certs.k8s.key = b.certs.etcd.key
      fails("certs%.k8s: the key does not belong", secrets.validate(b))
      b.certs.k8s.key = assert(secrets.decode(read(FIXTURE))).certs.k8s.key
      assert.is_true(secrets.validate(b))
    end)

    it("builds the same bundle from a control-plane config", function()
      local doc = yaml.decode(read("tests/fixtures/talos-gen/v1.8-base-controlplane.yaml"))
      assert.are.same(assert(secrets.decode(read(FIXTURE))), assert(secrets.from_config(doc)))
      local worker = yaml.decode(read("tests/fixtures/talos-gen/v1.8-base-worker.yaml"))
      fails("^machine config: ", secrets.from_config(worker))
    end)
  end)

  describe("admin client certificate", function()
    it("is Ed25519, O=os:admin, client auth only, 1 year, signed by the OS CA", function()
      local b = bundle()
      local admin = assert(secrets.admin_cert(b, { now = NOW }))
      local c = assert(crypto.parse_cert(admin.crt))
      assert.are.equal("ed25519", c.key_type)
      assert.are.equal("O=os:admin", c.subject_text)
      assert.is_nil(c.subject.CN)
      assert.are.equal("O=talos", c.issuer_text)
      assert.is_false(c.is_ca)
      assert.are.same({ "client_auth" }, c.ext_key_usage)
      assert.are.same({ "digital_signature" }, c.key_usage)
      assert.are.equal(NOW, c.not_before)
      assert.are.equal(365 * DAY, c.not_after - c.not_before)
      assert.are.equal("ED25519 PRIVATE KEY", pem_label(admin.key))
      assert.is_true(crypto.verify_chain(admin.crt, { b.certs.os.crt },
        { purpose = "client", at = NOW + DAY }))
      assert.are.equal(c.public_key, assert(crypto.load_key(admin.key)):public_pem())
    end)

    it("puts each role into the subject's organization", function()
      local admin = assert(secrets.admin_cert(bundle(),
        { roles = { "os:reader", "os:etcd:backup" } }))
      local c = crypto.parse_cert(admin.crt)
      assert.are.same({ "os:reader", "os:etcd:backup" }, c.subject.O)
    end)

    it("is kept while more than 30 days remain and renewed after", function()
      local b = bundle()
      local admin = assert(secrets.admin_cert(b, { now = NOW }))
      local kept, renewed = secrets.renew_admin_cert(b, admin, { now = NOW + 300 * DAY })
      assert.is_false(renewed)
      assert.are.equal(admin, kept)
      local new
      new, renewed = secrets.renew_admin_cert(b, admin, { now = NOW + 336 * DAY })
      assert.is_true(renewed)
      assert.are_not.equal(admin.crt, new.crt)
      assert.are.equal(NOW + 336 * DAY, crypto.parse_cert(new.crt).not_before)
      local _
      _, renewed = secrets.renew_admin_cert(b, admin, { now = NOW + 300 * DAY, min_days = 90 })
      assert.is_true(renewed)
    end)

    it("is renewed when it is missing, from another CA, or its key does not match", function()
      local b = bundle()
      local other = quick()
      local foreign = assert(secrets.admin_cert(other, { now = NOW }))
      local _, renewed = secrets.renew_admin_cert(b, foreign, { now = NOW })
      assert.is_true(renewed)
      local admin = assert(secrets.admin_cert(b, { now = NOW }))
      _, renewed = secrets.renew_admin_cert(b, { crt = admin.crt, key = foreign.key },
        { now = NOW })
      assert.is_true(renewed)
      local fresh
      fresh, renewed = secrets.renew_admin_cert(b, nil, { now = NOW })
      assert.is_true(renewed)
      assert.is_true(crypto.verify_chain(fresh.crt, { b.certs.os.crt },
        { purpose = "client", at = NOW }))
    end)

    it("needs the OS CA and rejects unknown options", function()
      fails("no OS CA", secrets.admin_cert({ certs = {} }))
      assert.has_error(function() secrets.admin_cert(bundle(), { ttl = 1 }) end)
      assert.has_error(function() secrets.renew_admin_cert(bundle(), "pem") end)
    end)
  end)

  it("recognises Talos tokens", function()
    assert.is_true(secrets.is_token("abcdef.0123456789abcdef"))
    assert.is_false(secrets.is_token("abcdef.0123456789abcde"))
    assert.is_false(secrets.is_token("ABCDEF.0123456789abcdef"))
    assert.is_false(secrets.is_token(nil))
  end)
end)
