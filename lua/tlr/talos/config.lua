--- tlr.talos.config: Talos machine configuration for Talos 1.8 through 1.13.
---
--- `generate` makes what `talosctl gen config` makes for the same input
--- (the version contract decides the differences); `render` adds what a
--- Proxmox node needs (hostname, addressing, VIP, install disk and image,
--- SANs, labels, CNI, manifests), applies the user's patches and validates
--- the result; `talosconfig` makes the client configuration.  Documents are
--- plain tables: a config is a list of documents, the v1alpha1 one first.
--- Bad input data returns `nil, msg, "EINVAL"`; wrong argument types and
--- unknown keys in the cluster and node tables raise.
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"
local secrets = require "tlr.talos.secrets"
local patch = require "tlr.talos.patch"
local validate = require "tlr.talos.validate"

local M = {}
local array = yaml.array

-- ========== version contract ==========

-- The Kubernetes version talosctl of each Talos minor defaults to.
local KUBERNETES = { [8] = "1.31.4", [9] = "1.32.4", [10] = "1.33.6", [11] = "1.34.1",
  [12] = "1.35.8", [13] = "1.36.3" }

---@class tlr.talos.Contract
---@field major integer
---@field minor integer
---@field version string the version as given, with a leading "v"
---@field kubernetes string default Kubernetes version
---@field legacy_features boolean rbac, stableHostname, apidCheckExtKeyUsage, apiServer
--- certSANs and disablePodSecurityPolicy (up to 1.11)
---@field grub_uki_cmdline boolean install.grubUseUKICmdline (1.12 on)
---@field hostname_doc boolean a HostnameConfig document (1.12 on)
---@field empty_network boolean an empty machine.network (up to 1.12)

--- Parses a Talos version ("v1.11.6", "1.12") into its version contract;
--- only 1.8 through 1.13 are supported.
---@param version string
---@return tlr.talos.Contract? contract, string? msg, string? code
function M.contract(version)
  opts.arg(type(version) == "string", "config.contract", "version string expected")
  local major, minor = version:match("^v?(%d+)%.(%d+)")
  major, minor = tonumber(major), tonumber(minor)
  if not major or not version:match("^v?%d+%.%d+%.?%d*[-+%w.]*$") then
    return nil, "bad Talos version '" .. version .. "'", "EINVAL"
  end
  if major ~= 1 or minor < 8 or minor > 13 then
    return nil, "Talos " .. version .. " is not supported (1.8 through 1.13 are)", "EINVAL"
  end
  return {
    major = major, minor = minor,
    version = version:sub(1, 1) == "v" and version or "v" .. version,
    kubernetes = KUBERNETES[minor],
    legacy_features = minor <= 11,
    grub_uki_cmdline = minor >= 12,
    hostname_doc = minor >= 12,
    empty_network = minor <= 12,
  }
end

-- ========== helpers ==========

local function fail(msg) return nil, msg, "EINVAL" end

local function b64(s) return crypto.base64_encode(s) end

local function copy_list(t)
  local out = array()
  for i, v in ipairs(t or {}) do out[i] = v end
  return out
end

