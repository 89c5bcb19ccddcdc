-- The lab's Talos node fake (tests/lab/talos), through tlr.grpc and the
-- Talos descriptors: a VM started in the Proxmox fake boots a node in
-- maintenance mode at its cloud-init address; a config made by
-- tlr.talos.config takes it to the authenticated API (mTLS against the
-- machine CA), where certificates, roles, Bootstrap, Kubeconfig, proxying
-- and faults behave like Talos (reference/talos.md §1).  A private lab.
local L = require "lab_helper"
local archive = require "tlr.archive"
local config = require "tlr.talos.config"
local crypto = require "tlr.crypto"
local grpc = require "tlr.grpc"
local sched = require "tlr.sched"
local secrets = require "tlr.talos.secrets"
local talos = require "tlr.talos.proto"
local yaml = require "tlr.yaml"

local OK, INVALID_ARGUMENT, ALREADY_EXISTS, PERMISSION_DENIED = 0, 3, 6, 7
local FAILED_PRECONDITION, UNIMPLEMENTED, UNAVAILABLE, UNKNOWN = 9, 12, 14, 2

describe("lab: Talos node fake", function()
  local lab, bundle, admin
  local cp1, cp2, w1, nowhere -- addresses

  setup(function()
    lab = L.start { profile = "test" }
    cp1, cp2, w1, nowhere = lab.net .. ".0.11", lab.net .. ".0.12", lab.net .. ".0.21", lab.net .. ".0.99"
    bundle = assert(secrets.generate {})
    admin = assert(secrets.admin_cert(bundle))
  end)
  teardown(function() if lab then lab:stop() end end)

  -- OpenSSL does not read Talos's "ED25519 PRIVATE KEY" label (reference/talos.md §3)
  local function relabel(pem) return (pem:gsub("ED25519 PRIVATE KEY", "PRIVATE KEY")) end

  --- A Talos API call: maintenance (insecure, no client cert) with o.insecure,
  --- otherwise mTLS with o.client (default: the admin cert) against o.ca.
  local function call(ip, name, request, o)
    o = o or {}
    local m = talos.methods[name]
    local req = { url = "https://" .. ip .. ":50000", path = m.path, schema = talos.schema,
      request_type = m.request, response_type = m.response, request = request or {},
      metadata = o.metadata, timeout = o.timeout or 10, connect_timeout = 5 }
    if o.insecure then
      req.insecure = true
    else
      req.ca = o.ca or bundle.certs.os.crt
      local c = o.client == nil and admin or o.client
      if c then req.cert, req.key = c.crt, relabel(c.key) end
    end
    if m.stream then return grpc.stream(req) end
    return grpc.call(req)
  end

  --- The gRPC status of a call: code, message (0 and the reply when it worked).
  local function status(...)
    local r, msg, code, details = call(...)
    if r then return OK, r end
    if code == "EAPI" or code == "ETIMEDOUT" and details then return details.grpc_status, details.grpc_message end
    return nil, msg, code
  end

  local function eventually(what, fn, timeout)
    local deadline = sched.now() + (timeout or 15)
    local last
    while sched.now() < deadline do
      local ok, v = pcall(fn)
      if ok and v then return v end
      last = ok and tostring(v) or v
      sched.sleep(0.03)
    end
    error("timed out waiting for " .. what .. " (last: " .. tostring(last) .. ")")
  end

  local function create_vm(vmid, name, ip, extra)
    local form = { vmid = vmid, name = name, memory = 2048, cores = 2, net0 = "virtio,bridge=vmbr0",
      scsi0 = "local-lvm:32", ide0 = "local-lvm:cloudinit",
      ipconfig0 = "ip=" .. ip .. "/16,gw=" .. lab.net .. ".0.1", start = 1 }
    for k, v in pairs(extra or {}) do form[k] = v end
    local r = assert(lab:pve("POST", "/nodes/pve1/qemu", { form = form }))
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("OK", lab:wait_task(r.data).exitstatus)
  end

  local function render(ip, role, name, version)
    local r = assert(config.render({ name = "lab", endpoint = "https://" .. lab.net .. ".0.10:6443", secrets = bundle,
      talos_version = version or "v1.11.6", install_disk = "/dev/sda" },
      { name = name, role = role, network = { interface = "ens18", addresses = { ip .. "/16" },
        gateway = lab.net .. ".0.1" } }))
    return r.yaml
  end

  local function node_state(ip) return lab:control("GET", "/talos/nodes/" .. ip) end

  local function up_secure(ip)
    return eventually(ip .. " in authenticated mode", function() return call(ip, "Version", {}) end)
  end

  describe("maintenance mode", function()
    it("boots a node at the VM's cloud-init address when the VM starts, not before", function()
      local r, _, code = call(cp1, "Disks", {}, { insecure = true, timeout = 2 })
      assert.is_nil(r)
      assert.are_not.equal("EAPI", code) -- nothing listens yet
      create_vm(101, "cp1", cp1, { ide2 = "none,media=cdrom" })
      local disks = eventually("Disks in maintenance", function() return call(cp1, "Disks", {}, { insecure = true }) end)
      local list = disks.messages[1].disks
      assert.are.equal("/dev/sda", list[1].device_name)
      assert.are.equal(32 * 1024 ^ 3, list[1].size)
      assert.are.equal("HDD", list[1].type)
      assert.is_false(list[1].system_disk)
      local cds = 0
      for _, d in ipairs(list) do if d.type == "CD" then cds = cds + 1 end end
      assert.are.equal(1, cds) -- the cloud-init drive; the empty ide2 drive is not a disk
      local st = node_state(cp1)
      assert.are.equal("maintenance", st.stage)
      assert.are.equal(101, st.vmid)
    end)

    it("serves a self-signed certificate and asks for no client certificate", function()
      local r = call(cp1, "Disks", {}, { client = false }) -- verifying against the machine CA fails
      assert.is_nil(r)
      assert.is_not_nil(call(cp1, "Disks", {}, { insecure = true }))
      local pem = node_state(cp1).maintenance_cert
      local c = assert(crypto.parse_cert(pem))
      assert.is_true(c.self_signed)
      assert.are.same({ cp1 }, c.ip_addresses)
    end)

    it("answers Version and other APIs with Unimplemented; COSI MachineStatus says maintenance", function()
      local code, msg = status(cp1, "Version", {}, { insecure = true })
      assert.are.equal(UNIMPLEMENTED, code)
      assert.are.equal("API is not implemented in maintenance mode", msg)
      code, msg = status(cp1, "Bootstrap", {}, { insecure = true })
      assert.are.equal(UNIMPLEMENTED, code)
      assert.are.equal("method Bootstrap not implemented", msg)
      local got = assert(call(cp1, "Get", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev", id = "machine" },
        { insecure = true }))
      local spec = yaml.decode(got.resource.spec.yaml_spec)
      assert.are.equal("maintenance", spec.stage)
      assert.is_false(spec.status.ready)
      code = status(cp1, "Get", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev", id = "nope" },
        { insecure = true })
      assert.are.equal(5, code) -- NotFound
    end)

    it("rejects invalid configs with InvalidArgument, unparsable ones as Talos does, and NO_REBOOT/STAGED", function()
      local good = render(cp1, "controlplane", "cp1")
      local function apply(data, mode, dry) return status(cp1, "ApplyConfiguration", { data = data, mode = mode or "AUTO", dry_run = dry },
        { insecure = true }) end
      local code, msg = apply((good:gsub("type: controlplane", "type: master")))
      assert.are.equal(INVALID_ARGUMENT, code)
      assert.matches("^configuration validation failed: %d errors? occurred:\n", msg)
      assert.matches("\n\t* unknown machine type \"master\"\n", msg, 1, true)
      code, msg = apply((good:gsub("disk: /dev/sda", "disk: /dev/vdb")))
      assert.are.equal(INVALID_ARGUMENT, code)
      assert.matches("install disk \"/dev/vdb\" not found", msg, 1, true)
      local ca_key = good:match("\n        key: (%S+)") -- machine.ca.key comes first
      code, msg = apply((good:gsub("\n        key: " .. ca_key:gsub("%p", "%%%0"), "", 1)))
      assert.are.equal(INVALID_ARGUMENT, code)
      assert.matches("issuing CA key is required for controlplane nodes (.machine.ca.key)", msg, 1, true)
      code, msg = apply("machine: [unclosed\n")
      assert.are.equal(UNKNOWN, code) -- Talos: fmt.Errorf, not a status
      assert.matches("^failed to parse config: ", msg)
      code, msg = apply(good .. "bogus: 1\n")
      assert.are.equal(UNKNOWN, code)
      assert.matches("unknown keys found during decoding", msg, 1, true)
      code, msg = apply(good, "NO_REBOOT")
      assert.are.equal(UNIMPLEMENTED, code)
      assert.are.equal("apply configuration --mode='no-reboot' is not supported in maintenance mode", msg)
      code, msg = apply(good, "STAGED")
      assert.are.equal(UNIMPLEMENTED, code)
      assert.matches("--mode='staged'", msg, 1, true)
      local reply
      code, reply = apply(good, "AUTO", true)
      assert.are.equal(OK, code)
      assert.matches("^Dry run summary:", reply.messages[1].mode_details)
      sched.sleep(0.3)
      assert.are.equal("maintenance", node_state(cp1).stage) -- a dry run changes nothing
    end)
  end)

  describe("authenticated mode", function()
    it("applies a controlplane config from tlr.talos.config, installs, reboots into mTLS on the same address", function()
      lab:control("PATCH", "/profile", { talos = { etcd_ready = 4, install = 0.3 } })
      local code = status(cp1, "ApplyConfiguration", { data = render(cp1, "controlplane", "cp1"), mode = "AUTO" }, { insecure = true })
      assert.are.equal(OK, code)
      eventually("installing", function() return node_state(cp1).stage == "installing" end, 5)
      assert.is_nil(call(cp1, "Disks", {}, { insecure = true, timeout = 2 }))
      local v = up_secure(cp1).messages[1]
      assert.are.equal("v1.11.6", v.version.tag)
      assert.are.equal("nocloud", v.platform.name)
      local st = node_state(cp1)
      assert.are.equal("cp1", st.hostname)
      assert.are.equal(2, st.boots)
      assert.is_true(st.installed)
      local apid = assert(crypto.parse_cert(st.apid_cert))
      assert.is_true(crypto.verify_chain(st.apid_cert, { bundle.certs.os.crt }, { purpose = "server", host = cp1 }))
      assert.are.same({ "cp1" }, { apid.dns_names[1] })
      local disks = assert(call(cp1, "Disks", {})).messages[1].disks
      assert.is_true(disks[1].system_disk)
    end)

    it("accepts the admin certificate of tlr.talos.secrets and rejects other CAs, serverAuth EKUs and expired certs", function()
      assert.is_not_nil(call(cp1, "Version", {}))
      local key = assert(crypto.generate_key { type = "ed25519" })
      local other_ca_key = assert(crypto.generate_key { type = "ed25519" })
      local other_ca = assert(crypto.create_ca { key = other_ca_key, subject = { O = "talos" } })
      local foreign = assert(crypto.sign_cert { ca_cert = other_ca, ca_key = other_ca_key, public_key = key,
        subject = { O = "os:admin" }, ext_key_usage = { "client_auth" } })
      local r = call(cp1, "Version", {}, { client = { crt = foreign, key = key:pem() } })
      assert.is_nil(r)
      local both = assert(crypto.sign_cert { ca_cert = bundle.certs.os.crt, ca_key = bundle.certs.os.key, public_key = key,
        subject = { O = "os:admin" }, ext_key_usage = { "server_auth", "client_auth" } })
      assert.is_nil(call(cp1, "Version", {}, { client = { crt = both, key = key:pem() } }))
      local log = lab:control("GET", "/log?service=talos&method=TLS&limit=1")
      assert.matches('certificate "O=os:admin" is missing the client auth extended key usage', log[1].reason, 1, true)
      local server_only = assert(crypto.sign_cert { ca_cert = bundle.certs.os.crt, ca_key = bundle.certs.os.key,
        public_key = key, subject = { O = "os:admin" }, ext_key_usage = { "server_auth" } })
      assert.is_nil(call(cp1, "Version", {}, { client = { crt = server_only, key = key:pem() } }))
      local expired = assert(secrets.admin_cert(bundle, { now = os.time() - 3 * 86400, days = 1 }))
      assert.is_nil(call(cp1, "Version", {}, { client = expired }))
      assert.is_nil(call(cp1, "Version", {}, { client = false })) -- no client certificate at all
      assert.is_not_nil(call(cp1, "Version", {}, { client = assert(secrets.admin_cert(bundle)) }))
    end)

    it("takes the role from the certificate's Organization", function()
      local reader = assert(secrets.admin_cert(bundle, { roles = { "os:reader" } }))
      assert.is_not_nil(call(cp1, "Version", {}, { client = reader }))
      local code, msg = status(cp1, "Bootstrap", {}, { client = reader })
      assert.are.equal(PERMISSION_DENIED, code)
      assert.are.equal("not authorized", msg)
      local operator = assert(secrets.admin_cert(bundle, { roles = { "os:operator" } }))
      assert.are.equal(PERMISSION_DENIED, (status(cp1, "Kubeconfig", {}, { client = operator })))
      local nobody = assert(secrets.admin_cert(bundle, { roles = { "os:nobody" } }))
      assert.are.equal(PERMISSION_DENIED, (status(cp1, "Version", {}, { client = nobody })))
    end)

    it("answers Bootstrap with FailedPrecondition until etcd can start, then OK, then AlreadyExists", function()
      local code, msg = status(cp1, "Bootstrap", {})
      assert.are.equal(FAILED_PRECONDITION, code)
      assert.are.equal("bootstrap is not available yet", msg)
      eventually("Bootstrap OK", function()
        local c, m = status(cp1, "Bootstrap", {})
        assert(c == OK or c == FAILED_PRECONDITION, tostring(m))
        return c == OK
      end)
      code, msg = status(cp1, "Bootstrap", {})
      assert.are.equal(ALREADY_EXISTS, code)
      assert.are.equal("etcd data directory is not empty", msg)
      local log = lab:control("GET", "/log?service=talos&path=/machine.MachineService/Bootstrap&limit=2")
      assert.are.same({ OK, ALREADY_EXISTS }, { log[1].status, log[2].status })
    end)

    it("reports etcd and kubelet coming up in ServiceList, EtcdMemberList and MachineStatus", function()
      local function service(list, id)
        for _, s in ipairs(list) do if s.id == id then return s end end
      end
      eventually("etcd healthy", function()
        local s = service(assert(call(cp1, "ServiceList", {})).messages[1].services, "etcd")
        return s.state == "Running" and s.health.healthy
      end)
      eventually("kubelet healthy", function()
        return service(assert(call(cp1, "ServiceList", {})).messages[1].services, "kubelet").health.healthy
      end)
      local list = assert(call(cp1, "ServiceList", {})).messages[1].services
      for _, id in ipairs { "apid", "containerd", "cri", "machined", "trustd", "udevd" } do
        assert.are.equal("Running", service(list, id).state, id)
      end
      local members = assert(call(cp1, "EtcdMemberList", {})).messages[1].members
      assert.are.equal(1, #members)
      assert.are.equal("cp1", members[1].hostname)
      assert.are.same({ "https://" .. cp1 .. ":2380" }, members[1].peer_urls)
      assert.is_false(members[1].is_learner or false)
      eventually("MachineStatus running and ready", function()
        local r = assert(call(cp1, "Get", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev", id = "machine" }))
        local spec = yaml.decode(r.resource.spec.yaml_spec)
        return spec.stage == "running" and spec.status.ready
      end)
    end)

    it("streams Kubeconfig as a tar.gz without end blocks, for the cluster endpoint, signed by the cluster CA", function()
      local chunks = assert(call(cp1, "Kubeconfig", {}))
      assert.is_true(#chunks >= 2) -- 1 KiB chunks
      local parts = {}
      for i, c in ipairs(chunks) do parts[i] = c.bytes end
      local tar = assert(archive.gunzip(table.concat(parts)))
      assert.are.equal("kubeconfig\0", tar:sub(1, 11))
      local size = tonumber(tar:sub(125, 135), 8)
      assert.are.equal("0000600", tar:sub(101, 107))
      assert.are.equal(512 + size, #tar) -- no padding, no two zero blocks
      local entry = archive.find(assert(archive.untar(tar)), "kubeconfig")
      local kc = yaml.decode(entry.data)
      assert.are.equal("https://" .. lab.net .. ".0.10:6443", kc.clusters[1].cluster.server)
      assert.are.equal(bundle.certs.k8s.crt, crypto.base64_decode(kc.clusters[1].cluster["certificate-authority-data"]))
      local crt = crypto.base64_decode(kc.users[1].user["client-certificate-data"])
      assert.is_true(crypto.verify_chain(crt, { bundle.certs.k8s.crt }, { purpose = "client" }))
      assert.are_not.equal(true, crypto.verify_chain(crt, { bundle.certs.os.crt }, { purpose = "client" }))
      local c = assert(crypto.parse_cert(crt))
      assert.are.equal("system:masters", c.subject.O)
      local key = assert(crypto.load_key(crypto.base64_decode(kc.users[1].user["client-key-data"])))
      assert.are.equal(c.public_key, key:public_pem())
      assert.are.equal(kc.contexts[1].name, kc["current-context"])
    end)
  end)

  describe("a cluster of three", function()
    it("joins a second control plane to etcd as a learner, then as a member; a worker comes up too", function()
      lab:control("PATCH", "/profile", { talos = { etcd_promote = 1, etcd_ready = 0.1 } })
      create_vm(102, "cp2", cp2)
      create_vm(121, "w1", w1)
      for ip, y in pairs { [cp2] = render(cp2, "controlplane", "cp2"), [w1] = render(w1, "worker", "w1") } do
        eventually("maintenance on " .. ip, function() return call(ip, "Disks", {}, { insecure = true }) end)
        assert.are.equal(OK, (status(ip, "ApplyConfiguration", { data = y, mode = "AUTO" }, { insecure = true })))
      end
      up_secure(cp2)
      up_secure(w1)
      local function cp2_member()
        local ok, r = pcall(call, cp1, "EtcdMemberList", {})
        if not ok or not r then return nil end
        for _, m in ipairs(r.messages[1].members) do if m.hostname == "cp2" then return m end end
      end
      eventually("cp2 a learner", function() local m = cp2_member(); return m and m.is_learner end)
      eventually("cp2 a voting member", function() local m = cp2_member(); return m and not m.is_learner end)
      local code, msg = status(w1, "Bootstrap", {})
      assert.are.equal(FAILED_PRECONDITION, code)
      assert.are.equal("bootstrap can only be performed on a control plane node", msg)
      assert.are.equal(ALREADY_EXISTS, (status(cp2, "Bootstrap", {})))
    end)

    it("fans a call with `nodes` out: hostname per message, metadata.error for a failed target, status OK", function()
      local r = assert(call(cp1, "ServiceList", {}, { metadata = { nodes = table.concat({ cp1, cp2, w1, nowhere }, ",") } }))
      assert.are.equal(4, #r.messages)
      local by = {}
      for _, m in ipairs(r.messages) do by[m.metadata.hostname] = m end
      assert.are.equal("", by[cp1].metadata.error) -- proto3: no error
      assert.is_true(#by[w1].services > 0)
      local has_etcd = false
      for _, s in ipairs(by[w1].services) do if s.id == "etcd" then has_etcd = true end end
      assert.is_false(has_etcd) -- the worker's own list
      assert.matches("^rpc error: code = Unavailable desc = .*connection refused", by[nowhere].metadata.error)
      assert.are.equal(UNAVAILABLE, by[nowhere].metadata.status.code)
      local versions = assert(call(cp2, "Version", {}, { metadata = { nodes = cp1 .. "," .. w1 } }))
      assert.are.equal(cp1, versions.messages[1].metadata.hostname)
      assert.are.equal(w1, versions.messages[2].metadata.hostname)
    end)

    it("forwards a call with `node` one-to-one: reply unchanged, errors as the call's status", function()
      local r = assert(call(cp1, "ServiceList", {}, { metadata = { node = w1 } }))
      assert.are.equal(1, #r.messages)
      assert.is_nil(r.messages[1].metadata)
      for _, s in ipairs(r.messages[1].services) do assert.are_not.equal("etcd", s.id) end
      local code, msg = status(cp1, "Bootstrap", {}, { metadata = { node = w1 } })
      assert.are.equal(FAILED_PRECONDITION, code)
      assert.matches("control plane", msg, 1, true)
      assert.are.equal(UNAVAILABLE, (status(cp1, "Version", {}, { metadata = { node = nowhere } })))
      local got = assert(call(cp1, "Get", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev", id = "machine" },
        { metadata = { node = w1 } }))
      assert.matches("stage: ", got.resource.spec.yaml_spec, 1, true)
      assert.are.equal(INVALID_ARGUMENT, (status(cp1, "Get", { namespace = "runtime",
        type = "MachineStatuses.runtime.talos.dev", id = "machine" }, { metadata = { nodes = cp1 .. "," .. w1 } })))
    end)

    it("injects faults from the lab's control endpoint: status, count, latency, per node", function()
      finally(function() lab:control("DELETE", "/faults") end)
      lab:control("POST", "/faults", { service = "talos", path = "/machine.MachineService/Version", status = UNAVAILABLE,
        message = "injected", count = 1 })
      local code, msg = status(cp1, "Version", {})
      assert.are.equal(UNAVAILABLE, code)
      assert.are.equal("injected", msg)
      assert.are.equal(OK, (status(cp1, "Version", {})))
      lab:control("POST", "/faults", { service = "talos", path = "/machine.MachineService/*", node = w1,
        status = "FAILED_PRECONDITION", message = "node busy" })
      local r = assert(call(cp1, "ServiceList", {}, { metadata = { nodes = cp1 .. "," .. w1 } }))
      assert.are.equal("", r.messages[1].metadata.error)
      assert.are.equal("rpc error: code = FailedPrecondition desc = node busy", r.messages[2].metadata.error)
      assert.are.equal(OK, (status(cp1, "ServiceList", {}))) -- a per-node rule only hits that node
      lab:control("DELETE", "/faults")
      lab:control("POST", "/faults", { service = "talos", path = "/machine.MachineService/Version", latency = 0.4, count = 1 })
      local t0 = sched.now()
      assert.are.equal(OK, (status(cp1, "Version", {})))
      assert.is_true(sched.now() - t0 >= 0.4)
      local log = lab:control("GET", "/log?service=talos&path=/machine.MachineService/Version&limit=1")
      assert.is_not_nil(log[1].fault)
      assert.are.equal(cp1, log[1].node)
      lab:control("POST", "/faults", { service = "talos", path = "/machine.MachineService/Version", drop = true, count = 1 })
      local t1 = sched.now()
      local r2, _, code2 = call(cp1, "Version", {}, { timeout = 5 })
      assert.is_nil(r2)
      assert.are_not.equal("EAPI", code2) -- the connection went away, no gRPC status
      assert.are_not.equal("ETIMEDOUT", code2)
      assert.is_true(sched.now() - t1 < 2)
      assert.are.equal(OK, (status(cp1, "Version", {})))
    end)

    it("upgrades a node: ack, then it reboots into the new version", function()
      local r = assert(call(cp2, "Upgrade", { image = "factory.talos.dev/installer/" .. string.rep("a", 64) .. ":v1.11.7" }))
      assert.are.equal("Upgrade request received", r.messages[1].ack)
      eventually("v1.11.7", function()
        local ok, v = pcall(call, cp2, "Version", {})
        return ok and v and v.messages[1].version.tag == "v1.11.7"
      end)
      local code = status(cp2, "Upgrade", { image = "not an image" })
      assert.are.equal(UNKNOWN, code)
    end)

    it("resets a node back to maintenance mode, wiping its config", function()
      local r = assert(call(w1, "Reset", { graceful = true, reboot = true,
        system_partitions_to_wipe = { { label = "STATE", wipe = true }, { label = "EPHEMERAL", wipe = true } } }))
      assert.matches("^%x+%-", r.messages[1].actor_id)
      eventually("maintenance again", function() return call(w1, "Disks", {}, { insecure = true }) end)
      local st = node_state(w1)
      assert.are.equal("maintenance", st.stage)
      assert.is_false(st.configured)
      assert.is_nil(call(w1, "Version", {}, { timeout = 2 }))
      assert.are.equal(UNIMPLEMENTED, (status(w1, "Reset", {}, { insecure = true })))
    end)

    it("reboots on Reboot and comes back with its config; time sync gates Bootstrap", function()
      local boots = node_state(cp1).boots
      assert.is_not_nil(call(cp1, "Reboot", {}))
      eventually("rebooted", function() return node_state(cp1).boots == boots + 1 end)
      up_secure(cp1)
      lab:control("POST", "/talos/nodes/" .. cp2, { time_synced = false })
      finally(function() lab:control("POST", "/talos/nodes/" .. cp2, { time_synced = true }) end)
      local code, msg = status(cp2, "Bootstrap", {})
      assert.are.equal(FAILED_PRECONDITION, code)
      assert.are.equal("time is not in sync yet", msg)
    end)

    it("shows the nodes and the etcd cluster on GET /talos/state", function()
      local st = lab:control("GET", "/talos/state")
      local by = {}
      for _, n in ipairs(st.nodes) do by[n.name] = n end
      assert.are.equal("controlplane", by.cp1.type)
      assert.are.equal("secure", by.cp1.api)
      assert.are.equal("maintenance", by.w1.api)
      assert.are.equal(1, #st.clusters)
      assert.is_true(st.clusters[1].bootstrapped)
      assert.are.equal(2, #st.clusters[1].members)
      local ev = lab:control("GET", "/events?type=talos.bootstrapped")
      assert.are.equal(1, #ev)
      assert.are.equal("cp1", ev[1].hostname)
      assert.are.equal("https://" .. lab.net .. ".0.10:6443", ev[1].endpoint)
      assert.is_true(#lab:control("GET", "/events?type=talos.kubelet.ready") >= 3)
    end)
  end)
end)
