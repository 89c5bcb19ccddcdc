-- The Kubernetes apply bench (issue 5): a generated manifest the size and
-- shape of Argo CD's install.yaml (~1.9 MB, 59 objects: 3 CRDs of which one
-- is ~1.4 MB, 6 Deployments, a StatefulSet, RBAC, Services, ConfigMaps,
-- NetworkPolicies, Secrets; no Namespace and no metadata.namespace) applied
-- to the lab's Kubernetes fake by
--   * tlr: `k8s.apply(text, {namespace = ns, force = true})` in a fresh
--     tlr process (start-up, kubeconfig, discovery, ordering, the wait for
--     the CRDs to be Established), and
--   * kubectl: `kubectl apply --server-side --force-conflicts -n ns -f file`,
--     the way Argo CD's docs install it, with a cold discovery cache.
-- Each round uses a fresh namespace and a fresh CRD group, so both create
-- every object; then both apply the same manifest again (nothing changes).
-- Figures only: nothing is asserted.   build/tlr bench/k8s.lua
-- Environment: TLR_BENCH_K8S_ROUNDS (default 3), TLR_BENCH_K8S_PROFILE
-- (the lab's duration profile, default test), KUBECTL (default kubectl),
-- TLR_BENCH_K8S_KUBECONFIG (use this cluster instead of a lab),
-- TLR_BENCH_K8S_DUMP=FILE (write one manifest there and stop).
package.path = "./tests/?.lua;./bench/?.lua;" .. package.path
local L = require "lab_helper"
local H = require "helper"
local k8s = require "tlr.k8s"
local sched = require "tlr.sched"

local now = sched.now
local fmt, concat = string.format, table.concat
local ROUNDS = math.tointeger(tonumber(os.getenv("TLR_BENCH_K8S_ROUNDS") or "")) or 3
local PROFILE = os.getenv("TLR_BENCH_K8S_PROFILE") or "test"
local KUBECTL = os.getenv("KUBECTL") or "kubectl"
local BIN = os.getenv("TLR_BIN") or "build/tlr"

local out = require "out"
local report, note, quote = out.report, out.note, out.quote

-- ---------- the manifest ----------

local WORDS = { "application", "source", "destination", "revision", "cluster", "project", "sync", "health",
  "resource", "status", "operation", "retry", "backoff", "manifest", "helm", "kustomize" }

-- An openAPIV3Schema subtree of about `budget` bytes: objects with
-- described string, integer, boolean, object and array-of-object fields.
local function schema(out, ind, budget, rand)
  local start = out.n
  local function emit(s)
    out[#out + 1] = s
    out.n = out.n + #s
  end
  local function node(pad, depth)
    emit(pad .. "type: object\n" .. pad .. "properties:\n")
    for f = 1, 7 do
      if out.n - start > budget then return end
      local name = WORDS[rand(#WORDS)] .. WORDS[rand(#WORDS)]:gsub("^%l", string.upper) .. f
      emit(fmt("%s  %s:\n%s    description: %s %s of the %s, as the controller reports it; "
        .. "empty when the %s is not set.\n", pad, name, pad, WORDS[rand(#WORDS)], WORDS[rand(#WORDS)],
        WORDS[rand(#WORDS)], WORDS[rand(#WORDS)]))
      local t = depth < 7 and rand(6) or rand(3)
      if t == 1 then
        emit(pad .. "    type: string\n")
      elseif t == 2 then
        emit(pad .. "    format: int64\n" .. pad .. "    type: integer\n")
      elseif t == 3 then
        emit(pad .. "    type: boolean\n")
      elseif t <= 5 then
        node(pad .. "    ", depth + 1)
      else
        emit(pad .. "    items:\n")
        node(pad .. "      ", depth + 1)
        emit(pad .. "    type: array\n")
      end
    end
  end
  node(ind, 0)
end

local function crd(out, plural, kind, group, size, rand)
  out[#out + 1] = fmt([[
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  labels:
    app.kubernetes.io/name: %s.%s
    app.kubernetes.io/part-of: argocd
  name: %s.%s
spec:
  group: %s
  names:
    kind: %s
    listKind: %sList
    plural: %s
    singular: %s
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        description: %s is a definition of the %s resource.
        required:
        - metadata
        - spec
        type: object
        properties:
          apiVersion:
            description: APIVersion defines the versioned schema of this representation of an object.
            type: string
          kind:
            description: Kind is a string value representing the REST resource this object represents.
            type: string
          metadata:
            type: object
          spec:
]], plural, group, plural, group, group, kind, kind, plural, kind:lower(), kind, kind)
  local sub = { n = 0 }
  schema(sub, "            ", size * 0.7, rand)
  out[#out + 1] = concat(sub)
  out[#out + 1] = "          status:\n"
  sub = { n = 0 }
  schema(sub, "            ", size * 0.3, rand)
  out[#out + 1] = concat(sub)
end

local function env_list(n)
  local lines = {}
  for i = 1, n do
    lines[#lines + 1] = fmt([[
        - name: ARGOCD_SETTING_%02d
          valueFrom:
            configMapKeyRef:
              key: setting.%02d
              name: argocd-cmd-params-cm
              optional: true]], i, i)
  end
  return concat(lines, "\n")
end

local function workload(out, kind, name, replicas, extra)
  out[#out + 1] = fmt([[
---
apiVersion: apps/v1
kind: %s
metadata:
  labels:
    app.kubernetes.io/component: %s
    app.kubernetes.io/name: %s
    app.kubernetes.io/part-of: argocd
  name: %s
spec:
  replicas: %d
  revisionHistoryLimit: 5%s
  selector:
    matchLabels:
      app.kubernetes.io/name: %s
  template:
    metadata:
      labels:
        app.kubernetes.io/name: %s
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - podAffinityTerm:
              labelSelector:
                matchLabels:
                  app.kubernetes.io/name: %s
              topologyKey: kubernetes.io/hostname
            weight: 100
      containers:
      - args:
        - /usr/local/bin/%s
        command:
        - /usr/bin/tini
        - --
        env:
%s
        image: quay.io/argoproj/argocd:v3.5.1
        imagePullPolicy: IfNotPresent
        name: %s
        ports:
        - containerPort: 8080
          name: http
        - containerPort: 8083
          name: metrics
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          initialDelaySeconds: 3
          periodSeconds: 30
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop:
            - ALL
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          seccompProfile:
            type: RuntimeDefault
        volumeMounts:
        - mountPath: /app/config/tls
          name: tls-certs
        - mountPath: /tmp
          name: tmp
      serviceAccountName: %s
      volumes:
      - emptyDir: {}
        name: tmp
      - configMap:
          name: argocd-tls-certs-cm
        name: tls-certs
]], kind, name, name, name, replicas, extra or "", name, name, name, name, env_list(24), name, name)
end

local function simple(out, kind, api, name, body)
  out[#out + 1] = fmt("---\napiVersion: %s\nkind: %s\nmetadata:\n  labels:\n    app.kubernetes.io/name: %s\n"
    .. "    app.kubernetes.io/part-of: argocd\n  name: %s\n%s", api, kind, name, name, body or "")
end

local RULES = [[
rules:
- apiGroups:
  - ""
  resources:
  - secrets
  - configmaps
  verbs:
  - create
  - get
  - list
  - watch
  - update
  - patch
  - delete
- apiGroups:
  - argoproj.io
  resources:
  - applications
  - applicationsets
  - appprojects
  verbs:
  - create
  - get
  - list
  - watch
  - update
  - delete
  - patch
- apiGroups:
  - ""
  resources:
  - events
  verbs:
  - create
  - list
]]

--- The manifest: text and the number of objects.  `group` names the CRDs'
--- API group (a fresh one per round makes every CRD new).
local function manifest(group)
  local seed = 42
  local function rand(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
  end
  local out = {}
  crd(out, "applications", "Application", group, 425000, rand)
  crd(out, "applicationsets", "ApplicationSet", group, 1380000, rand)
  crd(out, "appprojects", "AppProject", group, 45000, rand)
  local parts = { "application-controller", "applicationset-controller", "dex-server", "notifications-controller",
    "redis", "repo-server", "server" }
  for _, p in ipairs(parts) do simple(out, "ServiceAccount", "v1", "argocd-" .. p) end
  for i, p in ipairs { "application-controller", "applicationset-controller", "dex-server",
    "notifications-controller", "redis", "server" } do
    simple(out, "Role", "rbac.authorization.k8s.io/v1", "argocd-" .. p, RULES)
    simple(out, "RoleBinding", "rbac.authorization.k8s.io/v1", "argocd-" .. p, fmt(
      "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: argocd-%s\nsubjects:\n"
      .. "- kind: ServiceAccount\n  name: argocd-%s\n", p, p))
    if i <= 3 then
      simple(out, "ClusterRole", "rbac.authorization.k8s.io/v1", "argocd-" .. p, RULES)
      simple(out, "ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "argocd-" .. p, fmt(
        "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: argocd-%s\nsubjects:\n"
        .. "- kind: ServiceAccount\n  name: argocd-%s\n  namespace: argocd\n", p, p))
    end
  end
  for _, cm in ipairs { "argocd-cm", "argocd-cmd-params-cm", "argocd-gpg-keys-cm", "argocd-notifications-cm",
    "argocd-rbac-cm", "argocd-ssh-known-hosts-cm", "argocd-tls-certs-cm" } do
    local data = {}
    for i = 1, 12 do data[#data + 1] = fmt("  setting.%02d: \"value %d for %s\"", i, i, cm) end
    simple(out, "ConfigMap", "v1", cm, "data:\n" .. concat(data, "\n") .. "\n")
  end
  for _, s in ipairs { "argocd-notifications-secret", "argocd-secret" } do
    simple(out, "Secret", "v1", s, "type: Opaque\n")
  end
  for _, p in ipairs { "applicationset-controller", "dex-server", "metrics", "notifications-controller-metrics",
    "redis", "repo-server", "server", "server-metrics" } do
    simple(out, "Service", "v1", "argocd-" .. p, fmt("spec:\n  ports:\n  - name: http\n    port: 80\n"
      .. "    protocol: TCP\n    targetPort: 8080\n  selector:\n    app.kubernetes.io/name: argocd-%s\n", p))
  end
  for _, p in ipairs { "application-controller", "applicationset-controller", "dex-server",
    "notifications-controller", "redis", "repo-server", "server" } do
    simple(out, "NetworkPolicy", "networking.k8s.io/v1", "argocd-" .. p .. "-network-policy", fmt(
      "spec:\n  ingress:\n  - from:\n    - namespaceSelector: {}\n    ports:\n    - port: 8080\n      protocol: TCP\n"
      .. "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: argocd-%s\n  policyTypes:\n  - Ingress\n", p))
  end
  for _, p in ipairs { "applicationset-controller", "dex-server", "notifications-controller", "redis",
    "repo-server", "server" } do
    workload(out, "Deployment", "argocd-" .. p, 1)
  end
  workload(out, "StatefulSet", "argocd-application-controller", 1, "\n  serviceName: argocd-application-controller")
  local text = concat(out)
  local n = select(2, text:gsub("\n%-%-%-\n", "")) + (text:sub(1, 4) == "---\n" and 1 or 0)
  return text, n
end

-- ---------- the runs ----------

local APPLY_SCRIPT = [[
local k8s = require "tlr.k8s"
local kubeconfig, file, ns, nowait = ...
local f = assert(io.open(file))
local text = f:read("a")
f:close()
local c = assert(k8s.connect { kubeconfig = kubeconfig })
local res = assert(c:apply(text, { namespace = ns, force = true, wait_crds = nowait ~= "nowait" }))
io.write(#res, " ", c.stats.requests, "\n")
]]

-- Runs cmd; returns wall seconds, success, output, and the CPU seconds
-- (user + sys) of the process when /usr/bin/time is there.
local function timed(cmd)
  local cpu_file = os.tmpname()
  local have_time = os.execute("test -x /usr/bin/time")
  local full = have_time and fmt("/usr/bin/time -o %s -f '%%U %%S' %s", quote(cpu_file), cmd) or cmd
  local t0 = now()
  local p = assert(io.popen(full .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  local wall = now() - t0
  local cpu
  local f = io.open(cpu_file)
  if f then
    local u, sy = f:read("a"):match("([%d.]+) ([%d.]+)%s*$")
    f:close()
    cpu = u and (tonumber(u) + tonumber(sy))
  end
  os.remove(cpu_file)
  return wall, ok, out, cpu
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[(#s + 1) // 2]
end

if os.getenv("TLR_BENCH_K8S_DUMP") then
  local text, n = manifest("argoproj.io")
  H.write(os.getenv("TLR_BENCH_K8S_DUMP"), text)
  io.write(fmt("%d bytes, %d objects\n", #text, n))
  return
end

-- The variants: tlr as it runs by default (it waits until the new CRDs are
-- Established before it returns), tlr without that wait (what kubectl
-- does), kubectl.
local VARIANTS = {
  { id = "tlr", title = "tlr apply" },
  { id = "nowait", title = "tlr apply, wait_crds = false" },
  { id = "kubectl", title = "kubectl apply --server-side" },
}

local given = os.getenv("TLR_BENCH_K8S_KUBECONFIG")
local lab = given and { env = { K8S_KUBECONFIG = given }, stop = function() end } or L.start { profile = PROFILE }
local ok, err = pcall(function()
  local kc = lab.env.K8S_KUBECONFIG
  assert(kc, "the lab has no K8S_KUBECONFIG: is the Kubernetes fake registered in tests/lab/lab.js?")
  local c = assert(k8s.connect { kubeconfig = kc })
  local dir = H.tmpdir()
  local script = dir .. "/apply.lua"
  H.write(script, APPLY_SCRIPT)
  local probe, nobj = manifest("probe.bench.io")
  report("k8s: manifest size", #probe / 1e6, "MB")
  report("k8s: manifest objects", nobj, "obj")
  note("lab profile: " .. (given and "(a given cluster)" or PROFILE)
    .. ", rounds: " .. ROUNDS)
  local have_kubectl = select(2, timed(KUBECTL .. " version --client")) and true or false
  if not have_kubectl then note("kubectl not found (KUBECTL=" .. KUBECTL .. "): tlr figures only") end
  local fig = {} -- id -> {new = {}, again = {}, cpu = {}, requests = n}
  for _, v in ipairs(VARIANTS) do fig[v.id] = { new = {}, again = {}, cpu = {} } end
  local function check_applied(ns, who)
    local deps = c:list("apps/v1", "Deployment", { namespace = ns })
    local n = deps and #deps.items or -1
    if n ~= 6 then note(fmt("%s: %d Deployments in %s (6 expected)", who, n, ns)) end
  end
  for round = 1, ROUNDS do
    for _, v in ipairs(VARIANTS) do
      if v.id ~= "kubectl" or have_kubectl then
        local tag = fmt("%s-%d-%d", v.id, round, os.time() % 100000)
        local ns = "bench-" .. tag
        local text = manifest(tag .. ".bench.io")
        local file = dir .. "/" .. ns .. ".yaml"
        H.write(file, text)
        assert(c:apply({ apiVersion = "v1", kind = "Namespace", metadata = { name = ns } }))
        local cmd
        if v.id == "kubectl" then
          cmd = fmt("%s --kubeconfig %s --cache-dir %s apply --server-side --force-conflicts -n %s -f %s",
            KUBECTL, quote(kc), quote(dir .. "/kubectl-cache-" .. round), quote(ns), quote(file))
        else
          cmd = fmt("%s %s %s %s %s %s", BIN, quote(script), quote(kc), quote(file), quote(ns),
            v.id == "nowait" and "nowait" or "wait")
        end
        for pass = 1, 2 do
          local secs, done, out, cpu_secs = timed(cmd)
          if not done then
            note(fmt("%s round %d pass %d FAILED after %.2fs:\n%s", v.title, round, pass, secs,
              out:sub(1, 2000)))
            break
          end
          local f = fig[v.id]
          table.insert(pass == 1 and f.new or f.again, secs)
          if pass == 1 then
            if cpu_secs then table.insert(f.cpu, cpu_secs) end
            f.requests = tonumber(out:match("^%d+ (%d+)")) or f.requests
          end
          check_applied(ns, v.title)
        end
      end
    end
  end
  for _, v in ipairs(VARIANTS) do
    local f = fig[v.id]
    if #f.new > 0 then
      report("k8s: " .. v.title .. ", all new (median)", median(f.new), "s")
      report("k8s: " .. v.title .. ", again (median)", median(f.again), "s")
      if #f.cpu > 0 then report("k8s: " .. v.title .. ", CPU user+sys", median(f.cpu), "s") end
      if f.requests then report("k8s: " .. v.title .. ", requests", f.requests, "req") end
    end
  end
  local k, t, nw = fig.kubectl, fig.tlr, fig.nowait
  if #k.new > 0 and #t.new > 0 then
    report("k8s: kubectl / tlr, all new", median(k.new) / median(t.new), "x", "target > 1")
    report("k8s: kubectl / tlr (no CRD wait), all new", median(k.new) / median(nw.new), "x", "target > 1")
    report("k8s: kubectl / tlr, again", median(k.again) / median(t.again), "x", "target > 1")
    if #k.cpu > 0 and #t.cpu > 0 then
      report("k8s: kubectl / tlr, CPU", median(k.cpu) / math.max(median(t.cpu), 0.001), "x")
    end
  end
  os.execute("rm -rf " .. quote(dir))
end)
lab:stop()
if not ok then error(err, 0) end
io.write("k8s bench done\n")
