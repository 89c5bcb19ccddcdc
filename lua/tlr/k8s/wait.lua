--- Waits on Kubernetes objects: rollouts of Deployments, StatefulSets and
--- DaemonSets with kubectl's rules (kubectl rollout status), CRDs until
--- Established, any condition, Argo CD Applications until Synced and
--- Healthy, deletions until the object is gone.
---
--- A wait reads the object, then watches it (a watch on its name from that
--- resourceVersion, so every change is seen at once) until it is done, a
--- rule says it cannot get there (a Deployment past its progress deadline:
--- ETASK at once), or `timeout` (default 300 s) passes: then
--- ETIMEDOUT with what it was still waiting for, e.g.
--- "deployment argocd/argocd-server: timed out after 300s: 1 of 2 updated
--- replicas are available".  Inside a task the progress view shows the same
--- text while it waits.  The status functions are pure and public, so a
--- plan can say what it would wait for.
local errors = require "tlr.errors"
local sched = require "tlr.sched"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"

local M = {}

local null = yaml.null

local function num(v)
  if type(v) == "number" then return v end
  return 0
end

local function val(v)
  if v == null then return nil end
  return v
end

local function field(obj, ...)
  local v = obj
  for _, k in ipairs { ... } do
    if type(v) ~= "table" then return nil end
    v = val(v[k])
  end
  return v
end

local function find_condition(obj, ctype)
  for _, c in ipairs(field(obj, "status", "conditions") or {}) do
    if type(c) == "table" and c.type == ctype then return c end
  end
end

-- ========== status rules (pure) ==========

