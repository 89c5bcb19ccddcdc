-- Cross-check of the lab's Kubernetes API fake with a real client: the
-- `kubectl` on PATH (TLR_KUBECTL names another binary) against a private lab,
-- with kubectl's defaults (discovery, OpenAPI-driven validation, HTTP/2).
-- Fails, with the reason, when there is no kubectl: Debian's is the
-- kubernetes-client package (kubectl 1.20).
local H = require "helper"
local L = require "lab_helper"
local json = require "tlr.json"
local yaml = require "tlr.yaml"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local MISSING = "kubectl not found on PATH: this cross-check needs a kubectl " ..
  "(Debian: apt-get install kubernetes-client; or set TLR_KUBECTL=/path/to/kubectl)"

--- The kubectl to test: $TLR_KUBECTL or the one on PATH; nil, why when there is none.
local function find_kubectl()
  local want = os.getenv("TLR_KUBECTL")
  if want and want ~= "" then
    if select(2,
      H.capture("test -x " .. quote(want))) ~= 0 then return nil, "TLR_KUBECTL=" .. want .. " is not an executable" end
    return want
  end
  local out, rc = H.capture("command -v kubectl")
  if rc == 0 and out:match("%S") then return (out:gsub("%s+$", "")) end
  return nil, MISSING
end

