-- A deterministic JSON document shaped like a Proxmox `GET /cluster/resources`
-- reply, for the json benchmark:
--   local gen = dofile("bench/json_gen.lua"); local text = gen(3 * 1024 * 1024)
-- Returns function(size_bytes) -> JSON string of about size_bytes (default
-- ~3 MB): {"data":[...]} with node, storage, qemu and lxc entries in the
-- proportions of a busy cluster, numbers both integral and fractional.

local DEFAULT_SIZE = 3 * 1024 * 1024

-- A small linear congruential generator: same sequence on every machine.
local function lcg(seed)
  local state = seed
  return function(n)
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n
  end
end

local function quote(s) return '"' .. s .. '"' end

local function field(k, v) return quote(k) .. ":" .. v end

local function object(fields) return "{" .. table.concat(fields, ",") .. "}" end

local function node_entry(rnd, i)
  local name = string.format("pve%02d", i)
  return object {
    field("id", quote("node/" .. name)), field("type", quote("node")), field("node", quote(name)),
    field("status", quote("online")), field("level", quote("")),
    field("maxcpu", tostring(32 + rnd(4) * 16)),
    field("cpu", string.format("%.6f", rnd(100000) / 100000)),
    field("maxmem", tostring(274877906944 + rnd(1000) * 1048576)),
    field("mem", tostring(68719476736 + rnd(100000) * 4096)),
    field("maxdisk", tostring(1967397961728)), field("disk", tostring(rnd(1000000) * 65536)),
    field("uptime", tostring(86400 * (10 + rnd(300)))),
    field("cgroup-mode", "2"),
  }
end

local function storage_entry(rnd, i, node)
  local names = { "local", "local-lvm", "ceph-rbd", "nfs-iso", "cephfs" }
  local plugins = { "dir", "lvmthin", "rbd", "nfs", "cephfs" }
  local k = 1 + (i - 1) % #names
  return object {
    field("id", quote("storage/" .. node .. "/" .. names[k])), field("type", quote("storage")),
    field("node", quote(node)), field("storage", quote(names[k])),
    field("plugintype", quote(plugins[k])), field("status", quote("available")),
    field("shared", tostring(k >= 3 and 1 or 0)),
    field("content", quote(k == 4 and "iso,vztmpl" or "images,rootdir")),
    field("maxdisk", tostring(4398046511104 + rnd(1000) * 1073741824)),
    field("disk", tostring(rnd(4000000) * 1048576)),
  }
end

local function guest_entry(rnd, vmid, node)
  local lxc = rnd(4) == 0
  local kind = lxc and "lxc" or "qemu"
  local running = rnd(10) < 8
  local maxmem = (1 + rnd(32)) * 1073741824
  local tags = { "k8s;talos", "prod", "db;backup", "", "ci;ephemeral", "web" }
  local fields = {
    field("id", quote(kind .. "/" .. vmid)), field("type", quote(kind)),
    field("node", quote(node)), field("vmid", tostring(vmid)),
    field("name", quote(string.format("%s-%s-%04d", lxc and "ct" or "vm", node, vmid))),
    field("status", quote(running and "running" or "stopped")),
    field("maxmem", tostring(maxmem)), field("mem", tostring(running and rnd(maxmem) or 0)),
    field("maxcpu", tostring(1 + rnd(16))),
    field("cpu", running and string.format("%.17g", rnd(1000000) / 7340033) or "0"),
    field("maxdisk", tostring((8 + rnd(256)) * 1073741824)), field("disk", tostring(rnd(1 << 30))),
    field("diskread", tostring(rnd(1 << 30) * 16)), field("diskwrite", tostring(rnd(1 << 30) * 8)),
    field("uptime", tostring(running and rnd(8640000) or 0)),
    field("netin", tostring(rnd(1 << 30) * 64)), field("netout", tostring(rnd(1 << 30) * 32)),
    field("template", tostring(rnd(50) == 0 and 1 or 0)),
    field("tags", quote(tags[1 + rnd(#tags)])),
    field("hastate", quote(rnd(3) == 0 and "started" or "ignored")),
  }
  if rnd(5) == 0 then fields[#fields + 1] = field("lock", quote("backup")) end
  if rnd(7) == 0 then fields[#fields + 1] = field("pool", quote("pool-" .. rnd(5))) end
  return object(fields)
end

return function(size_bytes)
  size_bytes = size_bytes or DEFAULT_SIZE
  local rnd = lcg(20240601)
  local nodes, entries, total = {}, {}, 0
  for i = 1, 8 do
    nodes[i] = string.format("pve%02d", i)
    local e = node_entry(rnd, i)
    entries[#entries + 1] = e
    total = total + #e + 1
    for s = 1, 5 do
      e = storage_entry(rnd, s, nodes[i])
      entries[#entries + 1] = e
      total = total + #e + 1
    end
  end
  local vmid = 100
  while total < size_bytes - 16 do
    local e = guest_entry(rnd, vmid, nodes[1 + vmid % #nodes])
    entries[#entries + 1] = e
    total = total + #e + 1
    vmid = vmid + 1
  end
  return '{"data":[' .. table.concat(entries, ",") .. "]}"
end
