-- Argo CD and the Applications (the seed's helmfile and apps.tf), then the
-- nodes through the kubeconfig.  Needs the cluster.
local engine = require "tlr.engine"
local step = engine.steps
engine.open():run({
  { "apps", step.apps },
  { "nodes", step.list_nodes },
}, function() end)
