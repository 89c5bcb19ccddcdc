--- tlr.talos.secrets: the cluster secrets bundle, made the way Talos makes
--- it, read and written in talosctl's `gen secrets` YAML, and the admin
--- client certificate for talosconfig.
---
--- A bundle is a plain table with the keys of talosctl's secrets.yaml; the
--- certificates and keys in it are PEM text (the YAML file holds them
--- base64-encoded):
---
---     cluster    = { id =, secret = }
---     secrets    = { bootstraptoken =, secretboxencryptionsecret = }  -- or aescbcencryptionsecret
---     trustdinfo = { token = }
---     certs      = { etcd = {crt=, key=}, k8s = {crt=, key=}, k8saggregator = {crt=, key=},
---                    k8sserviceaccount = {key=}, os = {crt=, key=} }
---
--- Bad input data returns `nil, msg, "EINVAL"`; wrong argument types and
--- unknown option keys raise.
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"

local M = {}

---@class tlr.talos.CertAndKey
---@field crt string PEM certificate
---@field key string PEM private key

---@class tlr.talos.Bundle
---@field cluster {id: string, secret: string}
---@field secrets tlr.talos.BundleSecrets
---@field trustdinfo {token: string}
---@field certs tlr.talos.BundleCerts

---@class tlr.talos.BundleSecrets
---@field bootstraptoken string
---@field secretboxencryptionsecret? string
---@field aescbcencryptionsecret? string

---@class tlr.talos.BundleCerts
---@field etcd tlr.talos.CertAndKey
---@field k8s tlr.talos.CertAndKey
---@field k8saggregator tlr.talos.CertAndKey
---@field k8sserviceaccount {key: string}
---@field os tlr.talos.CertAndKey

local CA_DAYS = 3650  -- 87600h, Talos's CA validity
local ADMIN_DAYS = 365 -- 8760h, TalosAPIDefaultCertificateValidityDuration
local TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
M.TOKEN_PATTERN = "^[a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9][a-z0-9]%.[a-z0-9]+$"

-- Version contract numbers: "v1.11.6" / "1.11" -> 1, 11 (nil for junk).
local function parse_version(v)
  local major, minor = tostring(v):match("^v?(%d+)%.(%d+)")
  if not major then return nil end
  return tonumber(major), tonumber(minor)
end

local function newer_than(v, major, minor)
  if v == nil then return true end -- no version: the current contract
  local a, b = parse_version(v)
  return a > major or (a == major and b > minor)
end

--- True when `s` has the shape of a Talos token: `[a-z0-9]{6}.[a-z0-9]{16}`.
---@param s any
---@return boolean
function M.is_token(s)
  return type(s) == "string" and #s == 23 and s:match(M.TOKEN_PATTERN) ~= nil
end

