--- tlr.engine.lifecycle: taking nodes out and restarting them safely.
--- Nodes the inventory has but the site no longer lists are retired
--- (cordon, drain, delete the Node object, leave etcd for a control plane,
--- Talos reset, delete the VM, remove the DNS record); a node the site moved
--- to another Proxmox host is retired and made anew; VMs whose change needs
--- a cold start are restarted one at a time between health gates.  Every
--- step can be repeated: a run killed half-way picks up where it stopped,
--- because the inventory forgets a node only when it is fully gone.
local sched = require "tlr.sched"
local vm = require "tlr.proxmox.vm"
local log = require "tlr.log"

local function check(...) return require("tlr.engine").check(...) end
local function steps() return require("tlr.engine.steps") end
local function cluster() return require("tlr.engine.cluster") end

local M = {}

local DRAIN_TIMEOUT = 600

-- ========== what goes ==========

--- The nodes to take out: in the inventory but not in the site, or moved to
--- another host (`replace`).  Sets ctx.retiring = {{name, role, host, vmid, ip, replace}...}
--- (control planes last, by name) and refuses, before anything changes, a
--- removal that would leave etcd without quorum.
function M.plan_retire(ctx)
  local list, current_cps = {}, 0
  for name, inv in pairs(ctx.inv.nodes or {}) do
    local n = ctx:node(name)
    if inv.role == "controlplane" then current_cps = current_cps + 1 end
    if not n then
      list[#list + 1] = { name = name, role = inv.role, host = inv.host, vmid = inv.vmid, ip = inv.ip }
    elseif inv.host and inv.host ~= n.host then
      list[#list + 1] = { name = name, role = inv.role, host = inv.host, vmid = inv.vmid, ip = inv.ip,
        replace = string.format("moved from %s to %s", inv.host, n.host) }
    end
  end
  table.sort(list, function(a, b)
    if (a.role == "controlplane") ~= (b.role == "controlplane") then return b.role == "controlplane" end
    return a.name < b.name
  end)
  local leaving = 0
  for _, r in ipairs(list) do if r.role == "controlplane" then leaving = leaving + 1 end end
  if leaving > 0 and ctx.inv.bootstrapped and not ctx.destroy then
    local quorum = current_cps // 2 + 1
    if current_cps - leaving < quorum then
      require("tlr.errors").raise("EINVAL", string.format(
        "%s: taking %d of %d control planes out at once would leave %d etcd member%s, below the quorum of %d; "
        .. "take them out one run at a time (or add control planes first)", ctx.site.file or "site", leaving,
        current_cps, current_cps - leaving, current_cps - leaving == 1 and "" or "s", quorum), { step = "plan" })
    end
  end
  ctx.retiring = list
  return list
end

local function describe(r)
  return string.format("node %s (%s: cordon, drain, %sTalos reset, vm %s on %s%s)", r.name, r.role or "?",
    r.role == "controlplane" and "leave etcd, " or "", tostring(r.vmid or "?"), tostring(r.host or "?"),
    r.replace and "" or ", dns")
end

-- ========== Kubernetes: cordon and drain ==========

-- The cluster's API client once it exists (nil before bootstrap or kubeconfig).
local function k8s(ctx)
  if not ctx.inv.bootstrapped or not ctx.state:read("kubeconfig") then return nil end
  return cluster().k8s(ctx)
end

--- Marks the Node (un)schedulable; a missing Node is fine.
function M.cordon(c, name, on)
  local ok, msg, code = c:request("PATCH", "/api/v1/nodes/" .. name, {
    body = { spec = { unschedulable = on } }, content_type = "application/merge-patch+json",
    what = (on and "cordon " or "uncordon ") .. name })
  if ok or code == "ENOTFOUND" then return true end
  return nil, msg, code
end

local function evictable(pod)
  local md = pod.metadata or {}
  if (md.annotations or {})["kubernetes.io/config.mirror"] then return false end -- static pods
  for _, ref in ipairs(md.ownerReferences or {}) do
    if ref.kind == "DaemonSet" then return false end -- it would come right back
  end
  local phase = (pod.status or {}).phase
  return phase ~= "Succeeded" and phase ~= "Failed"
end

--- Evicts the Node's pods (PodDisruptionBudgets honoured: a refused
--- eviction is retried) and waits until they are gone.
function M.drain(c, name, timeout)
  local deadline = sched.now() + (timeout or DRAIN_TIMEOUT)
  local pending = {}
  local function pods()
    local list, msg, code = c:list("v1", "Pod", { all_namespaces = true, field_selector = "spec.nodeName=" .. name })
    if not list then return nil, msg, code end
    return list.items
  end
  local list, msg, code = pods()
  if not list then return nil, msg, code end
  for _, p in ipairs(list) do
    if evictable(p) then pending[#pending + 1] = p end
  end
  for _, p in ipairs(pending) do
    local ns, pname = p.metadata.namespace, p.metadata.name
    local delay = 1
    while true do
      local ok, m, cd, st = c:request("POST", string.format("/api/v1/namespaces/%s/pods/%s/eviction", ns, pname), {
        body = { apiVersion = "policy/v1", kind = "Eviction", metadata = { name = pname, namespace = ns } },
        what = string.format("evict pod %s/%s", ns, pname), retry_budget = 0 })
      if ok or cd == "ENOTFOUND" then break end
      local budget = st and st.code == 429 -- a disruption budget says not now
      if not budget or sched.now() + delay > deadline then return nil, m, cd end
      log.info("drain %s: %s; retrying", name, m)
      sched.sleep(delay)
      delay = math.min(delay * 2, 5)
    end
  end
  local uids = {}
  for _, p in ipairs(pending) do uids[p.metadata.uid] = p.metadata.namespace .. "/" .. p.metadata.name end
  while next(uids) do
    local now_list, m, cd = pods()
    if not now_list then return nil, m, cd end
    local left = {}
    for _, p in ipairs(now_list) do
      if uids[p.metadata.uid] then left[p.metadata.uid] = uids[p.metadata.uid] end
    end
    uids = left
    if not next(uids) then break end
    if sched.now() > deadline then
      local names = {}
      for _, v in pairs(uids) do names[#names + 1] = v end
      table.sort(names)
      return nil, string.format("drain %s: pods still terminating: %s", name, table.concat(names, ", ")), "ETIMEDOUT"
    end
    sched.sleep(0.2)
  end
  return #pending
end

-- ========== etcd ==========

local function talos(ctx, ip, timeout)
  return require("tlr.talos.client").connect(ip, { talosconfig = cluster().talosconfig(ctx), timeout = timeout or 15 })
end

-- A control plane other than `name` that answers etcd's member list: client, members.
local function etcd_peer(ctx, name)
  local last_msg, last_code = "no other control plane", "EUNREACHABLE"
  for _, n in ipairs(ctx:nodes("controlplane")) do
    if n.name ~= name and steps().ip(ctx, n) then
      local c = talos(ctx, steps().ip(ctx, n))
      local members, msg, code = c and c:etcd_member_list()
      if members then return c, members end
      last_msg, last_code = msg, code
    end
  end
  return nil, last_msg, last_code
end

--- Takes a control plane out of etcd: it hands over leadership and leaves;
--- when it cannot (down already), a peer removes its member.  Quorum is
--- checked on the live member list first.
function M.leave_etcd(ctx, r)
  local peer, members, code = etcd_peer(ctx, r.name)
  check("etcd " .. r.name, peer, members, code)
  local mine
  local voting = 0
  for _, m in ipairs(members) do
    if m.hostname == r.name then mine = m end
    if not m.is_learner then voting = voting + 1 end
  end
  if not mine then return false end -- left already
  local remaining = voting - (mine.is_learner and 0 or 1)
  if not mine.is_learner and remaining < voting // 2 + 1 then
    check("etcd " .. r.name, nil, string.format("removing %s would leave %d of %d voting members, below quorum",
      r.name, remaining, voting), "EINVAL")
  end
  local c = r.ip and talos(ctx, r.ip, 10)
  local left = false
  if c then
    c:etcd_forfeit_leadership()
    left = c:etcd_leave_cluster() ~= nil
  end
  if not left then
    check("etcd " .. r.name, peer:etcd_remove_member(mine.id))
  end
  -- the peers agree it is gone
  local deadline = sched.now() + 60
  while true do
    local now_members = peer:etcd_member_list()
    local still = false
    for _, m in ipairs(now_members or {}) do if m.hostname == r.name then still = true end end
    if now_members and not still then return true end
    if sched.now() > deadline then check("etcd " .. r.name, nil, "still a member after leaving", "ETIMEDOUT") end
    sched.sleep(0.2)
  end
end

-- ========== retiring ==========

-- The node's VM by its id, else by its name (/cluster/resources is cluster-wide,
-- so any host's client finds it): the VM and the client of its host, or nil.
function M.find_vm(ctx, r)
  local host = r.host
  if not (host and ctx.site.proxmox.hosts[host]) then host = next(ctx.site.proxmox.hosts) end
  local pve = ctx:pve(host)
  local by_id, by_name, code = vm.lookup(pve, r.vmid, r.name)
  if by_id == nil then check("vm " .. r.name, nil, by_name, code) end
  local found = by_id and by_id.name == r.name and by_id or by_name
  if not found then return nil end
  return found, ctx.site.proxmox.hosts[found.node] and ctx:pve(found.node) or pve
end

--- Takes one node out of the cluster and deletes its machine.
function M.retire_one(ctx, r)
  local c = k8s(ctx)
  local inv = ctx.inv.nodes[r.name] or {}
  local found, pve = M.find_vm(ctx, r)
  local alive = found and found.status == "running"
  if c then
    check("cordon " .. r.name, M.cordon(c, r.name, true))
    -- a machine that is down cannot confirm its pods gone: they go with its Node
    if alive then check("drain " .. r.name, M.drain(c, r.name)) end
    check("node " .. r.name, c:delete("v1", "Node", r.name, { wait = false }))
  end
  if r.role == "controlplane" and ctx.inv.bootstrapped then
    if not r.replace then cluster().health(ctx) end -- the others keep quorum without it
    M.leave_etcd(ctx, r)
  end
  if found then
    if found.status == "running" and r.ip and inv.config_hash then
      -- wipe what Talos holds (keys, etcd data) before the disk goes; the node powers itself off
      local t = talos(ctx, r.ip, 10)
      if t and t:reset { graceful = false, reboot = false } then vm.wait_stopped(pve, found.node, found.vmid, 180) end
    end
    check("vm " .. r.name, vm.delete(pve, found.node, found.vmid))
  end
  -- a kubelet may have registered the Node again before the reset
  if c then check("node " .. r.name, c:delete("v1", "Node", r.name, { wait = false })) end
  if not r.replace then
    local zone = steps().zone(ctx)
    if zone then
      -- the record sets tlr made for it (A and/or AAAA), as the inventory lists them
      local keep, gone = {}, {}
      for _, set in ipairs(ctx.inv.dns or {}) do
        if set.name == r.name then gone[#gone + 1] = set else keep[#keep + 1] = set end
      end
      if #gone == 0 and ctx.site.dns.node_records then gone = { { name = r.name, type = "A" }, { name = r.name, type = "AAAA" } } end
      if #gone > 0 then check("dns", zone:delete(gone)) end
      ctx.inv.dns = keep
    end
  end
  ctx.inv.nodes[r.name] = nil
  ctx:save()
end

--- Takes the site's nodes of `role` out of a cluster that stays (a per-step
--- recipe's destroy): the same graceful path as a removal.
function M.retire_role(ctx, role)
  local list = {}
  for _, n in ipairs(ctx:nodes(role)) do
    local inv = ctx.inv.nodes[n.name] or {}
    list[#list + 1] = { name = n.name, role = n.role, host = n.host, vmid = inv.vmid or n.vmid,
      ip = n.ip or inv.ip }
  end
  return M.retire(ctx, list)
end

--- Retires `list` (default: ctx.retiring without the replaced ones): workers
--- in parallel, then control planes one at a time, then a full health check
--- once a control plane went.
function M.retire(ctx, list)
  list = list or ctx.retiring or M.plan_retire(ctx)
  local workers, cps = {}, {}
  for _, r in ipairs(list) do
    if r.role == "controlplane" then cps[#cps + 1] = r else workers[#workers + 1] = r end
  end
  for _, r in ipairs(list) do
    if r.replace then ctx:change("replace", "node " .. r.name, nil, r.replace)
    else ctx:change("delete", describe(r)) end
  end
  if ctx.plan or #list == 0 then return end
  ctx:each("retire", workers, function(r) M.retire_one(ctx, r) end)
  local removed = false
  for _, r in ipairs(cps) do
    sched.spawn("retire " .. r.name, M.retire_one, ctx, r):wait()
    removed = removed or not r.replace
  end
  -- (a moved control plane is checked once its new machine has joined, by the health phase)
  if removed then cluster().health(ctx) end
end

--- The removals the site asks for (not the moves: those happen in the VM
--- step), of one role or all.
function M.retire_removed(ctx, role)
  local list = {}
  for _, r in ipairs(ctx.retiring or M.plan_retire(ctx)) do
    if not r.replace and (not role or r.role == role) and ctx.inv.nodes[r.name] then list[#list + 1] = r end
  end
  return M.retire(ctx, list)
end

--- The moves: the old machine goes before the new one is made.
function M.retire_moved(ctx, nodes)
  local want = {}
  for _, n in ipairs(nodes or ctx.site.nodes) do want[n.name] = true end
  local list = {}
  for _, r in ipairs(ctx.retiring or M.plan_retire(ctx)) do
    if r.replace and want[r.name] then list[#list + 1] = r end
  end
  return M.retire(ctx, list)
end

-- ========== restarts ==========

--- Restarts the VMs whose changes wait for a cold start, one at a time:
--- health gate, cordon, drain, shutdown, start, Talos up, health gate, uncordon.
function M.rollout(ctx)
  local queued, queue = {}, {}
  for _, n in ipairs(ctx.restarts or {}) do queued[n.name] = true end
  for _, n in ipairs(ctx.site.nodes) do if queued[n.name] then queue[#queue + 1] = n end end
  local c = k8s(ctx)
  if ctx.plan then return end
  -- first what a killed run's restart left cordoned (its node was restarted, or is queued again)
  local function uncordon(name)
    local inv = ctx.inv.nodes[name]
    if c and inv and inv.cordoned then
      check("uncordon " .. name, M.cordon(c, name, false))
      inv.cordoned = nil
      ctx:save()
    end
  end
  for name in pairs(ctx.inv.nodes) do if ctx:node(name) and not queued[name] then uncordon(name) end end
  for _, n in ipairs(queue) do
    sched.spawn("restart " .. n.name, function()
      local inv = ctx.inv.nodes[n.name]
      local pve = ctx:pve(n.host)
      cluster().health(ctx)
      if c then
        inv.cordoned = true
        ctx:save()
        check("cordon " .. n.name, M.cordon(c, n.name, true))
        check("drain " .. n.name, M.drain(c, n.name))
      end
      check("vm " .. n.name, vm.shutdown(pve, n.host, inv.vmid, 120))
      check("vm " .. n.name, vm.start(pve, n.host, inv.vmid))
      if n.dhcp then -- the lease may have changed across the power cycle
        inv.ip = steps().learn_ip(ctx, n, pve, inv.vmid)
        ctx:save()
      end
      local t = talos(ctx, steps().ip(ctx, n))
      local deadline = sched.now() + 600
      while not (t and t:version()) do
        if sched.now() > deadline then check("talos " .. n.name, nil, "not back after the restart", "ETIMEDOUT") end
        sched.sleep(0.2)
      end
      cluster().health(ctx)
      uncordon(n.name) -- before the next node is drained: its pods need somewhere to go
    end):wait()
  end
end

return M
