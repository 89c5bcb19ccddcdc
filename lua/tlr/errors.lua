--- Error objects for recipe-facing calls, tier (c) of the error rules.
---
--- Native functions return `nil, msg, code` (tier b).  Code that wants to
--- raise instead turns such a triple into an error object with `errors.check`
--- or builds one with `errors.raise`.  An error object is a table
--- `{code=, msg=, step=, ...}` whose tostring is its message.
local host = require "tlr.host.core"

local M = {}

local Error = {}
Error.__index = Error
Error.__name = "tlr.Error"
function Error:__tostring()
  if self.step then return string.format("%s: %s", self.step, self.msg) end
  return self.msg
end

--- The registered codes: code -> one-line description (runtime/tlr_err.h).
M.codes = host.error_codes()

--- Builds an error object; `fields` may add step, host, path and the like.
---@param code string a registered code
---@param msg string
---@param fields? table
function M.new(code, msg, fields)
  if not M.codes[code] then error("unregistered error code '" .. tostring(code) .. "'", 2) end
  local e = setmetatable({ code = code, msg = tostring(msg) }, Error)
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

--- Raises an error object.
function M.raise(code, msg, fields)
  error(M.new(code, msg, fields), 2)
end

--- Passes `ok, ...` through, or raises the `nil, msg, code` failure as an
--- error object: `local body = errors.check(http.request{...})`.
function M.check(ok, ...)
  if ok == nil or ok == false then
    local msg, code = ...
    if code == nil or not M.codes[code] then code = "ETRANSPORT" end
    error(M.new(code, msg or "unknown failure"), 2)
  end
  return ok, ...
end

--- True when err is an error object (with the given code, if one is given).
function M.is(err, code)
  if getmetatable(err) ~= Error then return false end
  return code == nil or err.code == code
end

--- The message of any error value, without traceback.
function M.message(err)
  if getmetatable(err) == Error then return tostring(err) end
  if type(err) == "table" and err.msg then return tostring(err.msg) end
  local s = tostring(err)
  return (s:match("^(.-)\nstack traceback:") or s)
end

M.Error = Error
return M
