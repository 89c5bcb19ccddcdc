-- tlr.site: the site file.  Every rule has a failing and a passing case
-- with the exact message ("<file>: <field.path>: <reason>"); Lua and YAML
-- forms give the same table; the sandbox holds; secrets stay out of errors
-- and out of redacted copies; examples/ all validate.
local site = require "tlr.site"
local net = require "tlr.site.net"
local schema = require "tlr.site.schema"
local fs = require "tlr.fs"
local log = require "tlr.log"

local FIX = "tests/fixtures/sites/"

-- fake secrets: long and distinctive, so a leak is easy to find
local TOKEN = "root@pam!tlr=5ecre7-70ken-0f-7he-s1te-spec"
local SECRETS = {
  PVE_TOKEN = TOKEN,
  PVE_PASSWORD = "pve-password-s3cret-7777",
  DNS_KEY_SECRET = "ZG5zLWtleS1zZWNyZXQtZm9yLXRoZS1zaXRlLXNwZWM=",
  CF_TOKEN = "cf-token-0123456789-s3cret-cloudflare",
  GIT_TOKEN = "ghp_s3cret_git_token_for_argocd_000",
}
local ENV = {
  PVE_ENDPOINT = "https://10.0.0.2:8006/",
  FACTORY_URL = "https://factory.example.test",
  DNS_PORT = "5353",
  EMPTY = "",
}
for k, v in pairs(SECRETS) do ENV[k] = v end
local function env(k) return ENV[k] end

-- A valid site: 3 control planes + 1 worker over 3 hosts.
local function base()
  return {
    name = "lab",
    talos = { version = "v1.11.6", extensions = { "siderolabs/qemu-guest-agent" } },
    proxmox = {
      endpoint = "https://10.0.0.2:8006", token = "env:PVE_TOKEN", insecure = true,
      hosts = { "pve1", "pve2", "pve3" },
    },
    network = { cidr = "10.0.0.0/24", gateway = "10.0.0.1", vip = "10.0.0.10" },
    nodes = {
      { name = "cp1", role = "controlplane", host = "pve1", ip = "10.0.0.11" },
      { name = "cp2", role = "controlplane", host = "pve2", ip = "10.0.0.12" },
      { name = "cp3", role = "controlplane", host = "pve3", ip = "10.0.0.13" },
      { name = "w1", role = "worker", host = "pve1", ip = "10.0.0.21" },
    },
  }
end

local function validate(mutate)
  local t = base()
  if mutate then mutate(t) end
  return site.validate(t, { file = "t.lua", env = env })
end

-- The exact errors of a mutated base site (the "t.lua: " prefix is added).
local function fails(mutate, want)
  local s, msg, code, errs = validate(mutate)
  assert.is_nil(s)
  assert.are.equal("EINVAL", code)
  local full = {}
  for i, w in ipairs(want) do full[i] = "t.lua: " .. w end
  assert.are.same(full, errs)
  assert.are.equal(table.concat(full, "\n"), msg)
end

-- The site and warnings of a mutated base site that must pass.
local function passes(mutate, want_warnings)
  local s, warnings = validate(mutate)
  assert(s, warnings)
  if want_warnings then
    local full = {}
    for i, w in ipairs(want_warnings) do full[i] = "t.lua: " .. w end
    assert.are.same(full, warnings)
  end
  return s, warnings
end

local function node(s, name)
  for _, n in ipairs(s.nodes) do if n.name == name then return n end end
end

local function write(path, data, mode)
  assert(fs.write(path, data, { mode = mode or 0x180 }))
end

