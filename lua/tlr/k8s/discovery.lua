--- Kubernetes API discovery: which resource serves a kind (its plural name,
--- whether it is namespaced, its verbs), learnt from the API server only.
---
--- A group version's resource list (`GET /api/v1`, `GET /apis/G/V`) is
--- fetched the first time a kind of it is needed and cached; concurrent
--- lookups share one request.  Subresources ("deployments/scale") are
--- skipped.  After CRDs are applied, `crds_applied` drops the cached lists
--- of their groups, and a kind of such a group that is still missing is
--- looked up again a few times: the API server takes a moment to serve a
--- new CRD's group and there is no condition for that.
local http = require "tlr.http"
local sched = require "tlr.sched"

local M = {}

local Discovery = {}
Discovery.__index = Discovery
Discovery.__name = "tlr.k8s.Discovery"

---@class tlr.k8s.Resource
---@field api_version string "apps/v1", "v1"
---@field group string "" for the core group
---@field version string
---@field name string the plural, "deployments"
---@field kind string
---@field namespaced boolean
---@field verbs string[]
---@field short_names string[]
---@field singular string

-- Seconds after a CRD apply during which its group's misses are retried.
local RECENT = 120
-- Delays between the lookups of a kind of a freshly applied CRD's group.
local RETRY_DELAYS = { 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 }

--- A discovery cache that asks through `client:request`.
---@param client table a tlr.k8s client
function M.new(client)
  return setmetatable({ client = client, gvs = {}, inflight = {}, recent = {}, stats = { fetches = 0 } },
    Discovery)
end

--- The group and version of an apiVersion ("" for the core group), or nil
--- when it is malformed.
---@param api_version string
---@return string|nil group
---@return string|nil version
function M.split(api_version)
  if type(api_version) ~= "string" then return nil end
  if api_version:match("^v%d+[%w]*$") then return "", api_version end
  local g, v = api_version:match("^([%w.-]+)/(v%d+[%w]*)$")
  return g, v
end

--- The URL path of a collection or of one object of a resource.
---@param res tlr.k8s.Resource
---@param namespace? string ignored for cluster-scoped resources
---@param name? string
---@return string
function M.path(res, namespace, name)
  local p = res.group == "" and ("/api/" .. res.version) or ("/apis/" .. res.api_version)
  if res.namespaced and namespace then p = p .. "/namespaces/" .. http.escape(namespace) end
  p = p .. "/" .. res.name
  if name then p = p .. "/" .. http.escape(name) end
  return p
end

