-- Generates a deterministic multi-document Kubernetes manifest of at least
-- `size` bytes: for app i = 1, 2, ... a ConfigMap (document 2i-1) and a
-- Deployment (document 2i), with nested maps, lists, literal-block scripts,
-- quoted ambiguous strings ("on", "yes", "0700", "1e3", "~", "") and typed
-- plain scalars (integers, floats, booleans, nulls, the octal 0644).
-- Used by tests/unit/yaml_spec.lua and the YAML benchmark:
--   local gen = dofile("bench/yaml_gen.lua")
--   local text, ndocs = gen(1024 * 1024)
-- Values follow fixed rules so tests can check them: name "app-%05d",
-- replicas i % 5 + 1, containerPort 8000 + i % 100, weight (i % 4) / 4 + 0.125.

local fmt, concat = string.format, table.concat

-- a small LCG, so the output is the same on every run and every machine
local function rng(seed)
  local state = seed
  return function(n)
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n + 1
  end
end

local WORDS = {
  "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
  "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
}

local function configmap(out, i, rand)
  local name = fmt("app-%05d", i)
  out[#out + 1] = fmt([[
apiVersion: v1
kind: ConfigMap
metadata:
  name: %s-config
  namespace: team-%d
  labels:
    app.kubernetes.io/name: %s
    app.kubernetes.io/part-of: shop
    tier: %s
  annotations:
    enabled: "on"
    legacy: 'yes'
    note: "a: b # not a comment"
data:
  mode: "0700"
  ratio: "1e3"
  empty: ""
  tilde: "~"
  version: "1.10"
  bool-text: "true"
  script.sh: |
    #!/bin/sh
    set -eu
    echo "starting %s"
]], name, i % 7, name, WORDS[i % #WORDS + 1], name)
  for l = 1, rand(8) + 2 do
    out[#out + 1] = fmt("    run-step --id %d --name %s --retries %d\n", l, WORDS[rand(#WORDS)],
      rand(5))
  end
  out[#out + 1] = "  settings.yaml: |\n    server:\n      port: 8080\n      hosts:\n"
  for _ = 1, rand(4) do
    out[#out + 1] = fmt("        - %s.example.com\n", WORDS[rand(#WORDS)])
  end
end

local function deployment(out, i, rand)
  local name = fmt("app-%05d", i)
  out[#out + 1] = fmt([[
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  namespace: team-%d
  labels:
    app.kubernetes.io/name: %s
spec:
  replicas: %d
  revisionHistoryLimit: 10
  paused: false
  progressDeadlineSeconds: ~
  selector:
    matchLabels:
      app.kubernetes.io/name: %s
  template:
    metadata:
      labels:
        app.kubernetes.io/name: %s
      annotations:
        weight: "%s"
    spec:
      nodeSelector: null
      weight: %s
      containers:
]], name, i % 7, name, i % 5 + 1, name, name, (i % 4) / 4 + 0.125, (i % 4) / 4 + 0.125)
  for c = 1, rand(3) do
    out[#out + 1] = fmt([[
        - name: c%d
          image: registry.example.com/%s/%s:1.%d.%d
          args: ["--port=%d", "--log-level", "debug", "--enabled=true"]
          env:
]], c, WORDS[rand(#WORDS)], name, rand(30), rand(9), 8000 + i % 100)
    for e = 1, rand(5) + 1 do
      out[#out + 1] = fmt("            - name: VAR_%d\n              value: \"%s\"\n", e,
        ({ "yes", "no", "off", "12", "0x1F", "null", "plain text", "-1.5" })[rand(8)])
    end
    out[#out + 1] = fmt([[
          ports:
            - containerPort: %d
              protocol: TCP
          resources:
            limits: {cpu: %dm, memory: %dMi}
            requests: {cpu: 100m, memory: 64Mi}
          readinessProbe:
            httpGet: {path: /healthz, port: %d}
            periodSeconds: 10
            failureThreshold: 3
]], 8000 + i % 100, 100 * rand(8), 64 * rand(8), 8000 + i % 100)
  end
  out[#out + 1] = fmt([[
      volumes:
        - name: config
          configMap:
            name: %s-config
            defaultMode: 0644
      tolerations: []
]], name)
end

--- Returns a YAML stream of at least `size` bytes and its document count.
---@param size integer
---@return string text
---@return integer ndocs
return function(size)
  local rand = rng(20240601)
  local out, bytes, i = {}, 0, 0
  while bytes < size do
    i = i + 1
    local first = #out + 1
    if i > 1 then out[#out + 1] = "---\n" end
    configmap(out, i, rand)
    out[#out + 1] = "---\n"
    deployment(out, i, rand)
    for k = first, #out do bytes = bytes + #out[k] end
  end
  return concat(out), 2 * i
end
