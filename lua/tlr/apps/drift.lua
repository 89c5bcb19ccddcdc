--- tlr.apps.drift: does the cluster still hold what the apps plan applied?
--- Reads every object of the plan (GETs only) and compares the fields the
--- plan sets with the live ones; the server's defaults and status are not
--- drift.  A Secret's stringData is compared with its base64 data.  Reports
--- field paths, never values.
local crypto = require "tlr.crypto"
local json = require "tlr.json"
local sched = require "tlr.sched"
local argocd = require "tlr.apps.argocd"

local M = {}

local SKIP_TOP = { apiVersion = true, kind = true, status = true, metadata = true, stringData = true }

local SUFFIX = { Ki = 2 ^ 10, Mi = 2 ^ 20, Gi = 2 ^ 30, Ti = 2 ^ 40, Pi = 2 ^ 50, Ei = 2 ^ 60,
  n = 1e-9, u = 1e-6, m = 1e-3, k = 1e3, M = 1e6, G = 1e9, T = 1e12, P = 1e15, E = 1e18 }

-- A Kubernetes quantity as a number ("500m" 0.5, "1Gi" 2^30, "1e3"), or nil.
local function quantity(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil end
  local num, suffix = v:match("^([+-]?[%d.]+[eE]?[+-]?%d*)(%a*)$")
  local n = num and tonumber(num)
  if not n then return nil end
  if suffix == "" then return n end
  return SUFFIX[suffix] and n * SUFFIX[suffix] or nil
end

local function same_scalar(want, have)
  if tostring(want) == tostring(have) then return true end
  -- the API server writes quantities its own way ("1024Mi" as "1Gi", "0.5" as "500m")
  local a, b = quantity(want), quantity(have)
  return a ~= nil and b ~= nil and math.abs(a - b) <= 1e-9 * math.max(1, math.abs(a))
end

-- The first path where `want` is not found in `have`, or nil when it is all there.
local function missing(want, have, path)
  if type(want) ~= "table" then
    if want == json.null then return nil end
    if have == nil or not same_scalar(want, have) then return path end
    return nil
  end
  if have == nil and next(want) == nil then return nil end -- [] and {} are left out by the server
  if type(have) ~= "table" then return path end
  if #want > 0 or json.is_array(want) then
    if #want ~= #have then return path end
    for i = 1, #want do
      local p = missing(want[i], have[i], path .. "[" .. (i - 1) .. "]")
      if p then return p end
    end
    return nil
  end
  local keys = {}
  for k in pairs(want) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local p = missing(want[k], have[k], path .. "." .. tostring(k))
    if p then return p end
  end
  return nil
end

--- Why `live` differs from `obj` (a field path), or nil.
function M.diff(obj, live)
  for k, v in pairs(obj) do
    if not SKIP_TOP[k] then
      local p = missing(v, live[k], k)
      if p then return p end
    end
  end
  local md, lmd = obj.metadata or {}, live.metadata or {}
  local p = missing(md.labels or {}, lmd.labels or {}, "metadata.labels")
    or missing(md.annotations or {}, lmd.annotations or {}, "metadata.annotations")
  if p then return p end
  for k, v in pairs(obj.stringData or {}) do
    local have = (live.data or {})[k]
    if not have or crypto.base64_decode(have) ~= v then return "stringData." .. k end
  end
  return nil
end

local function objects_of(p, o)
  local list = {}
  for _, ph in ipairs(p.phases) do
    local ns = ph.apply and ph.apply.namespace
    for _, obj in ipairs(ph.objects) do list[#list + 1] = { obj = obj, ns = ns } end
    if ph.name == "argocd" and not o.skip_manifest then
      local text, msg, code = o.manifest, nil, nil
      if not text then text, msg, code = argocd.fetch(p.manifest, { timeout = o.timeout }) end
      if not text then return nil, msg, code end
      local objs
      objs, msg, code = argocd.objects(text)
      if not objs then return nil, msg, code end
      for _, obj in ipairs(objs) do list[#list + 1] = { obj = obj, ns = ns } end
    end
  end
  return list
end

--- The objects of plan `p` that are missing or changed in the cluster:
--- {{object = "Kind ns/name", why = "missing" | "field path"}...}.
---@param c table tlr.k8s client
---@param p table from tlr.apps.plan
---@param o? {timeout?: number, skip_manifest?: boolean, manifest?: string} manifest: the install.yaml text as installed (else fetched)
function M.check(c, p, o)
  o = o or {}
  local list, msg, code = objects_of(p, o)
  if not list then return nil, msg, code end
  local found = {}
  local tasks = {}
  for i, item in ipairs(list) do
    tasks[i] = sched.spawn(function()
      local obj = item.obj
      local md = obj.metadata or {}
      local res, rmsg, rcode = c:resource(obj.apiVersion, obj.kind)
      local ns = res and res.namespaced and (md.namespace or item.ns) or nil
      local name = obj.kind .. " " .. (ns and (ns .. "/") or "") .. tostring(md.name)
      if not res then
        if rcode ~= "ENOTFOUND" then error(rmsg, 0) end -- not a verdict: the run stops, names why
        found[i] = { object = name, why = "missing (its type is not served)" }
        return
      end
      local live, gmsg, gcode = c:get(obj.apiVersion, obj.kind, md.name, { namespace = ns })
      if not live then
        if gcode == "ENOTFOUND" then found[i] = { object = name, why = "missing" } return end
        error(gmsg, 0)
      end
      local why = M.diff(obj, live)
      if why then found[i] = { object = name, why = why } end
    end)
  end
  local ok, err = pcall(sched.all, tasks)
  if not ok then return nil, tostring(err), "EAPI" end
  local out = {}
  for i = 1, #list do if found[i] then out[#out + 1] = found[i] end end
  return out
end

return M
