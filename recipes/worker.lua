-- The worker VMs: created or updated in parallel, started, addresses learnt
-- (the seed's worker.tf).  Destroy deletes them and their DNS records.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "image", step.image },
  { "vms", function(ctx) step.vms(ctx, ctx:nodes("worker")) end },
}, function(ctx) step.teardown(ctx, ctx:nodes("worker")) end)