-- A random token of `a`.`b` characters from the 36-letter alphabet; bytes
-- >= 252 are dropped so that every letter is equally likely (as Talos does).
local function token(a, b)
  local out, need = {}, a + b
  while #out < need do
    local bytes = assert(crypto.random(need * 2))
    for i = 1, #bytes do
      local c = bytes:byte(i)
      if c < 252 and #out < need then
        local k = c % 36 + 1
        out[#out + 1] = TOKEN_ALPHABET:sub(k, k)
      end
    end
  end
  return table.concat(out, "", 1, a) .. "." .. table.concat(out, "", a + 1, need)
end

-- base64.URLEncoding (with padding) of n random bytes.
local function url_b64(n)
  local s = crypto.base64_encode(assert(crypto.random(n)))
  return (s:gsub("[+/]", { ["+"] = "-", ["/"] = "_" }))
end

local function std_b64(n) return crypto.base64_encode(assert(crypto.random(n))) end

-- A self-signed CA the way Talos's x509.NewSelfSignedCertificateAuthority
-- makes it: subject O only, CA:TRUE, cert_sign + digital_signature, server
-- and client auth, 10 years from `now`.
local function new_ca(key_type, org, now)
  local key, msg, code = crypto.generate_key { type = key_type }
  if not key then return nil, msg, code end
  local crt
  crt, msg, code = crypto.create_ca { key = key, subject = org and { O = org } or {},
    not_before = now, days = CA_DAYS }
  if not crt then return nil, msg, code end
  return { crt = crt, key = key:pem { format = key_type == "ed25519" and "ed25519" or "sec1" } }
end

local GEN_OPTS = { talos_version = "string", now = "integer", from = "table" }

--- Generates a secrets bundle as `talosctl gen secrets` does: OS CA
--- Ed25519 (O=talos); Kubernetes (O=kubernetes), aggregator (empty
--- subject) and etcd (O=etcd) CAs ECDSA P-256; all valid for 10 years;
--- service-account key RSA-4096 (on the worker pool; ECDSA P-256 for
--- contracts up to 1.6); bootstrap and trustd tokens; cluster id
--- (base64url) and secret; the secretbox secret (aescbc up to 1.2).
--- `from` is a partial bundle whose parts are kept (only the missing ones
--- are made), as Talos does when it adopts existing PKI.
---@param o? {talos_version?: string, now?: integer, from?: table}
---@return tlr.talos.Bundle? bundle, string? msg, string? code
function M.generate(o)
  o = opts.check("secrets.generate", o, GEN_OPTS)
  local v = o.talos_version
  if v ~= nil and not parse_version(v) then
    return nil, "secrets.generate: bad Talos version '" .. v .. "'", "EINVAL"
  end
  local now = o.now or os.time()
  local from = o.from or {}
  local fc = from.certs or {}
  local certs, msg, code = {}, nil, nil
  for _, item in ipairs { { "etcd", "ecdsa", "etcd" }, { "k8s", "ecdsa", "kubernetes" },
    { "k8saggregator", "ecdsa", nil }, { "os", "ed25519", "talos" } } do
    local name = item[1]
    certs[name] = fc[name]
    if certs[name] == nil then
      certs[name], msg, code = new_ca(item[2], item[3], now)
      if not certs[name] then return nil, "secrets.generate: " .. name .. " CA: " .. msg, code end
    end
  end
  certs.k8sserviceaccount = fc.k8sserviceaccount
  if certs.k8sserviceaccount == nil then
    local rsa = newer_than(v, 1, 6)
    local key
    key, msg, code = crypto.generate_key(rsa and { type = "rsa", bits = 4096 }
      or { type = "ecdsa" })
    if not key then return nil, "secrets.generate: service-account key: " .. msg, code end
    certs.k8sserviceaccount = { key = key:pem { format = rsa and "pkcs1" or "sec1" } }
  end
  local fs = from.secrets or {}
  local sec = { bootstraptoken = fs.bootstraptoken or token(6, 16) }
  if newer_than(v, 1, 2) then
    sec.secretboxencryptionsecret = fs.secretboxencryptionsecret or std_b64(32)
  else
    sec.aescbcencryptionsecret = fs.aescbcencryptionsecret or std_b64(32)
  end
  local fcl = from.cluster or {}
  local b = {
    cluster = { id = fcl.id or url_b64(32), secret = fcl.secret or std_b64(32) },
    secrets = sec,
    trustdinfo = { token = (from.trustdinfo or {}).token or token(6, 16) },
    certs = certs,
  }
  if o.from then -- what was given must hold together with what was made
    local ok, vmsg = M.validate(b)
    if not ok then return nil, "secrets.generate: from: " .. vmsg, "EINVAL" end
  end
  return b
end

-- ========== checks ==========

local function fail(msg) return nil, msg, "EINVAL" end

-- A certificate and its key: both parse and the key is the certificate's.
local function check_pair(name, pair)
  if type(pair) ~= "table" then return fail("certs." .. name .. " is required") end
  if type(pair.crt) ~= "string" or pair.crt == "" then
    return fail("certs." .. name .. ".crt is required")
  end
  if type(pair.key) ~= "string" or pair.key == "" then
    return fail("certs." .. name .. ".key is required")
  end
  local cert, msg = crypto.parse_cert(pair.crt)
  if not cert then return fail("certs." .. name .. ".crt: " .. msg) end
  local key
  key, msg = crypto.load_key(pair.key)
  if not key then return fail("certs." .. name .. ".key: " .. msg) end
  if key:public_pem() ~= cert.public_key then
    return fail("certs." .. name .. ": the key does not belong to the certificate")
  end
  return cert
end

-- Bundles that passed validate, with the contents they had then: rendering
-- 100 nodes checks the same bundle 100 times, and parsing its certificates
-- is the expensive part.
local validated = setmetatable({}, { __mode = "k" })

local function fingerprint(b)
  local parts = {}
  local function add(t, ...)
    for _, k in ipairs { ... } do t = type(t) == "table" and t[k] or nil end
    parts[#parts + 1] = type(t) == "string" and t or "\0"
  end
  add(b, "cluster", "id") add(b, "cluster", "secret") add(b, "secrets", "bootstraptoken")
  add(b, "secrets", "secretboxencryptionsecret") add(b, "secrets", "aescbcencryptionsecret")
  add(b, "trustdinfo", "token") add(b, "certs", "k8sserviceaccount", "key")
  for _, name in ipairs { "etcd", "k8s", "k8saggregator", "os" } do
    add(b, "certs", name, "crt") add(b, "certs", name, "key")
  end
  return table.concat(parts, "\1")
end

local check_bundle

--- Checks a bundle: every part present, tokens well-formed, each CA
--- certificate parses and its key matches it, the service-account key
--- parses, exactly one of the secretbox and aescbc secrets.
---@param b tlr.talos.Bundle
---@return true? ok, string? msg, string? code
function M.validate(b)
  opts.arg(type(b) == "table", "secrets.validate", "bundle table expected")
  local fp = fingerprint(b)
  if validated[b] == fp then return true end
  local ok, msg, code = check_bundle(b)
  if ok then validated[b] = fp end
  return ok, msg, code
end

function check_bundle(b)
  local c, s, t = b.cluster, b.secrets, b.trustdinfo
  if type(c) ~= "table" then return fail("cluster is required") end
  if type(c.id) ~= "string" or c.id == "" then return fail("cluster.id is required") end
  if type(c.secret) ~= "string" or c.secret == "" then return fail("cluster.secret is required") end
  if type(s) ~= "table" then return fail("secrets is required") end
  if not M.is_token(s.bootstraptoken) then
    return fail("secrets.bootstraptoken must look like [a-z0-9]{6}.[a-z0-9]{16}")
  end
  local box, cbc = s.secretboxencryptionsecret, s.aescbcencryptionsecret
  if (box == nil or box == "") == (cbc == nil or cbc == "") then
    return fail("exactly one of secrets.secretboxencryptionsecret and " ..
      "secrets.aescbcencryptionsecret is required")
  end
  if type(t) ~= "table" or not M.is_token(t.token) then
    return fail("trustdinfo.token must look like [a-z0-9]{6}.[a-z0-9]{16}")
  end
  if type(b.certs) ~= "table" then return fail("certs is required") end
  for _, name in ipairs { "etcd", "k8s", "k8saggregator", "os" } do
    local ok, msg = check_pair(name, b.certs[name])
    if not ok then return fail(msg) end
  end
  local sa = b.certs.k8sserviceaccount
  if type(sa) ~= "table" or type(sa.key) ~= "string" then
    return fail("certs.k8sserviceaccount.key is required")
  end
  local key, msg = crypto.load_key(sa.key)
  if not key then return fail("certs.k8sserviceaccount.key: " .. msg) end
  return true
end

-- ========== talosctl's secrets.yaml ==========

-- Key order of talosctl's output (Go struct order), at every level.
local YAML_ORDER = { "cluster", "secrets", "trustdinfo", "certs", "id", "secret",
  "bootstraptoken", "secretboxencryptionsecret", "aescbcencryptionsecret", "token",
  "etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os", "crt", "key" }

local PAIRS = { "etcd", "k8s", "k8saggregator", "os" }

--- Writes a bundle as talosctl's secrets.yaml (4-space indent, talosctl's
--- key order, certificates and keys base64-encoded PEM).
---@param b tlr.talos.Bundle
---@return string? text, string? msg, string? code
function M.encode(b)
  local ok, msg, code = M.validate(b)
  if not ok then return nil, msg, code end
  local certs = {}
  for _, name in ipairs(PAIRS) do
    certs[name] = { crt = crypto.base64_encode(b.certs[name].crt),
      key = crypto.base64_encode(b.certs[name].key) }
  end
  certs.k8sserviceaccount = { key = crypto.base64_encode(b.certs.k8sserviceaccount.key) }
  local sec = { bootstraptoken = b.secrets.bootstraptoken }
  if b.secrets.secretboxencryptionsecret and b.secrets.secretboxencryptionsecret ~= "" then
    sec.secretboxencryptionsecret = b.secrets.secretboxencryptionsecret
  else
    sec.aescbcencryptionsecret = b.secrets.aescbcencryptionsecret
  end
  return yaml.encode({
    cluster = { id = b.cluster.id, secret = b.cluster.secret },
    secrets = sec,
    trustdinfo = { token = b.trustdinfo.token },
    certs = certs,
  }, { indent = 4, order = YAML_ORDER })
end

local function field(t, ...)
  for _, k in ipairs { ... } do
    if type(t) ~= "table" then return nil end
    t = t[k]
  end
  return t
end

local function unb64(path, v)
  if v == nil or v == yaml.null or v == "" then return nil end
  if type(v) ~= "string" then return nil, path .. " must be a base64 string" end
  local pem, msg = crypto.base64_decode((v:gsub("%s", "")))
  if not pem then return nil, path .. ": " .. msg end
  return pem
end

--- Reads talosctl's secrets.yaml (from `talosctl gen secrets`, or one tlr
--- wrote) into a bundle, and validates it.
---@param text string
---@return tlr.talos.Bundle? bundle, string? msg, string? code
function M.decode(text)
  opts.arg(type(text) == "string", "secrets.decode", "YAML text expected")
  local doc, msg = yaml.decode(text, { null = "nil" })
  if not doc then return fail("secrets.yaml: " .. tostring(msg)) end
  if type(doc) ~= "table" then return fail("secrets.yaml: a mapping expected") end
  local function str(...) local v = field(doc, ...) return type(v) == "string" and v or nil end
  local b = {
    cluster = { id = str("cluster", "id"), secret = str("cluster", "secret") },
    secrets = { bootstraptoken = str("secrets", "bootstraptoken"),
      secretboxencryptionsecret = str("secrets", "secretboxencryptionsecret"),
      aescbcencryptionsecret = str("secrets", "aescbcencryptionsecret") },
    trustdinfo = { token = str("trustdinfo", "token") },
    certs = {},
  }
  for _, name in ipairs(PAIRS) do
    local pair = {}
    for _, part in ipairs { "crt", "key" } do
      local pem, err = unb64("certs." .. name .. "." .. part, field(doc, "certs", name, part))
      if err then return fail("secrets.yaml: " .. err) end
      pair[part] = pem
    end
    b.certs[name] = pair
  end
  local sa, err = unb64("certs.k8sserviceaccount.key",
    field(doc, "certs", "k8sserviceaccount", "key"))
  if err then return fail("secrets.yaml: " .. err) end
  b.certs.k8sserviceaccount = { key = sa }
  local ok, vmsg = M.validate(b)
  if not ok then return fail("secrets.yaml: " .. vmsg) end
  return b
