-- Fidelity of the lab's Kubernetes API fake (tests/lab/k8s), checked with
-- raw tlr.http requests carrying the admin client certificate against a
-- private lab (k8s only) started for this spec.
local H = require "helper"
local L = require "lab_helper"
local http = require "tlr.http"
local json = require "tlr.json"
local yaml = require "tlr.yaml"
local crypto = require "tlr.crypto"
local sched = require "tlr.sched"

describe("lab: Kubernetes API fake", function()
  local lab, creds

  setup(function()
    lab = L.start { profile = "test", args = { "--only", "k8s" } }
    local dir = lab.env.LAB_STATE .. "/k8s/"
    creds = {
      ca = H.read(dir .. "ca.crt"), cert = H.read(dir .. "admin.crt"), key = H.read(dir .. "admin.key"),
      viewer_cert = H.read(lab.env.K8S_VIEWER_CERT), viewer_key = H.read(lab.env.K8S_VIEWER_KEY),
    }
  end)
  teardown(function() if lab then lab:stop() end end)
  before_each(function()
    lab:reset()
    local _, st = lab:control("POST", "/k8s/reset")
    assert.are.equal(200, st)
  end)

  -- ---------------------------------------------------------------- helpers
  --- A request to the API server; opts: query, body (table -> JSON), content_type,
  --- accept, headers, anonymous, cert/key, http2, on_data, timeout.
  local function api(method, path, o)
    o = o or {}
    local headers = {}
    local body = o.body
    if type(body) == "table" then body = assert(json.encode(body)) end
    if body then headers["Content-Type"] = o.content_type or "application/json" end
    if o.accept then headers.Accept = o.accept end
    for k, v in pairs(o.headers or {}) do headers[k] = v end
    local r, msg = http.request {
      method = method, url = lab.env.K8S_SERVER .. path, query = o.query, body = body, headers = headers,
      ca = creds.ca, cert = not o.anonymous and (o.cert or creds.cert) or nil,
      key = not o.anonymous and (o.key or creds.key) or nil, timeout = o.timeout or 30, http2 = o.http2,
      on_data = o.on_data,
    }
    assert(r, msg)
    if r.body and r.body:match("^%s*[{%[]") then r.json = json.decode(r.body) end
    return r
  end

  local PLURAL = { ConfigMap = "configmaps", Namespace = "namespaces", Deployment = "deployments", Secret = "secrets",
    StatefulSet = "statefulsets", DaemonSet = "daemonsets", Service = "services", Widget = "widgets",
    CustomResourceDefinition = "customresourcedefinitions", Application = "applications", IPAddressPool = "ipaddresspools" }
  local CLUSTER = { Namespace = true, CustomResourceDefinition = true }

  local function path_of(obj)
    local gv = obj.apiVersion
    local base = gv:find("/") and ("/apis/" .. gv) or ("/api/" .. gv)
    local plural = assert(PLURAL[obj.kind], obj.kind)
    if CLUSTER[obj.kind] then return base .. "/" .. plural .. "/" .. obj.metadata.name end
    return base .. "/namespaces/" .. (obj.metadata.namespace or "default") .. "/" .. plural .. "/" .. obj.metadata.name
  end

  --- Server-side apply of obj (manager default "tlr"); opts: manager, force, query, content_type.
  local function apply(obj, o)
    o = o or {}
    local q = { fieldManager = o.manager or "tlr" }
    if o.force then q.force = "true" end
    for k, v in pairs(o.query or {}) do q[k] = v end
    return api("PATCH", o.path or path_of(obj), { body = obj,
      content_type = o.content_type or "application/apply-patch+yaml", query = q })
  end

  local function ok(r, code)
    assert.are.equal(code or 200, r.status, r.body)
    return r.json
  end

  local function get(path) return api("GET", path) end

  --- Polls fn until it returns a truthy value (or fails after `t` seconds).
  local function eventually(fn, t, what)
    local deadline = sched.now() + (t or 5)
    while sched.now() < deadline do
      local v = fn()
      if v then return v end
      sched.sleep(0.02)
    end
    error("timed out waiting for " .. (what or "a condition"))
  end

  local function cm(name, data, o)
    o = o or {}
    local md = { name = name, namespace = o.ns or "default", labels = o.labels, finalizers = o.finalizers,
      ownerReferences = o.owners }
    return { apiVersion = "v1", kind = "ConfigMap", metadata = md, data = data }
  end

  local function managers(obj)
    local out = {}
    for _, m in ipairs(obj.metadata.managedFields or {}) do out[m.manager .. "/" .. m.operation] = m end
    return out
  end

  local function condition(obj, typ)
    for _, c in ipairs((obj.status or {}).conditions or {}) do if c.type == typ then return c end end
  end

  local WIDGET_CRD = {
    apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "widgets.example.com" },
    spec = {
      group = "example.com", scope = "Namespaced",
      names = { plural = "widgets", singular = "widget", kind = "Widget", shortNames = { "wd" } },
      versions = { {
        name = "v1", served = true, storage = true, subresources = { status = {} },
        schema = { openAPIV3Schema = { type = "object", properties = {
          spec = { type = "object", properties = {
            size = { type = "integer" }, color = { type = "string" },
            ports = { type = "array", ["x-kubernetes-list-type"] = "map", ["x-kubernetes-list-map-keys"] = { "name" },
              items = { type = "object", properties = { name = { type = "string" }, port = { type = "integer" } } } },
          } },
          status = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
        } } },
      } },
    },
  }

  local function established(name)
    return eventually(function()
      local r = get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" .. name)
      local c = r.status == 200 and condition(r.json, "Established")
      return c and c.status == "True" and r.json
    end, 5, name .. " Established")
  end

  local function widget(name, spec, ns)
    return { apiVersion = "example.com/v1", kind = "Widget", metadata = { name = name,
      namespace = ns or "default" }, spec = spec }
  end

  -- ---------------------------------------------------------------- transport
  describe("transport and authentication", function()
    it("serves TLS for the lab address with the CA and admin kubeconfig it writes", function()
      assert.matches("^https://127%.%d+%.0%.6:%d+$", lab.env.K8S_SERVER)
      local kc = lab.env.K8S_KUBECONFIG
      assert.are.equal(lab.env.LAB_STATE .. "/k8s/kubeconfig", kc)
      assert.are.equal("600", (H.capture("stat -c %a " .. kc)):match("%d+"))
      local cfg = assert(yaml.decode(H.read(kc)))
      assert.are.equal("Config", cfg.kind)
      local cluster = cfg.clusters[1].cluster
      assert.are.equal(lab.env.K8S_SERVER, cluster.server)
      assert.are.equal(creds.ca, crypto.base64_decode(cluster["certificate-authority-data"]))
      local user = cfg.users[1].user
      local cert = assert(crypto.parse_cert(crypto.base64_decode(user["client-certificate-data"])))
      assert.are.equal("system:masters", cert.subject.O)
      assert.are.equal("admin", cert.subject.CN)
      assert.are.equal(cfg.contexts[1].name, cfg["current-context"])
      -- the server certificate names the lab address and localhost
      local srv = assert(crypto.parse_cert(H.read(lab.env.LAB_STATE .. "/k8s/apiserver.crt")))
      assert.are.same(lab.env.K8S_SERVER:match("//([%d.]+):"), srv.ip_addresses[1])
      assert.truthy(table.concat(srv.dns_names, " "):find("localhost", 1, true))
      local v = ok(get("/version"))
      assert.are.equal("v1.32.3", v.gitVersion)
      assert.are.equal("32", v.minor)
    end)

    it("answers 401 Unauthorized without a client certificate or with one from another CA", function()
      local r = api("GET", "/api/v1/namespaces", { anonymous = true })
      assert.are.equal(401, r.status)
      assert.are.equal('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}\n', r.body)
      local dir = H.tmpdir()
      local other = H.make_server_cert(dir, { "x" })
      local c = H.make_client_cert(dir, other, "intruder")
      local r2 = api("GET", "/api/v1/namespaces", { cert = c.cert_pem, key = c.key_pem })
      assert.are.equal(401, r2.status)
      os.execute("rm -rf '" .. dir .. "'")
    end)

    it("lets a certificate outside system:masters read discovery but not resources (403)", function()
      local o = { cert = creds.viewer_cert, key = creds.viewer_key }
      assert.are.equal(200, api("GET", "/api", o).status)
      local r = api("GET", "/api/v1/namespaces/default/configmaps", o)
      assert.are.equal(403, r.status)
      assert.are.equal('configmaps is forbidden: User "viewer" cannot list resource "configmaps" in API group "" in the namespace "default"', r.json.message)
      assert.are.equal("Forbidden", r.json.reason)
      local r2 = api("GET", "/apis/apps/v1/namespaces/kube-system/deployments/coredns", o)
      assert.are.equal('deployments.apps "coredns" is forbidden: User "viewer" cannot get resource "deployments" in API group "apps" in the namespace "kube-system"', r2.json.message)
      assert.are.same({ name = "coredns", group = "apps", kind = "deployments" }, r2.json.details)
    end)

    it("speaks HTTP/2 and HTTP/1.1 with the apiserver's headers and a trailing newline", function()
      local r2 = get("/api")
      assert.are.equal("1.1", r2.http_version)
      local r = api("GET", "/api/v1/namespaces/default", { http2 = true })
      assert.are.equal("2", r.http_version)
      assert.are.equal(200, r.status)
      assert.are.equal("application/json", r.headers["content-type"])
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", r.headers["audit-id"])
      assert.are.equal("no-cache, private", r.headers["cache-control"])
      assert.truthy(r.headers["x-kubernetes-pf-flowschema-uid"])
      assert.are.equal("\n", r.body:sub(-1))
      assert.are.equal('{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default",', r.body:sub(1, 67))
      local y = api("GET", "/api/v1/namespaces/default", { accept = "application/yaml" })
      assert.are.equal("application/yaml", y.headers["content-type"])
      assert.are.equal("Namespace", yaml.decode(y.body).kind)
    end)
  end)

  -- ---------------------------------------------------------------- discovery
  describe("discovery", function()
    local function resource(list, name)
      for _, r in ipairs(list.resources) do if r.name == name then return r end end
    end

    it("serves /api, /apis and the built-in group versions", function()
      local v = ok(get("/api"))
      assert.are.equal("APIVersions", v.kind)
      assert.are.same({ "v1" }, v.versions)
      assert.are.equal(lab.env.K8S_SERVER:match("//(.*)$"), v.serverAddressByClientCIDRs[1].serverAddress)
      local groups = ok(get("/apis"))
      assert.are.equal("APIGroupList", groups.kind)
      local seen = {}
      for _, g in ipairs(groups.groups) do seen[g.name] = g.preferredVersion.groupVersion end
      for _, g in ipairs { "apps", "rbac.authorization.k8s.io", "networking.k8s.io", "apiextensions.k8s.io",
        "admissionregistration.k8s.io" } do
        assert.are.equal(g .. "/v1", seen[g], g)
      end
      local core = ok(get("/api/v1"))
      assert.are.equal("APIResourceList", core.kind)
      local cmr = resource(core, "configmaps")
      assert.are.same({ "cm" }, cmr.shortNames)
      assert.is_true(cmr.namespaced)
      assert.are.equal("ConfigMap", cmr.kind)
      assert.are.same({ "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch" }, cmr.verbs)
      for _, n in ipairs { "namespaces", "secrets", "services", "serviceaccounts", "nodes", "namespaces/status" } do
        assert.truthy(resource(core, n), n)
      end
      assert.is_false(resource(core, "nodes").namespaced)
      local apps = ok(get("/apis/apps/v1"))
      local scale = resource(apps, "deployments/scale")
      assert.are.equal("autoscaling", scale.group)
      assert.are.equal("Scale", scale.kind)
      assert.are.same({ "all" }, resource(apps, "deployments").categories)
      local g = ok(get("/apis/rbac.authorization.k8s.io"))
      assert.are.equal("APIGroup", g.kind)
    end)

    it("answers unknown paths like the apiserver: 404 page not found, or a NotFound Status", function()
      local r = get("/apis/nope.example.com/v1")
      assert.are.equal(404, r.status)
      assert.are.equal("404 page not found\n", r.body)
      assert.matches("^text/plain", r.headers["content-type"])
      local r2 = get("/api/v1/widgets")
      assert.are.equal(404, r2.status)
      assert.are.same({ kind = "Status", apiVersion = "v1", metadata = {}, status = "Failure",
        message = "the server could not find the requested resource", reason = "NotFound", details = {}, code = 404 }, r2.json)
      assert.are.equal(405, api("POST", "/apis/apps/v1/deployments", { body = {} }).status)
    end)

    it("serves aggregated discovery (apidiscovery.k8s.io/v2) when asked for it", function()
      local accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
      local r = api("GET", "/apis", { accept = accept })
      assert.are.equal("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        r.headers["content-type"])
      assert.are.equal("APIGroupDiscoveryList", r.json.kind)
      local apps
      for _, item in ipairs(r.json.items) do if item.metadata.name == "apps" then apps = item end end
      local dep
      for _, x in ipairs(apps.versions[1].resources) do if x.resource == "deployments" then dep = x end end
      assert.are.equal("Namespaced", dep.scope)
      assert.are.equal("Deployment", dep.responseKind.kind)
      assert.are.same({ "deploy" }, dep.shortNames)
      local core = api("GET", "/api", { accept = accept }).json
      assert.are.equal(1, #core.items)
      assert.is_nil(core.items[1].metadata.name)
      -- without the header: the legacy document
      assert.are.equal("APIGroupList", get("/apis").json.kind)
    end)

    it("serves OpenAPI v3 with fieldValidation on every PATCH (what kubectl checks) and a v2 document", function()
      local idx = ok(get("/openapi/v3"))
      local url = idx.paths["apis/apps/v1"].serverRelativeURL
      assert.matches("^/openapi/v3/apis/apps/v1%?hash=%x+$", url)
      local doc = ok(get(url))
      local p = doc.paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].patch
      assert.are.same({ group = "apps", version = "v1", kind = "Deployment" }, p["x-kubernetes-group-version-kind"])
      local names = {}
      for _, prm in ipairs(p.parameters) do names[prm.name] = prm["in"] end
      assert.are.equal("query", names.fieldValidation)
      assert.truthy(idx.paths["api/v1"])
      assert.are.equal("2.0", ok(get("/openapi/v2")).swagger)
    end)

    it("adds an applied CRD's group version once it is Established, and drops it with the CRD", function()
      ok(apply(WIDGET_CRD), 201)
      established("widgets.example.com")
      local list = ok(get("/apis/example.com/v1"))
      assert.are.equal("widgets", list.resources[1].name)
      assert.are.equal("Widget", list.resources[1].kind)
      assert.are.same({ "wd" }, list.resources[1].shortNames)
      assert.are.equal("widgets/status", list.resources[2].name)
      local groups = ok(get("/apis"))
      local found
      for _, g in ipairs(groups.groups) do if g.name == "example.com" then found = g end end
      assert.are.equal("example.com/v1", found.preferredVersion.groupVersion)
      assert.truthy(ok(get("/openapi/v3")).paths["apis/example.com/v1"])
      ok(api("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"))
      eventually(function() return get("/apis/example.com/v1").status == 404 end, 5, "the group to go")
      assert.are.equal(404, get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").status)
    end)
  end)

  -- ---------------------------------------------------------------- server-side apply
  describe("server-side apply", function()
    it("refuses other content types with 415 listing what the resource accepts", function()
      local r = api("PATCH", "/api/v1/namespaces/default/configmaps/x", { body = cm("x", { a = "1" }),
        query = { fieldManager = "tlr" } })
      assert.are.equal(415, r.status)
      assert.are.equal("UnsupportedMediaType", r.json.reason)
      assert.are.equal("the body of the request was in an unknown format - accepted media types include: " ..
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml", r.json.message)
      ok(apply(WIDGET_CRD), 201)
      established("widgets.example.com")
      local r2 = api("PATCH", "/apis/example.com/v1/namespaces/default/widgets/w", { body = widget("w", {}),
        content_type = "application/strategic-merge-patch+json" })
      assert.are.equal(415, r2.status)
      assert.are.equal("the body of the request was in an unknown format - accepted media types include: " ..
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml", r2.json.message)
    end)

    it("requires fieldManager (422 Invalid PatchOptions, as the apiserver answers)", function()
      local r = api("PATCH", "/api/v1/namespaces/default/configmaps/x", { body = cm("x", {}),
        content_type = "application/apply-patch+yaml" })
      assert.are.equal(422, r.status)
      assert.are.equal('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', r.json.message)
      assert.are.equal("Invalid", r.json.reason)
      assert.are.same({ group = "meta.k8s.io", kind = "PatchOptions",
        causes = { { reason = "FieldValueRequired", message = "Required value: is required for apply patch",
          field = "fieldManager" } } }, r.json.details)
      local r2 = api("PATCH", "/api/v1/namespaces/default/configmaps/x", { body = cm("x", {}),
        content_type = "application/merge-patch+json",
        query = { force = "true" } })
      assert.are.equal('PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch', r2.json.message)
    end)

    it("creates (201), records the manager's fields, and a repeated apply changes nothing", function()
      local r = apply(cm("one", { a = "1" }, { labels = { app = "demo" } }))
      local o = ok(r, 201)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", o.metadata.uid)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", o.metadata.creationTimestamp)
      assert.are.equal("string", type(o.metadata.resourceVersion))
      assert.is_nil(o.metadata.generation)
      local m = o.metadata.managedFields[1]
      assert.are.equal("tlr", m.manager)
      assert.are.equal("Apply", m.operation)
      assert.are.equal("v1", m.apiVersion)
      assert.are.equal("FieldsV1", m.fieldsType)
      assert.are.same({ ["f:data"] = { ["f:a"] = {} },
        ["f:metadata"] = { ["f:labels"] = { ["f:app"] = {} } } }, m.fieldsV1)
      local again = ok(apply(cm("one", { a = "1" }, { labels = { app = "demo" } })))
      assert.are.equal(o.metadata.resourceVersion, again.metadata.resourceVersion)
      local changed = ok(apply(cm("one", { a = "2" }, { labels = { app = "demo" } })))
      assert.are.equal("2", changed.data.a)
      assert.is_true(tonumber(changed.metadata.resourceVersion) > tonumber(o.metadata.resourceVersion))
    end)

    it("bumps metadata.generation on spec changes only", function()
      local dep = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "web", namespace = "default" },
        spec = { replicas = 1, selector = { matchLabels = { app = "web" } },
          template = { metadata = { labels = { app = "web" } }, spec = { containers = { { name = "c",
            image = "nginx:1.27" } } } } } }
      local o = ok(apply(dep), 201)
      assert.are.equal(1, o.metadata.generation)
      assert.are.equal(10, o.spec.revisionHistoryLimit) -- defaulted, owned by nobody
      dep.metadata.labels = { tier = "front" }
      assert.are.equal(1, ok(apply(dep)).metadata.generation)
      dep.spec.replicas = 3
      local o3 = ok(apply(dep))
      assert.are.equal(2, o3.metadata.generation)
      assert.are.equal(3, o3.spec.replicas)
      -- status sent to the main resource is ignored
      dep.status = { replicas = 99 }
      local o4 = ok(apply(dep))
      assert.are_not.equal(99, (o4.status or {}).replicas)
    end)

    it("answers 404 for a missing namespace and 400 for name/version mismatches", function()
      local r = apply(cm("x", {}, { ns = "nope" }))
      assert.are.equal(404, r.status)
      assert.are.same({ kind = "Status", apiVersion = "v1", metadata = {}, status = "Failure",
        message = 'namespaces "nope" not found',
        reason = "NotFound", details = { name = "nope", kind = "namespaces" }, code = 404 }, r.json)
      local r2 = apply(cm("b", {}), { path = "/api/v1/namespaces/default/configmaps/a" })
      assert.are.equal(400, r2.status)
      assert.are.equal("the name of the object (b) does not match the name on the URL (a)", r2.json.message)
      assert.are.equal("BadRequest", r2.json.reason)
      local wrong = cm("a", {})
      wrong.apiVersion = "apps/v1"
      local r3 = apply(wrong, { path = "/api/v1/namespaces/default/configmaps/a" })
      assert.are.equal("Incorrect version specified in apply patch. Specified patch version: apps/v1, expected: v1", r3.json.message)
      local r4 = apply(cm("a", {}, { ns = "kube-system" }), { path = "/api/v1/namespaces/default/configmaps/a" })
      assert.are.equal("the namespace of the provided object does not match the namespace sent on the request", r4.json.message)
      local mf = cm("a", {})
      mf.metadata.managedFields = { { manager = "x" } }
      assert.are.equal("metadata.managedFields must be nil", apply(mf).json.message)
      local bad = apply(cm("Bad_Name", {}))
      assert.are.equal(422, bad.status)
      assert.matches('^ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain', bad.json.message)
    end)

    it("refuses to take fields another manager owns (409) unless forced", function()
      ok(apply(cm("c", { a = "1", b = "x" }), { manager = "alice" }), 201)
      local r = apply(cm("c", { a = "2" }), { manager = "bob" })
      assert.are.equal(409, r.status)
      assert.are.equal("Conflict", r.json.reason)
      assert.are.equal('Apply failed with 1 conflict: conflict with "alice": .data.a', r.json.message)
      assert.are.same({ causes = { { reason = "FieldManagerConflict", message = 'conflict with "alice"',
        field = ".data.a" } } }, r.json.details)
      local two = apply(cm("c", { a = "2", b = "y" }), { manager = "bob" })
      assert.are.equal('Apply failed with 2 conflicts: conflicts with "alice":\n- .data.a\n- .data.b', two.json.message)
      -- the same value is shared ownership, not a conflict
      local shared = ok(apply(cm("c", { b = "x" }), { manager = "bob" }))
      local m = managers(shared)
      assert.are.same({ ["f:data"] = { ["f:b"] = {} } }, m["bob/Apply"].fieldsV1)
      assert.are.same({ ["f:data"] = { ["f:a"] = {}, ["f:b"] = {} } }, m["alice/Apply"].fieldsV1)
      local forced = ok(apply(cm("c", { a = "2" }), { manager = "bob", force = true }))
      assert.are.equal("2", forced.data.a)
      m = managers(forced)
      assert.are.same({ ["f:data"] = { ["f:b"] = {} } }, m["alice/Apply"].fieldsV1)
      assert.are.same({ ["f:data"] = { ["f:a"] = {} } }, m["bob/Apply"].fieldsV1)
      -- bob no longer applies b; alice still owns it, so it stays
      assert.are.equal("x", forced.data.b)
    end)

    it("removes fields a manager stops applying unless someone else owns them", function()
      ok(apply(cm("d", { a = "1", b = "2", c = "3" }), { manager = "alice" }), 201)
      ok(apply(cm("d", { c = "3" }), { manager = "bob" }))
      local o = ok(apply(cm("d", { a = "1" }), { manager = "alice" }))
      assert.are.same({ a = "1", c = "3" }, o.data)
    end)

    it("records non-apply writers as Update managers that appliers then conflict with", function()
      ok(apply(cm("e", { a = "1" }), { manager = "alice" }), 201)
      local p = api("PATCH", "/api/v1/namespaces/default/configmaps/e", { body = { data = { a = "edited" } },
        content_type = "application/merge-patch+json", query = { fieldManager = "kubectl-edit" } })
      local o = ok(p)
      local m = managers(o)
      assert.are.equal("Update", m["kubectl-edit/Update"].operation)
      assert.is_nil(m["alice/Apply"]) -- it lost its only field
      local r = apply(cm("e", { a = "1" }), { manager = "alice" })
      assert.are.equal(409, r.status)
      assert.are.equal('Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.a', r.json.message)
    end)

    it("merges associative lists by key (containers by name, CRD list-map-keys)", function()
      local function dep(containers)
        return { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "lists", namespace = "default" },
          spec = { selector = { matchLabels = { app = "l" } },
            template = { metadata = { labels = { app = "l" } }, spec = { containers = containers } } } }
      end
      ok(apply(dep { { name = "main", image = "nginx:1" } }, { manager = "alice" }), 201)
      local both = ok(apply(dep { { name = "sidecar", image = "envoy:1" } }, { manager = "bob" }))
      local names = {}
      for _, c in ipairs(both.spec.template.spec.containers) do names[#names + 1] = c.name end
      assert.are.same({ "main", "sidecar" }, names)
      local keyed = managers(both)["bob/Apply"].fieldsV1["f:spec"]["f:template"]["f:spec"]["f:containers"]
      assert.truthy(keyed['k:{"name":"sidecar"}'])
      ok(apply(WIDGET_CRD), 201)
      established("widgets.example.com")
      ok(apply(widget("w", { ports = { { name = "http", port = 80 } } }), { manager = "alice" }), 201)
      local w = ok(apply(widget("w", { ports = { { name = "https", port = 443 } } }), { manager = "bob" }))
      assert.are.equal(2, #w.spec.ports)
      local conflict = apply(widget("w", { ports = { { name = "http", port = 8080 } } }), { manager = "bob" })
      assert.are.equal('Apply failed with 1 conflict: conflict with "alice": .spec.ports[name="http"].port',
        conflict.json.message)
    end)

    it("prunes fields a CRD schema does not declare; fieldValidation=Strict refuses them", function()
      ok(apply(WIDGET_CRD), 201)
      established("widgets.example.com")
      local o = ok(apply(widget("p", { size = 1, bogus = true })), 201)
      assert.is_nil(o.spec.bogus)
      assert.are.equal(1, o.spec.size)
      local r = apply(widget("p", { size = 2, bogus = true }), { query = { fieldValidation = "Strict" } })
      assert.are.equal(400, r.status)
      assert.are.equal('strict decoding error: unknown field "spec.bogus"', r.json.message)
    end)
  end)

  -- ---------------------------------------------------------------- other writes
  describe("create, update and patch", function()
    it("creates with POST (201, generateName), refuses duplicates (409) and stale updates (409)", function()
      local o = ok(api("POST", "/api/v1/namespaces/default/configmaps", { body = { apiVersion = "v1",
        kind = "ConfigMap",
        metadata = { generateName = "gen-" }, data = { k = "v" } } }), 201)
      assert.matches("^gen%-[b-z2-9]+$", o.metadata.name)
      assert.are.equal(9, #o.metadata.name)
      local dup = api("POST", "/api/v1/namespaces/default/configmaps", { body = cm(o.metadata.name, {}) })
      assert.are.equal(409, dup.status)
      assert.are.equal("AlreadyExists", dup.json.reason)
      assert.are.equal(('configmaps "%s" already exists'):format(o.metadata.name), dup.json.message)
      local path = "/api/v1/namespaces/default/configmaps/" .. o.metadata.name
      local put = cm(o.metadata.name, { k = "w" })
      put.metadata.resourceVersion = o.metadata.resourceVersion
      local u = ok(api("PUT", path, { body = put }))
      assert.are.equal("w", u.data.k)
      local stale = api("PUT", path, { body = put })
      assert.are.equal(409, stale.status)
      assert.are.equal(('Operation cannot be fulfilled on configmaps "%s": the object has been modified; please apply your changes to the latest version and try again'):format(o.metadata.name), stale.json.message)
      assert.are.equal(404, api("PUT", "/api/v1/namespaces/default/configmaps/absent", { body = cm("absent",
        {}) }).status)
      local json_patch = ok(api("PATCH", path, { body = { { op = "add", path = "/data/j", value = "p" } },
        content_type = "application/json-patch+json" }))
      assert.are.equal("p", json_patch.data.j)
      local smp = ok(api("PATCH", "/api/v1/namespaces/default/configmaps/" .. o.metadata.name,
        { body = { metadata = { labels = { s = "1" } } }, content_type = "application/strategic-merge-patch+json" }))
      assert.are.equal("1", smp.metadata.labels.s)
      assert.are.equal(404, api("PATCH", "/api/v1/namespaces/default/configmaps/absent", { body = {},
        content_type = "application/merge-patch+json" }).status)
    end)

    it("supports dryRun, the scale subresource, deletecollection and fieldValidation=Warn", function()
      local dry = ok(apply(cm("dry", { a = "1" }), { query = { dryRun = "All" } }), 201)
      assert.are.equal("dry", dry.metadata.name)
      assert.are.equal(404, get("/api/v1/namespaces/default/configmaps/dry").status)
      ok(apply({ apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "sc", namespace = "default" },
        spec = { replicas = 2, selector = { matchLabels = { app = "sc" } },
          template = { metadata = { labels = { app = "sc" } }, spec = { containers = { { name = "c",
            image = "i:1" } } } } } }), 201)
      local scale = ok(get("/apis/apps/v1/namespaces/default/deployments/sc/scale"))
      assert.are.equal("Scale", scale.kind)
      assert.are.equal("autoscaling/v1", scale.apiVersion)
      assert.are.equal(2, scale.spec.replicas)
      assert.are.equal("app=sc", scale.status.selector)
      ok(api("PATCH", "/apis/apps/v1/namespaces/default/deployments/sc/scale", { body = { spec = { replicas = 5 } },
        content_type = "application/merge-patch+json" }))
      assert.are.equal(5, ok(get("/apis/apps/v1/namespaces/default/deployments/sc")).spec.replicas)
      for i = 1, 3 do ok(apply(cm("dc" .. i, {}, { labels = { batch = i < 3 and "gone" or "kept" } })), 201) end
      local del = ok(api("DELETE", "/api/v1/namespaces/default/configmaps",
        { query = { labelSelector = "batch=gone" } }))
      assert.are.equal("ConfigMapList", del.kind)
      assert.are.equal(2, #del.items)
      assert.are.equal(404, get("/api/v1/namespaces/default/configmaps/dc1").status)
      assert.are.equal(200, get("/api/v1/namespaces/default/configmaps/dc3").status)
      ok(apply(WIDGET_CRD), 201)
      established("widgets.example.com")
      local warned = apply(widget("warn", { size = 1, extra = "x" }), { query = { fieldValidation = "Warn" } })
      assert.are.equal(201, warned.status)
      assert.are.equal('299 - "unknown field \\"spec.extra\\""', warned.headers.warning)
    end)

    it("decodes protobuf bodies of the kinds kubectl create sends that way", function()
      local function field(n, s) assert(#s < 128); return string.char(n * 8 + 2, #s) .. s end
      local raw = field(1, field(1, "pb")) .. field(2, field(1, "k") .. field(2, "v"))
      local body = "k8s\0" .. field(1, field(1, "v1") .. field(2, "ConfigMap")) .. field(2, raw)
      local o = ok(api("POST", "/api/v1/namespaces/default/configmaps", { body = body,
        content_type = "application/vnd.kubernetes.protobuf",
        accept = "application/vnd.kubernetes.protobuf,application/json" }), 201)
      assert.are.equal("pb", o.metadata.name)
      assert.are.same({ k = "v" }, o.data)
      local dep = "k8s\0" .. field(1, field(1, "apps/v1") .. field(2, "Deployment")) .. field(2, field(1,
        field(1, "d")))
      local r = api("POST", "/apis/apps/v1/namespaces/default/deployments", { body = dep,
        content_type = "application/vnd.kubernetes.protobuf" })
      assert.are.equal(415, r.status)
    end)

    it("turns Secret stringData into data and defaults the type", function()
      local s = ok(apply({ apiVersion = "v1", kind = "Secret", metadata = { name = "s",
        namespace = "default" }, stringData = { pw = "hunter2" } }), 201)
      assert.are.equal("Opaque", s.type)
      assert.are.equal(crypto.base64_encode("hunter2"), s.data.pw)
      assert.is_nil(s.stringData)
    end)
  end)

  -- ---------------------------------------------------------------- get and list
  describe("get and list", function()
    it("answers 404 with the apiserver's NotFound Status", function()
      local r = get("/api/v1/namespaces/default/configmaps/missing")
      assert.are.same({ kind = "Status", apiVersion = "v1", metadata = {}, status = "Failure",
        message = 'configmaps "missing" not found',
        reason = "NotFound", details = { name = "missing", kind = "configmaps" }, code = 404 }, r.json)
      local r2 = get("/apis/apps/v1/namespaces/default/deployments/missing")
      assert.are.equal('deployments.apps "missing" not found', r2.json.message)
      assert.are.same({ name = "missing", group = "apps", kind = "deployments" }, r2.json.details)
    end)

    it("lists with labelSelector and fieldSelector", function()
      ok(apply(cm("l1", {}, { labels = { app = "a", tier = "web" } })), 201)
      ok(apply(cm("l2", {}, { labels = { app = "b" } })), 201)
      ok(apply(cm("l3", {}, { labels = { app = "a" } })), 201)
      local function names(q)
        local r = ok(api("GET", "/api/v1/namespaces/default/configmaps", { query = q }))
        local out = {}
        for _, i in ipairs(r.items) do out[#out + 1] = i.metadata.name end
        return out, r
      end
      local all, r = names {}
      assert.are.equal("ConfigMapList", r.kind)
      assert.are.equal("v1", r.apiVersion)
      assert.matches("^%d+$", r.metadata.resourceVersion)
      assert.is_nil(r.items[1].kind) -- typed lists carry no kind per item
      assert.are.same({ "kube-root-ca.crt", "l1", "l2", "l3" }, all)
      assert.are.same({ "l1", "l3" }, (names { labelSelector = "app=a" }))
      assert.are.same({ "l2" }, (names { labelSelector = "app!=a,app" }))
      assert.are.same({ "l1", "l2" }, (names { labelSelector = "app in (a,b),app notin (c)",
        fieldSelector = "metadata.name!=l3" }))
      assert.are.same({ "kube-root-ca.crt" }, (names { labelSelector = "!app" }))
      assert.are.same({ "l1" }, (names { labelSelector = "tier", fieldSelector = "metadata.namespace=default" }))
      assert.are.same({ "l2" }, (names { fieldSelector = "metadata.name=l2" }))
      local bad = api("GET", "/api/v1/namespaces/default/configmaps", { query = { fieldSelector = "data.x=1" } })
      assert.are.equal(400, bad.status)
      assert.are.equal('"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"',
        bad.json.message)
      assert.are.equal(400, api("GET", "/api/v1/namespaces/default/configmaps",
        { query = { labelSelector = "a in (" } }).status)
      local ns = ok(api("GET", "/api/v1/namespaces", { query = { fieldSelector = "status.phase=Active" } }))
      assert.are.equal(4, #ns.items)
      local across = ok(get("/api/v1/configmaps"))
      assert.are.equal(7, #across.items) -- kube-root-ca.crt in the 4 system namespaces + 3
    end)

    it("pages with limit and continue", function()
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "paging" } }), 201)
      for i = 1, 5 do ok(apply(cm("p" .. i, {}, { ns = "paging" })), 201) end
      eventually(function() return get("/api/v1/namespaces/paging/configmaps/kube-root-ca.crt").status == 200 end)
      local seen, token, pages = {}, nil, 0
      repeat
        local r = ok(api("GET", "/api/v1/namespaces/paging/configmaps", { query = { limit = 2, continue = token } }))
        pages = pages + 1
        for _, i in ipairs(r.items) do seen[#seen + 1] = i.metadata.name end
        token = r.metadata.continue
        if pages == 1 then assert.are.equal(4, r.metadata.remainingItemCount) end
      until not token
      assert.are.equal(3, pages)
      assert.are.same({ "kube-root-ca.crt", "p1", "p2", "p3", "p4", "p5" }, seen)
      local bad = api("GET", "/api/v1/namespaces/paging/configmaps", { query = { limit = 2, continue = "garbage" } })
      assert.are.equal(400, bad.status)
      -- a continue token from before a compaction is expired (410)
      local first = ok(api("GET", "/api/v1/namespaces/paging/configmaps", { query = { limit = 2 } }))
      ok(apply(cm("p6", {}, { ns = "paging" })), 201)
      lab:control("POST", "/k8s/compact")
      local gone = api("GET", "/api/v1/namespaces/paging/configmaps", { query = { limit = 2,
        continue = first.metadata.continue } })
      assert.are.equal(410, gone.status)
      assert.are.equal("Expired", gone.json.reason)
      assert.truthy(gone.json.metadata.continue)
    end)

    it("answers Tables for kubectl get, with CRD printer columns", function()
      ok(apply(cm("t", { a = "1", b = "2" })), 201)
      local t = ok(api("GET", "/api/v1/namespaces/default/configmaps",
        { accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" }))
      assert.are.equal("Table", t.kind)
      assert.are.equal("meta.k8s.io/v1", t.apiVersion)
      local cols = {}
      for _, c in ipairs(t.columnDefinitions) do cols[#cols + 1] = c.name end
      assert.are.same({ "Name", "Data", "Age" }, cols)
      local row = t.rows[2]
      assert.are.equal("t", row.cells[1])
      assert.are.equal(2, row.cells[2])
      assert.are.equal("PartialObjectMetadata", row.object.kind)
      local crd = WIDGET_CRD
      crd.spec.versions[1].additionalPrinterColumns = { { name = "Color", type = "string", jsonPath = ".spec.color" } }
      ok(apply(crd), 201)
      crd.spec.versions[1].additionalPrinterColumns = nil
      established("widgets.example.com")
      ok(apply(widget("w", { color = "red" })), 201)
      local wt = ok(api("GET", "/apis/example.com/v1/namespaces/default/widgets",
        { accept = "application/json;as=Table;v=v1;g=meta.k8s.io" }))
      assert.are.equal("Color", wt.columnDefinitions[2].name)
      assert.are.same({ "w", "red" }, wt.rows[1].cells)
      local items = ok(get("/apis/example.com/v1/namespaces/default/widgets")).items
      assert.are.equal("Widget", items[1].kind) -- unstructured lists keep kind and apiVersion
      assert.are.equal("example.com/v1", items[1].apiVersion)
    end)
  end)

  -- ---------------------------------------------------------------- watch
  describe("watch", function()
    --- Starts a watch in a task; returns the task (its result: the events) .
    local function watch(path, q)
      return sched.spawn(function()
        local buf, events = "", {}
        local r = api("GET", path, { query = q, on_data = function(chunk)
          buf = buf .. chunk
          while true do
            local line, rest = buf:match("^(.-)\n(.*)$")
            if not line then break end
            buf = rest
            events[#events + 1] = json.decode(line)
          end
        end })
        return events, r
      end)
    end

    it("streams ADDED, MODIFIED, DELETED from a resourceVersion until timeoutSeconds", function()
      local rv = ok(get("/api/v1/namespaces/default/configmaps")).metadata.resourceVersion
      local t0 = sched.now()
      local task = watch("/api/v1/namespaces/default/configmaps", { watch = "true", resourceVersion = rv,
        timeoutSeconds = 1 })
      sched.sleep(0.1)
      ok(apply(cm("w", { a = "1" })), 201)
      ok(apply(cm("w", { a = "2" })))
      ok(apply(cm("other", {}, { ns = "kube-system" })), 201) -- another namespace: not seen
      ok(api("DELETE", "/api/v1/namespaces/default/configmaps/w"))
      local events = task:wait(5)
      assert.is_true(sched.now() - t0 >= 0.9)
      local types = {}
      for _, e in ipairs(events) do types[#types + 1] = e.type end
      assert.are.same({ "ADDED", "MODIFIED", "DELETED" }, types)
      assert.are.equal("ConfigMap", events[1].object.kind)
      assert.are.equal("2", events[3].object.data.a)
      local r1, r3 = tonumber(events[1].object.metadata.resourceVersion), tonumber(events[3].object.metadata.resourceVersion)
      assert.is_true(r3 > r1)
    end)

    it("starts with ADDED for existing objects without a resourceVersion, filtered by selectors", function()
      ok(apply(cm("s1", {}, { labels = { pick = "yes" } })), 201)
      ok(apply(cm("s2", {}, { labels = { pick = "no" } })), 201)
      local task = watch("/api/v1/namespaces/default/configmaps", { watch = "1", labelSelector = "pick=yes",
        timeoutSeconds = 1 })
      sched.sleep(0.1)
      ok(apply(cm("s2", {}, { labels = { pick = "yes" } }))) -- enters the selection: ADDED
      ok(apply(cm("s1", {}, { labels = { pick = "no" } }))) -- leaves it: DELETED
      local events = task:wait(5)
      local seq = {}
      for _, e in ipairs(events) do seq[#seq + 1] = e.type .. ":" .. e.object.metadata.name end
      assert.are.same({ "ADDED:s1", "ADDED:s2", "DELETED:s1" }, seq)
    end)

    it("answers a resourceVersion older than the history with one ERROR event (410 Expired)", function()
      local rv = ok(apply(cm("old", {})), 201).metadata.resourceVersion
      ok(apply(cm("old", { x = "1" })))
      lab:control("POST", "/k8s/compact")
      local events, r = watch("/api/v1/namespaces/default/configmaps", { watch = "true", resourceVersion = rv }):wait(5)
      assert.are.equal(200, r.status)
      assert.are.equal(1, #events)
      assert.are.equal("ERROR", events[1].type)
      assert.are.equal(410, events[1].object.code)
      assert.are.equal("Expired", events[1].object.reason)
      assert.matches("^too old resource version: " .. rv .. " %(%d+%)$", events[1].object.message)
    end)

    it("sends bookmarks and the initial-events-end bookmark when asked", function()
      lab:control("PATCH", "/profile", { k8s = { bookmark_interval = 0.2 } })
      ok(apply(cm("b", {})), 201)
      local events = watch("/api/v1/namespaces/default/configmaps", { watch = "true", sendInitialEvents = "true",
        resourceVersionMatch = "NotOlderThan", allowWatchBookmarks = "true", timeoutSeconds = 1 }):wait(5)
      assert.are.equal("ADDED", events[1].type)
      assert.are.equal("ADDED", events[2].type)
      assert.are.equal("BOOKMARK", events[3].type)
      assert.are.equal("true", events[3].object.metadata.annotations["k8s.io/initial-events-end"])
      assert.are.equal("BOOKMARK", events[4].type)
      assert.matches("^%d+$", events[4].object.metadata.resourceVersion)
    end)

    it("watches one object through the fieldSelector, as kubectl wait does", function()
      local rv = ok(apply(cm("one", { v = "1" })), 201).metadata.resourceVersion
      local task = watch("/api/v1/namespaces/default/configmaps", { watch = "true", resourceVersion = rv,
        fieldSelector = "metadata.name=one", timeoutSeconds = 1 })
      sched.sleep(0.1)
      ok(apply(cm("two", { v = "1" })), 201)
      ok(apply(cm("one", { v = "2" })))
      local events = task:wait(5)
      assert.are.equal(1, #events)
      assert.are.equal("MODIFIED", events[1].type)
      assert.are.equal("2", events[1].object.data.v)
    end)
  end)

  -- ---------------------------------------------------------------- delete
  describe("delete", function()
    it("deletes at once and answers a Success Status; 404 after", function()
      local o = ok(apply(cm("x", {})), 201)
      local r = ok(api("DELETE", "/api/v1/namespaces/default/configmaps/x"))
      assert.are.same({ kind = "Status", apiVersion = "v1", metadata = {}, status = "Success",
        details = { name = "x", kind = "configmaps", uid = o.metadata.uid } }, r)
      assert.are.equal(404, get("/api/v1/namespaces/default/configmaps/x").status)
      assert.are.equal(404, api("DELETE", "/api/v1/namespaces/default/configmaps/x").status)
      local bad = api("DELETE", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
        { body = { propagationPolicy = "Sometimes" } })
      assert.are.equal(422, bad.status)
      assert.are.equal('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sometimes": supported values: "Foreground", "Background", "Orphan", "nil"', bad.json.message)
    end)

    it("keeps an object with finalizers (deletionTimestamp) until a patch or an apply removes them", function()
      ok(apply(cm("f", { a = "1" }, { finalizers = { "example.com/hold" } })), 201)
      local d = ok(api("DELETE", "/api/v1/namespaces/default/configmaps/f"))
      assert.are.equal("ConfigMap", d.kind)
      assert.matches("Z$", d.metadata.deletionTimestamp)
      assert.are.equal(0, d.metadata.deletionGracePeriodSeconds)
      assert.are.same({ "example.com/hold" }, ok(get("/api/v1/namespaces/default/configmaps/f")).metadata.finalizers)
      -- the manager that applied the finalizer drops it: the object goes
      local gone = ok(apply(cm("f", { a = "1" })))
      assert.are.equal("f", gone.metadata.name)
      assert.are.equal(404, get("/api/v1/namespaces/default/configmaps/f").status)
      -- and with a merge patch
      ok(apply(cm("g", {}, { finalizers = { "example.com/hold" } })), 201)
      ok(api("DELETE", "/api/v1/namespaces/default/configmaps/g", { query = { propagationPolicy = "Background" } }))
      assert.are.equal(200, get("/api/v1/namespaces/default/configmaps/g").status)
      ok(api("PATCH", "/api/v1/namespaces/default/configmaps/g", { body = { metadata = { finalizers = json.null } },
        content_type = "application/merge-patch+json" }))
      assert.are.equal(404, get("/api/v1/namespaces/default/configmaps/g").status)
    end)

    it("collects dependents: Background deletes them, Orphan keeps them, Foreground waits for them", function()
      local function owner(name)
        local o = ok(apply(cm(name, {})), 201)
        return { { apiVersion = "v1", kind = "ConfigMap", name = name, uid = o.metadata.uid } }
      end
      ok(apply(cm("dep-bg", {}, { owners = owner("own-bg") })), 201)
      ok(api("DELETE", "/api/v1/namespaces/default/configmaps/own-bg"))
      eventually(function() return get("/api/v1/namespaces/default/configmaps/dep-bg").status == 404 end, 5,
        "background GC")
      ok(apply(cm("dep-or", {}, { owners = owner("own-or") })), 201)
      local o = ok(api("DELETE", "/api/v1/namespaces/default/configmaps/own-or",
        { body = { kind = "DeleteOptions", apiVersion = "v1", propagationPolicy = "Orphan" } }))
      assert.are.same({ "orphan" }, o.metadata.finalizers)
      eventually(function() return get("/api/v1/namespaces/default/configmaps/own-or").status == 404 end, 5,
        "orphaning")
      assert.is_nil(ok(get("/api/v1/namespaces/default/configmaps/dep-or")).metadata.ownerReferences)
      ok(apply(cm("dep-fg", {}, { owners = owner("own-fg"), finalizers = { "example.com/slow" } })), 201)
      local f = ok(api("DELETE", "/api/v1/namespaces/default/configmaps/own-fg",
        { query = { propagationPolicy = "Foreground" } }))
      assert.are.same({ "foregroundDeletion" }, f.metadata.finalizers)
      eventually(function() return ok(get("/api/v1/namespaces/default/configmaps/dep-fg")).metadata.deletionTimestamp end, 5, "the dependent to be deleted")
      sched.sleep(0.1)
      assert.are.equal(200, get("/api/v1/namespaces/default/configmaps/own-fg").status) -- waits for its dependent
      ok(api("PATCH", "/api/v1/namespaces/default/configmaps/dep-fg", { body = { { op = "remove",
        path = "/metadata/finalizers" } },
        content_type = "application/json-patch+json" }))
      eventually(function() return get("/api/v1/namespaces/default/configmaps/own-fg").status == 404 end, 5,
        "foreground deletion")
    end)

    it("terminates a namespace: content removed, new content refused (403), then it goes", function()
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "doomed" } }), 201)
      ok(apply(cm("c1", {}, { ns = "doomed", finalizers = { "example.com/hold" } })), 201)
      local d = ok(api("DELETE", "/api/v1/namespaces/doomed"))
      assert.are.equal("Terminating", d.status.phase)
      local r = apply(cm("c2", {}, { ns = "doomed" }))
      assert.are.equal(403, r.status)
      assert.are.equal('configmaps "c2" is forbidden: unable to create new content in namespace doomed because it is being terminated', r.json.message)
      assert.are.equal("NamespaceTerminating", r.json.details.causes[1].reason)
      local ns = eventually(function()
        local n = ok(get("/api/v1/namespaces/doomed"))
        local c = condition(n, "NamespaceFinalizersRemaining")
        return c and c.status == "True" and n
      end, 5, "the finalizers condition")
      assert.matches("example.com/hold in 1 resource instances", condition(ns, "NamespaceFinalizersRemaining").message)
      ok(api("PATCH", "/api/v1/namespaces/doomed/configmaps/c1",
        { body = { metadata = { finalizers = json.null } }, content_type = "application/merge-patch+json" }))
      eventually(function() return get("/api/v1/namespaces/doomed").status == 404 end, 5, "the namespace to go")
    end)
  end)

  -- ---------------------------------------------------------------- controllers
  describe("controllers", function()
    it("makes CRDs NamesAccepted and Established (crd_stuck keeps one pending)", function()
      local o = ok(apply(WIDGET_CRD), 201)
      assert.are.same({ "customresourcecleanup.apiextensions.k8s.io" }, o.metadata.finalizers)
      local crd = established("widgets.example.com")
      assert.are.equal("True", condition(crd, "NamesAccepted").status)
      assert.are.equal("NoConflicts", condition(crd, "NamesAccepted").reason)
      assert.are.equal("InitialNamesAccepted", condition(crd, "Established").reason)
      assert.are.equal("widgets", crd.status.acceptedNames.plural)
      assert.are.equal("WidgetList", crd.status.acceptedNames.listKind)
      assert.are.same({ "v1" }, crd.status.storedVersions)
      assert.are.equal("kube-apiserver", managers(crd)["kube-apiserver/Update"].manager)
      lab:control("PATCH", "/profile", { k8s = { crd_stuck = { "gadgets.*" } } })
      local g = json.decode(json.encode(WIDGET_CRD))
      g.metadata.name = "gadgets.example.com"
      g.spec.names = { plural = "gadgets", kind = "Gadget" }
      ok(apply(g), 201)
      sched.sleep(0.2)
      assert.is_nil(condition(ok(get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com")), "Established"))
      assert.are.equal(404, get("/apis/example.com/v1/namespaces/default/gadgets").status)
    end)

    it("makes namespaces Active with a default ServiceAccount and kube-root-ca.crt", function()
      local ns = ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "fresh" } }), 201)
      assert.are.equal("Active", ns.status.phase)
      assert.are.same({ "kubernetes" }, ns.spec.finalizers)
      assert.are.equal("fresh", ns.metadata.labels["kubernetes.io/metadata.name"])
      eventually(function() return get("/api/v1/namespaces/fresh/serviceaccounts/default").status == 200 end)
      local ca = eventually(function() return get("/api/v1/namespaces/fresh/configmaps/kube-root-ca.crt").json.data end)
      assert.are.equal(creds.ca, ca["ca.crt"])
    end)

    local function deployment(name, replicas)
      return { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name, namespace = "default" },
        spec = { replicas = replicas, selector = { matchLabels = { app = name } },
          template = { metadata = { labels = { app = name } }, spec = { containers = { { name = "c",
            image = "img:1" } } } } } }
    end

    it("rolls Deployments, StatefulSets and DaemonSets out; rollout_stuck and progress_deadline hold them", function()
      ok(apply(deployment("good", 3)), 201)
      local d = eventually(function()
        local o = ok(get("/apis/apps/v1/namespaces/default/deployments/good"))
        return o.status.availableReplicas == 3 and o
      end, 5, "the rollout")
      assert.are.equal(d.metadata.generation, d.status.observedGeneration)
      assert.are.equal(3, d.status.updatedReplicas)
      assert.are.equal("True", condition(d, "Available").status)
      assert.are.equal("NewReplicaSetAvailable", condition(d, "Progressing").reason)
      assert.are.equal("status", managers(d)["kube-controller-manager/Update"].subresource)
      local sts = { apiVersion = "apps/v1", kind = "StatefulSet", metadata = { name = "db", namespace = "default" },
        spec = { replicas = 2, serviceName = "db", selector = { matchLabels = { app = "db" } },
          template = { metadata = { labels = { app = "db" } }, spec = { containers = { { name = "c",
            image = "img:1" } } } } } }
      ok(apply(sts), 201)
      local s = eventually(function() local o = ok(get("/apis/apps/v1/namespaces/default/statefulsets/db")); return o.status.readyReplicas == 2 and o end)
      assert.are.equal(s.status.currentRevision, s.status.updateRevision)
      local ds = { apiVersion = "apps/v1", kind = "DaemonSet", metadata = { name = "agent", namespace = "default" },
        spec = { selector = { matchLabels = { app = "agent" } },
          template = { metadata = { labels = { app = "agent" } }, spec = { containers = { { name = "c",
            image = "img:1" } } } } } }
      ok(apply(ds), 201)
      local dso = eventually(function() local o = ok(get("/apis/apps/v1/namespaces/default/daemonsets/agent")); return o.status.numberAvailable == 1 and o end)
      assert.are.equal(1, dso.status.desiredNumberScheduled) -- one node
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = { "default/stuck" },
        progress_deadline = { "*/late" } } })
      ok(apply(deployment("stuck", 2)), 201)
      ok(apply(deployment("late", 2)), 201)
      local late = eventually(function()
        local o = ok(get("/apis/apps/v1/namespaces/default/deployments/late"))
        local c = condition(o, "Progressing")
        return c and c.reason == "ProgressDeadlineExceeded" and o
      end, 5, "ProgressDeadlineExceeded")
      assert.are.equal("False", condition(late, "Progressing").status)
      sched.sleep(0.3)
      local stuck = ok(get("/apis/apps/v1/namespaces/default/deployments/stuck"))
      assert.are.equal(stuck.metadata.generation, stuck.status.observedGeneration)
      assert.is_nil(stuck.status.availableReplicas)
      assert.are.equal("ReplicaSetUpdated", condition(stuck, "Progressing").reason)
    end)

    it("syncs Argo CD Applications once the application controller runs", function()
      local appcrd = {
        apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "applications.argoproj.io" },
        spec = { group = "argoproj.io", scope = "Namespaced",
          names = { plural = "applications", singular = "application", kind = "Application",
            shortNames = { "app", "apps" } },
          versions = { { name = "v1alpha1", served = true, storage = true,
            additionalPrinterColumns = { { name = "Sync Status", type = "string", jsonPath = ".status.sync.status" },
              { name = "Health Status", type = "string", jsonPath = ".status.health.status" } },
            schema = { openAPIV3Schema = { type = "object", properties = {
              spec = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
              status = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true } } } } } } },
      }
      ok(apply(appcrd), 201)
      established("applications.argoproj.io")
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "argocd" } }), 201)
      local app = { apiVersion = "argoproj.io/v1alpha1", kind = "Application", metadata = { name = "metallb",
        namespace = "argocd",
        finalizers = { "resources-finalizer.argocd.argoproj.io" } },
        spec = { project = "default", source = { repoURL = "https://metallb.github.io/metallb",
          chart = "metallb", targetRevision = "0.15.2" },
          destination = { server = "https://kubernetes.default.svc", namespace = "metallb-system" },
          syncPolicy = { automated = { prune = true }, syncOptions = { "CreateNamespace=true" } } } }
      ok(apply(app), 201)
      local path = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/metallb"
      local a = eventually(function() local o = ok(get(path)); return o.status and o end)
      assert.are.equal("OutOfSync", a.status.sync.status)
      sched.sleep(0.3)
      assert.are.equal("Missing", ok(get(path)).status.health.status) -- no controller yet
      ok(apply({ apiVersion = "apps/v1", kind = "StatefulSet",
        metadata = { name = "argocd-application-controller", namespace = "argocd" },
        spec = { replicas = 1, selector = { matchLabels = { app = "ctl" } },
          template = { metadata = { labels = { app = "ctl" } }, spec = { containers = { { name = "c",
            image = "argocd:3" } } } } } }), 201)
      local done = eventually(function()
        local o = ok(get(path))
        return o.status.health.status == "Healthy" and o
      end, 5, "Healthy")
      assert.are.equal("Synced", done.status.sync.status)
      assert.are.equal("0.15.2", done.status.sync.revision)
      assert.are.equal("Succeeded", done.status.operationState.phase)
      assert.are.equal(200, get("/api/v1/namespaces/metallb-system").status) -- CreateNamespace=true
      lab:control("PATCH", "/profile", { k8s = { argo_degraded = { "argocd/bad" } } })
      app.metadata.name = "bad"
      ok(apply(app), 201)
      eventually(function() local o = ok(get("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/bad"))
        return o.status and o.status.health.status == "Degraded" end, 5, "Degraded")
      -- deleting waits for the resources finalizer, which the controller releases
      ok(api("DELETE", path))
      eventually(function() return get(path).status == 404 end, 5, "the Application to go")
    end)

    -- ---------------------------------------------------------- the apps tlr installs
    local APP_CRD = {
      apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "applications.argoproj.io" },
      spec = { group = "argoproj.io", scope = "Namespaced",
        names = { plural = "applications", singular = "application", kind = "Application" },
        versions = { { name = "v1alpha1", served = true, storage = true,
          schema = { openAPIV3Schema = { type = "object", properties = {
            spec = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
            status = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true } } } } } } },
    }
    local APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/"

    --- The Application CRD, namespace argocd and a running application controller.
    local function argo()
      ok(apply(APP_CRD), 201)
      established("applications.argoproj.io")
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "argocd" } }), 201)
      ok(apply({ apiVersion = "apps/v1", kind = "StatefulSet",
        metadata = { name = "argocd-application-controller", namespace = "argocd" },
        spec = { replicas = 1, selector = { matchLabels = { app = "ctl" } },
          template = { metadata = { labels = { app = "ctl" } }, spec = { containers = { { name = "c",
            image = "argocd:3" } } } } } }), 201)
    end

    --- An Application of a Helm chart, as tlr.apps makes them.
    local function helm_app(name, chart, version, ns, values)
      return { apiVersion = "argoproj.io/v1alpha1", kind = "Application",
        metadata = { name = name, namespace = "argocd", finalizers = { "resources-finalizer.argocd.argoproj.io" } },
        spec = { project = "default",
          source = { repoURL = "https://charts.example.com", chart = chart, targetRevision = version,
            helm = { releaseName = name, valuesObject = values } },
          destination = { server = "https://kubernetes.default.svc", namespace = ns },
          syncPolicy = { automated = { prune = true, selfHeal = true },
            syncOptions = { "CreateNamespace=true", "ServerSideApply=true" } } } }
    end

    local function app_status(name)
      local a = ok(get(APPS .. name))
      return a.status and a.status.sync and a.status.sync.status, a.status and a.status.health and a.status.health.status, a
    end

    local function healthy(name)
      return eventually(function()
        local s, h, a = app_status(name)
        return s == "Synced" and h == "Healthy" and a
      end, 5, name .. " Synced and Healthy")
    end

    local function available(path)
      return eventually(function()
        local r = get(path)
        return r.status == 200 and (r.json.status.availableReplicas or r.json.status.numberAvailable or 0) >= 1 and r.json
      end, 5, path .. " available")
    end

    local function bump(path)
      ok(api("PATCH", path, { content_type = "application/merge-patch+json",
        body = { spec = { template = { metadata = { annotations = { ["lab/restartedAt"] = tostring(sched.now()) } } } } } }))
    end

    it("creates the MetalLB chart's CRDs and controller on sync, is Healthy once they are, deletes them with the app", function()
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = { "metallb-system/metallb-controller" } } })
      argo()
      ok(apply(helm_app("metallb", "metallb", "0.15.2", "metallb-system")), 201)
      for _, name in ipairs { "ipaddresspools.metallb.io", "l2advertisements.metallb.io" } do
        local crd = established(name)
        assert.are.equal("Namespaced", crd.spec.scope)
        assert.are.equal("v1beta1", crd.spec.versions[1].name)
        assert.are.equal("metallb:apiextensions.k8s.io/CustomResourceDefinition:metallb-system/" .. name,
          crd.metadata.annotations["argocd.argoproj.io/tracking-id"])
      end
      assert.are.equal(200, get("/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements").status)
      local dpath = "/apis/apps/v1/namespaces/metallb-system/deployments/metallb-controller"
      local d = ok(get(dpath))
      assert.are.equal("quay.io/metallb/controller:v0.15.2", d.spec.template.spec.containers[1].image)
      assert.are.same({ ["app.kubernetes.io/name"] = "metallb", ["app.kubernetes.io/instance"] = "metallb",
        ["app.kubernetes.io/component"] = "controller" }, d.spec.selector.matchLabels)
      assert.are.equal("metallb:apps/Deployment:metallb-system/metallb-controller",
        d.metadata.annotations["argocd.argoproj.io/tracking-id"])
      available("/apis/apps/v1/namespaces/metallb-system/daemonsets/metallb-speaker")
      assert.are.equal(200, get("/api/v1/namespaces/metallb-system/services/metallb-webhook-service").status)
      -- Synced, but Progressing while the controller is not available
      sched.sleep(0.3)
      local s, h, a = app_status("metallb")
      assert.are.same({ "Synced", "Progressing" }, { s, h })
      local dep
      for _, r in ipairs(a.status.resources) do if r.kind == "Deployment" then dep = r end end
      assert.are.same({ group = "apps", version = "v1", kind = "Deployment", namespace = "metallb-system",
        name = "metallb-controller", status = "Synced", health = { status = "Progressing" } }, dep)
      local res
      for _, r in ipairs(a.status.operationState.syncResult.resources) do if r.kind == "DaemonSet" then res = r end end
      assert.are.equal("daemonset.apps/metallb-speaker serverside-applied", res.message)
      -- the controller rolls out: the Application follows
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = json.array({}) } })
      bump(dpath)
      available(dpath)
      healthy("metallb")
      -- deleting the Application deletes what it made, then the Application goes
      ok(api("DELETE", APPS .. "metallb"))
      eventually(function() return get(APPS .. "metallb").status == 404 end, 5, "the Application to go")
      assert.are.equal(404, get(dpath).status)
      assert.are.equal(404, get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ipaddresspools.metallb.io").status)
      assert.are.equal(200, get("/api/v1/namespaces/metallb-system").status) -- Argo CD leaves the namespace
    end)

    it("creates cert-manager's deployments, and its CRDs with crds.enabled (a re-sync adds them)", function()
      argo()
      ok(apply(helm_app("cert-manager", "cert-manager", "v1.21.2", "cert-manager")), 201)
      healthy("cert-manager")
      for _, n in ipairs { "cert-manager", "cert-manager-cainjector", "cert-manager-webhook" } do
        local d = available("/apis/apps/v1/namespaces/cert-manager/deployments/" .. n)
        assert.matches("^quay%.io/jetstack/cert%-manager%-%l+:v1%.21%.2$", d.spec.template.spec.containers[1].image)
      end
      assert.are.equal(404, get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.cert-manager.io").status)
      ok(apply(helm_app("cert-manager", "cert-manager", "v1.21.2", "cert-manager", { crds = { enabled = true } })))
      local scopes = {}
      for _, n in ipairs { "certificates", "certificaterequests", "issuers", "clusterissuers" } do
        local crd = established(n .. ".cert-manager.io")
        scopes[n] = crd.spec.scope
        assert.are.equal("v1", crd.spec.versions[1].name)
      end
      assert.are.same({ certificates = "Namespaced", certificaterequests = "Namespaced", issuers = "Namespaced",
        clusterissuers = "Cluster" }, scopes)
      established("orders.acme.cert-manager.io")
      assert.are.equal(200, get("/apis/cert-manager.io/v1/clusterissuers").status)
      healthy("cert-manager")
    end)

    it("creates Traefik's LoadBalancer Service (Progressing until it has an address) and external-dns", function()
      argo()
      ok(apply(helm_app("traefik", "traefik", "41.4.0", "traefik", {
        ingressClass = { enabled = true, isDefaultClass = true },
        service = { annotations = { ["metallb.io/loadBalancerIPs"] = "10.77.0.205" } } })), 201)
      ok(apply(helm_app("external-dns", "external-dns", "1.21.1", "external-dns", {
        provider = { name = "rfc2136" }, policy = "sync", txtOwnerId = "tlr", sources = { "service", "ingress" },
        domainFilters = { "lab.example.com" }, extraArgs = { "--rfc2136-host=10.0.0.53", "--rfc2136-axfr" },
        env = { { name = "EXTERNAL_DNS_RFC2136_TSIG_SECRET",
          valueFrom = { secretKeyRef = { name = "external-dns-rfc2136", key = "tsig-secret" } } } } })), 201)
      healthy("external-dns")
      local xd = available("/apis/apps/v1/namespaces/external-dns/deployments/external-dns")
      local c = xd.spec.template.spec.containers[1]
      assert.are.equal("registry.k8s.io/external-dns/external-dns:v0.21.0", c.image)
      assert.are.same({ "--log-level=info", "--log-format=text", "--interval=1m", "--source=service", "--source=ingress",
        "--policy=sync", "--registry=txt", "--txt-owner-id=tlr", "--domain-filter=lab.example.com", "--provider=rfc2136",
        "--rfc2136-host=10.0.0.53", "--rfc2136-axfr" }, c.args)
      assert.are.equal("external-dns-rfc2136", c.env[1].valueFrom.secretKeyRef.name)
      available("/apis/apps/v1/namespaces/traefik/deployments/traefik")
      local svc = ok(get("/api/v1/namespaces/traefik/services/traefik"))
      assert.are.equal("LoadBalancer", svc.spec.type)
      assert.are.equal("traefik-traefik", svc.spec.selector["app.kubernetes.io/instance"])
      local ic = ok(get("/apis/networking.k8s.io/v1/ingressclasses/traefik"))
      assert.are.equal("true", ic.metadata.annotations["ingressclass.kubernetes.io/is-default-class"])
      assert.are.equal("traefik.io/ingress-controller", ic.spec.controller)
      established("ingressroutes.traefik.io")
      -- no address without MetalLB: Progressing, as Argo CD's Service health says
      sched.sleep(0.3)
      local sync, health = app_status("traefik")
      assert.are.same({ "Synced", "Progressing" }, { sync, health })
      assert.is_nil(ok(get("/api/v1/namespaces/traefik/services/traefik")).status.loadBalancer.ingress)
      ok(apply({ apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition",
        metadata = { name = "ipaddresspools.metallb.io" },
        spec = { group = "metallb.io", scope = "Namespaced", names = { plural = "ipaddresspools", kind = "IPAddressPool" },
          versions = { { name = "v1beta1", served = true, storage = true,
            schema = { openAPIV3Schema = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true } } } } } }), 201)
      established("ipaddresspools.metallb.io")
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "metallb-system" } }), 201)
      ok(apply({ apiVersion = "metallb.io/v1beta1", kind = "IPAddressPool",
        metadata = { name = "lab", namespace = "metallb-system" }, spec = { addresses = { "10.77.0.200-10.77.0.210" } } }), 201)
      healthy("traefik")
      -- the address the chart's annotation asked for (metallb.io/loadBalancerIPs), not the pool's first
      svc = ok(get("/api/v1/namespaces/traefik/services/traefik"))
      assert.are.equal("10.77.0.205", svc.status.loadBalancer.ingress[1].ip)
      -- argo_lb_health off: a LoadBalancer Service does not hold an Application back
      lab:control("PATCH", "/profile", { k8s = { argo_lb_health = false } })
      local other = helm_app("edge", "traefik", "41.4.0", "edge")
      ok(apply(other), 201)
      healthy("edge")
    end)

    it("makes ClusterIssuers and Issuers Ready once cert-manager runs (issuer_not_ready holds one back)", function()
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = { "cert-manager/cert-manager" },
        issuer_not_ready = { "letsencrypt-broken" } } })
      argo()
      ok(apply(helm_app("cert-manager", "cert-manager", "v1.21.2", "cert-manager", { crds = { enabled = true } })), 201)
      established("clusterissuers.cert-manager.io")
      established("issuers.cert-manager.io")
      local function issuer(name, server)
        return { apiVersion = "cert-manager.io/v1", kind = "ClusterIssuer", metadata = { name = name },
          spec = { acme = { email = "ops@lab.example.com", server = server,
            privateKeySecretRef = { name = name .. "-account-key" },
            solvers = { { dns01 = { cloudflare = { apiTokenSecretRef = { name = "cloudflare-api-token", key = "api-token" } } } } } } } }
      end
      local staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
      ok(apply(issuer("letsencrypt-staging", staging), { path = "/apis/cert-manager.io/v1/clusterissuers/letsencrypt-staging" }), 201)
      ok(apply(issuer("letsencrypt-broken", "https://acme-v02.api.letsencrypt.org/directory"),
        { path = "/apis/cert-manager.io/v1/clusterissuers/letsencrypt-broken" }), 201)
      ok(apply({ apiVersion = "cert-manager.io/v1", kind = "Issuer", metadata = { name = "selfsigned", namespace = "default" },
        spec = { selfSigned = {} } }, { path = "/apis/cert-manager.io/v1/namespaces/default/issuers/selfsigned" }), 201)
      local ipath = "/apis/cert-manager.io/v1/clusterissuers/"
      -- nothing happens while cert-manager's controller is not available
      sched.sleep(0.3)
      assert.is_nil(condition(ok(get(ipath .. "letsencrypt-staging")), "Ready"))
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = json.array({}) } })
      bump("/apis/apps/v1/namespaces/cert-manager/deployments/cert-manager")
      local ready = eventually(function()
        local o = ok(get(ipath .. "letsencrypt-staging"))
        local c = condition(o, "Ready")
        return c and c.status == "True" and o
      end, 10, "letsencrypt-staging Ready")
      local c = condition(ready, "Ready")
      assert.are.equal("ACMEAccountRegistered", c.reason)
      assert.are.equal("The ACME account was registered with the ACME server", c.message)
      assert.are.equal(ready.metadata.generation, c.observedGeneration)
      assert.matches("^https://acme%-staging%-v02%.api%.letsencrypt%.org/acme/acct/%d+$", ready.status.acme.uri)
      assert.are.equal("ops@lab.example.com", ready.status.acme.lastRegisteredEmail)
      -- the ACME account key, in cert-manager's namespace
      local key = ok(get("/api/v1/namespaces/cert-manager/secrets/letsencrypt-staging-account-key"))
      assert.matches("^%-%-%-%-%-BEGIN RSA PRIVATE KEY%-%-%-%-%-\n", crypto.base64_decode(key.data["tls.key"]))
      assert.are.equal("cert-manager", key.metadata.labels["app.kubernetes.io/managed-by"])
      local ss = eventually(function()
        local o = ok(get("/apis/cert-manager.io/v1/namespaces/default/issuers/selfsigned"))
        return condition(o, "Ready") and o
      end, 5, "the selfSigned Issuer")
      assert.are.same({ "True", "IsReady" }, { condition(ss, "Ready").status, condition(ss, "Ready").reason })
      -- the one held back fails registration, and heals once let go
      local broken = condition(ok(get(ipath .. "letsencrypt-broken")), "Ready")
      assert.are.equal("False", broken.status)
      assert.are.equal("ErrRegisterACMEAccount", broken.reason)
      assert.matches("^Failed to register ACME account: ", broken.message)
      local t = ok(api("GET", "/apis/cert-manager.io/v1/clusterissuers", { accept = "application/json;as=Table;v=v1;g=meta.k8s.io" }))
      assert.are.same({ "Name", "Ready", "Status", "Age" }, { t.columnDefinitions[1].name, t.columnDefinitions[2].name,
        t.columnDefinitions[3].name, t.columnDefinitions[4].name })
      assert.are.same({ "letsencrypt-broken", "False" }, { t.rows[1].cells[1], t.rows[1].cells[2] })
      assert.are.same({ "letsencrypt-staging", "True" }, { t.rows[2].cells[1], t.rows[2].cells[2] })
      lab:control("PATCH", "/profile", { k8s = { issuer_not_ready = json.array({}) } })
      eventually(function() return condition(ok(get(ipath .. "letsencrypt-broken")), "Ready").status == "True" end, 5,
        "letsencrypt-broken Ready")
    end)

    it("stores Argo CD's initial admin password once argocd-server is available, and only once", function()
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = { "argocd/argocd-server" } } })
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "argocd" } }), 201)
      ok(apply({ apiVersion = "v1", kind = "Secret", type = "Opaque", metadata = { name = "argocd-secret", namespace = "argocd",
        labels = { ["app.kubernetes.io/part-of"] = "argocd" } } }), 201)
      local dpath = "/apis/apps/v1/namespaces/argocd/deployments/argocd-server"
      ok(apply({ apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "argocd-server", namespace = "argocd" },
        spec = { selector = { matchLabels = { app = "argocd-server" } },
          template = { metadata = { labels = { app = "argocd-server" } }, spec = { containers = { { name = "argocd-server",
            image = "quay.io/argoproj/argocd:v3.5.1" } } } } } }), 201)
      local spath = "/api/v1/namespaces/argocd/secrets/argocd-initial-admin-secret"
      sched.sleep(0.3)
      assert.are.equal(404, get(spath).status) -- not before argocd-server runs
      lab:control("PATCH", "/profile", { k8s = { rollout_stuck = json.array({}) } })
      bump(dpath)
      local s = eventually(function() local r = get(spath); return r.status == 200 and r.json end, 5, "the admin Secret")
      local pw = crypto.base64_decode(s.data.password)
      assert.matches("^[%w%-]+$", pw)
      assert.are.equal(16, #pw)
      assert.are.equal("Opaque", s.type)
      local settings = ok(get("/api/v1/namespaces/argocd/secrets/argocd-secret"))
      assert.matches("^%d+%-%d+%-%d+T", crypto.base64_decode(settings.data["admin.passwordMtime"]))
      assert.are.equal(32, #crypto.base64_decode(settings.data["server.secretkey"]))
      assert.is_truthy(managers(settings)["argocd-server/Update"])
      -- deleted (as users are told to): argocd-server does not make it again
      ok(api("DELETE", spath))
      bump(dpath)
      available(dpath)
      sched.sleep(0.2)
      assert.are.equal(404, get(spath).status)
    end)

    it("fails MetalLB writes with the webhook error until the webhook is ready", function()
      local crd = {
        apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "ipaddresspools.metallb.io" },
        spec = { group = "metallb.io", scope = "Namespaced", names = { plural = "ipaddresspools",
          singular = "ipaddresspool", kind = "IPAddressPool" },
          versions = { { name = "v1beta1", served = true, storage = true,
            schema = { openAPIV3Schema = { type = "object",
            ["x-kubernetes-preserve-unknown-fields"] = true } } } } },
      }
      lab:control("PATCH", "/profile", { k8s = { webhook_not_ready_requests = 2 } })
      ok(apply(crd), 201)
      established("ipaddresspools.metallb.io")
      ok(apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = "metallb-system" } }), 201)
      local pool = { apiVersion = "metallb.io/v1beta1", kind = "IPAddressPool", metadata = { name = "lab",
        namespace = "metallb-system" },
        spec = { addresses = { "10.77.0.200-10.77.0.201" } } }
      for _ = 1, 2 do
        local r = apply(pool)
        assert.are.equal(500, r.status)
        assert.are.equal("InternalError", r.json.reason)
        assert.matches('^Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": failed to call webhook: Post "https://metallb%-webhook%-service.metallb%-system.svc:443/validate%-metallb%-io%-v1beta1%-ipaddresspool%?timeout=10s": dial tcp [%d.]+:443: connect: connection refused$', r.json.message)
        assert.are.equal(r.json.message:gsub("^Internal error occurred: ", ""), r.json.details.causes[1].message)
      end
      ok(apply(pool), 201)
      -- armed again for a while through the control endpoint
      lab:control("POST", "/k8s/webhook", { seconds = 0.3 })
      assert.are.equal(500, apply(pool).status)
      sched.sleep(0.35)
      ok(apply(pool))
      -- a LoadBalancer Service gets an address from the pool
      ok(apply({ apiVersion = "v1", kind = "Service", metadata = { name = "ingress", namespace = "default" },
        spec = { type = "LoadBalancer", selector = { app = "x" }, ports = { { port = 443 } } } }), 201)
      local svc = eventually(function()
        local s = ok(get("/api/v1/namespaces/default/services/ingress"))
        return s.status.loadBalancer.ingress and s
      end, 5, "a load balancer address")
      assert.are.equal("10.77.0.200", svc.status.loadBalancer.ingress[1].ip)
      assert.matches("^10%.96%.", svc.spec.clusterIP)
      assert.are.equal("TCP", svc.spec.ports[1].protocol)
    end)
  end)

  -- ---------------------------------------------------------------- more servers
  describe("more API servers", function()
    it("starts one at a given address with a given CA and version (as the Talos fake will)", function()
      local ca_key = assert(crypto.generate_key { type = "ecdsa" })
      local ca = assert(crypto.create_ca { key = ca_key, subject = { O = "kubernetes" }, days = 2 })
      local address = lab.net .. ".0.9" -- (.0.7 is the Cloudflare fake's in a full lab)
      local st = lab:control("POST", "/k8s/servers", { address = address, port = 6443, ca_cert = ca,
        ca_key = ca_key:pem(),
        version = "1.29.4", name = "talos-lab" })
      assert.are.equal("https://" .. address .. ":6443", st.server)
      local cfg = assert(yaml.decode(H.read(st.kubeconfig)))
      assert.are.equal("talos-lab", cfg.clusters[1].name)
      assert.are.equal(ca, crypto.base64_decode(cfg.clusters[1].cluster["certificate-authority-data"]))
      local srv = H.read(st.dir .. "/apiserver.crt")
      assert.is_true(crypto.verify_chain(srv, { ca }, { purpose = "server", host = address }))
      local user = cfg.users[1].user
      local function req(path, accept)
        return assert(http.request { url = st.server .. path, ca = ca,
          cert = crypto.base64_decode(user["client-certificate-data"]),
          key = crypto.base64_decode(user["client-key-data"]), headers = accept and { Accept = accept } or nil })
      end
      assert.are.equal("v1.29.4", json.decode(req("/version").body).gitVersion)
      -- 1.29 offers aggregated discovery v2beta1, not v2
      local agg = req("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
      assert.are.equal("APIGroupList", json.decode(agg.body).kind)
      local beta = req("/apis", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
      assert.are.equal("apidiscovery.k8s.io/v2beta1", json.decode(beta.body).apiVersion)
      -- the lab's own admin certificate (another CA) is not accepted there
      local r = assert(http.request { url = st.server .. "/api", ca = ca, cert = creds.cert, key = creds.key })
      assert.are.equal(401, r.status)
      lab:control("DELETE", "/k8s/servers?server=" .. address .. ":6443")
      local gone, _, code = http.request { url = st.server .. "/version", ca = ca, timeout = 5 }
      assert.is_nil(gone)
      assert.are.equal("ECONNREFUSED", code)
    end)
  end)

  -- ---------------------------------------------------------------- lab integration
  describe("faults and the request log", function()
    it("answers fault rules of service k8s with a Status, then normally", function()
      local rule = lab:control("POST", "/faults", { service = "k8s", path = "/api/v1/namespaces/*/configmaps",
        status = 503, count = 1 })
      assert.truthy(rule.id)
      local r = get("/api/v1/namespaces/default/configmaps")
      assert.are.equal(503, r.status)
      assert.are.equal("ServiceUnavailable", r.json.reason)
      assert.are.equal(200, get("/api/v1/namespaces/default/configmaps").status)
      lab:control("POST", "/faults", { service = "k8s", path = "/apis/apps/**", status = 429, message = "slow down" })
      local r2 = get("/apis/apps/v1/deployments")
      assert.are.equal(429, r2.status)
      assert.are.equal("slow down", r2.json.message)
      lab:control("DELETE", "/faults")
      lab:control("POST", "/faults", { service = "k8s", path = "/version", latency = 0.3, count = 1 })
      local t0 = sched.now()
      assert.are.equal(200, get("/version").status)
      assert.is_true(sched.now() - t0 >= 0.28)
    end)

    it("logs every request with verb, resource, user and query", function()
      lab:control("DELETE", "/log")
      ok(apply(cm("logged", {})), 201)
      api("GET", "/api/v1/namespaces/default/configmaps", { anonymous = true })
      local log = lab:control("GET", "/log?service=k8s")
      assert.are.equal(2, #log)
      local e = log[1]
      assert.are.equal("PATCH", e.method)
      assert.are.equal("/api/v1/namespaces/default/configmaps/logged", e.path)
      assert.are.equal("patch", e.verb)
      assert.are.equal("configmaps", e.resource)
      assert.are.equal("admin", e.user)
      assert.are.equal("tlr", e.params.fieldManager)
      assert.are.equal(201, e.status)
      assert.are.equal("application/apply-patch+yaml", e.headers["content-type"])
      assert.are.equal(401, log[2].status)
      assert.are.equal("none", log[2].auth)
      local st = lab:control("GET", "/k8s/state")
      assert.are.equal(lab.env.K8S_SERVER, st[1].server)
      assert.is_true(st[1].objects["/configmaps"] >= 1)
    end)
  end)
end)