--- Deployment rollout (kubectl's rules): done, message, fatal.
---@param d table a Deployment
---@return boolean done
---@return string message what it waits for, or that it is done
---@return boolean? fatal the rollout cannot finish (progress deadline exceeded)
function M.deployment_status(d)
  local st = field(d, "status") or {}
  if num(field(d, "metadata", "generation")) > num(st.observedGeneration) then
    return false, "waiting for the spec update to be observed"
  end
  local cond = find_condition(d, "Progressing")
  if cond and cond.reason == "ProgressDeadlineExceeded" then
    local why = cond.message and (" (" .. tostring(cond.message) .. ")") or ""
    return false, "exceeded its progress deadline" .. why, true
  end
  local want = field(d, "spec", "replicas")
  local updated, replicas, available = num(st.updatedReplicas), num(st.replicas), num(st.availableReplicas)
  if want and updated < want then
    return false, string.format("%d out of %d new replicas have been updated", updated, want)
  end
  if replicas > updated then
    return false, string.format("%d old replicas are pending termination", replicas - updated)
  end
  if available < updated then
    return false, string.format("%d of %d updated replicas are available", available, updated)
  end
  return true, "successfully rolled out"
end

local function strategy_type(obj)
  return field(obj, "spec", "updateStrategy", "type") or "RollingUpdate"
end

--- DaemonSet rollout (kubectl's rules).
---@param ds table
---@return boolean done
---@return string message
---@return boolean? fatal
function M.daemonset_status(ds)
  if strategy_type(ds) ~= "RollingUpdate" then
    return false, "rollout status is only available for the RollingUpdate strategy type", true
  end
  local st = field(ds, "status") or {}
  if num(field(ds, "metadata", "generation")) > num(st.observedGeneration) then
    return false, "waiting for the spec update to be observed"
  end
  local desired = num(st.desiredNumberScheduled)
  if num(st.updatedNumberScheduled) < desired then
    return false, string.format("%d out of %d new pods have been updated", num(st.updatedNumberScheduled),
      desired)
  end
  if num(st.numberAvailable) < desired then
    return false, string.format("%d of %d updated pods are available", num(st.numberAvailable), desired)
  end
  return true, "successfully rolled out"
end

--- StatefulSet rollout (kubectl's rules, partitions included).
---@param sts table
---@return boolean done
---@return string message
---@return boolean? fatal
function M.statefulset_status(sts)
  if strategy_type(sts) ~= "RollingUpdate" then
    return false, "rollout status is only available for the RollingUpdate strategy type", true
  end
  local st = field(sts, "status") or {}
  local observed = num(st.observedGeneration)
  if observed == 0 or num(field(sts, "metadata", "generation")) > observed then
    return false, "waiting for the spec update to be observed"
  end
  local want = field(sts, "spec", "replicas")
  if want and num(st.readyReplicas) < want then
    return false, string.format("%d of %d pods are ready", num(st.readyReplicas), want)
  end
  local rolling = field(sts, "spec", "updateStrategy", "rollingUpdate")
  if rolling then
    local partition = val(rolling.partition)
    if want and partition then
      local target = want - partition
      if num(st.updatedReplicas) < target then
        return false, string.format("partitioned roll out: %d out of %d new pods have been updated",
          num(st.updatedReplicas), target)
      end
    end
    return true, string.format("partitioned roll out complete: %d new pods have been updated",
      num(st.updatedReplicas))
  end
  if st.updateRevision ~= st.currentRevision then
    return false, string.format("rolling update: %d pods at revision %s", num(st.updatedReplicas),
      tostring(st.updateRevision))
  end
  return true, string.format("rolling update complete: %d pods at revision %s", num(st.currentReplicas),
    tostring(st.currentRevision))
end

local ROLLOUT = { Deployment = M.deployment_status, DaemonSet = M.daemonset_status,
  StatefulSet = M.statefulset_status }

--- The rollout rule for an object of kind Deployment, DaemonSet or StatefulSet.
---@param obj table
---@return boolean done
---@return string message
---@return boolean? fatal
function M.rollout_status(obj)
  local rule = ROLLOUT[obj.kind]
  opts.arg(rule ~= nil, "rollout_status", "Deployment, DaemonSet or StatefulSet expected")
  return rule(obj)
end

--- Whether condition `ctype` has status `want` (default "True"); a
--- condition that reports an older observedGeneration does not count yet.
---@param obj table
---@param ctype string
---@param want? string
---@return boolean done
---@return string message
function M.condition_status(obj, ctype, want)
  want = want or "True"
  local c = find_condition(obj, ctype)
  if not c then return false, "no " .. ctype .. " condition yet" end
  local gen, seen = field(obj, "metadata", "generation"), val(c.observedGeneration)
  if gen and seen and seen < gen then return false, "condition " .. ctype .. " is not updated yet" end
  if c.status == want then return true, "condition " .. ctype .. " is " .. want end
  local why = val(c.message) or val(c.reason)
  return false, string.format("condition %s is %s%s", ctype, tostring(c.status),
    why and (" (" .. tostring(why) .. ")") or "")
end

--- Argo CD Application: done when sync is Synced and health Healthy.
---@param app table
---@return boolean done
---@return string message
function M.application_status(app)
  local sync = field(app, "status", "sync", "status") or "Unknown"
  local health = field(app, "status", "health", "status") or "Unknown"
  if sync == "Synced" and health == "Healthy" then return true, "Synced and Healthy" end
  local msg = string.format("sync %s, health %s", sync, health)
  local op = field(app, "status", "operationState")
  if op and (op.phase == "Failed" or op.phase == "Error") and op.message then
    msg = msg .. string.format(" (last sync %s: %s)", op.phase, tostring(op.message))
  end
  return false, msg
end

-- ========== waiting ==========

local WAIT_SPEC = { namespace = "string", timeout = "number" }

-- "deployment argocd/x", "customresourcedefinition x" (from the cached discovery)
local function what_of(c, api_version, kind, namespace, name)
  local gv = c.discovery.gvs[api_version]
  local res = gv and gv.kinds[kind]
  local ns = namespace
  if res then ns = res.namespaced and (namespace or c.namespace) or nil end
  return tostring(kind):lower() .. " " .. (ns and (ns .. "/") or "") .. name
end

local function show(text)
  local task = sched.current()
  if task then task:set_state(text) end
end

-- Follows one object: calls on_state(obj) with its state now and after each
-- change (nil while it does not exist) until on_state returns a value, which
-- follow returns.  A GET first, then a watch on the object's name from that
-- resourceVersion; a kind the server does not serve (yet) is asked for again
-- with backoff.  Returns nil, msg, code, status on failure; code ETIMEDOUT
-- (and no message) at the deadline.
local function follow(c, api_version, kind, name, namespace, deadline, on_state)
  local delay = 0.05
  while true do
    local obj, msg, code, st = c:get(api_version, kind, name, { namespace = namespace })
    if not obj and code ~= "ENOTFOUND" then return nil, msg, code, st end
    local r = on_state(obj)
    if r ~= nil then return r end
    local left = deadline - sched.now()
    if left <= 0 then return nil, nil, "ETIMEDOUT" end
    local gv = c.discovery.gvs[api_version]
    if gv and gv.kinds[kind] then
      r, msg, code, st = c:watch(api_version, kind, function(etype, o)
        return on_state(etype ~= "DELETED" and o or nil)
      end, { namespace = namespace, field_selector = "metadata.name=" .. name, timeout = left,
        resource_version = obj and (obj.metadata or {}).resourceVersion or nil })
      if r ~= nil then return r end
      if code == "ETIMEDOUT" then return nil, nil, "ETIMEDOUT" end
      if code ~= "ENOTFOUND" then return nil, msg, code, st end
    else
      sched.sleep(math.min(delay, left))
      delay = math.min(delay * 1.5, 2)
    end
  end
end

--- Waits until `check(obj)` says done.  `check` returns done, message,
--- fatal; a missing object is waited for (it may not be made yet).
---@param c table the client
---@param api_version string
---@param kind string
---@param name string
---@param check fun(obj: table): boolean, string, boolean?
---@param o? {namespace?: string, timeout?: number}
---@return table|nil object the state that satisfied check
---@return string? msg
---@return string? code "ETIMEDOUT", "ETASK" (fatal), or the API's code
---@return table? status (the object for ETASK)
function M.wait(c, api_version, kind, name, check, o)
  opts.arg(type(name) == "string", "k8s.wait", "name expected")
  opts.arg(type(check) == "function", "k8s.wait", "check function expected")
  o = opts.check("k8s.wait", o, WAIT_SPEC)
  local timeout = o.timeout or 300
  local last = "not found yet"
  local what
  local deadline = sched.now() + timeout
  local r, msg, code, st = follow(c, api_version, kind, name, o.namespace, deadline, function(obj)
    what = what_of(c, api_version, kind, obj and (obj.metadata or {}).namespace or o.namespace, name)
    if obj then
      local done, text, fatal = check(obj)
      last = text or "not done yet"
      if done then return { obj } end
      if fatal then return { nil, what .. ": " .. last, "ETASK", obj } end
    else
      last = "not found yet"
    end
    show(what .. ": " .. last)
  end)
  if r then return table.unpack(r, 1, 4) end
  if code == "ETIMEDOUT" then
    what = what or what_of(c, api_version, kind, o.namespace, name)
    return nil, string.format("%s: timed out after %gs: %s", what, timeout, last), "ETIMEDOUT"
  end
  return nil, msg, code, st
end

--- Waits for a Deployment, StatefulSet or DaemonSet (apps/v1) to roll out.
---@param c table
---@param kind "Deployment"|"StatefulSet"|"DaemonSet"
---@param name string
---@param o? {namespace?: string, timeout?: number}
function M.rollout(c, kind, name, o)
  local rule = ROLLOUT[kind]
  opts.arg(rule ~= nil, "k8s.wait_rollout", "Deployment, StatefulSet or DaemonSet expected")
  return M.wait(c, "apps/v1", kind, name, rule, o)
end

--- Waits for a condition (`status`, default "True") on any object.
---@param c table
---@param api_version string
---@param kind string
---@param name string
---@param ctype string
---@param o? {namespace?: string, timeout?: number, status?: string}
function M.condition(c, api_version, kind, name, ctype, o)
  opts.arg(type(ctype) == "string", "k8s.wait_condition", "condition type expected")
  local want
  if type(o) == "table" and o.status ~= nil then
    want = o.status
    local rest = {}
    for k, v in pairs(o) do
      if k ~= "status" then rest[k] = v end
    end
    o = rest
  end
  return M.wait(c, api_version, kind, name, function(obj) return M.condition_status(obj, ctype, want) end, o)
end

--- Waits until a CustomResourceDefinition is Established.
---@param c table
---@param name string "applications.argoproj.io"
---@param o? {timeout?: number}
function M.crd(c, name, o)
  return M.condition(c, "apiextensions.k8s.io/v1", "CustomResourceDefinition", name, "Established", o)
end

--- Waits until an Argo CD Application is Synced and Healthy (namespace
--- default "argocd").
---@param c table
---@param name string
---@param o? {namespace?: string, timeout?: number}
function M.application(c, name, o)
  local oo = {}
  for k, v in pairs(o or {}) do oo[k] = v end
  oo.namespace = oo.namespace or "argocd"
  return M.wait(c, "argoproj.io/v1alpha1", "Application", name, M.application_status, oo)
end

--- Waits until an object is gone (or replaced: another uid).  Names the
--- finalizers that still hold it.
---@param c table
---@param api_version string
---@param kind string
---@param name string
---@param o? {namespace?: string, uid?: string, timeout?: number}
---@return true|nil ok
---@return string? msg
---@return string? code
function M.deleted(c, api_version, kind, name, o)
  o = opts.check("k8s.wait_deleted", o, { namespace = "string", uid = "string", timeout = "number" })
  local timeout = o.timeout or 300
  local last = "still there"
  local deadline = sched.now() + timeout
  local r, msg, code, st = follow(c, api_version, kind, name, o.namespace, deadline, function(obj)
    if not obj then return true end
    local meta = obj.metadata or {}
    if o.uid and meta.uid ~= o.uid then return true end
    local fins = val(meta.finalizers)
    last = "still there"
    if val(meta.deletionTimestamp) and type(fins) == "table" and #fins > 0 then
      last = "waiting for finalizers " .. table.concat(fins, ", ")
    end
    show(what_of(c, api_version, kind, o.namespace, name) .. ": " .. last)
  end)
  if r then return true end
  if code == "ETIMEDOUT" then
    local what = what_of(c, api_version, kind, o.namespace, name)
    return nil, string.format("%s: not deleted after %gs: %s", what, timeout, last), "ETIMEDOUT"
  end
  if code == "ENOTFOUND" then return true end
  return nil, msg, code, st
end

--- Waits, in parallel, for every object of a list (apply's results, or
--- objects) that has something to wait for: rollouts, CRDs, Applications.
--- Others are ready at once.  The first failure cancels the rest.
---@param c table
---@param list table[]
---@param o? {timeout?: number}
---@return true|nil ok
---@return string? msg
---@return string? code
function M.ready(c, list, o)
  opts.arg(type(list) == "table", "k8s.wait_ready", "list of objects expected")
  o = opts.check("k8s.wait_ready", o, { timeout = "number" })
  local tasks = {}
  for _, item in ipairs(list) do
    local obj = item.object or item
    local meta = obj.metadata or {}
    local name, ns = item.name or meta.name, item.namespace or meta.namespace
    local wo = { namespace = ns, timeout = o.timeout }
    local fn
    if ROLLOUT[obj.kind] and tostring(obj.apiVersion):match("^apps/") then
      fn = function() return M.rollout(c, obj.kind, name, wo) end
    elseif obj.kind == "CustomResourceDefinition" then
      fn = function() return M.crd(c, name, { timeout = o.timeout }) end
    elseif obj.kind == "Application" and tostring(obj.apiVersion):match("^argoproj%.io/") then
      fn = function() return M.application(c, name, wo) end
    end
    if fn then
      tasks[#tasks + 1] = sched.spawn("wait " .. obj.kind .. " " .. tostring(name), function()
        local ok, msg, code = fn()
        if not ok then errors.raise(code, msg) end -- sched.all cancels the others
        return true
      end)
    end
  end
  local ok, err = pcall(sched.all, tasks)
  if not ok then
    if errors.is(err) then return nil, err.msg, err.code end
    error(err, 0)
  end
  return true
end

return M
