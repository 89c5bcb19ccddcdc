-- tlr.k8s against the lab's Kubernetes API fake: discovery, server-side
-- apply with ordering and namespace injection, errors, get/list/delete,
-- watch with relist, waits with kubectl's rollout rules, retries.
local L = require "lab_helper"
local H = require "helper"
local k8s = require "tlr.k8s"
local kubeconfig = require "tlr.k8s.kubeconfig"
local wait = require "tlr.k8s.wait"
local json = require "tlr.json"
local sched = require "tlr.sched"
local fs = require "tlr.fs"

-- a string as a Lua pattern that matches it literally
local function lit(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- object builders
local function cm(name, extra)
  local o = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name } }
  for k, v in pairs(extra or {}) do
    if k == "labels" or k == "namespace" or k == "finalizers" then o.metadata[k] = v else o[k] = v end
  end
  return o
end

local function crd(plural, kind, group, o)
  o = o or {}
  return { apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition",
    metadata = { name = plural .. "." .. group, namespace = o.namespace },
    spec = { group = group, scope = o.scope or "Namespaced",
      names = { plural = plural, singular = kind:lower(), kind = kind, listKind = kind .. "List" },
      versions = { { name = o.version or "v1", served = true, storage = true, subresources = o.subresources,
        schema = { openAPIV3Schema = o.schema or
          { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true } } } } } }
end

local function workload(kind, name, replicas)
  local o = { apiVersion = "apps/v1", kind = kind, metadata = { name = name },
    spec = { replicas = replicas, selector = { matchLabels = { app = name } },
      template = { metadata = { labels = { app = name } },
        spec = { containers = { { name = "c", image = "registry.example/" .. name .. ":1" } } } } } }
  if kind == "StatefulSet" then o.spec.serviceName = name end
  return o
end

