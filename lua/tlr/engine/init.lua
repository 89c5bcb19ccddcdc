--- tlr.engine: what recipes run on.  `engine.open()` loads the site (from
--- `--site FILE`, the first script argument, or $TLR_SITE), opens the state
--- directory (lock, secrets, inventory) and knows the mode (`tlr.mode`:
--- run, plan or destroy).  Operations report their difference with
--- `ctx:change` (`+ create`, `~ update field: old → new`, `- delete`,
--- `! replace (why)`), phases are timed with `ctx:phase`, and `ctx:finish`
--- prints the summary.  Failures are raised as error objects naming the step.
local errors = require "tlr.errors"
local log = require "tlr.log"
local sched = require "tlr.sched"

local M = {}

-- structured events only with --json (the plain view has the diff lines and the summary)
local function event(t)
  local tlr = package.loaded["tlr"]
  if tlr and tlr.options and tlr.options.json then log.event(t) end
end

local Ctx = {}
Ctx.__index = Ctx

--- Parses recipe arguments: `[--site FILE | FILE] [--purge-state]`.
---@return table {site=, purge_state=}
function M.args(argv)
  local o = {}
  local i = 1
  while argv and argv[i] do
    local a = argv[i]
    if a == "--site" then
      i = i + 1
      o.site = argv[i] or errors.raise("EUSAGE", "--site needs a file")
    elseif a:match("^%-%-site=") then o.site = a:sub(8)
    elseif a == "--purge-state" then o.purge_state = true
    elseif a:sub(1, 1) == "-" then errors.raise("EUSAGE", "unknown recipe option '" .. a .. "'")
    elseif not o.site then o.site = a
    else errors.raise("EUSAGE", "unexpected argument '" .. a .. "'") end
    i = i + 1
  end
  o.site = o.site or os.getenv("TLR_SITE")
  if not o.site then
    errors.raise("EUSAGE", "no site file: pass one (tlr run RECIPE SITE, --site SITE) or set TLR_SITE")
  end
  return o
end

