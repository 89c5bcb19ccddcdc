--- The site file's meaning, section by section: defaults, derived values
--- (schematic id, MACs, vmids, address/prefix split, the cluster endpoint,
--- per-host node lists) and the checks that span fields.  This part does
--- Talos, Kubernetes and Proxmox and puts the sections together;
--- tlr.site.nodes does the network and the nodes, tlr.site.services DNS
--- and the apps.  Works on what tlr.site.schema read; every problem goes to
--- the context.
local fs = require "tlr.fs"
local yaml = require "tlr.yaml"
local F = require "tlr.site.fields"
local S = require "tlr.site.schema"
local nodes = require "tlr.site.nodes"
local services = require "tlr.site.services"

local M = {}
local array = yaml.array
local join, hint = S.join, S.hint

local function copy_list(t)
  local out = array()
  for i, v in ipairs(t or {}) do out[i] = v end
  return out
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function url_host(url) return url:match("^%a[%w+.-]*://([^/?#]+)") end

-- ========== talos and kubernetes ==========

local function talos_section(ctx, site, t)
  local config = require "tlr.talos.config"
  local factory = require "tlr.talos.factory"
  local con
  if t.version then
    local msg
    con, msg = config.contract(t.version)
    if not con then ctx:err("talos.version", "%s", msg) end
  end
  local ext, seen = array(), {}
  for i, e in ipairs(t.extensions or {}) do
    local full = e:find("/", 1, true) and e or ("siderolabs/" .. e)
    if seen[full] then
      ctx:err(join("talos.extensions", i), "'%s' is listed twice", full)
    else
      seen[full] = true
      ext[#ext + 1] = full
    end
  end
  local tl = {
    version = con and con.version or t.version,
    extensions = ext,
    kernel_args = copy_list(t.kernel_args),
    factory = (t.factory or factory.DEFAULT_URL):gsub("/+$", ""),
    platform = t.platform or "nocloud",
    arch = t.arch or "amd64",
    install_disk = t.install_disk or "/dev/sda",
    patches = t.patches or array(),
    controlplane_patches = t.controlplane_patches or array(),
    worker_patches = t.worker_patches or array(),
  }
  tl.schematic_id = factory.id { extensions = ext, extra_kernel_args = tl.kernel_args }
  if con then
    tl.installer_image = config.installer_image(tl.schematic_id, con.version,
      { platform = tl.platform, host = url_host(tl.factory) })
  end
  site.talos = tl
  return con
end

local function kubernetes_section(ctx, site, t, con)
  local k = {
    version = t.version and t.version:gsub("^v", "") or (con and con.kubernetes),
    pod_subnets = t.pod_subnets or array { "10.244.0.0/16" },
    service_subnets = t.service_subnets or array { "10.96.0.0/12" },
    dns_domain = t.dns_domain or "cluster.local",
    kube_proxy = t.kube_proxy ~= false,
    allow_scheduling_on_control_planes = t.allow_scheduling_on_control_planes,
  }
  if t.version and con then
    local want, max = tonumber(k.version:match("^1%.(%d+)")), tonumber(con.kubernetes:match("^1%.(%d+)"))
    if want > max then
      ctx:warn("kubernetes.version", "Kubernetes %s is newer than Talos %s supports (up to %s)",
        k.version, con.version, con.kubernetes)
    end
  end
  local cni = t.cni
  if cni == nil or cni == "flannel" or cni == "none" then
    k.cni = cni or "flannel"
  elseif type(cni) == "string" then
    ctx:err("kubernetes.cni", "'%s' is not one of flannel, none%s (or {urls = {...}} for your own)",
      cni, hint(cni, { "flannel", "none" }))
  else
    local c = ctx:record(cni, "kubernetes.cni", {
      { "urls", kind = "list", required = true,
        of = { kind = "string", check = F.url { "https", "http" } } } })
    if c and c.urls then k.cni = { name = "custom", urls = c.urls } end
  end
  site.kubernetes = k
end

-- ========== proxmox ==========

local CONN_KEYS = { "endpoint", "token", "user", "password", "fingerprint", "ca", "ca_file", "insecure" }
local CONN_GROUPS = { { "endpoint" }, { "token", "user", "password" },
  { "fingerprint", "ca", "ca_file", "insecure" } }

-- Checks one host's connection (the proxmox level with the host's own
-- fields over it); a problem is reported where the field came from.
local function check_connection(ctx, c, from)
  local function at(key) return from[key] or join("proxmox", key) end
  local given = {}
  for _, k in ipairs(CONN_KEYS) do given[k] = c[k] ~= nil or ctx.invalid[at(k)] end
  if not given.endpoint then
    ctx:err(at("endpoint"), "required (give proxmox.endpoint, or an endpoint for every host)")
  end
  if given.token and (given.user or given.password) then
    ctx:err(at(given.password and "password" or "user"), "give token, or user and password, not both")
  elseif not given.token and not given.user and not given.password then
    ctx:err(at("token"), "credentials missing: give token (e.g. env:PVE_TOKEN), or user and password")
  elseif not given.token and not given.password then
    ctx:err(at("password"), "required with user")
  elseif not given.token and not given.user then
    ctx:err(at("user"), "required with password")
  end
  if c.token and not c.token:match("^[^!@%s]+@[^!%s]+![^=%s]+=.+$") then
    ctx:err(at("token"), "must look like user@realm!tokenid=secret")
  end
  if c.user and not c.user:match("^[^@%s]+@[%w._-]+$") then
    ctx:err(at("user"), "'%s' must look like user@realm (e.g. root@pam)", c.user)
  end
  local tls = {}
  for _, k in ipairs { "fingerprint", "ca", "ca_file", "insecure" } do
    if c[k] then tls[#tls + 1] = k end
  end
  if #tls > 1 then
    ctx:err(at(tls[2]), "give only one of fingerprint, ca, ca_file and insecure (%s is set too)", tls[1])
  elseif #tls == 0 then
    ctx:warn(at("fingerprint"), "no fingerprint, ca, ca_file or insecure: the certificate must be "
      .. "trusted by the system CAs (Proxmox's own self-signed one is not)")
  end
end

local function hosts_section(ctx, p, raw_hosts)
  local hosts, names = {}, {}
  local list = {}
  if type(raw_hosts) == "table" and next(raw_hosts) ~= nil and S.is_list(raw_hosts) then
    for i, h in ipairs(raw_hosts) do
      if type(h) ~= "string" then
        ctx:err(join("proxmox.hosts", i), "host name expected, got %s", S.typename(h))
      elseif list[h] then
        ctx:err(join("proxmox.hosts", i), "'%s' is listed twice", h)
      else
        list[h] = {}
      end
    end
  elseif type(raw_hosts) == "table" and next(raw_hosts) ~= nil then
    -- `pve1: ~` in YAML (or `pve1 = true`) takes every default
    for k, v in pairs(raw_hosts) do list[k] = (v == yaml.null or v == true) and {} or v end
  elseif type(raw_hosts) == "table" then
    ctx:err("proxmox.hosts", "no hosts given")
    return hosts, names
  elseif raw_hosts ~= nil then
    ctx:err("proxmox.hosts", "a map of host name to settings, or a list of host names, expected")
    return hosts, names
  end
  for _, name in ipairs(sorted_keys(list)) do
    local path = join("proxmox.hosts", name)
    local why = type(name) == "string" and F.pve_node(name)
    if why then ctx:err(path, "%s", why) end
    local h = ctx:record(list[name], path, F.HOST)
    if h and not why then
      local storages = h.storages or array { "local", "local-lvm" }
      local have = {}
      for i, s in ipairs(storages) do
        if have[s] then ctx:err(join(join(path, "storages"), i), "'%s' is listed twice", s) end
        have[s] = true
      end
      local function pick(key, preferred, fallback)
        local v = h[key]
        if v == nil then return have[preferred] and preferred or fallback end
        if not have[v] then
          ctx:err(join(path, key), "'%s' is not one of this host's storages (%s)%s", v,
            table.concat(storages, ", "), hint(v, storages))
        end
        return v
      end
      local host = { name = name, storages = storages, bridge = h.bridge, nodes = array() }
      host.disk_storage = pick("disk_storage", "local-lvm", storages[1])
      host.image_storage = pick("image_storage", "local", host.disk_storage)
      -- the endpoint, the credentials and the TLS settings each come whole
      -- from the host when it gives any of them, else from proxmox
      local c, from = {}, {}
      for _, group in ipairs(CONN_GROUPS) do
        local own = false
        for _, k in ipairs(group) do
          if h[k] ~= nil or ctx.invalid[join(path, k)] then own = true end
        end
        for _, k in ipairs(group) do
          if own then c[k], from[k] = h[k], join(path, k) else c[k] = p[k] end
        end
      end
      if from.endpoint and not from.fingerprint and c.fingerprint then
        ctx:warn(path, "has its own endpoint but proxmox.fingerprint, which pins one certificate")
      end
      if c.endpoint then c.endpoint = c.endpoint:gsub("/+$", "") end
      check_connection(ctx, c, from)
      host.connect = c
      hosts[name] = host
      names[#names + 1] = name
    end
  end
  return hosts, names
end

local function proxmox_section(ctx, site, p)
  local hosts, names = hosts_section(ctx, p, p.hosts)
  local endpoints, by_key = array(), {}
  for _, name in ipairs(names) do
    local c = hosts[name].connect
    local key = {}
    for _, k in ipairs(CONN_KEYS) do key[#key + 1] = tostring(c[k]) end
    key = table.concat(key, "\0")
    local e = by_key[key]
    if not e then
      e = { connect = c, hosts = array() }
      by_key[key] = e
      endpoints[#endpoints + 1] = e
    end
    hosts[name].connect = e.connect -- hosts sharing an endpoint share one table
    e.hosts[#e.hosts + 1] = name
  end
  site.proxmox = { hosts = hosts, endpoints = endpoints, vmid_base = p.vmid_base,
    storage_limit = p.storage_limit or 2 }
  return names
end

-- ========== all of it ==========

--- Builds the normalized site from a raw table; nil when the top level is
--- not a map.  Problems go to ctx.
---@param ctx tlr.site.Ctx
---@param raw table
---@return table|nil site
function M.build(ctx, raw)
  local t = ctx:record(raw, "", F.TOP)
  if not t then return nil end
  local site = { name = t.name }
  local con = t.talos and talos_section(ctx, site, t.talos)
  kubernetes_section(ctx, site, t.kubernetes or {}, con)
  local host_names = {}
  if t.proxmox then host_names = proxmox_section(ctx, site, t.proxmox) end
  local subnet = nodes.network(ctx, site, t.network or {})
  local ips, gw, vip
  subnet, ips, gw, vip = nodes.nodes(ctx, site, t, subnet, host_names)
  nodes.endpoint(ctx, site, t)
  if t.dns then services.dns(ctx, site, t.dns, raw.dns) else site.dns = false end
  services.apps(ctx, site, t.apps or {}, subnet, ips, gw, vip)
  local dir = t.state_dir or (site.name and fs.join(".tlr", site.name))
  if dir and dir:sub(1, 2) == "~/" then
    local home = ctx.env("HOME")
    if home then
      dir = fs.join(home, dir:sub(3))
    else
      ctx:err("state_dir", "'%s' starts with ~/ but HOME is not set", dir)
      dir = nil
    end
  end
  site.state_dir = dir and fs.abs(dir)
  return site
end

return M
