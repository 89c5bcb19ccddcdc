--- The site file's fields: one ordered list per section (key, kind,
--- range, whether references are allowed or required) and the format
--- checks they use.  docs/site.md describes the same fields; keep the two
--- in step.  A check returns the reason a value is wrong, or nil.
local net = require "tlr.site.net"

local M = {}

-- ========== format checks ==========

--- A DNS label as Kubernetes wants node names: lowercase letters, digits, '-'.
function M.label(v)
  if #v <= 63 and v:match("^[a-z0-9]$") or v:match("^[a-z0-9][a-z0-9-]*[a-z0-9]$") and #v <= 63 then
    return nil
  end
  return string.format("'%s' is not a valid name: use lowercase letters, digits and '-' "
    .. "(at most 63, starting and ending with a letter or digit)", v)
end

--- A Proxmox node name (a host name label; case allowed).
function M.pve_node(v)
  if #v <= 63 and (v:match("^[%w]$") or v:match("^[%w][%w-]*[%w]$")) then return nil end
  return string.format("'%s' is not a valid Proxmox node name", v)
end

--- A domain name (labels of letters, digits, '-' and '_'), no trailing dot needed.
function M.domain(v)
  local name = v:gsub("%.$", "")
  if #name == 0 or #name > 253 then return string.format("'%s' is not a domain name", v) end
  for label in (name .. "."):gmatch("([^.]*)%.") do
    if #label > 63 or not (label:match("^[%w_]$") or label:match("^[%w_][%w_-]*[%w_]$")) then
      return string.format("'%s' is not a domain name", v)
    end
  end
  return nil
end

function M.ip(v)
  if net.parse(v) then return nil end
  return string.format("'%s' is not an IP address", v)
end

function M.cidr(v)
  local addr = net.parse_cidr(v)
  if addr then return nil end
  return string.format("'%s' is not a subnet (address/prefix)", v)
end

--- An http(s) URL check for the given schemes.
function M.url(schemes)
  return function(v)
    local scheme, hostport = v:match("^(%a[%w+.-]*)://([^/?#]+)")
    local ok = false
    for _, s in ipairs(schemes) do if scheme == s then ok = true end end
    if ok and hostport and not hostport:find("%s") then return nil end
    local names = {}
    for i, sc in ipairs(schemes) do names[i] = sc .. "://" end
    return string.format("'%s' is not an %s URL", v, table.concat(names, " or "))
  end
end

--- A SHA-256 certificate fingerprint: 32 hex bytes, with or without colons.
function M.fingerprint(v)
  if v:match("^%x+$") and #v == 64 then return nil end
  if #v == 95 and v:match("^%x%x" .. string.rep(":%x%x", 31) .. "$") then return nil end
  return "not a SHA-256 fingerprint (32 hex bytes, e.g. AB:CD:...)"
end

function M.pem(v)
  if v:find("-----BEGIN CERTIFICATE-----", 1, true) then return nil end
  return "not a PEM certificate (-----BEGIN CERTIFICATE-----)"
end

--- A Proxmox storage id.
function M.storage(v)
  if v:match("^[%a][%w._-]*$") and #v <= 64 then return nil end
  return string.format("'%s' is not a valid storage id", v)
end

--- A Linux bridge name (at most 15 characters).
function M.bridge(v)
  if v:match("^[%a][%w_.-]*$") and #v <= 15 then return nil end
  return string.format("'%s' is not a valid bridge name", v)
end

--- An official extension: "siderolabs/name", or "name" for siderolabs.
function M.extension(v)
  if v:match("^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$") or v:match("^[a-z0-9][a-z0-9._-]*$") then
    return nil
  end
  return string.format("'%s' is not an extension name (e.g. siderolabs/qemu-guest-agent)", v)
end

function M.kernel_arg(v)
  if v:find("%s") then return string.format("'%s' has spaces: give one argument per item", v) end
  return nil
end

function M.abs_path(v)
  if v:sub(1, 1) == "/" then return nil end
  return string.format("'%s' is not an absolute path", v)
end

function M.k8s_version(v)
  if v:match("^v?1%.%d+%.%d+$") then return nil end
  return string.format("'%s' is not a Kubernetes version (e.g. 1.34.1)", v)
end

function M.email(v)
  if v:match("^[^@%s]+@[^@%s]+%.[^@%s.]+$") then return nil end
  return string.format("'%s' is not an e-mail address", v)
