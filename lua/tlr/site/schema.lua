--- The site file's reader: a context that collects every error and warning
--- as "<file>: <field.path>: <reason>", typed field reads driven by small
--- field lists, unknown-key detection with "did you mean", and the
--- references `env:NAME` and `file:PATH` that keep secrets out of the file.
local fs = require "tlr.fs"
local log = require "tlr.log"
local yaml = require "tlr.yaml"
local patch = require "tlr.talos.patch"

local M = {}

-- ========== context ==========

---@class tlr.site.Ctx
---@field file string the name used in messages
---@field dir string directory that relative file: references start from
---@field env fun(name: string): string|nil
---@field errors string[]
---@field warnings string[]
---@field secrets table<string, true> values that came from secret references
---@field invalid table<string, true> paths of fields that were given but had errors
local Ctx = {}
Ctx.__index = Ctx

--- A fresh context.
---@param o {file: string, dir: string, env: function}
function M.context(o)
  return setmetatable({ file = o.file, dir = o.dir, env = o.env, errors = {}, warnings = {},
    secrets = {}, seen = {}, invalid = {} }, Ctx)
end

local function line(self, path, msg)
  if path == nil or path == "" then return self.file .. ": " .. msg end
  return self.file .. ": " .. path .. ": " .. msg
end

