--- Cluster health before Kubernetes, mirroring talosctl's and terraform's
--- pre-Kubernetes checks (reference/talos.md §5): etcd healthy, etcd members
--- consistent and all control planes, apid ready on all nodes, kubelet
--- healthy, all nodes booted.  Each check is polled with its own timeout and
--- a failure names the check and the node.
---
--- Talks to every node directly (one client per node) rather than through
--- apid's one-to-many proxying, which Talos is phasing out.
local client = require "tlr.talos.client"
local sched = require "tlr.sched"
local check = require("tlr.opts").check

local M = {}

local function service(list, id)
  for _, s in ipairs(list or {}) do
    if s.id == id then return s end
  end
end

local function service_ok(c, id)
  local list, msg = c:service_list()
  if not list then return false, msg end
  local s = service(list, id)
  if not s then return false, id .. " is not running yet (no such service)" end
  local healthy = s.health and s.health.healthy
  if s.state ~= "Running" or not healthy then
    return false, string.format("%s is %s%s", id, tostring(s.state),
      healthy and "" or " and not healthy" .. ((s.health and s.health.last_message or "") ~= ""
        and (" (" .. s.health.last_message .. ")") or ""))
  end
  return true
end

local function host_of(url)
  return (url:match("^%a+://%[([^%]]+)%]") or url:match("^%a+://([^:/]+)"))
end

--- The checks, in talosctl's order.  Each is {name, nodes = "controlplanes"|"all"|"cluster", fn}.
M.CHECKS = {
  { name = "etcd healthy", nodes = "controlplanes", fn = function(c) return service_ok(c, "etcd") end },
  { name = "etcd members consistent", nodes = "cluster", fn = function(ctx)
    local reference, ref_node
    for _, ip in ipairs(ctx.controlplanes) do
      local members, msg = ctx.clients[ip]:etcd_member_list()
      if not members then return false, msg, ip end
      local set = {}
      for _, m in ipairs(members) do
        set[#set + 1] = string.format("%s/%s/%s", m.hostname, tostring(m.id), tostring(m.is_learner))
      end
      table.sort(set)
      local key = table.concat(set, ",")
      if reference and key ~= reference then
        return false, string.format("members differ from %s's: %s vs %s", ref_node, key, reference), ip
      end
      reference, ref_node = key, ip
    end
    return true
  end },
  { name = "etcd members are control planes", nodes = "cluster", fn = function(ctx)
    local cps = {}
    for _, ip in ipairs(ctx.controlplanes) do cps[ip] = true end
    local members, msg = ctx.clients[ctx.controlplanes[1]]:etcd_member_list()
    if not members then return false, msg, ctx.controlplanes[1] end
    if #members ~= #ctx.controlplanes then
      return false, string.format("%d etcd members for %d control planes", #members, #ctx.controlplanes)
    end
    for _, m in ipairs(members) do
      for _, url in ipairs(m.peer_urls or {}) do
        local host = host_of(url)
        if not cps[host] then
          return false, string.format("member %s has peer %s, not a control plane", m.hostname, url)
        end
      end
    end
    return true
  end },
  { name = "apid ready", nodes = "all", fn = function(c)
    local v, msg = c:version()
    if not v then return false, msg end
    return true
  end },
  { name = "kubelet healthy", nodes = "all", fn = function(c) return service_ok(c, "kubelet") end },
  { name = "all nodes booted", nodes = "all", fn = function(c)
    local st, msg = c:machine_status()
    if not st then return false, msg end
    if st.stage ~= "running" then return false, "stage is " .. tostring(st.stage) end
    if st.status and st.status.ready == false then
      local unmet = {}
      for _, u in ipairs(st.status.unmetConditions or {}) do unmet[#unmet + 1] = tostring(u.name) end
      return false, "not ready: " .. table.concat(unmet, ", ")
    end
    return true
  end },
}

local function run_check(ctx, chk)
  if chk.nodes == "cluster" then
    local ok, msg, node = chk.fn(ctx)
    return ok, msg, node
  end
  local targets = chk.nodes == "controlplanes" and ctx.controlplanes or ctx.all
  -- all nodes at once; the first failure (in address order) is reported
  local tasks = {}
  for i, ip in ipairs(targets) do
    tasks[i] = sched.spawn(function() return { chk.fn(ctx.clients[ip]) } end)
  end
  for i, t in ipairs(tasks) do
    local r = t:wait()
    if not r[1] then return false, r[2], targets[i] end
  end
  return true
end

--- Waits until every check passes, in order.  Returns a list of
--- {check, seconds} or nil, "<check>: <node>: <why>", "ETIMEDOUT".
---@param o {talosconfig: string|table, controlplanes: string[], workers?: string[], timeout?: number, interval?: number, checks?: string[], on_check?: function}
function M.wait(o)
  o = check("talos.health.wait", o, { talosconfig = { "string", "table" }, controlplanes = "table",
    workers = "table", timeout = "number", interval = "number", checks = "table", on_check = "function" })
  if not o.talosconfig or not o.controlplanes or #o.controlplanes == 0 then
    error("talos.health.wait: talosconfig and controlplanes are required", 2)
  end
  local ctx = { controlplanes = o.controlplanes, workers = o.workers or {}, all = {}, clients = {} }
  for _, ip in ipairs(ctx.controlplanes) do ctx.all[#ctx.all + 1] = ip end
  for _, ip in ipairs(ctx.workers) do ctx.all[#ctx.all + 1] = ip end
  for _, ip in ipairs(ctx.all) do
    local c, msg, code = client.connect(ip, { talosconfig = o.talosconfig, timeout = 10 })
    if not c then return nil, msg, code end
    ctx.clients[ip] = c
  end
  local wanted
  if o.checks then
    wanted = {}
    for _, n in ipairs(o.checks) do wanted[n] = true end
  end
  local report = {}
  for _, chk in ipairs(M.CHECKS) do
    if not wanted or wanted[chk.name] then
      local t0 = sched.now()
      local deadline = t0 + (o.timeout or 300)
      local interval = o.interval or 1
      while true do
        local ok, msg, node = run_check(ctx, chk)
        if ok then break end
        if sched.now() + interval > deadline then
          return nil, string.format("%s: %s: %s (gave up after %gs)", chk.name, node or "cluster",
            tostring(msg), o.timeout or 300), "ETIMEDOUT", { check = chk.name, node = node }
        end
        if o.on_check then o.on_check(chk.name, false, msg, node) end
        sched.sleep(interval)
      end
      report[#report + 1] = { check = chk.name, seconds = sched.now() - t0 }
      if o.on_check then o.on_check(chk.name, true) end
    end
  end
  return report
end

return M
