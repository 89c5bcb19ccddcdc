-- The Talos image (schematic registered, image downloaded) on every host
-- that runs a node: the seed's dependencies.tf.  Destroy leaves images alone.
local engine = require "tlr.engine"
engine.open():run({ { "image", engine.steps.image } }, function() end)
