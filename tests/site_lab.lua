-- A private lab with BIND (tests/lab/ctl.sh) and a site file for it, for the
-- specs that run recipes end to end:
--   local lab = SL.start()                   -- examples/lab.lua on a random 127.N net
--   local out, rc = lab:tlr("run", "recipes/cluster.lua")
--   lab:control("GET", "/pve/state"), lab:mutating(), lab:stop()
local H = require "helper"
local L = require "lab_helper"
local json = require "tlr.json"

local SL = {}
local Lab = {}
Lab.__index = Lab

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
SL.quote = quote

--- Starts the lab; o: {site = template file (default examples/lab.lua), profile}.
function SL.start(o)
  o = o or {}
  local dir = H.tmpdir()
  math.randomseed(os.time() + os.clock() * 1e6)
  local net = "127." .. math.random(100, 250)
  local out, rc = H.capture(string.format("bash tests/lab/ctl.sh start %s %s %s", quote(dir .. "/lab"), net,
    o.profile or "test"))
  assert(rc == 0, out)
  local self = setmetatable({ dir = dir, net = net, env = assert(L.read_env(dir .. "/lab/env")),
    site_file = dir .. "/site.lua" }, Lab)
  local text = H.read(o.site or "examples/lab.lua"):gsub("127%.77%.", net .. ".")
  text = text:gsub('\n  name = "([%w-]+)",\n', '\n  name = "%1",\n  state_dir = "' .. dir .. '/state",\n', 1)
  self.template = text
  H.write(self.site_file, text)
  return self
end

function Lab:stop()
  H.capture("bash tests/lab/ctl.sh stop " .. quote(self.dir .. "/lab"))
end

--- The environment prefix that hands the lab's env file to tlr.
function Lab:envs()
  local vars = {}
  for k, v in pairs(self.env) do vars[#vars + 1] = k .. "=" .. quote(v) end
  return "env " .. table.concat(vars, " ")
end

--- Runs `tlr MODE RECIPE SITE [extra]`; returns stdout+stderr, exit status.
function Lab:tlr(mode, recipe, site, extra)
  return H.capture(string.format("%s %s %s %s %s %s", self:envs(), os.getenv("TLR_BIN") or "build/tlr", mode,
    recipe, quote(site or self.site_file), extra or ""))
end

--- Starts `tlr MODE RECIPE` in the background; returns its pid and output file.
function Lab:spawn(mode, recipe, site)
  local log = self.dir .. "/bg-" .. tostring(os.time()) .. "-" .. math.random(1000, 9999) .. ".log"
  local p = io.popen(string.format("%s %s %s %s %s > %s 2>&1 & echo $!", self:envs(),
    os.getenv("TLR_BIN") or "build/tlr", mode, recipe, quote(site or self.site_file), quote(log)))
  local pid = p:read("a"):match("%d+")
  p:close()
  return pid, log
end

--- Calls the lab's control endpoint; returns the decoded reply.
function Lab:control(method, path, body)
  local data = body and (" -H 'Content-Type: application/json' --data " .. quote(json.encode(body))) or ""
  local out = H.capture(string.format("curl -s -X %s %s%s", method, quote(self.env.LAB_CONTROL .. path), data))
  return json.decode(out)
end

-- Talos calls that only read.
local TALOS_READS = { "/Version$", "/ServiceList$", "/EtcdMemberList$", "/cosi%.resource%.State/Get$",
  "/cosi%.resource%.State/List$", "/Disks$" }

--- The mutating requests the fakes logged: {"service METHOD path"...}.
function Lab:mutating()
  local list = {}
  for _, e in ipairs(self:control("GET", "/log?limit=20000") or {}) do
    local read = e.method == "GET"
    if e.service == "talos" then
      for _, p in ipairs(TALOS_READS) do read = read or e.path:match(p) ~= nil end
    end
    if not read then list[#list + 1] = e.service .. " " .. e.method .. " " .. e.path end
  end
  return list
end

--- Writes a variant of the site: fn(text) returns the new text.
function Lab:edit_site(fn, file)
  local text = fn(self.template)
  H.write(file or self.site_file, text)
  return text
end

--- A DNS lookup in the lab's BIND.
function Lab:dig(name, type_)
  return H.capture(string.format("dig +short -p %s @%s %s %s", self.env.DNS_PORT, self.env.DNS_SERVER, name,
    type_ or "A"))
end

--- The VMs the Proxmox fake has: {name = {vmid, node, status, config, count}}, total.
function Lab:vms()
  local st = self:control("GET", "/pve/state")
  local out, total = {}, 0
  for node, n in pairs(st.nodes) do
    for _, v in ipairs(n.vms or {}) do
      local e = out[v.name] or { vmid = v.vmid, node = node, status = v.status, config = v.config, count = 0 }
      e.count = e.count + 1
      out[v.name] = e
      total = total + 1
    end
  end
  return out, total
end

--- A Proxmox client on the lab's fake.
function Lab:pve()
  return assert(require("tlr.proxmox").connect { endpoint = self.env.PVE_ENDPOINT, token = self.env.PVE_TOKEN,
    fingerprint = self.env.PVE_FINGERPRINT })
end

SL.Lab = Lab
return SL
