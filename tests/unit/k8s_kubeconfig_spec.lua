-- tlr.k8s.kubeconfig (read, resolve, make, merge, remove, write), and the
-- offline parts of tlr.k8s: connect from a kubeconfig, the manifest reader
-- of apply, and the rollout / condition rules of the waits.
local crypto = require "tlr.crypto"
local fs = require "tlr.fs"
local k8s = require "tlr.k8s"
local kubeconfig = require "tlr.k8s.kubeconfig"
local log = require "tlr.log"
local wait = require "tlr.k8s.wait"
local yaml = require "tlr.yaml"

local function b64(s) return crypto.base64_encode(s) end

-- A CA and a client certificate made with tlr.crypto (no files).
local pki = (function()
  local ca_key = assert(crypto.generate_key { type = "ecdsa" })
  local ca = assert(crypto.create_ca { key = ca_key, subject = { CN = "kubernetes" }, days = 1 })
  local key = assert(crypto.generate_key { type = "ecdsa" })
  local cert = assert(crypto.sign_cert { ca_key = ca_key, ca_cert = ca, public_key = key,
    subject = { CN = "admin", O = "system:masters" }, days = 1, ext_key_usage = { "client_auth" } })
  return { ca = ca, cert = cert, key = key:pem() }
end)()

local function sample(extra)
  local text = table.concat({
    "apiVersion: v1",
    "kind: Config",
    "current-context: admin@lab",
    "clusters:",
    "- name: lab",
    "  cluster:",
    "    server: https://127.0.0.1:6443/",
    "    certificate-authority-data: " .. b64(pki.ca),
    "- name: other",
    "  cluster:",
    "    server: https://10.0.0.1:6443",
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: admin@lab",
    "  user:",
    "    client-certificate-data: " .. b64(pki.cert),
    "    client-key-data: " .. b64(pki.key),
    "- name: robot",
    "  user:",
    "    token: tok-0123456789",
    "contexts:",
    "- name: admin@lab",
    "  context: {cluster: lab, user: admin@lab}",
    "- name: robot@other",
    "  context: {cluster: other, user: robot, namespace: argocd}",
    extra or "",
  }, "\n")
  return text
end