describe("tlr.k8s", function()
  local lab, c, log_since
  -- the shared lab outlives this run: unique names
  local RUN = string.format("%05x", math.floor(sched.now() * 1000) % 0xfffff)
  local function name(base) return base .. "-" .. RUN end
  local NS = name("tlr-spec")
  local CRDS = "apiextensions.k8s.io/v1"

  local function connect(extra)
    local o = { kubeconfig = lab.env.K8S_KUBECONFIG, retry_budget = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(k8s.connect(o))
  end

  -- the fake's request log since the mark
  local function requests(method)
    local list = lab:control("GET", "/log?service=k8s&since=" .. log_since .. "&limit=100000")
    local out = {}
    for _, e in ipairs(list.entries or list) do
      if not method or e.method == method then out[#out + 1] = e end
    end
    return out
  end

  local function mark()
    local list = lab:control("GET", "/log?service=k8s&limit=1")
    local entries = list.entries or list
    log_since = entries[#entries] and entries[#entries].seq or 0
  end

  local function profile(vals) return lab:control("PATCH", "/profile", { k8s = vals }) end
  local function fault(rule)
    rule.service = "k8s"
    return lab:control("POST", "/faults", rule)
  end

  -- what the owner of a finalizer does when it is done: a merge patch
  local function unfinalize(cm_name)
    assert(c:request("PATCH", "/api/v1/namespaces/" .. NS .. "/configmaps/" .. cm_name, {
      body = { metadata = { finalizers = json.null } }, content_type = "application/merge-patch+json" }))
  end

  setup(function()
    lab = L.shared()
    lab:reset("test")
    c = connect()
    assert(c:apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = NS } }))
  end)

  teardown(function()
    if c then c:delete("v1", "Namespace", NS, { wait = false }) end
    lab:stop()
  end)

  before_each(function()
    lab:reset("test")
    mark()
  end)

  describe("connecting and discovery", function()
    it("talks mutual TLS with the lab's kubeconfig and maps kinds through discovery", function()
      local v = assert(c:version())
      assert.matches("^v1%.", v.gitVersion)
      local seen = requests()
      assert.are.equal("2.0", seen[#seen].http) -- ALPN picked HTTP/2
      assert.are.equal("admin", seen[#seen].user)
      local dep = assert(c:resource("apps/v1", "Deployment"))
      assert.are.same({ "deployments", true, "apps", "v1" }, { dep.name, dep.namespaced, dep.group, dep.version })
      local ns = assert(c:resource("v1", "Namespace"))
      assert.are.same({ "namespaces", false }, { ns.name, ns.namespaced })
      assert.are.equal("customresourcedefinitions", assert(c:resource(CRDS, "CustomResourceDefinition")).name)
      assert.are.equal("deployments", assert(c:find("deploy")).name)
      assert.are.equal("configmaps", assert(c:find("ConfigMap")).name)
      -- subresources are not kinds
      local gv = assert(c.discovery:group_version("apps/v1"))
      assert.is_nil(gv.resources["deployments/scale"])
      -- cached: a second lookup sends nothing
      mark()
      assert(c:resource("apps/v1", "StatefulSet"))
      assert.are.equal(0, #requests())
      local none, msg, code = c:resource("apps/v1", "Gadget")
      assert.is_nil(none)
      assert.are.equal("ENOTFOUND", code)
      assert.are.equal('no matches for kind "Gadget" in version "apps/v1"', msg)
      none, msg, code = c:get("nope.example.com/v1", "Thing", "x")
      assert.is_nil(none)
      assert.are.equal("ENOTFOUND", code)
      assert.matches("^get thing x: ", msg)
    end)

    it("fails with EAUTH without credentials and EFORBIDDEN without rights", function()
      local s = assert(kubeconfig.load(lab.env.K8S_KUBECONFIG))
      local anon = assert(k8s.connect { server = s.server, ca = s.ca, retry_budget = 0 })
      local v, msg, code, st = anon:get("v1", "Namespace", "default")
      assert.is_nil(v)
      assert.are.equal("EAUTH", code)
      assert.matches("Unauthorized", msg)
      assert.are.equal(401, st.code)
      local viewer = assert(k8s.connect { server = s.server, ca = s.ca, retry_budget = 0,
        cert = assert(fs.read(lab.env.LAB_STATE .. "/k8s/viewer.crt")),
        key = assert(fs.read(lab.env.LAB_STATE .. "/k8s/viewer.key")) })
      v, msg, code, st = viewer:apply(cm("x"), { namespace = NS })
      assert.is_nil(v)
      assert.are.equal("EFORBIDDEN", code)
      assert.matches("^apply configmap " .. lit(NS) .. "/x: configmaps \"x\" is forbidden", msg)
      assert.are.equal("Forbidden", st.reason)
    end)

    it("connects through a kubeconfig it wrote itself", function()
      local s = assert(kubeconfig.load(lab.env.K8S_KUBECONFIG))
      local dir = H.tmpdir()
      local path = dir .. "/kube/config"
      assert(kubeconfig.update(path, kubeconfig.make("lab", { server = s.server, ca = s.ca, cert = s.cert,
        key = s.key, namespace = NS })))
      local c2 = assert(k8s.connect { kubeconfig = path })
      assert.are.equal(NS, c2.namespace)
      assert(c2:get("v1", "Namespace", NS))
      os.execute("rm -rf '" .. dir .. "'")
    end)
  end)

  describe("apply", function()
    it("applies Namespaces, then CRDs (Established, re-discovered), then the rest", function()
      local group = "tlr" .. RUN .. ".example.com"
      local ns2 = name("order")
      local schema = { type = "object", properties = { spec = { type = "object",
        properties = { size = { type = "integer" } } } } }
      local text = assert(require("tlr.yaml").encode_all({
        { apiVersion = group .. "/v1", kind = "Widget", metadata = { name = "w1" }, spec = { size = 3 } },
        cm("settings", { data = { mode = "fast" } }),
        crd("widgets", "Widget", group, { namespace = "stray", schema = schema }),
        { apiVersion = "v1", kind = "Namespace", metadata = { name = ns2 } },
      }))
      local res = assert(c:apply(text, { namespace = ns2 }))
      assert.are.equal(4, #res)
      assert.are.same({ "Widget", "ConfigMap", "CustomResourceDefinition", "Namespace" },
        { res[1].kind, res[2].kind, res[3].kind, res[4].kind })
      for _, r in ipairs(res) do assert.are.equal("created", r.action) end
      assert.are.equal(ns2, res[1].namespace) -- injected
      assert.are.equal(ns2, res[2].namespace)
      assert.is_nil(res[3].namespace) -- cluster-scoped: the stray namespace is dropped
      assert.are.equal(3, res[1].object.spec.size)
      -- the order the server saw, and the apply requests' form
      local patches, crd_read, waited = {}, false, false
      for _, e in ipairs(requests()) do
        if e.method == "PATCH" then
          patches[#patches + 1] = e.path
          if e.path:find("/widgets/", 1, true) then waited = crd_read end
          assert.are.equal("tlr", e.params.fieldManager)
        elseif e.method == "GET" and e.path:find("customresourcedefinitions/widgets", 1, true) then
          crd_read = true
        end
      end
      assert.are.equal("/api/v1/namespaces/" .. ns2, patches[1])
      assert.are.equal("/apis/" .. CRDS .. "/customresourcedefinitions/widgets." .. group, patches[2])
      assert.is_true(waited)
      local w = assert(c:get(group .. "/v1", "Widget", "w1", { namespace = ns2 }))
      assert.are.equal("tlr", w.metadata.managedFields[1].manager)
      assert.are.equal("Apply", w.metadata.managedFields[1].operation)
      -- again: nothing new
      res = assert(c:apply(text, { namespace = ns2 }))
      for _, r in ipairs(res) do assert.are.equal("configured", r.action) end
      assert(c:delete("v1", "Namespace", ns2, { timeout = 30 }))
      assert(c:delete(CRDS, "CustomResourceDefinition", "widgets." .. group, { timeout = 10 }))
    end)

    it("looks a new CRD's kind up again until the server serves it", function()
      profile { crd_establish = 0.4 }
      local group = "late" .. RUN .. ".example.com"
      local res = assert(c:apply({
        { apiVersion = group .. "/v1", kind = "Gizmo", metadata = { name = "g1" }, spec = { a = 1 } },
        crd("gizmos", "Gizmo", group),
      }, { namespace = NS, wait_crds = false }))
      assert.are.equal("created", res[1].action)
      local lookups = 0
      for _, e in ipairs(requests("GET")) do
        if e.path == "/apis/" .. group .. "/v1" then lookups = lookups + 1 end
      end
      assert.is_true(lookups >= 2, "discovery asked " .. lookups .. " times")
      assert(c:delete(CRDS, "CustomResourceDefinition", "gizmos." .. group, { timeout = 10 }))
    end)

    it("retries while MetalLB's webhook is not ready", function()
      assert(c:apply(crd("ipaddresspools", "IPAddressPool", "metallb.io", { version = "v1beta1" })))
      lab:control("POST", "/k8s/webhook", { requests = 3 })
      mark()
      local pool = { apiVersion = "metallb.io/v1beta1", kind = "IPAddressPool",
        metadata = { name = name("pool") }, spec = { addresses = { "10.0.0.240-10.0.0.250" } } }
      local res = assert(c:apply(pool, { namespace = NS, retry_budget = 20 }))
      assert.are.equal(name("pool"), res[1].name)
      local patches = requests("PATCH")
      assert.are.equal(4, #patches)
      assert.are.equal(500, patches[1].status)
      assert.are.equal(200, patches[4].status // 100 * 100)
      -- with no budget left the webhook's message comes back
      lab:control("POST", "/k8s/webhook", { requests = 1 })
      local r, msg, code = c:apply(pool, { namespace = NS, retry_budget = 0 })
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.matches('failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io"', msg, nil, true)
      lab:control("POST", "/k8s/webhook", { ready = true })
    end)

    it("sends the apply patch form and force only when asked", function()
      assert(c:apply(cm("form", { data = { a = "1" } }), { namespace = NS, force = true }))
      local e = requests("PATCH")[1]
      assert.are.equal("/api/v1/namespaces/" .. NS .. "/configmaps/form", e.path)
      assert.are.equal("true", e.params.force)
      assert.are.equal("application/apply-patch+yaml", e.headers["content-type"])
      mark()
      assert(c:apply(cm("form", { data = { a = "2" } }), { namespace = NS }))
      assert.is_nil(requests("PATCH")[1].params.force)
    end)

    it("resolves a field conflict with another manager only with force", function()
      local owned = cm("owned", { namespace = NS, data = { key = "mine" } })
      assert(c:apply(owned))
      local other = connect { field_manager = "someone-else" }
      owned.data.key = "theirs"
      local r, msg, code, st = other:apply(owned)
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.are.equal("Conflict", st.reason)
      assert.matches("^apply configmap " .. lit(NS)
        .. '/owned: Apply failed with 1 conflict: conflict with "tlr": .data.key$', msg)
      assert(other:apply(owned, { force = true }))
      assert.are.equal("theirs", assert(c:get("v1", "ConfigMap", "owned", { namespace = NS })).data.key)
    end)

    it("turns Invalid and BadRequest into EINVAL with the Status", function()
      local bad = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "bad", namespace = NS },
        spec = { template = { spec = {} } } }
      local r, msg, code, st = c:apply(bad)
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.are.equal("Invalid", st.reason)
      assert.are.equal(422, st.code)
      assert.matches('^apply deployment ' .. lit(NS) .. '/bad: Deployment.apps "bad" is invalid', msg)
      assert.is_table(st.details.causes)
    end)

    it("applies nothing in a dry run and reports objects of new CRDs as skipped", function()
      local group = "dry" .. RUN .. ".example.com"
      local res = assert(c:apply({
        cm("dry", { data = { a = "1" } }),
        crd("gadgets", "Gadget", group),
        { apiVersion = group .. "/v1", kind = "Gadget", metadata = { name = "g" } },
      }, { namespace = NS, dry_run = true }))
      assert.are.same({ "created", "created", "skipped" }, { res[1].action, res[2].action, res[3].action })
      for _, e in ipairs(requests("PATCH")) do assert.are.equal("All", e.params.dryRun) end
      assert.are.equal("ENOTFOUND", select(3, c:get("v1", "ConfigMap", "dry", { namespace = NS })))
      assert.are.equal("ENOTFOUND", select(3, c:get(CRDS, "CustomResourceDefinition", "gadgets." .. group)))
    end)

    it("refuses documents without a name and a namespace that contradicts the option", function()
      local r, msg, code = c:apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.matches("metadata.name is required", msg)
      r, msg, code = c:apply(cm("x", { namespace = "other" }), { namespace = NS })
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.matches('does not match the namespace "' .. lit(NS) .. '"', msg)
      assert.are.equal(0, #requests("PATCH"))
      assert.has_error(function() c:apply({}, { nmespace = "x" }) end)
    end)
  end)

  describe("get, list, delete", function()
    it("says what was not found", function()
      local obj, msg, code, st = c:get("apps/v1", "Deployment", "missing", { namespace = NS })
      assert.is_nil(obj)
      assert.are.equal("ENOTFOUND", code)
      assert.are.equal("get deployment " .. NS .. '/missing: deployments.apps "missing" not found', msg)
      assert.are.equal("NotFound", st.reason)
    end)

    it("lists with label selectors, page by page", function()
      local docs = {}
      for i = 1, 7 do
        docs[i] = cm("page-" .. i, { labels = { set = "paged", parity = i % 2 == 0 and "even" or "odd" } })
      end
      docs[8] = cm("unlabelled")
      assert(c:apply(docs, { namespace = NS }))
      mark()
      local paged = { set = "paged" }
      local list = assert(c:list("v1", "ConfigMap", { namespace = NS, label_selector = paged, limit = 3 }))
      assert.are.equal(7, #list.items)
      assert.are.equal("ConfigMap", list.items[1].kind)
      assert.are.equal("v1", list.items[1].apiVersion)
      assert.is_string(list.metadata.resourceVersion)
      assert.are.equal(3, #requests("GET")) -- 3 + 3 + 1
      list = assert(c:list("v1", "ConfigMap", { namespace = NS, label_selector = "set=paged,parity=even" }))
      assert.are.equal(3, #list.items)
      list = assert(c:list("v1", "ConfigMap", { namespace = NS, label_selector = paged, limit = 2, pages = 1 }))
      assert.are.equal(2, #list.items)
      assert.is_string(list.metadata.continue)
      local rest = assert(c:list("v1", "ConfigMap", { namespace = NS, label_selector = paged, limit = 2,
        continue = list.metadata.continue }))
      assert.are.equal(5, #rest.items)
    end)

    it("deletes and waits while finalizers hold the object", function()
      assert(c:apply(cm("held", { finalizers = { "example.com/hold" } }), { namespace = NS }))
      local task = sched.spawn(function()
        return table.pack(c:delete("v1", "ConfigMap", "held", { namespace = NS, timeout = 10 }))
      end)
      sched.sleep(0.3)
      assert.is_false(task:done())
      assert.matches("waiting for finalizers example.com/hold", task.state)
      local obj = assert(c:get("v1", "ConfigMap", "held", { namespace = NS }))
      assert.is_string(obj.metadata.deletionTimestamp)
      unfinalize("held")
      local r = task:wait(10)
      assert.are.same({ true, "deleted" }, { r[1], r[2] })
      assert.are.same({ true, "absent" }, { c:delete("v1", "ConfigMap", "held", { namespace = NS }) })
      local del = requests("DELETE")[1]
      assert.are.equal("/api/v1/namespaces/" .. NS .. "/configmaps/held", del.path)
    end)

    it("says which finalizers are pending when the wait runs out", function()
      assert(c:apply(cm("stuck", { finalizers = { "example.com/forever" } }), { namespace = NS }))
      local ok, msg, code = c:delete("v1", "ConfigMap", "stuck", { namespace = NS, timeout = 0.3,
        propagation = "Foreground" })
      assert.is_nil(ok)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("^configmap " .. lit(NS)
        .. "/stuck: not deleted after 0.3s: waiting for finalizers .*example.com/forever", msg)
      unfinalize("stuck")
      assert.has_error(function() c:delete("v1", "ConfigMap", "x", { propagation = "Sometimes" }) end)
    end)
  end)

  describe("watch", function()
    it("hands over the list, then changes, until the handler returns a value", function()
      local labels = { watch = RUN }
      local seen = {}
      local task = sched.spawn(function()
        return c:watch("v1", "ConfigMap", function(t, obj)
          seen[#seen + 1] = t .. " " .. obj.metadata.name
          if t == "DELETED" and obj.metadata.name == "w-2" then return "stop" end
        end, { namespace = NS, label_selector = labels, timeout = 10 })
      end)
      assert(c:apply(cm("w-1", { labels = labels }), { namespace = NS }))
      sched.sleep(0.2)
      assert(c:apply(cm("w-2", { labels = labels }), { namespace = NS }))
      assert(c:apply(cm("w-1", { labels = labels, data = { x = "1" } }), { namespace = NS }))
      assert(c:delete("v1", "ConfigMap", "w-2", { namespace = NS }))
      assert.are.equal("stop", task:wait(10))
      local text = table.concat(seen, ",")
      assert.matches("ADDED w%-2", text)
      assert.matches("MODIFIED w%-1", text)
      assert.matches("DELETED w%-2$", text)
    end)

    it("lists again after 410 Gone and hands over the difference", function()
      local labels = { gone = RUN }
      local base = assert(c:list("v1", "ConfigMap", { namespace = NS, label_selector = labels }))
      for i = 1, 3 do assert(c:apply(cm("g-" .. i, { labels = labels }), { namespace = NS })) end
      lab:control("POST", "/k8s/compact")
      mark()
      -- the watch from the old version gets 410, lists (3 ADDED), watches again and sees the 4th
      local task = sched.spawn(function()
        sched.sleep(0.3)
        assert(c:apply(cm("g-4", { labels = labels }), { namespace = NS }))
      end)
      local seen = {}
      local r, msg = c:watch("v1", "ConfigMap", function(t, obj)
        seen[#seen + 1] = t .. " " .. obj.metadata.name
        if #seen == 4 then return #seen end
      end, { namespace = NS, label_selector = labels, resource_version = base.metadata.resourceVersion,
        timeout = 10 })
      task:wait(10)
      assert.are.equal(4, r, msg)
      assert.are.same({ "ADDED g-1", "ADDED g-2", "ADDED g-3", "ADDED g-4" }, seen)
      local kinds = {}
      for _, e in ipairs(requests("GET")) do kinds[#kinds + 1] = e.params.watch and "watch" or "list" end
      assert.are.same({ "watch", "list", "watch" }, kinds)
    end)

    it("ends with ETIMEDOUT", function()
      local r, msg, code = c:watch("v1", "Secret", function() end,
        { namespace = NS, label_selector = { none = RUN }, timeout = 0.5 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("watch secrets in " .. NS .. ": timed out after 0.5s", msg)
    end)
  end)

  describe("waits", function()
    local function deployment(n, replicas)
      local d = workload("Deployment", n, replicas or 2)
      d.metadata.namespace = NS
      return d
    end

    it("waits for a rollout by kubectl's rules", function()
      profile { rollout = 0.3 }
      assert(c:apply(deployment(name("web"))))
      local dep = assert(c:wait_rollout("Deployment", name("web"), { namespace = NS, timeout = 10 }))
      assert.are.equal(2, dep.status.availableReplicas)
      assert.is_true(wait.deployment_status(dep))
      -- the wait watched: one GET, one watch, no polling
      local gets = 0
      for _, e in ipairs(requests("GET")) do
        if e.path:find("/deployments", 1, true) then gets = gets + 1 end
      end
      assert.is_true(gets <= 3, gets .. " reads of the deployment")
    end)

    it("says what it still waits for when the time is up", function()
      profile { rollout_stuck = { NS .. "/" .. name("stuck") } }
      assert(c:apply(deployment(name("stuck"))))
      local r, msg, code = c:wait_rollout("Deployment", name("stuck"), { namespace = NS, timeout = 0.5 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("deployment " .. NS .. "/" .. name("stuck") .. ": timed out after 0.5s: "
        .. "0 of 2 updated replicas are available", msg)
    end)

    it("fails fast when the progress deadline is exceeded", function()
      profile { progress_deadline = { NS .. "/" .. name("late") } }
      assert(c:apply(deployment(name("late"))))
      local t0 = sched.now()
      local r, msg, code = c:wait_rollout("Deployment", name("late"), { namespace = NS, timeout = 30 })
      assert.is_nil(r)
      assert.are.equal("ETASK", code)
      assert.matches("exceeded its progress deadline", msg)
      assert.is_true(sched.now() - t0 < 10)
    end)

    it("waits for StatefulSets, DaemonSets and everything apply returned", function()
      local res = assert(c:apply({ workload("StatefulSet", name("db"), 2), workload("DaemonSet", name("agent")),
        deployment(name("api"), 1) }, { namespace = NS }))
      assert.is_true(c:wait_ready(res, { timeout = 10 }))
      local s = assert(c:get("apps/v1", "StatefulSet", name("db"), { namespace = NS }))
      assert.is_true(wait.statefulset_status(s))
      local d = assert(c:get("apps/v1", "DaemonSet", name("agent"), { namespace = NS }))
      assert.is_true(wait.daemonset_status(d))
    end)

    it("waits for a CRD to be Established and names the condition when it is not", function()
      local group = "stuck" .. RUN .. ".example.com"
      profile { crd_stuck = { "things." .. group } }
      local r, msg, code = c:apply(crd("things", "Thing", group, { scope = "Cluster" }), { timeout = 0.5 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("^customresourcedefinition " .. lit("things." .. group) .. ": timed out after 0.5s: ", msg)
      assert(c:delete(CRDS, "CustomResourceDefinition", "things." .. group, { timeout = 10 }))
    end)

    it("waits for an Argo CD Application to be Synced and Healthy", function()
      local apps = crd("applications", "Application", "argoproj.io",
        { version = "v1alpha1", subresources = { status = {} } })
      local controller = workload("StatefulSet", "argocd-application-controller", 1)
      local function app(n)
        return { apiVersion = "argoproj.io/v1alpha1", kind = "Application", metadata = { name = n },
          spec = { project = "default",
            source = { repoURL = "https://charts.jetstack.io", chart = "cert-manager",
              targetRevision = "v1.16.0" },
            destination = { server = "https://kubernetes.default.svc", namespace = n },
            syncPolicy = { automated = { prune = true }, syncOptions = { "CreateNamespace=true" } } } }
      end
      profile { argo_degraded = { NS .. "/" .. name("sick") } }
      local res = assert(c:apply({ apps, controller, app(name("app")), app(name("sick")) }, { namespace = NS }))
      assert.is_true(c:wait_ready({ res[1], res[2], res[3] }, { timeout = 10 }))
      local a = assert(c:get("argoproj.io/v1alpha1", "Application", name("app"), { namespace = NS }))
      assert.are.same({ true, "Synced and Healthy" }, { wait.application_status(a) })
      local r, msg, code = c:wait_application(name("sick"), { namespace = NS, timeout = 1 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("application " .. NS .. "/" .. name("sick")
        .. ": timed out after 1s: sync Synced, health Degraded", msg)
    end)

    it("waits for any condition", function()
      local ns = assert(c:get("v1", "Namespace", NS))
      assert.are.equal("Active", ns.status.phase)
      local r, msg, code = c:wait_condition("v1", "Namespace", NS, "NoSuchCondition", { timeout = 0.2 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("namespace " .. NS .. ": timed out after 0.2s: no NoSuchCondition condition yet", msg)
    end)
  end)

  describe("retries", function()
    local function path(n) return "/api/v1/namespaces/" .. NS .. "/configmaps/" .. n end

    it("retries 5xx with backoff and gives up after the budget", function()
      fault { path = path("flaky"), method = "PATCH", status = 503, count = 2 }
      assert(c:apply(cm("flaky"), { namespace = NS }))
      assert.are.equal(3, #requests("PATCH"))
      fault { path = path("down"), method = "PATCH", status = 500, message = "etcdserver: leader changed" }
      local t0 = sched.now()
      local r, msg, code, st = c:apply(cm("down"), { namespace = NS, retry_budget = 0.5 })
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.are.equal(500, st.code)
      assert.matches("etcdserver: leader changed", msg)
      assert.is_true(sched.now() - t0 < 3)
    end)

    it("does not retry what cannot get better", function()
      fault { path = path("conflict"), method = "PATCH", status = 409, count = 1 }
      local r, _, code = c:apply(cm("conflict"), { namespace = NS })
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.are.equal(1, #requests("PATCH"))
    end)
  end)
end)
