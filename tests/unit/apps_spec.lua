-- tlr.apps: the core apps as data (object shapes, versions and overrides,
-- option checks, secrets kept out of summaries) and the phase runner
-- against a recording stand-in client.
local apps = require "tlr.apps"
local argocd = require "tlr.apps.argocd"
local common = require "tlr.apps.common"
local crypto = require "tlr.crypto"
local json = require "tlr.json"
local log = require "tlr.log"
local sched = require "tlr.sched"
local H = require "helper"

local FIXTURE = "tests/fixtures/argocd/install.yaml"
local TOKEN = "cf-token-8f2d61a0c7e94b5f"
local TSIG = "dGxyLXRzaWctc2VjcmV0LWZvci10ZXN0cw=="

local function site(extra)
  local o = {
    zone = "lab.example.com",
    acme = { email = "ops@example.com" },
    cloudflare = { token = TOKEN },
    dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "tlr-key", key_secret = TSIG },
    metallb = { addresses = { "10.0.0.240-10.0.0.250", "fd00:10::/120" } },
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- every object of a plan, and the one with this kind and name
local function objects(p)
  local out = {}
  for _, ph in ipairs(p.phases) do
    for _, obj in ipairs(ph.objects) do out[#out + 1] = obj end
  end
  return out
end
local function find(p, kind, name)
  for _, obj in ipairs(objects(p)) do
    if obj.kind == kind and obj.metadata.name == name then return obj end
  end
end
-- a Secret's values, decoded
local function values_of(secret)
  assert.is_nil(secret.stringData)
  local out = {}
  for k, v in pairs(secret.data) do out[k] = assert(crypto.base64_decode(v)) end
  return out
end
local function phase_names(p)
  local out = {}
  for i, ph in ipairs(p.phases) do out[i] = ph.name end
  return out
end

describe("tlr.apps", function()
  describe("versions", function()
    it("pins every component and takes overrides", function()
      local v = apps.versions.resolve()
      assert.are.same({ "argocd", "cert_manager", "external_dns", "metallb", "traefik" },
        (function() local k = {} for n in pairs(v) do k[#k + 1] = n end table.sort(k) return k end)())
      assert.are.equal("v3.5.1", v.argocd)
      local o = apps.versions.resolve { traefik = "41.3.0", argocd = "v3.4.9" }
      assert.are.equal("41.3.0", o.traefik)
      assert.are.equal("v3.4.9", o.argocd)
      assert.are.equal(v.metallb, o.metallb)
      -- the defaults table is not changed by an override
      assert.are.equal("41.4.0", apps.versions.defaults.traefik)
    end)

    it("reaches the objects: chart versions, the manifest URL, repository mirrors", function()
      local p = assert(apps.plan(site { versions = { cert_manager = "v1.20.0", argocd = "v3.4.0" },
        repos = { metallb = "https://charts.mirror.test/metallb" } }))
      assert.are.equal("v1.20.0", find(p, "Application", "cert-manager").spec.source.targetRevision)
      assert.are.equal("https://raw.githubusercontent.com/argoproj/argo-cd/v3.4.0/manifests/install.yaml", p.manifest.url)
      assert.are.equal("https://charts.mirror.test/metallb", find(p, "Application", "metallb").spec.source.repoURL)
      assert.are.equal(apps.versions.defaults.traefik, find(p, "Application", "traefik").spec.source.targetRevision)
    end)

    it("raises for unknown components and malformed versions", function()
      assert.has_error(function() apps.versions.resolve { nginx = "1.0" } end)
      assert.has_error(function() apps.versions.resolve { traefik = "41 .0" } end)
      assert.has_error(function() apps.versions.resolve { traefik = 41 } end)
      assert.has_error(function() apps.plan(site { versions = { metallb = "" } }) end)
      assert.has_error(function() apps.versions.repos { traefik = "not a url" } end)
    end)
  end)

  describe("Argo CD", function()
    it("finds the manifest at the release URL, a mirror or a file, pinned by sha256", function()
      assert.are.equal("https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
        argocd.source("v3.5.1").url)
      assert.are.equal("https://mirror.test/argo/v3.5.1/install.yaml",
        argocd.source("v3.5.1", { url = "https://mirror.test/argo/{version}/install.yaml" }).url)
      local src = argocd.source("v3.5.1", { file = FIXTURE, sha256 = string.rep("AB", 32) })
      assert.are.same({ FIXTURE, nil, string.rep("ab", 32) }, { src.file, src.url, src.sha256 })
      assert.has_error(function() argocd.source("v3.5.1", { file = "a", url = "https://b" }) end)
      assert.has_error(function() argocd.source("v3.5.1", { url = "ftp://x" }) end)
      assert.has_error(function() argocd.source("v3.5.1", { sha256 = "abc" }) end)
      assert.has_error(function() argocd.source("v3.5.1", { mirror = "x" }) end)
    end)

    it("reads a local manifest and checks its checksum", function()
      local text = H.read(FIXTURE)
      local sum = crypto.sha256(text, { hex = true })
      assert.are.equal(text, assert(argocd.fetch(argocd.source("v3.5.1", { file = FIXTURE, sha256 = sum }))))
      local bad = string.rep("0", 64)
      local ok, msg, code = argocd.fetch(argocd.source("v3.5.1", { file = FIXTURE, sha256 = bad }))
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.matches("sha256 " .. sum .. ", expected " .. bad, msg, 1, true)
      ok, msg, code = argocd.fetch(argocd.source("v3.5.1", { file = "tests/fixtures/argocd/missing.yaml" }))
      assert.is_nil(ok)
      assert.are.equal("ENOENT", code)
      assert.matches("^argocd: ", msg)
    end)

    it("gives install.yaml's namespaced objects the namespace argocd, cluster-scoped ones none", function()
      local list = assert(argocd.objects(H.read(FIXTURE)))
      assert.are.equal(59, #list)
      local kinds, crb = {}, 0
      for _, obj in ipairs(list) do
        kinds[obj.kind] = (kinds[obj.kind] or 0) + 1
        local cluster = obj.kind == "CustomResourceDefinition" or obj.kind == "ClusterRole"
          or obj.kind == "ClusterRoleBinding"
        if cluster then
          assert.is_nil(obj.metadata.namespace, obj.kind .. " " .. obj.metadata.name)
        else
          assert.are.equal("argocd", obj.metadata.namespace, obj.kind .. " " .. obj.metadata.name)
        end
        if obj.kind == "ClusterRoleBinding" then
          crb = crb + 1
          assert.are.equal("argocd", obj.subjects[1].namespace)
        end
      end
      assert.are.equal(3, crb)
      assert.are.same({ 3, 6, 1, 8, 2 }, { kinds.CustomResourceDefinition, kinds.Deployment, kinds.StatefulSet,
        kinds.Service, kinds.Secret })
    end)

    it("refuses manifests that are not Argo CD's or name another namespace", function()
      local ok, msg, code = argocd.objects("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.matches("applications.argoproj.io", msg, 1, true)
      ok, msg, code = argocd.objects(H.read(FIXTURE) .. "---\napiVersion: v1\nkind: ConfigMap\n"
        .. "metadata: {name: x, namespace: kube-system}\n")
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.matches("ConfigMap x is in namespace kube-system, not argocd", msg, 1, true)
      ok, _, code = argocd.objects("<html>404</html>")
      assert.are.same({ nil, "EINVAL" }, { ok, code })
      ok, _, code = argocd.objects("a: [unclosed")
      assert.are.same({ nil, "EINVAL" }, { ok, code })
    end)
  end)

  describe("Applications", function()
    local p
    setup(function() p = assert(apps.plan(site { git = { repo = "https://git.test/me/cluster.git",
      path = "clusters/lab", recurse = true } })) end)

    it("render Helm charts in Argo CD with automated sync, CreateNamespace, ServerSideApply and the finalizer", function()
      for _, name in ipairs { "cert-manager", "traefik", "metallb", "external-dns" } do
        local a = find(p, "Application", name)
        assert.are.equal("argoproj.io/v1alpha1", a.apiVersion)
        assert.are.equal("argocd", a.metadata.namespace)
        assert.are.same({ "resources-finalizer.argocd.argoproj.io" }, a.metadata.finalizers)
        assert.are.equal("tlr", a.metadata.labels["app.kubernetes.io/managed-by"])
        assert.are.equal("default", a.spec.project)
        assert.are.same({ prune = true, selfHeal = true }, a.spec.syncPolicy.automated)
        assert.are.equal("CreateNamespace=true", a.spec.syncPolicy.syncOptions[1])
        assert.are.equal("ServerSideApply=true", a.spec.syncPolicy.syncOptions[2])
        assert.are.equal("https://kubernetes.default.svc", a.spec.destination.server)
        assert.are.equal(name, a.spec.source.chart)
        assert.are.equal(name, a.spec.source.helm.releaseName)
        assert.is_nil(a.spec.source.path)
      end
      assert.are.equal("https://charts.jetstack.io", find(p, "Application", "cert-manager").spec.source.repoURL)
      assert.are.equal("https://traefik.github.io/charts", find(p, "Application", "traefik").spec.source.repoURL)
      assert.are.equal("metallb-system", find(p, "Application", "metallb").spec.destination.namespace)
    end)

    it("turn on cert-manager's CRDs and merge a site's values over tlr's", function()
      assert.are.same({ crds = { enabled = true } },
        find(p, "Application", "cert-manager").spec.source.helm.valuesObject)
      local q = assert(apps.plan(site { cert_manager = { values = { replicaCount = 2, crds = { keep = false } } },
        traefik = { values = { ingressClass = { isDefaultClass = false } } } }))
      assert.are.same({ crds = { enabled = true, keep = false }, replicaCount = 2 },
        find(q, "Application", "cert-manager").spec.source.helm.valuesObject)
      local tv = find(q, "Application", "traefik").spec.source.helm.valuesObject
      assert.are.same({ enabled = true, isDefaultClass = false }, tv.ingressClass)
      assert.is_true(tv.providers.kubernetesIngress.publishedService.enabled)
      -- the module's own defaults are untouched
      assert.is_true(apps.traefik.VALUES.ingressClass.isDefaultClass)
      -- a fixed address for the ingress, from MetalLB's pool
      assert.is_nil(find(p, "Application", "traefik").spec.source.helm.valuesObject.service)
      local r = assert(apps.plan(site { traefik = { ip = "10.0.0.240" } }))
      assert.are.same({ annotations = { ["metallb.io/loadBalancerIPs"] = "10.0.0.240" } },
        find(r, "Application", "traefik").spec.source.helm.valuesObject.service)
    end)

    it("label metallb-system privileged and ignore the CRDs' caBundle", function()
      local ns = find(p, "Namespace", "metallb-system")
      for _, mode in ipairs { "enforce", "audit", "warn" } do
        assert.are.equal("privileged", ns.metadata.labels["pod-security.kubernetes.io/" .. mode])
      end
      local a = find(p, "Application", "metallb")
      assert.are.equal("privileged", a.spec.syncPolicy.managedNamespaceMetadata.labels["pod-security.kubernetes.io/enforce"])
      assert.are.same({ { group = "apiextensions.k8s.io", kind = "CustomResourceDefinition",
        jsonPointers = { "/spec/conversion/webhook/clientConfig/caBundle" } } }, a.spec.ignoreDifferences)
      assert.are.equal("RespectIgnoreDifferences=true", a.spec.syncPolicy.syncOptions[3])
      -- other namespaces keep Talos' baseline
      assert.is_nil(find(p, "Namespace", "traefik").metadata.labels["pod-security.kubernetes.io/enforce"])
    end)

    it("point the app-of-apps at the site's Git repository", function()
      local a = find(p, "Application", "apps")
      assert.are.same({ repoURL = "https://git.test/me/cluster.git", targetRevision = "HEAD", path = "clusters/lab",
        directory = { recurse = true } }, a.spec.source)
      assert.are.equal("argocd", a.spec.destination.namespace)
      assert.are.same({ "resources-finalizer.argocd.argoproj.io" }, a.metadata.finalizers)
      assert.are.same({ "argocd", "prerequisites", "applications", "configuration", "gitops" }, phase_names(p))
      -- no repository Secret without credentials
      for _, obj in ipairs(objects(p)) do
        assert.is_false(obj.kind == "Secret" and obj.metadata.namespace == "argocd")
      end
      assert.is_nil(find(assert(apps.plan(site())), "Application", "apps"))
    end)

    it("give a private repository a repository Secret", function()
      local q = assert(apps.plan(site { git = { repo = "git@git.test:me/cluster.git",
        ssh_private_key = "-----BEGIN KEY-----x" } }))
      local s = find(q, "Secret", "repo-apps")
      assert.are.equal("argocd", s.metadata.namespace)
      assert.are.equal("repository", s.metadata.labels["argocd.argoproj.io/secret-type"])
      assert.are.same({ type = "git", url = "git@git.test:me/cluster.git", sshPrivateKey = "-----BEGIN KEY-----x" },
        values_of(s))
    end)
  end)

  describe("external-dns", function()
    local function values(p) return find(p, "Application", "external-dns").spec.source.helm.valuesObject end

    it("speaks rfc2136 with the TSIG secret from a Secret, never in its arguments", function()
      local p = assert(apps.plan(site()))
      local v = values(p)
      assert.are.same({ name = "rfc2136" }, v.provider)
      assert.are.same({ "--rfc2136-host=10.0.0.2", "--rfc2136-port=53", "--rfc2136-zone=lab.example.com",
        "--rfc2136-tsig-keyname=tlr-key", "--rfc2136-tsig-secret-alg=hmac-sha256", "--rfc2136-axfr" }, v.extraArgs)
      assert.are.same({ { name = "EXTERNAL_DNS_RFC2136_TSIG_SECRET",
        valueFrom = { secretKeyRef = { name = "external-dns-rfc2136", key = "tsig-secret" } } } }, v.env)
      assert.are.same({ "sync", "txt", "tlr" }, { v.policy, v.registry, v.txtOwnerId })
      assert.are.same({ "lab.example.com" }, v.domainFilters)
      assert.are.same({ "service", "ingress" }, v.sources)
      local s = find(p, "Secret", "external-dns-rfc2136")
      assert.are.equal("external-dns", s.metadata.namespace)
      assert.are.same({ ["tsig-secret"] = TSIG }, values_of(s))
      assert.is_nil(json.encode(v):find(TSIG, 1, true))
    end)

    it("takes rfc2136 details: port, algorithm, zone, no AXFR, policy, owner", function()
      local p = assert(apps.plan(site { dns = { provider = "rfc2136", server = "ns1.example.com", port = 5353,
        zone = "k8s.example.com.", key_name = "k", key_algorithm = "hmac-sha512", key_secret = TSIG, axfr = false,
        policy = "upsert-only", owner_id = "lab-1", sources = { "service" } } }))
      local v = values(p)
      assert.are.same({ "--rfc2136-host=ns1.example.com", "--rfc2136-port=5353", "--rfc2136-zone=k8s.example.com",
        "--rfc2136-tsig-keyname=k", "--rfc2136-tsig-secret-alg=hmac-sha512" }, v.extraArgs)
      assert.are.same({ "upsert-only", "lab-1" }, { v.policy, v.txtOwnerId })
      assert.are.same({ "k8s.example.com" }, v.domainFilters)
      assert.are.same({ "service" }, v.sources)
    end)

    it("speaks to Cloudflare with CF_API_TOKEN from a Secret in its namespace", function()
      local p = assert(apps.plan(site { dns = { provider = "cloudflare" },
        cloudflare = { token = TOKEN, proxied = true } }))
      local v = values(p)
      assert.are.same({ name = "cloudflare" }, v.provider)
      assert.are.same({ { name = "CF_API_TOKEN",
        valueFrom = { secretKeyRef = { name = "cloudflare-api-token", key = "api-token" } } } }, v.env)
      assert.are.same({ "--cloudflare-proxied" }, v.extraArgs)
      local secrets = {}
      for _, obj in ipairs(objects(p)) do
        if obj.kind == "Secret" then secrets[obj.metadata.namespace .. "/" .. obj.metadata.name] = values_of(obj) end
      end
      assert.are.same({ ["external-dns/cloudflare-api-token"] = { ["api-token"] = TOKEN },
        ["cert-manager/cloudflare-api-token"] = { ["api-token"] = TOKEN } }, secrets)
      -- an existing Secret instead of a token: nothing to make, both refer to it
      local q = assert(apps.plan(site { dns = { provider = "cloudflare" }, cloudflare = { secret = "cf", key = "t" } }))
      for _, obj in ipairs(objects(q)) do assert.are_not.equal("Secret", obj.kind) end
      assert.are.same({ name = "cf", key = "t" }, values(q).env[1].valueFrom.secretKeyRef)
      assert.are.same({ name = "cf", key = "t" },
        find(q, "ClusterIssuer", "letsencrypt-production").spec.acme.solvers[1].dns01.cloudflare.apiTokenSecretRef)
    end)
  end)

  describe("cert-manager issuers", function()
    it("make staging and production ClusterIssuers for DNS-01 through Cloudflare", function()
      local p = assert(apps.plan(site()))
      local st, pr = find(p, "ClusterIssuer", "letsencrypt-staging"), find(p, "ClusterIssuer", "letsencrypt-production")
      assert.are.equal("https://acme-staging-v02.api.letsencrypt.org/directory", st.spec.acme.server)
      assert.are.equal("https://acme-v02.api.letsencrypt.org/directory", pr.spec.acme.server)
      for _, i in ipairs { st, pr } do
        assert.are.equal("cert-manager.io/v1", i.apiVersion)
        assert.is_nil(i.metadata.namespace)
        assert.are.equal("ops@example.com", i.spec.acme.email)
        assert.are.equal(i.metadata.name .. "-account-key", i.spec.acme.privateKeySecretRef.name)
        local ref = { name = "cloudflare-api-token", key = "api-token" }
        assert.are.same({ { dns01 = { cloudflare = { apiTokenSecretRef = ref } },
          selector = { dnsZones = { "lab.example.com" } } } }, i.spec.acme.solvers)
      end
      local s = find(p, "Secret", "cloudflare-api-token")
      assert.are.equal("cert-manager", s.metadata.namespace)
      assert.are.same({ ["api-token"] = TOKEN }, values_of(s))
      -- applied once their CRD is served, then waited for until Ready
      local cfg = p.phases[4]
      assert.are.equal("configuration", cfg.name)
      assert.are.same({ wait = "crd", name = "clusterissuers.cert-manager.io" }, cfg.before[3])
      -- Traefik first: its LoadBalancer Service is only healthy once MetalLB's pool exists
      assert.are.same({ wait = "application", name = "traefik" }, cfg.after[1])
      assert.are.same({ wait = "condition", api_version = "cert-manager.io/v1", kind = "ClusterIssuer",
        name = "letsencrypt-staging", type = "Ready" }, cfg.after[2])
      for _, w in ipairs(p.phases[3].after) do assert.are_not.equal("traefik", w.name) end
    end)

    it("can be limited to one environment and left unwaited", function()
      local p = assert(apps.plan(site { acme = { email = "a@b.c", issuers = { "staging" }, wait = false } }))
      assert.is_not_nil(find(p, "ClusterIssuer", "letsencrypt-staging"))
      assert.is_nil(find(p, "ClusterIssuer", "letsencrypt-production"))
      assert.are.same({ { wait = "application", name = "traefik" } }, p.phases[4].after)
    end)
  end)

  describe("MetalLB's pool", function()
    it("is an IPAddressPool and an L2Advertisement, applied after the CRDs, with webhook retries", function()
      local p = assert(apps.plan(site()))
      local pool, l2 = find(p, "IPAddressPool", "default"), find(p, "L2Advertisement", "default")
      assert.are.same({ "metallb.io/v1beta1", "metallb-system" }, { pool.apiVersion, pool.metadata.namespace })
      assert.are.same({ "10.0.0.240-10.0.0.250", "fd00:10::/120" }, pool.spec.addresses)
      assert.are.same({ "default" }, l2.spec.ipAddressPools)
      local cfg = p.phases[4]
      assert.are.same({ { wait = "crd", name = "ipaddresspools.metallb.io" },
        { wait = "crd", name = "l2advertisements.metallb.io" } }, { cfg.before[1], cfg.before[2] })
      assert.are.equal(300, cfg.apply.retry_budget)
      local objs = apps.metallb.pool { addresses = { "192.168.1.0/28" }, name = "lan", l2 = false, auto_assign = false }
      assert.are.equal(1, #objs)
      assert.are.same({ addresses = { "192.168.1.0/28" }, autoAssign = false }, objs[1].spec)
    end)

    it("accepts only CIDRs and address ranges", function()
      for _, good in ipairs { "10.0.0.0/28", "10.0.0.240-10.0.0.250", "10.0.0.240 - 10.0.0.250", "fd00::/120",
        "fd00::10-fd00::20", "2001:db8:0:0:0:0:0:1/128" } do
        assert.is_true(common.is_address_range(good), good)
      end
      for _, bad in ipairs { "10.0.0.0", "10.0.0.0/33", "10.0.0.256/24", "10.0.0.1-fd00::1", "a-b", "010.0.0.1/8",
        "fd00:::1/64", "1::2::3/64" } do
        assert.is_false(common.is_address_range(bad), bad)
        assert.has_error(function() apps.plan(site { metallb = { addresses = { bad } } }) end)
      end
      assert.has_error(function() apps.plan(site { metallb = { addresses = {} } }) end)
    end)
  end)

  describe("options", function()
    it("include only what the site configures", function()
      local p = assert(apps.plan {})
      assert.are.same({ "argocd", "prerequisites", "applications" }, phase_names(p))
      assert.is_not_nil(find(p, "Application", "cert-manager"))
      assert.is_not_nil(find(p, "Application", "traefik"))
      assert.is_nil(find(p, "Application", "metallb"))
      assert.is_nil(find(p, "Application", "external-dns"))
      local q = assert(apps.plan { traefik = false, cert_manager = false, metallb = { addresses = { "10.0.0.0/28" } } })
      assert.is_nil(find(q, "Application", "traefik"))
      assert.is_nil(find(q, "Application", "cert-manager"))
      assert.is_not_nil(find(q, "Application", "metallb"))
    end)

    it("raise for unknown keys, wrong types and contradictions", function()
      local cases = {
        { { colour = "blue" }, "unknown option 'colour'" },
        { { zone = "not a zone" }, "zone must be a DNS name" },
        { { acme = { email = "ops@example.com", bogus = 1 }, cloudflare = { token = TOKEN } }, "unknown option 'bogus'" },
        { { acme = { email = "ops@example.com" } }, "acme needs cloudflare" },
        { { acme = { email = "ops@example.com" }, cloudflare = { token = TOKEN }, cert_manager = false },
          "acme needs cert-manager" },
        { { acme = { email = "not-an-email" }, cloudflare = { token = TOKEN } }, "acme.email must be an address" },
        { { acme = { email = "a@b.c", issuers = { "test" } }, cloudflare = { token = TOKEN } },
          "staging or production expected, got test" },
        { { acme = { email = "a@b.c", zones = { "bad zone" } }, cloudflare = { token = TOKEN } }, "acme.zones: bad zone" },
        { { cloudflare = {} }, "cloudflare needs token or secret" },
        { { cloudflare = { token = TOKEN, secret = "x" } }, "cloudflare needs token or secret" },
        { { cloudflare = { token = 42 } }, "option 'token': string or table expected" },
        { { cloudflare = { token = { env = "X", file = "y" } } }, "{env = NAME} or {file = PATH} expected" },
        { { dns = { provider = "route53", zone = "a.b" } }, "dns.provider must be rfc2136 or cloudflare" },
        { { dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "k", key_secret = TSIG } },
          "dns.zone (or zone) is required" },
        { { zone = "a.b", dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "k" } },
          "dns needs key_secret or secret" },
        { { zone = "a.b", dns = { provider = "rfc2136", server = "10.0.0.2", key_secret = TSIG } },
          "key_name is required" },
        { { zone = "a.b", dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "k", key_secret = TSIG,
          key_algorithm = "hmac-sha3" } }, "unknown key_algorithm hmac-sha3" },
        { { zone = "a.b", dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "k", key_secret = TSIG,
          policy = "delete-all" } }, "policy must be sync, upsert-only or create-only" },
        { { zone = "a.b", dns = { provider = "rfc2136", server = "not an address", key_name = "k", key_secret = TSIG } },
          "server must be an address or a name" },
        { { zone = "a.b", dns = { provider = "cloudflare" } }, "dns.provider cloudflare needs cloudflare" },
        { { metallb = { addresses = "10.0.0.0/28" } }, "option 'addresses': table expected" },
        { { traefik = true }, "traefik must be a table or false" },
        { { traefik = { replicas = 2 } }, "unknown option 'replicas'" },
        { { traefik = { ip = "10.0.0.300" }, metallb = { addresses = { "10.0.0.0/24" } } }, "traefik.ip must be an IP" },
        { { traefik = { ip = "10.0.0.30" } }, "traefik.ip needs metallb" },
        { { git = {} }, "git.repo is required" },
        { { git = { repo = "https://x", name = "Bad_Name" } }, "git.name must be an object name" },
        { { argocd = { file = "a", url = "https://b" } }, "url and file exclude each other" },
        { { argocd = { path = "a" } }, "unknown option 'path'" },
      }
      for i, c in ipairs(cases) do
        local ok, err = pcall(apps.plan, c[1])
        assert.is_false(ok, "case " .. i)
        assert.is_truthy(tostring(err):find(c[2], 1, true), "case " .. i .. ": " .. tostring(err))
      end
      assert.has_error(function() apps.plan("site") end)
    end)

    it("read secret references from the environment or a file, and fail when they cannot", function()
      local dir = H.tmpdir()
      H.write(dir .. "/token", TOKEN .. "\n")
      local p = assert(apps.plan(site { cloudflare = { token = { file = dir .. "/token" } } }))
      assert.are.same({ ["api-token"] = TOKEN }, values_of(find(p, "Secret", "cloudflare-api-token")))
      -- PATH: a variable every environment has (its value becomes a registered secret, harmless)
      local path = assert(os.getenv("PATH"))
      local q = assert(apps.plan(site { dns = { provider = "rfc2136", server = "10.0.0.2", key_name = "k",
        key_secret = { env = "PATH" } } }))
      assert.are.equal(path, values_of(find(q, "Secret", "external-dns-rfc2136"))["tsig-secret"])
      local ok, msg, code = apps.plan(site { cloudflare = { token = { env = "TLR_APPS_SPEC_UNSET_VARIABLE" } } })
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.are.equal("cloudflare.token: environment variable TLR_APPS_SPEC_UNSET_VARIABLE is not set", msg)
      ok, msg, code = apps.plan(site { cloudflare = { token = { file = dir .. "/absent" } } })
      assert.is_nil(ok)
      assert.are.equal("ENOENT", code)
      assert.matches("^cloudflare%.token: ", msg)
      os.execute("rm -rf " .. dir)
    end)
  end)

  describe("summaries", function()
    it("show every object and wait, and no secret", function()
      local text = apps.summary(assert(apps.plan(site { git = { repo = "https://git.test/c.git",
        password = "git-password-123", username = "me" } })))
      for _, want in ipairs {
        "apps: argocd v3.5.1, cert-manager v1.21.2, external-dns 1.21.1, metallb 0.16.0, traefik 41.4.0",
        "Argo CD v3.5.1 install manifest from https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
        "Namespace metallb-system (pod security privileged)",
        "Secret cert-manager/cloudflare-api-token (api-token=<redacted>)",
        "Secret external-dns/external-dns-rfc2136 (tsig-secret=<redacted>)",
        "Secret argocd/repo-apps (password=<redacted>, type=<redacted>, url=<redacted>, username=<redacted>)",
        "Application argocd/cert-manager: chart cert-manager v1.21.2 from https://charts.jetstack.io into namespace cert-manager",
        "then wait for Application metallb Synced and Healthy",
        "wait for CRD ipaddresspools.metallb.io Established",
        "IPAddressPool metallb-system/default: 10.0.0.240-10.0.0.250, fd00:10::/120",
        "ClusterIssuer letsencrypt-staging: ACME https://acme-staging-v02.api.letsencrypt.org/directory for ops@example.com",
        "then wait for ClusterIssuer letsencrypt-production Ready",
        "Application argocd/apps: https://git.test/c.git path . at HEAD",
      } do
        assert.is_truthy(text:find(want, 1, true), want)
      end
      for _, secret in ipairs { TOKEN, TSIG, "git-password-123" } do
        assert.is_nil(text:find(secret, 1, true), secret)
        -- and every secret was registered for the logs
        assert.are.equal("x <redacted> y", log.mask("x " .. secret .. " y"))
      end
      local red = apps.redact(find(assert(apps.plan(site())), "Secret", "cloudflare-api-token"))
      assert.are.same({ ["api-token"] = "<redacted>" }, red.data)
    end)
  end)

  describe("install", function()
    -- A stand-in client that records what install asks of it.
    local function recorder(fail)
      local c = { calls = {}, discovery = { crds_applied = function(_, groups)
        return groups end } }
      local function rec(...)
        c.calls[#c.calls + 1] = table.concat({ ... }, " ")
      end
      function c.apply(_, list, o)
        local names = {}
        for _, obj in ipairs(list) do names[#names + 1] = obj.kind end
        rec("apply", #list, o.namespace or "-", tostring(o.force), tostring(o.retry_budget))
        c.last = list
        if fail and fail(list) then return nil, "apply configmap x: boom", "EAPI" end
        local out = {}
        for i, obj in ipairs(list) do
          out[i] = { kind = obj.kind, name = obj.metadata.name, action = "created", object = obj }
        end
        return out
      end
      function c.wait_ready(_, results) rec("wait_ready", #results) return true end
      function c.wait_application(_, name) sched.sleep(0.001) rec("wait_application", name) return {} end
      function c.wait_crd(_, name) rec("wait_crd", name) return {} end
      function c.wait_condition(_, av, kind, name, ctype) rec("wait_condition", av, kind, name, ctype) return {} end
      return c
    end

    it("applies the phases in order, with the manifest and the waits in between", function()
      local c = recorder()
      local p = assert(apps.plan(site { argocd = { file = FIXTURE } }))
      local res = assert(apps.install(c, p, { webhook_budget = 120 }))
      local seq = {}
      for _, call in ipairs(c.calls) do
        local verb = call:match("^(%S+)")
        if verb ~= seq[#seq] then seq[#seq + 1] = verb end
      end
      -- after the configuration phase: the issuers and Traefik (whose Service needs the pool)
      local last = { seq[7], seq[8] }
      table.sort(last)
      seq[7], seq[8] = nil, nil
      assert.are.same({ "apply", "wait_ready", "apply", "wait_application", "wait_crd", "apply" }, seq)
      assert.are.same({ "wait_application", "wait_condition" }, last)
      assert.matches("^apply 6 ", c.calls[3]) -- namespaces and Secrets, then the Applications
      assert.matches("^apply 4 ", c.calls[4])
      assert.are.equal("apply 60 argocd true nil", c.calls[1]) -- the Namespace and install.yaml's 59 objects
      assert.are.equal("wait_ready 60", c.calls[2])
      local cfg
      for _, call in ipairs(c.calls) do
        if call:match("^apply 4 ") then cfg = call end
      end
      assert.are.equal("apply 4 - true 120", cfg) -- pool, advertisement, two issuers: webhook budget
      assert.are.same({ "argocd", "prerequisites", "applications", "configuration" },
        (function() local n = {} for i, ph in ipairs(res.phases) do n[i] = ph.name end return n end)())
      assert.are.equal(60, res.phases[1].created)
      assert.are.equal(#res.results, 60 + 6 + 4 + 4)
    end)

    it("takes the site options too, and names the phase that failed", function()
      local c = recorder(function(list) return list[1].kind == "Application" end)
      local ok, msg, code = apps.install(c, site(), { manifest = H.read(FIXTURE) })
      assert.is_nil(ok)
      assert.are.equal("EAPI", code)
      assert.are.equal("apps: phase applications: apply configmap x: boom", msg)
      -- a manifest that is not Argo CD's stops before anything is applied
      c = recorder()
      ok, msg, code = apps.install(c, site(), { manifest = "kind: x\n" })
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.matches("^apps: phase argocd: argocd: install manifest", msg)
      assert.are.same({}, c.calls)
      assert.has_error(function() apps.install(c, site(), { bogus = true }) end)
      assert.has_error(function() apps.install({}, site()) end)
    end)
  end)
end)
