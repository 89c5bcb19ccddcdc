--- Idempotent Proxmox operations the recipes use: images, VMs, power,
--- guest-agent addresses, VM ids.  Each returns what it changed.
---
--- Concurrency rules (kept per client): one operation at a time per VM, at
--- most `storage_limit` (default 2) disk-creating operations per storage,
--- everything else in parallel.
local proxmox = require "tlr.proxmox"
local sched = require "tlr.sched"
local check = require("tlr.opts").check

local M = {}

-- ========== locks ==========

local function lock_for(pve, kind, key, size)
  pve.locks = pve.locks or {}
  local id = kind .. ":" .. key
  local sem = pve.locks[id]
  if not sem then
    sem = sched.semaphore(size)
    pve.locks[id] = sem
  end
  return sem
end

--- Runs fn while holding the VM's lock (one operation per VM at a time).
function M.with_vm(pve, vmid, fn, ...)
  return lock_for(pve, "vm", tostring(vmid), 1):with(fn, ...)
end

--- Runs fn while holding one of the storage's disk slots.
function M.with_storage(pve, node, storage, fn, ...)
  return lock_for(pve, "storage", node .. "/" .. storage, pve.storage_limit or 2):with(fn, ...)
end

-- ========== images ==========

--- The Image Factory URL and Proxmox file name of a Talos disk image.
--- PVE >= 8.4 imports a qcow2 (`import` content); older versions boot the ISO.
---@param o {factory: string, schematic: string, version: string, platform?: string, arch?: string, pve_version?: table}
---@return table {url=, filename=, content=}
function M.image_source(o)
  check("vm.image_source", o, { factory = "string", schematic = "string", version = "string",
    platform = "string", arch = "string", pve_version = "table" })
  local platform, arch = o.platform or "nocloud", o.arch or "amd64"
  local v = o.pve_version or { major = 9, minor = 0 }
  local import = (v.major or 0) > 8 or ((v.major or 0) == 8 and (v.minor or 0) >= 4)
  local ext = import and "qcow2" or "iso"
  local version = o.version:match("^v") and o.version or ("v" .. o.version)
  return {
    url = string.format("%s/image/%s/%s/%s-%s.%s", o.factory:gsub("/+$", ""), o.schematic, version,
      platform, arch, ext),
    filename = string.format("talos-%s-%s-%s-%s.%s", version, o.schematic:sub(1, 12), platform, arch, ext),
    content = import and "import" or "iso",
  }
end

--- Makes sure the image file is on the node's storage (download-url unless
--- it is listed already).  Concurrent calls for the same file share one download.
---@param o {node: string, storage: string, url: string, filename: string, content: string, checksum?: string, checksum_algorithm?: string, dry_run?: boolean}
---@return table? result {volid=, changed=}
function M.ensure_image(pve, o)
  check("vm.ensure_image", o, { node = "string", storage = "string", url = "string",
    filename = "string", content = "string", checksum = "string", checksum_algorithm = "string",
    dry_run = "boolean" })
  local volid = string.format("%s:%s/%s", o.storage, o.content, o.filename)
  pve.downloads = pve.downloads or {}
  local key = o.node .. "/" .. volid .. (o.dry_run and "?plan" or "")
  -- registered before the first request yields, so concurrent callers share it
  local task = pve.downloads[key]
  if not task then
    task = sched.spawn("image " .. o.filename .. " on " .. o.node, function()
      local list, msg, code = pve:get("/nodes/{node}/storage/{storage}/content",
        { node = o.node, storage = o.storage, content = o.content })
      if not list then return nil, msg, code end
      for _, item in ipairs(list) do
        if item.volid == volid then return { volid = volid, changed = false } end
      end
      if o.dry_run then return { volid = volid, changed = true, planned = true } end
      local st, m, c = pve:run_task("POST", "/nodes/{node}/storage/{storage}/download-url", {
        node = o.node, storage = o.storage, url = o.url, content = o.content, filename = o.filename,
        checksum = o.checksum,
        ["checksum-algorithm"] = o.checksum and (o.checksum_algorithm or "sha256") or nil,
      }, { timeout = 1800 })
      if not st then return nil, m, c end
      return { volid = volid, changed = true }
    end)
    pve.downloads[key] = task
  end
  local ok, res, m, c = pcall(task.wait, task)
  if pve.downloads[key] == task then pve.downloads[key] = nil end
  if not ok then error(res, 0) end
  return res, m, c
end

-- ========== VM configuration ==========

