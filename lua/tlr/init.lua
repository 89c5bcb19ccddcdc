--- The `tlr` table: the task API at the top, every module loaded on first use
--- (`tlr.http`, `tlr.json`, `tlr.yaml`, `tlr.crypto`, `tlr.fs`, `tlr.archive`,
--- `tlr.log`, ...).  Scripts run by the tlr binary see it as the global `tlr`.
local sched = require "tlr.sched"

local tlr = {
  spawn = sched.spawn,
  all = sched.all,
  sleep = sched.sleep,
  semaphore = sched.semaphore,
  timeout = sched.timeout,
  current = sched.current,
  now = sched.now,
  mode = "run", -- run | plan | destroy (set by the CLI)
  options = {}, -- global CLI flags: debug, json
}

local lazy = {
  apps = true, archive = true, crypto = true, dns = true, errors = true, fs = true, grpc = true,
  http = true, json = true, k8s = true, log = true, opts = true, pretty = true, protobuf = true,
  proxmox = true, repl = true, sched = true, site = true, state = true, talos = true, yaml = true,
}

return setmetatable(tlr, {
  modules = lazy, -- the REPL completes these names
  __index = function(t, key)
    if lazy[key] then
      local mod = require("tlr." .. key)
      rawset(t, key, mod)
      return mod
    end
  end,
})
