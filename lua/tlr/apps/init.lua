--- The core apps of a tlr cluster, as data: Argo CD from its release
--- manifest, then Argo CD Applications that render the Helm charts of
--- cert-manager, Traefik, MetalLB and external-dns (no helm binary), the
--- Secrets they need, Let's Encrypt ClusterIssuers (DNS-01 through
--- Cloudflare), MetalLB's address pool, and an app-of-apps for the site's
--- Git repository.
---
--- `apps.plan(site)` is pure apart from resolving secret references: it
--- returns the phases, each with the objects to apply and what to wait for
--- before and after.  `apps.summary(plan)` prints it with secrets redacted.
--- `apps.install(k8s_client, plan)` applies the phases in order with
--- server-side apply and waits; a second run changes nothing.
local argocd = require "tlr.apps.argocd"
local certmanager = require "tlr.apps.certmanager"
local common = require "tlr.apps.common"
local errors = require "tlr.errors"
local externaldns = require "tlr.apps.externaldns"
local log = require "tlr.log"
local metallb = require "tlr.apps.metallb"
local opts = require "tlr.opts"
local sched = require "tlr.sched"
local traefik = require "tlr.apps.traefik"
local versions = require "tlr.apps.versions"

local M = {}

M.argocd, M.certmanager, M.externaldns = argocd, certmanager, externaldns
M.metallb, M.traefik, M.versions = metallb, traefik, versions

local FN = "apps.plan"

local PLAN_SPEC = {
  zone = "string", acme = "table", cloudflare = "table", dns = "table", metallb = "table",
  traefik = { "table", "boolean" }, cert_manager = { "table", "boolean" }, git = "table", argocd = "table",
  versions = "table", repos = "table",
}
local ACME_SPEC = { email = "string", issuers = "table", zones = "table", wait = "boolean" }
local CLOUDFLARE_SPEC = { token = { "string", "table" }, secret = "string", key = "string", proxied = "boolean" }
local DNS_SPEC = {
  provider = "string", zone = "string", server = "string", port = "integer", key_name = "string",
  key_algorithm = "string", key_secret = { "string", "table" }, secret = "string", key = "string", axfr = "boolean",
  policy = "string", owner_id = "string", sources = "table", domain_filters = "table", interval = "string",
  values = "table",
}
local METALLB_SPEC = { addresses = "table", name = "string", l2 = "boolean", auto_assign = "boolean", values = "table" }
local CHART_SPEC = { values = "table" }
local TRAEFIK_SPEC = { values = "table", ip = "string" }
local GIT_SPEC = { repo = "string", revision = "string", path = "string", recurse = "boolean", name = "string",
  username = "string", password = { "string", "table" }, ssh_private_key = { "string", "table" }, wait = "boolean" }

-- Checks a nested options table: unknown keys raise as "apps.plan".
local function sub(o, key, spec)
  if o[key] == nil then return nil end
  return opts.check(FN .. " (" .. key .. ")", o[key], spec)
end

local function component(o, key, spec)
  local v = o[key]
  if v == false then return nil end
  opts.arg(v == nil or type(v) == "table", FN, key .. " must be a table or false")
  return sub(o, key, spec or CHART_SPEC) or {}
end

local function ns_object(name)
  return { apiVersion = "v1", kind = "Namespace", metadata = { name = name, labels = common.labels() } }
end

-- Phase builder: objects plus waits before and after.
local function phase(name, apply)
  return { name = name, objects = {}, before = {}, after = {}, apply = apply or { force = true } }
end