local function parse_list(api_version, body)
  local group, version = M.split(api_version)
  local entry = { kinds = {}, resources = {}, list = {} }
  for _, r in ipairs(type(body) == "table" and body.resources or {}) do
    if type(r.name) == "string" and not r.name:find("/", 1, true) then
      local res = {
        api_version = api_version, group = group, version = version, name = r.name, kind = r.kind,
        namespaced = r.namespaced == true, verbs = r.verbs or {}, short_names = r.shortNames or {},
        singular = r.singularName ~= "" and r.singularName or nil,
      }
      entry.resources[r.name] = res
      entry.list[#entry.list + 1] = res
      if r.kind and not entry.kinds[r.kind] then entry.kinds[r.kind] = res end
    end
  end
  return entry
end

-- Runs fetch() once for `key` however many tasks ask at the same time.
local function shared(self, key, fetch)
  local flight = self.inflight[key]
  if flight then
    if not flight.done then
      sched.block(function(wake) flight.waiters[#flight.waiters + 1] = wake end)
    end
    return table.unpack(flight.result, 1, 4)
  end
  flight = { waiters = {} }
  self.inflight[key] = flight
  local ok, a, b, c, d = pcall(fetch)
  flight.result = ok and { a, b, c, d } or { nil, tostring(a), "EPROTO" }
  flight.done = true
  self.inflight[key] = nil
  for _, wake in ipairs(flight.waiters) do wake() end
  if not ok then error(a, 0) end
  return a, b, c, d
end

--- The resources of one group version (cached).
---@param api_version string
---@return table|nil entry {kinds = {Kind = res}, resources = {plural = res}, list = {res...}}
---@return string? msg
---@return string? code "ENOTFOUND" when the server does not serve it
---@return table? status
function Discovery:group_version(api_version)
  local cached = self.gvs[api_version]
  if cached then return cached end
  local group, version = M.split(api_version)
  if not group then return nil, string.format("bad apiVersion %q", tostring(api_version)), "EINVAL" end
  return shared(self, api_version, function()
    local path = group == "" and ("/api/" .. version) or ("/apis/" .. api_version)
    self.stats.fetches = self.stats.fetches + 1
    local body, msg, code, st = self.client:request("GET", path, { what = "discover " .. api_version })
    if not body then
      if code == "ENOTFOUND" then
        return nil, string.format("the server does not serve %s", api_version), "ENOTFOUND", st
      end
      return nil, msg, code, st
    end
    local entry = parse_list(api_version, body)
    entry.fetched_at = sched.now()
    self.gvs[api_version] = entry
    return entry
  end)
end

--- Finds the resource for a kind.  A miss in a cached list asks the server
--- again; a kind of a group whose CRDs were applied lately is looked up a
--- few more times.
---@param api_version string
---@param kind string
---@return tlr.k8s.Resource|nil res
---@return string? msg `no matches for kind "K" in version "G/V"`
---@return string? code "ENOTFOUND", "EINVAL" or a transport code
---@return table? status the API's Status of a failed request
function Discovery:resolve(api_version, kind)
  local entry, msg, code, st = self:group_version(api_version)
  if entry and entry.kinds[kind] then return entry.kinds[kind] end
  if not entry and code ~= "ENOTFOUND" then return nil, msg, code, st end
  local group = M.split(api_version)
  local recent = self.recent[group]
  local delays = (recent and sched.now() - recent < RECENT) and RETRY_DELAYS or {}
  local first = entry and sched.now() - entry.fetched_at > 0.5 -- a stale list: ask once more now
  if first then
    self.gvs[api_version] = nil
    entry = self:group_version(api_version)
    if entry and entry.kinds[kind] then return entry.kinds[kind] end
  end
  for _, delay in ipairs(delays) do
    sched.sleep(delay)
    self.gvs[api_version] = nil
    entry, msg, code, st = self:group_version(api_version)
    if entry and entry.kinds[kind] then return entry.kinds[kind] end
    if not entry and code ~= "ENOTFOUND" then return nil, msg, code, st end
  end
  return nil, string.format('no matches for kind "%s" in version "%s"', kind, api_version), "ENOTFOUND"
end

--- Drops every cached list, or those of one group.
---@param group? string
function Discovery:invalidate(group)
  for av in pairs(self.gvs) do
    if group == nil or M.split(av) == group then self.gvs[av] = nil end
  end
  self.groups_cache = nil
end

--- Tells discovery that CRDs of these groups were just applied.
---@param groups string[]
function Discovery:crds_applied(groups)
  for _, g in ipairs(groups) do
    self.recent[g] = sched.now()
    self:invalidate(g)
  end
end

--- The API groups the server serves: `{name = "" | group, versions = {...},
--- preferred = "v1"}`, the core group first (`GET /api`, `GET /apis`).
---@return table[]|nil groups
---@return string? msg
---@return string? code
function Discovery:groups()
  if self.groups_cache then return self.groups_cache end
  return shared(self, "/apis", function()
    local core, msg, code = self.client:request("GET", "/api", { what = "discover groups" })
    if not core then return nil, msg, code end
    local apis
    apis, msg, code = self.client:request("GET", "/apis", { what = "discover groups" })
    if not apis then return nil, msg, code end
    local out = { { name = "", versions = core.versions or {}, preferred = (core.versions or {})[1] } }
    for _, g in ipairs(apis.groups or {}) do
      local versions = {}
      for _, v in ipairs(g.versions or {}) do versions[#versions + 1] = v.version end
      out[#out + 1] = { name = g.name, versions = versions,
        preferred = g.preferredVersion and g.preferredVersion.version or versions[1] }
    end
    self.groups_cache = out
    return out
  end)
end

--- Every resource of every group's preferred version (the lists are
--- fetched in parallel).
---@return tlr.k8s.Resource[]|nil resources
---@return string? msg
---@return string? code
function Discovery:resources()
  local groups, msg, code = self:groups()
  if not groups then return nil, msg, code end
  local tasks = {}
  for i, g in ipairs(groups) do
    local av = g.name == "" and g.preferred or (g.name .. "/" .. g.preferred)
    tasks[i] = sched.spawn("discover " .. av, function() return { self:group_version(av) } end)
  end
  local out = {}
  for _, r in ipairs(sched.all(tasks)) do
    if not r[1] and r[3] ~= "ENOTFOUND" then return nil, r[2], r[3] end
    for _, res in ipairs(r[1] and r[1].list or {}) do out[#out + 1] = res end
  end
  return out
end

--- Finds a resource by any name kubectl accepts: kind, plural, singular,
--- short name, or "plural.group" (case does not matter).  The core group and
--- then the groups in the server's order win ties.
---@param name string
---@return tlr.k8s.Resource|nil res
---@return string? msg
---@return string? code "ENOTFOUND"
function Discovery:find(name)
  local all, msg, code = self:resources()
  if not all then return nil, msg, code end
  local want = name:lower()
  for _, res in ipairs(all) do
    if res.name == want or (res.kind or ""):lower() == want or res.singular == want
      or (res.group ~= "" and res.name .. "." .. res.group == want) then
      return res
    end
    for _, short in ipairs(res.short_names) do
      if short == want then return res end
    end
  end
  return nil, string.format('the server has no resource type "%s"', name), "ENOTFOUND"
end

M.Discovery = Discovery
return M
