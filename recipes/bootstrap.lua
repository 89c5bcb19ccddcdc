-- Configs applied in maintenance mode, bootstrap of the first control plane
-- by IP, health, kubeconfig (the seed's cluster.tf).  Needs the VMs.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "configs", step.configs },
  { "bootstrap", step.bootstrap },
  { "health", step.health },
  { "kubeconfig", step.kubeconfig },
}, function() end)