local function add(list, item) list[#list + 1] = item end

--- Builds the plan for a site.  Components are included when configured:
--- cert-manager and Traefik unless `false`, MetalLB with `metallb`,
--- external-dns with `dns`, ClusterIssuers with `acme` (which needs
--- `cloudflare`), an app-of-apps with `git`.  Wrong shapes and unknown keys
--- raise; a secret reference that cannot be read returns nil, msg, code.
---@param o {zone?: string, acme?: table, cloudflare?: table, dns?: table, metallb?: table, traefik?: table|false, cert_manager?: table|false, git?: table, argocd?: table, versions?: table, repos?: table}
---@return table|nil plan {versions, manifest, phases = {{name, objects, before, after, apply}}}
---@return string? msg
---@return string? code "EINVAL", or fs.read's codes
function M.plan(o)
  o = opts.check(FN, o, PLAN_SPEC)
  opts.arg(o.zone == nil or common.is_dns_name(o.zone), FN, "zone must be a DNS name")
  local v = versions.resolve(o.versions)
  local repos = versions.repos(o.repos)
  local acme, cf, dns = sub(o, "acme", ACME_SPEC), sub(o, "cloudflare", CLOUDFLARE_SPEC), sub(o, "dns", DNS_SPEC)
  local lb, git = sub(o, "metallb", METALLB_SPEC), sub(o, "git", GIT_SPEC)
  local cm, tr = component(o, "cert_manager"), component(o, "traefik", TRAEFIK_SPEC)
  local manifest = argocd.source(v.argocd, o.argocd)

  if cf then
    opts.arg((cf.token == nil) ~= (cf.secret == nil), FN, "cloudflare needs token or secret (an existing Secret)")
    if cf.token then common.check_secret(FN, "cloudflare.token", cf.token) end
  end
  if acme then
    opts.arg(cm ~= nil, FN, "acme needs cert-manager")
    opts.arg(cf ~= nil, FN, "acme needs cloudflare (DNS-01 through Cloudflare)")
    opts.arg(type(acme.email) == "string" and acme.email:match("^[^@%s]+@[^@%s]+$"), FN,
      "acme.email must be an address")
    for _, z in ipairs(acme.zones or {}) do
      opts.arg(common.is_dns_name(z), FN, "acme.zones: bad zone " .. tostring(z))
    end
    for _, env in ipairs(acme.issuers or {}) do
      opts.arg(certmanager.SERVERS[env] ~= nil, FN,
        "acme.issuers: staging or production expected, got " .. tostring(env))
    end
  end
  if dns then
    opts.arg(dns.provider == "rfc2136" or dns.provider == "cloudflare", FN,
      "dns.provider must be rfc2136 or cloudflare")
    opts.arg(dns.zone or o.zone, FN, "dns.zone (or zone) is required")
    if dns.provider == "cloudflare" then
      opts.arg(cf ~= nil, FN, "dns.provider cloudflare needs cloudflare")
    else
      opts.arg((dns.key_secret == nil) ~= (dns.secret == nil), FN,
        "dns needs key_secret or secret (an existing Secret)")
      if dns.key_secret then common.check_secret(FN, "dns.key_secret", dns.key_secret) end
    end
  end
  if lb then metallb.check_addresses(FN, lb.addresses) end
  if tr and tr.ip then
    opts.arg(common.is_ip(tr.ip), FN, "traefik.ip must be an IP address")
    opts.arg(lb ~= nil, FN, "traefik.ip needs metallb (the address comes from its pool)")
  end
  if git then
    opts.arg(type(git.repo) == "string" and git.repo ~= "", FN, "git.repo is required")
    opts.arg(git.name == nil or common.is_object_name(git.name), FN, "git.name must be an object name")
    for _, k in ipairs { "password", "ssh_private_key" } do
      if git[k] ~= nil then common.check_secret(FN, "git." .. k, git[k]) end
    end
  end

  -- secret references: resolved (and registered with log.secret) now
  local token, tsig, git_password, git_key, msg, code
  if cf and cf.token then
    token, msg, code = common.secret(cf.token, "cloudflare.token")
    if not token then return nil, msg, code end
  end
  if dns and dns.key_secret then
    tsig, msg, code = common.secret(dns.key_secret, "dns.key_secret")
    if not tsig then return nil, msg, code end
  end
  if git and git.password then
    git_password, msg, code = common.secret(git.password, "git.password")
    if not git_password then return nil, msg, code end
  end
  if git and git.ssh_private_key then
    git_key, msg, code = common.secret(git.ssh_private_key, "git.ssh_private_key")
    if not git_key then return nil, msg, code end
  end

  local zone = o.zone and o.zone:gsub("%.$", "")
  local p1, p2, p3 = phase("argocd", { namespace = argocd.NAMESPACE, force = true }), phase("prerequisites"),
    phase("applications")
  local p4, p5 = phase("configuration", { force = true, retry_budget = 300 }), phase("gitops")
  add(p1.objects, ns_object(argocd.NAMESPACE))
  add(p1.after, { wait = "ready" })

  local function app(obj)
    add(p3.objects, obj)
    add(p3.after, { wait = "application", name = obj.metadata.name })
  end
  local function chart(key, extra)
    return common.merge({ version = v[key], repo = repos[key].repo, chart = repos[key].chart }, extra)
  end

  if cm then
    add(p2.objects, ns_object(certmanager.NAMESPACE))
    app(certmanager.application(chart("cert_manager", { values = cm.values })))
  end
  -- Argo CD counts a LoadBalancer Service as Progressing until it has an
  -- address, and MetalLB hands those out only once its pool exists (the
  -- configuration phase): Traefik is waited for there, and not at all
  -- without MetalLB (its Service would never get an address).
  local traefik_wait
  if tr then
    add(p2.objects, ns_object(traefik.NAMESPACE))
    local obj = traefik.application(chart("traefik", { values = tr.values, ip = tr.ip }))
    add(p3.objects, obj)
    traefik_wait = { wait = "application", name = obj.metadata.name }
  end
  if lb then
    add(p2.objects, metallb.namespace())
    app(metallb.application(chart("metallb", { values = lb.values })))
    for _, crd in ipairs(metallb.CRDS) do add(p4.before, { wait = "crd", name = crd }) end
    for _, obj in ipairs(metallb.pool { addresses = lb.addresses, name = lb.name, l2 = lb.l2,
      auto_assign = lb.auto_assign }) do
      add(p4.objects, obj)
    end
    if traefik_wait then add(p4.after, traefik_wait) end
  end
  if dns then
    local d = common.copy(dns)
    d.zone = d.zone or zone
    d.key_secret, d.values = nil, nil
    if dns.provider == "cloudflare" then d.secret, d.key, d.proxied = cf.secret, cf.key, cf.proxied end
    add(p2.objects, ns_object(externaldns.NAMESPACE))
    if dns.provider == "rfc2136" and tsig then add(p2.objects, externaldns.secret("rfc2136", tsig)) end
    if dns.provider == "cloudflare" and token then add(p2.objects, externaldns.secret("cloudflare", token)) end
    local ao = chart("external_dns", d)
    ao.values = dns.values
    app(externaldns.application(ao))
  end
  if acme then
    if token then add(p2.objects, certmanager.token_secret(token)) end
    add(p4.before, { wait = "crd", name = certmanager.ISSUER_CRD })
    local zones = acme.zones or (zone and { zone }) or nil
    for _, env in ipairs(acme.issuers or { "staging", "production" }) do
      local issuer = certmanager.cluster_issuer(env, { email = acme.email, zones = zones, secret = cf.secret,
        key = cf.key })
      add(p4.objects, issuer)
      if acme.wait ~= false then
        add(p4.after, { wait = "condition", api_version = certmanager.API_VERSION, kind = "ClusterIssuer",
          name = issuer.metadata.name, type = "Ready" })
      end
    end
  end
  if git then
    local name = git.name or "apps"
    if git_password or git_key then
      add(p2.objects, argocd.repository_secret("repo-" .. name, { url = git.repo, username = git.username,
        password = git_password, ssh_private_key = git_key }))
    end
    add(p5.objects, argocd.git_application(name, { repo = git.repo, revision = git.revision, path = git.path,
      recurse = git.recurse }))
    if git.wait ~= false then add(p5.after, { wait = "application", name = name }) end
  end

  local phases = {}
  for _, p in ipairs { p1, p2, p3, p4, p5 } do
    if #p.objects > 0 then phases[#phases + 1] = p end
  end
  return { versions = v, manifest = manifest, phases = phases }
end

-- ========== showing a plan ==========

--- A copy of an object whose Secret values read "<redacted>".
---@param obj table
---@return table
function M.redact(obj)
  local out = common.copy(obj)
  for _, field in ipairs { "data", "stringData" } do
    if type(out[field]) == "table" then
      for k in pairs(out[field]) do out[field][k] = common.REDACTED end
    end
  end
  return out
end

local function id(obj)
  local m = obj.metadata
  return obj.kind .. " " .. (m.namespace and (m.namespace .. "/") or "") .. m.name
end

--- One line about an object, secrets redacted.
---@param obj table
---@return string
function M.describe(obj)
  local s, spec = id(obj), obj.spec or {}
  if obj.kind == "Secret" then
    local keys = {}
    for k in pairs(obj.data or obj.stringData or {}) do keys[#keys + 1] = k .. "=" .. common.REDACTED end
    table.sort(keys)
    return s .. " (" .. table.concat(keys, ", ") .. ")"
  elseif obj.kind == "Application" then
    local src = spec.source or {}
    if src.chart then
      return string.format("%s: chart %s %s from %s into namespace %s", s, src.chart, src.targetRevision,
        src.repoURL, spec.destination.namespace)
    end
    return string.format("%s: %s path %s at %s", s, src.repoURL, src.path, src.targetRevision)
  elseif obj.kind == "ClusterIssuer" then
    return string.format("%s: ACME %s for %s, DNS-01 through Cloudflare", s, spec.acme.server, spec.acme.email)
  elseif obj.kind == "IPAddressPool" then
    return s .. ": " .. table.concat(spec.addresses, ", ")
  elseif obj.kind == "Namespace" and (obj.metadata.labels or {})["pod-security.kubernetes.io/enforce"] then
    return s .. " (pod security " .. obj.metadata.labels["pod-security.kubernetes.io/enforce"] .. ")"
  end
  return s
end

local function describe_wait(w)
  if w.wait == "ready" then return "the objects' rollouts and CRDs" end
  if w.wait == "application" then return "Application " .. w.name .. " Synced and Healthy" end
  if w.wait == "crd" then return "CRD " .. w.name .. " Established" end
  return string.format("%s %s %s", w.kind, w.name, w.type)
end

--- The plan as text, one line per object and wait, secrets redacted.
---@param p table from M.plan
---@return string
function M.summary(p)
  opts.arg(type(p) == "table" and p.phases, "apps.summary", "plan expected")
  local lines = {}
  local names = {}
  for k in pairs(p.versions) do names[#names + 1] = k end
  table.sort(names)
  for i, k in ipairs(names) do names[i] = k:gsub("_", "-") .. " " .. p.versions[k] end
  lines[1] = "apps: " .. table.concat(names, ", ")
  for _, ph in ipairs(p.phases) do
    lines[#lines + 1] = "phase " .. ph.name .. ":"
    for _, w in ipairs(ph.before) do lines[#lines + 1] = "  wait for " .. describe_wait(w) end
    if ph.name == "argocd" then
      lines[#lines + 1] = "  Argo CD " .. p.manifest.version .. " install manifest from " .. argocd.where(p.manifest)
        .. (p.manifest.sha256 and (" (sha256 " .. p.manifest.sha256 .. ")") or "")
    end
    for _, obj in ipairs(ph.objects) do lines[#lines + 1] = "  " .. M.describe(obj) end
    for _, w in ipairs(ph.after) do lines[#lines + 1] = "  then wait for " .. describe_wait(w) end
  end
  return log.mask(table.concat(lines, "\n")) .. "\n"
end

-- ========== installing ==========

-- Runs waits in parallel; the first failure cancels the others.
local function run_waits(c, list, results, o)
  local tasks = {}
  local wo = { timeout = o.timeout }
  local groups = {}
  for _, w in ipairs(list) do
    local fn
    if w.wait == "ready" then
      fn = function() return c:wait_ready(results, wo) end
    elseif w.wait == "application" then
      fn = function() return c:wait_application(w.name, wo) end
    elseif w.wait == "crd" then
      groups[#groups + 1] = w.name:match("^[^.]+%.(.+)$")
      fn = function() return c:wait_crd(w.name, wo) end
    else
      fn = function()
        return c:wait_condition(w.api_version, w.kind, w.name, w.type, wo)
      end
    end
    tasks[#tasks + 1] = sched.spawn("wait for " .. describe_wait(w), function()
      local ok, msg, code = fn()
      if not ok then errors.raise(code, msg) end
      return true
    end)
  end
  local ok, err = pcall(sched.all, tasks)
  if not ok then
    if errors.is(err) then return nil, err.msg, err.code end
    error(err, 0)
  end
  -- CRDs someone else made (Argo CD): have discovery look their groups up afresh
  if #groups > 0 and c.discovery then c.discovery:crds_applied(groups) end
  return true
end

local INSTALL_SPEC = { timeout = "number", manifest = "string", ca = "string",
  fetch_timeout = "number", webhook_budget = "number" }

--- Applies a plan (or the site options for one) phase by phase: the
--- waits before, a server-side apply of the objects (Argo CD's manifest is
--- fetched first), the waits after.  `timeout` (default 900 s) bounds each
--- wait; `manifest` gives the install manifest's text instead of fetching
--- it; `webhook_budget` (default 300 s) is how long the configuration phase
--- retries webhooks that are not up yet.
---@param c table a tlr.k8s client
---@param p table a plan from M.plan, or its options
---@param o? {timeout?: number, manifest?: string, ca?: string, fetch_timeout?: number, webhook_budget?: number}
---@return table|nil result {phases = {{name, created, configured, unchanged, objects}}, results}
---@return string? msg "apps: phase applications: ..."
---@return string? code
function M.install(c, p, o)
  opts.arg(type(c) == "table" and c.apply, "apps.install", "a tlr.k8s client expected")
  opts.arg(type(p) == "table", "apps.install", "a plan or site options expected")
  o = opts.check("apps.install", o, INSTALL_SPEC)
  if not p.phases then
    local msg, code
    p, msg, code = M.plan(p)
    if not p then return nil, msg, code end
  end
  local wo = { timeout = o.timeout or 900 }
  local out = { phases = {}, results = {} }
  for _, ph in ipairs(p.phases) do
    local function fail(msg, code) return nil, "apps: phase " .. ph.name .. ": " .. msg, code end
    local started = sched.now()
    log.info("apps: %s", ph.name)
    local ok, msg, code = run_waits(c, ph.before, nil, wo)
    if not ok then return fail(msg, code) end
    local objects = ph.objects
    if ph.name == "argocd" then
      local text = o.manifest
      if not text then
        text, msg, code = argocd.fetch(p.manifest, { timeout = o.fetch_timeout, ca = o.ca })
        if not text then return fail(msg, code) end
      end
      local list
      list, msg, code = argocd.objects(text)
      if not list then return fail(msg, code) end
      objects = {}
      for _, obj in ipairs(ph.objects) do objects[#objects + 1] = obj end
      for _, obj in ipairs(list) do objects[#objects + 1] = obj end
    end
    local ao = common.copy(ph.apply)
    if ao.retry_budget and o.webhook_budget then ao.retry_budget = o.webhook_budget end
    local results
    results, msg, code = c:apply(objects, ao)
    if not results then return fail(msg, code) end
    ok, msg, code = run_waits(c, ph.after, results, wo)
    if not ok then return fail(msg, code) end
    local counts = { name = ph.name, objects = #results, created = 0, configured = 0,
      seconds = sched.now() - started }
    for _, r in ipairs(results) do
      counts[r.action] = (counts[r.action] or 0) + 1
      out.results[#out.results + 1] = r
    end
    out.phases[#out.phases + 1] = counts
  end
  return out
end

--- Argo CD's initial admin password (see tlr.apps.argocd.admin_password).
M.admin_password = argocd.admin_password

return M
