--- tlr.talos.validate: checks machine config documents before they are sent.
---
--- Two passes: the Talos JSON schema (tlr.talos.schema, the generated
--- description-free copy of the 1.11 schema, plus what 1.12 added to the
--- documents tlr emits), then Talos's own semantic rules from
--- v1alpha1_validation.go (CA keys by role, VIP only on control planes, an
--- install disk, addresses and routes that parse, ...).  Every problem is
--- reported as "<node>: <path>: <rule>".
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"
local schema = require "tlr.talos.schema"

local M = {}
local null, array_mt = yaml.null, yaml.array_mt

-- ========== a small regex engine for the schema's patterns ==========
-- ECMA-style subset: ^ $ . | (…) (?:…) […] [^…] \d \w \s \D \W \S, the
-- quantifiers ? * + {m} {m,} {m,n}; matching on code points, unanchored.

local function codepoints(s)
  local out = {}
  if utf8.len(s) then
    for _, c in utf8.codes(s) do out[#out + 1] = c end
  else
    for i = 1, #s do out[i] = s:byte(i) end
  end
  return out
end

local function in_range(c, lo, hi) return c >= lo and c <= hi end
local CLASS = {
  d = function(c) return in_range(c, 48, 57) end,
  w = function(c)
    return in_range(c, 48, 57) or in_range(c, 65, 90) or in_range(c, 97, 122) or c == 95
  end,
  s = function(c) return c == 32 or in_range(c, 9, 13) end,
}

local function parse_regex(src)
  local p, pos = codepoints(src), 1
  local function peek() return p[pos] end
  local function char(ch) return utf8.char(ch) end
  local parse_alt

  local function escape()
    local c = p[pos]
    pos = pos + 1
    local ch = char(c or 0)
    if CLASS[ch] then return { t = "fn", f = CLASS[ch] } end
    if CLASS[ch:lower()] then
      local f = CLASS[ch:lower()]
      return { t = "fn", f = function(x) return not f(x) end }
    end
    local lit = ({ n = 10, t = 9, r = 13 })[ch]
    return { t = "char", c = lit or c }
  end

  local function class()
    local items, neg = {}, false
    if char(peek()) == "^" then neg, pos = true, pos + 1 end
    local first = true
    while pos <= #p and (first or char(peek()) ~= "]") do
      first = false
      local item
      if char(peek()) == "\\" then
        pos = pos + 1
        item = escape()
      else
        item = { t = "char", c = p[pos] }
        pos = pos + 1
      end
      local nxt = p[pos + 1]
      if item.t == "char" and char(peek() or 0) == "-" and nxt and char(nxt) ~= "]" then
        local hi = p[pos + 1]
        pos = pos + 2
        item = { t = "range", lo = item.c, hi = hi }
      end
      items[#items + 1] = item
    end
    assert(char(peek() or 0) == "]", "regex: unterminated [")
    pos = pos + 1
    return { t = "set", items = items, neg = neg }
  end

  local function atom()
    local ch = char(peek())
    pos = pos + 1
    if ch == "(" then
      if char(peek()) == "?" and char(p[pos + 1]) == ":" then pos = pos + 2 end
      local alt = parse_alt()
      assert(char(peek() or 0) == ")", "regex: unterminated (")
      pos = pos + 1
      return { t = "group", alt = alt }
    elseif ch == "[" then return class()
    elseif ch == "." then return { t = "any" }
    elseif ch == "^" then return { t = "bol" }
    elseif ch == "$" then return { t = "eol" }
    elseif ch == "\\" then return escape()
    end
    return { t = "char", c = p[pos - 1] }
  end

  local function quant(node)
    local ch = char(peek() or 0)
    local min, max
    if ch == "*" then min, max = 0, math.huge
    elseif ch == "+" then min, max = 1, math.huge
    elseif ch == "?" then min, max = 0, 1
    elseif ch == "{" then
      local rest = src:sub(utf8.offset(src, pos))
      local a, comma, b, len = rest:match("^{(%d+)(,?)(%d*)}()")
      if not a then return node end
      min = tonumber(a)
      max = comma == "" and min or (b == "" and math.huge or tonumber(b))
      pos = pos + len - 2
    else
      return node
    end
    pos = pos + 1
    if char(peek() or 0) == "?" then pos = pos + 1 end -- lazy: same set of matches
    return { t = "rep", node = node, min = min, max = max }
  end

  local function parse_seq()
    local seq = {}
    while pos <= #p and char(peek()) ~= "|" and char(peek()) ~= ")" do
      seq[#seq + 1] = quant(atom())
    end
    return seq
  end

  function parse_alt()
    local alt = { parse_seq() }
    while pos <= #p and char(peek()) == "|" do
      pos = pos + 1
      alt[#alt + 1] = parse_seq()
    end
    return alt
  end

  local alt = parse_alt()
  assert(pos > #p, "regex: unexpected ')'")
  return alt
end

local match_alt

local function set_has(node, c)
  for _, it in ipairs(node.items) do
    if (it.t == "char" and it.c == c) or (it.t == "range" and c >= it.lo and c <= it.hi)
      or (it.t == "fn" and it.f(c)) then
      return not node.neg
    end
  end
  return node.neg
end

local function match_node(node, s, i, k)
  local t = node.t
  if t == "char" then return s[i] == node.c and k(i + 1) or nil end
  if t == "any" then return s[i] ~= nil and s[i] ~= 10 and k(i + 1) or nil end
  if t == "fn" then return s[i] ~= nil and node.f(s[i]) and k(i + 1) or nil end
  if t == "set" then return s[i] ~= nil and set_has(node, s[i]) and k(i + 1) or nil end
  if t == "bol" then return i == 1 and k(i) or nil end
  if t == "eol" then return i == #s + 1 and k(i) or nil end
  if t == "group" then return match_alt(node.alt, s, i, k) end
  -- rep: greedy, with an empty iteration ending the loop
  local function try(count, j)
    if count < node.max then
      local r = match_node(node.node, s, j, function(e)
        if e == j and count >= node.min then return nil end
        return try(count + 1, e)
      end)
      if r then return r end
    end
    if count >= node.min then return k(j) end
    return nil
  end
  return try(0, i)
end

local function match_seq(seq, idx, s, i, k)
  if idx > #seq then return k(i) end
  return match_node(seq[idx], s, i, function(j) return match_seq(seq, idx + 1, s, j, k) end)
end

function match_alt(alt, s, i, k)
  for _, seq in ipairs(alt) do
    local r = match_seq(seq, 1, s, i, k)
    if r then return r end
  end
  return nil
end

local compiled = {}

--- True when the ECMA-style regex `pattern` matches somewhere in `s`.
---@param pattern string
---@param s string
---@return boolean
function M.regex(pattern, s)
  local re = compiled[pattern]
  if not re then
    re = parse_regex(pattern)
    compiled[pattern] = re
  end
  local cps = codepoints(s)
  local function done(j) return j end
  for start = 1, #cps + 1 do
    if match_alt(re, cps, start, done) then return true end
  end
  return false
end

-- ========== schema ==========

local function is_list(t)
  return type(t) == "table" and (getmetatable(t) == array_mt or (#t > 0 and next(t, #t) == nil))
end

local function type_of(v)
  if type(v) == "table" then
    if next(v) == nil and getmetatable(v) ~= array_mt then return "empty" end
    return is_list(v) and "array" or "object"
  end
  if math.type(v) == "integer" then return "integer" end
  if type(v) == "number" then return "number" end
  return type(v) -- string, boolean
end

local function type_ok(want, v)
  local got = type_of(v)
  if got == want then return true end
  if got == "empty" then return want == "object" or want == "array" end
  if want == "number" then return got == "integer" end
  if want == "integer" then return got == "number" and v == math.floor(v) end
  return false
end

-- What 1.12 added to the documents tlr emits (the schema copy is 1.11's).
local ADDED_1_12 = {
  ["v1alpha1.InstallConfig"] = { grubUseUKICmdline = { type = "boolean" } },
}
local HOSTNAME_DEF = {
  additionalProperties = false, type = "object", required = { "apiVersion", "kind" },
  properties = {
    apiVersion = { enum = { "v1alpha1" } }, kind = { enum = { "HostnameConfig" } },
    auto = { enum = { "stable", "off" } }, hostname = { type = "string" },
  },
}

local views = {}

-- {defs=, kinds=} for a Talos minor version.
local function schema_view(minor)
  local key = minor >= 12 and 12 or 11
  if views[key] then return views[key] end
  local v = { defs = schema.defs, kinds = schema.kinds }
  if key == 12 then
    local defs = setmetatable({ ["network.HostnameConfigV1Alpha1"] = HOSTNAME_DEF },
      { __index = schema.defs })
    for name, extra in pairs(ADDED_1_12) do
      local def = {}
      for k, x in pairs(schema.defs[name]) do def[k] = x end
      def.properties = setmetatable(extra, { __index = schema.defs[name].properties })
      defs[name] = def
    end
    v.defs = defs
    v.kinds = setmetatable({ HostnameConfig = "network.HostnameConfigV1Alpha1" },
      { __index = schema.kinds })
  end
  views[key] = v
  return v
end

local function fmt_path(path, key)
  if type(key) == "number" then return path .. "[" .. (key - 1) .. "]" end
  if path == "" then return key end
  return path .. "." .. key
end

local function check_schema(v, node, path, defs, add)
  while node["$ref"] do node = defs[node["$ref"]:match("^#/%$defs/(.+)$")] end
  if v == null then return end -- null reads as "not set"
  if node.oneOf then
    local hits = 0
    for _, alt in ipairs(node.oneOf) do
      local bad = false
      check_schema(v, alt, path, defs, function() bad = true end)
      if not bad then hits = hits + 1 end
    end
    if hits ~= 1 then
      add(path, "schema: matches " .. hits .. " of the allowed forms, not exactly one")
    end
    return
  end
  if node.enum then
    local ok = false
    for _, e in ipairs(node.enum) do if e == v then ok = true break end end
    if not ok then
      local names = {}
      for i, e in ipairs(node.enum) do names[i] = tostring(e) end
      add(path, string.format("schema: must be one of %s, got '%s'", table.concat(names, ", "),
        tostring(v)))
      return
    end
  end
  local want = node.type
  if want and not type_ok(want, v) then
    local got = type_of(v)
    add(path, "schema: " .. want .. " expected, got " .. (got == "empty" and "table" or got))
    return
  end
  if type(v) == "string" then
    if node.pattern and not M.regex(node.pattern, v) then
      add(path, "schema: must match " .. node.pattern)
    end
    if node.format == "uri" and not v:match("^%a[%w+.-]*:[^%s]+$") then
      add(path, "schema: must be a URI")
    end
  elseif type(v) == "table" then
    if is_list(v) then
      if node.items then
        for i, x in ipairs(v) do check_schema(x, node.items, fmt_path(path, i), defs, add) end
      end
    elseif want == "object" or node.properties then
      local props, pats = node.properties or {}, node.patternProperties
      for k, x in pairs(v) do
        local sub = props[k]
        if sub == nil and pats then
          for re, s in pairs(pats) do
            if M.regex(re, tostring(k)) then sub = s break end
          end
        end
        if sub then
          check_schema(x, sub, fmt_path(path, k), defs, add)
        elseif node.additionalProperties == false then
          add(fmt_path(path, k), "schema: unknown key")
        end
      end
      for _, r in ipairs(node.required or {}) do
        if v[r] == nil then add(fmt_path(path, r), "schema: required") end
      end
    end
  end
end

-- ========== semantic rules ==========

local function parse_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs { a, b, c, d } do
    if tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return false end
  end
  return true
end

local function parse_ipv6(s)
  if s:find(":::", 1, true) or select(2, s:gsub("::", "")) > 1 then return false end
  local groups, v4 = 0, false
  local parts = {}
  for part in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    if part ~= "" then
      if i == #parts and part:find(".", 1, true) then
        if not parse_ipv4(part) then return false end
        v4 = true
      elseif not part:match("^%x%x?%x?%x?$") then
        return false
      else
        groups = groups + 1
      end
    end
  end
  groups = groups + (v4 and 2 or 0)
  if s:find("::", 1, true) then return groups < 8 end
  return groups == 8
end

--- True for an IPv4 or IPv6 address.
function M.is_ip(s)
  return type(s) == "string" and (parse_ipv4(s) or (s:find(":", 1, true) ~= nil and parse_ipv6(s)))
end

--- True for an address with a prefix length ("10.0.0.1/24", "fd00::/64").
function M.is_cidr(s)
  if type(s) ~= "string" then return false end
  local ip, bits = s:match("^(.+)/(%d+)$")
  if not ip then return false end
  local max = parse_ipv4(ip) and 32 or (M.is_ip(ip) and 128)
  return max and tonumber(bits) <= max or false
end

local function ip_or_cidr(s) return M.is_ip(s) or M.is_cidr(s) end

local DNS_NAME = "^([a-zA-Z0-9_]{1}[a-zA-Z0-9_-]{0,62}){1}" ..
  "(\\.[a-zA-Z0-9_]{1}[a-zA-Z0-9_-]{0,62})*[\\._]?$"
local LABEL_NAME = "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
local TOKEN = "^[a-z0-9]{6}\\.[a-z0-9]{16}$"

local cert_cache, cert_cache_n = {}, 0

-- nil when `b64` is base64 of a PEM that parses as `kind`, else the reason.
local function pem_problem(b64, kind)
  local key = kind .. b64
  local hit = cert_cache[key]
  if hit ~= nil then return hit or nil end
  local pem = crypto.base64_decode(b64)
  local why = false
  if not pem then
    why = "must be base64 of a PEM " .. kind
  elseif kind == "certificate" then
    local ok, msg = crypto.parse_cert(pem)
    if not ok then why = "not a certificate: " .. msg end
  else
    local ok, msg = crypto.load_key(pem)
    if not ok then why = "not a private key: " .. msg end
  end
  if cert_cache_n > 256 then cert_cache, cert_cache_n = {}, 0 end
  cert_cache[key], cert_cache_n = why, cert_cache_n + 1
  return why or nil
end

local function get(t, ...)
  for _, k in ipairs { ... } do
    if type(t) ~= "table" then return nil end
    t = t[k]
    if t == null then return nil end
  end
  return t
end

local function nonempty(s) return type(s) == "string" and s ~= "" end

local function check_pair(add, path, pair, need_key, forbid_key)
  if type(pair) ~= "table" then return end
  if nonempty(pair.crt) then
    local why = pem_problem(pair.crt, "certificate")
    if why then add(path .. ".crt", why) end
  end
  if nonempty(pair.key) then
    if forbid_key then add(path .. ".key", forbid_key) end
    local why = pem_problem(pair.key, "key")
    if why and not forbid_key then add(path .. ".key", why) end
  elseif need_key then
    add(path .. ".key", need_key)
  end
end

local function check_addresses(add, path, list)
  for i, a in ipairs(type(list) == "table" and list or {}) do
    if not ip_or_cidr(a) then
      add(fmt_path(path .. ".addresses", i), "not an IP address or CIDR")
    end
  end
end

local function check_device(add, path, d, worker)
  if type(d) ~= "table" then return end
  local iface, sel = d.interface, d.deviceSelector
  if not nonempty(iface) and sel == nil then
    add(path, "interface or deviceSelector is required")
  elseif nonempty(iface) and sel ~= nil then
    add(path, "interface and deviceSelector are mutually exclusive")
  end
  if type(sel) == "table" and next(sel) == nil then
    add(path .. ".deviceSelector", "must not be empty")
  end
  if d.cidr ~= nil and d.addresses ~= nil then
    add(path, "cidr and addresses are mutually exclusive")
  end
  check_addresses(add, path, d.addresses)
  for i, r in ipairs(type(d.routes) == "table" and d.routes or {}) do
    local rp = fmt_path(path .. ".routes", i)
    if nonempty(get(r, "network")) and not M.is_cidr(r.network) then
      add(rp .. ".network", "not a CIDR")
    end
    if nonempty(get(r, "gateway")) and not M.is_ip(r.gateway) then
      add(rp .. ".gateway", "not an IP address")
    end
  end
  local function vip(p, v)
    if v == nil then return end
    if worker then add(p, "a virtual (shared) IP is not allowed on non-controlplane nodes") end
    if nonempty(get(v, "ip")) and not M.is_ip(v.ip) then add(p .. ".ip", "not an IP address") end
  end
  vip(path .. ".vip", get(d, "vip"))
  for i, vl in ipairs(type(d.vlans) == "table" and d.vlans or {}) do
    local vp = fmt_path(path .. ".vlans", i)
    check_addresses(add, vp, get(vl, "addresses"))
    vip(vp .. ".vip", get(vl, "vip"))
  end
end

local function check_labels(add, path, labels)
  if type(labels) ~= "table" then return end
  for k, v in pairs(labels) do
    local p = path .. "." .. tostring(k)
    local prefix, name = tostring(k):match("^(.+)/([^/]+)$")
    name = name or tostring(k)
    if prefix and (#prefix > 253 or not M.regex(DNS_NAME, prefix)) then
      add(p, "label prefix must be a DNS subdomain")
    end
    if #name > 63 or not M.regex(LABEL_NAME, name) then add(p, "invalid label name") end
    if type(v) == "string" and v ~= "" and (#v > 63 or not M.regex(LABEL_NAME, v)) then
      add(p, "invalid label value '" .. v .. "'")
    end
  end
end

local function check_v1alpha1(doc, mode, add, warn)
  if doc.persist ~= nil and doc.persist ~= true then add("persist", "must be true") end
  local m, c = doc.machine, doc.cluster
  if type(m) ~= "table" then add("machine", "machine instructions are required") return end
  if type(c) ~= "table" then add("cluster", "cluster instructions are required") return end
  local role = m.type
  local cp = role == "controlplane" or role == "init"
  if role == "init" then warn("use \"controlplane\" instead of \"init\" for machine type") end
  if not cp and role ~= "worker" then
    add("machine.type", "unknown machine type '" .. tostring(role) .. "'")
  end
  if not M.regex(TOKEN, tostring(m.token or "")) then
    add("machine.token", "trustd token must look like [a-z0-9]{6}.[a-z0-9]{16}")
  end
  if not M.regex(TOKEN, tostring(c.token or "")) then
    add("cluster.token", "bootstrap token must look like [a-z0-9]{6}.[a-z0-9]{16}")
  end
  local mca = get(m, "ca")
  if not nonempty(get(mca, "crt")) and get(m, "acceptedCAs") == nil then
    add("machine.ca.crt", "issuing CA or some accepted CAs are required")
  end
  check_pair(add, "machine.ca", mca, cp and "issuing CA key is required for controlplane nodes",
    not cp and "issuing Talos API CA key is not allowed on non-controlplane nodes")
  check_pair(add, "cluster.ca", get(c, "ca"), nil,
    not cp and "issuing Kubernetes API CA key is not allowed on non-controlplane nodes")
  if cp then
    check_pair(add, "cluster.aggregatorCA", get(c, "aggregatorCA"))
    check_pair(add, "cluster.etcd.ca", get(c, "etcd", "ca"))
    local sa = get(c, "serviceAccount", "key")
    if nonempty(sa) then
      local why = pem_problem(sa, "key")
      if why then add("cluster.serviceAccount.key", why) end
    end
  elseif get(c, "etcd") ~= nil then
    add("cluster.etcd", "etcd config is only allowed on control plane machines")
  end
  local ep = get(c, "controlPlane", "endpoint")
  if not nonempty(ep) then
    add("cluster.controlPlane.endpoint", "cluster controlplane endpoint is required")
  elseif not ep:match("^https?://[^/:]+") and not ep:match("^https?://%[[%x:.]+%]") then
    add("cluster.controlPlane.endpoint", "invalid controlplane endpoint '" .. ep .. "'")
  end
  local domain = get(c, "network", "dnsDomain")
  if nonempty(domain) and not M.regex(DNS_NAME, domain) then
    add("cluster.network.dnsDomain", "'" .. domain .. "' is not a valid DNS name")
  end
  local cni = get(c, "network", "cni")
  if cp and type(cni) == "table" then
    local name, urls = cni.name, type(cni.urls) == "table" and cni.urls or {}
    if name == "flannel" or name == "none" then
      if #urls > 0 then
        add("cluster.network.cni.urls", "must be empty for the " .. name .. " CNI")
      end
    elseif name == "custom" then
      if #urls == 0 then warn("cluster.network.cni.urls should not be empty for the custom CNI") end
      for i, u in ipairs(urls) do
        if not tostring(u):match("^https?://.") then
          add(fmt_path("cluster.network.cni.urls", i), "invalid URL '" .. tostring(u) .. "'")
        end
      end
    elseif name ~= nil then
      add("cluster.network.cni.name", "cni name should be one of flannel, custom, none")
    end
  end
  local seen = {}
  for i, im in ipairs(type(get(c, "inlineManifests")) == "table" and c.inlineManifests or {}) do
    local n = get(im, "name")
    local p = fmt_path("cluster.inlineManifests", i) .. ".name"
    if not nonempty(n) or n:match("^%s*$") then add(p, "inline manifest name can't be empty")
    elseif seen[n] then add(p, "inline manifest name '" .. n .. "' is duplicate") end
    if n then seen[n] = true end
  end
  if get(c, "discovery", "enabled") == true
    and get(c, "discovery", "registries", "service", "disabled") ~= true then
    for _, k in ipairs { "id", "secret" } do
      if not nonempty(c[k]) then
        add("cluster." .. k, "cluster discovery service requires .cluster." .. k)
      end
    end
  end
  local inst = get(m, "install")
  if mode ~= "container" then
    if type(inst) ~= "table" or (not nonempty(inst.disk) and get(inst, "diskSelector") == nil) then
      add("machine.install.disk", "either install disk or diskSelector should be defined")
    end
  end
  if type(inst) == "table" and get(inst, "grubUseUKICmdline") == true
    and type(inst.extraKernelArgs) == "table" and #inst.extraKernelArgs > 0 then
    add("machine.install.extraKernelArgs",
      "install.extraKernelArgs and install.grubUseUKICmdline can't be used together")
  end
  local hd = get(m, "features", "hostDNS")
  if type(hd) == "table" and hd.forwardKubeDNSToHost == true and hd.enabled ~= true then
    add("machine.features.hostDNS", "forwardKubeDNSToHost requires hostDNS.enabled to be true")
  end
  local ifaces = get(m, "network", "interfaces")
  for i, d in ipairs(type(ifaces) == "table" and ifaces or {}) do
    check_device(add, fmt_path("machine.network.interfaces", i), d, role == "worker")
  end
  if get(m, "network", "kubespan", "enabled") == true
    and get(c, "discovery", "enabled") ~= true then
    add("cluster.discovery.enabled",
      "cluster discovery should be enabled when machine.network.kubespan is enabled")
  end
  check_labels(add, "machine.nodeLabels", get(m, "nodeLabels"))
  local hn = get(m, "network", "hostname")
  if nonempty(hn) and (#hn > 253 or #(hn:match("^[^.]*")) > 63 or hn:match("^%.")) then
    add("machine.network.hostname", "invalid hostname '" .. hn .. "'")
  end
  return role
end

local function check_hostname_doc(doc, v1, add)
  local auto, name = doc.auto, doc.hostname
  if auto == nil and not nonempty(name) then
    add("HostnameConfig", "either 'auto' or 'hostname' must be set")
  end
  if nonempty(name) then
    if auto ~= "off" then
      add("HostnameConfig.auto",
        "'auto' and 'hostname' cannot be set at the same time (set auto: off)")
    end
    local short = name:match("^[^.]*")
    if #name > 253 or #short == 0 or #short > 63 then
      add("HostnameConfig.hostname", "invalid hostname '" .. name .. "'")
    end
  end
  local conflict = " is already set in v1alpha1 config (conflicts with HostnameConfig)"
  if nonempty(get(v1, "machine", "network", "hostname")) then
    add("machine.network.hostname", "static hostname" .. conflict)
  end
  if get(v1, "machine", "features", "stableHostname") == true then
    add("machine.features.stableHostname", "stable hostname" .. conflict)
  end
end

-- ========== entry point ==========

local CONFIG_OPTS = { node = "string", talos_version = "string", mode = "string",
  schema = "boolean" }

--- Validates config documents (the v1alpha1 document and any others) against
--- the schema and Talos's rules.  Options: `node` (the name in messages,
--- default "config"), `talos_version` (default "v1.11"), `mode` ("metal",
--- the default, requires an install disk; "container" does not), `schema`
--- (false skips the schema pass).  Returns true and a list of warnings, or
--- nil, the first problem, "EINVAL" and the list of all problems.
---@param docs table[]
---@param o? {node?: string, talos_version?: string, mode?: "metal"|"container", schema?: boolean}
---@return true|nil ok, string[]|string warnings_or_msg, string? code, string[]? errors
function M.config(docs, o)
  opts.arg(type(docs) == "table", "validate.config", "list of documents expected")
  o = opts.check("validate.config", o, CONFIG_OPTS)
  local node = o.node or "config"
  local minor = tonumber(tostring(o.talos_version or "v1.11"):match("^v?1%.(%d+)"))
  opts.arg(minor ~= nil, "validate.config", "talos_version must look like v1.N")
  opts.arg(o.mode == nil or o.mode == "metal" or o.mode == "container", "validate.config",
    "mode must be 'metal' or 'container'")
  local errs, warnings = {}, {}
  local function prefixed(prefix)
    return function(path, rule)
      if prefix and path == "" then
        path = prefix
      elseif prefix and path:sub(1, #prefix) ~= prefix then
        path = prefix .. "." .. path
      end
      errs[#errs + 1] = string.format("%s: %s: %s", node, path, rule)
    end
  end
  local function warn(msg) warnings[#warnings + 1] = node .. ": " .. msg end
  local view = schema_view(minor)
  local v1, seen = nil, {}
  for i, doc in ipairs(docs) do
    if type(doc) ~= "table" or is_list(doc) then
      errs[#errs + 1] = string.format("%s: document %d: not a mapping", node, i)
    else
      local kind = doc.kind or "v1alpha1"
      local id = kind .. "/" .. tostring(doc.name or "")
      if seen[id] then errs[#errs + 1] = string.format("%s: %s: duplicate document", node, kind) end
      seen[id] = true
      local add = prefixed(doc.kind and kind or nil)
      if kind == "v1alpha1" then v1 = doc end
      local def = view.kinds[kind]
      if o.schema ~= false then
        if def then
          local body = doc
          if kind == "v1alpha1" and doc.persist ~= nil then -- not in the schema (talos.md §2)
            body = {}
            for k, x in pairs(doc) do if k ~= "persist" then body[k] = x end end
          end
          check_schema(body, view.defs[def], "", view.defs, add)
        elseif minor >= 12 then
          warn(kind .. ": not checked against a schema (the schema copy is Talos 1.11's)")
        else
          add(kind, "unknown document kind")
        end
      end
    end
  end
  if not v1 then
    errs[#errs + 1] = node .. ": v1alpha1: the v1alpha1 document is missing"
  else
    check_v1alpha1(v1, o.mode, prefixed(nil), warn)
  end
  for _, doc in ipairs(docs) do
    if type(doc) == "table" and doc.kind == "HostnameConfig" then
      check_hostname_doc(doc, v1, prefixed(nil))
    end
  end
  if #errs > 0 then return nil, errs[1], "EINVAL", errs end
  return true, warnings
end

return M
