-- The GPU pool variant of recipes/cluster.lua: the same flow (engine.phases())
-- with two additions for the site's GPU workers (the nodes labelled
-- nvidia.com/gpu.present=true, see site.lua):
--   vms        each GPU VM gets its card as hostpci0 through the Proxmox
--              resource mapping `gpu` (an extra VM key: set when the VM is
--              made, compared on every run like the keys tlr manages; a
--              later change waits for the health-gated rollout restart);
--   gpu nodes  once Kubernetes answers: each GPU node is a Node with the
--              site's labels and the taints of its patches.
-- The Talos side (modules, sysctl, taint) is plain site data: the configs
-- step renders each node's patches.
--
--   tlr plan|run|destroy examples/gpu-pool/recipe.lua examples/gpu-pool/site.lua
--
-- Before the first run, map the cards once: Datacenter → Resource Mappings →
-- PCI Devices → Add, name `gpu`, one entry per host in gpu_hosts.  A mapping
-- is what lets an API token attach a card: raw `host=0000:01:00.0` devices
-- are for root@pam alone.
local engine = require "tlr.engine"
local sched = require "tlr.sched"
local step = engine.steps

local GPU_LABEL = "nvidia.com/gpu.present"
-- pcie=1 needs the q35 machine, which tlr gives every VM
local HOSTPCI = "mapping=gpu,pcie=1"

local function is_gpu(n) return n.labels[GPU_LABEL] == "true" end

local function gpu_nodes(ctx)
  local pool = {}
  for _, n in ipairs(ctx:nodes("worker")) do
    if is_gpu(n) then pool[#pool + 1] = n end
  end
  return pool
end

-- The taints a node's patches ask Talos for: machine.nodeTaints entries
-- `key = "value:Effect"` (patches given as YAML text are not looked into).
local function wanted_taints(n)
  local taints = {}
  for _, p in ipairs(n.patches) do
    local node_taints = type(p) == "table" and type(p.machine) == "table" and p.machine.nodeTaints
    for key, v in pairs(node_taints or {}) do
      local value, effect = tostring(v):match("^(.*):(%a+)$")
      taints[#taints + 1] = { key = key, value = value, effect = effect or v }
    end
  end
  return taints
end

-- What the Node object lacks, or nil when it has every label and taint.
local function missing(node, n)
  local labels = node.metadata.labels or {}
  for k, v in pairs(n.labels) do
    if labels[k] ~= v then return string.format("label %s=%s missing", k, v) end
  end
  for _, want in ipairs(wanted_taints(n)) do
    local found = false
    for _, t in ipairs((node.spec or {}).taints or {}) do
      found = found or (t.key == want.key and t.effect == want.effect
        and (t.value or "") == (want.value or ""))
    end
    if not found then
      return string.format("taint %s=%s:%s missing", want.key, want.value or "", want.effect)
    end
  end
end

--- Waits until every GPU node is a Kubernetes Node with its labels and
--- taints (Talos applies them when the kubelet registers).  Reads only.
local function check_gpu_nodes(ctx)
  if ctx.plan then return end
  local k8s = step.k8s(ctx)
  ctx:each("gpu node", gpu_nodes(ctx), function(n)
    local deadline, delay = sched.now() + 300, 0.1
    while true do
      local node, lacks, code = k8s:get("v1", "Node", n.name) -- not there yet: lacks says so
      if node then lacks = missing(node, n) end
      if not lacks then return end
      if sched.now() > deadline then
        engine.check("gpu node " .. n.name, nil, lacks .. " (gave up after 300s)",
          code or "ETIMEDOUT")
      end
      sched.sleep(delay)
      delay = math.min(delay * 2, 5)
    end
  end)
end

-- Destroy takes the whole cluster down, the pool with it (steps.teardown).
local phases = engine.phases()
engine.insert(phases, "vms", { "vms", function(ctx)
  step.machines(ctx, { extra = function(n) return is_gpu(n) and { hostpci0 = HOSTPCI } or nil end })
end })
engine.insert(phases, "kubeconfig", { "gpu nodes", check_gpu_nodes })
engine.open():run(phases)