describe("tlr.k8s.kubeconfig", function()
  local dir

  before_each(function() dir = assert(fs.tmpdir("tlr-kubeconfig-spec")) end)
  after_each(function() assert(fs.remove(dir, { recursive = true })) end)

  describe("resolve", function()
    it("decodes the *-data fields of the current context", function()
      local cfg = assert(kubeconfig.parse(sample()))
      local s = assert(kubeconfig.resolve(cfg))
      assert.are.equal("admin@lab", s.context)
      assert.are.equal("lab", s.cluster)
      assert.are.equal("https://127.0.0.1:6443", s.server) -- trailing slash dropped
      assert.are.equal(pki.ca, s.ca)
      assert.are.equal(pki.cert, s.cert)
      assert.are.equal(pki.key, s.key)
      assert.is_nil(s.token)
      assert.is_false(s.insecure)
      assert.are.equal("default", s.namespace)
    end)

    it("takes another context with a token, insecure-skip-tls-verify and a namespace", function()
      local cfg = assert(kubeconfig.parse(sample()))
      local s = assert(kubeconfig.resolve(cfg, { context = "robot@other" }))
      assert.are.equal("tok-0123456789", s.token)
      assert.is_true(s.insecure)
      assert.is_nil(s.ca)
      assert.is_nil(s.cert)
      assert.are.equal("argocd", s.namespace)
      assert.are.same({ "admin@lab", "robot@other" }, kubeconfig.contexts(cfg))
    end)

    it("registers tokens and keys as secrets", function()
      local cfg = assert(kubeconfig.parse(sample()))
      assert(kubeconfig.resolve(cfg, { context = "robot@other" }))
      assert(kubeconfig.resolve(cfg))
      assert.are.equal("token <redacted>", log.mask("token tok-0123456789"))
      assert.is_nil(log.mask(pki.key):find("PRIVATE KEY", 1, true))
      assert.is_nil(log.mask(b64(pki.key)):find(b64(pki.key):sub(1, 20), 1, true))
    end)

    it("reads file forms relative to the kubeconfig's directory; data wins over files", function()
      assert(fs.mkdir(dir .. "/pki"))
      assert(fs.write(dir .. "/pki/ca.crt", pki.ca))
      assert(fs.write(dir .. "/pki/admin.crt", pki.cert))
      assert(fs.write(dir .. "/pki/admin.key", pki.key))
      assert(fs.write(dir .. "/token", "file-token-42\n"))
      local text = table.concat({
        "current-context: files",
        "clusters:",
        "- name: c",
        "  cluster: {server: 'https://127.0.0.1:6443', certificate-authority: pki/ca.crt}",
        "- name: both",
        "  cluster: {server: 'https://127.0.0.1:6443', certificate-authority: missing.crt,",
        "            certificate-authority-data: " .. b64(pki.ca) .. "}",
        "users:",
        "- name: u",
        "  user: {client-certificate: pki/admin.crt, client-key: " .. dir .. "/pki/admin.key}",
        "- name: t",
        "  user: {tokenFile: token}",
        "contexts:",
        "- {name: files, context: {cluster: c, user: u}}",
        "- {name: both, context: {cluster: both, user: t}}",
      }, "\n")
      assert(fs.write(dir .. "/config", text))
      local s = assert(kubeconfig.load(dir .. "/config"))
      assert.are.equal(pki.ca, s.ca)
      assert.are.equal(pki.cert, s.cert)
      assert.are.equal(pki.key, s.key)
      s = assert(kubeconfig.load(dir .. "/config", { context = "both" }))
      assert.are.equal(pki.ca, s.ca)
      assert.are.equal("file-token-42", s.token)
      -- a file that is not there
      assert(fs.remove(dir .. "/pki/ca.crt"))
      local none, msg, code = kubeconfig.load(dir .. "/config")
      assert.is_nil(none)
      assert.are.equal("ENOENT", code)
      assert.matches("certificate%-authority", msg)
    end)

    it("turns Talos' ED25519 PRIVATE KEY into PKCS#8 for curl", function()
      local key = assert(crypto.generate_key { type = "ed25519" })
      local talos_pem = key:pem { format = "ed25519" }
      assert.matches("BEGIN ED25519 PRIVATE KEY", talos_pem)
      local cfg = kubeconfig.make("lab", { server = "https://127.0.0.1:6443", ca = pki.ca, cert = pki.cert,
        key = talos_pem })
      local s = assert(kubeconfig.resolve(cfg))
      assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-", s.key)
      assert.are.equal(key:public_pem(), assert(crypto.load_key(s.key)):public_pem())
    end)

    it("fails with EINVAL and says why", function()
      local cases = {
        { "current-context: ''\nclusters: []", nil, "no current%-context" },
        { sample(), "nope", 'no context "nope"' },
        { "current-context: x\ncontexts:\n- {name: x, context: {cluster: gone}}", nil, 'cluster "gone" is not defined' },
        { "current-context: x\nclusters:\n- {name: c, cluster: {server: 'https://a:1'}}\n"
          .. "contexts:\n- {name: x, context: {cluster: c, user: ghost}}", nil, 'user "ghost" is not defined' },
        { "clusters:\n- {name: c, cluster: {}}\n- {name: c, cluster: {}}", nil, 'duplicate name "c"' },
        { "current-context: x\nclusters:\n- {name: c, cluster: {}}\ncontexts:\n- {name: x, context: {cluster: c}}",
          nil, 'cluster "c" has no server' },
        { "current-context: x\nclusters:\n"
          .. "- {name: c, cluster: {server: 'https://a:1', certificate-authority-data: '@@'}}\n"
          .. "contexts:\n- {name: x, context: {cluster: c}}", nil, "not base64" },
        { "current-context: x\nclusters:\n- {name: c, cluster: {server: 'https://a:1', insecure-skip-tls-verify: true,"
          .. " certificate-authority-data: " .. b64(pki.ca) .. "}}\ncontexts:\n- {name: x, context: {cluster: c}}",
          nil, "root certificates file with the insecure flag is not allowed" },
        { "current-context: x\nclusters:\n- {name: c, cluster: {server: 'https://a:1'}}\n"
          .. "users:\n- {name: u, user: {client-certificate-data: " .. b64(pki.cert) .. "}}\n"
          .. "contexts:\n- {name: x, context: {cluster: c, user: u}}", nil, "needs its key" },
        { "current-context: x\nclusters:\n- {name: c, cluster: {server: 'https://a:1'}}\n"
          .. "users:\n- {name: u, user: {exec: {command: aws}}}\n"
          .. "contexts:\n- {name: x, context: {cluster: c, user: u}}", nil, "exec or auth%-provider plugin" },
        { "clusters: 3", nil, "clusters must be a list" },
        { "a: [", nil, "line %d" },
      }
      for i, case in ipairs(cases) do
        local cfg, msg, code = kubeconfig.parse(case[1])
        local s
        if cfg then s, msg, code = kubeconfig.resolve(cfg, { context = case[2] }) end
        assert.is_nil(s, "case " .. i)
        assert.are.equal("EINVAL", code, "case " .. i)
        assert.matches(case[3], msg, nil, false, "case " .. i)
        assert.matches("^kubeconfig: ", msg)
      end
    end)
  end)

  describe("files", function()
    it("writes 0600 atomically and reads back what it wrote", function()
      local cfg = kubeconfig.make("lab", { server = "https://127.0.0.1:6443", ca = pki.ca, cert = pki.cert,
        key = pki.key, namespace = "tools" })
      local path = dir .. "/new/sub/kubeconfig"
      assert.is_true(kubeconfig.write(path, cfg))
      assert.are.equal(0x180, fs.stat(path).mode)
      assert.are.equal(0x1c0, fs.stat(dir .. "/new/sub").mode)
      assert.are.same({ "kubeconfig" }, fs.list(dir .. "/new/sub")) -- no temp file left
      local text = assert(fs.read(path))
      assert.matches("^apiVersion: v1\nkind: Config\ncurrent%-context: admin@lab\n", text)
      local s = assert(kubeconfig.load(path))
      assert.are.equal("admin@lab", s.context)
      assert.are.equal("lab", s.cluster)
      assert.are.equal("admin@lab", s.user)
      assert.are.equal(pki.ca, s.ca)
      assert.are.equal(pki.key, s.key)
      assert.are.equal("tools", s.namespace)
    end)

    it("refuses a kubeconfig that others can read, unless allowed", function()
      local path = dir .. "/config"
      assert(fs.write(path, sample(), { mode = 0x1a4 }))
      local cfg, msg, code = kubeconfig.read(path)
      assert.is_nil(cfg)
      assert.are.equal("EPERM", code)
      assert.matches("chmod", msg)
      assert.is_nil(kubeconfig.load(path))
      assert(kubeconfig.read(path, { allow_readable = true }))
      assert(kubeconfig.load(path, { allow_readable = true }))
    end)

    it("merges into an existing file and makes a missing one", function()
      local path = dir .. "/config"
      local a = kubeconfig.make("a", { server = "https://127.0.0.1:1", token = "token-aaaa" })
      local b = kubeconfig.make("b", { server = "https://127.0.0.1:2", token = "token-bbbb" })
      assert.is_true(kubeconfig.update(path, a))
      assert.is_true(kubeconfig.update(path, b, { current = false }))
      local cfg = assert(kubeconfig.read(path))
      assert.are.same({ "admin@a", "admin@b" }, kubeconfig.contexts(cfg))
      assert.are.equal("admin@a", cfg["current-context"])
      assert.are.equal("token-bbbb", assert(kubeconfig.resolve(cfg, { context = "admin@b" })).token)
    end)
  end)

  describe("merge and remove", function()
    it("adds new entries, replaces same-named ones and switches the current context", function()
      local base = assert(kubeconfig.parse(sample()))
      local before = kubeconfig.encode(base)
      local add = kubeconfig.make("lab", { server = "https://127.0.0.2:6443", ca = pki.ca,
        context = "admin@lab", user = "admin@lab", token = "new-token-1" })
      local out = assert(kubeconfig.merge(base, add))
      assert.are.equal(before, kubeconfig.encode(base)) -- the inputs are left alone
      assert.are.equal(2, #out.clusters)
      assert.are.equal(2, #out.users)
      assert.are.equal(2, #out.contexts)
      local s = assert(kubeconfig.resolve(out))
      assert.are.equal("https://127.0.0.2:6443", s.server)
      assert.are.equal("new-token-1", s.token)
      assert.is_nil(s.cert)
      -- a new cluster is appended and becomes current
      out = assert(kubeconfig.merge(out, kubeconfig.make("prod", { server = "https://127.0.0.3:6443" })))
      assert.are.same({ "admin@lab", "robot@other", "admin@prod" }, kubeconfig.contexts(out))
      assert.are.equal("admin@prod", out["current-context"])
      assert.are.equal("admin@lab", assert(kubeconfig.merge(base, add, { current = false }))["current-context"])
    end)

    it("refuses to replace a differing entry when replace = false", function()
      local base = kubeconfig.make("lab", { server = "https://127.0.0.1:6443" })
      local same = kubeconfig.make("lab", { server = "https://127.0.0.1:6443" })
      assert(kubeconfig.merge(base, same, { replace = false }))
      local other = kubeconfig.make("lab", { server = "https://127.0.0.9:6443" })
      local out, msg, code = kubeconfig.merge(base, other, { replace = false })
      assert.is_nil(out)
      assert.are.equal("EEXIST", code)
      assert.matches('cluster "lab" exists already', msg)
    end)

    it("removes a context with its cluster and user unless they are shared", function()
      local cfg = assert(kubeconfig.parse(sample(table.concat({
        "- name: shared",
        "  context: {cluster: lab, user: robot}",
      }, "\n"))))
      local out = kubeconfig.remove(cfg, "robot@other")
      assert.are.same({ "admin@lab", "shared" }, kubeconfig.contexts(out))
      assert.are.equal(1, #out.clusters) -- "other" went, "lab" is used by two contexts
      assert.are.equal(2, #out.users) -- robot is still used by "shared"
      out = kubeconfig.remove(out, "admin@lab")
      assert.are.equal("", out["current-context"])
      assert.are.same({ "robot" }, { out.users[1].name })
      assert.are.equal(3, #cfg.contexts) -- the input is left alone
      assert.are.same(kubeconfig.contexts(out), kubeconfig.contexts(kubeconfig.remove(out, "absent")))
    end)
  end)
end)

describe("tlr.k8s offline", function()
  it("connects from kubeconfig text without sending anything", function()
    local c = assert(k8s.connect { kubeconfig = sample(), context = "robot@other", namespace = "tools" })
    assert.are.equal("https://10.0.0.1:6443", c.server)
    assert.are.equal("tools", c.namespace)
    assert.are.equal("Bearer tok-0123456789", c.headers.Authorization)
    assert.is_true(c.tls.insecure)
    assert.are.equal(0, c.stats.requests)
    assert.matches("robot@other", tostring(c))
    local cfg = assert(kubeconfig.parse(sample()))
    c = assert(k8s.connect { kubeconfig = cfg })
    assert.are.equal(pki.cert, c.tls.cert)
    assert.are.equal("default", c.namespace)
  end)

  it("connects to the address and names the TLS server from tls-server-name", function()
    local cfg = kubeconfig.make("lab", { server = "https://127.0.0.5:6443", ca = pki.ca })
    cfg.clusters[1].cluster["tls-server-name"] = "kubernetes"
    local c = assert(k8s.connect { kubeconfig = cfg })
    assert.are.equal("https://kubernetes:6443", c.server)
    assert.are.same({ "kubernetes:6443:127.0.0.5" }, c.resolve)
  end)

  it("rejects unknown options and mixed connection styles", function()
    assert.has_error(function() k8s.connect { servr = "https://x" } end)
    assert.has_error(function() k8s.connect { kubeconfig = sample(), token = "x" } end)
    assert.has_error(function() k8s.connect { server = "https://x:1", cert = "c" } end)
    local c, msg, code = k8s.connect { kubeconfig = "/nonexistent/kubeconfig" }
    assert.is_nil(c)
    assert.are.equal("ENOENT", code)
    assert.matches("/nonexistent/kubeconfig", msg)
  end)

  it("reads manifests: many documents, empty ones, Lists, tables", function()
    local apply = require "tlr.k8s.apply"
    local docs = assert(apply.documents(table.concat({
      "---",
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}",
      "---",
      "# only a comment",
      "---",
      "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n"
        .. "- {apiVersion: v1, kind: ConfigMap, metadata: {name: y}}",
    }, "\n")))
    assert.are.equal(3, #docs)
    assert.are.same({ "a", "x", "y" }, { docs[1].metadata.name, docs[2].metadata.name, docs[3].metadata.name })
    assert.are.equal(1, #assert(apply.documents { apiVersion = "v1", kind = "Secret", metadata = { name = "s" } }))
    local cases = {
      { "kind: ConfigMap\nmetadata: {name: x}", "document 1: apiVersion is missing" },
      { "apiVersion: v1\nkind: ConfigMap\nmetadata: {}", "document 1 %(ConfigMap%): metadata.name is required" },
      { "apiVersion: v1\nmetadata: {name: x}", "document 1: kind is required" },
      { "apiVersion: v1\nkind: A\nmetadata: {name: x}\n---\n- 1", "document 2: an object expected" },
      { "apiVersion: 'a/b/c'\nkind: A\nmetadata: {name: x}", "apiVersion is missing or malformed" },
      { "a: [", "^manifest: line" },
    }
    for _, case in ipairs(cases) do
      local none, msg, code = apply.documents(case[1])
      assert.is_nil(none)
      assert.are.equal("EINVAL", code)
      assert.matches(case[2], msg)
    end
  end)

  it("maps apiVersions and resources to URL paths", function()
    local d = k8s.discovery
    assert.are.same({ "", "v1" }, { d.split("v1") })
    assert.are.same({ "apps", "v1" }, { d.split("apps/v1") })
    assert.are.same({ "argoproj.io", "v1alpha1" }, { d.split("argoproj.io/v1alpha1") })
    assert.is_nil(d.split("apps"))
    local cm = { group = "", version = "v1", api_version = "v1", name = "configmaps", namespaced = true }
    local crd = { group = "apiextensions.k8s.io", version = "v1", api_version = "apiextensions.k8s.io/v1",
      name = "customresourcedefinitions", namespaced = false }
    assert.are.equal("/api/v1/namespaces/argocd/configmaps/x", d.path(cm, "argocd", "x"))
    assert.are.equal("/api/v1/configmaps", d.path(cm))
    assert.are.equal("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b", d.path(crd, "ignored", "a.b"))
    assert.are.equal("app=x,tier", k8s.selector { tier = true, app = "x" })
  end)
end)

describe("tlr.k8s.wait rules", function()
  local function deploy(spec, status, gen)
    return { kind = "Deployment", metadata = { name = "d", generation = gen or 2 }, spec = spec, status = status }
  end

  it("follows kubectl for Deployments", function()
    local cases = {
      { deploy({ replicas = 2 }, { observedGeneration = 1 }), false, "spec update to be observed" },
      { deploy({ replicas = 2 }, { observedGeneration = 2, updatedReplicas = 1, replicas = 2 }), false,
        "1 out of 2 new replicas have been updated" },
      { deploy({ replicas = 2 }, { observedGeneration = 2, updatedReplicas = 2, replicas = 3, availableReplicas = 2 }),
        false, "1 old replicas are pending termination" },
      { deploy({ replicas = 2 }, { observedGeneration = 2, updatedReplicas = 2, replicas = 2, availableReplicas = 1 }),
        false, "1 of 2 updated replicas are available" },
      { deploy({ replicas = 2 }, { observedGeneration = 3, updatedReplicas = 2, replicas = 2, availableReplicas = 2 }),
        true, "successfully rolled out" },
      { deploy({ replicas = 0 }, { observedGeneration = 2 }), true, "successfully rolled out" },
    }
    for i, case in ipairs(cases) do
      local done, msg, fatal = wait.deployment_status(case[1])
      assert.are.equal(case[2], done, "case " .. i)
      assert.matches(case[3], msg, nil, true)
      assert.is_falsy(fatal)
    end
    local stuck = deploy({ replicas = 2 }, { observedGeneration = 2, conditions = yaml.array {
      { type = "Available", status = "False" },
      { type = "Progressing", status = "False", reason = "ProgressDeadlineExceeded",
        message = 'ReplicaSet "d-1" has timed out progressing.' } } })
    local done, msg, fatal = wait.rollout_status(stuck)
    assert.is_false(done)
    assert.is_true(fatal)
    assert.matches('exceeded its progress deadline %(ReplicaSet "d%-1" has timed out progressing.%)', msg)
  end)

  it("follows kubectl for StatefulSets and DaemonSets", function()
    local sts = { kind = "StatefulSet", metadata = { generation = 1 }, spec = { replicas = 3 },
      status = { observedGeneration = 0 } }
    assert.matches("observed", select(2, wait.rollout_status(sts)))
    sts.status = { observedGeneration = 1, readyReplicas = 2 }
    assert.matches("2 of 3 pods are ready", select(2, wait.rollout_status(sts)))
    sts.status = { observedGeneration = 1, readyReplicas = 3, updateRevision = "r2", currentRevision = "r1",
      updatedReplicas = 1 }
    assert.is_false(wait.rollout_status(sts))
    sts.status.currentRevision, sts.status.currentReplicas = "r2", 3
    assert.is_true(wait.rollout_status(sts))
    sts.spec.updateStrategy = { type = "RollingUpdate", rollingUpdate = { partition = 2 } }
    sts.status.updatedReplicas = 0
    assert.matches("0 out of 1 new pods", select(2, wait.rollout_status(sts)))
    sts.status.updatedReplicas = 1
    assert.is_true(wait.rollout_status(sts))
    sts.spec.updateStrategy = { type = "OnDelete" }
    local done, _, fatal = wait.rollout_status(sts)
    assert.is_false(done)
    assert.is_true(fatal)

    local ds = { kind = "DaemonSet", metadata = { generation = 1 },
      status = { observedGeneration = 1, desiredNumberScheduled = 3, updatedNumberScheduled = 2 } }
    assert.matches("2 out of 3 new pods have been updated", select(2, wait.rollout_status(ds)))
    ds.status.updatedNumberScheduled, ds.status.numberAvailable = 3, 1
    assert.matches("1 of 3 updated pods are available", select(2, wait.rollout_status(ds)))
    ds.status.numberAvailable = 3
    assert.is_true(wait.rollout_status(ds))
    assert.has_error(function() wait.rollout_status { kind = "Pod" } end)
  end)

  it("reads conditions and Argo CD application status", function()
    local crd = { metadata = { generation = 1 }, status = { conditions = {
      { type = "NamesAccepted", status = "True" },
      { type = "Established", status = "False", reason = "Installing" } } } }
    assert.are.same({ false, "condition Established is False (Installing)" },
      { wait.condition_status(crd, "Established") })
    crd.status.conditions[2].status = "True"
    assert.is_true(wait.condition_status(crd, "Established"))
    assert.are.same({ false, "no Ready condition yet" }, { wait.condition_status(crd, "Ready") })
    local gen = { metadata = { generation = 3 }, status = { conditions = {
      { type = "Ready", status = "True", observedGeneration = 2 } } } }
    assert.is_false(wait.condition_status(gen, "Ready"))
    local app = { status = { sync = { status = "OutOfSync" }, health = { status = "Progressing" },
      operationState = { phase = "Failed", message = "one or more objects failed to apply" } } }
    assert.are.same({ false,
      "sync OutOfSync, health Progressing (last sync Failed: one or more objects failed to apply)" },
      { wait.application_status(app) })
    app.status = { sync = { status = "Synced" }, health = { status = "Healthy" } }
    assert.is_true(wait.application_status(app))
    assert.are.same({ false, "sync Unknown, health Unknown" }, { wait.application_status {} })
  end)
end)
