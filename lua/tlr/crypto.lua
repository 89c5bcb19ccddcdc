--- tlr.crypto: random bytes, digests, HMAC, base64/hex, keys and X.509.
---
--- The mechanisms are native (tlr.crypto.core for keys and digests,
--- tlr.x509.core for certificates); this module validates options, fills in
--- defaults and keeps the API plain: PEM strings and tables in and out, keys
--- as tlr.crypto.Key handles.  Bad input data returns `nil, msg, code`
--- ("EINVAL" for malformed input, "ECRYPTO" for a failed key, certificate or
--- signature operation); wrong argument types and unknown option keys raise.
local core = require "tlr.crypto.core"
local x509 = require "tlr.x509.core"
local sched = require "tlr.sched"
local opts = require "tlr.opts"

local M = {}

---@class tlr.crypto.Key
---@field pem fun(self: tlr.crypto.Key, opts?: tlr.crypto.PemOpts): string?, string?, string?
---@field public_pem fun(self: tlr.crypto.Key): string?, string?, string?
---@field public_key fun(self: tlr.crypto.Key): tlr.crypto.Key
---@field type fun(self: tlr.crypto.Key): "ed25519"|"ecdsa"|"rsa"
---@field bits fun(self: tlr.crypto.Key): integer
---@field curve fun(self: tlr.crypto.Key): string?
---@field is_private fun(self: tlr.crypto.Key): boolean
---@field sign fun(self: tlr.crypto.Key, data: string): string?, string?, string?
---@field verify fun(self: tlr.crypto.Key, data: string, sig: string): boolean
---@field close fun(self: tlr.crypto.Key)

---@class tlr.crypto.PemOpts
---@field format? "pkcs8"|"sec1"|"pkcs1"|"ed25519"

---@class tlr.crypto.CertOpts
---@field subject? table<string, string|string[]> {CN=, O=, OU=, C=, ST=, L=}
---@field days? integer
---@field not_before? integer unix seconds
---@field not_after? integer unix seconds
---@field key_usage? string[]
---@field ext_key_usage? string[]
---@field dns_names? string[]
---@field ip_addresses? string[]
---@field is_ca? boolean
---@field path_len? integer

---@class tlr.crypto.CaOpts: tlr.crypto.CertOpts
---@field key tlr.crypto.Key|string

---@class tlr.crypto.SignOpts: tlr.crypto.CertOpts
---@field ca_cert string PEM
---@field ca_key tlr.crypto.Key|string
---@field csr? string PEM
---@field public_key? tlr.crypto.Key|string

---@class tlr.crypto.Hash
---@field update fun(self: tlr.crypto.Hash, data: string): tlr.crypto.Hash
---@field digest fun(self: tlr.crypto.Hash): string
---@field close fun(self: tlr.crypto.Hash)

local DIGESTS = { sha256 = true, sha512 = true, sha384 = true, sha1 = true, md5 = true }

local function check_alg(fname, alg)
  opts.arg(DIGESTS[alg], fname, "unknown digest '" .. tostring(alg) .. "'")
end

local function check_string(fname, v, what)
  opts.arg(type(v) == "string", fname, what .. " must be a string, got " .. type(v))
end

-- ========== bytes ==========

--- Returns `n` cryptographically random bytes.
---@param n integer
---@return string? bytes, string? msg, string? code
function M.random(n)
  opts.arg(math.type(n) == "integer" and n >= 0, "random",
    "byte count must be a non-negative integer")
  return core.random(n)
end

--- Hashes `data`; the digest is raw bytes, or lowercase hex with `{hex=true}`.
---@param alg "sha256"|"sha512"|"sha384"|"sha1"|"md5"
---@param data string
---@param o? {hex?: boolean}
---@return string? digest, string? msg, string? code
function M.digest(alg, data, o)
  o = opts.check("digest", o, { hex = "boolean" })
  check_alg("digest", alg)
  check_string("digest", data, "data")
  local d, msg, code = core.digest(alg, data)
  if not d then return nil, msg, code end
  return o.hex and core.hex_encode(d) or d
