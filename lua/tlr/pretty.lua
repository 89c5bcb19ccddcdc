--- Pretty printing of Lua values, for the REPL and for scripts that show data.
---
--- Tables print with sorted keys, nested tables indented, short flat tables on
--- one line.  A list of records (tables with mostly the same scalar fields,
--- such as `pve:get("/cluster/resources")`) prints as aligned columns under a
--- header row, cut to the terminal width.  The JSON/YAML null sentinel prints
--- as `null`, a table met again inside itself as `<cycle>`.
local opts_check = require("tlr.opts").check

local M = {}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

local null -- the cjson null (a NULL lightuserdata); every NULL lightuserdata equals it
do
  local ok, cjson = pcall(require, "cjson")
  if ok then null = cjson.null end
end

local OPTS = { depth = "integer", width = "integer", indent = "integer", columns = "boolean" }
local DEFAULT_DEPTH = 8
local ELLIPSIS = "…"

-- ========== text helpers ==========

--- Display length of s: its UTF-8 character count, or its byte count when not UTF-8.
local function textlen(s)
  return utf8.len(s) or #s
end

--- s cut to n display characters, the last one replaced by "…" when cut.
local function cut(s, n)
  if textlen(s) <= n then return s end
  if n <= 0 then return "" end
  if not utf8.len(s) then return s:sub(1, n - 1) .. ELLIPSIS end
  return s:sub(1, utf8.offset(s, n) - 1) .. ELLIPSIS
end

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v",
}

--- s as a double-quoted Lua string literal (control characters escaped, UTF-8 kept).
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[s]
end

-- ========== scalars ==========

local function is_null(v)
  return null ~= nil and v == null
end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean" or is_null(v)
end

