--- JSON: decode with cjson plus a native pass, encode natively.
---
--- Decoding gives integers for integral numbers within +-2^53, `json.null`
--- for null, and marks every decoded array with `json.array_mt`.  cjson
--- turns `[]` and `{}` into the same empty table, so an empty decoded array
--- is not marked and encodes back as `{}`; mark it with `json.array(t)`.
--- Encoding is deterministic: object keys are sorted (byte order) unless
--- `sort_keys = false`.
local core = require "tlr.json.core"
local cjson = require "cjson.safe"
local opts = require "tlr.opts"

local M = {}

-- A private cjson instance, so other users' cjson settings do not leak in.
local decoder = cjson.new()
decoder.decode_invalid_numbers(false) -- no NaN, Infinity or hex numbers
local cdecode = decoder.decode
local fix = core.fix
local encode = core.encode

--- The null sentinel (cjson's light userdata NULL; tlr.yaml uses the same).
M.null = cjson.null

--- The metatable that marks a table as a JSON array ("tlr.json.array").
M.array_mt = core.array_mt

--- Decodes a JSON text.
---@param s string
---@return any|nil value
---@return string? msg "json: <cjson's message>" on bad input
---@return string? code "EINVAL"
function M.decode(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'json.decode' (string expected, got " .. type(s) .. ")", 2)
  end
  local v, err = cdecode(s)
  if v == nil then return nil, "json: " .. tostring(err), "EINVAL" end
  return fix(v)
end

--- Encodes a value as JSON text.
--- Tables with `json.array_mt` or with keys exactly 1..n are arrays, tables
--- with string keys (and empty plain tables) are objects.
---@param v any
---@param o? {indent?: integer, sort_keys?: boolean} indent: spaces per level (default 0: compact)
---@return string|nil text
---@return string? msg names the path of the offending value, e.g. "$.spec.x"
---@return string? code "EINVAL"
function M.encode(v, o)
  o = opts.check("json.encode", o, { indent = "integer", sort_keys = "boolean" })
  if o.indent and (o.indent < 0 or o.indent > 16) then
    error("bad argument to 'json.encode' (indent must be 0..16)", 2)
  end
  return encode(v, o.indent or 0, o.sort_keys ~= false)
end

--- Marks `t` (or a new empty table) as a JSON array and returns it.
---@param t? table
---@return table
function M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then
    error("bad argument #1 to 'json.array' (table expected, got " .. type(t) .. ")", 2)
  end
  local mt = getmetatable(t)
  if mt ~= nil and mt ~= M.array_mt then
    error("bad argument #1 to 'json.array' (table has another metatable)", 2)
  end
  return setmetatable(t, M.array_mt)
end

--- True when `t` is marked as an array.
---@param t any
---@return boolean
function M.is_array(t)
  return type(t) == "table" and getmetatable(t) == M.array_mt
end

return M
