--- The RFC 2136 DNS provider: record sets in a zone on a server that takes
--- dynamic updates (BIND, Knot, PowerDNS, Windows DNS), TSIG-signed.  It has
--- the shape of every tlr DNS provider (`query`, `records`, `ensure`,
--- `delete`, see tlr.dns.cloudflare) plus `axfr`.
---
--- `ensure` is idempotent like terraform's dns provider: it reads the
--- current sets and sends one atomic UPDATE only for the sets that differ,
--- each guarded by a prerequisite on what it read ("the set is still
--- exactly this" or "the set still does not exist"), so a concurrent change
--- makes the update fail instead of being overwritten.
local dns = require "tlr.dns"
local sched = require "tlr.sched"
local opts = require "tlr.opts"

local M = {}

local Provider = {}
Provider.__index = Provider
Provider.__name = "tlr.dns.Rfc2136"

local TYPES = { A = true, AAAA = true, CNAME = true, TXT = true }
local READ_CONCURRENCY = 16

local NEW_SPEC = {
  server = "string", port = "integer", zone = "string", key_name = "string",
  key_algorithm = "string", key_secret = "string", timeout = "number", retries = "integer",
  transport = "string", ttl = "integer",
}

--- Creates a provider for one zone on one server.
---@param o {server: string, port?: integer, zone: string, key_name?: string, key_algorithm?: string, key_secret?: string, timeout?: number, retries?: integer, transport?: "udp"|"tcp", ttl?: integer}
---@return table provider
function M.new(o)
  opts.check("dns.rfc2136", o, NEW_SPEC)
  opts.arg(o and type(o.zone) == "string", "dns.rfc2136", "zone is required")
  local zone = dns.canonical(o.zone)
  opts.arg(zone ~= nil, "dns.rfc2136", "bad zone name '" .. tostring(o.zone) .. "'")
  local client = dns.client {
    server = o.server, port = o.port, key_name = o.key_name, key_algorithm = o.key_algorithm,
    key_secret = o.key_secret, timeout = o.timeout, retries = o.retries, transport = o.transport,
  }
  return setmetatable({ zone = zone, client = client, ttl = o.ttl or 3600 }, Provider)
end

-- The absolute name of `name` in the zone; raises for names outside it.
function Provider:_fqdn(name, fname)
  opts.arg(type(name) == "string", fname, "name must be a string")
  local fqdn = dns.fqdn(name, self.zone)
  opts.arg(fqdn ~= nil, fname, "bad name '" .. name .. "'")
  opts.arg(dns.in_zone(fqdn, self.zone), fname,
    "name '" .. name .. "' is outside zone " .. self.zone)
  return fqdn
end

-- A failure for an error rcode in a reply to `what`.
local function rcode_failure(what, rcode)
  local hints = {
    REFUSED = { "EFORBIDDEN", "the server refused it (no key, or the key may not do this)" },
    NOTAUTH = { "EAUTH", "the server is not authoritative for the zone or did not accept the key" },
    NOTZONE = { "EAPI", "a name is outside the zone" },
    YXRRSET = { "EAPI", "the record set changed since it was read (concurrent change)" },
    NXRRSET = { "EAPI", "the record set changed since it was read (concurrent change)" },
    YXDOMAIN = { "EAPI", "the name exists" },
    SERVFAIL = { "EAPI", "the server failed" },
    FORMERR = { "EAPI", "the server could not parse the request" },
    NOTIMP = { "EAPI", "the server does not implement this" },
  }
  local h = hints[rcode] or { "EAPI", "the server answered with an error" }
  return nil, string.format("%s: %s (%s)", what, h[2], rcode), h[1]
end

-- Reads the current set name/type: records (owner == fqdn, type == rtype),
-- or nil, msg, code.  With `strict` a CNAME at the name is a failure for
-- other types (a server ignores records added beside it).
function Provider:_read(fqdn, rtype, strict)
  local reply, msg, code = self.client:query(fqdn, rtype)
  if not reply then return nil, msg, code end
  if reply.rcode ~= "NOERROR" and reply.rcode ~= "NXDOMAIN" then
    return rcode_failure(string.format("query %s %s", fqdn, rtype), reply.rcode)
  end
  local list = {}
  for _, rr in ipairs(reply.answer) do
    local owner = dns.canonical(rr.name)
    if owner == fqdn and rr.type == rtype then
      list[#list + 1] = rr
    elseif strict and owner == fqdn and rr.type == "CNAME" then
      return nil, string.format("%s has a CNAME (%s); a %s set cannot sit beside it", fqdn, rr.data,
        rtype), "EAPI"
    end
  end
  return list
end

-- A set {name, type, ttl, values (canonical, sorted), records} from records of one name/type.
local function as_set(rrs)
  local first = rrs[1]
  local set = { name = dns.canonical(first.name), type = first.type, ttl = first.ttl, values = {},
    records = rrs }
  for i, rr in ipairs(rrs) do
    set.values[i] = dns.normalize(rr.type, rr.type == "TXT" and rr.strings or rr.data) or rr.data
  end
  table.sort(set.values)
  return set
end

--- Reads the record set name/type; `name` is relative to the zone unless it
--- ends with a dot.  Returns {name, type, ttl, values, records} (values
--- canonical and sorted, TXT strings joined; records as decoded), nil when
--- there is no such set, or nil, msg, code.
---@param name string
---@param rtype? string default "A"
---@return table|nil set, string? msg, string? code
function Provider:query(name, rtype)
  rtype = dns.type_name(rtype or "A")
  local rrs, msg, code = self:_read(self:_fqdn(name, "query"), rtype)
  if not rrs then return nil, msg, code end
  if #rrs == 0 then return nil end
  return as_set(rrs)
end

--- Transfers the whole zone (AXFR); returns its records as decoded, SOA first.
---@return table[]|nil records, string? msg, string? code
function Provider:axfr()
  return self.client:axfr(self.zone)
end

--- Every record set of the zone (AXFR): a list of {name, type, ttl, values,
--- records} sorted by name and type, or nil, msg, code.
---@return table[]|nil sets, string? msg, string? code
function Provider:records()
  local rrs, msg, code = self.client:axfr(self.zone)
  if not rrs then return nil, msg, code end
  local groups, keys = {}, {}
  for _, rr in ipairs(rrs) do
    local key = dns.canonical(rr.name) .. " " .. rr.type
    if not groups[key] then
      groups[key] = {}
      keys[#keys + 1] = key
    end
    table.insert(groups[key], rr)
  end
  table.sort(keys)
  local sets = {}
  for i, key in ipairs(keys) do sets[i] = as_set(groups[key]) end
  return sets
end

local SET_SPEC = { name = "string", type = "string", ttl = "integer", values = "table" }

-- Validates one desired set and normalizes it: {fqdn, type, ttl, values (canonical)}.
function Provider:_desired(s, fname)
  opts.check(fname, s, SET_SPEC)
  local rtype = s.type and s.type:upper() or "A"
  opts.arg(TYPES[rtype], fname,
    "type must be A, AAAA, CNAME or TXT, got '" .. tostring(s.type) .. "'")
  opts.arg(type(s.values) == "table" and #s.values > 0, fname,
    "values must be a non-empty list (use delete to remove a set)")
  opts.arg(rtype ~= "CNAME" or #s.values == 1, fname, "a CNAME set has exactly one value")
  local values, raw = {}, {}
  for i, v in ipairs(s.values) do
    local n, msg = dns.normalize(rtype, v)
    opts.arg(n ~= nil, fname, "values[" .. i .. "]: " .. tostring(msg))
    if not raw[n] then values[#values + 1] = n end
    raw[n] = rtype == "TXT" and v or n
  end
  local ttl = s.ttl or self.ttl
  opts.arg(ttl >= 0 and ttl <= 0x7FFFFFFF, fname, "ttl out of range")
  return { fqdn = self:_fqdn(s.name, fname), type = rtype, ttl = ttl, values = values, raw = raw }
end

-- One set's list when given a set or a list of sets.
local function as_list(sets, fname)
  opts.arg(type(sets) == "table", fname, "record set table (or a list of them) expected")
  if sets.name or sets.type or sets.values then return { sets } end
  opts.arg(#sets > 0, fname, "empty list of record sets")
  return sets
end

-- Reads the current state of every set, at most READ_CONCURRENCY at once.
function Provider:_read_all(list, strict)
  local current = {}
  if #list == 1 then
    local rrs, msg, code = self:_read(list[1].fqdn, list[1].type, strict)
    if not rrs then return nil, msg, code end
    current[1] = rrs
    return current
  end
  local sem, tasks, failure = sched.semaphore(READ_CONCURRENCY), {}, nil
  for i, d in ipairs(list) do
    tasks[i] = sched.spawn("dns read " .. d.fqdn, function()
      sem:with(function()
        if failure then return end
        local rrs, msg, code = self:_read(d.fqdn, d.type, strict)
        if rrs then current[i] = rrs else failure = failure or { msg, code } end
      end)
    end)
  end
  sched.all(tasks)
  if failure then return nil, failure[1], failure[2] end
  return current
end

-- The canonical values and the TTL of the records read.
local function have_of(d, rrs)
  local values, ttl = {}, nil
  for i, rr in ipairs(rrs) do
    values[i] = assert(dns.normalize(d.type, d.type == "TXT" and rr.strings or rr.data))
    ttl = ttl or rr.ttl
  end
  return values, ttl
end

-- Prerequisite: the set is exactly what was read (or still absent).
local function add_prerequisites(list, d, rrs)
  if #rrs == 0 then
    list[#list + 1] = { name = d.fqdn, type = d.type, class = "NONE" }
  end
  for _, rr in ipairs(rrs) do
    list[#list + 1] = { name = d.fqdn, type = d.type, class = "IN", ttl = 0,
      data = d.type == "TXT" and rr.strings or rr.data }
  end
end

-- Sends an UPDATE of the zone; returns the reply or a failure (error rcode included).
function Provider:_update(prereq, update, what)
  local reply, msg, code = self.client:request {
    opcode = "UPDATE", question = { { name = self.zone, type = "SOA" } },
    answer = prereq, authority = update,
  }
  if not reply then return nil, msg, code end
  if reply.rcode ~= "NOERROR" then
    local _, m, c = rcode_failure(what, reply.rcode)
    return nil, m, c, reply.rcode
  end
  return reply
end

--- Makes record sets look as given.  `sets` is one {name, type, ttl,
--- values} or a list of them; all the sets that differ from what the server
--- has go into one UPDATE (atomic: all or none).  With `{dry_run = true}`
--- it only reports.  A set changed by someone else between the read and the
--- update makes the update fail (EAPI, "concurrent change") unless the
--- server already holds the wanted values.
---@param sets table|table[] {name, type = "A"|"AAAA"|"CNAME"|"TXT", ttl?, values}
---@param o? {dry_run?: boolean}
---@return table|nil result {changed, sets = {{name, type, changed, add, remove, ttl, old_ttl}}}
---@return string? msg
---@return string? code
function Provider:ensure(sets, o)
  o = opts.check("ensure", o, { dry_run = "boolean" })
  local list, seen = {}, {}
  for i, s in ipairs(as_list(sets, "ensure")) do
    local d = self:_desired(s, "ensure")
    local key = d.fqdn .. " " .. d.type
    opts.arg(not seen[key], "ensure", "record set " .. key .. " given twice")
    seen[key] = true
    list[i] = d
  end
  local current, msg, code = self:_read_all(list, true)
  if not current then return nil, msg, code end
  local prereq, update, result, changed = {}, {}, { changed = false, sets = {} }, {}
  for i, d in ipairs(list) do
    local have, old_ttl = have_of(d, current[i])
    local same, add, remove = dns.diff_sets(have, d.values)
    local differs = not same or (old_ttl ~= nil and old_ttl ~= d.ttl)
    result.sets[i] = { name = d.fqdn, type = d.type, changed = differs, add = add, remove = remove,
      ttl = d.ttl, old_ttl = old_ttl }
    if differs then
      result.changed = true
      changed[#changed + 1] = i
      add_prerequisites(prereq, d, current[i])
      if #current[i] > 0 then
        update[#update + 1] = { name = d.fqdn, type = d.type, class = "ANY" }
      end
      for _, v in ipairs(d.values) do
        update[#update + 1] = { name = d.fqdn, type = d.type, ttl = d.ttl, data = d.raw[v] }
      end
    end
  end
  if not result.changed or o.dry_run then return result end
  local what = string.format("UPDATE %s (%d sets)", self.zone, #changed)
  local reply, rcode
  reply, msg, code, rcode = self:_update(prereq, update, what)
  if not reply and (rcode == "YXRRSET" or rcode == "NXRRSET") then
    -- our own earlier try may have landed (a lost UDP reply); accept it if so
    local now_list = {}
    for k, i in ipairs(changed) do now_list[k] = list[i] end
    local again = self:_read_all(now_list, true)
    local done = again ~= nil
    for k, d in ipairs(now_list) do
      if done then
        local have, ttl = have_of(d, again[k])
        done = dns.diff_sets(have, d.values) and ttl == d.ttl
      end
    end
    if done then return result end
  end
  if not reply then return nil, msg, code end
  for _, i in ipairs(changed) do -- a server may ignore a CNAME beside other data: check
    local d = list[i]
    if d.type == "CNAME" then
      local rrs = self:_read(d.fqdn, "CNAME")
      if not rrs or #rrs ~= 1 or dns.normalize("CNAME", rrs[1].data) ~= d.values[1] then
        return nil, string.format("%s: the server ignored the CNAME %s (other records at the "
          .. "name?)", what, d.fqdn), "EAPI"
      end
    end
  end
  return result
end

--- Deletes record sets: one {name, type} or a list of them (the tables
--- given to ensure do), in one UPDATE guarded by what was read.  Absent
--- sets are no change.
---@param sets table|table[] {name, type}
---@param o? {dry_run?: boolean}
---@return table|nil result {changed, deleted (records), sets = {{name, type, changed, remove}}}
---@return string? msg
---@return string? code
function Provider:delete(sets, o)
  o = opts.check("delete", o, { dry_run = "boolean" })
  local list = {}
  for i, s in ipairs(as_list(sets, "delete")) do
    opts.check("delete", s, SET_SPEC) -- the sets given to ensure do (ttl and values are ignored)
    local rtype = (s.type or "A"):upper()
    opts.arg(TYPES[rtype], "delete", "type must be A, AAAA, CNAME or TXT")
    list[i] = { fqdn = self:_fqdn(s.name, "delete"), type = rtype }
  end
  local current, msg, code = self:_read_all(list)
  if not current then return nil, msg, code end
  local prereq, update, result = {}, {}, { changed = false, deleted = 0, sets = {} }
  for i, d in ipairs(list) do
    local have = have_of(d, current[i])
    result.sets[i] = { name = d.fqdn, type = d.type, changed = #have > 0, remove = have }
    if #have > 0 then
      result.changed = true
      result.deleted = result.deleted + #have
      add_prerequisites(prereq, d, current[i])
      update[#update + 1] = { name = d.fqdn, type = d.type, class = "ANY" }
    end
  end
  if not result.changed or o.dry_run then return result end
  local reply
  reply, msg, code = self:_update(prereq, update, string.format("UPDATE %s (delete)", self.zone))
  if not reply then return nil, msg, code end
  return result
end

return M
