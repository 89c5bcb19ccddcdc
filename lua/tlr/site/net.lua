--- IPv4/IPv6 addresses, prefixes and ranges for the site file's checks.
---
--- An address is a table `{family = 4|6, bytes = <4 or 16 byte string>}`;
--- byte strings of one family compare (`<`, `==`) as the numbers they are.
--- Parsing is strict: IPv4 needs four decimal parts without leading zeros
--- ("010" is refused, since some tools read it as octal), IPv6 follows RFC
--- 4291 text forms (with "::" and an IPv4 tail), printed the RFC 5952 way.
local M = {}

local function ipv4_bytes(s)
  local parts = {}
  for part in (s .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = part end
  if #parts ~= 4 then return nil end
  local out = {}
  for i, p in ipairs(parts) do
    if not p:match("^%d+$") or #p > 3 or (#p > 1 and p:sub(1, 1) == "0") then return nil end
    local n = tonumber(p)
    if n > 255 then return nil end
    out[i] = string.char(n)
  end
  return table.concat(out)
end

local function ipv6_bytes(s)
  if s:find("[^%x:.]") then return nil end
  local head, tail = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    if s:find("::", dc + 1, true) then return nil end
    head, tail = s:sub(1, dc - 1), s:sub(dc + 2)
  end
  local function groups(part, last)
    local out = {}
    if part == "" then return out end
    local items = {}
    for g in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = g end
    for i, g in ipairs(items) do
      if i == #items and last and g:find(".", 1, true) then
        local v4 = ipv4_bytes(g)
        if not v4 then return nil end
        out[#out + 1] = v4:sub(1, 2)
        out[#out + 1] = v4:sub(3, 4)
      else
        if not g:match("^%x%x?%x?%x?$") then return nil end
        local n = tonumber(g, 16)
        out[#out + 1] = string.char(n >> 8, n & 0xff)
      end
    end
    return out
  end
  local h, t = groups(head, tail == nil), {}
  if tail then t = groups(tail, true) end
  if not h or not t then return nil end
  local n = #h + #t
  if dc then
    if n > 7 then return nil end
    return table.concat(h) .. string.rep("\0\0", 8 - n) .. table.concat(t)
  end
  if n ~= 8 then return nil end
  return table.concat(h)
end

--- Parses an address ("127.77.0.11", "fd00::11"); nil when it is not one.
---@param s string
---@return {family: integer, bytes: string}|nil
function M.parse(s)
  if type(s) ~= "string" then return nil end
  if s:find(":", 1, true) then
    local b = ipv6_bytes(s)
    return b and { family = 6, bytes = b } or nil
  end
  local b = ipv4_bytes(s)
  return b and { family = 4, bytes = b } or nil
end

--- Parses "address/prefix"; the address may have host bits set.  Returns
--- the address and the prefix length, or nil and why.
---@param s string
---@return {family: integer, bytes: string}|nil addr, integer|string prefix_or_reason
function M.parse_cidr(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local a, p = s:match("^([^/]+)/(%d+)$")
  if not a then return nil, "not address/prefix" end
  local addr = M.parse(a)
  if not addr then return nil, "bad address" end
  local prefix = tonumber(p)
  if #p > 1 and p:sub(1, 1) == "0" or prefix > #addr.bytes * 8 then
    return nil, "bad prefix length"
  end
  return addr, math.tointeger(prefix)
end

--- The address with the bits after `prefix` set to 0 (or to 1 with `ones`).
local function mask(bytes, prefix, ones)
  local out = {}
  for i = 1, #bytes do
    local bits = prefix - (i - 1) * 8
    local b = bytes:byte(i)
    if bits <= 0 then
      b = ones and 0xff or 0
    elseif bits < 8 then
      local m = (0xff << (8 - bits)) & 0xff
      b = ones and (b | (~m & 0xff)) or (b & m)
    end
    out[i] = string.char(b)
  end
  return table.concat(out)
end

---@class tlr.site.Subnet
---@field family integer
---@field bytes string the network address
---@field prefix integer
---@field last string the last address (broadcast for IPv4)

--- The subnet an address/prefix is in.
---@return tlr.site.Subnet
function M.subnet(addr, prefix)
  return { family = addr.family, bytes = mask(addr.bytes, prefix), prefix = prefix,
    last = mask(addr.bytes, prefix, true) }
end

--- True when the address is inside the subnet.
function M.contains(net, addr)
  return net.family == addr.family and mask(addr.bytes, net.prefix) == net.bytes
end

--- True when the address is the network or the broadcast address of an IPv4
--- subnet with room for hosts (/30 and shorter); those cannot be a host's.
function M.reserved(net, addr)
  if net.family ~= 4 or net.prefix > 30 then return false end
  return addr.bytes == net.bytes or addr.bytes == net.last
end

--- True when two subnets share an address.
function M.overlaps(a, b)
  if a.family ~= b.family then return false end
  return a.bytes <= b.last and b.bytes <= a.last
end

--- Prints an address: dotted quad, or RFC 5952 (lower case, longest zero run as "::").
---@param addr {family: integer, bytes: string}|string
---@return string
function M.format(addr)
  local b = type(addr) == "table" and addr.bytes or addr
  if #b == 4 then return string.format("%d.%d.%d.%d", b:byte(1, 4)) end
  local g = {}
  for i = 1, 8 do g[i] = b:byte(2 * i - 1) * 256 + b:byte(2 * i) end
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j < 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > best_len then best, best_len = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  local parts = {}
  for k = 1, 8 do parts[k] = string.format("%x", g[k]) end
  if not best then return table.concat(parts, ":") end
  local left = table.concat(parts, ":", 1, best - 1)
  local right = best + best_len <= 8 and table.concat(parts, ":", best + best_len, 8) or ""
  return left .. "::" .. right
end

--- Prints a subnet as "network/prefix".
function M.format_subnet(net)
  return M.format(net.bytes) .. "/" .. net.prefix
end

--- Parses an address range: "first-last" (both addresses, first <= last)
--- or a CIDR.  Returns {family, first, last, text} (first/last byte
--- strings, text normalised), or nil and why.
---@param s string
---@return table|nil range, string? reason
function M.parse_range(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local a, b = s:match("^%s*([^%s-]+)%s*%-%s*([^%s-]+)%s*$")
  if a then
    local first, last = M.parse(a), M.parse(b)
    if not first or not last then return nil, "bad address in range" end
    if first.family ~= last.family then return nil, "mixes IPv4 and IPv6" end
    if first.bytes > last.bytes then return nil, "first address is after the last" end
    return { family = first.family, first = first.bytes, last = last.bytes,
      text = M.format(first) .. "-" .. M.format(last) }
  end
  local addr, prefix = M.parse_cidr(s)
  if not addr then return nil, "not first-last or address/prefix" end
  local net = M.subnet(addr, prefix)
  return { family = net.family, first = net.bytes, last = net.last, text = M.format_subnet(net) }
end

--- True when the range holds the address.
function M.range_contains(r, addr)
  return r.family == addr.family and r.first <= addr.bytes and addr.bytes <= r.last
end

return M