--- Records an error at `path`.
-- (the same line is recorded once: inherited settings are checked per host)
function Ctx:err(path, fmt, ...)
  local l = line(self, path, select("#", ...) > 0 and fmt:format(...) or fmt)
  if self.seen[l] then return end
  self.seen[l] = true
  self.errors[#self.errors + 1] = l
end

--- Records a warning at `path`.
function Ctx:warn(path, fmt, ...)
  local l = line(self, path, select("#", ...) > 0 and fmt:format(...) or fmt)
  if self.seen[l] then return end
  self.seen[l] = true
  self.warnings[#self.warnings + 1] = l
end

--- "a" + "b" -> "a.b"; "" + "b" -> "b"; "a" + 2 -> "a[2]".
function M.join(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  if path == "" then return key end
  return path .. "." .. key
end
local join = M.join

-- ========== did you mean ==========

-- Optimal string alignment distance: insertions, deletions, substitutions
-- and swaps of neighbours each cost 1.
local function edit_distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end
M.distance = edit_distance

--- The closest candidate to `word` when it is close enough to be a typo
--- (edit distance at most 1 for short words, 2 from 5 characters, or the
--- same letters in another case / with - for _), else nil.
---@param word string
---@param candidates string[]
---@return string|nil
function M.suggest(word, candidates)
  if type(word) ~= "string" then return nil end
  local folded = word:lower():gsub("-", "_")
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = edit_distance(word, c)
    if c:lower():gsub("-", "_") == folded then d = 0 end
    if not best_d or d < best_d or (d == best_d and c < best) then best, best_d = c, d end
  end
  if best and best_d <= (#word >= 5 and 2 or 1) then return best end
  return nil
end

local function hint(word, candidates)
  local s = M.suggest(word, candidates)
  return s and (" (did you mean '" .. s .. "'?)") or ""
end
M.hint = hint

-- ========== references ==========

--- True when s is a reference ("env:NAME" or "file:PATH").
function M.is_ref(s)
  return type(s) == "string" and (s:match("^env:") or s:match("^file:")) and true or false
end

-- Resolves a reference; returns the value, or nil and the reason.  The
-- reason names the reference, never what it points at.
function Ctx:resolve(ref, path, secret)
  local kind, what = ref:match("^(%a+):(.*)$")
  if kind == "env" then
    if not what:match("^[%a_][%w_]*$") then
      return nil, "'" .. ref .. "' is not a valid reference (env:NAME)"
    end
    local v = self.env(what)
    if v == nil then return nil, ref .. " is not set" end
    if v == "" then return nil, ref .. " is empty" end
    return v
  end
  if what == "" then return nil, "'file:' needs a path" end
  local p = what
  if p:sub(1, 2) == "~/" then
    local home = self.env("HOME")
    if not home then return nil, ref .. ": HOME is not set" end
    p = fs.join(home, p:sub(3))
  elseif p:sub(1, 1) ~= "/" then
    p = fs.join(self.dir, p)
  end
  local data, msg = fs.read(p)
  if not data then return nil, ref .. ": " .. tostring(msg) end
  if not data:find("-----BEGIN", 1, true) then data = data:gsub("[\r\n]+$", "") end
  if data == "" then return nil, ref .. " is empty" end
  if secret then
    local st = fs.stat(p)
    if st and st.mode & 0x3f ~= 0 then
      self:warn(path, "%s can be read by group or others (chmod 600 %s)", ref, p)
    end
  end
  return data
end

-- ========== typed reads ==========

local UNITS = { [""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }

--- A size as an integer count of `unit` ("MiB" or "GiB"): an integer is
--- already in the unit; a string is a number with K, M, G or T (optionally
--- followed by "i", "B" or "iB"), e.g. "8G", "512MiB", "1.5T".  nil when it
--- is not a whole number of units.
---@param v any
---@param unit "MiB"|"GiB"
---@return integer|nil
function M.size(v, unit)
  if math.type(v) == "integer" then return v end
  if type(v) ~= "string" then return nil end
  local n, u = v:match("^%s*(%d+%.?%d*)%s*([KMGT]?)i?B?%s*$")
  n = tonumber(n)
  if not n or (u == "" and v:match("[iB]")) then return nil end
  local bytes = n * UNITS[u]
  local per = unit == "GiB" and UNITS.G or UNITS.M
  if u == "" then bytes = n * per end
  local count = bytes / per
  return math.tointeger(count)
end

local function typename(v)
  if v == yaml.null then return "null" end
  if math.type(v) == "float" then return "number" end
  return type(v)
end
M.typename = typename

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end
M.is_list = is_list

-- One value against a field spec {kind=, ...}; returns the converted value
-- or nil (an error is recorded).  Kinds: string, integer, size (unit=),
-- boolean, enum (values=), list (of=, single= takes one item alone),
-- map (of=), patches, record (fields=), any; with ref = true env:/file:
-- are allowed, with secret = true a reference is required and its value
-- registered as a secret; switch = true (apps) takes true and false.
function Ctx:value(v, path, spec)
  local kind = spec.kind
  if spec.switch and type(v) == "boolean" then
    -- apps: false turns one off, true takes every default
    if v == false then return false end
    v = {}
  end
  if spec.secret then
    if type(v) ~= "string" then
      self:err(path, "a reference (env:NAME or file:PATH) expected, got %s", typename(v))
      return nil
    end
    if not M.is_ref(v) then
      self:err(path, "must be a reference (env:NAME or file:PATH), not the secret itself")
      return nil
    end
  end
  if (spec.ref or spec.secret) and M.is_ref(v) then
    local resolved, why = self:resolve(v, path, spec.secret)
    if not resolved then
      self:err(path, "%s", why)
      return nil
    end
    if spec.secret then
      self.secrets[resolved] = true
      log.secret(resolved)
    end
    v = resolved
    if kind == "integer" and resolved:match("^%d+$") then v = math.tointeger(tonumber(resolved)) end
    if kind == "boolean" and (resolved == "true" or resolved == "false") then v = resolved == "true" end
  end
  if kind == "string" then
    if type(v) ~= "string" then return self:err(path, "string expected, got %s", typename(v)) end
    if v == "" and not spec.empty then return self:err(path, "must not be empty") end
  elseif kind == "integer" then
    if math.type(v) ~= "integer" then
      return self:err(path, "integer expected, got %s", spec.secret and typename(v)
        or (type(v) == "string" and ("'" .. v .. "'") or typename(v)))
    end
    if (spec.min and v < spec.min) or (spec.max and v > spec.max) then
      return self:err(path, "%d is out of range (%d..%d)", v, spec.min, spec.max)
    end
  elseif kind == "size" then
    local n = M.size(v, spec.unit)
    if not n then
      return self:err(path, "a size in %s or a string such as '8G' expected, got %s", spec.unit,
        type(v) == "string" and ("'" .. v .. "'") or typename(v))
    end
    if n < spec.min or n > spec.max then
      return self:err(path, "%s is out of range (%d..%d %s)", type(v) == "string" and v or tostring(n),
        spec.min, spec.max, spec.unit)
    end
    v = n
  elseif kind == "boolean" then
    if type(v) ~= "boolean" then return self:err(path, "true or false expected, got %s", typename(v)) end
  elseif kind == "enum" then
    local ok = false
    for _, x in ipairs(spec.values) do if v == x then ok = true end end
    if not ok then
      if type(v) ~= "string" then
        return self:err(path, "one of %s expected, got %s", table.concat(spec.values, ", "), typename(v))
      end
      return self:err(path, "'%s' is not one of %s%s", v, table.concat(spec.values, ", "),
        hint(v, spec.values))
    end
  elseif kind == "list" then
    if type(v) == "string" and spec.single then v = { v } end
    if type(v) ~= "table" or not is_list(v) then
      return self:err(path, "list expected, got %s", type(v) == "table" and "a map" or typename(v))
    end
    local out = yaml.array()
    for i, x in ipairs(v) do
      local y = self:value(x, join(path, i), spec.of)
      -- records keep their place (false when unreadable), so later checks
      -- can still name them by index
      if y == nil and spec.of.kind == "record" then y = false end
      if y ~= nil then out[#out + 1] = y end
    end
    return out
  elseif kind == "map" then
    if type(v) ~= "table" or (next(v) ~= nil and is_list(v)) then
      return self:err(path, "map expected, got %s", type(v) == "table" and "a list" or typename(v))
    end
    local out, keys = {}, {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      if type(k) ~= "string" then
        self:err(path, "keys must be strings, got %s", typename(k))
      else
        local y = self:value(v[k], join(path, k), spec.of)
        if y ~= nil then out[k] = y end
      end
    end
    return out
  elseif kind == "patches" then
    -- a patch is YAML text, a strategic-merge map or a JSON6902 operation
    -- list; one of them or a list of them (as tlr.talos.config.render takes)
    -- ({} is no patch at all)
    if type(v) == "string" or (type(v) == "table" and next(v) ~= nil and (not is_list(v)
      or patch.is_json6902(v))) then
      v = { v }
    end
    if type(v) ~= "table" then
      return self:err(path, "a patch (map or YAML text) or a list of patches expected, got %s", typename(v))
    end
    local out = yaml.array()
    for i, p in ipairs(v) do
      if type(p) == "string" then
        local docs, msg = yaml.decode_all(p)
        if docs == nil then
          self:err(join(path, i), "patch is not YAML: %s", msg)
        else
          out[#out + 1] = p
        end
      elseif type(p) == "table" and (next(p) == nil or not is_list(p) or patch.is_json6902(p)) then
        out[#out + 1] = p
      else
        self:err(join(path, i), "a patch (map or YAML text) expected, got %s",
          type(p) == "table" and "a list" or typename(p))
      end
    end
    return out
  elseif kind == "record" then
    return self:record(v, path, spec.fields)
  elseif kind ~= "any" then
    error("site schema: unknown kind " .. tostring(kind))
  end
  if spec.check and v ~= nil then
    local why = spec.check(v)
    if why then return self:err(path, "%s", why) end
  end
  return v
end

--- Reads a table against an ordered field list ({key, kind, ...} entries):
--- unknown keys are errors (with a suggestion), required ones must be
--- there, and every present value is converted.  Returns a new table, or
--- nil when `t` is not a map.
---@param t any
---@param path string
---@param fields table[]
---@return table|nil
function Ctx:record(t, path, fields)
  if type(t) ~= "table" or (next(t) ~= nil and is_list(t)) then
    self:err(path, "map expected, got %s", type(t) == "table" and "a list" or typename(t))
    return nil
  end
  local known, names = {}, {}
  for _, f in ipairs(fields) do
    known[f[1]] = f
    names[#names + 1] = f[1]
  end
  local unknown = {}
  for k in pairs(t) do
    if not known[k] then unknown[#unknown + 1] = k end
  end
  table.sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(unknown) do
    if type(k) == "string" then
      self:err(join(path, k), "unknown key%s", hint(k, names))
    else
      self:err(path, "unknown key %s (keys are names)", tostring(k))
    end
  end
  local out = {}
  for _, f in ipairs(fields) do
    local v = t[f[1]]
    if v == nil or v == yaml.null then
      if f.required then self:err(join(path, f[1]), "required") end
    else
      local p = join(path, f[1])
      out[f[1]] = self:value(v, p, f)
      -- given but unusable: later "required" checks must not call it missing
      if out[f[1]] == nil then self.invalid[p] = true end
    end
  end
  return out
end

M.Ctx = Ctx
return M
