-- Configs applied in maintenance mode, bootstrap of the first control plane
-- by IP, health, kubeconfig (the seed's cluster.tf); then the VM changes that
-- wait for a cold start, one node at a time between health gates, and the
-- nodes gone from the site taken out.  Needs the VMs.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "configs", step.configs },
  { "bootstrap", step.bootstrap },
  { "health", step.health },
  { "kubeconfig", step.kubeconfig },
  { "rollout", step.rollout },
  { "retire", step.retire_removed },
}, function() end)
