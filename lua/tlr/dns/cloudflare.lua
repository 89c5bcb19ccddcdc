--- Cloudflare DNS provider on the Cloudflare API v4 (tlr.http).
---
--- `cloudflare.new{token, zone, ...}` returns a provider with the shape every
--- tlr DNS provider has: `query`, `ensure`, `delete` and `records`.  A record
--- set (one name, one type, several values) is several Cloudflare records;
--- `ensure` reads them, skips what is equal, updates records in place (PUT),
--- creates what is missing (POST) and deletes extras.  Every reply's `success`
--- is checked; 429s are retried after their Retry-After, and transient
--- failures of idempotent calls with backoff, within a time budget.  The token
--- is registered with tlr.log.secret and masked out of every error message.
local http = require "tlr.http"
local json = require "tlr.json"
local log = require "tlr.log"
local opts = require "tlr.opts"
local sched = require "tlr.sched"

local check, arg = opts.check, opts.arg

local M = {}

M.DEFAULT_API = "https://api.cloudflare.com/client/v4"

local Provider = {}
Provider.__index = Provider
Provider.__name = "tlr.dns.Cloudflare"

local TYPES = { A = true, AAAA = true, CNAME = true, TXT = true }
local PROXIABLE = { A = true, AAAA = true, CNAME = true }
-- A CNAME cannot share its name with an A or AAAA record (nor with another CNAME)
local EXCLUSIVE = { A = true, AAAA = true, CNAME = true }
local TRANSIENT = { ECONNRESET = true, ETIMEDOUT = true, ECONNREFUSED = true }

-- ========== values ==========

local function ipv4(s)
  local parts = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return nil end
  for _, p in ipairs(parts) do
    if #p > 1 and p:sub(1, 1) == "0" or tonumber(p) > 255 then return nil end
  end
  return s
end

