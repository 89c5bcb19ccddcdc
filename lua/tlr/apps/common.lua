--- Pieces the app modules share: secret references, value merging, the
--- label every object tlr makes carries, address and name checks.
---
--- A secret option is given as the value itself (a string), as
--- `{env = "NAME"}` (read from the environment when the plan is made) or as
--- `{file = "path"}` (the file's content, without a trailing newline).
--- Resolved values are registered with tlr.log.secret at once.
local crypto = require "tlr.crypto"
local fs = require "tlr.fs"
local log = require "tlr.log"
local json = require "tlr.json"
local opts = require "tlr.opts"

local M = {}

--- The label on every object tlr makes.
M.MANAGED_BY = "app.kubernetes.io/managed-by"

--- What plan summaries print instead of a secret.
M.REDACTED = "<redacted>"

--- Labels for an object: tlr's plus `extra` (copied).
---@param extra? table<string, string>
---@return table<string, string>
function M.labels(extra)
  local out = { [M.MANAGED_BY] = "tlr" }
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

--- Raises unless `v` is a secret reference: a non-empty string,
--- `{env = NAME}` or `{file = PATH}`.
---@param fname string the public function's name, for the message
---@param key string the option's name
---@param v any
function M.check_secret(fname, key, v)
  if type(v) == "string" then
    opts.arg(v ~= "", fname, "option '" .. key .. "' must not be empty")
    return
  end
  local ok = type(v) == "table" and getmetatable(v) == nil
  if ok then
    local n = 0
    for k, x in pairs(v) do
      n = n + 1
      ok = ok and (k == "env" or k == "file") and type(x) == "string" and x ~= ""
    end
    ok = ok and n == 1
  end
  opts.arg(ok, fname, "option '" .. key .. "': a string, {env = NAME} or {file = PATH} expected")
end

--- The value of a secret reference, registered with log.secret.
---@param v string|{env?: string, file?: string}
---@param what string names the option in messages ("cloudflare.token")
---@return string|nil value
---@return string? msg "cloudflare.token: environment variable CF_API_TOKEN is not set"
---@return string? code "EINVAL", or fs.read's code
function M.secret(v, what)
  local value
  if type(v) == "string" then
    value = v
  elseif v.env then
    value = os.getenv(v.env)
    if value == nil or value == "" then
      return nil, string.format("%s: environment variable %s is not set", what, v.env), "EINVAL"
    end
  else
    local text, msg, code = fs.read(v.file)
    if not text then return nil, what .. ": " .. msg, code end
    value = text:gsub("\r?\n$", "")
    if value == "" then return nil, string.format("%s: %s is empty", what, v.file), "EINVAL" end
  end
  log.secret(value)
  return value
end

--- A Secret (type Opaque) holding `values` in `data`, base64-encoded.
--- (Not `stringData`: the API server turns that into `data`, and applying
--- it again is not a clean no-op.)  The encoded forms of the values not
--- listed in `public` are registered with log.secret too.
---@param name string
---@param namespace string
---@param values table<string, string>
---@param labels? table<string, string> extra labels
---@param public? table<string, boolean> keys whose values are not secret
---@return table secret
function M.secret_object(name, namespace, values, labels, public)
  local data = {}
  for k, v in pairs(values) do
    data[k] = crypto.base64_encode(v)
    if not (public and public[k]) then log.secret(data[k]) end
  end
  return { apiVersion = "v1", kind = "Secret", type = "Opaque",
    metadata = { name = name, namespace = namespace, labels = M.labels(labels) }, data = data }
end

local function is_list(t)
  if json.is_array(t) then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

--- A deep copy of a plain value (tables copied, array marks kept).
---@param v any
---@return any
function M.copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.copy(x) end
  if json.is_array(v) then json.array(out) end
  return out
end

--- `over` merged into a copy of `base`: maps merge key by key, anything
--- else (lists included) is replaced, as Helm merges values.
---@param base? table
---@param over? table
---@return table
function M.merge(base, over)
  local out = M.copy(base or {})
  for k, v in pairs(over or {}) do
    local cur = out[k]
    if type(v) == "table" and type(cur) == "table" and not is_list(v) and not is_list(cur) then
      out[k] = M.merge(cur, v)
    else
      out[k] = M.copy(v)
    end
  end
  return out
end

--- A JSON array of the given values (so an empty list stays `[]`).
function M.list(...)
  return json.array({ ... })
end

-- ========== checks ==========

local function ipv4(s)
  local parts = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return false end
  for _, p in ipairs(parts) do
    if #p > 3 or tonumber(p) > 255 or (#p > 1 and p:sub(1, 1) == "0") then return false end
  end
  return true
end

local function ipv6(s)
  if not s:find(":", 1, true) or s:find(":::", 1, true) then return false end
  local _, doubles = s:gsub("::", "")
  if doubles > 1 then return false end
  local groups = 0
  for g in (s .. ":"):gmatch("([^:]*):") do
    if g ~= "" then
      if not g:match("^%x%x?%x?%x?$") then return false end
      groups = groups + 1
    end
  end
  return (doubles == 1 and groups < 8) or (doubles == 0 and groups == 8)
end

--- True when s is an IPv4 or IPv6 address.
function M.is_ip(s)
  return type(s) == "string" and (ipv4(s) or ipv6(s))
end

--- True when s is an address range MetalLB takes: a CIDR
--- ("10.0.0.0/28", "fd00::/120") or "first-last" of one family.
function M.is_address_range(s)
  if type(s) ~= "string" then return false end
  local addr, bits = s:match("^([^/]+)/(%d+)$")
  if addr then
    bits = tonumber(bits)
    if ipv4(addr) then return bits <= 32 end
    return ipv6(addr) and bits <= 128
  end
  local first, last = s:match("^%s*([^%s-]+)%s*%-%s*([^%s-]+)%s*$")
  if not first then return false end
  return (ipv4(first) and ipv4(last)) or (ipv6(first) and ipv6(last))
end

--- True when s is a DNS name ("example.com", a trailing dot allowed).
function M.is_dns_name(s)
  if type(s) ~= "string" or #s == 0 or #s > 254 then return false end
  s = s:gsub("%.$", "")
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if not label:match("^[%w_]([%w_-]*)$") or #label > 63 or label:sub(-1) == "-" then return false end
  end
  return s ~= ""
end

--- True when s is a Kubernetes object name (a DNS-1123 subdomain).
function M.is_object_name(s)
  return type(s) == "string" and #s <= 253 and s:match("^[a-z0-9][a-z0-9.-]*$") ~= nil
    and s:match("[a-z0-9]$") ~= nil
end

return M