local function add_unique(list, seen, v)
  if v and v ~= "" and not seen[v] then
    seen[v] = true
    list[#list + 1] = v
  end
end

--- The host part of an endpoint URL ("https://[fd00::1]:6443" -> "fd00::1").
---@param endpoint string
---@return string? host
function M.endpoint_host(endpoint)
  local rest = tostring(endpoint):match("^%a[%w+.-]*://([^/?#]+)")
  if not rest then return nil end
  rest = rest:gsub("^.*@", "")
  return rest:match("^%[([^%]]+)%]") or rest:match("^([^:]+)")
end

-- ========== generate (talosctl gen config) ==========

local CNI_NAMES = { flannel = true, none = true, custom = true }

local GEN_KEYS = {
  name = "string", endpoint = "string", secrets = "table", talos_version = "string",
  kubernetes_version = "string", install_disk = "string", install_image = "string",
  install_extra_kernel_args = "table", additional_sans = "table", dns_domain = "string",
  pod_subnets = "table", service_subnets = "table", cni = { "string", "table" },
  local_api_server_port = "integer", allow_scheduling_on_control_planes = "boolean",
  sysctls = "table", registry_mirrors = "table", discovery = "boolean",
}

-- Checks the keys `generate` needs; returns the contract.
local function check_gen(fname, c, role)
  opts.arg(type(c) == "table", fname, "cluster table expected")
  opts.arg(role == "controlplane" or role == "worker", fname,
    "role must be 'controlplane' or 'worker'")
  for _, k in ipairs { "name", "endpoint", "secrets", "talos_version" } do
    opts.arg(c[k] ~= nil, fname, "cluster." .. k .. " is required")
  end
  local con, msg = M.contract(c.talos_version)
  if not con then return fail(msg) end
  if not c.endpoint:match("^https://") or not M.endpoint_host(c.endpoint) then
    return fail("cluster.endpoint must be an https:// URL, got '" .. c.endpoint .. "'")
  end
  local cni = c.cni
  if cni ~= nil then
    local name = type(cni) == "table" and cni.name or cni
    if not CNI_NAMES[name] then
      return fail("cluster.cni must be flannel, none or custom, got '" .. tostring(name) .. "'")
    end
  end
  local ok
  ok, msg = secrets.validate(c.secrets)
  if not ok then return fail("cluster.secrets: " .. msg) end
  return con
end

local function pair(ca, with_key)
  return { crt = b64(ca.crt), key = with_key and b64(ca.key) or "" }
end

local function cni_section(cni)
  if cni == nil then return nil end
  if type(cni) == "string" then return { name = cni } end
  return { name = cni.name, urls = cni.urls and copy_list(cni.urls) or nil }
end

local function machine_section(c, role, con, k8s)
  local b = c.secrets
  local m = {
    type = role,
    token = b.trustdinfo.token,
    ca = pair(b.certs.os, role == "controlplane"),
    certSANs = copy_list(c.additional_sans),
    kubelet = { image = "ghcr.io/siderolabs/kubelet:v" .. k8s,
      defaultRuntimeSeccompProfileEnabled = true, disableManifestsDirectory = true },
    install = { disk = c.install_disk, image = c.install_image, wipe = false,
      extraKernelArgs = c.install_extra_kernel_args and copy_list(c.install_extra_kernel_args) },
    features = { diskQuotaSupport = true, kubePrism = { enabled = true, port = 7445 },
      hostDNS = { enabled = true, forwardKubeDNSToHost = true } },
  }
  if con.empty_network then m.network = {} end
  if con.grub_uki_cmdline then m.install.grubUseUKICmdline = true end
  if con.legacy_features then
    m.features.rbac, m.features.stableHostname, m.features.apidCheckExtKeyUsage = true, true, true
  end
  if c.sysctls and next(c.sysctls) then
    m.sysctls = {}
    for k, v in pairs(c.sysctls) do m.sysctls[k] = tostring(v) end
  end
  if c.registry_mirrors and next(c.registry_mirrors) then
    local mirrors = {}
    for host, eps in pairs(c.registry_mirrors) do mirrors[host] = { endpoints = copy_list(eps) } end
    m.registries = { mirrors = mirrors }
  end
  if role == "controlplane" then
    m.nodeLabels = { ["node.kubernetes.io/exclude-from-external-load-balancers"] = "" }
  end
  return m
end

local function admission_control()
  return array { {
    name = "PodSecurity",
    configuration = {
      apiVersion = "pod-security.admission.config.k8s.io/v1alpha1",
      kind = "PodSecurityConfiguration",
      defaults = { audit = "restricted", ["audit-version"] = "latest", enforce = "baseline",
        ["enforce-version"] = "latest", warn = "restricted", ["warn-version"] = "latest" },
      exemptions = { namespaces = array { "kube-system" }, runtimeClasses = array(),
        usernames = array() },
    },
  } }
end

local function cluster_section(c, role, con, k8s)
  local b = c.secrets
  local cl = {
    id = b.cluster.id,
    secret = b.cluster.secret,
    controlPlane = { endpoint = c.endpoint,
      localAPIServerPort = role == "controlplane" and c.local_api_server_port or nil },
    clusterName = c.name,
    network = { dnsDomain = c.dns_domain or "cluster.local",
      podSubnets = copy_list(c.pod_subnets or { "10.244.0.0/16" }),
      serviceSubnets = copy_list(c.service_subnets or { "10.96.0.0/12" }),
      cni = cni_section(c.cni) },
    token = b.secrets.bootstraptoken,
    ca = pair(b.certs.k8s, role == "controlplane"),
  }
  if c.discovery ~= false then
    cl.discovery = { enabled = true,
      registries = { kubernetes = { disabled = true }, service = {} } }
  end
  if role ~= "controlplane" then return cl end
  cl.secretboxEncryptionSecret = b.secrets.secretboxencryptionsecret
  cl.aescbcEncryptionSecret = b.secrets.aescbcencryptionsecret
  if cl.secretboxEncryptionSecret == "" then cl.secretboxEncryptionSecret = nil end
  if cl.aescbcEncryptionSecret == "" then cl.aescbcEncryptionSecret = nil end
  cl.aggregatorCA = pair(b.certs.k8saggregator, true)
  cl.serviceAccount = { key = b64(b.certs.k8sserviceaccount.key) }
  local sans, seen = array(), {}
  if con.legacy_features then add_unique(sans, seen, M.endpoint_host(c.endpoint)) end
  for _, s in ipairs(c.additional_sans or {}) do add_unique(sans, seen, s) end
  cl.apiServer = {
    image = "registry.k8s.io/kube-apiserver:v" .. k8s,
    certSANs = #sans > 0 and sans or nil,
    disablePodSecurityPolicy = con.legacy_features or nil,
    admissionControl = admission_control(),
    auditPolicy = { apiVersion = "audit.k8s.io/v1", kind = "Policy",
      rules = array { { level = "Metadata" } } },
  }
  cl.controllerManager = { image = "registry.k8s.io/kube-controller-manager:v" .. k8s }
  cl.proxy = { image = "registry.k8s.io/kube-proxy:v" .. k8s }
  cl.scheduler = { image = "registry.k8s.io/kube-scheduler:v" .. k8s }
  cl.etcd = { ca = pair(b.certs.etcd, true) }
  if c.allow_scheduling_on_control_planes then cl.allowSchedulingOnControlPlanes = true end
  return cl
end

--- Generates the config documents `talosctl gen config` would for `role`
--- ("controlplane" or "worker"), with the cluster's secrets bundle.
--- Cluster keys: name, endpoint, secrets, talos_version (required);
--- kubernetes_version, install_disk, install_image,
--- install_extra_kernel_args, additional_sans, dns_domain, pod_subnets,
--- service_subnets, cni ("flannel", "none", or {name="custom", urls=}),
--- local_api_server_port, allow_scheduling_on_control_planes, sysctls,
--- registry_mirrors ({host = {endpoint, ...}}), discovery (default true).
---@param c table
---@param role "controlplane"|"worker"
---@return table[]? docs, string? msg, string? code
function M.generate(c, role)
  opts.check("config.generate", c, GEN_KEYS)
  local con, msg, code = check_gen("config.generate", c, role)
  if not con then return nil, msg, code end
  local k8s = (c.kubernetes_version or con.kubernetes):gsub("^v", "")
  local doc = {
    version = "v1alpha1", debug = false, persist = true,
    machine = machine_section(c, role, con, k8s),
    cluster = cluster_section(c, role, con, k8s),
  }
  local docs = array { doc }
  if con.hostname_doc then
    docs[2] = { apiVersion = "v1alpha1", kind = "HostnameConfig", auto = "stable" }
  end
  return docs
end

-- ========== encoding ==========

-- Key orders (Go struct order) for the machine and cluster sections; each
-- section has its own list because they order shared names differently.
local MACHINE_ORDER = { "type", "token", "ca", "acceptedCAs", "certSANs", "controlPlane",
  "kubelet", "pods", "hostname", "interfaces", "nameservers", "searchDomains",
  "extraHostEntries", "kubespan", "disableSearchDomain", "interface", "deviceSelector",
  "busPath", "hardwareAddr", "permanentAddr", "pciID", "driver", "physical", "addresses",
  "cidr", "destination", "network", "gateway", "source", "metric", "routes", "bond", "bridge",
  "bridgePort", "vlans", "mtu", "dhcp", "vlanId", "ignore", "dummy", "dhcpOptions", "wireguard",
  "vip", "ip", "disks", "install", "disk", "diskSelector", "extraKernelArgs", "image",
  "extensions", "bootloader", "wipe", "legacyBIOSSupport", "grubUseUKICmdline", "clusterDNS",
  "extraArgs", "extraMounts", "options", "extraConfig", "credentialProviderConfig",
  "defaultRuntimeSeccompProfileEnabled", "registerWithFQDN", "nodeIP", "skipNodeRegistration",
  "disableManifestsDirectory", "files", "env", "time", "sysctls", "sysfs", "registries",
  "mirrors", "endpoints", "config", "systemDiskEncryption", "features", "rbac",
  "stableHostname", "kubernetesTalosAPIAccess", "apidCheckExtKeyUsage", "diskQuotaSupport",
  "kubePrism", "hostDNS", "enabled", "port", "forwardKubeDNSToHost", "resolveMemberNames",
  "imageCache", "nodeAddressSortAlgorithm", "udev", "logging", "kernel", "seccompProfiles",
  "baseRuntimeSpecOverrides", "nodeLabels", "nodeAnnotations", "nodeTaints", "crt", "key" }

local CLUSTER_ORDER = { "id", "secret", "controlPlane", "endpoint", "localAPIServerPort",
  "clusterName", "network", "cni", "name", "urls", "dnsDomain", "podSubnets", "serviceSubnets",
  "token", "aescbcEncryptionSecret", "secretboxEncryptionSecret", "ca", "crt", "key",
  "acceptedCAs", "aggregatorCA", "serviceAccount", "apiServer", "image", "extraArgs",
  "extraVolumes", "env", "certSANs", "disablePodSecurityPolicy", "admissionControl",
  "configuration", "auditPolicy", "resources", "controllerManager", "proxy", "disabled", "mode",
  "scheduler", "discovery", "enabled", "registries", "etcd", "coreDNS", "externalCloudProvider",
  "extraManifests", "extraManifestHeaders", "inlineManifests", "contents", "adminKubeconfig",
  "allowSchedulingOnControlPlanes" }

local TOP_ORDER = { "version", "apiVersion", "kind", "name", "debug", "persist" }

local function encode_doc(doc)
  if doc.kind ~= nil or doc.version == nil then
    return yaml.encode(doc, { indent = 4, order = TOP_ORDER })
  end
  local head, rest = {}, {}
  for k, v in pairs(doc) do
    if k == "machine" or k == "cluster" then rest[k] = v else head[k] = v end
  end
  local parts = { assert(yaml.encode(head, { indent = 4, order = TOP_ORDER })) }
  if rest.machine ~= nil then
    local text, msg = yaml.encode({ machine = rest.machine }, { indent = 4, order = MACHINE_ORDER })
    if not text then return nil, msg end
    parts[#parts + 1] = text
  end
  if rest.cluster ~= nil then
    local text, msg = yaml.encode({ cluster = rest.cluster }, { indent = 4, order = CLUSTER_ORDER })
    if not text then return nil, msg end
    parts[#parts + 1] = text
  end
  return table.concat(parts)
end

--- Writes config documents as one multi-document YAML text, 4-space indent,
--- keys in Talos's order.
---@param docs table[]
---@return string? text, string? msg, string? code
function M.encode(docs)
  opts.arg(type(docs) == "table", "config.encode", "list of documents expected")
  local parts = {}
  for i, doc in ipairs(docs) do
    local text, msg = encode_doc(doc)
    if not text then return nil, string.format("document %d: %s", i, msg), "EINVAL" end
    parts[#parts + 1] = text
  end
  return table.concat(parts, "---\n")
end

--- Reads a (multi-document) machine config into a list of documents.
---@param text string
---@return table[]? docs, string? msg, string? code
function M.decode(text)
  opts.arg(type(text) == "string", "config.decode", "YAML text expected")
  local docs, msg = yaml.decode_all(text)
  if not docs then return fail("machine config: " .. msg) end
  local out = array()
  for i, d in ipairs(docs) do
    if d ~= yaml.null then
      if type(d) ~= "table" or yaml.is_array(d) then
        return fail(string.format("document %d is not a mapping", i))
      end
      out[#out + 1] = d
    end
  end
  return out
end

-- ========== installer image ==========

--- The Image Factory installer image for a schematic: from Talos 1.10 the
--- platform form `<host>/<platform>-installer[-secureboot]/<id>:<version>`
--- (platform default "nocloud"); before 1.10, which has no platform
--- installers, `<host>/installer[-secureboot]/<id>:<version>`.
---@param schematic string
---@param talos_version string
---@param o? {platform?: string, secureboot?: boolean, host?: string}
---@return string image
function M.installer_image(schematic, talos_version, o)
  opts.arg(type(schematic) == "string" and schematic:match("^%x+$"), "config.installer_image",
    "schematic id (hex) expected")
  opts.arg(type(talos_version) == "string", "config.installer_image", "Talos version expected")
  o = opts.check("config.installer_image", o,
    { platform = "string", secureboot = "boolean", host = "string" })
  local v = talos_version:sub(1, 1) == "v" and talos_version or "v" .. talos_version
  local minor = tonumber(v:match("^v1%.(%d+)")) or 99
  local name = "installer"
  if minor >= 10 then
    name = (o.platform or "nocloud") .. "-installer"
  end
  if o.secureboot then name = name .. "-secureboot" end
  return string.format("%s/%s/%s:%s", o.host or "factory.talos.dev", name, schematic, v)
end

-- ========== render: a node's final config ==========

---@class tlr.talos.Node
---@field name string hostname
---@field role "controlplane"|"worker"
---@field install_disk? string
---@field install_image? string
---@field network? {mac?: string, interface?: string, addresses?: string[], gateway?: string,
---  routes?: table[], nameservers?: string[], dhcp?: boolean, mtu?: integer}
---@field node_labels? table<string, string>
---@field kubelet_extra_args? table<string, string>
---@field cert_sans? string[]
---@field patches? string|table

---@class tlr.talos.Rendered
---@field docs table[] the final documents
---@field yaml string the multi-document YAML to send
---@field warnings string[]

local NETWORK_KEYS = { mac = "string", interface = "string", addresses = "table",
  gateway = "string", routes = "table", nameservers = "table", dhcp = "boolean",
  mtu = "integer" }

local NODE_KEYS = { name = "string", role = "string", install_disk = "string",
  install_image = "string", network = "table", node_labels = "table",
  kubelet_extra_args = "table", cert_sans = "table", patches = "any" }

local RENDER_KEYS = {
  vip = "string", dns_name = "string", cert_sans = "table", schematic = "string",
  platform = "string", secureboot = "boolean", kube_proxy = "boolean",
  inline_manifests = "table", extra_manifests = "table", node_labels = "table",
  kubelet_extra_args = "table", nameservers = "table", patches = "any",
  controlplane_patches = "any", worker_patches = "any",
}
for k, v in pairs(GEN_KEYS) do RENDER_KEYS[k] = v end

local function merged_map(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = tostring(v) end
  for k, v in pairs(b or {}) do out[k] = tostring(v) end
  return next(out) and out or nil
end

-- The machine.network.interfaces entry for a node (nil: leave DHCP to Talos).
local function interface_entry(role, cluster, net)
  local want_vip = role == "controlplane" and cluster.vip
  if not (net.addresses or net.dhcp or want_vip or net.mtu or net.routes or net.gateway) then
    return nil
  end
  if not net.mac and not net.interface then
    return nil, "network: give mac or interface to configure addresses, routes, mtu or the VIP"
  end
  local e = {}
  if net.mac then
    e.deviceSelector = { hardwareAddr = net.mac:lower() }
  else
    e.interface = net.interface
  end
  if net.addresses then e.addresses = copy_list(net.addresses) end
  local routes = array()
  for _, r in ipairs(net.routes or {}) do
    routes[#routes + 1] = { network = r.network, gateway = r.gateway, metric = r.metric }
  end
  if net.gateway then
    routes[#routes + 1] = { network = net.gateway:find(":", 1, true) and "::/0" or "0.0.0.0/0",
      gateway = net.gateway }
  end
  if #routes > 0 then e.routes = routes end
  if net.dhcp ~= nil then e.dhcp = net.dhcp elseif not net.addresses then e.dhcp = true end
  e.mtu = net.mtu
  if want_vip then e.vip = { ip = cluster.vip } end
  return e
end

--- The strategic-merge patch documents `render` applies to a node's
--- generated config: hostname, addressing (interface by MAC through
--- deviceSelector, or by name; DHCP when no addresses), the VIP on control
--- planes, nameservers, node labels, kubelet extra args, and on control
--- planes the inline/extra manifests and kube-proxy switch.
---@param cluster table as for render
---@param node table as for render
---@return table[]? patch, string? msg, string? code
function M.node_patch(cluster, node)
  local con, msg = M.contract(cluster.talos_version)
  if not con then return fail(msg) end
  local net = node.network or {}
  opts.check("config.render", net, NETWORK_KEYS)
  local role = node.role
  local machine, network = {}, {}
  local docs = array()
  if con.hostname_doc then
    docs[#docs + 1] = { apiVersion = "v1alpha1", kind = "HostnameConfig", hostname = node.name,
      auto = "off" }
  else
    network.hostname = node.name
  end
  local iface
  iface, msg = interface_entry(role, cluster, net)
  if msg then return fail(node.name .. ": " .. msg) end
  if iface then network.interfaces = array { iface } end
  local ns = net.nameservers or cluster.nameservers
  if ns then network.nameservers = copy_list(ns) end
  if next(network) then machine.network = network end
  machine.nodeLabels = merged_map(cluster.node_labels, node.node_labels)
  local args = merged_map(cluster.kubelet_extra_args, node.kubelet_extra_args)
  if args then machine.kubelet = { extraArgs = args } end
  local doc = { machine = machine }
  if role == "controlplane" then
    local cl = {}
    if cluster.inline_manifests and #cluster.inline_manifests > 0 then
      cl.inlineManifests = array()
      for i, m in ipairs(cluster.inline_manifests) do
        opts.arg(type(m) == "table" and type(m.name) == "string" and type(m.contents) == "string",
          "config.render", "inline_manifests[" .. i .. "] must be {name=, contents=}")
        cl.inlineManifests[i] = { name = m.name, contents = m.contents }
      end
    end
    if cluster.extra_manifests and #cluster.extra_manifests > 0 then
      cl.extraManifests = copy_list(cluster.extra_manifests)
    end
    if cluster.kube_proxy == false then cl.proxy = { disabled = true } end
    if next(cl) then doc.cluster = cl end
  end
  table.insert(docs, 1, doc)
  return docs
end

local function patch_list(p)
  if p == nil then return {} end
  if type(p) == "string" then return { p } end
  opts.arg(type(p) == "table", "config.render", "patches must be a string or a list")
  if patch.is_json6902(p) then return { p } end
  if #p == 0 then return { p } end -- one strategic patch given as a table
  return p
end

--- Renders one node's config: `generate` for the node's role with the
--- cluster's settings, SANs (VIP, DNS name, endpoint host, cert_sans) in
--- machine.certSANs and cluster.apiServer.certSANs, the install disk and
--- image (Image Factory installer when `schematic` is set), then
--- `node_patch`, then the user's patches (cluster.patches, the role's
--- patches, node.patches; strategic merge or JSON6902, as tables or YAML),
--- then `validate.config`.  Returns {docs=, yaml=, warnings=}.
---@param cluster table generate's keys plus vip, dns_name, cert_sans, schematic, platform,
--- secureboot, kube_proxy, inline_manifests, extra_manifests, node_labels, kubelet_extra_args,
--- nameservers, patches, controlplane_patches, worker_patches
---@param node tlr.talos.Node
---@return tlr.talos.Rendered? result, string? msg, string? code, string[]? errors
function M.render(cluster, node)
  opts.check("config.render", cluster, RENDER_KEYS)
  opts.check("config.render", node, NODE_KEYS)
  opts.arg(type(node) == "table" and node.name and node.role, "config.render",
    "node.name and node.role are required")
  local con, msg, code = check_gen("config.render", cluster, node.role)
  if not con then return nil, node.name .. ": " .. msg, code end
  local spec = {}
  for k in pairs(GEN_KEYS) do spec[k] = cluster[k] end
  local sans, seen = {}, {}
  for _, s in ipairs(cluster.additional_sans or {}) do add_unique(sans, seen, s) end
  add_unique(sans, seen, cluster.vip)
  add_unique(sans, seen, cluster.dns_name)
  add_unique(sans, seen, M.endpoint_host(cluster.endpoint))
  for _, s in ipairs(cluster.cert_sans or {}) do add_unique(sans, seen, s) end
  for _, s in ipairs(node.cert_sans or {}) do add_unique(sans, seen, s) end
  spec.additional_sans = sans
  spec.install_disk = node.install_disk or cluster.install_disk
  spec.install_image = node.install_image or cluster.install_image
  if not spec.install_image and cluster.schematic then
    spec.install_image = M.installer_image(cluster.schematic, con.version,
      { platform = cluster.platform, secureboot = cluster.secureboot })
  elseif not spec.install_image and con.version:match("^v%d+%.%d+%.%d+") then
    spec.install_image = "ghcr.io/siderolabs/installer:" .. con.version
  end
  local docs
  docs, msg, code = M.generate(spec, node.role)
  if not docs then return nil, node.name .. ": " .. msg, code end
  local np
  np, msg, code = M.node_patch(cluster, node)
  if not np then return nil, msg, code end
  local all = { np }
  for _, p in ipairs(patch_list(cluster.patches)) do all[#all + 1] = p end
  for _, p in ipairs(patch_list(cluster[node.role .. "_patches"])) do all[#all + 1] = p end
  for _, p in ipairs(patch_list(node.patches)) do all[#all + 1] = p end
  for i, p in ipairs(all) do
    docs, msg, code = patch.apply(docs, p)
    if not docs then
      local which = i == 1 and "node settings" or ("patch " .. (i - 1))
      return nil, string.format("%s: %s: %s", node.name, which, msg), code
    end
  end
  local ok, warnings, errs
  ok, msg, code, errs = validate.config(docs, { node = node.name, talos_version = con.version })
  if not ok then return nil, msg, code, errs end
  warnings = msg
  local text
  text, msg, code = M.encode(docs)
  if not text then return nil, node.name .. ": " .. msg, code end
  return { docs = docs, yaml = text, warnings = warnings or {} }
end

-- ========== talosconfig ==========

local TC_OPTS = { endpoints = "table", nodes = "table", admin = "table", now = "integer" }

--- Makes a talosconfig (talos.md §1.7): context = the cluster name, the
--- given endpoints (control-plane IPs or the VIP) and default nodes, the OS
--- CA, and an admin client certificate (`admin`, or a new one from
--- secrets.admin_cert).  Returns the YAML text and the table.
---@param name string cluster name
---@param bundle tlr.talos.Bundle
---@param o {endpoints: string[], nodes?: string[], admin?: tlr.talos.CertAndKey, now?: integer}
---@return string? text, table|string tbl_or_msg, string? code
function M.talosconfig(name, bundle, o)
  opts.arg(type(name) == "string" and name ~= "", "config.talosconfig", "cluster name expected")
  opts.arg(type(bundle) == "table", "config.talosconfig", "secrets bundle expected")
  o = opts.check("config.talosconfig", o, TC_OPTS)
  opts.arg(o.endpoints ~= nil and #o.endpoints > 0, "config.talosconfig", "endpoints required")
  local admin, msg, code = o.admin, nil, nil
  if not admin then
    admin, msg, code = secrets.admin_cert(bundle, { now = o.now })
    if not admin then return nil, msg, code end
  end
  local os_ca = bundle.certs and bundle.certs.os
  if not os_ca or type(os_ca.crt) ~= "string" then
    return fail("talosconfig: the bundle has no OS CA (certs.os)")
  end
  local ctx = { endpoints = copy_list(o.endpoints), ca = b64(os_ca.crt), crt = b64(admin.crt),
    key = b64(admin.key) }
  if o.nodes and #o.nodes > 0 then ctx.nodes = copy_list(o.nodes) end
  local tc = { context = name, contexts = { [name] = ctx } }
  local text = assert(yaml.encode(tc, { indent = 4,
    order = { "context", "contexts", "endpoints", "nodes", "ca", "crt", "key" } }))
  return text, tc
end

return M
