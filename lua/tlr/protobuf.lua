--- Protocol buffers (proto3) from message declarations written as plain Lua
--- tables.  `schema(...)` checks and compiles declarations once; the
--- compiled schema encodes Lua tables to bytes and decodes bytes to tables
--- in C (tlr.protobuf.core).
---
--- ```lua
--- local S = pb.schema {
---   { enum = "machine.ApplyConfigurationRequest.Mode", "REBOOT", "AUTO", "NO_REBOOT" },
---   { message = "machine.ApplyConfigurationRequest",
---     { 1, "data", "bytes" },
---     { 4, "mode", "Mode", presence = true },
---     { 6, "try_mode_timeout", "google.protobuf.Duration" },
---   },
--- }
--- local bytes = S:encode("machine.ApplyConfigurationRequest", { data = yaml, mode = "AUTO" })
--- ```
local core = require "tlr.protobuf.core"

-- the encoder is a native of its own (modules/protobuf_encode.c); it becomes a Schema method
core.Schema.encode = require("tlr.protobuf_encode.core").encode

local M = {}

local SCALARS = {
  double = true, float = true, int32 = true, int64 = true, uint32 = true, uint64 = true,
  sint32 = true, sint64 = true, fixed32 = true, fixed64 = true, sfixed32 = true,
  sfixed64 = true, bool = true, string = true, bytes = true,
}
local NOT_PACKABLE = { string = true, bytes = true }
local MAP_KEYS = {
  int32 = true, int64 = true, uint32 = true, uint64 = true, sint32 = true, sint64 = true,
  fixed32 = true, fixed64 = true, sfixed32 = true, sfixed64 = true, bool = true, string = true,
}
local FIELD_OPTIONS = { repeated = true, presence = true, packed = true }

--- The well-known types every schema includes.
M.well_known = {
  { message = "google.protobuf.Empty" },
  { message = "google.protobuf.Duration", { 1, "seconds", "int64" }, { 2, "nanos", "int32" } },
  { message = "google.protobuf.Timestamp", { 1, "seconds", "int64" }, { 2, "nanos", "int32" } },
  { message = "google.protobuf.Any", { 1, "type_url", "string" }, { 2, "value", "bytes" } },
}

local function fail(fmt, ...)
  error("protobuf.schema: " .. string.format(fmt, ...), 0)
end