end

function M.git_url(v)
  if v:match("^https?://[^/%s]+/%S+$") or v:match("^ssh://[^/%s]+/%S+$")
    or v:match("^[%w._-]+@[%w.-]+:%S+$") then
    return nil
  end
  return string.format("'%s' is not a Git URL (https://, ssh:// or user@host:path)", v)
end

--- A Proxmox tag.
function M.tag(v)
  if v:match("^[%w_][%w_+.-]*$") then return nil end
  return string.format("'%s' is not a valid Proxmox tag", v)
end

--- A Kubernetes label key ([prefix/]name).
function M.label_key(v)
  local prefix, name = v:match("^(.+)/([^/]+)$")
  name = name or v
  if prefix and M.domain(prefix) then return string.format("'%s' has a bad prefix", v) end
  if #name <= 63 and (name:match("^[%w]$") or name:match("^[%w][%w._-]*[%w]$")) then return nil end
  return string.format("'%s' is not a valid label key", v)
end

-- ========== field lists ==========
-- {key, kind=, required=, ref= (env:/file: allowed), secret= (a reference
-- required), min=, max=, unit=, values=, of=, fields=, check=}

local str = function(check, more)
  local f = { kind = "string", check = check }
  for k, v in pairs(more or {}) do f[k] = v end
  return f
end

local function field(key, spec)
  spec[1] = key
  return spec
end

local function list_of(spec, more)
  local f = { kind = "list", of = spec }
  for k, v in pairs(more or {}) do f[k] = v end
  return f
end

-- cores, memory (MiB) and disk (GiB): per node and as per-role defaults
M.SIZE = {
  field("cores", { kind = "integer", min = 1, max = 512 }),
  field("memory", { kind = "size", unit = "MiB", min = 1024, max = 4194304 }),
  field("disk", { kind = "size", unit = "GiB", min = 10, max = 65536 }),
}

-- how to reach and log in to Proxmox: at the proxmox level and per host
M.CONNECTION = {
  field("endpoint", str(M.url { "https" }, { ref = true })),
  field("token", str(nil, { secret = true })),
  field("user", str(nil, { ref = true })),
  field("password", str(nil, { secret = true })),
  field("fingerprint", str(M.fingerprint, { ref = true })),
  field("ca", str(M.pem, { ref = true })),
  field("ca_file", str(nil, { ref = true })),
  field("insecure", { kind = "boolean" }),
}

