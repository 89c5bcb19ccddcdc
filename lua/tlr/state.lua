--- The state directory of one cluster: the Talos secrets bundle (in
--- talosctl's secrets.yaml format), talosconfig, kubeconfig and an
--- inventory (VM ids, MACs, IPs, image volumes, applied-config hashes).
---
--- Files that hold secrets are written 0600 and atomically (temp, fsync,
--- rename) and refused when group or world readable.  `open` takes an
--- exclusive lock so two runs never work on one cluster at once.  Secrets
--- are generated once and never regenerated.
local fs = require "tlr.fs"
local json = require "tlr.json"
local log = require "tlr.log"
local check = require("tlr.opts").check

local M = {}

local State = {}
State.__index = State
State.__name = "tlr.State"

-- the files a state directory holds; all but the inventory carry secrets
M.FILES = {
  secrets = "secrets.yaml",
  talosconfig = "talosconfig",
  kubeconfig = "kubeconfig",
  inventory = "inventory.json",
  argocd = "argocd-install.yaml", -- Argo CD's manifest as installed (not secret)
}

--- Opens (creating it 0700 if needed) the state directory and, unless
--- `lock = false`, takes its lock: nil, "... is locked by another process
--- (pid N)", "ELOCKED" when another run holds it.
---@param dir string
---@param o? {lock?: boolean}
---@return table? state, string? msg, string? code
function M.open(dir, o)
  o = check("state.open", o, { lock = "boolean" })
  if type(dir) ~= "string" or dir == "" then error("state.open: directory expected", 2) end
  local ok, msg, code = fs.mkdir(dir, { mode = 448 }) -- 0700
  if not ok then return nil, msg, code end
  local self = setmetatable({ dir = dir }, State)
  if o.lock ~= false then
    local lock, lmsg, lcode = fs.lock(fs.join(dir, "lock"))
    if not lock then return nil, lmsg, lcode end
    self.lock = lock
  end
  return self
end

function State:path(name)
  return fs.join(self.dir, M.FILES[name] or error("state: unknown file '" .. tostring(name) .. "'", 3))
end

--- Reads a state file: its text, or nil when it does not exist yet; a file
--- others can read is refused (EPERM) rather than trusted.
function State:read(name)
  local path = self:path(name)
  if not fs.exists(path) then return nil end
  if name ~= "inventory" then
    local ok, msg, code = fs.check_private(path)
    if not ok then return nil, msg, code end
  end
  local text, msg, code = fs.read(path)
  if not text then return nil, msg, code end
  if name ~= "inventory" and name ~= "argocd" then log.secret(text) end
  return text
end

--- Writes a state file atomically with mode 0600.
function State:write(name, text)
  if type(text) ~= "string" then error("state:write: text expected", 2) end
  if name ~= "inventory" and name ~= "argocd" then log.secret(text) end
  return fs.write(self:path(name), text, { mode = 384 }) -- 0600
end

--- The secrets bundle: read from secrets.yaml, or made by `generate()` and
--- written the first time (never again).  Returns bundle, created.
---@param generate fun(): table|nil, string?, string?
function State:secrets(generate)
  local secrets = require "tlr.talos.secrets"
  local text, msg, code = self:read("secrets")
  if text then
    local bundle, dmsg, dcode = secrets.decode(text)
    if not bundle then return nil, self:path("secrets") .. ": " .. dmsg, dcode end
    return bundle, false
  end
  if msg then return nil, msg, code end
  local bundle, gmsg, gcode = generate()
  if not bundle then return nil, gmsg, gcode end
  local ok, wmsg, wcode = self:write("secrets", secrets.encode(bundle))
  if not ok then return nil, wmsg, wcode end
  return bundle, true
end

--- The inventory as a table ({} when there is none yet).
function State:inventory()
  local text, msg, code = self:read("inventory")
  if not text then
    if msg then return nil, msg, code end
    return { nodes = {} }
  end
  local inv, jmsg, jcode = json.decode(text)
  if not inv then return nil, self:path("inventory") .. ": " .. jmsg, jcode end
  inv.nodes = inv.nodes or {}
  return inv
end

--- Saves the inventory (sorted keys, so unchanged state gives unchanged bytes).
function State:save_inventory(inv)
  local text, msg, code = json.encode(inv, { indent = 2 })
  if not text then return nil, msg, code end
  return self:write("inventory", text .. "\n")
end

--- Releases the lock (idempotent; also on garbage collection).
function State:close()
  if self.lock then
    self.lock:close()
    self.lock = nil
  end
end
State.__close = State.close
State.__gc = State.close

return M
