-- tlr.talos.client, tlr.talos.health and tlr.talos.factory against the lab's
-- Talos nodes and Image Factory (a private lab: VMs boot Talos nodes).
local L = require "lab_helper"
local client = require "tlr.talos.client"
local config = require "tlr.talos.config"
local factory = require "tlr.talos.factory"
local health = require "tlr.talos.health"
local secrets = require "tlr.talos.secrets"
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local sched = require "tlr.sched"

describe("tlr.talos client", function()
  local lab, bundle, talosconfig, cp1, cp2, w1, endpoint

  local function create_vm(vmid, name, ip)
    local r = assert(lab:pve("POST", "/nodes/pve1/qemu", { form = { vmid = vmid, name = name,
      memory = 2048, cores = 2, net0 = "virtio,bridge=vmbr0", scsi0 = "local-lvm:32",
      ide0 = "local-lvm:cloudinit", ipconfig0 = "ip=" .. ip .. "/16,gw=" .. lab.net .. ".0.1", start = 1 } }))
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("OK", lab:wait_task(r.data).exitstatus)
  end

  local function render(ip, role, name)
    return assert(config.render({ name = "lab", endpoint = endpoint, secrets = bundle,
      talos_version = "v1.11.6", install_disk = "/dev/sda" },
      { name = name, role = role, network = { interface = "ens18", addresses = { ip .. "/16" },
        gateway = lab.net .. ".0.1" } })).yaml
  end

  local function eventually(what, fn, timeout)
    local deadline, last = sched.now() + (timeout or 15), nil
    while sched.now() < deadline do
      local ok, v, msg = pcall(fn)
      if ok and v then return v end
      last = ok and msg or v
      sched.sleep(0.03)
    end
    error("timed out waiting for " .. what .. " (last: " .. tostring(last) .. ")")
  end

  setup(function()
    lab = L.start { profile = "test" }
    cp1, cp2, w1 = lab.net .. ".0.31", lab.net .. ".0.32", lab.net .. ".0.41"
    endpoint = "https://" .. cp1 .. ":6443"
    bundle = assert(secrets.generate {})
    talosconfig = assert(config.talosconfig("lab", bundle, { endpoints = { cp1 }, nodes = { cp1 } }))
    create_vm(201, "cp1", cp1)
    create_vm(202, "cp2", cp2)
    create_vm(211, "w1", w1)
  end)
  teardown(function() if lab then lab:stop() end end)

  it("probes maintenance mode with Disks and refuses Version there", function()
    local c = assert(client.connect(cp1, { insecure = true }))
    local disks = eventually("maintenance", function() return c:disks() end)
    assert.are.equal("/dev/sda", disks[1].device_name)
    local v, msg, code, details = c:version()
    assert.is_nil(v)
    assert.are.equal("EAPI", code)
    assert.are.equal("UNIMPLEMENTED", details.grpc_name)
    assert.matches("maintenance mode", msg)
    local st = assert(c:machine_status())
    assert.are.equal("maintenance", st.stage)
  end)

  it("rejects an invalid config before anything changes, and a refused mode", function()
    local c = assert(client.connect(cp1, { insecure = true }))
    local bad = render(cp1, "controlplane", "cp1"):gsub("disk: /dev/sda", "disk: \"\"")
    local r, msg, code, details = c:apply_configuration(bad)
    assert.is_nil(r)
    assert.are.equal("INVALID_ARGUMENT", details.grpc_name)
    assert.matches(lab.net:gsub("%.", "%%.") .. "%.0%.31", msg)
    r, msg, code, details = c:apply_configuration(render(cp1, "controlplane", "cp1"), { mode = "staged" })
    assert.is_nil(r)
    assert.are.equal("UNIMPLEMENTED", details.grpc_name)
    assert.has_error(function() c:apply_configuration({}) end)
    assert.has_error(function() c:apply_configuration("x", { mode = "sometimes" }) end)
  end)

  it("applies configs in maintenance mode (dry run first) and reaches the secure API", function()
    local c = assert(client.connect(cp1, { insecure = true }))
    local dry = assert(c:apply_configuration(render(cp1, "controlplane", "cp1"), { dry_run = true }))
    assert.is_table(dry.warnings)
    for ip, role, name in ([[
      %s controlplane cp1
      %s controlplane cp2
      %s worker w1]]):format(cp1, cp2, w1):gmatch("(%S+) (%S+) (%S+)") do
      local m = assert(client.connect(ip, { insecure = true }))
      eventually(name .. " in maintenance", function() return m:disks() end)
      local res = assert(m:apply_configuration(render(ip, role, name)))
      -- the reply names the mode Talos chose: from maintenance, install and reboot
      assert.are.equal("REBOOT", res.mode)
    end
    local secure = assert(client.connect(cp1, { talosconfig = talosconfig }))
    local v = eventually("cp1 authenticated", function() return secure:version() end)
    assert.are.equal("v1.11.6", v.tag)
  end)

  it("bootstraps once: retries FailedPrecondition, AlreadyExists counts as done", function()
    local c = assert(client.connect(cp1, { talosconfig = talosconfig }))
    local r = assert(c:bootstrap { timeout = 20, interval = 0.05 })
    assert.is_true(r.done)
    assert.is_false(r.already)
    local again = assert(c:bootstrap { timeout = 5 })
    assert.is_true(again.already)
    local w = assert(client.connect(w1, { talosconfig = talosconfig }))
    eventually("w1 secure", function() return w:version() end)
    local none, _, code, details = w:bootstrap { timeout = 0.2, interval = 0.05 }
    assert.is_nil(none)
    assert.are.equal("FAILED_PRECONDITION", details.grpc_name)
    assert.are.equal("ETIMEDOUT", code)
  end)

  it("waits for health: etcd, members, apid, kubelet, booted", function()
    local report = assert(health.wait { talosconfig = talosconfig, controlplanes = { cp1, cp2 },
      workers = { w1 }, timeout = 30, interval = 0.05 })
    local names = {}
    for _, r in ipairs(report) do names[#names + 1] = r.check end
    assert.are.same({ "etcd healthy", "etcd members consistent", "etcd members are control planes",
      "apid ready", "kubelet healthy", "all nodes booted" }, names)
    local members = assert(assert(client.connect(cp2, { talosconfig = talosconfig })):etcd_member_list())
    assert.are.equal(2, #members)
  end)

  it("says which check and which node fails", function()
    lab:control("POST", "/faults", { service = "talos", path = "/machine.MachineService/Version",
      status = "UNAVAILABLE", message = "apid is restarting", node = w1 })
    local r, msg, code, info = health.wait { talosconfig = talosconfig, controlplanes = { cp1, cp2 },
      workers = { w1 }, timeout = 0.3, interval = 0.05, checks = { "apid ready" } }
    lab:control("DELETE", "/faults")
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal("apid ready", info.check)
    assert.are.equal(w1, info.node)
    assert.matches("apid ready: " .. w1:gsub("%.", "%%.") .. ": .*apid is restarting", msg)
  end)

  it("fetches the kubeconfig from the stream (a tar.gz without end blocks)", function()
    local c = assert(client.connect(cp1, { talosconfig = talosconfig }))
    local text = assert(c:kubeconfig())
    local kc = assert(yaml.decode(text))
    assert.are.equal(endpoint, kc.clusters[1].cluster.server)
    local cert = crypto.base64_decode(kc.users[1].user["client-certificate-data"])
    assert.is_true(crypto.verify_chain(cert, { bundle.certs.k8s.crt }, { purpose = "client" }))
  end)

  it("reaches the cluster's Kubernetes API with that kubeconfig (cluster CA, endpoint)", function()
    local k8s = require "tlr.k8s"
    local text = assert(assert(client.connect(cp1, { talosconfig = talosconfig })):kubeconfig())
    local kube = assert(k8s.connect { kubeconfig = text })
    local v = eventually("the API server", function() return kube:version() end)
    assert.is_string(v.gitVersion)
    local ns = assert(kube:get("v1", "Namespace", "kube-system"))
    assert.are.equal("kube-system", ns.metadata.name)
  end)

  it("routes through apid with nodes and flags a failing node", function()
    local c = assert(client.connect(cp1, { talosconfig = talosconfig }))
    local many = assert(c:route { nodes = { cp1, cp2 } }:version())
    assert.are.equal(2, #many)
    local _, msg, code = c:route { nodes = { cp1, lab.net .. ".0.99" } }:version()
    assert.are.equal("EAPI", code)
    assert.matches("0%.99", msg)
    local one = assert(c:route { node = cp2 }:service_list())
    assert.is_table(one)
  end)

  it("refuses a client certificate from another CA", function()
    local other = assert(secrets.generate {})
    local tc = assert(config.talosconfig("other", other, { endpoints = { cp1 } }))
    -- our CA to verify the server, their admin cert to log in
    local ctx = assert(client.read_talosconfig(tc))
    local c = assert(client.connect(cp1, { ca = bundle.certs.os.crt, cert = ctx.cert, key = ctx.key }))
    local v, _, code = c:version()
    assert.is_nil(v)
    assert.is_string(code)
  end)

  it("upgrades a node to a new installer image and reboots one", function()
    local c = assert(client.connect(cp2, { talosconfig = talosconfig }))
    local image = config.installer_image(factory.id {}, "v1.11.7")
    local ack = assert(c:upgrade(image))
    assert.is_string(ack.ack)
    local v = eventually("cp2 on v1.11.7", function()
      local got = c:version()
      return got and got.tag == "v1.11.7" and got
    end)
    assert.are.equal("v1.11.7", v.tag)
    assert(c:reboot())
    eventually("cp2 back after the reboot", function()
      local st = c:machine_status()
      return st and st.stage == "running" and st
    end)
  end)

  it("resets a worker back to maintenance mode", function()
    local c = assert(client.connect(w1, { talosconfig = talosconfig }))
    assert(c:reset { graceful = false })
    local m = assert(client.connect(w1, { insecure = true }))
    local st = eventually("w1 in maintenance again", function()
      local s = m:machine_status()
      return s and s.stage == "maintenance" and s
    end)
    assert.are.equal("maintenance", st.stage)
  end)

  describe("image factory", function()
    it("registers schematics under the ids computed offline, tricky values included", function()
      for _, s in ipairs {
        {},
        { extensions = { "siderolabs/qemu-guest-agent" } },
        { extensions = { "siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools" },
          extra_kernel_args = { "console=ttyS0", "1.2.3", "a: b", "123", "-x" },
          meta = { { key = 10, value = "yes" } } },
      } do
        local id, msg = factory.register(lab.env.FACTORY_URL, s)
        assert.is_string(id, msg)
        assert.are.equal(factory.id(s), id)
      end
    end)

    it("serves the image the URL names", function()
      local id = assert(factory.register(lab.env.FACTORY_URL, { extensions = { "siderolabs/qemu-guest-agent" } }))
      local res = assert(require("tlr.http").get(factory.image_url(lab.env.FACTORY_URL, id, "v1.11.6")))
      assert.are.equal(200, res.status)
      assert.is_true(#res.body > 0)
    end)
  end)
end)