describe("lab: kubectl against the Kubernetes API fake", function()
  local lab, dir, kubectl, minor, why

  --- Runs kubectl with the lab's kubeconfig and a private cache; returns output, exit status.
  local function run(args, stdin)
    assert(kubectl, why)
    local cmd = string.format("KUBECONFIG=%s %s --cache-dir %s %s", quote(lab.env.K8S_KUBECONFIG), quote(kubectl),
      quote(dir .. "/cache"), args)
    if stdin then
      H.write(dir .. "/stdin.yaml", stdin)
      cmd = cmd .. " -f " .. quote(dir .. "/stdin.yaml")
    end
    return H.capture(cmd)
  end

  local function must(args, stdin)
    local out, rc = run(args, stdin)
    assert.are.equal(0, rc, "kubectl " .. args .. ":\n" .. out)
    return out
  end

  setup(function()
    kubectl, why = find_kubectl()
    lab = L.start { profile = "test", args = { "--only", "k8s" } }
    dir = H.tmpdir()
    if kubectl then
      local v = json.decode((H.capture(quote(kubectl) .. " version --client -o json")))
      minor = v and tonumber((v.clientVersion.minor or ""):match("%d+"))
    end
  end)
  teardown(function()
    if lab then lab:stop() end
    if dir then os.execute("rm -rf " .. quote(dir)) end
  end)

  local CRD = [[
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
]]

  local APP = [[
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo, labels: {app: demo}}
data: {color: blue}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.27", ports: [{containerPort: 80}]}]
]]

  it("finds a kubectl to run", function()
    assert(kubectl, why)
    assert.is_true(minor and minor >= 20, "kubectl 1.20 or newer expected")
  end)

  it("talks to the fake: version and discovery", function()
    local v = json.decode(must("version -o json"))
    assert.are.equal("v1.32.3", v.serverVersion.gitVersion)
    local res = must("api-resources --api-group=apps -o name")
    assert.truthy(res:find("deployments.apps", 1, true), res)
    local ns = must("get namespaces")
    assert.matches("NAME%s+STATUS%s+AGE", ns)
    assert.matches("kube%-system%s+Active", ns)
  end)

  it("applies server-side, waits for the CRD to be Established, and gets the objects back", function()
    local out = must("apply --server-side", CRD .. "---\n" .. APP)
    assert.truthy(out:find("customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied", 1, true), out)
    assert.truthy(out:find("namespace/demo serverside-applied", 1, true), out)
    assert.truthy(out:find("configmap/settings serverside-applied", 1, true), out)
    assert.truthy(out:find("deployment.apps/web serverside-applied", 1, true), out)
    local w = must("wait --for=condition=Established --timeout=20s crd/widgets.example.com")
    assert.truthy(w:find("customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met", 1, true), w)
    out = must("apply --server-side",
      "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: demo}\nspec: {size: 3, color: red}\n")
    assert.truthy(out:find("widget.example.com/w1 serverside-applied", 1, true), out)
    local table_out = must("get wd -n demo")
    assert.matches("NAME%s+SIZE", table_out)
    assert.matches("w1%s+3", table_out)
    local obj = yaml.decode(must("get widget w1 -n demo -o yaml"))
    assert.are.equal("Widget", obj.kind)
    assert.are.equal("red", obj.spec.color)
    assert.matches("^%d+$", obj.metadata.resourceVersion)
    local cm = yaml.decode(must("get configmap settings -n demo -o yaml"))
    assert.are.equal("blue", cm.data.color)
    assert.are.equal("demo", cm.metadata.labels.app)
    local by_label = must("get cm -n demo -l app=demo -o name")
    assert.are.equal("configmap/settings\n", by_label)
    local rollout = must("rollout status deployment/web -n demo --timeout=20s")
    assert.truthy(rollout:find('deployment "web" successfully rolled out', 1, true), rollout)
    local deploy = must("get deployment web -n demo")
    assert.matches("web%s+2/2%s+2%s+2", deploy)
  end)

  it("reports apply conflicts like the apiserver and takes over with --force-conflicts", function()
    must("apply --server-side",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned, namespace: default}\ndata: {k: one}\n")
    local out, rc = run("apply --server-side --field-manager=other",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned, namespace: default}\ndata: {k: two}\n")
    assert.are_not.equal(0, rc)
    assert.truthy(out:find('conflict with "kubectl"', 1, true), out)
    assert.truthy(out:find(".data.k", 1, true), out)
    out = must("apply --server-side --field-manager=other --force-conflicts",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned, namespace: default}\ndata: {k: two}\n")
    assert.truthy(out:find("configmap/owned serverside-applied", 1, true), out)
    -- kubectl 1.21+ hides managedFields unless asked
    local cm = json.decode(must("get configmap owned -o json" .. (minor >= 21 and " --show-managed-fields" or "")))
    assert.are.equal("two", cm.data.k)
    local mgrs = {}
    for _, m in ipairs(cm.metadata.managedFields) do mgrs[#mgrs + 1] = m.manager end
    assert.are.same({ "other" }, mgrs)
  end)

  it("creates namespaces, configmaps and secrets with kubectl create (protobuf bodies)", function()
    assert.truthy(must("create namespace made"):find("namespace/made created", 1, true))
    assert.truthy(must("create configmap cfg -n made --from-literal=k=v"):find("configmap/cfg created", 1, true))
    assert.truthy(must("create secret generic sec -n made --from-literal=pw=hunter2"):find("secret/sec created", 1, true))
    assert.are.equal("v", must("get configmap cfg -n made -o jsonpath={.data.k}"))
    assert.are.equal("aHVudGVyMg==", must("get secret sec -n made -o jsonpath={.data.pw}"))
    assert.are.equal("Active", must("get namespace made -o jsonpath={.status.phase}"))
  end)

  it("deletes, waiting until the object is gone, and reports NotFound after", function()
    must("apply --server-side",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: doomed, namespace: default}\ndata: {k: v}\n")
    local out = must("delete configmap doomed --timeout=20s")
    assert.truthy(out:find('configmap "doomed" deleted', 1, true), out)
    local gone, rc = run("get configmap doomed")
    assert.are_not.equal(0, rc)
    assert.truthy(gone:find('Error from server (NotFound): configmaps "doomed" not found', 1, true), gone)
    -- deleting the CRD removes its custom resources and its API
    out = must("delete crd widgets.example.com --timeout=20s")
    assert.truthy(out:find('"widgets.example.com" deleted', 1, true), out)
    -- (with its discovery cache kubectl still knows the type: the list is a NotFound then)
    local after, rc2 = run("get widgets -n demo")
    assert.are_not.equal(0, rc2)
    assert.truthy(after:find("the server doesn't have a resource type", 1, true) or
      after:find("the server could not find the requested resource", 1, true), after)
  end)
end)
