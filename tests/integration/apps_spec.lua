-- tlr.apps against the lab's Kubernetes fake: Argo CD from a mirrored
-- install manifest (a loopback URL, checksum pinned), every Application
-- until Synced and Healthy, MetalLB's pool through a webhook that is not
-- ready yet, the ClusterIssuers, the admin password, and a second install
-- that changes nothing.
local L = require "lab_helper"
local H = require "helper"
local apps = require "tlr.apps"
local crypto = require "tlr.crypto"
local k8s = require "tlr.k8s"
local log = require "tlr.log"
local sched = require "tlr.sched"

local FIXTURE = "tests/fixtures/argocd/install.yaml"
local TOKEN = "cf-lab-token-3b9e0d4c2a71"
local TSIG = "bGFiLXRzaWctc2VjcmV0LWZvci1hcHBz"
local APPS = { "cert-manager", "traefik", "metallb", "external-dns", "apps" }

-- A mirror of Argo CD's release manifests on loopback: serves the fixture
-- at /argo-cd/<version>/manifests/install.yaml, counts the downloads.
local MIRROR_JS = [[
'use strict';
const http = require('http');
const fs = require('fs');
const [file, version] = process.argv.slice(2);
let hits = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/hits') return res.end(String(hits));
  if (req.url === `/argo-cd/${version}/manifests/install.yaml`) {
    hits += 1;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    return res.end(fs.readFileSync(file));
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('404: Not Found');
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
setTimeout(() => process.exit(0), 600000);
]]

describe("tlr.apps against the lab", function()
  local lab, c, mirror, base

  local function site(extra)
    local o = {
      zone = "lab.example.com",
      acme = { email = "ops@lab.example.com" },
      cloudflare = { token = TOKEN },
      dns = { provider = "rfc2136", server = "10.0.0.53", key_name = "tlr", key_secret = TSIG },
      metallb = { addresses = { "10.0.0.240-10.0.0.250" } },
      git = { repo = "https://git.lab.example.com/ops/cluster.git", path = "apps" },
    }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  local function last_seq()
    local list = lab:control("GET", "/log?service=k8s&limit=1")
    local entries = list.entries or list
    return entries[#entries] and entries[#entries].seq or 0
  end

  local function requests(since, method, path)
    local q = "/log?service=k8s&limit=100000&since=" .. since .. (method and ("&method=" .. method) or "")
      .. (path and ("&path=" .. path) or "")
    local list = lab:control("GET", q)
    return list.entries or list
  end

  local function store_version()
    local st = lab:control("GET", "/k8s/state?server=" .. lab.env.K8S_SERVER)
    return st.resourceVersion
  end

  setup(function()
    lab = L.start { args = { "--only", "k8s" } }
    c = assert(k8s.connect { kubeconfig = lab.env.K8S_KUBECONFIG, retry_budget = 10 })
    local dir = H.tmpdir()
    H.write(dir .. "/mirror.js", MIRROR_JS)
    mirror = H.start_node(dir .. "/mirror.js", { FIXTURE, apps.versions.defaults.argocd })
    base = "http://127.0.0.1:" .. mirror.port
  end)

  teardown(function()
    if mirror then mirror.stop() end
    if lab then lab:stop() end
  end)

  it("installs Argo CD and every app, MetalLB's pool once its webhook answers, and the issuers", function()
    -- the webhook refuses the first four MetalLB writes; Argo CD's real health rule is on, so
    -- Traefik's Application is Healthy only once MetalLB's pool gave its Service an address
    lab:control("PATCH", "/profile", { k8s = { webhook_not_ready = 0, webhook_not_ready_requests = 4 } })
    local text = H.read(FIXTURE)
    local p = assert(apps.plan(site { argocd = { url = base .. "/argo-cd/{version}/manifests/install.yaml",
      sha256 = crypto.sha256(text, { hex = true }) } }))
    local since = last_seq()
    local started = sched.now()
    local res, msg, code = apps.install(c, p, { timeout = 60 })
    assert.is_truthy(res, tostring(msg) .. " " .. tostring(code))
    local took = sched.now() - started
    assert.is_true(took < 60, "took " .. took)

    -- the manifest came from the mirror, once
    local hits = require("tlr.http").get(base .. "/hits")
    assert.are.equal("1", hits.body)

    -- Argo CD is up, namespaced objects in argocd
    local sts = assert(c:get("apps/v1", "StatefulSet", "argocd-application-controller", { namespace = "argocd" }))
    assert.is_true((require("tlr.k8s.wait").statefulset_status(sts)))
    for _, d in ipairs { "argocd-server", "argocd-repo-server", "argocd-redis", "argocd-dex-server",
      "argocd-applicationset-controller", "argocd-notifications-controller" } do
      local dep = assert(c:get("apps/v1", "Deployment", d, { namespace = "argocd" }))
      assert.is_true((require("tlr.k8s.wait").deployment_status(dep)), d)
    end
    local crb = assert(c:get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "argocd-server"))
    assert.are.equal("argocd", crb.subjects[1].namespace)

    -- every Application Synced and Healthy, as tlr made it
    for _, name in ipairs(APPS) do
      local a = assert(c:get("argoproj.io/v1alpha1", "Application", name, { namespace = "argocd" }))
      assert.are.same({ "Synced", "Healthy" }, { a.status.sync.status, a.status.health.status }, name)
      assert.are.same({ "resources-finalizer.argocd.argoproj.io" }, a.metadata.finalizers)
    end
    local cm = assert(c:get("argoproj.io/v1alpha1", "Application", "cert-manager", { namespace = "argocd" }))
    assert.is_true(cm.spec.source.helm.valuesObject.crds.enabled)

    -- metallb-system is privileged; the Secrets hold the values
    local ns = assert(c:get("v1", "Namespace", "metallb-system"))
    assert.are.equal("privileged", ns.metadata.labels["pod-security.kubernetes.io/enforce"])
    local s = assert(c:get("v1", "Secret", "cloudflare-api-token", { namespace = "cert-manager" }))
    assert.are.equal(TOKEN, crypto.base64_decode(s.data["api-token"]))
    s = assert(c:get("v1", "Secret", "external-dns-rfc2136", { namespace = "external-dns" }))
    assert.are.equal(TSIG, crypto.base64_decode(s.data["tsig-secret"]))

    -- the pool went in after the webhook's refusals, once the apps were healthy
    local writes = requests(since, "PATCH", "/apis/metallb.io/**")
    local refused, ok_after = 0, {}
    for _, e in ipairs(writes) do
      if e.status == 500 then refused = refused + 1 end
      if e.status >= 200 and e.status < 300 then ok_after[e.path] = e.seq end
    end
    assert.are.equal(4, refused)
    assert.is_truthy(ok_after["/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/default"])
    assert.is_truthy(ok_after["/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements/default"])
    local pool = assert(c:get("metallb.io/v1beta1", "IPAddressPool", "default", { namespace = "metallb-system" }))
    assert.are.same({ "10.0.0.240-10.0.0.250" }, pool.spec.addresses)

    -- and it hands out addresses: a LoadBalancer Service gets one from the range
    assert(c:apply({ apiVersion = "v1", kind = "Service", metadata = { name = "lb-probe", namespace = "traefik" },
      spec = { type = "LoadBalancer", selector = { app = "x" }, ports = { { port = 80 } } } }))
    local svc = assert(c:wait("v1", "Service", "lb-probe", function(o)
      local ing = o.status and o.status.loadBalancer and o.status.loadBalancer.ingress
      return ing ~= nil and ing[1] ~= nil, "no address yet"
    end, { namespace = "traefik", timeout = 10 }))
    local last = tonumber(svc.status.loadBalancer.ingress[1].ip:match("^10%.0%.0%.(%d+)$"))
    assert.is_true(last ~= nil and last >= 240 and last <= 250, svc.status.loadBalancer.ingress[1].ip)
    assert(c:delete("v1", "Service", "lb-probe", { namespace = "traefik" }))

    -- the issuers are Ready (tlr waited for it), their ACME accounts registered
    for _, env in ipairs { "staging", "production" } do
      local i = assert(c:get("cert-manager.io/v1", "ClusterIssuer", "letsencrypt-" .. env))
      assert.are.equal("True", i.status.conditions[1].status)
      assert.are.equal("ACMEAccountRegistered", i.status.conditions[1].reason)
      assert(c:get("v1", "Secret", "letsencrypt-" .. env .. "-account-key", { namespace = "cert-manager" }))
    end
    -- what the charts run, as Argo CD made it
    for _, d in ipairs { { "metallb-system", "metallb-controller" }, { "cert-manager", "cert-manager" },
      { "traefik", "traefik" }, { "external-dns", "external-dns" } } do
      local dep = assert(c:get("apps/v1", "Deployment", d[2], { namespace = d[1] }))
      assert.is_true((require("tlr.k8s.wait").deployment_status(dep)), d[2])
    end
  end)

  it("gives the admin password on request and registers it as a secret", function()
    local pw = assert(apps.admin_password(c, { wait = 10 }))
    -- what argocd-server stored (the fake plays it): 16 characters of Argo CD's alphabet
    local password
    for _, o in ipairs(lab:control("GET", "/k8s/objects?resource=secrets&namespace=argocd")) do
      if o.metadata.name == "argocd-initial-admin-secret" then password = crypto.base64_decode(o.data.password) end
    end
    assert.matches("^[%w%-]+$", password)
    assert.are.equal(16, #password)
    assert.are.equal(password, pw)
    assert.are.equal("pw=<redacted>", log.mask("pw=" .. pw))
    assert.are.equal(password, assert(apps.admin_password(c)))
  end)

  it("changes nothing when installed again", function()
    local rv = store_version()
    local since = last_seq()
    -- the same site, now with the manifest from a local file
    local res, msg = apps.install(c, site { argocd = { file = FIXTURE } }, { timeout = 30 })
    assert.is_truthy(res, msg)
    for _, r in ipairs(res.results) do
      assert.are.equal("configured", r.action, r.kind .. " " .. r.name)
    end
    assert.is_true(#res.results >= 70)
    local writes = requests(since, "PATCH")
    assert.are.equal(#res.results, #writes)
    for _, e in ipairs(writes) do assert.are.equal(200, e.status, e.path) end
    assert.are.equal(rv, store_version())
  end)

  it("reports a mirror without the release and deletes nothing", function()
    local rv = store_version()
    local ok, msg, code = apps.install(c, site { versions = { argocd = "v0.0.1" },
      argocd = { url = base .. "/argo-cd/{version}/manifests/install.yaml" } })
    assert.is_nil(ok)
    assert.are.equal("EAPI", code)
    assert.are.equal("apps: phase argocd: argocd: GET " .. base
      .. "/argo-cd/v0.0.1/manifests/install.yaml: HTTP 404 Not Found", msg)
    assert.are.equal(rv, store_version())
  end)

  it("gives ENOTFOUND once the admin Secret is deleted", function()
    assert(c:delete("v1", "Secret", "argocd-initial-admin-secret", { namespace = "argocd" }))
    local ok, msg, code = apps.admin_password(c)
    assert.is_nil(ok)
    assert.are.equal("ENOTFOUND", code)
    assert.matches("argocd-initial-admin-secret", msg, 1, true)
  end)
end)
