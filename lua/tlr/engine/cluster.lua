--- tlr.engine.cluster: the Talos and Kubernetes operations of the engine
--- (secrets, configs applied in maintenance mode, bootstrap, health,
--- kubeconfig, apps, node listing).
local crypto = require "tlr.crypto"
local sched = require "tlr.sched"
local steps = require "tlr.engine.steps"

local function check(...) return require("tlr.engine").check(...) end

local M = {}

--- The secrets bundle (made once; in plan mode made in memory only).  Two
--- tasks asking at once get the same one: two bundles would be two clusters.
function M.secrets(ctx)
  return ctx.bundle or ctx:once("secrets", function() return ctx.bundle or M.make_secrets(ctx) end)
end

function M.make_secrets(ctx)
  local secrets = require "tlr.talos.secrets"
  local gen = function() return secrets.generate { talos_version = ctx.site.talos.version } end
  if ctx.plan then
    local text = ctx.state:read("secrets")
    if text then ctx.bundle = check("secrets", secrets.decode(text))
    else
      ctx:change("create", "secrets bundle (redacted)")
      ctx.bundle = check("secrets", gen())
    end
  else
    local b, created = ctx.state:secrets(gen)
    check("secrets", b, created)
    if created then ctx:change("create", "secrets bundle (redacted)") end
    ctx.bundle = b
  end
  return ctx.bundle
end