-- "1:0:ab" -> {1, 0, 171}; nil when a group is not 1-4 hex digits
local function hex_groups(part)
  local t = {}
  if part == "" then return t end
  for g in (part .. ":"):gmatch("([^:]*):") do
    if not g:match("^%x%x?%x?%x?$") then return nil end
    t[#t + 1] = tonumber(g, 16)
  end
  return t
end

--- An IPv6 address in RFC 5952 form (lower case, longest zero run as "::"), or nil.
---@param s string
---@return string?
function M.ipv6(s)
  s = s:lower()
  if s:find("[^%x:.]") then return nil end
  local head, tail = s:match("^(.*:)(%d+%.%d+%.%d+%.%d+)$")
  if head then
    if not ipv4(tail) then return nil end
    local a, b, c, d = tail:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
    s = head .. string.format("%x:%x", a * 256 + b, c * 256 + d)
  end
  local words
  local dbl = s:find("::", 1, true)
  if dbl then
    if s:find("::", dbl + 1, true) then return nil end
    local left, right = hex_groups(s:sub(1, dbl - 1)), hex_groups(s:sub(dbl + 2))
    if not left or not right or #left + #right > 7 then return nil end
    words = left
    for _ = 1, 8 - #left - #right do words[#words + 1] = 0 end
    for _, w in ipairs(right) do words[#words + 1] = w end
  else
    words = hex_groups(s)
    if not words or #words ~= 8 then return nil end
  end
  local best, best_len, run, run_len = 0, 0, 0, 0
  for i = 1, 8 do
    if words[i] == 0 then
      if run_len == 0 then run = i end
      run_len = run_len + 1
      if run_len > best_len then best, best_len = run, run_len end
    else
      run_len = 0
    end
  end
  local hex = {}
  for i = 1, 8 do hex[i] = string.format("%x", words[i]) end
  if best_len < 2 then return table.concat(hex, ":") end
  return table.concat(hex, ":", 1, best - 1) .. "::" .. table.concat(hex, ":", best + best_len, 8)
end

local function hostname(s, wildcard)
  if #s == 0 or #s > 253 then return nil end
  local i = 0
  for label in (s .. "."):gmatch("([^.]*)%.") do
    i = i + 1
    if not (wildcard and i == 1 and label == "*") and
      (not label:match("^[%w_-]+$") or #label > 63 or label:match("^%-") or label:match("%-$")) then
      return nil
    end
  end
  return s
end

-- The comparable form of a value: addresses normalised, host names in lower
-- case without the trailing dot; nil when the value is invalid for the type.
local function canon(rtype, v)
  if rtype == "A" then return ipv4(v) end
  if rtype == "AAAA" then return M.ipv6(v) end
  if rtype == "CNAME" then
    local h = v:lower():gsub("%.$", "")
    if ipv4(h) then return nil end
    return hostname(h, false)
  end
  return v
end

-- ========== the client ==========

local NEW_SPEC = {
  token = "string", zone = "string", zone_id = "string", api = "string", timeout = "number",
  retry_budget = "number", per_page = "integer", ca = "string", ca_file = "string",
  insecure = "boolean",
}

--- Creates a provider for one zone.  Nothing is sent yet: the zone id is
--- looked up (`GET /zones?name=`) on the first call, unless `zone_id` is given.
---@param o {token: string, zone: string, zone_id?: string, api?: string, timeout?: number,
---  retry_budget?: number, per_page?: integer, ca?: string, ca_file?: string, insecure?: boolean}
---@return table provider
function M.new(o)
  check("dns.cloudflare", o, NEW_SPEC)
  arg(type(o) == "table" and o.token and o.token ~= "", "dns.cloudflare", "token is required")
  arg(o.zone, "dns.cloudflare", "zone is required")
  local zone = o.zone:lower():gsub("%.$", "")
  arg(hostname(zone, false) and zone:find(".", 1, true), "dns.cloudflare",
    "zone '" .. o.zone .. "' is not a domain name")
  local api = (o.api or M.DEFAULT_API):gsub("/+$", "")
  arg(api:match("^https?://"), "dns.cloudflare", "api must be an http(s) URL")
  arg(not o.per_page or (o.per_page >= 5 and o.per_page <= 5000), "dns.cloudflare",
    "per_page must be 5..5000")
  log.secret(o.token)
  return setmetatable({
    zone = zone, api = api, zid = o.zone_id, timeout = o.timeout or 30,
    retry_budget = o.retry_budget or 60, per_page = o.per_page or 100,
    tls = { ca = o.ca, ca_file = o.ca_file, insecure = o.insecure },
    headers = { Authorization = log.secret("Bearer " .. o.token), Accept = "application/json" },
    zone_lock = sched.semaphore(1), name_locks = {},
    stats = { requests = 0, writes = 0, retries = 0 },
  }, Provider)
end

setmetatable(M, { __call = function(_, o) return M.new(o) end })

-- "81058 An identical record already exists.; 1004 DNS Validation Error (9021 TTL ...)"
local function describe(errs)
  if type(errs) ~= "table" or #errs == 0 then return "no error details" end
  local parts = {}
  for _, e in ipairs(errs) do
    local s = string.format("%s %s", tostring(e.code), tostring(e.message))
    if type(e.error_chain) == "table" and #e.error_chain > 0 then
      s = s .. " (" .. describe(e.error_chain) .. ")"
    end
    parts[#parts + 1] = s
  end
  return table.concat(parts, "; ")
end

-- True when an error code (or one in an error chain) lies in [lo, hi].
local function has_code(errs, lo, hi)
  for _, e in ipairs(type(errs) == "table" and errs or {}) do
    local c = tonumber(e.code) or 0
    if c >= lo and c <= (hi or lo) then return true end
    if type(e.error_chain) == "table" and has_code(e.error_chain, lo, hi) then return true end
  end
  return false
end

local function classify(status, errs)
  if status == 401 then return "EAUTH" end
  if status == 403 then return has_code(errs, 9109) and "EAUTH" or "EFORBIDDEN" end
  if status == 404 then return "ENOTFOUND" end
  if status == 400 then
    if has_code(errs, 9106) or has_code(errs, 6000, 6999) then return "EAUTH" end
    if has_code(errs, 81000, 81999) then return "EAPI" end -- conflicts, quotas
    if has_code(errs, 1004) or has_code(errs, 9000, 9999) then return "EINVAL" end
  end
  return "EAPI"
end

-- The reply's result and result_info, or nil, msg, code.
local function decode(where, res)
  local body = res.body ~= "" and json.decode(res.body) or nil
  if type(body) ~= "table" then
    return nil, string.format("%s: %d reply is not a JSON envelope", where, res.status), "EPROTO"
  end
  local ok = res.status >= 200 and res.status < 300
  if ok and body.success == true then
    if body.result == nil then return json.null, body.result_info end -- still truthy
    return body.result, body.result_info
  end
  local msg = describe(body.errors)
  if ok then
    return nil, string.format("%s: %d but success is %s: %s", where, res.status,
      tostring(body.success), msg), "EAPI"
  end
  return nil, string.format("%s: %d %s", where, res.status, msg), classify(res.status, body.errors)
end

--- One API call with the retries: result, result_info, or nil, msg, code.
--- `o`: query (table), body (table, sent as JSON).  A 429 is retried after its
--- Retry-After; transport failures and 5xx only for GET, PUT and DELETE.
function Provider:call(method, path, o)
  o = o or {}
  local req = {
    method = method, url = self.api .. path, query = o.query, timeout = self.timeout,
    ca = self.tls.ca, ca_file = self.tls.ca_file, insecure = self.tls.insecure,
    headers = self.headers,
  }
  if o.body then
    req.body = assert(json.encode(o.body))
    req.headers = { ["Content-Type"] = "application/json" }
    for k, v in pairs(self.headers) do req.headers[k] = v end
  end
  local where = "cloudflare: " .. method .. " " .. path
  local idempotent = method ~= "POST"
  local deadline = sched.now() + self.retry_budget
  local delay = 0.25
  while true do
    self.stats.requests = self.stats.requests + 1
    if method ~= "GET" then self.stats.writes = self.stats.writes + 1 end
    local res, msg, code = http.request(req)
    local wait, why
    if not res then
      if not (idempotent and TRANSIENT[code]) then
        return nil, log.mask(where .. ": " .. msg), code
      end
      wait, why = delay * (0.5 + math.random()), msg
    elseif res.status == 429 then -- Retry-After: seconds, rounded up (Cloudflare's docs)
      wait = tonumber(res.headers["retry-after"]) or delay * (0.5 + math.random())
      why, code = "429 rate limited", "EAPI"
    elseif res.status >= 500 and idempotent then
      wait, why, code = delay * (0.5 + math.random()), tostring(res.status), "EAPI"
    else
      local result, info, c = decode(where, res)
      if result == nil then return nil, log.mask(info), c end
      return result, info
    end
    if sched.now() + wait > deadline then
      return nil, log.mask(string.format("%s: %s; not retried: the %gs budget would run out "
        .. "(wait %gs)", where, why, self.retry_budget, wait)), code
    end
    self.stats.retries = self.stats.retries + 1
    log.debug("%s: %s, retrying in %.2fs", where, log.mask(why), wait)
    sched.sleep(wait)
    delay = math.min(delay * 2, 8)
  end
end

--- Every page of a list call: the items, or nil, msg, code.
function Provider:list(path, query)
  local out, seen, page = {}, {}, 1
  while true do
    local q = { page = page, per_page = self.per_page }
    for k, v in pairs(query or {}) do q[k] = v end
    local result, info, code = self:call("GET", path, { query = q })
    if result == nil then return nil, info, code end
    if type(result) ~= "table" then
      return nil, "cloudflare: GET " .. path .. ": result is not a list", "EPROTO"
    end
    for _, item in ipairs(result) do
      -- a record may move between pages during the walk: each one once
      if not seen[item.id] then seen[item.id], out[#out + 1] = true, item end
    end
    local pages = type(info) == "table" and tonumber(info.total_pages) or 1
    if #result == 0 or page >= pages then return out end
    page = page + 1
  end
end

--- The zone's id (looked up once by name): id, or nil, msg, code.
function Provider:zone_id()
  if self.zid then return self.zid end
  return self.zone_lock:with(function()
    if self.zid then return self.zid end
    local zones, msg, code = self:call("GET", "/zones", { query = { name = self.zone } })
    if not zones then return nil, msg, code end
    if type(zones) ~= "table" or not zones[1] then
      return nil, string.format("cloudflare: zone '%s' not found (or the token lacks Zone:Read "
        .. "on it)", self.zone), "ENOTFOUND"
    end
    self.zid = zones[1].id
    return self.zid
  end)
end

--- The absolute name (lower case, no trailing dot: Cloudflare's form) of a
--- name given relative to the zone ("www", "@") or absolute ("www.example.com",
--- "www.example.com.").  A name without a trailing dot that does not end in
--- the zone is relative, as Cloudflare reads it; with a trailing dot it must
--- lie in the zone.  Returns the name, or nil and why not.
---@param name string
---@return string? fqdn
---@return string? msg
function Provider:fqdn(name)
  arg(type(name) == "string", "fqdn", "name: string expected, got " .. type(name))
  local n = name:lower()
  local absolute = n:sub(-1) == "."
  if absolute then n = n:sub(1, -2) end
  if n == "@" or n == "" then return self.zone end
  if n ~= self.zone and n:sub(-#self.zone - 1) ~= "." .. self.zone then
    if absolute then return nil, string.format("name '%s' is outside zone %s", name, self.zone) end
    n = n .. "." .. self.zone
  end
  if not hostname(n, true) then return nil, string.format("bad name '%s'", name) end
  return n
end

-- The fqdn of a name given to `fname`; raises for a bad name or one outside the zone.
function Provider:name_of(name, fname)
  arg(type(name) == "string", fname, "name must be a string")
  local fqdn, err = self:fqdn(name)
  arg(fqdn, fname, err)
  return fqdn
end

-- Records at a name (all types): list, or nil, msg, code.
function Provider:at(fqdn)
  local zid, msg, code = self:zone_id()
  if not zid then return nil, msg, code end
  return self:list("/zones/" .. zid .. "/dns_records", { name = fqdn })
end

local function type_of(fname, rtype)
  arg(rtype == nil or type(rtype) == "string" and TYPES[rtype:upper()], fname,
    "type must be A, AAAA, CNAME or TXT, got '" .. tostring(rtype) .. "'")
  return rtype and rtype:upper() or "A"
end

-- Names and CNAME targets leave the provider absolute with the trailing dot,
-- as the other tlr DNS providers write them.
local function dotted(rtype, v)
  return (rtype == "CNAME" or rtype == "NS" or rtype == "MX" or rtype == "PTR") and v .. "." or v
end

-- One set from Cloudflare records of one name and type.
local function set_of(name, rtype, recs)
  local values, ttl, proxied = {}, nil, nil
  for _, r in ipairs(recs) do
    values[#values + 1] = dotted(rtype, r.content)
    ttl = ttl and math.min(ttl, r.ttl) or r.ttl
    if r.proxied then proxied = true elseif proxied == nil then proxied = false end
  end
  table.sort(values)
  return { name = name .. ".", type = rtype, ttl = ttl, values = values, proxied = proxied }
end

--- The record set at name/type (type default "A"): {name, type, values, ttl,
--- proxied}, nil when there is none, or nil, msg, code.  `ttl` 1 means automatic.
---@param name string relative or absolute
---@param rtype? string A, AAAA, CNAME or TXT
---@return table? set
---@return string? msg
---@return string? code
function Provider:query(name, rtype)
  rtype = type_of("query", rtype)
  local fqdn = self:name_of(name, "query")
  local recs, msg, code = self:at(fqdn)
  if not recs then return nil, msg, code end
  local same = {}
  for _, r in ipairs(recs) do
    if r.type == rtype then same[#same + 1] = r end
  end
  if #same == 0 then return nil end
  return set_of(fqdn, rtype, same)
end

--- Every record of the zone as sets: a list of {name, type, values, ttl,
--- proxied} sorted by name and type, or nil, msg, code.
function Provider:records()
  local zid, msg, code = self:zone_id()
  if not zid then return nil, msg, code end
  local recs, msg2, code2 = self:list("/zones/" .. zid .. "/dns_records")
  if not recs then return nil, msg2, code2 end
  local groups, keys = {}, {}
  for _, r in ipairs(recs) do
    local key = r.name .. "\0" .. r.type
    if not groups[key] then groups[key], keys[#keys + 1] = {}, key end
    table.insert(groups[key], r)
  end
  table.sort(keys)
  local out = {}
  for i, key in ipairs(keys) do
    local name, rtype = key:match("^(.-)%z(.*)$")
    out[i] = set_of(name, rtype, groups[key])
  end
  return out
end

-- Runs fn holding the lock of one name, so concurrent ensures of a name queue.
function Provider:with_name(fqdn, fn)
  self.name_locks[fqdn] = self.name_locks[fqdn] or sched.semaphore(1)
  return self.name_locks[fqdn]:with(fn)
end

local SET_SPEC = { name = "string", type = "string", ttl = "integer", values = "table",
  proxied = "boolean" }

-- Validates one wanted set (raising like every provider does for a bad name,
-- type, value or TTL): {fqdn, type, want (canonical, unique), ttl, proxied}.
function Provider:desired(s, fname)
  check(fname, s, SET_SPEC)
  local rtype = type_of(fname, s.type)
  arg(type(s.values) == "table" and #s.values > 0, fname,
    "values must be a non-empty list (use delete to remove a set)")
  arg(s.proxied == nil or PROXIABLE[rtype], fname, "proxied is only for A, AAAA and CNAME records")
  local want, seen = {}, {}
  for i, v in ipairs(s.values) do
    local c = type(v) == "string" and canon(rtype, v)
    arg(c and c ~= "", fname, string.format("values[%d]: '%s' is not a valid %s value", i,
      tostring(v), rtype))
    if not seen[c] then seen[c], want[#want + 1] = true, c end
  end
  arg(rtype ~= "CNAME" or #want == 1, fname, "a CNAME set has exactly one value")
  local ttl = s.ttl or 1
  arg(ttl == 1 or (ttl >= 60 and ttl <= 86400), fname,
    "ttl must be 1 (automatic) or 60..86400 on Cloudflare, got " .. ttl)
  return { fqdn = self:name_of(s.name, fname), type = rtype, want = want, ttl = ttl,
    proxied = s.proxied }
end

-- The operations that make the records at a name match d, in a safe order:
-- conflicting records are removed (or reused) first, then updates, creates,
-- and the extras of the set go last (so the name never resolves to nothing).
-- Returns the operations, the action and the set's summary (add/remove/ttl).
local function plan(d, recs)
  local same, conflict = {}, {}
  for _, r in ipairs(recs) do
    if r.type == d.type then
      same[#same + 1] = r
    elseif EXCLUSIVE[d.type] and EXCLUSIVE[r.type] and (d.type == "CNAME" or r.type == "CNAME") then
      conflict[#conflict + 1] = r
    end
  end
  -- a PUT overwrites every field: proxied (unless the spec sets it) and the
  -- comment are carried over from a record of the same type; proxied records
  -- always have automatic TTL
  local function body(content, rec)
    local keep = rec and rec.type == d.type
    local proxied = d.proxied
    if proxied == nil and keep then proxied = rec.proxied == true end
    local b = { type = d.type, name = d.fqdn, content = content, ttl = proxied and 1 or d.ttl }
    if proxied ~= nil then b.proxied = proxied end
    if keep and type(rec.comment) == "string" then b.comment = rec.comment end
    return b
  end
  local updates, used, missing = {}, {}, {}
  for _, v in ipairs(d.want) do
    local match
    for _, r in ipairs(same) do
      if not used[r] and canon(d.type, r.content) == v then match = r break end
    end
    if match then
      used[match] = true
      local b = body(match.content, match)
      if match.ttl ~= b.ttl or (b.proxied ~= nil and match.proxied ~= b.proxied) then
        updates[#updates + 1] = { op = "update", record = match, body = b }
      end
    else
      missing[#missing + 1] = v
    end
  end
  local spare = {} -- records that can be rewritten: leftovers of the set, then conflicting ones
  for _, r in ipairs(same) do
    if not used[r] then spare[#spare + 1] = r end
  end
  local nsame = #spare
  for _, r in ipairs(conflict) do spare[#spare + 1] = r end
  local first, writes, last, remove = {}, {}, {}, {}
  for i = 1, nsame do remove[i] = dotted(d.type, canon(d.type, spare[i].content) or "?") end
  local reuse = math.min(#missing, #spare)
  for i = reuse + 1, #spare do -- not reused: conflicts go before, extras of the set after
    table.insert(i > nsame and first or last, { op = "delete", record = spare[i] })
  end
  local add = {}
  for i, v in ipairs(missing) do
    add[i] = dotted(d.type, v)
    writes[i] = i <= reuse and { op = "update", record = spare[i], body = body(v, spare[i]) }
      or { op = "create", body = body(v) }
  end
  local all = {}
  for _, list in ipairs { first, updates, writes, last } do
    for _, op in ipairs(list) do all[#all + 1] = op end
  end
  local action = "none"
  if #all > 0 then action = #conflict > 0 and "replace" or (#same == 0 and "create" or "update") end
  table.sort(add)
  table.sort(remove)
  return all, { name = d.fqdn .. ".", type = d.type, changed = #all > 0, action = action, add = add,
    remove = remove, ttl = d.ttl, old_ttl = same[1] and same[1].ttl or nil }
end

-- What an operation does, for results and plans (no ids of records to create).
local function change_of(op)
  local r, b = op.record or {}, op.body or op.record
  return { op = op.op, id = r.id, type = b.type, content = b.content,
    from = op.op == "update" and r.content or nil }
end

-- One wanted set: its summary with the changes, or nil, msg, code.
function Provider:ensure_one(d, dry_run)
  return self:with_name(d.fqdn, function()
    local recs, msg, code = self:at(d.fqdn)
    if not recs then return nil, msg, code end
    local ops, set = plan(d, recs)
    set.changes = {}
    for i, op in ipairs(ops) do set.changes[i] = change_of(op) end
    if dry_run then return set end
    local base = "/zones/" .. self.zid .. "/dns_records"
    for _, op in ipairs(ops) do
      local method = op.op == "create" and "POST" or op.op == "update" and "PUT" or "DELETE"
      local ok
      ok, msg, code = self:call(method, op.record and base .. "/" .. op.record.id or base,
        { body = op.body })
      if ok == nil then return nil, msg, code end
    end
    if #ops > 0 then log.debug("cloudflare: %s %s %s", set.action, d.type, d.fqdn) end
    return set
  end)
end

-- One set's list when given a set or a list of sets.
local function as_list(sets, fname)
  arg(type(sets) == "table", fname, "record set table (or a list of them) expected")
  if sets.name or sets.type or sets.values then return { sets }, true end
  arg(#sets > 0, fname, "empty list of record sets")
  return sets, false
end

--- Makes record sets hold exactly their `values` (with `ttl`, default 1 =
--- automatic, and `proxied` when given).  `sets` is one {name, type, values,
--- ttl?, proxied?, comment?} or a list of them, done one after the other.
--- Returns {changed, action, sets = {{name, type, changed, action, add, remove,
--- ttl, old_ttl, changes}}} (action, add, ... of a single set also at the top),
--- or nil, msg, code.  action: "none", "create", "update", or "replace" when a
--- CNAME gave way to A/AAAA records or the reverse.  dry_run writes nothing.
---@param sets table|table[]
---@param o? {dry_run?: boolean}
---@return table? result
---@return string? msg
---@return string? code
function Provider:ensure(sets, o)
  o = check("ensure", o, { dry_run = "boolean" })
  local list, single = as_list(sets, "ensure")
  local wanted = {}
  for i, s in ipairs(list) do wanted[i] = self:desired(s, "ensure") end -- all checked first
  local result = { changed = false, sets = {} }
  for i, d in ipairs(wanted) do
    local set, msg, code = self:ensure_one(d, o.dry_run)
    if not set then return nil, msg, code end
    result.sets[i] = set
    result.changed = result.changed or set.changed
  end
  if single then
    for k, v in pairs(result.sets[1]) do result[k] = v end
  else
    result.action = result.changed and "update" or "none"
  end
  return result
end

--- Removes record sets: one {name, type, values?} or a list of them (the
--- tables given to ensure do); with `values` only those records go.  Returns
--- {changed, deleted = n, sets = {{name, type, changed, remove}}}, or nil, msg, code.
---@param sets table|table[]
---@param o? {dry_run?: boolean}
function Provider:delete(sets, o)
  o = check("delete", o, { dry_run = "boolean" })
  local list = as_list(sets, "delete")
  local wanted = {}
  for i, s in ipairs(list) do
    check("delete", s, SET_SPEC) -- ttl, proxied and comment are ignored
    local d = { fqdn = self:name_of(s.name, "delete"), type = type_of("delete", s.type) }
    if s.values then
      d.only = {}
      for _, v in ipairs(s.values) do d.only[canon(d.type, v) or v] = true end
    end
    wanted[i] = d
  end
  local result = { changed = false, deleted = 0, sets = {} }
  for i, d in ipairs(wanted) do
    local set, msg, code = self:with_name(d.fqdn, function()
      local recs, msg, code = self:at(d.fqdn)
      if not recs then return nil, msg, code end
      local set = { name = d.fqdn .. ".", type = d.type, remove = {} }
      for _, r in ipairs(recs) do
        local v = canon(d.type, r.content) or r.content
        if r.type == d.type and (not d.only or d.only[v]) then
          set.remove[#set.remove + 1] = dotted(d.type, v)
          if not o.dry_run then
            local path = "/zones/" .. self.zid .. "/dns_records/" .. r.id
            local ok, msg2, code2 = self:call("DELETE", path)
            if ok == nil then return nil, msg2, code2 end
          end
        end
      end
      set.changed = #set.remove > 0
      return set
    end)
    if not set then return nil, msg, code end
    result.sets[i] = set
    result.deleted = result.deleted + #set.remove
    result.changed = result.changed or set.changed
  end
  return result
end

function Provider:__tostring()
  return "cloudflare dns " .. self.zone
end

M.Provider = Provider
return M
