-- The controlplane VMs: created or updated in parallel, started, addresses learnt
-- (the seed's control-plane.tf).  Destroy deletes them and their DNS records.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "image", step.image },
  { "vms", function(ctx) step.vms(ctx, ctx:nodes("controlplane")) end },
}, function(ctx) step.teardown(ctx, ctx:nodes("controlplane")) end)
