--- DNS for tlr: the wire format (tlr.dns.core), TSIG (tlr.tsig.core) and
--- nonblocking sockets (tlr.net.core) put together into a client that
--- queries, transfers and updates zones, plus the helpers the providers
--- share (names, value normalisation, record-set comparison).
---
--- UDP first with TCP when the reply is truncated or the request is too
--- big; per-try timeouts and retries; every wait goes through the event
--- loop, so many tasks can talk DNS at once.  Failures are `nil, msg, code`.
local core = require "tlr.dns.core"
local tsig = require "tlr.tsig.core"
local net = require "tlr.net.core"
local sched = require "tlr.sched"
local crypto = require "tlr.crypto"
local log = require "tlr.log"
local opts = require "tlr.opts"

local M = {}

local now = sched.now
local UDP_REQUEST_MAX = 1232 -- larger requests go over TCP (RFC 9715's safe size)
local EDNS_SIZE = 1232

M.encode = core.encode
M.decode = core.decode
M.rdata = core.rdata
M.rdata_text = core.rdata_text
M.type_code = core.type_code
M.type_name = core.type_name
M.algorithms = tsig.algorithms()

-- ========== names and values ==========

--- Returns the canonical form of a domain name: absolute, lowercase.
---@param name string
---@return string|nil name, string? msg, string? code
function M.canonical(name)
  opts.arg(type(name) == "string", "dns.canonical", "name must be a string")
  return (core.name(name))
end

--- Makes `name` absolute inside `zone`: "node1" → "node1.lab.test.", "@" or
--- "" → the zone itself; a name with a trailing dot is already absolute.
---@param name string
---@param zone string
---@return string|nil fqdn, string? msg, string? code
function M.fqdn(name, zone)
  opts.arg(type(name) == "string", "dns.fqdn", "name must be a string")
  opts.arg(type(zone) == "string", "dns.fqdn", "zone must be a string")
  local z, msg, code = core.name(zone)
  if not z then return nil, msg, code end
  if name == "@" or name == "" then return z end
  if name:sub(-1) == "." then return core.name(name) end
  return core.name(name .. "." .. (z == "." and "" or z))
end

--- True when fqdn is the zone or inside it.
function M.in_zone(fqdn, zone)
  return fqdn == zone or zone == "." or fqdn:sub(-#zone - 1) == "." .. zone
end

local NAME_TYPES = { CNAME = true, NS = true, PTR = true, DNAME = true, MX = true, SRV = true }

--- Returns the canonical text of one record value, so that sets compare
--- equal whatever the spelling: addresses as inet_ntop prints them, names
--- lowercase and absolute, TXT as given (a list of strings is joined).
---@param rtype string "A", "AAAA", "CNAME", "TXT", ...
---@param value string|string[]
---@return string|nil value, string? msg, string? code
function M.normalize(rtype, value)
  rtype = core.type_name(rtype)
  if rtype == "TXT" then
    if type(value) == "table" then return table.concat(value) end
    if type(value) ~= "string" then return nil, "TXT value must be a string", "EINVAL" end
    return value
  end
  if type(value) ~= "string" then return nil, rtype .. " value must be a string", "EINVAL" end
  if rtype == "CNAME" or rtype == "NS" or rtype == "PTR" or rtype == "DNAME" then
    local n, msg = core.name(value)
    if not n then return nil, rtype .. " value: " .. msg, "EINVAL" end
    return n
  end
  local wire, msg, code = core.rdata(rtype, value)
  if not wire then return nil, msg, code end
  local text = core.rdata_text(rtype, wire)
  if NAME_TYPES[rtype] then text = text:lower() end
  return text
end

--- Compares two lists of normalized values as sets (order and duplicates
--- do not matter).  Returns equal, the values only in `want` (to add) and
--- those only in `have` (to remove).
---@param have string[]
---@param want string[]
---@return boolean equal, string[] add, string[] remove
function M.diff_sets(have, want)
  local in_have, in_want, add, remove = {}, {}, {}, {}
  for _, v in ipairs(have) do in_have[v] = true end
  for _, v in ipairs(want) do
    if not in_have[v] and not in_want[v] then add[#add + 1] = v end
    in_want[v] = true
  end
  for _, v in ipairs(have) do
    if not in_want[v] then
      remove[#remove + 1] = v
      in_want[v] = true -- report a duplicate once
    end
  end
  table.sort(add)
  table.sort(remove)
  return #add == 0 and #remove == 0, add, remove
end

-- ========== transport ==========

local function wait_fd(sock, events, deadline)
  local left = deadline - now()
  if left <= 0 then return false end
  local id = sock:watch(events)
  local ok = sched.await(id, left)
  sock:unwatch()
  return ok
end

local function where(server, port) return string.format("%s port %d", server, port) end

local function reply_id(data)
  return #data >= 12 and data:byte(1) * 256 + data:byte(2), #data >= 12 and data:byte(3) >= 128
end

-- One query over UDP with retries; the same socket keeps listening across
-- tries, so a late answer to an earlier try still counts.
local function udp_exchange(server, port, wire, o)
  local sock <close>, msg, code = net.udp(server, port)
  if not sock then return nil, msg, code end
  local id = wire:byte(1) * 256 + wire:byte(2)
  local tries = o.retries + 1
  local err, err_code
  for _ = 1, tries do
    local deadline = now() + o.timeout
    local n, m, c = sock:send(wire)
    while n == 0 and wait_fd(sock, "w", deadline) do n, m, c = sock:send(wire) end
    if not n then err, err_code = m, c end
    while n do
      local data, m2, c2 = sock:recv()
      if data then
        local rid, qr = reply_id(data)
        if rid == id and qr then return data end
      elseif data == false then
        if not wait_fd(sock, "r", deadline) then break end
      else -- ICMP port unreachable and the like: try again a little later
        err, err_code = m2, c2
        sched.sleep(math.min(o.timeout, 0.2))
        break
      end
    end
  end
  if err then
    return nil, string.format("DNS %s: %s (%d tries)", where(server, port), err, tries), err_code
  end
  return nil, string.format("DNS %s: no reply after %d tries of %gs", where(server, port), tries,
    o.timeout), "ETIMEDOUT"
end

-- Sends `wire` over one TCP connection and hands each reply message to
-- on_message(data) until it returns true.  Each wait has o.timeout.
local function tcp_once(server, port, wire, o, on_message)
  local sock <close>, msg, code = net.tcp(server, port)
  if not sock then return nil, msg, code, false end
  local deadline = now() + o.timeout
  local ok, m, c = sock:connected()
  while ok == false and wait_fd(sock, "w", deadline) do ok, m, c = sock:connected() end
  local at = "DNS " .. where(server, port) .. " (tcp)"
  if ok == nil then return nil, at .. ": " .. m, c, false end
  if not ok then
    return nil, string.format("%s: connect timed out after %gs", at, o.timeout), "ETIMEDOUT", false
  end
  local frame = string.pack(">s2", wire)
  local pos = 1
  while pos <= #frame do
    local n
    n, m, c = sock:send(frame, pos)
    if not n then return nil, at .. ": " .. m, c, false end
    pos = pos + n
    if pos <= #frame and not wait_fd(sock, "w", deadline) then
      return nil, at .. ": send timed out", "ETIMEDOUT", false
    end
  end
  local buf, got = "", false
  deadline = now() + o.timeout
  while true do
    while #buf >= 2 do
      local len = string.unpack(">I2", buf)
      if #buf < 2 + len then break end
      local data = buf:sub(3, 2 + len)
      buf = buf:sub(3 + len)
      got = true
      local done, m2, c2 = on_message(data)
      if done == nil then return nil, m2, c2, got end
      if done then return true end
      deadline = now() + o.timeout
    end
    local data
    data, m, c = sock:recv()
    if data == "" then
      return nil, at .. ": connection closed before the reply was complete", "ECONNRESET", got
    elseif data then
      buf = buf .. data
    elseif data == nil then
      return nil, at .. ": " .. m, c, got
    elseif not wait_fd(sock, "r", deadline) then
      return nil, string.format("%s: no reply within %gs", at, o.timeout), "ETIMEDOUT", got
    end
  end
end

local RETRY_CODES = { ETIMEDOUT = true, ECONNREFUSED = true, ECONNRESET = true }

local function tcp_exchange(server, port, wire, o, on_message)
  local msg, code
  for _ = 1, o.retries + 1 do
    local ok, got
    ok, msg, code, got = tcp_once(server, port, wire, o, on_message)
    if ok then return true end
    if got or not RETRY_CODES[code] then break end
  end
  return nil, msg, code
end

local EXCHANGE_SPEC = { timeout = "number", retries = "integer", tcp = "boolean" }

--- Sends one wire message to server:port and returns the reply's wire
--- form and "udp" or "tcp".  UDP unless `tcp` is set or the message is
--- bigger than 1232 bytes; a truncated UDP reply is asked again over TCP.
---@param server string numeric IPv4/IPv6 address
---@param port integer
---@param wire string
---@param o? {timeout?: number, retries?: integer, tcp?: boolean} timeout per try (2 s), retries (2)
---@return string|nil reply, string|nil via_or_msg, string? code
function M.exchange(server, port, wire, o)
  o = opts.check("dns.exchange", o, EXCHANGE_SPEC)
  local eo = { timeout = o.timeout or 2, retries = o.retries or 2 }
  local id = wire:byte(1) * 256 + wire:byte(2)
  if not o.tcp and #wire <= UDP_REQUEST_MAX then
    local reply, msg, code = udp_exchange(server, port, wire, eo)
    if not reply then return nil, msg, code end
    if reply:byte(3) & 2 == 0 then return reply, "udp" end -- not truncated
  end
  local reply
  local ok, msg, code = tcp_exchange(server, port, wire, eo, function(data)
    local rid = reply_id(data)
    if rid ~= id then return false end
    reply = data
    return true
  end)
  if not ok then return nil, msg, code end
  return reply, "tcp"
end

-- ========== the client ==========

local Client = {}
Client.__index = Client
Client.__name = "tlr.dns.Client"

local CLIENT_SPEC = {
  server = "string", port = "integer", key_name = "string", key_algorithm = "string",
  key_secret = "string", timeout = "number", retries = "integer", transport = "string",
  fudge = "integer",
}

--- Creates a DNS client for one server; with a key every request is signed
--- with TSIG and every reply must carry a valid signature.
---@param o {server: string, port?: integer, key_name?: string, key_algorithm?: string, key_secret?: string, timeout?: number, retries?: integer, transport?: "udp"|"tcp", fudge?: integer}
---@return table client
function M.client(o)
  opts.check("dns.client", o, CLIENT_SPEC)
  opts.arg(o and type(o.server) == "string", "dns.client", "server is required")
  opts.arg(o.transport == nil or o.transport == "udp" or o.transport == "tcp", "dns.client",
    "transport must be 'udp' or 'tcp'")
  local c = setmetatable({
    server = o.server, port = o.port or 53, timeout = o.timeout or 2, retries = o.retries or 2,
    tcp = o.transport == "tcp", fudge = o.fudge or 300,
  }, Client)
  opts.arg(c.port > 0 and c.port < 65536, "dns.client", "port out of range")
  if o.key_name or o.key_secret then
    opts.arg(type(o.key_name) == "string" and type(o.key_secret) == "string", "dns.client",
      "key_name and key_secret go together")
    log.secret(o.key_secret)
    local alg = o.key_algorithm or "hmac-sha256"
    opts.arg(tsig.canonical(alg) ~= nil, "dns.client", "unknown key_algorithm '" .. alg .. "'")
    local raw = crypto.base64_decode(o.key_secret)
    opts.arg(raw and #raw > 0, "dns.client", "key_secret must be base64")
    log.secret(raw)
    c.key = { name = o.key_name, algorithm = tsig.canonical(alg), secret = raw }
  end
  return c
end

local function new_id()
  local b = crypto.random(2)
  return b:byte(1) * 256 + b:byte(2)
end

-- A TSIG problem as a failure: the server's verdict on our request, or ours on its reply.
local function tsig_failure(self, what, info, reply, signed_at)
  local key = string.format("key '%s' (%s)", self.key.name, self.key.algorithm)
  if info.status == "UNSIGNED" then
    local m = reply and core.decode(reply)
    local rcode = m and m.rcode or "?"
    if rcode == "NOTAUTH" then
      return nil, string.format("%s: the server did not accept %s (NOTAUTH)", what, key), "EAUTH"
    end
    return nil, string.format("%s: the reply is not signed (rcode %s); expected a TSIG with %s",
      what, rcode, key), "ECRYPTO"
  end
  if info.by == "server" then
    if info.status == "BADSIG" then
      return nil, string.format("%s: the server rejected the TSIG signature (BADSIG): the secret "
        .. "of %s does not match the server's", what, key), "EAUTH"
    elseif info.status == "BADKEY" then
      return nil, string.format("%s: the server does not know %s (BADKEY)", what, key), "EAUTH"
    elseif info.status == "BADTIME" then
      local skew = info.server_time and signed_at
        and (" clocks differ by " .. math.abs(info.server_time - signed_at) .. "s;") or ""
      return nil, string.format("%s: the server rejected the signing time (BADTIME):%s fudge %ds",
        what, skew, self.fudge), "EAUTH"
    end
    return nil, string.format("%s: TSIG error %s from the server", what, tostring(info.status)),
      "EAUTH"
  end
  if info.status == "BADTIME" then
    return nil, string.format("%s: the reply's TSIG time %d is outside the fudge (BADTIME)", what,
      info.time), "ECRYPTO"
  end
  return nil, string.format("%s: the reply's TSIG does not verify with %s (%s)", what, key,
    info.status), "ECRYPTO"
end

--- Sends a message table (see tlr.dns.core encode: id is set here) and
--- returns the decoded, verified reply with `via` ("udp"|"tcp") and `size`.
--- A reply with an error rcode is still a reply; only transport, parse and
--- TSIG problems are failures (TSIG: EAUTH when the server refuses our
--- signature, ECRYPTO when its reply does not verify).
---@param msg table
---@return table|nil reply, string? msg, string? code
function Client:request(msg)
  msg.id = new_id()
  local what = string.format("DNS %s %s to %s", msg.opcode or "QUERY",
    msg.question and msg.question[1] and msg.question[1].name or "", where(self.server, self.port))
  local ok, wire = pcall(core.encode, msg)
  if not ok then
    if tostring(wire):find("longer than 65535", 1, true) then
      return nil, what .. ": the message does not fit in 65535 bytes", "ETOOBIG"
    end
    error(wire, 2)
  end
  local mac, code
  local signed_at = os.time()
  if self.key then
    wire, mac, code = tsig.sign(wire, self.key, { time = signed_at, fudge = self.fudge })
    if not wire then return nil, what .. ": " .. mac, code end
  end
  local reply, via
  reply, via, code = M.exchange(self.server, self.port, wire,
    { timeout = self.timeout, retries = self.retries, tcp = self.tcp })
  if not reply then return nil, via, code end
  if self.key then
    local ok, info = tsig.verify(reply, self.key, { request_mac = mac })
    if ok == nil then return nil, what .. ": " .. info, "EPROTO" end
    if not ok then return tsig_failure(self, what, info, reply, signed_at) end
  end
  local m, err, ecode = core.decode(reply)
  if not m then return nil, what .. ": " .. err, ecode end
  m.via, m.size = via, #reply
  return m
end

--- Queries name/type (no recursion asked) with EDNS; returns the reply.
---@param name string absolute name
---@param rtype string|integer
---@return table|nil reply, string? msg, string? code
function Client:query(name, rtype)
  return self:request {
    opcode = "QUERY", question = { { name = name, type = rtype or "A" } },
    edns = { udp_size = EDNS_SIZE },
  }
end

--- Transfers a zone (AXFR over TCP, every message's TSIG checked) and
--- returns its records, the SOA first; the closing SOA is dropped.
---@param zone string
---@return table[]|nil records, string? msg, string? code
function Client:axfr(zone)
  local msg = { opcode = "QUERY", question = { { name = zone, type = "AXFR" } } }
  msg.id = new_id()
  local wire, mac = core.encode(msg), nil
  local what = string.format("AXFR %s from %s", zone, where(self.server, self.port))
  if self.key then
    wire, mac = assert(tsig.sign(wire, self.key, { time = os.time(), fudge = self.fudge }))
  end
  local records, soas, first, unsigned, prior_mac = {}, 0, true, {}, mac
  local ok, err, code = tcp_exchange(self.server, self.port, wire,
    { timeout = self.timeout, retries = self.retries }, function(data)
      if reply_id(data) ~= msg.id then return false end
      if self.key then
        local vok, info = tsig.verify(data, self.key, { request_mac = prior_mac,
          prior = #unsigned > 0 and table.concat(unsigned) or nil, timers_only = not first })
        if vok == nil then return nil, what .. ": " .. info, "EPROTO" end
        if vok then
          prior_mac, unsigned = info.mac, {}
        elseif info.status == "UNSIGNED" and not first and #unsigned < 99 then
          unsigned[#unsigned + 1] = data
        else
          return tsig_failure(self, what, info, data)
        end
      end
      first = false
      local m, e, c = core.decode(data)
      if not m then return nil, what .. ": " .. e, c end
      if m.rcode ~= "NOERROR" then
        return nil, string.format("%s: %s", what, m.rcode), m.rcode == "REFUSED" and "EFORBIDDEN"
          or m.rcode == "NOTAUTH" and "EAUTH" or "EAPI"
      end
      for _, rr in ipairs(m.answer) do
        if rr.type == "SOA" then soas = soas + 1 end
        if soas == 2 then return true end
        records[#records + 1] = rr
      end
      return false
    end)
  if not ok then return nil, err, code end
  if self.key and #unsigned > 0 then
    return nil, what .. ": the last message of the transfer is not signed", "ECRYPTO"
  end
  return records
end

--- An RFC 2136 provider (see tlr.dns.rfc2136).
---@param o table {server, port, zone, key_name, key_algorithm, key_secret, timeout, retries, transport}
function M.rfc2136(o)
  return require("tlr.dns.rfc2136").new(o)
end

--- A Cloudflare API v4 provider (see tlr.dns.cloudflare): the same
--- query/ensure/delete/records shape as rfc2136.
---@param o table
function M.cloudflare(o)
  return require("tlr.dns.cloudflare").new(o)
end

return M
