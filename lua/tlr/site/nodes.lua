--- The site's network and nodes: sizes from the role defaults, hosts and
--- storages, addresses in one subnet, MACs, vmids, uniqueness, the
--- gateway and VIP, control-plane counts, DHCP and the guest agent, and the
--- cluster endpoint.
local yaml = require "tlr.yaml"
local net = require "tlr.site.net"
local F = require "tlr.site.fields"
local S = require "tlr.site.schema"

local M = {}
local array = yaml.array
local join, hint = S.join, S.hint

local DEFAULT_SIZE = {
  controlplane = { cores = 2, memory = 4096, disk = 32 },
  worker = { cores = 2, memory = 4096, disk = 64 },
}
local GUEST_AGENT = "siderolabs/qemu-guest-agent"

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- "nodes[2] (cp2)": how messages name a node.
local function who(node) return string.format("nodes[%d] (%s)", node.index, node.name or "?") end
M.who = who

-- ========== network and nodes ==========

--- The network section: defaults and the subnet of network.cidr (if given).
function M.network(ctx, site, t)
  local n = {
    nameservers = t.nameservers or array(), search_domains = t.search_domains or array(),
    bridge = t.bridge or "vmbr0", vlan = t.vlan, mtu = t.mtu, gateway = t.gateway, vip = t.vip,
  }
  local subnet
  if t.cidr then
    local addr, prefix = net.parse_cidr(t.cidr)
    subnet = net.subnet(addr, prefix)
    if subnet.bytes ~= addr.bytes then
      ctx:err("network.cidr", "'%s' has host bits set (did you mean %s?)", t.cidr, net.format_subnet(subnet))
    end
    subnet.from = "network.cidr"
  end
  n.gateway = t.gateway and net.format(net.parse(t.gateway))
  n.vip = t.vip and net.format(net.parse(t.vip))
  for i, s in ipairs(n.nameservers) do n.nameservers[i] = net.format(net.parse(s)) end
  site.network = n
  return subnet
end

