--- Option-table checks for public Lua functions: unknown keys and wrong
--- types are programmer errors and raise, naming the function and the key.
local M = {}

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

--- Checks `opts` against `spec` ({key = "string" | "number" | "integer" |
--- "boolean" | "table" | "function" | "any", or a list of such}); absent keys are fine.
---@param fname string the function's name for messages
---@param opts table|nil
---@param spec table<string, string|string[]>
---@return table opts (an empty table when nil)
function M.check(fname, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string.format("bad argument to '%s' (options table expected, got %s)", fname, typename(opts)), 3)
  end
  for k, v in pairs(opts) do
    local want = spec[k]
    if want == nil then
      error(string.format("bad argument to '%s' (unknown option '%s')", fname, tostring(k)), 3)
    end
    local ok = false
    for _, w in ipairs(type(want) == "table" and want or { want }) do
      if w == "any" or w == type(v) or (w == "integer" and math.type(v) == "integer") then
        ok = true
        break
      end
    end
    if not ok then
      local wanted = type(want) == "table" and table.concat(want, " or ") or want
      error(string.format("bad argument to '%s' (option '%s': %s expected, got %s)",
        fname, tostring(k), wanted, typename(v)), 3)
    end
  end
  return opts
end

--- Raises unless `cond`, with "bad argument to 'fname' (msg)".
function M.arg(cond, fname, msg)
  if not cond then error(string.format("bad argument to '%s' (%s)", fname, msg), 3) end
end

return M
