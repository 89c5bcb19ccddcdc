-- Talos secrets and machine-config benchmark: keygen time and rendering +
-- validation time for a cluster of 3 control planes and 100 workers,
-- reported separately.  Nothing is asserted; the target (everything but the
-- RSA-4096 key under 100 ms) is printed next to the figures, and the
-- rendering is also given as a ratio to decoding the same YAML in this run.
--   build/tlr bench/talos_config.lua
local secrets = require "tlr.talos.secrets"
local config = require "tlr.talos.config"
local validate = require "tlr.talos.validate"
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local sched = require "tlr.sched"

local now = sched.now
local CONTROL_PLANES, WORKERS = 3, 100

local function report(name, value, unit, note)
  io.write(string.format("%-56s %10.3f %-3s %s\n", name, value, unit, note or ""))
  io.flush()
end

local function best_of(n, fn)
  local best = math.huge
  for _ = 1, n do
    collectgarbage()
    local t0 = now()
    fn()
    best = math.min(best, now() - t0)
  end
  return best
end

-- ---------- keygen ----------
local rsa_key
local t_rsa = best_of(3, function()
  rsa_key = assert(crypto.generate_key { type = "rsa", bits = 4096 })
end)
report("RSA-4096 service-account key (worker pool), best of 3", t_rsa * 1000, "ms")

local sa = { key = rsa_key:pem { format = "pkcs1" } }
local bundle
local t_rest = best_of(20, function()
  bundle = assert(secrets.generate { from = { certs = { k8sserviceaccount = sa } } })
end)
report("secrets bundle without the RSA key (4 CAs, tokens)", t_rest * 1000, "ms")
local t_full = best_of(1, function() assert(secrets.generate()) end)
report("secrets bundle, all of it (one run)", t_full * 1000, "ms")
local t_admin = best_of(20, function() assert(secrets.admin_cert(bundle)) end)
report("admin client certificate", t_admin * 1000, "ms")

-- ---------- rendering + validation ----------
local cluster = {
  name = "bench", endpoint = "https://k8s.bench.example:6443", secrets = bundle,
  talos_version = "v1.11.6", vip = "10.1.0.10", dns_name = "k8s.bench.example",
  install_disk = "/dev/vda",
  schematic = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
  nameservers = { "10.1.0.1" }, cni = "none", kube_proxy = false,
  inline_manifests = { { name = "cilium", contents = "apiVersion: v1\nkind: Namespace\n" ..
    "metadata:\n  name: cilium\n" } },
  patches = "machine:\n  sysctls:\n    vm.max_map_count: '262144'\n",
}
local nodes = {}
for i = 1, CONTROL_PLANES + WORKERS do
  local cp = i <= CONTROL_PLANES
  nodes[i] = {
    name = string.format("%s%03d", cp and "cp" or "w", i), role = cp and "controlplane" or "worker",
    network = { mac = string.format("bc:24:11:00:%02x:%02x", i // 256, i % 256),
      addresses = { string.format("10.1.%d.%d/16", i // 250, 11 + i % 250) },
      gateway = "10.1.0.1" },
    node_labels = { ["bench.example/index"] = tostring(i) },
  }
end

local results
local t_render = best_of(5, function()
  results = {}
  for i, n in ipairs(nodes) do results[i] = assert(config.render(cluster, n)) end
end)
report(string.format("render + validate %d nodes (%d cp + %d workers)", #nodes, CONTROL_PLANES,
  WORKERS), t_render * 1000, "ms")
report("  per node", t_render / #nodes * 1e6, "us")

local t_validate = best_of(5, function()
  for i, r in ipairs(results) do
    assert(validate.config(r.docs, { node = nodes[i].name, talos_version = "v1.11.6" }))
  end
end)
report("  of which validation (schema + rules)", t_validate * 1000, "ms")

local t_decode = best_of(5, function()
  for _, r in ipairs(results) do assert(yaml.decode_all(r.yaml)) end
end)
report("baseline: yaml.decode_all of the same configs", t_decode * 1000, "ms")
report("render + validate / decode baseline", t_render / t_decode, "x")

local total = t_rest + t_admin + t_render
report("everything but RSA keygen (secrets + admin + render)", total * 1000, "ms",
  string.format("target < 100 ms (%s)", total < 0.1 and "met" or "missed"))