end

--- Builds a bundle from a control-plane machine config (the v1alpha1
--- document, as a table), for adopting a cluster whose secrets.yaml is lost.
---@param doc table
---@return tlr.talos.Bundle? bundle, string? msg, string? code
function M.from_config(doc)
  opts.arg(type(doc) == "table", "secrets.from_config", "machine config table expected")
  local function pem(...)
    local v = field(doc, ...)
    if type(v) ~= "string" or v == "" then return nil end
    return crypto.base64_decode(v)
  end
  local token = field(doc, "cluster", "token")
  local b = {
    cluster = { id = field(doc, "cluster", "id"), secret = field(doc, "cluster", "secret") },
    secrets = { bootstraptoken = token,
      secretboxencryptionsecret = field(doc, "cluster", "secretboxEncryptionSecret"),
      aescbcencryptionsecret = field(doc, "cluster", "aescbcEncryptionSecret") },
    trustdinfo = { token = field(doc, "machine", "token") },
    certs = {
      os = { crt = pem("machine", "ca", "crt"), key = pem("machine", "ca", "key") },
      k8s = { crt = pem("cluster", "ca", "crt"), key = pem("cluster", "ca", "key") },
      k8saggregator = { crt = pem("cluster", "aggregatorCA", "crt"),
        key = pem("cluster", "aggregatorCA", "key") },
      etcd = { crt = pem("cluster", "etcd", "ca", "crt"),
        key = pem("cluster", "etcd", "ca", "key") },
      k8sserviceaccount = { key = pem("cluster", "serviceAccount", "key") },
    },
  }
  local ok, msg = M.validate(b)
  if not ok then return fail("machine config: " .. msg) end
  return b
