-- The whole flow (the seed's main.tf): image → VMs → DNS records → Talos
-- configs in maintenance mode → bootstrap → health → kubeconfig → apps →
-- cold restarts one node at a time → nodes gone from the site taken out,
-- then the nodes as Kubernetes sees them.
--   tlr run|plan|destroy recipes/cluster.lua SITE   (or --site SITE, or $TLR_SITE)
-- The phase list is engine.phases(); a site variant adds to it (see
-- examples/gpu-pool/recipe.lua and docs/recipes.md).
local engine = require "tlr.engine"
engine.open():run(engine.phases())