local function mac_for(seed)
  -- a stable locally administered MAC from a seed (cluster/node name): BC:24:11 is
  -- Proxmox's own prefix, so it stays recognisable
  local crypto = require "tlr.crypto"
  local h = crypto.sha256(seed)
  return string.format("BC:24:11:%02X:%02X:%02X", h:byte(1), h:byte(2), h:byte(3))
end
M.mac_for = mac_for

--- The create parameters for a VM spec.
---@param spec table see docs/modules/proxmox.md
---@return table params
function M.config_params(spec)
  local p = {
    name = spec.name,
    cores = spec.cores or 2,
    sockets = spec.sockets or 1,
    memory = spec.memory or 2048,
    cpu = spec.cpu or "host",
    machine = spec.machine or "q35",
    bios = spec.bios or "seabios",
    scsihw = "virtio-scsi-single",
    ostype = "l26",
    agent = (spec.agent == false) and "enabled=0" or "enabled=1",
    serial0 = "socket",
    vga = "serial0",
    onboot = spec.onboot ~= false,
    net0 = string.format("virtio=%s,bridge=%s%s", spec.mac, spec.bridge or "vmbr0",
      spec.vlan and (",tag=" .. spec.vlan) or ""),
  }
  local tags = {}
  for _, t in ipairs(spec.tags or {}) do tags[#tags + 1] = t end
  table.sort(tags)
  if #tags > 0 then p.tags = table.concat(tags, ";") end
  if spec.description then p.description = spec.description end
  local ci = spec.cloudinit
  if ci then
    p.ide2 = (ci.storage or spec.disk.storage) .. ":cloudinit"
    if ci.ip == "dhcp" or ci.ip == nil then
      p.ipconfig0 = "ip=dhcp"
    else
      p.ipconfig0 = "ip=" .. ci.ip .. (ci.gw and (",gw=" .. ci.gw) or "")
    end
    if ci.nameserver then
      p.nameserver = type(ci.nameserver) == "table" and table.concat(ci.nameserver, " ") or ci.nameserver
    end
    if ci.searchdomain then p.searchdomain = ci.searchdomain end
  end
  for k, v in pairs(spec.extra or {}) do
    if p[k] ~= nil or k:match("^scsi%d") or k == "vmid" or k == "node" then
      error("vm spec: extra key '" .. k .. "' is one tlr manages; set it through the spec", 2)
    end
    p[k] = v
  end
  return p
end

-- Keys compared on update, and whether a change needs the VM restarted.
local MANAGED = {
  name = false, tags = false, onboot = false, description = false,
  cores = true, sockets = true, memory = true, cpu = true, machine = true, bios = true,
  agent = true, net0 = true, ipconfig0 = true, nameserver = true, searchdomain = true,
}

local function normalize(key, v)
  if v == nil then return nil end
  v = tostring(v)
  if key == "onboot" then return (v == "1" or v == "true") and "1" or "0" end
  if key == "agent" then
    local t = proxmox.parse_value(v)
    local on = t.enabled or t[1]
    return (on == "1" or on == "true" or on == "on" or on == "yes") and "1" or "0"
  end
  if key == "net0" then
    local t = proxmox.parse_value(v)
    local model, mac
    for _, m in ipairs { "virtio", "e1000", "vmxnet3", "rtl8139" } do
      if t[m] then model, mac = m, t[m] end
    end
    model = model or t.model or t[1]
    mac = mac or t.macaddr
    return string.format("%s=%s,bridge=%s,tag=%s", tostring(model), tostring(mac):upper(),
      tostring(t.bridge), tostring(t.tag))
  end
  if key == "tags" then
    local list = {}
    for tag in v:gmatch("[^;,%s]+") do list[#list + 1] = tag end
    table.sort(list)
    return table.concat(list, ";")
  end
  if key == "memory" then return (v:match("^(%d+)$") or v:match("current=(%d+)") or v) end
  if key == "cpu" then return (v:match("^cputype=(.*)$") or v) end
  if not MANAGED[key] then -- an extra key: "a=1,b=2" and "b=2,a=1" are the same value
    local parts = {}
    for part in v:gmatch("[^,]+") do parts[#parts + 1] = part end
    table.sort(parts)
    return table.concat(parts, ",")
  end
  return v
end

local function disk_size_gib(value)
  local t = proxmox.parse_value(value or "")
  local size = t.size
  if not size then return nil end
  local n, unit = size:match("^([%d.]+)([KMGT]?)$")
  n = tonumber(n)
  if not n then return nil end
  local factor = ({ K = 1 / 1048576, M = 1 / 1024, G = 1, T = 1024 })[unit] or (1 / 1073741824)
  return n * factor
end

--- Finds VMs in one read of /cluster/resources: the one with id `vmid` and
--- the (first) one named `name`, each {vmid, node, name, status, lock} or false.
function M.lookup(pve, vmid, name)
  local list, msg, code = pve:get("/cluster/resources", { type = "vm" })
  if not list then return nil, msg, code end
  local by_id, by_name = false, false
  for _, r in ipairs(list) do
    if r.type == "qemu" then
      if vmid and r.vmid == vmid then by_id = r end
      if name and r.name == name and not by_name then by_name = r end
    end
  end
  return by_id, by_name
end

--- Finds a VM by id, or by name when no id is given: the VM, false, or nil, msg, code.
function M.find(pve, o)
  local by_id, by_name, code = M.lookup(pve, o.vmid, not o.vmid and o.name or nil)
  if by_id == nil then return nil, by_name, code end
  if o.vmid then return by_id end
  return by_name
end

--- Waits until the VM is stopped (or gone), for at most `timeout` seconds.
function M.wait_stopped(pve, node, vmid, timeout)
  local deadline = sched.now() + timeout
  while sched.now() < deadline do
    local st = pve:get("/nodes/{node}/qemu/{vmid}/status/current", { node = node, vmid = vmid })
    if not st or st.status == "stopped" then return true end
    sched.sleep(0.25)
  end
  return false
end

-- A free vmid: the preferred one, else the cluster's next id (nextid reserves nothing,
-- so the create that follows may still lose a race and retry).
local function pick_vmid(pve, preferred)
  if preferred then return preferred end
  local id, msg, code = pve:get("/cluster/nextid")
  if not id then return nil, msg, code end
  -- parallel creates all hear the same id: each takes one no other of this client was given
  pve.given_vmids = pve.given_vmids or {}
  id = math.tointeger(tonumber(id))
  while pve.given_vmids[id] do id = id + 1 end
  pve.given_vmids[id] = true
  return id
end

local function create(pve, spec, dry_run)
  local params = M.config_params(spec)
  local disk = spec.disk
  if disk.image and disk.image:match(":import/") then
    params.scsi0 = string.format("%s:0,import-from=%s,discard=on,iothread=1,ssd=1", disk.storage, disk.image)
  else
    params.scsi0 = string.format("%s:%d,discard=on,iothread=1,ssd=1", disk.storage, disk.size or 20)
    if disk.image then
      params.ide3 = disk.image .. ",media=cdrom"
      params.boot = "order=scsi0;ide3"
    end
  end
  params.boot = params.boot or "order=scsi0"
  if dry_run then return { action = "create", vmid = spec.vmid, params = params } end
  local grow = disk.size and not (disk.image and not disk.image:match(":import/"))
  local created = false
  local attempts = 0
  while true do
    local vmid, msg, code = pick_vmid(pve, spec.vmid)
    if not vmid then return nil, msg, code end
    params.vmid = vmid
    params.node = spec.node
    -- one storage slot for the import and the resize that follows: a second
    -- wait in the slot queue would put this VM behind every other create
    local st, m, c = M.with_storage(pve, spec.node, disk.storage, function()
      local ok, cm, cc = pve:run_task("POST", "/nodes/{node}/qemu", params, { timeout = 1800 })
      if not ok or not grow then return ok, cm, cc end
      created = true -- a failed resize is finished by the next ensure (it grows disks)
      return pve:run_task("PUT", "/nodes/{node}/qemu/{vmid}/resize",
        { node = spec.node, vmid = vmid, disk = "scsi0", size = disk.size .. "G" })
    end)
    if st then
      spec.vmid = vmid
      break
    end
    if created then return nil, m, c end
    attempts = attempts + 1
    -- lost a race for an allocated id: take the next one (never for a fixed id)
    if spec.fixed_vmid or not (m and m:find("already exists", 1, true)) or attempts > 10 then
      return nil, m, c
    end
  end
  return { action = "create", vmid = spec.vmid, node = spec.node, changes = {}, restart = false }
end

--- Creates the VM, or compares its config with the spec and updates what
--- differs.  Returns {action="create"|"update"|"none", vmid=, node=,
--- changes={{key=, old=, new=}...}, restart=bool (a change takes effect
--- only after a restart)}.  A vmid taken by a VM of another name is an error.
---@param spec table {node, vmid?, name, cores, sockets, memory, cpu, bios, machine, mac, bridge, vlan, tags, onboot, description, agent, disk={storage, size, image}, cloudinit={storage, ip, gw, nameserver, searchdomain}}
---@param o? {dry_run?: boolean}
function M.ensure(pve, spec, o)
  o = check("vm.ensure", o, { dry_run = "boolean" })
  if type(spec.name) ~= "string" or type(spec.node) ~= "string" or type(spec.disk) ~= "table" then
    error("vm.ensure: spec needs name, node and disk", 2)
  end
  spec.mac = spec.mac or mac_for(spec.name)
  spec.fixed_vmid = spec.vmid ~= nil
  local found, named, code = M.lookup(pve, spec.vmid, spec.name)
  if found == nil then return nil, named, code end
  if not spec.vmid then found = named end
  if found and found.name ~= spec.name then
    return nil, string.format("vmid %d is taken by VM '%s' on %s, not '%s'", found.vmid,
      tostring(found.name), found.node, spec.name), "EINVAL"
  end
  if not found and spec.vmid then
    -- never a second VM of the same name (same MAC, same address) under another id
    if named then
      return nil, string.format("VM '%s' exists as %d on %s, not as %d: give it that vmid (or delete it)",
        spec.name, named.vmid, named.node, spec.vmid), "EINVAL"
    end
  end
  if not found then
    if spec.vmid then return M.with_vm(pve, spec.vmid, create, pve, spec, o.dry_run) end
    return create(pve, spec, o.dry_run)
  end
  if found.node ~= spec.node then
    return nil, string.format("VM '%s' (%d) is on %s, the site says %s", spec.name, found.vmid,
      found.node, spec.node), "EINVAL"
  end
  spec.vmid = found.vmid
  return M.with_vm(pve, spec.vmid, function()
    local cfg, m, c = pve:get("/nodes/{node}/qemu/{vmid}/config", { node = spec.node, vmid = spec.vmid })
    if not cfg then return nil, m, c end
    local want = M.config_params(spec)
    -- a running VM keeps what it cannot hotplug as pending changes until a cold start;
    -- the config read above shows them applied, /pending tells the running values apart
    local running = found.status == "running"
    local pending = {}
    if running then
      local rows, pm, pc = pve:get("/nodes/{node}/qemu/{vmid}/pending", { node = spec.node, vmid = spec.vmid })
      if not rows then return nil, pm, pc end
      pending = rows
    end
    local current = {}
    for _, p in ipairs(pending) do current[p.key] = p.value end
    local changes, update, restart = {}, {}, false
    local keys = {}
    for k in pairs(MANAGED) do keys[#keys + 1] = k end
    for k in pairs(spec.extra or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local new = want[k]
      if type(new) == "boolean" then new = new and 1 or 0 end
      local a, b = normalize(k, cfg[k]), normalize(k, new)
      if a ~= b and not (b == nil) then
        changes[#changes + 1] = { key = k, old = cfg[k], new = new }
        update[k] = new
        -- back to the running value needs no restart; anything else tlr restarts for
        restart = restart or (MANAGED[k] ~= false and normalize(k, current[k]) ~= b)
      end
    end
    local want_gib = spec.disk.size
    local have_gib = disk_size_gib(cfg.scsi0)
    local grow = want_gib and have_gib and want_gib > have_gib + 0.01
    if grow then changes[#changes + 1] = { key = "scsi0.size", old = have_gib .. "G", new = want_gib .. "G" } end
    for _, p in ipairs(pending) do
      if (p.pending ~= nil or p.delete) and not update[p.key] then
        changes[#changes + 1] = { key = p.key, old = p.value, new = p.delete and "(delete)" or p.pending, pending = true }
        restart = true
      end
    end
    local result = { action = #changes > 0 and "update" or "none", vmid = spec.vmid, node = spec.node,
      changes = changes, restart = running and restart }
    if o.dry_run or not (next(update) or grow) then return result end
    if next(update) then
      update.node, update.vmid = spec.node, spec.vmid
      local st, um, uc = pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/config", update)
      if not st then return nil, um, uc end
    end
    if grow then
      local st, rm, rc = M.with_storage(pve, spec.node, spec.disk.storage, function()
        return pve:run_task("PUT", "/nodes/{node}/qemu/{vmid}/resize",
          { node = spec.node, vmid = spec.vmid, disk = "scsi0", size = want_gib .. "G" })
      end)
      if not st then return nil, rm, rc end
    end
    return result
  end)
end

-- ========== power and deletion ==========

local function status(pve, node, vmid)
  return pve:get("/nodes/{node}/qemu/{vmid}/status/current", { node = node, vmid = vmid })
end

--- Starts the VM unless it runs; returns {changed=bool}.
function M.start(pve, node, vmid)
  return M.with_vm(pve, vmid, function()
    local st, msg, code = status(pve, node, vmid)
    if not st then return nil, msg, code end
    if st.status == "running" then return { changed = false } end
    local ok, m, c = pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/status/start", { node = node, vmid = vmid })
    if not ok then return nil, m, c end
    return { changed = true }
  end)
end

--- Stops the VM (hard) unless stopped; returns {changed=bool}.
function M.stop(pve, node, vmid)
  return M.with_vm(pve, vmid, function()
    local st, msg, code = status(pve, node, vmid)
    if not st then return nil, msg, code end
    if st.status == "stopped" then return { changed = false } end
    local ok, m, c = pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/status/stop", { node = node, vmid = vmid })
    if not ok then return nil, m, c end
    return { changed = true }
  end)
end

--- Shuts the VM down gracefully, forcing the stop after `timeout` seconds.
function M.shutdown(pve, node, vmid, timeout)
  return M.with_vm(pve, vmid, function()
    local st, msg, code = status(pve, node, vmid)
    if not st then return nil, msg, code end
    if st.status == "stopped" then return { changed = false } end
    local ok, m, c = pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown",
      { node = node, vmid = vmid, timeout = timeout or 60, forceStop = true })
    if not ok then return nil, m, c end
    return { changed = true }
  end)
end

--- Stops and deletes the VM with its disks (purge); {changed=false} if it is gone already.
function M.delete(pve, node, vmid)
  local st, msg, code = status(pve, node, vmid)
  if not st then
    if code == "ENOTFOUND" then return { changed = false } end
    return nil, msg, code
  end
  if st.status ~= "stopped" then
    local ok, m, c = M.stop(pve, node, vmid)
    if not ok then return nil, m, c end
  end
  return M.with_vm(pve, vmid, function()
    local ok, m, c = pve:run_task("DELETE", "/nodes/{node}/qemu/{vmid}",
      { node = node, vmid = vmid, purge = true, ["destroy-unreferenced-disks"] = true })
    if not ok then return nil, m, c end
    return { changed = true }
  end)
end

-- ========== guest agent ==========

local SKIP_IFACE = { "^lo$", "^cni", "^flannel", "^cilium", "^kube", "^veth", "^docker", "^lxc" }

local function usable(iface, addr)
  for _, p in ipairs(SKIP_IFACE) do
    if iface:match(p) then return false end
  end
  local ip = addr["ip-address"] or ""
  -- loopback goes with `lo` above (the lab's guests live on 127.x addresses)
  if ip:match("^169%.254%.") or ip:lower():match("^fe[89ab]") or ip == "::1" then
    return false
  end
  return true
end

--- Waits until the guest agent reports an address; returns {ipv4={...}, ipv6={...}}.
---@param o? {timeout?: number, family?: "ipv4"|"ipv6"}
function M.wait_ip(pve, node, vmid, o)
  o = check("vm.wait_ip", o, { timeout = "number", family = "string" })
  local family = o.family or "ipv4"
  local deadline = sched.now() + (o.timeout or 300)
  local delay = 0.05
  local last
  while true do
    local res, msg, code = pve:get("/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
      { node = node, vmid = vmid }, { no_retry = true })
    if res then
      local out = { ipv4 = {}, ipv6 = {} }
      for _, iface in ipairs(res.result or {}) do
        for _, addr in ipairs(iface["ip-addresses"] or {}) do
          if usable(iface.name or "", addr) then
            local list = out[addr["ip-address-type"]]
            if list then list[#list + 1] = addr["ip-address"] end
          end
        end
      end
      if #out[family] > 0 then return out end
      last = "no " .. family .. " address yet"
    elseif code == "EAPI" or code == "ETIMEDOUT" or code == "EUNREACHABLE" then
      last = msg -- "QEMU guest agent is not running" until it boots
    else
      return nil, msg, code
    end
    if sched.now() > deadline then
      return nil, string.format("VM %d on %s: no address from the guest agent within %gs (%s)",
        vmid, node, o.timeout or 300, tostring(last)), "ETIMEDOUT"
    end
    sched.sleep(delay)
    delay = math.min(delay * 1.5, 2)
  end
end

return M