end

-- ========== admin client certificate ==========

local ADMIN_OPTS = { roles = "table", days = "integer", now = "integer" }

--- Makes a talosconfig client certificate signed by the OS CA, as Talos's
--- NewAdminCertificateAndKey does: an Ed25519 key ("ED25519 PRIVATE KEY"),
--- a CSR whose subject is O=<each role> and no CN, key usage
--- digital_signature, extended key usage exactly client_auth, valid from
--- now for 365 days.
---@param b tlr.talos.Bundle
---@param o? {roles?: string[], days?: integer, now?: integer}
---@return tlr.talos.CertAndKey? admin, string? msg, string? code
function M.admin_cert(b, o)
  opts.arg(type(b) == "table", "secrets.admin_cert", "bundle table expected")
  o = opts.check("secrets.admin_cert", o, ADMIN_OPTS)
  local roles = o.roles or { "os:admin" }
  opts.arg(#roles > 0, "secrets.admin_cert", "roles must not be empty")
  local os_ca = field(b, "certs", "os")
  if type(os_ca) ~= "table" or type(os_ca.crt) ~= "string" or type(os_ca.key) ~= "string" then
    return fail("admin_cert: the bundle has no OS CA (certs.os)")
  end
  local ca_key, msg, code = crypto.load_key(os_ca.key)
  if not ca_key then return nil, "admin_cert: certs.os.key: " .. msg, code end
  local ed = ca_key:type() == "ed25519"
  local key = assert(crypto.generate_key { type = ed and "ed25519" or "ecdsa" })
  local csr
  csr, msg, code = crypto.create_csr { key = key, subject = { O = roles } }
  if not csr then return nil, "admin_cert: " .. msg, code end
  local crt
  crt, msg, code = crypto.sign_cert { ca_cert = os_ca.crt, ca_key = ca_key, csr = csr,
    key_usage = { "digital_signature" }, ext_key_usage = { "client_auth" },
    not_before = o.now or os.time(), days = o.days or ADMIN_DAYS }
  if not crt then return nil, "admin_cert: " .. msg, code end
  return { crt = crt, key = key:pem { format = ed and "ed25519" or "sec1" } }
end

local RENEW_OPTS = { roles = "table", days = "integer", now = "integer", min_days = "integer" }

--- Keeps `admin` while it is valid for more than `min_days` (default 30)
--- days, was issued by the bundle's OS CA and its key matches; otherwise
--- (also when `admin` is nil) makes a new one.  Returns the certificate to
--- use and whether it is new.
---@param b tlr.talos.Bundle
---@param admin? tlr.talos.CertAndKey
---@param o? {roles?: string[], days?: integer, now?: integer, min_days?: integer}
---@return tlr.talos.CertAndKey? admin, boolean|string renewed_or_msg, string? code
function M.renew_admin_cert(b, admin, o)
  opts.arg(admin == nil or type(admin) == "table", "secrets.renew_admin_cert",
    "admin must be nil or a {crt=, key=} table")
  o = opts.check("secrets.renew_admin_cert", o, RENEW_OPTS)
  local now = o.now or os.time()
  local keep = false
  if admin and type(admin.crt) == "string" and type(admin.key) == "string" then
    local cert = crypto.parse_cert(admin.crt)
    local key = crypto.load_key(admin.key)
    local os_crt = field(b, "certs", "os", "crt")
    keep = cert ~= nil and key ~= nil and type(os_crt) == "string"
      and key:public_pem() == cert.public_key
      and cert.not_after - now > (o.min_days or 30) * 86400
      and crypto.verify_chain(admin.crt, { os_crt }, { at = now, purpose = "client" }) == true
  end
  if keep then return admin, false end
  local new, msg, code = M.admin_cert(b, { roles = o.roles, days = o.days, now = now })
  if not new then return nil, msg, code end
  return new, true
end

return M