local function parse_mac(s)
  local parts = {}
  for p in (s .. ":"):gsub("-", ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  if #parts ~= 6 then return nil end
  for i, p in ipairs(parts) do
    if not p:match("^%x%x$") then return nil end
    parts[i] = p:upper()
  end
  return table.concat(parts, ":")
end

-- One node: sizes from the role defaults, the host and storage, address, MAC, vmid.
local function read_node(ctx, site, t, i, defaults, hosts, host_names)
  local path = join("nodes", i)
  local role = t.role
  local d = role and defaults[role] or {}
  local node = {
    index = i, name = t.name, role = role, host = t.host, vmid = t.vmid,
    cores = t.cores or d.cores, memory = t.memory or d.memory, disk = t.disk or d.disk,
    labels = t.labels or {}, tags = t.tags or array(), patches = t.patches or array(),
    install_disk = t.install_disk or (site.talos and site.talos.install_disk),
  }
  for _, key in ipairs(sorted_keys(node.labels)) do
    local why = F.label_key(key)
    local v = node.labels[key]
    if why then ctx:err(join(join(path, "labels"), key), "%s", why) end
    if #v > 63 or not (v == "" or v:match("^[%w]$") or v:match("^[%w][%w._-]*[%w]$")) then
      ctx:err(join(join(path, "labels"), key), "'%s' is not a valid label value", v)
    end
  end
  if node.host == nil and #host_names == 1 then node.host = host_names[1] end
  local host = node.host and hosts[node.host]
  if node.host == nil then
    if #host_names > 1 then
      ctx:err(join(path, "host"), "required (the site has %d Proxmox hosts: %s)", #host_names,
        table.concat(host_names, ", "))
    end
  elseif not host and #host_names > 0 then
    ctx:err(join(path, "host"), "'%s' is not one of the Proxmox hosts (%s)%s", node.host,
      table.concat(host_names, ", "), hint(node.host, host_names))
  end
  node.storage = t.storage or (host and host.disk_storage)
  if host and t.storage then
    local ok = false
    for _, s in ipairs(host.storages) do if s == t.storage then ok = true end end
    if not ok then
      ctx:err(join(path, "storage"), "'%s' is not one of %s's storages (%s)%s", t.storage, node.host,
        table.concat(host.storages, ", "), hint(t.storage, host.storages))
    end
  end
  node.bridge = host and host.bridge or site.network.bridge
  if host then host.nodes[#host.nodes + 1] = node.name end
  if t.ip == "dhcp" then
    node.dhcp = true
  elseif t.ip then
    node.dhcp = false
    local addr, prefix = net.parse_cidr(t.ip)
    if not addr then addr, prefix = net.parse(t.ip), nil end
    if not addr then
      ctx:err(join(path, "ip"), "'%s' is not an address, address/prefix or \"dhcp\"%s", t.ip,
        hint(t.ip, { "dhcp" }))
    else
      node.addr, node.prefix = addr, prefix
    end
  end
  if t.mac then
    local mac = parse_mac(t.mac)
    if not mac then
      ctx:err(join(path, "mac"), "'%s' is not a MAC address (like BC:24:11:00:00:01)", t.mac)
    elseif tonumber(mac:sub(1, 2), 16) & 1 == 1 then
      ctx:err(join(path, "mac"), "%s is a multicast address", mac)
    end
    node.mac = mac
  elseif site.name and node.name then
    node.mac = require("tlr.proxmox.vm").mac_for(site.name .. "/" .. node.name)
    node.mac_derived = true
  end
  local base = site.proxmox and site.proxmox.vmid_base
  if node.vmid == nil and base and not ctx.invalid[join(path, "vmid")] then
    node.vmid, node.vmid_derived = base + i - 1, true
    if node.vmid > 999999999 then
      ctx:err(join(path, "vmid"), "%d (from proxmox.vmid_base) is out of range (100..999999999)", node.vmid)
    end
  end
  return node
end

-- Names, vmids and MACs must be unique.
local function check_unique(ctx, nodes)
  local names, vmids, macs = {}, {}, {}
  for _, n in ipairs(nodes) do
    local path = join("nodes", n.index)
    if n.name then
      if names[n.name] then
        ctx:err(join(path, "name"), "'%s' is also the name of nodes[%d]", n.name, names[n.name].index)
      else
        names[n.name] = n
      end
    end
    if n.vmid then
      local other = vmids[n.vmid]
      if other then
        ctx:err(join(path, "vmid"), "%d%s is also the vmid of %s", n.vmid,
          n.vmid_derived and " (from proxmox.vmid_base)" or "", who(other))
      else
        vmids[n.vmid] = n
      end
    end
    if n.mac then
      local other = macs[n.mac]
      -- (the same name gives the same derived MAC: the name error says it all)
      if other and n.mac_derived and other.name ~= n.name then
        ctx:err(join(path, "mac"), "the derived MAC %s is also the MAC of %s: set mac", n.mac, who(other))
      elseif other and not n.mac_derived then
        ctx:err(join(path, "mac"), "%s is also the MAC of %s", n.mac, who(other))
      elseif not other then
        macs[n.mac] = n
      end
    end
  end
end

-- Static addresses: one subnet for all, inside network.cidr, unique, not
-- the network or broadcast address.  Returns the nodes' subnet.
local function check_addresses(ctx, nodes, subnet)
  local ips, noprefix = {}, false
  for _, n in ipairs(nodes) do
    local path = join(join("nodes", n.index), "ip")
    local a = n.addr
    if a then
      local text = net.format(a)
      if subnet and a.family ~= subnet.family then
        ctx:err(path, "%s is IPv%d but %s is IPv%d", text, a.family,
          subnet.from == "network.cidr" and "network.cidr" or "the other nodes' subnet", subnet.family)
      elseif not subnet and not n.prefix then
        if not noprefix then -- once: the others have the same cause
          ctx:err(path, "no prefix length: write %s/24 (or the right length), or set network.cidr", text)
          noprefix = true
        end
      elseif not subnet then
        subnet = net.subnet(a, n.prefix)
        subnet.from = who(n)
      elseif n.prefix and n.prefix ~= subnet.prefix and subnet.from == "network.cidr" then
        ctx:err(path, "prefix /%d differs from network.cidr (/%d)", n.prefix, subnet.prefix)
      elseif not net.contains(subnet, a) or (n.prefix and n.prefix ~= subnet.prefix) then
        if subnet.from == "network.cidr" then
          ctx:err(path, "%s is outside network.cidr %s", text, net.format_subnet(subnet))
        else
          ctx:err(path, "%s is outside %s, the subnet of %s (all nodes share one subnet)",
            n.prefix and (text .. "/" .. n.prefix) or text, net.format_subnet(subnet), subnet.from)
        end
      end
      if subnet and net.contains(subnet, a) and net.reserved(subnet, a) then
        ctx:err(path, "%s is the %s address of %s", text,
          a.bytes == subnet.bytes and "network" or "broadcast", net.format_subnet(subnet))
      end
      n.prefix = n.prefix or (subnet and subnet.prefix)
      if ips[a.bytes] then
        ctx:err(path, "%s is also the address of %s", text, who(ips[a.bytes]))
      else
        ips[a.bytes] = n
      end
    end
  end
  return subnet, ips
end

-- An address that must sit in the nodes' subnet and not on a node.
local function check_in_subnet(ctx, path, a, subnet, ips)
  local text = net.format(a)
  if subnet and a.family ~= subnet.family then
    ctx:err(path, "%s is IPv%d but the nodes' subnet %s is IPv%d", text, a.family,
      net.format_subnet(subnet), subnet.family)
  elseif subnet and not net.contains(subnet, a) then
    ctx:err(path, "%s is outside the nodes' subnet %s", text, net.format_subnet(subnet))
  elseif subnet and net.reserved(subnet, a) then
    ctx:err(path, "%s is the %s address of %s", text, a.bytes == subnet.bytes and "network" or "broadcast",
      net.format_subnet(subnet))
  end
  if ips[a.bytes] then ctx:err(path, "%s is the address of %s", text, who(ips[a.bytes])) end
end

local function check_network(ctx, site, nodes, subnet, ips, raw_net)
  local gw = raw_net.gateway and net.parse(raw_net.gateway)
  local vip = raw_net.vip and net.parse(raw_net.vip)
  local any_static, cp_dhcp = false, false
  for _, n in ipairs(nodes) do
    if n.dhcp == false then any_static = true end
    if n.dhcp and n.role == "controlplane" then cp_dhcp = true end
  end
  if gw then
    check_in_subnet(ctx, "network.gateway", gw, subnet, ips)
  elseif any_static then
    ctx:warn("network.gateway", "not set: nodes with static addresses get no default route")
  end
  if vip then
    if not subnet and cp_dhcp then
      ctx:err("network.vip", "set network.cidr too: the control planes use DHCP, and the VIP must be "
        .. "in their subnet")
    end
    check_in_subnet(ctx, "network.vip", vip, subnet, ips)
    if gw and gw.bytes == vip.bytes then ctx:err("network.vip", "%s is the gateway", net.format(vip)) end
  end
  for _, key in ipairs { "pod_subnets", "service_subnets" } do
    for i, c in ipairs(site.kubernetes[key]) do
      local a, p = net.parse_cidr(c)
      if a and subnet and net.overlaps(net.subnet(a, p), subnet) then
        ctx:err(join(join("kubernetes", key), i), "%s overlaps the nodes' subnet %s", c,
          net.format_subnet(subnet))
      end
    end
  end
  if subnet then
    site.network.cidr = net.format_subnet(subnet)
    site.network.prefix = subnet.prefix
  end
  return gw, vip
end

local function check_roles(ctx, site, nodes, host_names)
  local cps, workers, cp_hosts = array(), array(), {}
  for _, n in ipairs(nodes) do
    if n.role == "controlplane" then
      cps[#cps + 1] = n.name
      if n.host then cp_hosts[n.host] = true end
      local path = join("nodes", n.index)
      if n.cores and n.cores < 2 then
        ctx:warn(join(path, "cores"), "%d core is below Talos's control-plane minimum of 2", n.cores)
      end
      if n.memory and n.memory < 2048 then
        ctx:warn(join(path, "memory"), "%d MiB is below Talos's control-plane minimum of 2048 MiB", n.memory)
      end
    elseif n.role == "worker" then
      workers[#workers + 1] = n.name
    end
  end
  if #cps == 0 and #nodes > 0 then
    ctx:err("nodes", "no controlplane node (at least one is required)")
  elseif #nodes == 0 then
    ctx:err("nodes", "no nodes (at least one controlplane node is required)")
  elseif #cps == 1 then
    ctx:warn("nodes", "one control plane: no high availability (3 tolerate the loss of one)")
  elseif #cps % 2 == 0 then
    ctx:warn("nodes", "%d control planes: an even number tolerates no more failures than %d "
      .. "(etcd needs a majority); use %d or %d", #cps, #cps - 1, #cps - 1, #cps + 1)
  end
  local only = next(cp_hosts)
  if #cps > 1 and #host_names > 1 and only and next(cp_hosts, only) == nil then
    ctx:warn("nodes", "all %d control planes are on %s: losing that host stops the cluster", #cps, only)
  end
  site.controlplanes, site.workers, site.bootstrap = cps, workers, cps[1]
  if site.kubernetes.allow_scheduling_on_control_planes == nil then
    site.kubernetes.allow_scheduling_on_control_planes = #workers == 0
  end
end

local function check_dhcp(ctx, site, nodes)
  local dhcp = {}
  for _, n in ipairs(nodes) do
    if n.dhcp then dhcp[#dhcp + 1] = who(n) end
  end
  if #dhcp == 0 or not site.talos then return end
  for _, e in ipairs(site.talos.extensions) do
    if e == GUEST_AGENT then return end
  end
  ctx:err("talos.extensions", "%s %s DHCP: add %s, tlr reads their addresses from the guest agent",
    table.concat(dhcp, ", "), #dhcp == 1 and "uses" or "use", GUEST_AGENT)
end

--- The nodes and every check across them; returns the nodes' subnet, the
--- static addresses (bytes -> node), the gateway and the VIP (parsed).
function M.nodes(ctx, site, t, subnet, host_names)
  local defaults = {}
  for role, d in pairs(DEFAULT_SIZE) do
    local given = t.defaults and t.defaults[role] or {}
    defaults[role] = { cores = given.cores or d.cores, memory = given.memory or d.memory,
      disk = given.disk or d.disk }
  end
  local hosts = site.proxmox and site.proxmox.hosts or {}
  local nodes = array()
  for i, raw in ipairs(t.nodes or {}) do
    if raw then nodes[#nodes + 1] = read_node(ctx, site, raw, i, defaults, hosts, host_names) end
  end
  check_unique(ctx, nodes)
  local ips
  subnet, ips = check_addresses(ctx, nodes, subnet)
  local gw, vip = check_network(ctx, site, nodes, subnet, ips, t.network or {})
  check_roles(ctx, site, nodes, host_names)
  check_dhcp(ctx, site, nodes)
  for _, n in ipairs(nodes) do
    if n.addr then
      n.ip = net.format(n.addr)
      n.cidr = n.prefix and (n.ip .. "/" .. n.prefix)
    end
    n.addr = nil
  end
  site.nodes = nodes
  return subnet, ips, gw, vip
end

-- ========== the cluster endpoint ==========

--- The cluster endpoint: the one given, https://VIP:6443, or the first
--- control plane's address.
function M.endpoint(ctx, site, t)
  if t.endpoint then
    site.endpoint = t.endpoint:gsub("/+$", "")
    return
  end
  local host = site.network.vip
  if not host then
    local first = site.nodes[1] and site.bootstrap
    for _, n in ipairs(site.nodes) do
      if n.name == first then host = n.ip end
    end
  end
  if host then
    site.endpoint = string.format("https://%s:6443", host:find(":", 1, true) and ("[" .. host .. "]") or host)
  elseif site.bootstrap then
    ctx:warn("network.vip", "the cluster endpoint will be the DHCP address of %s; set network.vip "
      .. "(or endpoint) so it does not change with the lease", site.bootstrap)
  end
end

return M