describe("tlr.site", function()
  before_each(function() log.reset_secrets() end)

  describe("a valid site", function()
    it("is normalized: defaults, derived MACs, endpoint, per-host lists", function()
      local s, warnings = passes(nil, {})
      assert.are.same({}, warnings)
      assert.are.equal("lab", s.name)
      assert.are.equal("https://10.0.0.10:6443", s.endpoint)
      assert.are.same({ "cp1", "cp2", "cp3" }, s.controlplanes)
      assert.are.same({ "w1" }, s.workers)
      assert.are.equal("cp1", s.bootstrap)
      local cp1 = node(s, "cp1")
      assert.are.equal("10.0.0.11", cp1.ip)
      assert.are.equal(24, cp1.prefix)
      assert.are.equal("10.0.0.11/24", cp1.cidr)
      assert.is_false(cp1.dhcp)
      assert.are.same({ 2, 4096, 32, "local-lvm", "vmbr0" }, { cp1.cores, cp1.memory, cp1.disk, cp1.storage, cp1.bridge })
      assert.are.same({ 2, 4096, 64 }, { node(s, "w1").cores, node(s, "w1").memory, node(s, "w1").disk })
      -- stable, locally administered, Proxmox's prefix; the same as tlr.proxmox.vm derives
      assert.are.equal(require("tlr.proxmox.vm").mac_for("lab/cp1"), cp1.mac)
      assert.matches("^BC:24:11:%x%x:%x%x:%x%x$", cp1.mac)
      assert.are.equal(cp1.mac, node(passes(), "cp1").mac)
      assert.are_not.equal(cp1.mac, node(passes(function(t) t.name = "other" end), "cp1").mac)
      assert.is_nil(cp1.vmid)
      assert.are.same({ "cp1", "w1" }, s.proxmox.hosts.pve1.nodes)
      assert.are.same({ "cp3" }, s.proxmox.hosts.pve3.nodes)
      assert.are.same({ "local", "local-lvm" }, s.proxmox.hosts.pve1.storages)
      assert.are.equal("local", s.proxmox.hosts.pve1.image_storage)
      assert.are.equal(1, #s.proxmox.endpoints)
      assert.are.same({ "pve1", "pve2", "pve3" }, s.proxmox.endpoints[1].hosts)
      assert.are.same({ endpoint = "https://10.0.0.2:8006", token = TOKEN, insecure = true },
        s.proxmox.endpoints[1].connect)
      assert.are.equal(s.proxmox.endpoints[1].connect, s.proxmox.hosts.pve2.connect)
      assert.are.same({ version = "1.34.1", pod_subnets = { "10.244.0.0/16" },
        service_subnets = { "10.96.0.0/12" }, dns_domain = "cluster.local", kube_proxy = true,
        allow_scheduling_on_control_planes = false, cni = "flannel" }, s.kubernetes)
      assert.are.equal("ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515", s.talos.schematic_id)
      assert.are.equal("factory.talos.dev/nocloud-installer/" .. s.talos.schematic_id .. ":v1.11.6",
        s.talos.installer_image)
      assert.are.equal(fs.abs(".tlr/lab"), s.state_dir)
      assert.is_false(s.dns)
      assert.are.same({ metallb = false, ingress = false, cert_manager = false, external_dns = false,
        argocd = false }, s.apps)
    end)

    it("derives vmids from proxmox.vmid_base in node order, keeping given ones", function()
      local s = passes(function(t)
        t.proxmox.vmid_base = 800
        t.nodes[3].vmid = 999
      end)
      assert.are.same({ 800, 801, 999, 803 }, { s.nodes[1].vmid, s.nodes[2].vmid, s.nodes[3].vmid, s.nodes[4].vmid })
      assert.is_true(s.nodes[1].vmid_derived)
      assert.is_nil(s.nodes[3].vmid_derived)
    end)

    it("takes the first control plane's address as endpoint without a VIP, or the one given", function()
      assert.are.equal("https://10.0.0.11:6443", passes(function(t) t.network.vip = nil end).endpoint)
      assert.are.equal("https://api.lab.test:6443",
        passes(function(t) t.endpoint = "https://api.lab.test:6443/" end).endpoint)
      local s = passes(function(t)
        t.network = { cidr = "fd00:77::/64", gateway = "fd00:77::1", vip = "FD00:77:0:0::10" }
        for i, n in ipairs(t.nodes) do n.ip = "fd00:77::" .. (10 + i) end
      end)
      assert.are.equal("https://[fd00:77::10]:6443", s.endpoint)
      assert.are.equal("fd00:77::11/64", s.nodes[1].cidr)
    end)

    it("reads sizes with units and per-role defaults", function()
      local s = passes(function(t)
        t.defaults = { worker = { memory = "16G", disk = "1T" }, controlplane = { cores = 4 } }
        t.nodes[1].memory = "6144MiB"
        t.nodes[2].memory = 3072
      end)
      assert.are.same({ 4, 6144 }, { s.nodes[1].cores, s.nodes[1].memory })
      assert.are.equal(3072, s.nodes[2].memory)
      assert.are.same({ 16384, 1024 }, { s.nodes[4].memory, s.nodes[4].disk })
    end)

    it("takes the only host when a node names none, and hosts as a map", function()
      local s = passes(function(t)
        t.proxmox.hosts = { pve = { storages = { "local", "nvme" }, disk_storage = "nvme" } }
        for _, n in ipairs(t.nodes) do n.host = nil end
      end)
      assert.are.equal("pve", s.nodes[4].host)
      assert.are.equal("nvme", s.nodes[4].storage)
      assert.are.equal("local", s.proxmox.hosts.pve.image_storage)
    end)

    it("takes YAML's empty values and true as a host with defaults; nulls as absent", function()
      local dir = assert(fs.tmpdir("tlr-site-spec"))
      finally(function() fs.remove(dir, { recursive = true }) end)
      write(dir .. "/s.yaml", table.concat({
        "name: nulls", "talos: {version: v1.12.0}", "kubernetes: ~",
        "proxmox:", "  endpoint: https://10.0.0.2:8006", "  token: env:PVE_TOKEN", "  insecure: true",
        "  hosts:", "    pve1:", "    pve2: ~",
        "nodes:", "  - {name: cp1, role: controlplane, host: pve1, ip: 10.0.0.11/24, vmid: ~}",
        "  - name: w1", "    role: worker", "    host: pve2", "    ip: 10.0.0.21/24",
        "    patches: [{machine: {network: {nameservers: ~}}}]", "" }, "\n"))
      local s, warnings = site.load(dir .. "/s.yaml", { env = env })
      assert(s, warnings)
      assert.are.same({ "cp1" }, s.proxmox.hosts.pve1.nodes)
      assert.are.same({ "local", "local-lvm" }, s.proxmox.hosts.pve2.storages)
      assert.is_nil(s.nodes[1].vmid)
      assert.are.equal(require("tlr.yaml").null, s.nodes[2].patches[1].machine.network.nameservers)
      passes(function(t) t.proxmox.hosts = { pve1 = true, pve2 = true, pve3 = true } end)
      fails(function(t) t.proxmox.hosts = {} end, { "proxmox.hosts: no hosts given" })
      fails(function(t) t.proxmox.hosts = "pve1" end, {
        "proxmox.hosts: a map of host name to settings, or a list of host names, expected" })
      write(dir .. "/empty.yaml", "# nothing yet\n")
      local _, msg = site.load(dir .. "/empty.yaml", { env = env })
      assert.are.equal(dir .. "/empty.yaml: the site file must be a map, got null", msg)
    end)

    it("lets a host bring its own endpoint, credentials and TLS settings, each as a whole", function()
      local s = passes(function(t)
        t.proxmox.hosts = { pve1 = {}, pve2 = {}, pve3 = { endpoint = "https://10.0.0.4:8006",
          user = "root@pam", password = "env:PVE_PASSWORD", fingerprint = string.rep("AB", 32) } }
      end, {})
      assert.are.same({ endpoint = "https://10.0.0.4:8006", user = "root@pam", password = SECRETS.PVE_PASSWORD,
        fingerprint = string.rep("AB", 32) }, s.proxmox.hosts.pve3.connect)
      assert.are.same({ "pve1", "pve2" }, s.proxmox.endpoints[1].hosts)
      assert.are.same({ "pve3" }, s.proxmox.endpoints[2].hosts)
      passes(function(t)
        t.proxmox.insecure = nil
        t.proxmox.fingerprint = string.rep("AB", 32)
        t.proxmox.hosts = { pve1 = {}, pve2 = {}, pve3 = { endpoint = "https://10.0.0.4:8006" } }
      end, { "proxmox.hosts.pve3: has its own endpoint but proxmox.fingerprint, which pins one certificate" })
    end)
  end)

  describe("rules", function()
    it("unknown keys, with a suggestion when one is close", function()
      fails(function(t)
        t.nmae = "x"
        t.nodes[1].memroy = 4096
        t.proxmox.hosts = { pve1 = { storage = { "local" } }, pve2 = {}, pve3 = {} }
        t.foo = 1
      end, {
        "foo: unknown key",
        "nmae: unknown key (did you mean 'name'?)",
        "nodes[1].memroy: unknown key (did you mean 'memory'?)",
        "proxmox.hosts.pve1.storage: unknown key (did you mean 'storages'?)",
      })
      passes(function(t) t.nodes[1].memory = 4096 end)
    end)

    it("required fields and types", function()
      fails(function(t)
        t.name = nil
        t.talos.version = nil
        t.nodes[2].role = nil
        t.nodes[3].cores = "2"
        t.network.nameservers = 5
      end, {
        "name: required",
        "talos.version: required",
        "network.nameservers: list expected, got number",
        "nodes[2].role: required",
        "nodes[3].cores: integer expected, got '2'",
      })
      passes(function(t) t.nodes[3].cores = 2 end)
    end)

    it("names are DNS labels, roles controlplane or worker", function()
      fails(function(t)
        t.name = "Lab"
        t.nodes[1].name = "cp_1"
        t.nodes[4].role = "control-plane"
      end, {
        "name: 'Lab' is not a valid name: use lowercase letters, digits and '-' (at most 63, starting and ending with a letter or digit)",
        "nodes[1].name: 'cp_1' is not a valid name: use lowercase letters, digits and '-' (at most 63, starting and ending with a letter or digit)",
        "nodes[4].role: 'control-plane' is not one of controlplane, worker (did you mean 'controlplane'?)",
      })
      passes(function(t) t.name = "lab-2" t.nodes[1].name = "cp-1" end)
    end)

    it("names, addresses, vmids and MACs are unique", function()
      fails(function(t)
        t.nodes[2].name = "cp1"
        t.nodes[4].ip = "10.0.0.13"
        t.proxmox.vmid_base = 100
        t.nodes[4].vmid = 101
        t.nodes[3].mac = "bc:24:11:aa:bb:cc"
        t.nodes[4].mac = "BC-24-11-AA-BB-CC"
      end, {
        "nodes[2].name: 'cp1' is also the name of nodes[1]",
        "nodes[4].vmid: 101 is also the vmid of nodes[2] (cp1)",
        "nodes[4].mac: BC:24:11:AA:BB:CC is also the MAC of nodes[3] (cp3)",
        "nodes[4].ip: 10.0.0.13 is also the address of nodes[3] (cp3)",
      })
      fails(function(t)
        t.proxmox.vmid_base = 100
        t.nodes[1].vmid = 103
      end, { "nodes[4].vmid: 103 (from proxmox.vmid_base) is also the vmid of nodes[1] (cp1)" })
      local derived = require("tlr.proxmox.vm").mac_for("lab/cp2")
      fails(function(t) t.nodes[1].mac = derived end, {
        "nodes[2].mac: the derived MAC " .. derived .. " is also the MAC of nodes[1] (cp1): set mac" })
      local s = passes(function(t) t.nodes[3].mac = "bc:24:11:aa:bb:cc" end)
      assert.are.equal("BC:24:11:AA:BB:CC", s.nodes[3].mac)
      assert.is_nil(s.nodes[3].mac_derived)
    end)

    it("MACs are unicast and well formed; vmids in Proxmox's range", function()
      fails(function(t)
        t.nodes[1].mac = "01:00:5E:00:00:01"
        t.nodes[2].mac = "BC:24:11:00:00"
        t.nodes[3].vmid = 99
        t.proxmox.vmid_base = 999999998
      end, {
        "nodes[3].vmid: 99 is out of range (100..999999999)",
        "nodes[1].mac: 01:00:5E:00:00:01 is a multicast address",
        "nodes[2].mac: 'BC:24:11:00:00' is not a MAC address (like BC:24:11:00:00:01)",
        "nodes[4].vmid: 1000000001 (from proxmox.vmid_base) is out of range (100..999999999)",
      })
    end)

    it("addresses lie in the nodes' subnet, with a prefix, not network or broadcast", function()
      fails(function(t)
        t.nodes[1].ip = "10.0.1.11"
        t.nodes[2].ip = "10.0.0.12/16"
        t.nodes[3].ip = "10.0.0.255"
        t.nodes[4].ip = "fd00::21"
      end, {
        "nodes[1].ip: 10.0.1.11 is outside network.cidr 10.0.0.0/24",
        "nodes[2].ip: prefix /16 differs from network.cidr (/24)",
        "nodes[3].ip: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
        "nodes[4].ip: fd00::21 is IPv6 but network.cidr is IPv4",
      })
      -- without network.cidr the first address with a prefix sets the subnet
      fails(function(t)
        t.network.cidr = nil
        t.nodes[1].ip = "10.0.0.11/24"
        t.nodes[2].ip = "10.0.9.12/24"
        t.nodes[3].ip = "10.0.0.0/24"
      end, {
        "nodes[2].ip: 10.0.9.12/24 is outside 10.0.0.0/24, the subnet of nodes[1] (cp1) (all nodes share one subnet)",
        "nodes[3].ip: 10.0.0.0 is the network address of 10.0.0.0/24",
      })
      fails(function(t)
        t.network = { gateway = "10.0.0.1" }
      end, { "nodes[1].ip: no prefix length: write 10.0.0.11/24 (or the right length), or set network.cidr" })
      fails(function(t) t.nodes[1].ip = "10.0.0.300" end, {
        "nodes[1].ip: '10.0.0.300' is not an address, address/prefix or \"dhcp\"",
      })
      fails(function(t) t.nodes[1].ip = "DHCP" end, {
        "nodes[1].ip: 'DHCP' is not an address, address/prefix or \"dhcp\" (did you mean 'dhcp'?)",
      })
      fails(function(t) t.network.cidr = "10.0.0.5/24" end, {
        "network.cidr: '10.0.0.5/24' has host bits set (did you mean 10.0.0.0/24?)",
      })
      local s = passes(function(t)
        t.network.cidr = nil
        t.nodes[1].ip = "10.0.0.11/24"
      end)
      assert.are.equal("10.0.0.0/24", s.network.cidr)
      assert.are.equal(24, s.nodes[4].prefix)
    end)

    it("the gateway is in the subnet and not a node's", function()
      fails(function(t) t.network.gateway = "10.0.1.1" end, {
        "network.gateway: 10.0.1.1 is outside the nodes' subnet 10.0.0.0/24",
      })
      fails(function(t) t.network.gateway = "10.0.0.21" end, {
        "network.gateway: 10.0.0.21 is the address of nodes[4] (w1)",
      })
      passes(function(t) t.network.gateway = nil end,
        { "network.gateway: not set: nodes with static addresses get no default route" })
    end)

    it("the VIP is in the nodes' subnet, on no node and not the gateway", function()
      fails(function(t) t.network.vip = "10.0.5.10" end, {
        "network.vip: 10.0.5.10 is outside the nodes' subnet 10.0.0.0/24",
      })
      fails(function(t) t.network.vip = "10.0.0.12" end, {
        "network.vip: 10.0.0.12 is the address of nodes[2] (cp2)",
      })
      fails(function(t) t.network.vip = "10.0.0.1" end, { "network.vip: 10.0.0.1 is the gateway" })
      fails(function(t)
        t.network = { vip = "10.0.0.10" }
        for _, n in ipairs(t.nodes) do n.ip = "dhcp" end
      end, { "network.vip: set network.cidr too: the control planes use DHCP, and the VIP must be in their subnet" })
      passes(function(t) t.network.vip = "10.0.0.254" end, {})
    end)

    it("a node's host is one of the site's hosts; it must be named when there are several", function()
      fails(function(t)
        t.nodes[1].host = "pve4"
        t.nodes[2].host = nil
      end, {
        "nodes[1].host: 'pve4' is not one of the Proxmox hosts (pve1, pve2, pve3) (did you mean 'pve1'?)",
        "nodes[2].host: required (the site has 3 Proxmox hosts: pve1, pve2, pve3)",
      })
      fails(function(t) t.proxmox.hosts = { "pve1", "pve1", "pve_2" } end, {
        "proxmox.hosts[2]: 'pve1' is listed twice",
        "proxmox.hosts.pve_2: 'pve_2' is not a valid Proxmox node name",
        "nodes[2].host: 'pve2' is not one of the Proxmox hosts (pve1) (did you mean 'pve1'?)",
        "nodes[3].host: 'pve3' is not one of the Proxmox hosts (pve1) (did you mean 'pve1'?)",
      })
    end)

    it("storages a site names exist on the host", function()
      fails(function(t)
        t.proxmox.hosts = { pve1 = { storages = { "local", "ceph" }, disk_storage = "cephh" },
          pve2 = { image_storage = "nfs" }, pve3 = { storages = { "local", "local" } } }
        t.nodes[2].storage = "ceph"
      end, {
        "proxmox.hosts.pve1.disk_storage: 'cephh' is not one of this host's storages (local, ceph) (did you mean 'ceph'?)",
        "proxmox.hosts.pve2.image_storage: 'nfs' is not one of this host's storages (local, local-lvm)",
        "proxmox.hosts.pve3.storages[2]: 'local' is listed twice",
        "nodes[2].storage: 'ceph' is not one of pve2's storages (local, local-lvm)",
      })
      local s = passes(function(t)
        t.proxmox.hosts = { pve1 = { storages = { "local", "ceph" } }, pve2 = {}, pve3 = {} }
        t.nodes[2].storage = "local"
      end)
      assert.are.equal("local", s.proxmox.hosts.pve1.disk_storage) -- no local-lvm: the first one
      assert.are.equal("local", s.nodes[2].storage)
      assert.are.equal("local", s.nodes[1].storage)
    end)

    it("credentials: a token, or user and password, as references", function()
      fails(function(t) t.proxmox.token = nil end, {
        "proxmox.token: credentials missing: give token (e.g. env:PVE_TOKEN), or user and password",
      })
      fails(function(t) t.proxmox.token = TOKEN end, {
        "proxmox.token: must be a reference (env:NAME or file:PATH), not the secret itself",
      })
      fails(function(t) t.proxmox.token = "env:NOPE" end, { "proxmox.token: env:NOPE is not set" })
      fails(function(t) t.proxmox.token = "env:EMPTY" end, { "proxmox.token: env:EMPTY is empty" })
      fails(function(t) t.proxmox.token = "env:bad-name" end, {
        "proxmox.token: 'env:bad-name' is not a valid reference (env:NAME)" })
      fails(function(t) t.proxmox.token = "env:PVE_PASSWORD" end, {
        "proxmox.token: must look like user@realm!tokenid=secret" })
      fails(function(t) t.proxmox.password = "env:PVE_PASSWORD" end, {
        "proxmox.password: give token, or user and password, not both" })
      fails(function(t)
        t.proxmox.token = nil
        t.proxmox.user = "root"
      end, { "proxmox.password: required with user",
        "proxmox.user: 'root' must look like user@realm (e.g. root@pam)" })
      fails(function(t)
        t.proxmox.token = nil
        t.proxmox.password = "env:PVE_PASSWORD"
      end, { "proxmox.user: required with password" })
      local s = passes(function(t)
        t.proxmox.token = nil
        t.proxmox.user = "root@pam"
        t.proxmox.password = "env:PVE_PASSWORD"
      end)
      assert.are.equal(SECRETS.PVE_PASSWORD, s.proxmox.hosts.pve1.connect.password)
    end)

    it("file: references are read relative to the site file and warned about when readable", function()
      local dir = assert(fs.tmpdir("tlr-site-spec"))
      finally(function() fs.remove(dir, { recursive = true }) end)
      write(dir .. "/token", TOKEN .. "\n")
      write(dir .. "/open-token", TOKEN, 0x1a4)
      local file = dir .. "/site.lua"
      local t = base()
      t.proxmox.token = "file:token"
      local s, warnings = site.validate(t, { file = file, env = env })
      assert(s, warnings)
      assert.are.same({}, warnings)
      assert.are.equal(TOKEN, s.proxmox.hosts.pve1.connect.token) -- trailing newline dropped
      t.proxmox.token = "file:" .. dir .. "/open-token"
      s, warnings = site.validate(t, { file = file, env = env })
      assert(s, warnings)
      assert.are.same({ file .. ": proxmox.token: file:" .. dir .. "/open-token can be read by group or others"
        .. " (chmod 600 " .. dir .. "/open-token)" }, warnings)
      t.proxmox.token = "file:~/token"
      s = site.validate(t, { file = "elsewhere/site.lua", env = function(k)
        return k == "HOME" and dir or env(k) end })
      assert.are.equal(TOKEN, s.proxmox.hosts.pve1.connect.token)
      t.proxmox.token = "file:missing"
      local _, msg = site.validate(t, { file = file, env = env })
      assert.are.equal(file .. ": proxmox.token: file:missing: open " .. dir
        .. "/missing: No such file or directory", msg)
    end)

    it("TLS: one of fingerprint, ca, ca_file, insecure; a warning for none", function()
      fails(function(t) t.proxmox.fingerprint = string.rep("ab", 32) end, {
        "proxmox.insecure: give only one of fingerprint, ca, ca_file and insecure (fingerprint is set too)",
      })
      fails(function(t)
        t.proxmox.insecure = nil
        t.proxmox.fingerprint = "AB:CD"
        t.proxmox.ca = "not a cert"
      end, {
        "proxmox.fingerprint: not a SHA-256 fingerprint (32 hex bytes, e.g. AB:CD:...)",
        "proxmox.ca: not a PEM certificate (-----BEGIN CERTIFICATE-----)",
      })
      passes(function(t)
        t.proxmox.insecure = nil
        t.proxmox.fingerprint = string.rep("AB:", 31) .. "CD"
      end, {})
      passes(function(t) t.proxmox.insecure = nil end, {
        "proxmox.fingerprint: no fingerprint, ca, ca_file or insecure: the certificate must be trusted by "
          .. "the system CAs (Proxmox's own self-signed one is not)" })
      local s = site.load(FIX .. "full.lua", { env = env })
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE", s.proxmox.hosts.pve1.connect.ca)
    end)

    it("an endpoint for every host, https://", function()
      fails(function(t) t.proxmox.endpoint = nil end, {
        "proxmox.endpoint: required (give proxmox.endpoint, or an endpoint for every host)" })
      fails(function(t) t.proxmox.endpoint = "http://10.0.0.2:8006" end, {
        "proxmox.endpoint: 'http://10.0.0.2:8006' is not an https:// URL" })
      local s = passes(function(t)
        t.proxmox.endpoint = nil
        t.proxmox.hosts = { pve1 = { endpoint = "https://10.0.0.2:8006" },
          pve2 = { endpoint = "https://10.0.0.3:8006" }, pve3 = { endpoint = "https://10.0.0.3:8006" } }
      end)
      assert.are.equal(2, #s.proxmox.endpoints)
      assert.are.same({ "pve2", "pve3" }, s.proxmox.endpoints[2].hosts)
      assert.are.equal("https://10.0.0.3:8006", s.proxmox.hosts.pve3.connect.endpoint)
      assert.are.equal(TOKEN, s.proxmox.hosts.pve3.connect.token) -- inherited
    end)

    it("control planes: at least one; warnings for one, an even number, one host for all", function()
      fails(function(t) for _, n in ipairs(t.nodes) do n.role = "worker" end end, {
        "nodes: no controlplane node (at least one is required)" })
      fails(function(t) t.nodes = {} end, {
        "nodes: no nodes (at least one controlplane node is required)" })
      passes(function(t) t.nodes[2].role, t.nodes[3].role = "worker", "worker" end,
        { "nodes: one control plane: no high availability (3 tolerate the loss of one)" })
      passes(function(t) t.nodes[4].role = "controlplane" end, {
        "nodes: 4 control planes: an even number tolerates no more failures than 3 (etcd needs a majority); use 3 or 5" })
      passes(function(t) for _, n in ipairs(t.nodes) do n.host = "pve2" end end, {
        "nodes: all 3 control planes are on pve2: losing that host stops the cluster" })
      local s = passes(function(t) t.nodes[4] = nil end, {})
      assert.is_true(s.kubernetes.allow_scheduling_on_control_planes)
    end)

    it("cores, memory and disk within sane ranges; control-plane minimums warned about", function()
      fails(function(t)
        t.nodes[1].cores = 0
        t.nodes[2].memory = 512
        t.nodes[3].memory = "100M"
        t.nodes[4].disk = 5
        t.defaults = { worker = { memory = "lots" } }
      end, {
        "defaults.worker.memory: a size in MiB or a string such as '8G' expected, got 'lots'",
        "nodes[1].cores: 0 is out of range (1..512)",
        "nodes[2].memory: 512 is out of range (1024..4194304 MiB)",
        "nodes[3].memory: 100M is out of range (1024..4194304 MiB)",
        "nodes[4].disk: 5 is out of range (10..65536 GiB)",
      })
      passes(function(t)
        t.nodes[1].cores = 1
        t.nodes[2].memory = "1.5G"
      end, {
        "nodes[1].cores: 1 core is below Talos's control-plane minimum of 2",
        "nodes[2].memory: 1536 MiB is below Talos's control-plane minimum of 2048 MiB",
      })
    end)

    it("DHCP nodes need the guest agent extension", function()
      fails(function(t)
        t.talos.extensions = nil
        t.nodes[4].ip = "dhcp"
        t.nodes[3].ip = "dhcp"
      end, { "talos.extensions: nodes[3] (cp3), nodes[4] (w1) use DHCP: add siderolabs/qemu-guest-agent, "
        .. "tlr reads their addresses from the guest agent" })
      local s = passes(function(t)
        t.talos.extensions = { "qemu-guest-agent" }
        t.nodes[4].ip = "dhcp"
      end, {})
      assert.is_true(s.nodes[4].dhcp)
      assert.is_nil(s.nodes[4].ip)
      assert.are.same({ "siderolabs/qemu-guest-agent" }, s.talos.extensions)
    end)

    it("Talos and Kubernetes versions, extensions, CNI, subnets", function()
      fails(function(t)
        t.talos.version = "v1.7.3"
        t.talos.extensions = { "qemu-guest-agent", "siderolabs/qemu-guest-agent", "Bad Name" }
        t.kubernetes = { version = "1.34", cni = "calico", pod_subnets = { "10.0.0.0/16" } }
      end, {
        "talos.extensions[3]: 'Bad Name' is not an extension name (e.g. siderolabs/qemu-guest-agent)",
        "kubernetes.version: '1.34' is not a Kubernetes version (e.g. 1.34.1)",
        "talos.version: Talos v1.7.3 is not supported (1.8 through 1.13 are)",
        "talos.extensions[2]: 'siderolabs/qemu-guest-agent' is listed twice",
        "kubernetes.cni: 'calico' is not one of flannel, none (or {urls = {...}} for your own)",
        "kubernetes.pod_subnets[1]: 10.0.0.0/16 overlaps the nodes' subnet 10.0.0.0/24",
      })
      local s = passes(function(t)
        t.kubernetes = { version = "1.36.0", cni = { urls = { "https://example.test/cni.yaml" } } }
      end, { "kubernetes.version: Kubernetes 1.36.0 is newer than Talos v1.11.6 supports (up to 1.34.1)" })
      assert.are.same({ name = "custom", urls = { "https://example.test/cni.yaml" } }, s.kubernetes.cni)
      fails(function(t) t.kubernetes = { cni = { url = "x" } } end, {
        "kubernetes.cni.url: unknown key (did you mean 'urls'?)",
        "kubernetes.cni.urls: required" })
    end)

    it("DNS: the provider's settings, complete", function()
      fails(function(t) t.dns = { provider = "cloudfare", zone = "lab.test" } end, {
        "dns.provider: 'cloudfare' is not one of rfc2136, cloudflare (did you mean 'cloudflare'?)" })
      fails(function(t)
        t.dns = { provider = "rfc2136", zone = "lab.test", token = "env:CF_TOKEN", key_name = "k",
          key_algorithm = "hmac-sha265" }
      end, {
        "dns.token: not a setting of the rfc2136 provider (it is for cloudflare)",
        "dns.server: required for rfc2136 (the address of the primary server)",
        "dns.key_algorithm: 'hmac-sha265' is not one of hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, "
          .. "hmac-sha384, hmac-sha512 (did you mean 'hmac-sha256'?)",
        "dns.key_secret: required with key_name (e.g. env:DNS_KEY_SECRET)",
      })
      fails(function(t)
        t.dns = { provider = "rfc2136", zone = "lab.test", server = "ns.lab.test", key_name = "k",
          key_secret = "env:PVE_TOKEN", port = "env:FACTORY_URL" }
      end, {
        "dns.port: integer expected, got 'https://factory.example.test'",
        "dns.server: 'ns.lab.test' is not an IP address",
        "dns.key_secret: not base64 (as in a BIND key's secret)",
      })
      fails(function(t) t.dns = { provider = "cloudflare", zone = "lab.test", ttl = 30 } end, {
        "dns.token: required for cloudflare (e.g. env:CLOUDFLARE_API_TOKEN)",
        "dns.ttl: Cloudflare takes 1 (automatic) or 60..86400" })
      local s = passes(function(t)
        t.dns = { provider = "rfc2136", zone = "Lab.Test.", server = "10.0.0.2", port = "env:DNS_PORT",
          key_name = "tlr-key", key_secret = "env:DNS_KEY_SECRET" }
      end, {})
      assert.are.same({ provider = "rfc2136", zone = "lab.test", ttl = 300, node_records = true,
        api_name = "api", api_fqdn = "api.lab.test", server = "10.0.0.2", port = 5353, key_name = "tlr-key",
        key_secret = SECRETS.DNS_KEY_SECRET, key_algorithm = "hmac-sha256" }, s.dns)
      assert.are.equal("cp1.lab.test", s.nodes[1].fqdn)
      passes(function(t) t.dns = { provider = "rfc2136", zone = "lab.test", server = "10.0.0.2" } end,
        { "dns: no TSIG key (key_name, key_secret): updates go unsigned" })
      s = passes(function(t)
        t.dns = { provider = "cloudflare", zone = "lab.test", token = "env:CF_TOKEN", api_name = false,
          node_records = false }
      end, {})
      assert.are.equal("https://api.cloudflare.com/client/v4", s.dns.api)
      assert.is_nil(s.dns.api_fqdn)
      assert.is_nil(s.nodes[1].fqdn)
    end)

    it("apps: MetalLB's range in the subnet and free, ingress IP from it", function()
      fails(function(t)
        t.apps = { metallb = { range = { "10.0.0.5-10.0.0.20", "10.0.1.0/28", "10.0.0.9-10.0.0.5",
          "10.0.0.18-10.0.0.30" } } }
      end, {
        "apps.metallb.range[1]: 10.0.0.5-10.0.0.20 holds 10.0.0.11, the address of nodes[1] (cp1)",
        "apps.metallb.range[1]: 10.0.0.5-10.0.0.20 holds 10.0.0.12, the address of nodes[2] (cp2)",
        "apps.metallb.range[1]: 10.0.0.5-10.0.0.20 holds 10.0.0.13, the address of nodes[3] (cp3)",
        "apps.metallb.range[1]: 10.0.0.5-10.0.0.20 holds the VIP 10.0.0.10",
        "apps.metallb.range[2]: 10.0.1.0/28 is outside the nodes' subnet 10.0.0.0/24 (MetalLB's layer 2 mode answers only there)",
        "apps.metallb.range[3]: '10.0.0.9-10.0.0.5' is not first-last or address/prefix (first address is after the last)",
        "apps.metallb.range[4]: 10.0.0.18-10.0.0.30 holds 10.0.0.21, the address of nodes[4] (w1)",
        "apps.metallb.range[4]: 10.0.0.18-10.0.0.30 overlaps apps.metallb.range[1]",
      })
      fails(function(t) t.apps = { ingress = { ip = "10.0.0.100" } } end, {
        "apps.ingress.ip: needs apps.metallb (the address comes from its pool)" })
      fails(function(t) t.apps = { metallb = { range = "10.0.0.96/28" }, ingress = { ip = "10.0.0.200" } } end, {
        "apps.ingress.ip: 10.0.0.200 is outside apps.metallb.range" })
      local s = passes(function(t)
        t.apps = { metallb = { range = "10.0.0.100 - 10.0.0.119" }, ingress = { ip = "10.0.0.100" } }
      end, {})
      assert.are.same({ addresses = { "10.0.0.100-10.0.0.119" } }, s.apps.metallb)
      assert.are.same({ controller = "traefik", class = "traefik", ip = "10.0.0.100" }, s.apps.ingress)
    end)

    it("apps: cert-manager, external-dns, Argo CD", function()
      fails(function(t)
        t.apps = { cert_manager = { email = "nobody" }, external_dns = {}, argocd = { repo = "git.lab.test/x",
          extra = true } }
      end, {
        "apps.cert_manager.email: 'nobody' is not an e-mail address",
        "apps.argocd.extra: unknown key",
        "apps.argocd.repo: 'git.lab.test/x' is not a Git URL (https://, ssh:// or user@host:path)",
        "apps.cert_manager.cloudflare_token: required without apps.ingress: give a token for DNS-01 "
          .. "(e.g. env:CLOUDFLARE_API_TOKEN), or enable apps.ingress for HTTP-01",
        "apps.external_dns: needs a dns section (provider and zone)",
      })
      fails(function(t)
        t.dns = { provider = "cloudflare", zone = "lab.test", token = "env:CF_TOKEN" }
        t.apps = { external_dns = { zone = "other.test" },
          argocd = { repo = "https://git.lab.test/x.git", password = "env:GIT_TOKEN", ssh_key = "env:GIT_TOKEN" } }
      end, {
        "apps.external_dns.zone: 'other.test' is not inside dns.zone lab.test",
        "apps.argocd.username: required with password",
        "apps.argocd.ssh_key: the repo is not an SSH URL (use password for https)",
      })
      fails(function(t) t.apps = { argocd = { repo = "git@git.lab.test:x.git", password = "env:GIT_TOKEN",
        username = "git" } } end, { "apps.argocd.password: the repo is an SSH URL (use ssh_key)" })
      local s = passes(function(t)
        t.dns = { provider = "cloudflare", zone = "lab.test", token = "env:CF_TOKEN" }
        t.apps = { cert_manager = { email = "ops@lab.test" }, external_dns = true, ingress = false,
          argocd = { repo = "https://git.lab.test/x.git" } }
      end, {})
      assert.are.same({ email = "ops@lab.test", cloudflare_token = SECRETS.CF_TOKEN, staging = false,
        solver = "dns01-cloudflare", acme_server = "https://acme-v02.api.letsencrypt.org/directory" },
        s.apps.cert_manager)
      assert.are.same({ provider = "cloudflare", zone = "lab.test", sources = { "service", "ingress" },
        policy = "upsert-only", txt_owner_id = "lab" }, s.apps.external_dns)
      assert.are.same({ repo = "https://git.lab.test/x.git", revision = "HEAD", path = "." }, s.apps.argocd)
      assert.is_false(s.apps.ingress)
      s = passes(function(t) t.apps = { ingress = true, cert_manager = { email = "ops@lab.test", staging = true } } end, {})
      assert.are.equal("http01", s.apps.cert_manager.solver)
    end)

    it("patches: maps, YAML text, JSON6902 lists, one or many", function()
      fails(function(t)
        t.talos.patches = { 5 }
        t.nodes[1].patches = "machine: [unclosed"
      end, {
        "talos.patches[1]: a patch (map or YAML text) expected, got number",
        "nodes[1].patches[1]: patch is not YAML: line 2, column 1: did not find expected ',' or ']' "
          .. "(while parsing a flow sequence at line 1, column 10)",
      })
      local ops = { { op = "add", path = "/machine/env", value = { A = "1" } } }
      local s = passes(function(t)
        t.talos.patches = { machine = { time = { disabled = true } } }
        t.talos.worker_patches = ops
        t.nodes[1].patches = { "machine: {}", { cluster = {} } }
        t.nodes[2].patches = {}
        t.nodes[3].patches = "---\nmachine: {}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\n"
      end)
      assert.are.same({}, s.nodes[2].patches)
      assert.are.equal(1, #s.nodes[3].patches)
      assert.are.same({ { machine = { time = { disabled = true } } } }, s.talos.patches)
      assert.are.same({ ops }, s.talos.worker_patches)
      assert.are.same({ "machine: {}", { cluster = {} } }, s.nodes[1].patches)
    end)

    it("node labels are Kubernetes labels", function()
      fails(function(t) t.nodes[1].labels = { ["bad key!"] = "x", ok = "no spaces allowed" } end, {
        "nodes[1].labels.bad key!: 'bad key!' is not a valid label key",
        "nodes[1].labels.ok: 'no spaces allowed' is not a valid label value",
      })
      local s = passes(function(t) t.nodes[1].labels = { ["example.org/tier"] = "gold", empty = "" } end)
      assert.are.same({ ["example.org/tier"] = "gold", empty = "" }, s.nodes[1].labels)
    end)

    it("the state directory: default .tlr/<name>, ~ from HOME, relative to the current directory", function()
      assert.are.equal(fs.abs(".tlr/lab"), passes().state_dir)
      assert.are.equal(fs.abs("state/x"), passes(function(t) t.state_dir = "state/x" end).state_dir)
      local t = base()
      t.state_dir = "~/tlr/lab"
      local s = site.validate(t, { env = function(k) return k == "HOME" and "/home/op" or env(k) end })
      assert.are.equal("/home/op/tlr/lab", s.state_dir)
      local _, msg = site.validate(t, { env = function(k) return k ~= "HOME" and env(k) or nil end })
      assert.are.equal("site: state_dir: '~/tlr/lab' starts with ~/ but HOME is not set", msg)
    end)

    it("collects every error, not just the first", function()
      local s, msg, code, errs = site.load(FIX .. "bad-many.yaml", { env = env })
      assert.is_nil(s)
      assert.are.equal("EINVAL", code)
      local want = {
        "network.gatway: unknown key (did you mean 'gateway'?)",
        "proxmox.token: credentials missing: give token (e.g. env:PVE_TOKEN), or user and password",
        "nodes[2].ip: 10.1.0.11 is also the address of nodes[1] (cp1)",
        "network.vip: 10.1.0.11 is the address of nodes[1] (cp1)",
        "talos.extensions: nodes[3] (cp3) uses DHCP: add siderolabs/qemu-guest-agent, tlr reads their "
          .. "addresses from the guest agent",
      }
      for i, w in ipairs(want) do want[i] = FIX .. "bad-many.yaml: " .. w end
      assert.are.same(want, errs)
      assert.are.equal(table.concat(want, "\n"), msg)
      local _, _, _, lua_errs = site.load(FIX .. "bad-many.lua", { env = env })
      for i, w in ipairs(want) do want[i] = w:gsub("bad%-many%.yaml", "bad-many.lua") end
      assert.are.same(want, lua_errs)
    end)
  end)

  describe("files", function()
    it("gives the same normalized site from Lua and from YAML", function()
      local a, wa = site.load(FIX .. "full.lua", { env = env })
      local b, wb = site.load(FIX .. "full.yaml", { env = env })
      assert(a, wa)
      assert(b, wb)
      assert.are.same({}, wa)
      assert.are.same({}, wb)
      assert.are.equal(FIX .. "full.lua", a.file)
      a.file, b.file = nil, nil
      assert.are.same(a, b)
      -- and what they say is what was meant
      assert.are.equal("full.test", a.dns.zone)
      assert.are.equal(5353, a.dns.port)
      assert.are.equal("https://10.0.0.2:8006", a.proxmox.hosts.pve3.connect.endpoint)
      assert.are.same({ 900, 901, 902, 903, 950 }, { a.nodes[1].vmid, a.nodes[2].vmid, a.nodes[3].vmid,
        a.nodes[4].vmid, a.nodes[5].vmid })
      assert.are.same({ 4, 8192, 80, "local-lvm" }, { a.nodes[4].cores, a.nodes[4].memory, a.nodes[4].disk,
        a.nodes[4].storage })
      assert.are.same({ 2, 6144, 80, "ceph", "BC:24:11:00:00:02" }, { a.nodes[5].cores, a.nodes[5].memory,
        a.nodes[5].disk, a.nodes[5].storage, a.nodes[5].mac })
      assert.are.equal("ceph", a.nodes[3].storage)
      assert.are.equal("vmbr1", a.nodes[3].bridge)
      assert.are.same({ "siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools" }, a.talos.extensions)
      assert.are.equal("v1.11.6", a.talos.version)
      assert.are.equal("1.34.1", a.kubernetes.version)
      assert.are.same({ "10.0.0.2" }, a.network.nameservers)
      assert.are.same({ "10.0.0.100-10.0.0.119", "10.0.0.128/28" }, a.apps.metallb.addresses)
      assert.are.equal("nginx", a.apps.ingress.class)
      assert.are.equal("/var/lib/tlr/full", a.state_dir)
    end)

    it("accepts the smallest site", function()
      local s, warnings = site.load(FIX .. "minimal.yaml", { env = env })
      assert(s, warnings)
      assert.are.same({
        FIX .. "minimal.yaml: network.gateway: not set: nodes with static addresses get no default route",
        FIX .. "minimal.yaml: nodes: one control plane: no high availability (3 tolerate the loss of one)",
      }, warnings)
      assert.are.equal("https://192.168.1.50:6443", s.endpoint)
      assert.are.equal("pve", s.nodes[1].host)
      assert.are.equal("1.36.3", s.kubernetes.version)
    end)

    it("runs Lua site files in a sandbox: no os, io, require", function()
      local marker = "/tmp/tlr-site-escape"
      os.remove(marker)
      local cases = {
        ["bad-escape-os.lua"] = FIX .. "bad-escape-os.lua:2: attempt to index a nil value (global 'os')",
        ["bad-escape-io.lua"] = FIX .. "bad-escape-io.lua:2: attempt to index a nil value (global 'io')",
        ["bad-escape-require.lua"] = FIX .. "bad-escape-require.lua:2: attempt to call a nil value (global 'require')",
        ["bad-return.lua"] = FIX .. "bad-return.lua: the site file must return a table, got string",
        ["bad-syntax.lua"] = FIX .. "bad-syntax.lua:5: '}' expected (to close '{' at line 1) near <eof>",
        ["bad-loop.lua"] = FIX .. "bad-loop.lua: the site file ran too long",
      }
      for file, want in pairs(cases) do
        local s, msg, code, errs = site.load(FIX .. file, { env = env })
        assert.is_nil(s)
        assert.are.equal(want, msg)
        assert.are.equal("EINVAL", code)
        assert.are.same({ want }, errs)
      end
      assert.is_false(fs.exists(marker))
    end)

    it("offers only pure functions to Lua site files", function()
      local dir = assert(fs.tmpdir("tlr-site-spec"))
      finally(function() fs.remove(dir, { recursive = true }) end)
      local probe = dir .. "/probe.lua"
      write(probe, [[
        local names = {}
        for _, k in ipairs { "os", "io", "require", "load", "loadfile", "dofile", "debug", "package",
          "getmetatable", "setmetatable", "collectgarbage", "print", "tlr" } do
          if _G[k] ~= nil then names[#names + 1] = k end
        end
        if string.dump then names[#names + 1] = "string.dump" end
        if math.random then names[#names + 1] = "math.random" end
        error("exposed: " .. table.concat(names, ","))
      ]])
      local _, msg = site.load(probe, { env = env })
      assert.are.equal(probe .. ":8: exposed: ", msg)
      write(probe, "string.upper = nil return 1")
      site.load(probe, { env = env })
      assert.are.equal("A", string.upper("a")) -- the sandbox's libraries are copies
    end)

    it("reports YAML errors, non-maps, unknown types and missing files", function()
      local _, msg = site.load(FIX .. "bad-syntax.yaml", { env = env })
      assert.are.equal(FIX .. "bad-syntax.yaml: line 4, column 1: did not find expected ',' or '}' "
        .. "(while parsing a flow mapping at line 3, column 5)", msg)
      _, msg = site.load(FIX .. "bad-list.yaml", { env = env })
      assert.are.equal(FIX .. "bad-list.yaml: the site file must be a map, got a list", msg)
      local code
      _, msg, code = site.load(FIX .. "ca.pem", { env = env })
      assert.are.same({ FIX .. "ca.pem: unknown site file type (use .lua, .yaml or .yml)", "EINVAL" }, { msg, code })
      _, msg, code = site.load(FIX .. "missing.lua", { env = env })
      assert.are.same({ FIX .. "missing.lua: No such file or directory", "ENOENT" }, { msg, code })
    end)

    it("rejects wrong arguments", function()
      assert.has_error(function() site.load(nil) end, "bad argument to 'site.load' (path expected)")
      assert.has_error(function() site.load("x.lua", { envv = env }) end,
        "bad argument to 'site.load' (unknown option 'envv')")
      assert.has_error(function() site.validate({}, { file = 1 }) end,
        "bad argument to 'site.validate' (option 'file': string expected, got number)")
      local _, msg = site.validate("nope")
      assert.are.equal("site: the site must be a table, got string", msg)
    end)
  end)

  describe("secrets", function()
    local function contains_secret(text)
      for _, v in pairs(SECRETS) do
        if text:find(v, 1, true) then return v end
      end
      return nil
    end

    it("never appear in errors", function()
      local s, msg = validate(function(t)
        t.proxmox.token = TOKEN                      -- a literal secret
        t.dns = { provider = "rfc2136", zone = "x.test", server = "10.0.0.2", key_name = "k",
          key_secret = "env:PVE_PASSWORD" }        -- resolves to something that is not base64
        t.apps = { argocd = { repo = "https://x.test/r.git", password = "env:GIT_TOKEN" },
          cert_manager = { email = "a@x.test", cloudflare_token = "env:CF_TOKEN" } }
        t.nodes[1].memroy = 1
      end)
      assert.is_nil(s)
      assert.is_nil(contains_secret(msg), "secret in: " .. msg)
      assert.matches("proxmox.token: must be a reference", msg, 1, true)
      assert.matches("dns.key_secret: not base64", msg, 1, true)
    end)

    it("are registered with tlr.log and replaced in site.redacted", function()
      local s = assert(site.load(FIX .. "full.lua", { env = env }))
      for name, v in pairs(SECRETS) do
        if name ~= "PVE_PASSWORD" then assert.are.equal("<redacted>", log.mask(v)) end
      end
      local r = site.redacted(s)
      local text = require("tlr.pretty").format(r)
      assert.is_nil(contains_secret(text), "secret in redacted output")
      assert.are.equal("<redacted>", r.proxmox.hosts.pve1.connect.token)
      assert.are.equal("<redacted>", r.dns.key_secret)
      assert.are.equal("<redacted>", r.apps.cert_manager.cloudflare_token)
      assert.are.equal("<redacted>", r.apps.argocd.password)
      -- the rest is kept, the original untouched
      assert.are.equal("https://10.0.0.2:8006", r.proxmox.hosts.pve1.connect.endpoint)
      assert.are.equal(s.nodes[2].mac, r.nodes[2].mac)
      assert.are.equal(SECRETS.DNS_KEY_SECRET, s.dns.key_secret)
      assert.are.equal(r.proxmox.hosts.pve1.connect, r.proxmox.endpoints[1].connect) -- sharing kept
    end)

    it("are redacted in a copied site too (by field name)", function()
      local s = assert(site.load(FIX .. "full.lua", { env = env }))
      local copy = { dns = { key_secret = s.dns.key_secret }, note = "token " .. SECRETS.CF_TOKEN }
      log.reset_secrets()
      local r = site.redacted(copy)
      assert.are.same({ dns = { key_secret = "<redacted>" }, note = "token " .. SECRETS.CF_TOKEN }, r)
    end)
  end)

  describe("examples/", function()
    -- plausible values for every env: reference the examples use
    local EX_ENV = {
      PVE_ENDPOINT = "https://127.77.0.2:8006", PVE_TOKEN = "root@pam!tlr=0b7c5a52-5a0e-4a54-9d4b-1b1c4f0e2d11",
      PVE_PASSWORD = "example-password", PVE_FINGERPRINT = string.rep("5A:", 31) .. "5A",
      FACTORY_URL = "http://127.77.0.5:8080", DNS_ZONE = "lab.test", DNS_SERVER = "127.77.53.53",
      DNS_PORT = "24053", DNS_KEY_NAME = "tlr-key", DNS_KEY_ALGORITHM = "hmac-sha256",
      DNS_KEY_SECRET = "ZXhhbXBsZS10c2lnLXNlY3JldA==", CLOUDFLARE_TOKEN = "cf-example-token-0000000000000000",
      CLOUDFLARE_API_TOKEN = "cf-example-token-1111111111111111", GITHUB_TOKEN = "ghp_example0000",
    }
    -- files the examples reference (relative to the example, or under HOME)
    local FILES = {
      ["pve-root-ca.pem"] = "ca", ["secrets/pve-root-ca.pem"] = "ca",
      ["secrets/tsig.key"] = "ZXhhbXBsZS10c2lnLXNlY3JldA==\n",
      ["secrets/argocd-deploy-key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nexample\n-----END OPENSSH PRIVATE KEY-----\n",
      ["home/.config/tlr/pve-token"] = "root@pam!tlr=0b7c5a52-5a0e-4a54-9d4b-1b1c4f0e2d11\n",
    }

    it("all validate", function()
      local dir = assert(fs.tmpdir("tlr-site-examples"))
      finally(function() fs.remove(dir, { recursive = true }) end)
      local ca = assert(fs.read(FIX .. "ca.pem"))
      for path, data in pairs(FILES) do
        assert(fs.mkdir(fs.dirname(dir .. "/" .. path)))
        write(dir .. "/" .. path, data == "ca" and ca or data)
      end
      local names = assert(fs.list("examples"))
      local count = 0
      for _, name in ipairs(names) do
        local path = "examples/" .. name
        local text = fs.stat(path).type == "file" and assert(fs.read(path)) or ""
        -- site files, not the recipes and CI workflows that live here too
        local is_site = (name:match("%.ya?ml$") and text:match("\nnodes:"))
          or (name:match("%.lua$") and text:match("nodes = {") and not text:match("require"))
        if is_site then
          write(dir .. "/" .. name, text)
          local s, warnings = site.load(dir .. "/" .. name, { env = function(k)
            if k == "HOME" then return dir .. "/home" end
            return EX_ENV[k]
          end })
          assert(s, warnings)
          count = count + 1
          for _, w in ipairs(warnings) do
            -- the single-host homelab is meant to have one control plane
            assert.matches("one control plane", w, 1, true)
            assert.are.equal("homelab-single-host.lua", name)
          end
        end
      end
      assert.is_true(count >= 5, count .. " site files in examples/")
    end)

    it("the lab site is 3 control planes and 2 workers over pve1..pve3 with the lab's env", function()
      local s = assert(site.load("examples/lab.lua", { env = function(k) return EX_ENV[k] end }))
      assert.are.same({ "cp1", "cp2", "cp3" }, s.controlplanes)
      assert.are.same({ "w1", "w2" }, s.workers)
      assert.are.same({ "cp1", "w1" }, s.proxmox.hosts.pve1.nodes)
      assert.are.same({ "cp2", "w2" }, s.proxmox.hosts.pve2.nodes)
      assert.are.same({ "cp3" }, s.proxmox.hosts.pve3.nodes)
      assert.are.equal("https://127.77.0.10:6443", s.endpoint)
      assert.are.equal(24053, s.dns.port)
      assert.are.equal("http://127.77.0.5:8080", s.talos.factory)
      assert.are.same({ 801, 805 }, { s.nodes[1].vmid, s.nodes[5].vmid })
    end)
  end)

  describe("tlr.site.net", function()
    it("parses and prints IPv4 and IPv6 the canonical way", function()
      local cases = {
        { "10.0.0.1", "10.0.0.1" }, { "0.0.0.0", "0.0.0.0" }, { "::", "::" }, { "::1", "::1" },
        { "FD00:0:0:0:0:0:0:11", "fd00::11" }, { "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1" },
        { "2001:0db8::0001", "2001:db8::1" }, { "1:0:0:2:0:0:0:3", "1:0:0:2::3" },
        { "::ffff:10.0.0.1", "::ffff:a00:1" }, { "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8" },
        { "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0" }, { "0:1:0:1:0:1:0:1", "0:1:0:1:0:1:0:1" },
      }
      for _, c in ipairs(cases) do
        local a = net.parse(c[1])
        assert(a, c[1])
        assert.are.equal(c[2], net.format(a))
      end
      for _, bad in ipairs { "10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1.", "1::2::3", "1:2:3:4:5:6:7:8:9",
        "12345::", ":1::", "1:2:3:4:5:6:7:8::", "g::1", "::1.2.3", "", "10.0.0.-1" } do
        assert.is_nil(net.parse(bad), bad)
      end
    end)

    it("computes subnets, membership, reserved addresses and overlaps", function()
      local a, p = net.parse_cidr("10.1.2.3/20")
      local s = net.subnet(a, p)
      assert.are.equal("10.1.0.0/20", net.format_subnet(s))
      assert.are.equal("10.1.15.255", net.format(s.last))
      assert.is_true(net.contains(s, net.parse("10.1.15.1")))
      assert.is_false(net.contains(s, net.parse("10.1.16.1")))
      assert.is_true(net.reserved(s, net.parse("10.1.15.255")))
      assert.is_false(net.reserved(net.subnet(net.parse_cidr("10.0.0.0/31")), net.parse("10.0.0.0")))
      local s6 = net.subnet(net.parse_cidr("fd00:1::/48"))
      assert.is_true(net.contains(s6, net.parse("fd00:1:0:ffff::1")))
      assert.is_false(net.contains(s6, net.parse("10.0.0.1")))
      assert.is_true(net.overlaps(s, net.subnet(net.parse_cidr("10.0.0.0/8"))))
      assert.is_false(net.overlaps(s, net.subnet(net.parse_cidr("10.2.0.0/16"))))
      assert.are.same({ nil, "bad prefix length" }, { net.parse_cidr("10.0.0.0/33") })
      assert.are.same({ nil, "bad prefix length" }, { net.parse_cidr("10.0.0.0/024") })
    end)

    it("parses ranges", function()
      local r = net.parse_range("10.0.0.10-10.0.0.20")
      assert.are.equal("10.0.0.10-10.0.0.20", r.text)
      assert.is_true(net.range_contains(r, net.parse("10.0.0.20")))
      assert.is_false(net.range_contains(r, net.parse("10.0.0.21")))
      assert.are.equal("fd00::/120", net.parse_range("fd00::7/120").text)
      assert.are.same({ nil, "mixes IPv4 and IPv6" }, { net.parse_range("10.0.0.1-fd00::1") })
      assert.are.same({ nil, "not first-last or address/prefix" }, { net.parse_range("10.0.0.1") })
    end)
  end)

  describe("did you mean", function()
    it("suggests close names only", function()
      assert.are.equal("memory", schema.suggest("memroy", { "cores", "memory", "disk" }))
      assert.are.equal("controlplane", schema.suggest("control-plane", { "controlplane", "worker" }))
      assert.are.equal("vmid", schema.suggest("VMID", { "vmid", "name" }))
      assert.is_nil(schema.suggest("foo", { "name", "nodes" }))
      assert.is_nil(schema.suggest("ab", { "cd" }))
      assert.are.equal(1, schema.distance("ab", "ba"))
      assert.are.equal(3, schema.distance("kitten", "sitting"))
    end)
  end)
end)