end

--- SHA-256 of `data` (raw, or hex with `{hex=true}`).
---@param data string
---@param o? {hex?: boolean}
---@return string
function M.sha256(data, o) return M.digest("sha256", data, o) end

--- SHA-512 of `data` (raw, or hex with `{hex=true}`).
---@param data string
---@param o? {hex?: boolean}
---@return string
function M.sha512(data, o) return M.digest("sha512", data, o) end

--- HMAC of `data` under `key` (raw, or hex with `{hex=true}`).
---@param alg "sha256"|"sha512"|"sha384"|"sha1"|"md5"
---@param key string
---@param data string
---@param o? {hex?: boolean}
---@return string? mac, string? msg, string? code
function M.hmac(alg, key, data, o)
  o = opts.check("hmac", o, { hex = "boolean" })
  check_alg("hmac", alg)
  check_string("hmac", key, "key")
  check_string("hmac", data, "data")
  local mac, msg, code = core.hmac(alg, key, data)
  if not mac then return nil, msg, code end
  return o.hex and core.hex_encode(mac) or mac
end

--- Starts a streaming hash: `h:update(chunk)` ..., then `h:digest()` (raw).
---@param alg "sha256"|"sha512"|"sha384"|"sha1"|"md5"
---@return tlr.crypto.Hash? hash, string? msg, string? code
function M.hash(alg)
  check_alg("hash", alg)
  return core.hash(alg)
end

--- Compares two strings in constant time (for MACs and tokens).
---@param a string
---@param b string
---@return boolean
function M.equal(a, b)
  check_string("equal", a, "a")
  check_string("equal", b, "b")
  return core.equal(a, b)
end

--- Base64-encodes `s`: standard alphabet with padding, or with `{url=true}`
--- the URL alphabet without padding.
---@param s string
---@param o? {url?: boolean}
---@return string
function M.base64_encode(s, o)
  o = opts.check("base64_encode", o, { url = "boolean" })
  check_string("base64_encode", s, "input")
  return core.base64_encode(s, o.url)
end

--- Decodes base64 (line breaks ignored).  The standard alphabet needs its
--- padding; with `{url=true}` padding is optional.
---@param s string
---@param o? {url?: boolean}
---@return string? bytes, string? msg, string? code
function M.base64_decode(s, o)
  o = opts.check("base64_decode", o, { url = "boolean" })
  check_string("base64_decode", s, "input")
  return core.base64_decode(s, o.url)
end

--- Lowercase hex of `s`.
---@param s string
---@return string
function M.hex_encode(s)
  check_string("hex_encode", s, "input")
  return core.hex_encode(s)
end

--- Decodes hex (either case).
---@param s string
---@return string? bytes, string? msg, string? code
function M.hex_decode(s)
  check_string("hex_decode", s, "input")
  return core.hex_decode(s)
end

-- ========== keys ==========

--- Generates a key.  RSA runs on the worker pool, so other tasks keep
--- running meanwhile (RSA-4096 takes about a second).
---@param o {type: "ed25519"|"ecdsa"|"rsa", curve?: "P-256"|"P-384"|"P-521", bits?: integer}
---@return tlr.crypto.Key? key, string? msg, string? code
function M.generate_key(o)
  opts.arg(type(o) == "table", "generate_key", "options table expected")
  o = opts.check("generate_key", o, { type = "string", curve = "string", bits = "integer" })
  local t = o.type
  opts.arg(t == "ed25519" or t == "ecdsa" or t == "rsa", "generate_key",
    "type must be 'ed25519', 'ecdsa' or 'rsa'")
  opts.arg(o.curve == nil or t == "ecdsa", "generate_key", "'curve' is for ecdsa keys")
  opts.arg(o.bits == nil or t == "rsa", "generate_key", "'bits' is for rsa keys")
  if t ~= "rsa" then return core.generate_key(t, o.curve) end
  local bits = o.bits or 2048
  opts.arg(bits >= 2048 and bits <= 8192 and bits % 8 == 0, "generate_key",
    "bits must be a multiple of 8 in 2048..8192")
  local job <close> = core.rsa_job(bits)
  return sched.await_job(job)
