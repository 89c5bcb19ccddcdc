--- tlr.engine.steps: the operations recipes compose.  Each takes the engine
--- context, reads the current state, reports the difference, acts unless
--- planning, waits and records into the inventory.
local engine_check = function(...) return require("tlr.engine").check(...) end
local sched = require "tlr.sched"
local vm = require "tlr.proxmox.vm"

local M = {}

local function pve_version(pve)
  local v = engine_check("proxmox version", pve:get("/version"))
  local major, minor = tostring(v.version or v.release or "9.0"):match("^(%d+)%.(%d+)")
  return { major = tonumber(major) or 9, minor = tonumber(minor) or 0 }
end

-- ========== image ==========

--- The Talos image on each host's image storage (registered with the
--- factory and downloaded only when missing).  Sets ctx.images[host].
function M.image(ctx)
  local s = ctx.site
  ctx.images = ctx.images or {}
  local hosts = {}
  for name, h in pairs(s.proxmox.hosts) do
    if #h.nodes > 0 then hosts[#hosts + 1] = { name = name, h = h } end
  end
  table.sort(hosts, function(a, b) return a.name < b.name end)
  local registration -- one task registers the schematic; the others wait for it
  local function register()
    registration = registration or sched.spawn("factory schematic", function()
      local ext = {}
      for _, e in ipairs(s.talos.extensions or {}) do
        ext[#ext + 1] = e:find("/", 1, true) and e or ("siderolabs/" .. e)
      end
      return engine_check("factory schematic", require("tlr.talos.factory").register(s.talos.factory,
        { extensions = ext, extra_kernel_args = s.talos.kernel_args }))
    end)
    return registration:wait()
  end
  ctx:each("image", hosts, function(item)
    local pve = ctx:pve(item.name)
    local src = vm.image_source { factory = s.talos.factory, schematic = s.talos.schematic_id,
      version = s.talos.version, platform = s.talos.platform, arch = s.talos.arch,
      pve_version = pve_version(pve) }
    local want = { node = item.name, storage = item.h.image_storage, url = src.url,
      filename = src.filename, content = src.content }
    local probe = engine_check("image " .. item.name, vm.ensure_image(pve, {
      node = want.node, storage = want.storage, url = want.url, filename = want.filename,
      content = want.content, dry_run = true }))
    if probe.changed then
      ctx:change("create", string.format("image %s on %s", probe.volid or want.filename, item.name))
      if not ctx.plan then
        register()
        probe = engine_check("image " .. item.name, vm.ensure_image(pve, want))
      end
    end
    ctx.images[item.name] = { volid = probe.volid or string.format("%s:%s/%s", want.storage,
      want.content, want.filename), content = want.content }
    if not ctx.plan then ctx.inv.images = ctx.inv.images or {}; ctx.inv.images[item.name] = ctx.images[item.name].volid end
  end)
end

-- ========== VMs ==========

-- The nodes' vmids, decided once per run in site order: an explicit one;
-- else what its VM has (the inventory), so ids derived from
-- proxmox.vmid_base do not shift when the site's node list does; else the
-- derived id, or the next one no other node of the cluster holds or was given.
local function vmids(ctx)
  if ctx.vmids then return ctx.vmids end
  local held, out = {}, {}
  for _, inv in pairs(ctx.inv.nodes) do if inv.vmid then held[inv.vmid] = true end end
  for _, n in ipairs(ctx.site.nodes) do
    if n.vmid and not n.vmid_derived then held[n.vmid] = true end
  end
  for _, n in ipairs(ctx.site.nodes) do
    local inv = ctx.inv.nodes[n.name] or {}
    if n.vmid and not n.vmid_derived then out[n.name] = n.vmid
    elseif inv.vmid then out[n.name] = inv.vmid
    elseif n.vmid then
      local id = n.vmid
      while held[id] do id = id + 1 end
      held[id], out[n.name] = true, id
    end
  end
  ctx.vmids = out
  return out
end

local function vmid_for(ctx, n) return vmids(ctx)[n.name] end

local function vm_spec(ctx, n)
  local s = ctx.site
  local img = (ctx.images or {})[n.host]
  local tags = { "talos", n.role, s.name }
  for _, t in ipairs(n.tags or {}) do tags[#tags + 1] = t end
  local spec = {
    node = n.host, name = n.name, vmid = vmid_for(ctx, n), cores = n.cores,
    memory = n.memory, mac = n.mac, bridge = n.bridge, vlan = s.network.vlan, tags = tags,
    disk = { storage = n.storage, size = n.disk, image = img and img.volid },
    cloudinit = { ip = n.dhcp and "dhcp" or n.cidr, gw = not n.dhcp and s.network.gateway or nil,
      nameserver = (#(s.network.nameservers or {}) > 0) and s.network.nameservers or nil,
      searchdomain = (#(s.network.search_domains or {}) > 0) and s.network.search_domains[1] or nil },
  }
  return spec
end

--- Creates or updates the VMs of `nodes` (default: all) in parallel, starts
--- them and learns their addresses.  `o.extra(n)` may return further
--- Proxmox config keys for a node's VM (PCI passthrough, say).
function M.vms(ctx, nodes, o)
  nodes = nodes or ctx.site.nodes
  o = require("tlr.opts").check("steps.vms", o, { extra = "function", then_each = "function" })
  if not ctx.images then M.image(ctx) end
  require("tlr.engine.lifecycle").retire_moved(ctx, nodes)
  ctx.restarts = ctx.restarts or {}
  local moving = {}
  for _, r in ipairs(ctx.retiring or {}) do if r.replace then moving[r.name] = true end end
  -- control planes first: they head the chain (bootstrap, etcd) and queue first for storage slots
  local ordered = {}
  for _, n in ipairs(nodes) do if n.role == "controlplane" then ordered[#ordered + 1] = n end end
  for _, n in ipairs(nodes) do if n.role ~= "controlplane" then ordered[#ordered + 1] = n end end
  ctx:each("vm", ordered, function(n)
    if ctx.plan and moving[n.name] then return end -- the replace line says it all
    local pve = ctx:pve(n.host)
    local spec = vm_spec(ctx, n)
    spec.extra = o.extra and o.extra(n) or nil
    local res = engine_check("vm " .. n.name, vm.ensure(pve, spec, { dry_run = ctx.plan }))
    if res.action == "create" then
      local extra = {}
      for k, v in pairs(spec.extra or {}) do extra[#extra + 1] = ", " .. k .. "=" .. tostring(v) end
      table.sort(extra)
      ctx:change("create", string.format("vm %s (%s, %d cores, %d MiB, %d GiB%s)", n.name, n.host,
        n.cores, n.memory, n.disk, table.concat(extra)))
    end
    local inv = ctx.inv.nodes[n.name] or {} -- recorded below once there is a VM to record
    -- a change that waits for a cold start, on a node of a running cluster: one node at a time later
    local rolling = res.restart and inv.config_hash and ctx.inv.bootstrapped
    if res.action == "update" then
      ctx:change("update", "vm " .. n.name .. (res.restart and " (cold restart" .. (rolling and
        ", one node at a time with health gates)" or ")") or ""), res.changes)
    end
    if rolling then ctx.restarts[#ctx.restarts + 1] = n end
    if ctx.plan then return end
    if res.action == "create" then
      -- a new VM is a new machine: whatever the inventory says about the old one is void.
      -- The cluster is new only when no other control plane holds etcd: otherwise the
      -- node joins it (a second Bootstrap would start a second etcd).
      inv.config_hash, inv.ip, inv.cordoned = nil, nil, nil
      local others = false
      for name, other in pairs(ctx.inv.nodes) do
        others = others or (name ~= n.name and other.role == "controlplane" and other.config_hash ~= nil)
      end
      if not others then ctx.inv.bootstrapped, ctx.inv.apps_digest = nil, nil end
    end
    inv.vmid, inv.host, inv.mac, inv.role = res.vmid, n.host, n.mac, n.role
    ctx.inv.nodes[n.name] = inv
    if res.action == "create" then ctx:save() end -- the machine is recorded before anything else can fail
    if res.restart and not rolling then
      engine_check("vm " .. n.name, vm.shutdown(pve, n.host, res.vmid, 120))
    end
    local st = engine_check("vm " .. n.name, vm.start(pve, n.host, res.vmid))
    if st.changed and res.action ~= "create" then ctx:change("update", "vm " .. n.name .. " power", { { "status", "stopped", "running" } }) end
    if n.dhcp then
      inv.ip = M.learn_ip(ctx, n, pve, res.vmid)
    else
      inv.ip = n.ip
    end
    if o.then_each then o.then_each(n) end
  end)
  ctx:save()
end

--- A DHCP node's address from the guest agent (a control plane holding the
--- VIP reports that too: it is not the node's own).
function M.learn_ip(ctx, n, pve, vmid)
  local ips = engine_check("vm " .. n.name .. " address", vm.wait_ip(pve, n.host, vmid, { timeout = 600 }))
  local vip = ctx.site.network.vip
  for _, family in ipairs { ips.ipv4 or {}, ips.ipv6 or {} } do
    for _, a in ipairs(family) do if a ~= vip then return a end end
  end
  return nil
end

--- The address of a node: the site's, or what the inventory learnt.
function M.ip(ctx, n)
  return n.ip or (ctx.inv.nodes[n.name] or {}).ip
end

-- ========== DNS ==========

function M.zone(ctx)
  local d = ctx.site.dns
  if not d then return nil end
  local dns = require "tlr.dns"
  if d.provider == "rfc2136" then
    return dns.rfc2136 { server = d.server, port = d.port, zone = d.zone, key_name = d.key_name,
      key_algorithm = d.key_algorithm, key_secret = d.key_secret, transport = d.transport }
  end
  return dns.cloudflare { token = d.token, zone = d.zone, zone_id = d.zone_id, api = d.api, ca_file = d.ca_file }
end

function M.dns_sets(ctx)
  local s, d = ctx.site, ctx.site.dns
  local sets = {}
  local family = function(ip) return ip:find(":", 1, true) and "AAAA" or "A" end
  if d.node_records then
    for _, n in ipairs(s.nodes) do
      local ip = M.ip(ctx, n)
      if ip then sets[#sets + 1] = { name = n.name, type = family(ip), ttl = d.ttl, values = { ip } } end
    end
  end
  if d.api_name then
    local vals = {}
    if s.network.vip then vals = { s.network.vip } else
      for _, n in ipairs(ctx:nodes("controlplane")) do vals[#vals + 1] = M.ip(ctx, n) end
    end
    if #vals > 0 then sets[#sets + 1] = { name = d.api_name, type = family(vals[1]), ttl = d.ttl, values = vals } end
  end
  return sets
end

--- All records in one update.
function M.dns(ctx)
  local zone = M.zone(ctx)
  if not zone then return end
  local sets = M.dns_sets(ctx)
  local res = engine_check("dns", zone:ensure(sets, { dry_run = ctx.plan }))
  for _, r in ipairs(res.sets or {}) do
    if r.changed then
      local had = r.remove and #r.remove > 0
      if had then
        ctx:change("update", "dns " .. r.name .. " " .. r.type, { { "values",
          table.concat(r.remove, ","), table.concat(r.add or {}, ",") } })
      else
        ctx:change("create", string.format("dns %s %s %s", r.name, r.type, table.concat(r.add or {}, ",")))
      end
    end
  end
  -- records tlr made that the site no longer wants (a retiring node's goes with the node)
  local wanted, retiring, stale = {}, {}, {}
  for _, set in ipairs(sets) do wanted[set.name .. " " .. set.type] = true end
  for _, r in ipairs(ctx.retiring or {}) do if not r.replace then retiring[r.name] = true end end
  for _, set in ipairs(ctx.inv.dns or {}) do
    if not wanted[set.name .. " " .. set.type] and not retiring[set.name] then stale[#stale + 1] = set end
  end
  if #stale > 0 then
    local del = engine_check("dns", zone:delete(stale, { dry_run = ctx.plan }))
    for _, r in ipairs(del.sets or {}) do
      if r.changed then ctx:change("delete", "dns " .. r.name .. " " .. r.type) end
    end
  end
  if not ctx.plan then
    local keep = {}
    for _, set in ipairs(ctx.inv.dns or {}) do
      if retiring[set.name] and not wanted[set.name .. " " .. set.type] then keep[#keep + 1] = set end
    end
    for _, set in ipairs(sets) do keep[#keep + 1] = { name = set.name, type = set.type } end
    ctx.inv.dns = keep
    ctx:save()
  end
end

-- ========== destroy ==========

--- Takes down `nodes` (default: all): Talos reset (best effort, not
--- graceful: the cluster goes too), VMs stopped and purged, DNS records
--- removed; the inventory forgets them.  Secrets stay.
function M.teardown(ctx, nodes)
  local all = nodes == nil
  nodes = nodes or ctx.site.nodes
  if all then -- and what the inventory still has that the site dropped
    local listed = {}
    for _, n in ipairs(nodes) do listed[n.name] = true end
    local extra = {}
    for name, inv in pairs(ctx.inv.nodes) do
      if not listed[name] then extra[#extra + 1] = { name = name, role = inv.role, host = inv.host } end
    end
    if #extra > 0 then
      local copy = {}
      for _, n in ipairs(nodes) do copy[#copy + 1] = n end
      for _, n in ipairs(extra) do copy[#copy + 1] = n end
      nodes = copy
    end
  end
  local zone = M.zone(ctx)
  if zone then
    -- the sets tlr made (the inventory's list), and the ones the site implies
    local sets, seen = {}, {}
    local function add(name, type_)
      if not seen[name .. " " .. type_] then seen[name .. " " .. type_] = true; sets[#sets + 1] = { name = name, type = type_ } end
    end
    local mine = {}
    for _, n in ipairs(nodes) do mine[n.name] = true end
    for _, set in ipairs(ctx.inv.dns or {}) do
      if all or mine[set.name] then add(set.name, set.type) end
    end
    for _, n in ipairs(nodes) do
      if ctx.site.dns.node_records then add(n.name, "A") end
    end
    if all and ctx.site.dns.api_name then add(ctx.site.dns.api_name, "A") end
    local res = engine_check("dns", zone:delete(sets, { dry_run = ctx.plan }))
    for _, r in ipairs(res.sets or {}) do
      if r.changed then ctx:change("delete", "dns " .. r.name .. " " .. r.type) end
    end
  end
  ctx:each("delete vm", nodes, function(n)
    local inv = ctx.inv.nodes[n.name] or {}
    local found, pve = require("tlr.engine.lifecycle").find_vm(ctx,
      { name = n.name, host = n.host or inv.host, vmid = inv.vmid or n.vmid })
    if found then
      ctx:change("delete", string.format("vm %s (%d on %s)", n.name, found.vmid, found.node))
      if not ctx.plan then
        if inv.config_hash and found.status == "running" and ctx.state:read("talosconfig") then
          -- workers drain themselves (graceful); control planes go at once, etcd with them.
          -- The node wipes its keys and powers off; the VM goes after that, or after 2 minutes.
          local c = require("tlr.talos.client").connect(M.ip(ctx, n), { talosconfig = ctx.state:read("talosconfig"),
            timeout = 15 })
          if c and c:reset { graceful = n.role ~= "controlplane", reboot = false } then
            vm.wait_stopped(pve, found.node, found.vmid, 120)
          end
        end
        engine_check("vm " .. n.name, vm.delete(pve, found.node, found.vmid))
      end
    end
    if not ctx.plan then ctx.inv.nodes[n.name] = nil end
  end)
  if all and not ctx.plan then
    ctx.inv.bootstrapped, ctx.inv.apps_digest, ctx.inv.dns = nil, nil, nil
    for _, f in ipairs { "kubeconfig", "talosconfig" } do os.remove(ctx.state:path(f)) end
    if ctx.args.purge_state then os.remove(ctx.state:path("secrets")) end
  end
  ctx:save()
end

return M