local function with(base, extra)
  local out = {}
  for _, f in ipairs(base) do out[#out + 1] = f end
  for _, f in ipairs(extra) do out[#out + 1] = f end
  return out
end

M.HOST = with(M.CONNECTION, {
  field("storages", list_of(str(M.storage))),
  field("disk_storage", str(M.storage)),
  field("image_storage", str(M.storage)),
  field("bridge", str(M.bridge)),
})

M.PROXMOX = with(M.CONNECTION, {
  field("hosts", { kind = "any", required = true }),
  field("vmid_base", { kind = "integer", min = 100, max = 999999999 }),
  field("storage_limit", { kind = "integer", min = 1, max = 64 }),
})

M.TALOS = {
  field("version", str(nil, { required = true })),
  field("extensions", list_of(str(M.extension))),
  field("kernel_args", list_of(str(M.kernel_arg))),
  field("factory", str(M.url { "https", "http" }, { ref = true })),
  field("platform", { kind = "enum", values = { "nocloud", "metal" } }),
  field("arch", { kind = "enum", values = { "amd64", "arm64" } }),
  field("install_disk", str(M.abs_path)),
  field("patches", { kind = "patches" }),
  field("controlplane_patches", { kind = "patches" }),
  field("worker_patches", { kind = "patches" }),
}

M.KUBERNETES = {
  field("version", str(M.k8s_version)),
  field("pod_subnets", list_of(str(M.cidr))),
  field("service_subnets", list_of(str(M.cidr))),
  field("dns_domain", str(M.domain)),
  field("cni", { kind = "any" }),
  field("allow_scheduling_on_control_planes", { kind = "boolean" }),
  field("kube_proxy", { kind = "boolean" }),
}

M.NETWORK = {
  field("cidr", str(M.cidr)),
  field("gateway", str(M.ip)),
  field("nameservers", list_of(str(M.ip), { single = true })),
  field("search_domains", list_of(str(M.domain), { single = true })),
  field("vip", str(M.ip)),
  field("bridge", str(M.bridge)),
  field("vlan", { kind = "integer", min = 1, max = 4094 }),
  field("mtu", { kind = "integer", min = 576, max = 9216 }),
}

M.DEFAULTS = {
  field("controlplane", { kind = "record", fields = M.SIZE }),
  field("worker", { kind = "record", fields = M.SIZE }),
}

M.NODE = with({
  field("name", str(M.label, { required = true })),
  field("role", { kind = "enum", values = { "controlplane", "worker" }, required = true }),
  field("host", str(M.pve_node)),
  field("vmid", { kind = "integer", min = 100, max = 999999999 }),
}, with(M.SIZE, {
  field("storage", str(M.storage)),
  field("ip", str(nil, { required = true })),
  field("mac", str()),
  field("labels", { kind = "map", of = { kind = "string", empty = true } }),
  field("tags", list_of(str(M.tag))),
  field("install_disk", str(M.abs_path)),
  field("patches", { kind = "patches" }),
}))

M.DNS = {
  field("provider", { kind = "enum", values = { "rfc2136", "cloudflare" }, required = true }),
  field("zone", str(M.domain, { ref = true, required = true })),
  field("ttl", { kind = "integer", min = 1, max = 86400 }),
  field("api_name", { kind = "any" }),
  field("node_records", { kind = "boolean" }),
  -- rfc2136
  field("server", str(nil, { ref = true })),
  field("port", { kind = "integer", min = 1, max = 65535, ref = true }),
  field("key_name", str(M.domain, { ref = true })),
  field("key_algorithm", str(nil, { ref = true })),
  field("key_secret", str(nil, { secret = true })),
  field("transport", { kind = "enum", values = { "udp", "tcp" } }),
  -- cloudflare
  field("token", str(nil, { secret = true })),
  field("zone_id", str(nil, { ref = true })),
  field("api", str(M.url { "https", "http" }, { ref = true })),
  field("ca_file", str(nil, { ref = true })),
}

M.DNS_ONLY = {
  rfc2136 = { "server", "port", "key_name", "key_algorithm", "key_secret", "transport" },
  cloudflare = { "token", "zone_id", "api", "ca_file" },
}

local function app(fields)
  return { kind = "record", fields = fields, switch = true }
end

M.APPS = {
  field("metallb", app {
    field("range", list_of(str(), { single = true, required = true })),
  }),
  field("ingress", app {
    field("controller", { kind = "enum", values = { "traefik", "ingress-nginx" } }),
    field("ip", str(M.ip)),
  }),
  field("cert_manager", app {
    field("email", str(M.email, { required = true })),
    field("cloudflare_token", str(nil, { secret = true })),
    field("staging", { kind = "boolean" }),
  }),
  field("external_dns", app {
    field("zone", str(M.domain)),
    field("sources", list_of({ kind = "enum", values = { "service", "ingress", "gateway-httproute" } })),
    field("policy", { kind = "enum", values = { "upsert-only", "sync", "create-only" } }),
    field("txt_owner_id", str()),
  }),
  field("argocd", app {
    field("repo", str(M.git_url, { required = true, ref = true })),
    field("revision", str()),
    field("path", str()),
    field("version", str()),
    field("username", str(nil, { ref = true })),
    field("password", str(nil, { secret = true })),
    field("ssh_key", str(nil, { secret = true })),
    field("manifest", str()),
    field("manifest_sha256", str()),
  }),
}

M.TOP = {
  field("name", str(M.label, { required = true })),
  field("endpoint", str(M.url { "https" }, { ref = true })),
  field("state_dir", str()),
  field("talos", { kind = "record", fields = M.TALOS, required = true }),
  field("kubernetes", { kind = "record", fields = M.KUBERNETES }),
  field("proxmox", { kind = "record", fields = M.PROXMOX, required = true }),
  field("network", { kind = "record", fields = M.NETWORK }),
  field("defaults", { kind = "record", fields = M.DEFAULTS }),
  field("nodes", list_of({ kind = "record", fields = M.NODE }, { required = true })),
  field("dns", { kind = "record", fields = M.DNS }),
  field("apps", { kind = "record", fields = M.APPS }),
}

--- The names of fields whose values are secrets (for redaction).
M.SECRET_KEYS = { token = true, password = true, key_secret = true, cloudflare_token = true,
  ssh_key = true }

return M
