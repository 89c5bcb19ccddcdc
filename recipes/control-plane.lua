-- The control-plane VMs (the seed's control-plane.tf): created or updated in
-- parallel, started, addresses learnt; control planes gone from the site
-- leave etcd one at a time (never below quorum) and are deleted.  Destroy
-- deletes them and their DNS records: the cluster goes with them.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "image", step.image },
  { "vms", function(ctx) step.vms(ctx, ctx:nodes("controlplane")) end },
  { "rollout", step.rollout },
  { "retire", function(ctx) step.retire_removed(ctx, "controlplane") end },
}, function(ctx) step.teardown(ctx, ctx:nodes("controlplane")) end)
