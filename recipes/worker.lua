-- The worker VMs (the seed's worker.tf): created or updated in parallel,
-- started, addresses learnt; workers gone from the site are drained and
-- deleted.  Destroy takes the site's workers out the same graceful way
-- (cordon, drain, Talos reset, VM and DNS record deleted).
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "image", step.image },
  { "vms", function(ctx) step.vms(ctx, ctx:nodes("worker")) end },
  { "rollout", step.rollout },
  { "retire", function(ctx) step.retire_removed(ctx, "worker") end },
}, function(ctx) step.retire_role(ctx, "worker") end)
