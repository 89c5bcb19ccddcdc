--- tlr.site: the site file — one Lua or YAML file that describes a cluster
--- (Talos, Kubernetes, Proxmox hosts and credentials, nodes, network, DNS,
--- apps, state directory).  `load` reads and checks it completely before
--- anything is contacted and returns it normalized: defaults filled in,
--- `env:`/`file:` references resolved (secrets registered with
--- tlr.log.secret), derived values added.  Every problem is reported, not
--- just the first, as "<file>: <field.path>: <reason>".  See docs/site.md.
local fs = require "tlr.fs"
local log = require "tlr.log"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"
local S = require "tlr.site.schema"
local F = require "tlr.site.fields"
local rules = require "tlr.site.rules"

local M = {}

M.REDACTED = "<redacted>"

-- secret values per site table, for redacted()
local site_secrets = setmetatable({}, { __mode = "k" })

-- ========== the Lua sandbox ==========

local MAX_STEPS = 200 -- hook calls of 10^5 instructions each: 2 * 10^7 instructions
local TOO_LONG = setmetatable({}, { __tostring = function() return "the site file ran too long" end })

local function copy_lib(lib, drop)
  local t = {}
  for k, v in pairs(lib) do t[k] = v end
  for _, k in ipairs(drop or {}) do t[k] = nil end
  return t
end

-- The globals a site file sees: the pure parts of the standard library.
-- No os, io, require, load, dofile, debug, metatables or randomness: a site
-- file can compute a table, and describes the same cluster every time.
local function sandbox_env()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    select = select, tonumber = tonumber, tostring = tostring, type = type,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset,
    string = copy_lib(string, { "dump" }),
    table = copy_lib(table),
    math = copy_lib(math, { "random", "randomseed" }),
    utf8 = copy_lib(utf8),
    _VERSION = _VERSION,
  }
  -- pcall must not swallow the step limit
  env.pcall = function(f, ...)
    local r = table.pack(pcall(f, ...))
    if not r[1] and r[2] == TOO_LONG then error(TOO_LONG, 0) end
    return table.unpack(r, 1, r.n)
  end
  env._G = env
  return env
end

local function run_lua(text, file)
  local chunk, msg = load(text, "@" .. file, "t", sandbox_env())
  if not chunk then return nil, msg end
  -- its own coroutine, so the step limit's hook leaves the caller's hooks alone
  local co = coroutine.create(chunk)
  local steps = 0
  debug.sethook(co, function()
    steps = steps + 1
    if steps > MAX_STEPS then error(TOO_LONG, 0) end
  end, "", 100000)
  local ok, res = coroutine.resume(co)
  if not ok then
    if res == TOO_LONG then return nil, file .. ": " .. tostring(TOO_LONG) end
    return nil, (type(res) == "string" or type(res) == "number") and tostring(res)
      or (file .. ": error: " .. tostring(res))
  end
  if type(res) ~= "table" then
    return nil, string.format("%s: the site file must return a table, got %s", file, type(res))
  end
  return res
end

local function read_yaml(text, file)
  -- nulls stay yaml.null: the reader takes them as absent, and patches keep them
  local doc, msg = yaml.decode(text)
  if doc == nil then return nil, file .. ": " .. msg end
  if type(doc) ~= "table" or (next(doc) ~= nil and yaml.is_array(doc)) then
    return nil, string.format("%s: the site file must be a map, got %s", file,
      type(doc) == "table" and "a list" or S.typename(doc))
  end
  return doc
end

-- ========== public API ==========

local function finish(ctx, site)
  if #ctx.errors > 0 or not site then
    return nil, table.concat(ctx.errors, "\n"), "EINVAL", ctx.errors
  end
  site_secrets[site] = ctx.secrets
  return site, ctx.warnings
end

local function context(file, o)
  local dir = file and fs.dirname(file) or "."
  return S.context { file = file or "site", dir = dir, env = o.env or fs.env }
end

--- Checks and normalizes a site given as a table (a site built in code).
---@param t table the site, as a site file would return it
---@param o? {file?: string, env?: fun(name: string): string?} file names the source in messages
--- (default "site") and anchors relative file: references; env reads references (default os.getenv)
---@return table|nil site, string[]|string warnings_or_msg, string? code, string[]? errors
function M.validate(t, o)
  o = opts.check("site.validate", o, { file = "string", env = "function" })
  local ctx = context(o.file, o)
  if type(t) ~= "table" then
    ctx:err("", "the site must be a table, got " .. type(t))
    return finish(ctx, nil)
  end
  local site = rules.build(ctx, t)
  if site then site.file = o.file end
  return finish(ctx, site)
end

--- Reads, checks and normalizes a site file (`.lua` runs in a sandbox and
--- returns a table; `.yaml`, `.yml` or `.json` is decoded).  On success
--- returns the site and a list of warnings; otherwise nil, every error
--- joined by newlines, "EINVAL" (ENOENT/EPERM/EIO when unreadable) and the
--- list of errors.
---@param path string
---@param o? {env?: fun(name: string): string?} reads env: references (default os.getenv)
---@return table|nil site, string[]|string warnings_or_msg, string? code, string[]? errors
function M.load(path, o)
  opts.arg(type(path) == "string", "site.load", "path expected")
  o = opts.check("site.load", o, { env = "function" })
  local text, msg, code = fs.read(path)
  if not text then
    msg = path .. ": " .. (tostring(msg):match(":%s*([^:]+)$") or tostring(msg))
    return nil, msg, code, { msg }
  end
  local raw
  local ext = path:match("%.(%w+)$")
  if ext == "lua" then
    raw, msg = run_lua(text, path)
  elseif ext == "yaml" or ext == "yml" or ext == "json" then
    raw, msg = read_yaml(text, path)
  else
    msg = path .. ": unknown site file type (use .lua, .yaml or .yml)"
  end
  if not raw then return nil, msg, "EINVAL", { msg } end
  local ctx = context(path, o)
  local site = rules.build(ctx, raw)
  if site then site.file = path end
  return finish(ctx, site)
end

--- A deep copy of a site with every secret replaced by "<redacted>": the
--- values of secret fields (token, password, key_secret, cloudflare_token,
--- ssh_key) and any string holding a secret the site resolved.
---@param site table
---@return table
function M.redacted(site)
  opts.arg(type(site) == "table", "site.redacted", "site table expected")
  local secrets = site_secrets[site] or {}
  local list = {}
  for s in pairs(secrets) do list[#list + 1] = s end
  local seen = {}
  local function scrub(v, key)
    if type(v) == "string" then
      if F.SECRET_KEYS[key] then return M.REDACTED end
      for _, s in ipairs(list) do
        if v:find(s, 1, true) then return M.REDACTED end
      end
      return log.mask(v)
    end
    if type(v) ~= "table" then return v end
    if seen[v] then return seen[v] end
    local out = {}
    seen[v] = out
    for k, x in pairs(v) do out[k] = scrub(x, k) end
    local mt = getmetatable(v)
    if mt == yaml.array_mt then setmetatable(out, mt) end
    return out
  end
  return scrub(site)
end

return M