local function cluster_opts(ctx)
  local s = ctx.site
  return {
    name = s.name, endpoint = s.endpoint, secrets = M.secrets(ctx), talos_version = s.talos.version,
    kubernetes_version = s.kubernetes.version, install_image = s.talos.installer_image,
    dns_domain = s.kubernetes.dns_domain, pod_subnets = s.kubernetes.pod_subnets,
    service_subnets = s.kubernetes.service_subnets, cni = s.kubernetes.cni,
    allow_scheduling_on_control_planes = s.kubernetes.allow_scheduling_on_control_planes,
    kube_proxy = s.kubernetes.kube_proxy, vip = s.network.vip,
    nameservers = (#(s.network.nameservers or {}) > 0) and s.network.nameservers or nil,
    patches = s.talos.patches, controlplane_patches = s.talos.controlplane_patches,
    worker_patches = s.talos.worker_patches,
  }
end

-- The talosconfig with its endpoints set to the control planes' addresses
-- (the client identity in it stays), or nil when they are those already.
local function retarget(text, eps)
  local yaml = require "tlr.yaml"
  local doc = yaml.decode(text)
  local c = type(doc) == "table" and doc.contexts and doc.contexts[doc.context]
  if not c or #eps == 0 then return nil end
  local old = table.concat(c.endpoints or {}, ",")
  if old == table.concat(eps, ",") then return nil end
  c.endpoints = require("tlr.json").array(eps)
  return yaml.encode(doc), old
end

--- The talosconfig, written to the state dir when it differs; its
--- endpoints follow the control planes (added, removed, DHCP addresses).
function M.talosconfig(ctx)
  return ctx.talosconfig or ctx:once("talosconfig", function() return ctx.talosconfig or M.make_talosconfig(ctx) end)
end

function M.make_talosconfig(ctx)
  local s = ctx.site
  local eps = {}
  for _, n in ipairs(ctx:nodes("controlplane")) do eps[#eps + 1] = steps.ip(ctx, n) end
  local existing = ctx.state:read("talosconfig")
  if existing then
    local text, old = retarget(existing, eps)
    if text then
      ctx:change("update", "talosconfig", { { "endpoints", old, table.concat(eps, ",") } })
      if not ctx.plan then check("talosconfig", ctx.state:write("talosconfig", text)) end
      existing = text
    end
    ctx.talosconfig = existing
    return existing
  end
  local text = check("talosconfig", require("tlr.talos.config").talosconfig(s.name, M.secrets(ctx),
    { endpoints = eps, nodes = { eps[1] } }))
  ctx:change("create", "talosconfig")
  if not ctx.plan then check("talosconfig", ctx.state:write("talosconfig", text)) end
  ctx.talosconfig = text
  return text
end

local function render(ctx, n)
  local s = ctx.site
  local network = { mac = n.mac, dhcp = n.dhcp or nil }
  if not n.dhcp then network.addresses = { n.cidr }; network.gateway = s.network.gateway end
  local r, msg, code, errs = require("tlr.talos.config").render(cluster_opts(ctx), {
    name = n.name, role = n.role, install_disk = n.install_disk, network = network,
    node_labels = next(n.labels or {}) and n.labels or nil, patches = n.patches })
  if not r then check("config " .. n.name, nil, msg .. (errs and ("\n" .. table.concat(errs, "\n")) or ""), code) end
  return r.yaml
end

local function eventually(what, fn, timeout)
  local deadline = sched.now() + (timeout or 600)
  local delay, last = 0.05, nil
  while true do
    local v, msg, code = fn()
    if v then return v end
    last = msg
    if sched.now() > deadline then check(what, nil, tostring(last) .. " (gave up)", code or "ETIMEDOUT") end
    sched.sleep(delay)
    delay = math.min(delay * 1.5, 0.5)
  end
end

local TRANSIENT = { ECONNRESET = true, ETRANSPORT = true, ECONNREFUSED = true, ETIMEDOUT = true, ETLS = true,
  EPROTO = true } -- a reply cut short by the reboot

-- Applies a config in maintenance mode.  The node installs and reboots right
-- after it accepts the config, so a reply cut short may still mean success:
-- when the maintenance API is gone and the secure one answers, it was applied.
local function apply_maintenance(ctx, n, ip, yaml, tc)
  local client = require "tlr.talos.client"
  local deadline = sched.now() + 600
  while true do
    local m = check("talos " .. n.name, client.connect(ip, { insecure = true }))
    local disks, dmsg, dcode = m:disks()
    if disks then
      local r, msg, code = m:apply_configuration(yaml)
      if r then return r end
      if not TRANSIENT[code] or sched.now() > deadline then check("apply config " .. n.name, nil, msg, code) end
    else
      local s = client.connect(ip, { talosconfig = tc })
      if s and s:version() then return true end
      if sched.now() > deadline then check("talos " .. n.name .. " maintenance", nil, dmsg, dcode) end
    end
    sched.sleep(0.2)
  end
end

--- Applies each node's config: in maintenance mode when the node is new,
--- through the authenticated API when the config changed; all nodes at once.
-- Applies a node's config: in maintenance mode when the node is new; through
-- the authenticated API when its config changed, one node at a time on a
-- running cluster with a health gate after each (a change that reboots must
-- not take every control plane down at once).
local function configure(ctx, n, tc)
  local client = require "tlr.talos.client"
  local ip = steps.ip(ctx, n)
  local yaml = render(ctx, n)
  local hash = crypto.sha256(yaml, { hex = true })
  local inv = ctx.inv.nodes[n.name] or {}
  if inv.config_hash == hash then return end
  local fields = inv.config_hash and { { "sha256", inv.config_hash:sub(1, 12), hash:sub(1, 12) } } or nil
  if ctx.plan then
    ctx:change(inv.config_hash and "update" or "create", "talos config " .. n.name, fields)
    return
  end
  local function apply()
    if not inv.config_hash then
      -- a new node: wait for maintenance mode, then apply (it installs and reboots)
      apply_maintenance(ctx, n, ip, yaml, tc)
      ctx:change("create", "talos config " .. n.name)
    else
      local c = check("talos " .. n.name, client.connect(ip, { talosconfig = tc }))
      check("apply config " .. n.name, c:apply_configuration(yaml))
      ctx:change("update", "talos config " .. n.name, fields)
    end
    inv.config_hash = hash
    ctx.inv.nodes[n.name] = inv
    ctx:save()
    local c = check("talos " .. n.name, client.connect(ip, { talosconfig = tc }))
    eventually("talos " .. n.name .. " secure API", function() return c:version() end)
  end
  if inv.config_hash and ctx.inv.bootstrapped then
    ctx.config_updates = ctx.config_updates or sched.semaphore(1)
    ctx.config_updates:with(function()
      apply()
      M.health(ctx)
    end)
  else
    apply()
  end
end

function M.configs(ctx, nodes)
  nodes = nodes or ctx.site.nodes
  local tc = M.talosconfig(ctx)
  ctx:each("config", nodes, function(n) configure(ctx, n, tc) end)
end

-- Waits until every node of `nodes` has an address (DHCP ones learn it from
-- their VM as its task goes on).
local function await_addresses(ctx, nodes)
  while true do
    local all = true
    for _, n in ipairs(nodes) do all = all and steps.ip(ctx, n) ~= nil end
    if all then return end
    sched.sleep(0.1)
  end
end

--- The VMs, their DNS records and their Talos configs as one pipeline (the
--- cluster flow's `vms` phase): each node is configured as soon as its VM
--- runs, the first control plane is bootstrapped as soon as it has its
--- config, and the records go in once every address is known.  The
--- configs and bootstrap phases that follow then find nothing to do.  Plan
--- mode reports the VMs only (the later phases report the rest in order).
--- `o.extra` as for steps.vms.
function M.machines(ctx, o)
  o = require("tlr.opts").check("steps.machines", o, { extra = "function" })
  if ctx.plan then return steps.vms(ctx, nil, { extra = o.extra }) end
  local records = sched.spawn("dns", function()
    await_addresses(ctx, ctx.site.nodes)
    steps.dns(ctx)
  end)
  local ok, err = pcall(steps.vms, ctx, nil, { extra = o.extra, then_each = function(n)
    await_addresses(ctx, ctx:nodes("controlplane")) -- the talosconfig's endpoints
    configure(ctx, n, M.talosconfig(ctx))
    if n.name == ctx.site.bootstrap then M.bootstrap(ctx) end
  end })
  if not ok then
    records:cancel()
    error(err, 0)
  end
  records:wait()
end

--- Bootstraps etcd on the first control plane (once, recorded).
function M.bootstrap(ctx)
  if ctx.inv.bootstrapped then return end
  ctx:change("create", "etcd bootstrap on " .. ctx.site.bootstrap)
  if ctx.plan then return end
  local n = ctx:node(ctx.site.bootstrap)
  local c = check("bootstrap", require("tlr.talos.client").connect(steps.ip(ctx, n),
    { talosconfig = M.talosconfig(ctx) }))
  check("bootstrap " .. n.name, c:bootstrap { timeout = 600, max_interval = 0.5 })
  ctx.inv.bootstrapped = true
  ctx:save()
end

--- Waits for Talos's health checks (skipped in plan mode).
function M.health(ctx)
  if ctx.plan then return end
  local cps, ws = {}, {}
  for _, n in ipairs(ctx:nodes("controlplane")) do cps[#cps + 1] = steps.ip(ctx, n) end
  for _, n in ipairs(ctx:nodes("worker")) do ws[#ws + 1] = steps.ip(ctx, n) end
  -- while a control plane is still to leave, etcd has a member the site does not list
  local checks
  for _, r in ipairs(ctx.retiring or {}) do
    if r.role == "controlplane" and ctx.inv.nodes[r.name] then
      checks = {}
      for _, chk in ipairs(require("tlr.talos.health").CHECKS) do
        if chk.name ~= "etcd members are control planes" then checks[#checks + 1] = chk.name end
      end
    end
  end
  return check("health", require("tlr.talos.health").wait { talosconfig = M.talosconfig(ctx),
    controlplanes = cps, workers = ws, timeout = 900, checks = checks, interval = 0.5 })
end

--- The admin kubeconfig in the state dir (fetched once).
function M.kubeconfig(ctx)
  local existing = ctx.state:read("kubeconfig")
  if existing then ctx.kubeconfig = existing return existing end
  ctx:change("create", "kubeconfig")
  if ctx.plan then return nil end
  local n = ctx:node(ctx.site.bootstrap)
  local c = check("kubeconfig", require("tlr.talos.client").connect(steps.ip(ctx, n),
    { talosconfig = M.talosconfig(ctx) }))
  local text = check("kubeconfig", c:kubeconfig())
  check("kubeconfig", ctx.state:write("kubeconfig", text))
  ctx.kubeconfig = text
  return text
end

function M.k8s(ctx)
  if not ctx.kubeconfig then M.kubeconfig(ctx) end
  if not ctx.kubeconfig then return nil end
  ctx.k8s = ctx.k8s or check("kubernetes", require("tlr.k8s").connect { kubeconfig = ctx.kubeconfig })
  return ctx.k8s
end

--- The apps.plan options from the site's apps section.
function M.apps_plan(ctx)
  local s, a = ctx.site, ctx.site.apps or {}
  local o = { zone = s.dns and s.dns.zone or nil }
  if a.metallb then o.metallb = { addresses = a.metallb.addresses } end
  if a.cert_manager then
    if a.cert_manager.email and a.cert_manager.cloudflare_token then
      o.acme = { email = a.cert_manager.email,
        issuers = a.cert_manager.staging and { "staging" } or nil }
      o.cloudflare = { token = a.cert_manager.cloudflare_token }
    end
  else o.cert_manager = false end
  if a.ingress then
    o.traefik = (a.ingress.class == "traefik") and { ip = a.ingress.ip } or false
  else o.traefik = false end
  if a.external_dns and s.dns then
    local d = s.dns
    o.dns = { provider = d.provider, zone = d.zone, server = d.server, port = d.port,
      key_name = d.key_name, key_algorithm = d.key_algorithm, key_secret = d.key_secret,
      policy = a.external_dns.policy, owner_id = a.external_dns.txt_owner_id,
      sources = a.external_dns.sources }
    if d.provider == "cloudflare" then
      o.dns = { provider = "cloudflare", zone = d.zone, policy = a.external_dns.policy,
        owner_id = a.external_dns.txt_owner_id, sources = a.external_dns.sources }
      o.cloudflare = o.cloudflare or { token = d.token }
    end
  end
  if a.argocd then
    o.git = { repo = a.argocd.repo, revision = a.argocd.revision, path = a.argocd.path,
      username = a.argocd.username, password = a.argocd.password, ssh_private_key = a.argocd.ssh_key }
  end
  -- a local copy or a mirror of Argo CD's install.yaml (air-gapped sites, the lab)
  local m = a.argocd and a.argocd.manifest
  if m then
    o.argocd = { sha256 = a.argocd.manifest_sha256 }
    if m:match("^https?://") then o.argocd.url = m else o.argocd.file = m end
  end
  return check("apps", require("tlr.apps").plan(o))
end

-- A digest of what the apps plan applies (objects and sources, secrets
-- included only through the digest), to skip unchanged installs.
local function plan_digest(p)
  local ok, text = pcall(require("tlr.json").encode, { versions = p.versions, manifest = p.manifest,
    phases = p.phases })
  if not ok or not text then return nil end
  return crypto.sha256(text, { hex = true })
end

--- Installs Argo CD and the Applications.  When the plan is the one last
--- installed and every object of it is still in the cluster as applied
--- (read back, GETs only), nothing is written: a re-run makes no change, and
--- an object someone deleted or edited is put back.
local function any_app(apps)
  for _, v in pairs(apps or {}) do if v then return true end end
  return false
end

function M.apps(ctx)
  if not any_app(ctx.site.apps) then return end
  local apps = require "tlr.apps"
  local p = M.apps_plan(ctx)
  local digest = plan_digest(p)
  local c = digest and ctx.inv.apps_digest == digest and M.k8s(ctx)
  if c then
    -- Argo CD's manifest as installed (kept in the state: no download on an idle run)
    local drifted = check("apps drift", require("tlr.apps.drift").check(c, p,
      { manifest = ctx.state:read("argocd") }))
    if #drifted == 0 then return end
    for _, d in ipairs(drifted) do ctx:change("update", "app object " .. d.object .. " (drifted: " .. d.why .. ")") end
  elseif digest and ctx.inv.apps_digest == digest then
    ctx:change("update", "apps (no kubeconfig yet: applied again to be sure)")
  else
    local action = ctx.inv.apps_digest and "update" or "create"
    ctx:change(action, "apps (Argo CD and Applications)", action == "update" and
      { { "digest", ctx.inv.apps_digest:sub(1, 12), digest and digest:sub(1, 12) or "?" } } or nil)
  end
  if ctx.plan then return end
  c = M.k8s(ctx)
  local manifest = check("apps", require("tlr.apps.argocd").fetch(p.manifest, { timeout = 120 }))
  check("apps", apps.install(c, p, { timeout = 900, manifest = manifest }))
  check("apps", ctx.state:write("argocd", manifest))
  ctx.inv.apps_digest = digest
  ctx:save()
end

--- Lists the Kubernetes nodes through the kubeconfig.
function M.list_nodes(ctx)
  if ctx.plan then return end
  local c = M.k8s(ctx)
  local list = check("nodes", c:list("v1", "Node"))
  local out = {}
  for _, item in ipairs(list.items or list) do
    local ready = "NotReady"
    for _, cond in ipairs((item.status or {}).conditions or {}) do
      if cond.type == "Ready" and cond.status == "True" then ready = "Ready" end
    end
    local roles = {}
    for k in pairs(item.metadata.labels or {}) do
      local r = k:match("^node%-role%.kubernetes%.io/(.+)$")
      if r then roles[#roles + 1] = r end
    end
    out[#out + 1] = string.format("%-12s %-9s %-14s %s", item.metadata.name, ready,
      #roles > 0 and table.concat(roles, ",") or "<none>",
      ((item.status or {}).nodeInfo or {}).kubeletVersion or "")
  end
  table.sort(out)
  ctx.out:write(string.format("%-12s %-9s %-14s %s\n", "NAME", "STATUS", "ROLES", "VERSION"))
  for _, l in ipairs(out) do ctx.out:write(l, "\n") end
  ctx.out:write("kubeconfig: ", ctx.state:path("kubeconfig"), "\n")
  return out
end

return M