end

--- Reads a key from PEM: "PRIVATE KEY" (PKCS#8), "ED25519 PRIVATE KEY"
--- (Talos), "EC PRIVATE KEY" (SEC1), "RSA PRIVATE KEY" (PKCS#1) or
--- "PUBLIC KEY" (a public-only key).
---@param pem string
---@return tlr.crypto.Key? key, string? msg, string? code
function M.load_key(pem)
  check_string("load_key", pem, "pem")
  return core.load_key(pem)
end

local function is_key(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "tlr.crypto.Key"
end

-- A Key from a Key or PEM option; returns nil, msg, code for a bad PEM.
local function key_arg(fname, name, v, need_private)
  opts.arg(is_key(v) or type(v) == "string", fname,
    name .. " must be a tlr.crypto.Key or PEM string")
  local key, msg, code = v, nil, nil
  if type(v) == "string" then
    key, msg, code = core.load_key(v)
    if not key then return nil, name .. ": " .. msg, code end
  end
  opts.arg(not need_private or key:is_private(), fname, name .. " must be a private key")
  return key
end

-- ========== certificates ==========

local RDN_ORDER = { "C", "ST", "L", "O", "OU", "CN" } -- the order Go's crypto/x509 writes
local RDN_ATTRS = {}
for _, a in ipairs(RDN_ORDER) do RDN_ATTRS[a] = true end

-- {CN=, O= string or list, ...} -> {{"C", v}, {"O", v}, ...}
local function subject_arg(fname, subject)
  if subject == nil then return {} end
  opts.arg(type(subject) == "table", fname, "subject must be a table")
  for k in pairs(subject) do
    opts.arg(RDN_ATTRS[k], fname,
      "unknown subject attribute '" .. tostring(k) .. "' (C ST L O OU CN)")
  end
  local list = {}
  for _, a in ipairs(RDN_ORDER) do
    local v = subject[a]
    for _, s in ipairs(type(v) == "table" and v or { v }) do
      opts.arg(type(s) == "string", fname,
        "subject." .. a .. " must be a string or list of strings")
      list[#list + 1] = { a, s }
    end
  end
  return list
end

local function list_arg(fname, name, v)
  if v == nil then return nil end
  opts.arg(type(v) == "table", fname, name .. " must be a list of strings")
  for i, s in ipairs(v) do
    opts.arg(type(s) == "string", fname, string.format("%s[%d] must be a string", name, i))
  end
  return v
end

-- not_before/not_after from the options: explicit times win over days.
local function validity(fname, o, default_days)
  local nb = o.not_before or os.time()
  local na = o.not_after or (nb + (o.days or default_days) * 86400)
  opts.arg(o.days == nil or o.not_after == nil, fname, "give days or not_after, not both")
  opts.arg(na > nb, fname, "not_after must be later than not_before")
  return nb, na
end

local CERT_OPTS = {
  subject = "table", days = "integer", not_before = "integer", not_after = "integer",
  key_usage = "table", ext_key_usage = "table", dns_names = "table", ip_addresses = "table",
  is_ca = "boolean", path_len = "integer",
}

local function cert_spec(fname, o, spec, default_days)
  spec.subject = subject_arg(fname, o.subject)
  spec.dns_names = list_arg(fname, "dns_names", o.dns_names)
  spec.ip_addresses = list_arg(fname, "ip_addresses", o.ip_addresses)
  spec.key_usage = list_arg(fname, "key_usage", o.key_usage)
  spec.ext_key_usage = list_arg(fname, "ext_key_usage", o.ext_key_usage)
  spec.not_before, spec.not_after = validity(fname, o, default_days)
  return spec
end

local function with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

--- Creates a self-signed certificate for `key`.  The defaults make the CA
--- Talos makes: CA:TRUE, key usage cert_sign + digital_signature, extended
--- key usage server_auth + client_auth, 10 years from now.  An empty or
--- absent subject is allowed.  With `is_ca=false` it makes a self-signed
--- leaf (key usage digital_signature, server_auth) instead.
---@param o tlr.crypto.CaOpts
---@return string? pem, string? msg, string? code
function M.create_ca(o)
  opts.arg(type(o) == "table", "create_ca", "options table expected")
  o = opts.check("create_ca", o, with(CERT_OPTS, { key = "any" }))
  local key, msg, code = key_arg("create_ca", "key", o.key, true)
  if not key then return nil, msg, code end
  local ca = o.is_ca ~= false
  local spec = cert_spec("create_ca", o, { signer = key, public_key = key, is_ca = ca,
    path_len = o.path_len }, ca and 3650 or 365)
  spec.key_usage = spec.key_usage
    or (ca and { "cert_sign", "digital_signature" } or { "digital_signature" })
  spec.ext_key_usage = spec.ext_key_usage
    or (ca and { "server_auth", "client_auth" } or { "server_auth" })
  return x509.create_cert(spec)
end

--- Creates a PEM certificate signing request signed by `key`.
---@param o {key: tlr.crypto.Key|string, subject?: table, dns_names?: string[],
---  ip_addresses?: string[]}
---@return string? pem, string? msg, string? code
function M.create_csr(o)
  opts.arg(type(o) == "table", "create_csr", "options table expected")
  o = opts.check("create_csr", o, { key = "any", subject = "table", dns_names = "table",
    ip_addresses = "table" })
  local key, msg, code = key_arg("create_csr", "key", o.key, true)
  if not key then return nil, msg, code end
  return x509.create_csr({ key = key, subject = subject_arg("create_csr", o.subject),
    dns_names = list_arg("create_csr", "dns_names", o.dns_names),
    ip_addresses = list_arg("create_csr", "ip_addresses", o.ip_addresses) })
end

--- Parses a PEM CSR: {subject=, subject_text=, dns_names=, ip_addresses=,
--- key_type=, key_bits=, key_curve=, public_key= (PEM), signature_valid=}.
---@param pem string
---@return table? csr, string? msg, string? code
function M.parse_csr(pem)
  check_string("parse_csr", pem, "pem")
  return x509.parse_csr(pem)
end

--- Signs a leaf certificate with a CA.  The subject's key comes from `csr`
--- (whose signature must be valid; its subject and SANs are used unless
--- given here) or from `public_key`.  Defaults: key usage
--- digital_signature + key_encipherment for RSA, digital_signature
--- otherwise; extended key usage server_auth; 1 year from now.
---@param o tlr.crypto.SignOpts
---@return string? pem, string? msg, string? code
function M.sign_cert(o)
  opts.arg(type(o) == "table", "sign_cert", "options table expected")
  o = opts.check("sign_cert", o, with(CERT_OPTS, { ca_cert = "string", ca_key = "any",
    csr = "string", public_key = "any" }))
  opts.arg(o.ca_cert ~= nil, "sign_cert", "ca_cert is required")
  opts.arg((o.csr == nil) ~= (o.public_key == nil), "sign_cert",
    "give exactly one of csr and public_key")
  local ca_key, msg, code = key_arg("sign_cert", "ca_key", o.ca_key, true)
  if not ca_key then return nil, msg, code end
  local pub
  local fields = {}
  for k, v in pairs(o) do fields[k] = v end
  if o.csr then
    local csr, cmsg, ccode = x509.parse_csr(o.csr)
    if not csr then return nil, cmsg, ccode end
    if not csr.signature_valid then
      return nil, "sign_cert: the CSR's signature does not verify", "ECRYPTO"
    end
    pub, msg, code = core.load_key(csr.public_key or "")
    if not pub then return nil, "sign_cert: the CSR's key: " .. msg, code end
    if fields.subject == nil then
      for attr in pairs(csr.subject) do
        if not RDN_ATTRS[attr] then
          return nil, "sign_cert: the CSR's subject has an unsupported attribute '" .. attr .. "'",
            "EINVAL"
        end
      end
      fields.subject = csr.subject
    end
    if fields.dns_names == nil and fields.ip_addresses == nil then
      fields.dns_names, fields.ip_addresses = csr.dns_names, csr.ip_addresses
    end
  else
    pub, msg, code = key_arg("sign_cert", "public_key", o.public_key, false)
    if not pub then return nil, msg, code end
  end
  local spec = cert_spec("sign_cert", fields, { signer = ca_key, public_key = pub,
    issuer = o.ca_cert, is_ca = o.is_ca or false, path_len = o.path_len }, 365)
  spec.key_usage = spec.key_usage
    or (pub:type() == "rsa" and { "digital_signature", "key_encipherment" }
      or { "digital_signature" })
  spec.ext_key_usage = spec.ext_key_usage or { "server_auth" }
  return x509.create_cert(spec)
end

--- Parses the first certificate of a PEM text into a table: version,
--- subject, issuer ({CN=, O=, ...}; a list where an attribute repeats),
--- subject_text, issuer_text (RFC 2253), serial (hex), not_before,
--- not_after (unix seconds), dns_names, ip_addresses, is_ca, path_len,
--- key_usage, ext_key_usage, fingerprint_sha256 ("AB:CD:..."),
--- subject_key_id, authority_key_id (hex), signature_algorithm,
--- self_signed, key_type, key_bits, key_curve, public_key (PEM).
---@param pem string
---@return table? cert, string? msg, string? code
function M.parse_cert(pem)
  check_string("parse_cert", pem, "pem")
  return x509.parse_cert(pem)
end

--- Parses every certificate of a PEM bundle; each table also has `pem`.
---@param pem string
---@return table[]? certs, string? msg, string? code
function M.parse_certs(pem)
  check_string("parse_certs", pem, "pem")
  local list = {}
  local pattern = "%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-"
  for block in pem:gmatch(pattern) do
    local cert, msg, code = x509.parse_cert(block)
    if not cert then return nil, string.format("certificate %d: %s", #list + 1, msg), code end
    cert.pem = block .. "\n"
    list[#list + 1] = cert
  end
  if #list == 0 then return nil, "parse_certs: no CERTIFICATE block", "EINVAL" end
  return list
end

--- Verifies `leaf` against the trust anchors `cas` (PEM strings, each may
--- hold several certificates).  Returns true, or nil, reason, "ECRYPTO"
--- (expired, unknown issuer, bad signature, wrong purpose or host).
---@param leaf string PEM
---@param cas string[] PEM
---@param o? {at?: integer, purpose?: "server"|"client", host?: string, untrusted?: string[]}
---@return true? ok, string? msg, string? code
function M.verify_chain(leaf, cas, o)
  o = opts.check("verify_chain", o, { at = "integer", purpose = "string", host = "string",
    untrusted = "table" })
  check_string("verify_chain", leaf, "leaf")
  list_arg("verify_chain", "cas", cas)
  opts.arg(cas ~= nil, "verify_chain", "cas must be a list of PEM strings")
  opts.arg(o.purpose == nil or o.purpose == "server" or o.purpose == "client", "verify_chain",
    "purpose must be 'server' or 'client'")
  list_arg("verify_chain", "untrusted", o.untrusted)
  return x509.verify_chain(leaf, cas, o.untrusted, o.at, o.purpose, o.host)
end

return M