local function fmt_function(f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "<function: builtin>" end
  return string.format("<function %s:%d>", info.short_src, info.linedefined)
end

--- The text of a non-table value; strings quoted unless `bare`.
local function fmt_scalar(v, bare)
  local t = type(v)
  if t == "string" then
    if bare then return (v:gsub("[%c]", function(c) return ESCAPES[c] or "?" end)) end
    return quote(v)
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  elseif t == "function" then
    return fmt_function(v)
  elseif is_null(v) then
    return "null"
  end
  return "<" .. tostring(v) .. ">" -- userdata, thread
end

local function fmt_key(k)
  if is_identifier(k) then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  if type(k) == "table" then return "[<table>]" end
  return "[" .. fmt_scalar(k) .. "]"
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (TYPE_ORDER[ta] or 4) < (TYPE_ORDER[tb] or 4) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

--- The length of t's sequence part 1..n (stops at the first nil).
local function seq_len(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  return n
end

-- Metatables that only mark data: such tables print as plain ones.
local PLAIN = { ["tlr.json.array"] = true }

--- The __name of t's metatable, nil for plain data.
local function type_name(t)
  local mt = getmetatable(t)
  local name = type(mt) == "table" and rawget(mt, "__name") or nil
  if type(name) == "string" and not PLAIN[name] then return name end
end

-- ========== lists of records as columns ==========

local RANK4 = { type = true, kind = true, node = true, status = true, state = true }

-- Columns named like identifiers go first: id, name, then *id/*name, then the usual suspects.
local function key_rank(k)
  if k == "id" then return 1 end
  if k == "name" then return 2 end
  local lower = k:lower()
  if lower:match("id$") or lower:match("name$") then return 3 end
  if RANK4[lower] then return 4 end
  return 5
end

--- The column keys of `rows` if it is a list of records, else nil.
--- A record has only string keys and scalar values; the rows must share at
--- least one key and fill at least a third of the union of their keys.
local function record_columns(t)
  local n = seq_len(t)
  if n < 2 then return nil end
  for k in next, t do
    if math.type(k) ~= "integer" or k < 1 or k > n then return nil end
  end
  local order, seen, count, filled = {}, {}, {}, 0
  for i = 1, n do
    local row = t[i]
    if type(row) ~= "table" or type_name(row) or next(row) == nil then return nil end
    local fresh = {}
    for k, v in next, row do
      if type(k) ~= "string" or not is_scalar(v) then return nil end
      if not seen[k] then
        seen[k] = true
        fresh[#fresh + 1] = k
      end
      count[k] = (count[k] or 0) + 1
      filled = filled + 1
    end
    table.sort(fresh) -- a row's own keys have no order: alphabetical within it
    for _, k in ipairs(fresh) do order[#order + 1] = k end
  end
  local shared = false
  for _, k in ipairs(order) do
    if count[k] == n then shared = true end
  end
  if not shared or filled * 3 < n * #order then return nil end
  local position = {}
  for i, k in ipairs(order) do position[k] = i end
  table.sort(order, function(a, b)
    local ra, rb = key_rank(a), key_rank(b)
    if ra ~= rb then return ra < rb end
    return position[a] < position[b]
  end)
  return order, n
end

local function render_columns(t, keys, n, width)
  local header, cells, widths, numeric = {}, {}, {}, {}
  for c, k in ipairs(keys) do
    header[c] = k
    widths[c] = textlen(k)
    numeric[c] = true
    for i = 1, n do
      local v = t[i][k]
      if v ~= nil and type(v) ~= "number" then numeric[c] = false end
    end
  end
  for i = 1, n do
    local row = {}
    for c, k in ipairs(keys) do
      local v = t[i][k]
      row[c] = v == nil and "" or fmt_scalar(v, true)
      widths[c] = math.max(widths[c], textlen(row[c]))
    end
    cells[i] = row
  end
  -- long text cells are cut to a quarter of the width (id and name to half,
  -- numbers never); what still does not fit is cut off on the right
  for c, k in ipairs(keys) do
    local cap = math.max(12, key_rank(k) <= 2 and width // 2 or width // 4)
    if not numeric[c] then widths[c] = math.min(widths[c], math.max(cap, textlen(k))) end
  end
  local function line(row)
    local parts = {}
    for c, text in ipairs(row) do
      text = cut(text, widths[c])
      local pad = string.rep(" ", widths[c] - textlen(text))
      parts[c] = numeric[c] and pad .. text or text .. pad
    end
    return cut((table.concat(parts, "  "):gsub(" +$", "")), width)
  end
  local rule = {}
  for c in ipairs(keys) do rule[c] = string.rep("-", widths[c]) end
  local lines = { line(header), line(rule) }
  for i = 1, n do lines[#lines + 1] = line(cells[i]) end
  return table.concat(lines, "\n")
end

-- ========== tables ==========

local render

local function render_table(t, level, cfg, path, room)
  if path[t] then return "<cycle>" end
  local name = type_name(t)
  local prefix = name and (name .. " ") or ""
  if next(t) == nil then return prefix .. "{}" end
  if level >= cfg.depth then return prefix .. "{...}" end
  if level == 0 and cfg.columns and not name then
    local keys, n = record_columns(t)
    if keys then return render_columns(t, keys, n, cfg.width) end
  end
  path[t] = true
  local n = seq_len(t)
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  local pad = string.rep(" ", (level + 1) * cfg.indent)
  local items, flat, nested = {}, true, false
  for i = 1, n do
    local v = t[i]
    if type(v) == "table" and next(v) ~= nil then nested = true end
    items[#items + 1] = render(v, level + 1, cfg, path, room - #pad)
  end
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" and next(v) ~= nil then nested = true end
    local key = fmt_key(k) .. " = "
    items[#items + 1] = key .. render(v, level + 1, cfg, path, room - #pad - #key)
  end
  path[t] = nil
  for _, item in ipairs(items) do
    if item:find("\n", 1, true) then flat = false end
  end
  -- one line when it fits and holds no nested non-empty table (lists of lists may)
  if flat and (not nested or #keys == 0) then
    local inline = prefix .. "{ " .. table.concat(items, ", ") .. " }"
    if textlen(inline) <= room then return inline end
  end
  local close = string.rep(" ", level * cfg.indent) .. "}"
  return prefix .. "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. "\n" .. close
end

render = function(v, level, cfg, path, room)
  if type(v) == "table" then return render_table(v, level, cfg, path, room) end
  return fmt_scalar(v)
end

-- ========== public API ==========

local function terminal_width()
  local ok, host = pcall(require, "tlr.host.core")
  return ok and host.term_width(1) or 80
end

--- Formats a value for people to read.
---@param value any
---@param opts? {depth?: integer, width?: integer, indent?: integer, columns?: boolean}
---  depth: nesting shown before `{...}` (default 8); width: the line width
---  (default the terminal's on stdout, 80 elsewhere); indent: spaces per level
---  (default 2); columns: show lists of records as columns (default true)
---@return string
function M.format(value, opts)
  opts = opts_check("pretty.format", opts, OPTS)
  local cfg = {
    depth = opts.depth or DEFAULT_DEPTH,
    width = opts.width or terminal_width(),
    indent = opts.indent or 2,
    columns = opts.columns ~= false,
  }
  for _, key in ipairs { "depth", "indent" } do
    if cfg[key] < 0 then
      error(string.format("bad argument to 'pretty.format' (option '%s': must be >= 0)", key), 2)
    end
  end
  if cfg.width < 10 then cfg.width = 10 end
  return render(value, 0, cfg, {}, cfg.width)
end

--- Prints each argument formatted, like `print`: one line of tab-separated
--- values, or one value per line when any of them spans several lines.
function M.print(...)
  local n = select("#", ...)
  local parts, multiline = {}, false
  for i = 1, n do
    parts[i] = M.format((select(i, ...)))
    if parts[i]:find("\n", 1, true) then multiline = true end
  end
  io.stdout:write(table.concat(parts, multiline and "\n" or "\t"), "\n")
end

return M
