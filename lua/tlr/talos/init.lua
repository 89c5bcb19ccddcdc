--- Talos: secrets and PKI, machine configuration, patches, validation (and,
--- as they land, the gRPC client).  Submodules load on first use:
--- `tlr.talos.secrets`, `tlr.talos.config`, `tlr.talos.patch`, `tlr.talos.validate`.
local M = {}

local lazy = {
  client = true, config = true, factory = true, health = true, patch = true, proto = true,
  secrets = true, validate = true,
}

return setmetatable(M, {
  modules = lazy,
  __index = function(t, key)
    if lazy[key] then
      local mod = require("tlr.talos." .. key)
      rawset(t, key, mod)
      return mod
    end
  end,
})
