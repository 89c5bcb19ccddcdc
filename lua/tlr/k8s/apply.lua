--- Server-side apply of many objects, in the order the API server needs:
--- Namespaces, then CustomResourceDefinitions, then everything else; custom
--- resources of the CRDs just applied wait until those are Established and
--- their group is discovered afresh, the other objects go meanwhile.  Within
--- a phase the objects are applied in parallel (bounded by the client's
--- max_inflight).
---
--- Every object is one `PATCH` of its URL with Content-Type
--- application/apply-patch+yaml and a JSON body, `fieldManager` (default
--- "tlr") and `force=true` when asked.  Namespaced objects without a
--- namespace get the default one (Argo CD's install.yaml names none);
--- cluster-scoped objects lose a namespace they should not have.
local discovery = require "tlr.k8s.discovery"
local json = require "tlr.json"
local sched = require "tlr.sched"
local wait = require "tlr.k8s.wait"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"

local M = {}

local null = yaml.null
local CRD_GROUP = "apiextensions.k8s.io"

local function describe(...) return require("tlr.k8s").describe(...) end

local function val(v)
  if v == null then return nil end
  return v
end

--- Turns the input of apply into a list of objects: a YAML/JSON text of
--- one or more documents (empty documents are skipped), one object table,
--- or a list of object tables; `kind: List` documents are flattened.
--- Each object needs apiVersion, kind and metadata.name.
---@param input string|table
---@return table[]|nil objects
---@return string? msg "document 3: metadata.name is required"
---@return string? code "EINVAL"
function M.documents(input)
  local docs = input
  if type(input) == "string" then
    local msg, code
    docs, msg, code = yaml.decode_all(input)
    if not docs then return nil, "manifest: " .. msg, code end
  elseif type(input) == "table" and input.kind ~= nil then
    docs = { input }
  elseif type(input) ~= "table" then
    error("bad argument #1 to 'apply' (YAML text, an object or a list of objects expected)", 3)
  end
  local out = {}
  local function add(doc, where)
    if doc == null or doc == nil then return true end
    if type(doc) ~= "table" or yaml.is_array(doc) then return nil, where .. ": an object expected" end
    if doc.kind == "List" and type(doc.items) == "table" then
      for i, item in ipairs(doc.items) do
        local ok, msg = add(item, where .. ", item " .. i)
        if not ok then return nil, msg end
      end
      return true
    end
    if type(doc.apiVersion) ~= "string" or not discovery.split(doc.apiVersion) then
      return nil, where .. ": apiVersion is missing or malformed"
    end
    if type(doc.kind) ~= "string" or doc.kind == "" then return nil, where .. ": kind is required" end
    local meta = val(doc.metadata)
    if type(meta) ~= "table" or type(meta.name) ~= "string" or meta.name == "" then
      return nil, where .. " (" .. doc.kind .. "): metadata.name is required"
    end
    out[#out + 1] = doc
    return true
  end
  for i, doc in ipairs(docs) do
    local ok, msg = add(doc, "document " .. i)
    if not ok then return nil, msg, "EINVAL" end
  end
  return out
end

local function phase_of(doc)
  if doc.kind == "Namespace" and doc.apiVersion == "v1" then return 1 end
  if doc.kind == "CustomResourceDefinition" and discovery.split(doc.apiVersion) == CRD_GROUP then return 2 end
  return 3
end

-- The body to send: a shallow copy with the namespace settled and without
-- managedFields (which apply must never send).
local function body_of(doc, ns)
  local body, meta = {}, {}
  for k, v in pairs(doc) do body[k] = v end
  for k, v in pairs(doc.metadata) do meta[k] = v end
  meta.namespace = ns
  meta.managedFields = nil
  body.metadata = meta
  return body
end

-- Applies one object: result table, or nil, msg, code, status.
local function apply_one(c, doc, o)
  local kind, name = doc.kind, doc.metadata.name
  local given = val(doc.metadata.namespace)
  if given == "" then given = nil end
  local res, msg, code, st
  local group = discovery.split(doc.apiVersion)
  for attempt = 1, 4 do
    res, msg, code, st = c.discovery:resolve(doc.apiVersion, kind)
    if not res then
      if code == "ENOTFOUND" and o.dry_run and o.new_groups[group] then
        return { apiVersion = doc.apiVersion, kind = kind, name = name, namespace = given or o.namespace,
          action = "skipped", reason = "its CRD is not installed yet (dry run)" }
      end
      return nil, describe("apply", kind, given, name) .. ": " .. msg, code, st
    end
    local ns
    if res.namespaced then
      ns = given or o.namespace or c.namespace
      if given and o.namespace and given ~= o.namespace then
        return nil, string.format("%s: the namespace from the object (%q) does not match the namespace %q",
          describe("apply", kind, given, name), given, o.namespace), "EINVAL"
      end
    end
    local query = { fieldManager = o.field_manager or c.field_manager, force = o.force and "true" or nil,
      dryRun = o.dry_run and "All" or nil }
    local obj, r
    obj, r, code, st = c:request("PATCH", discovery.path(res, ns, name), {
      body = body_of(doc, ns), content_type = "application/apply-patch+yaml", query = query,
      what = describe("apply", kind, ns, name), retry_budget = o.retry_budget,
    })
    if obj ~= nil then
      return { apiVersion = doc.apiVersion, kind = kind, name = name, namespace = ns,
        action = r.status == 201 and "created" or "configured", object = obj }
    end
    msg = r
    -- the group of a fresh CRD is not served everywhere yet: look it up again
    local unserved = code == "ENOTFOUND" and st
      and tostring(st.message):find("could not find the requested resource", 1, true)
    if not (unserved and c.discovery.recent[group]) then break end
    c.discovery:invalidate(group)
    sched.sleep(0.1 * 2 ^ attempt)
  end
  return nil, msg, code, st
end

-- Applies the objects of one phase in parallel; fills results[index].
-- Returns the failures (index order).
local function run_phase(c, items, o, results)
  local tasks = {}
  for i, it in ipairs(items) do
    tasks[i] = sched.spawn("apply " .. it.doc.kind .. " " .. it.doc.metadata.name, function()
      return table.pack(apply_one(c, it.doc, o))
    end)
  end
  local failures = {}
  for i, r in ipairs(sched.all(tasks)) do
    if r[1] then
      results[items[i].index] = r[1]
    else
      failures[#failures + 1] = { index = items[i].index, msg = r[2], code = r[3], status = r[4] }
    end
  end
  return failures
end

-- Waits until each applied CRD is Established (one whose apply answer says
-- so already is skipped): true, or the first failure.
local function wait_crds(c, items, results, timeout)
  local tasks = {}
  for _, it in ipairs(items) do
    local obj = results[it.index].object
    if not (type(obj) == "table" and wait.condition_status(obj, "Established")) then
      tasks[#tasks + 1] = sched.spawn("wait crd " .. it.doc.metadata.name, function()
        return table.pack(c:wait_crd(it.doc.metadata.name, { timeout = timeout or 60 }))
      end)
    end
  end
  for _, r in ipairs(sched.all(tasks)) do
    if not r[1] then return nil, r[2], r[3], r[4] end
  end
  return true
end

---@class tlr.k8s.ApplyOpts
---@field namespace? string
---@field force? boolean
---@field field_manager? string
---@field dry_run? boolean
---@field retry_budget? number
---@field timeout? number
---@field wait_crds? boolean

---@class tlr.k8s.Applied
---@field apiVersion string
---@field kind string
---@field name string
---@field namespace? string
---@field action "created"|"configured"|"skipped"
---@field object? table what the server answered

local APPLY_SPEC = { namespace = "string", force = "boolean", field_manager = "string", dry_run = "boolean",
  retry_budget = "number", timeout = "number", wait_crds = "boolean" }

--- Applies objects with server-side apply, in order: Namespaces, CRDs,
--- then the rest; objects of the new CRDs' groups after those CRDs are
--- Established (`timeout` seconds, default 60).  A phase's failures stop
--- the next phase.
---
--- Options: `namespace` for namespaced objects that name none (default the
--- client's; an object naming another one fails, like kubectl -n);
--- `force` takes over fields other managers own; `field_manager` (default
--- the client's, "tlr"); `dry_run` (dryRun=All: nothing is stored, and
--- objects of CRDs that are new in the input are reported "skipped");
--- `retry_budget` seconds for transient failures such as a webhook that is
--- not up yet (default the client's); `wait_crds = false` skips the wait.
---@param c table the client
---@param input string|table YAML text, an object or a list of objects
---@param o? tlr.k8s.ApplyOpts
---@return tlr.k8s.Applied[]|nil results one per object, in input order
---@return string? msg the first failure's message (and how many more failed)
---@return string? code
---@return table? status the first failure's Status
---@return table? partial the results of what was applied
function M.apply(c, input, o)
  o = opts.check("k8s.apply", o, APPLY_SPEC)
  local docs, msg, code = M.documents(input)
  if not docs then return nil, msg, code end
  local phases = { {}, {}, {} }
  local new_groups = {}
  for i, doc in ipairs(docs) do
    local p = phase_of(doc)
    table.insert(phases[p], { doc = doc, index = i })
    if p == 2 and type(val(doc.spec)) == "table" and type(doc.spec.group) == "string" then
      new_groups[doc.spec.group] = true
    end
  end
  local ao = { namespace = o.namespace, force = o.force, field_manager = o.field_manager, dry_run = o.dry_run,
    retry_budget = o.retry_budget, new_groups = new_groups }
  local results = {}
  local function failed(failures)
    local f = failures[1]
    local more = #failures > 1 and string.format(" (and %d more failures)", #failures - 1) or ""
    return nil, f.msg .. more, f.code, f.status, results
  end
  for p = 1, 2 do
    local failures = run_phase(c, phases[p], ao, results)
    if #failures > 0 then return failed(failures) end
  end
  -- The rest: objects of the new CRDs' groups wait until those CRDs are
  -- Established and discovered; the others need not and go meanwhile.
  local plain, custom = {}, {}
  for _, it in ipairs(phases[3]) do
    table.insert(new_groups[discovery.split(it.doc.apiVersion)] and custom or plain, it)
  end
  local plain_task = sched.spawn("apply", run_phase, c, plain, ao, results)
  local crds_ok, wmsg, wcode, wst = true, nil, nil, nil
  if #phases[2] > 0 and not o.dry_run then
    if o.wait_crds ~= false then crds_ok, wmsg, wcode, wst = wait_crds(c, phases[2], results, o.timeout) end
    local groups = {}
    for g in pairs(new_groups) do groups[#groups + 1] = g end
    table.sort(groups)
    c.discovery:crds_applied(groups)
  end
  local failures = plain_task:wait()
  if not crds_ok then return nil, wmsg, wcode, wst, results end
  if #failures > 0 then return failed(failures) end
  failures = run_phase(c, custom, ao, results)
  if #failures > 0 then return failed(failures) end
  return json.array(results)
end

return M