local function is_ident(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function is_full_name(s)
  if type(s) ~= "string" or s == "" then return false end
  for part in (s .. "."):gmatch("(.-)%.") do
    if not is_ident(part) then return false end
  end
  return true
end

-- Resolves `ref` the way protoc does: from the innermost scope of `scope`
-- (a message's full name) outwards; a leading dot means fully qualified.
local function resolve(names, scope, ref)
  if ref:sub(1, 1) == "." then return names[ref:sub(2)] and ref:sub(2) end
  local prefix = scope
  while true do
    local candidate = prefix == "" and ref or prefix .. "." .. ref
    if names[candidate] then return candidate end
    if prefix == "" then return nil end
    prefix = prefix:match("^(.*)%.[^.]*$") or ""
  end
end

local function enum_values(d)
  local values, seen = {}, {}
  local function add(name, number)
    if not is_ident(name) then fail("enum '%s': bad value name %s", d.enum, tostring(name)) end
    if math.type(number) ~= "integer" or number < -2 ^ 31 or number >= 2 ^ 31 then
      fail("enum '%s': value %s needs an int32 number", d.enum, name)
    end
    if seen[name] then fail("enum '%s': value %s declared twice", d.enum, name) end
    seen[name] = true
    values[#values + 1] = { name = name, number = number }
  end
  for k, v in pairs(d) do
    if k ~= "enum" and k ~= "values" and math.type(k) ~= "integer" then
      fail("enum '%s': unknown key '%s'", d.enum, tostring(k))
    end
  end
  for i, name in ipairs(d) do add(name, i - 1) end
  if d.values ~= nil then
    if type(d.values) ~= "table" then fail("enum '%s': values must be a table", d.enum) end
    local names = {}
    for name in pairs(d.values) do names[#names + 1] = name end
    table.sort(names, function(a, b)
      return d.values[a] < d.values[b] or (d.values[a] == d.values[b] and a < b)
    end)
    for _, name in ipairs(names) do add(name, d.values[name]) end
  end
  if #values == 0 then fail("enum '%s' has no values", d.enum) end
  return values
end

-- Parses one field declaration {number, name, type, repeated=, presence=, packed=}.
local function parse_field(msg, f, i)
  if type(f) ~= "table" then fail("message '%s': field %d is not a table", msg, i) end
  local number, name, ftype = f[1], f[2], f[3]
  local where = string.format("message '%s' field %s", msg, tostring(name))
  if not is_ident(name) then fail("message '%s': field %d needs a name", msg, i) end
  if math.type(number) ~= "integer" or number < 1 or number > 536870911
      or (number >= 19000 and number <= 19999) then
    fail("%s: bad field number %s", where, tostring(number))
  end
  if type(ftype) ~= "string" then fail("%s: type expected", where) end
  for k, v in pairs(f) do
    if math.type(k) == "integer" then
      if k > 3 then fail("%s: too many values", where) end
    elseif not FIELD_OPTIONS[k] then
      fail("%s: unknown option '%s'", where, tostring(k))
    elseif type(v) ~= "boolean" then
      fail("%s: option '%s' must be a boolean", where, k)
    end
  end
  local field = { number = number, name = name, type = ftype, repeated = f.repeated == true,
    presence = f.presence == true }
  local key, value = ftype:match("^map%s*<%s*([%w_]+)%s*,%s*([%w_.]+)%s*>$")
  if key then
    if not MAP_KEYS[key] then fail("%s: bad map key type '%s'", where, key) end
    if field.repeated or field.presence then
      fail("%s: a map is not repeated and has no presence", where)
    end
    field.map, field.key, field.type = true, key, value
  end
  if field.presence and field.repeated then fail("%s: a repeated field has no presence", where) end
  if f.packed ~= nil and not field.repeated then
    fail("%s: packed applies to repeated fields", where)
  end
  field.packed = field.repeated and f.packed ~= false or nil
  return field
end

--- Checks and compiles declarations into a schema.  Each argument is a list
--- of declarations (or a single one):
---   `{ message = "pkg.Name", {number, "name", "type", repeated=, presence=, packed=}, ... }`
---   `{ enum = "pkg.Name", "ZERO", "ONE", ... }` (numbered from 0), plus or instead
---   `values = {A = 7, B = -1}` for other numbers
--- A type is a scalar (int32, int64, uint32, uint64, sint32, sint64, fixed32, fixed64,
--- sfixed32, sfixed64, bool, float, double, string, bytes), `map<K, V>`, or a message
--- or enum name, resolved from the message's scope outwards as in .proto files.
--- The well-known types (google.protobuf.Empty, Duration, Timestamp, Any) are built in.
--- Raises on any mistake in the declarations.
---@param ... table declarations
---@return userdata schema with :encode(type, table), :decode(type, bytes), :type(name)
function M.schema(...)
  local list = {}
  local function add(d)
    if type(d) ~= "table" then fail("declaration must be a table, got %s", type(d)) end
    list[#list + 1] = d
  end
  for _, d in ipairs(M.well_known) do add(d) end
  for i = 1, select("#", ...) do
    local arg = select(i, ...)
    if type(arg) ~= "table" then fail("argument %d: table expected, got %s", i, type(arg)) end
    if arg.message or arg.enum then
      add(arg)
    else
      for _, d in ipairs(arg) do add(d) end
    end
  end
  -- names first, so declarations may refer to each other in any order
  local kinds = {}
  for _, d in ipairs(list) do
    local name = d.message or d.enum
    if (d.message == nil) == (d.enum == nil) then fail("a declaration needs message= or enum=") end
    if not is_full_name(name) then fail("bad type name %s", tostring(name)) end
    if kinds[name] then fail("type '%s' declared twice", name) end
    kinds[name] = d.message and "message" or "enum"
  end
  local messages, enums, index, decls = {}, {}, {}, {}
  for _, d in ipairs(list) do
    if d.enum then
      enums[#enums + 1] = { name = d.enum, values = enum_values(d) }
      index[d.enum] = #enums
      decls[d.enum] = { kind = "enum", name = d.enum, values = enums[#enums].values }
    else
      messages[#messages + 1] = d
      index[d.message] = #messages
    end
  end
  local compiled = {}
  for i, d in ipairs(messages) do
    for k in pairs(d) do
      if k ~= "message" and math.type(k) ~= "integer" then
        fail("message '%s': unknown key '%s'", d.message, tostring(k))
      end
    end
    local fields, numbers, names = {}, {}, {}
    for j, f in ipairs(d) do
      local field = parse_field(d.message, f, j)
      if numbers[field.number] then
        fail("message '%s': field number %d used twice", d.message, field.number)
      end
      if names[field.name] then
        fail("message '%s': field '%s' declared twice", d.message, field.name)
      end
      numbers[field.number], names[field.name] = true, true
      if not SCALARS[field.type] then
        local full = resolve(kinds, d.message, field.type)
        if not full then
          fail("message '%s' field %s: unknown type '%s'", d.message, field.name, field.type)
        end
        field.type = full
      elseif field.packed and NOT_PACKABLE[field.type] then
        field.packed = nil
      end
      fields[#fields + 1] = field
    end
    table.sort(fields, function(a, b) return a.number < b.number end)
    local cfields = {}
    for j, f in ipairs(fields) do
      local kind = SCALARS[f.type] and f.type or kinds[f.type]
      if f.packed and kind == "message" then f.packed = nil end
      cfields[j] = { number = f.number, name = f.name, type = kind, key = f.key,
        label = f.map and "map" or f.repeated and "repeated" or "single",
        ref = index[f.type], presence = f.presence, packed = f.packed }
    end
    compiled[i] = { name = d.message, fields = cfields }
    decls[d.message] = { kind = "message", name = d.message, fields = fields }
  end
  return core.compile(compiled, enums, decls)
end

return M
