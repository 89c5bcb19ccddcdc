-- The whole flow (the seed's main.tf): image → VMs → DNS records → Talos
-- configs in maintenance mode → bootstrap → health → kubeconfig → apps →
-- cold restarts one node at a time → nodes gone from the site taken out,
-- then the nodes as Kubernetes sees them.
--   tlr run|plan|destroy recipes/cluster.lua SITE   (or --site SITE, or $TLR_SITE)
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run {
  { "image", step.image },
  { "vms", step.vms },
  { "dns", step.dns },
  { "configs", step.configs },
  { "bootstrap", step.bootstrap },
  { "health", step.health },
  { "kubeconfig", step.kubeconfig },
  { "apps", step.apps },
  { "rollout", step.rollout },
  { "retire", step.retire_removed },
  { "nodes", step.list_nodes },
}