--- Raises an error object naming the step unless `ok`.
function M.check(step, ok, msg, code, ...)
  if ok then return ok, msg, code, ... end
  if not (code and errors.codes[code]) then code = "EAPI" end
  msg = tostring(msg)
  if msg:sub(1, #step + 2) == step .. ": " then msg = msg:sub(#step + 3) end
  errors.raise(code, msg, { step = step }) -- its message reads "<step>: <msg>"
end

--- Opens the engine context.  `o`: {argv, mode, site (a loaded site instead
--- of a file), quiet (no diff lines on stdout)}.
function M.open(o)
  o = o or {}
  local tlr = package.loaded["tlr"] or {}
  local mode = o.mode or tlr.mode or "run"
  local a = o.site and {} or M.args(o.argv or _G.arg or {})
  local site = o.site
  if not site then
    local s, warnings_or_msg, code = require("tlr.site").load(a.site)
    if not s then errors.raise(code or "EINVAL", warnings_or_msg) end
    for _, w in ipairs(warnings_or_msg or {}) do log.warn("%s", w) end
    site = s
  end
  local state_mod = require "tlr.state"
  local st, msg, code = state_mod.open(site.state_dir)
  M.check("state", st, msg, code)
  local inv = M.check("state", st:inventory())
  local self = setmetatable({
    mode = mode, plan = mode == "plan", destroy = mode == "destroy",
    site = site, state = st, inv = inv, args = a,
    phases = {}, changes = { create = 0, update = 0, delete = 0, replace = 0 },
    started = sched.now(), out = o.out or io.stdout, quiet = o.quiet,
    clients = {},
  }, Ctx)
  inv.cluster = site.name
  inv.nodes = inv.nodes or {}
  -- what leaves the cluster is known (and a loss of quorum refused) before anything changes
  if not self.destroy then require("tlr.engine.lifecycle").plan_retire(self) end
  return self
end

local SIGN = { create = "+", update = "~", delete = "-", replace = "!" }

--- Reports one difference: ctx:change("create", "vm cp1", {detail...}).
--- `fields` for updates: {{key, old, new}...}; `why` for replace.
function Ctx:change(action, resource, fields, why)
  self.changes[action] = (self.changes[action] or 0) + 1
  local line = string.format("%s %s %s", SIGN[action] or "?", action, resource)
  if action == "replace" and why then line = line .. " (" .. why .. ")" end
  local lines = { line }
  if action == "update" and fields then
    for _, f in ipairs(fields) do
      lines[#lines + 1] = string.format("    %s: %s → %s", f.key or f[1], tostring(f.old or f[2] or "∅"),
        tostring(f.new or f[3] or "∅"))
    end
  end
  event { event = "change", action = action, resource = resource, mode = self.mode }
  if not self.quiet then
    for _, l in ipairs(lines) do self.out:write(log.mask(l), "\n") end
    self.out:flush()
  end
end

--- Runs fn(ctx) as a timed phase (a named task in the progress view).
function Ctx:phase(name, fn)
  local t0 = sched.now()
  local task = sched.spawn(name, fn, self)
  local ok, err = pcall(task.wait, task)
  local dt = sched.now() - t0
  self.phases[#self.phases + 1] = { name = name, seconds = dt, ok = ok }
  event { event = "phase", phase = name, seconds = dt, ok = ok }
  if not ok then
    if errors.is(err) then error(err, 0) end
    errors.raise("EAPI", errors.message(err), { step = name })
  end
  return err
end

--- Runs a recipe: its phases ({name, fn} in order) in run and plan mode,
--- or `destroy(ctx)` (default: everything the site describes is taken down)
--- in destroy mode; then the summary.
function Ctx:run(phases, destroy)
  if self.destroy then
    self:phase("destroy", destroy or M.steps.teardown)
  else
    for _, p in ipairs(phases) do self:phase(p[1], p[2]) end
  end
  return self:finish()
end

--- Runs fn(item) for every item in parallel and waits for all.
function Ctx:each(what, items, fn)
  local tasks = {}
  for _, item in ipairs(items) do
    tasks[#tasks + 1] = sched.spawn(what .. " " .. tostring(item.name or item), fn, item)
  end
  return sched.all(tasks)
end

--- Saves the inventory (run and destroy only).
function Ctx:save()
  if self.plan then return true end
  return M.check("state", self.state:save_inventory(self.inv))
end

--- Prints the summary (phases with timings, changes) and releases the state.
function Ctx:finish()
  self:save()
  local total = sched.now() - self.started
  local c = self.changes
  local verb = self.plan and "would change" or "changed"
  local parts = {}
  for _, p in ipairs(self.phases) do parts[#parts + 1] = string.format("%s %.1fs", p.name, p.seconds) end
  local none = c.create + c.update + c.delete + c.replace == 0
  local head = none and (self.plan and "No changes." or "Up to date: nothing changed.")
    or string.format("%s: %d to create, %d to update, %d to replace, %d to delete.", verb,
      c.create, c.update, c.replace, c.delete)
  event { event = "summary", mode = self.mode, seconds = total, create = c.create,
    update = c.update, replace = c.replace, delete = c.delete }
  if not self.quiet then
    self.out:write(string.format("%s\n%s in %.1fs (%s)\n", head, self.mode, total, table.concat(parts, ", ")))
    self.out:flush()
  end
  self.state:close()
  return { seconds = total, phases = self.phases, changes = c }
end

--- Queues node `n` for the health-gated cold restart of the rollout phase
--- (one node at a time: cordon, drain, shutdown, start, health, uncordon).
function Ctx:restart(n)
  self.restarts = self.restarts or {}
  for _, q in ipairs(self.restarts) do if q.name == n.name then return end end
  self.restarts[#self.restarts + 1] = n
end

--- Runs fn once at a time per key however many tasks ask together (what it
--- makes yields: keys generated on the worker pool, a login); fn checks
--- whether an earlier caller made it already.
function Ctx:once(key, fn)
  self.flights = self.flights or {}
  self.flights[key] = self.flights[key] or sched.semaphore(1)
  return self.flights[key]:with(fn)
end

--- The Proxmox client for a host (one per endpoint, cached).
function Ctx:pve(host)
  local h = self.site.proxmox.hosts[host] or errors.raise("EINVAL", "unknown Proxmox host " .. tostring(host))
  local key = h.connect.endpoint
  return self.clients[key] or self:once("pve " .. key, function() return self:connect_pve(h, key) end)
end

function Ctx:connect_pve(h, key)
  if not self.clients[key] then
    local conn = {}
    for k, v in pairs(h.connect) do conn[k] = v end
    if self.site.proxmox.storage_limit then conn.storage_limit = nil end
    local pve, msg, code = require("tlr.proxmox").connect(conn)
    M.check("proxmox " .. key, pve, msg, code)
    pve.storage_limit = self.site.proxmox.storage_limit or pve.storage_limit
    self.clients[key] = pve
  end
  return self.clients[key]
end

--- The node table of the site by name.
function Ctx:node(name)
  for _, n in ipairs(self.site.nodes) do if n.name == name then return n end end
end

--- Nodes of a role ("controlplane", "worker") or all.
function Ctx:nodes(role)
  local out = {}
  for _, n in ipairs(self.site.nodes) do
    if not role or n.role == role then out[#out + 1] = n end
  end
  return out
end

--- The whole flow of recipes/cluster.lua as a fresh phase list
--- ({{name, fn}...}), for recipes that add phases to it (see M.insert).
function M.phases()
  local step = M.steps
  return {
    { "image", step.image },
    { "vms", step.machines },
    { "dns", step.dns },
    { "configs", step.configs },
    { "bootstrap", step.bootstrap },
    { "health", step.health },
    { "kubeconfig", step.kubeconfig },
    { "apps", step.apps },
    { "rollout", step.rollout },
    { "retire", step.retire_removed },
    { "nodes", step.list_nodes },
  }
end

--- Puts phase `p` ({name, fn}) into `phases` after the one named `after`
--- (raises when there is none); replaces it when `p` has that name.
function M.insert(phases, after, p)
  for i, q in ipairs(phases) do
    if q[1] == after then
      if p[1] == after then phases[i] = p else table.insert(phases, i + 1, p) end
      return phases
    end
  end
  error("engine.insert: no phase '" .. tostring(after) .. "'", 2)
end

M.steps = setmetatable({}, { __index = function(t, k)
  for _, name in ipairs { "tlr.engine.steps", "tlr.engine.cluster", "tlr.engine.lifecycle" } do
    for key, v in pairs(require(name)) do rawset(t, key, v) end
  end
  return rawget(t, k)
end })

return M
