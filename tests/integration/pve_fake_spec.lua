-- Fidelity of the lab's Proxmox VE fake (tests/lab/pve), checked with raw
-- tlr.http requests against a private lab started for this spec.
local H = require "helper"
local L = require "lab_helper"
local http = require "tlr.http"
local json = require "tlr.json"
local sched = require "tlr.sched"

describe("lab: Proxmox VE fake", function()
  local lab

  setup(function() lab = L.start { profile = "test" } end)
  teardown(function() if lab then lab:stop() end end)
  before_each(function() lab:reset() end)

  local function api(method, path, opts) return assert(lab:pve(method, path, opts)) end

  local function ok(r)
    assert.are.equal(200, r.status, r.body)
    return r.data
  end

  local function create(vmid, form)
    form = form or {}
    form.vmid = vmid
    return ok(api("POST", "/nodes/pve1/qemu", { form = form }))
  end

  local function task_ok(upid)
    local st = lab:wait_task(upid)
    assert.are.equal("OK", st.exitstatus, upid)
    return st
  end

  local function config(vmid) return ok(api("GET", "/nodes/pve1/qemu/" .. vmid .. "/config")) end

  describe("transport and authentication", function()
    it("serves HTTPS with the certificate the env file pins, signed by its CA", function()
      assert.matches("^https://127%.%d+%.0%.2:%d+$", lab.env.PVE_ENDPOINT)
      assert.matches("^%x%x" .. string.rep(":%x%x", 31) .. "$", lab.env.PVE_FINGERPRINT)
      assert.are.equal(lab.env.PVE_FINGERPRINT, lab.env.PVE_FINGERPRINT:upper())
      local wrong = lab.env.PVE_FINGERPRINT:sub(1, -3) .. (lab.env.PVE_FINGERPRINT:sub(-2) == "00" and "01" or "00")
      local r, _, code = http.get(lab.env.PVE_ENDPOINT .. "/api2/json/version", { fingerprint = wrong })
      assert.is_nil(r)
      assert.are.equal("EPIN", code)
      local v = assert(http.get(lab.env.PVE_ENDPOINT .. "/api2/json/version", { ca_file = lab.env.PVE_CA_FILE,
        headers = { Authorization = "PVEAPIToken=" .. lab.env.PVE_TOKEN } }))
      assert.are.equal(200, v.status)
      assert.are.equal("pve-api-daemon/3.0", v.headers.server)
      local nodes = ok(api("GET", "/nodes"))
      assert.are.equal(3, #nodes)
      assert.are.equal("pve1", nodes[1].node)
      assert.are.equal(lab.env.PVE_FINGERPRINT, nodes[1].ssl_fingerprint)
      assert.are.equal("pve1 pve2 pve3", lab.env.PVE_NODES)
    end)

    it("accepts the API token and answers /version", function()
      local v = ok(api("GET", "/version"))
      assert.are.equal("9.0", v.release)
      assert.matches("^9%.0%.%d+$", v.version)
      assert.are.equal("application/json;charset=UTF-8", api("GET", "/version").headers["content-type"])
    end)

    it("answers 401 without credentials or with a wrong token secret", function()
      local r = api("GET", "/nodes", { token = false })
      assert.are.equal(401, r.status)
      assert.are.equal("No ticket", r.reason)
      local bad = lab.env.PVE_TOKEN:gsub("=.*", "=00000000-0000-0000-0000-000000000000")
      local r2 = api("GET", "/nodes", { token = bad })
      assert.are.equal(401, r2.status)
      assert.are.equal("invalid token value!", r2.reason)
    end)

    it("logs in with a ticket; writes need the CSRF token, reads do not", function()
      local t = ok(api("POST", "/access/ticket", { token = false,
        form = { username = lab.env.PVE_USER, password = lab.env.PVE_PASSWORD } }))
      assert.matches("^PVE:root@pam:%x+::", t.ticket)
      assert.matches("^%x+:", t.CSRFPreventionToken)
      assert.are.equal("root@pam", t.username)
      local r = api("GET", "/nodes", { token = false, cookie = t.ticket })
      assert.are.equal(200, r.status)
      local no_csrf = api("POST", "/pools", { token = false, cookie = t.ticket, form = { poolid = "ticketpool" } })
      assert.are.equal(401, no_csrf.status)
      assert.are.equal("Permission denied - invalid csrf token", no_csrf.reason)
      local with = api("POST", "/pools", { token = false, cookie = t.ticket, csrf = t.CSRFPreventionToken,
        form = { poolid = "ticketpool" } })
      assert.are.equal(200, with.status)
      -- a valid ticket renews itself as the password
      local t2 = ok(api("POST", "/access/ticket", { token = false, form = { username = "root@pam", password = t.ticket } }))
      assert.matches("^PVE:root@pam:", t2.ticket)
      local wrong = api("POST", "/access/ticket", { token = false, form = { username = "root@pam", password = "nope" } })
      assert.are.equal(401, wrong.status)
      assert.are.equal("authentication failure", wrong.reason)
    end)

    it("expires tickets after the profile's lifetime", function()
      local t = ok(api("POST", "/access/ticket", { token = false,
        form = { username = lab.env.PVE_USER, password = lab.env.PVE_PASSWORD } }))
      assert.are.equal(200, api("GET", "/version", { token = false, cookie = t.ticket }).status)
      lab:profile { ticket_lifetime = 0.01 }
      sched.sleep(0.05)
      local r = api("GET", "/version", { token = false, cookie = t.ticket })
      assert.are.equal(401, r.status)
      assert.are.equal("permission denied - invalid PVE ticket", r.reason)
    end)

    it("refuses the ticket endpoint to API tokens with 403", function()
      local r = api("POST", "/access/ticket", { form = { username = "root@pam", password = "x" } })
      assert.are.equal(403, r.status)
      assert.are.equal("URI '/access/ticket' not available with API token, need proper ticket.", r.reason)
    end)

    it("delays a 401 by the configured time (3 s in the realistic profile)", function()
      local prof = lab:control("GET", "/profile")
      assert.are.equal(0, prof.profile.pve.auth_fail_delay)
      lab:profile { auth_fail_delay = 0.4 }
      local t0 = sched.now()
      assert.are.equal(401, api("GET", "/version", { token = false }).status)
      assert.is_true(sched.now() - t0 >= 0.38, "no delay before the 401")
      lab:profile { auth_fail_delay = 0 }
      t0 = sched.now()
      assert.are.equal(401, api("GET", "/version", { token = false }).status)
      assert.is_true(sched.now() - t0 < 0.35)
      local realistic = lab:control("PUT", "/profile", { name = "realistic" })
      assert.are.equal(3, realistic.profile.pve.auth_fail_delay)
    end)

    it("answers 403 to a token without rights and filters what it may list", function()
      local none = lab.env.PVE_TOKEN_NOPERM
      local r = api("POST", "/nodes/pve1/qemu", { token = none, form = { vmid = 190 } })
      assert.are.equal(403, r.status)
      assert.are.equal("Permission check failed (/vms/190, VM.Allocate)", r.reason)
      local r2 = api("GET", "/nodes/pve1/qemu/190/config", { token = none })
      assert.are.equal(403, r2.status)
      assert.are.equal("Permission check failed (/vms/190, VM.Audit)", r2.reason)
      assert.are.equal(0, #ok(api("GET", "/nodes", { token = none })))
      -- the auditor token reads but cannot write
      local audit = lab.env.PVE_TOKEN_AUDIT
      assert.are.equal(3, #ok(api("GET", "/nodes", { token = audit })))
      assert.are.equal(403, api("POST", "/pools", { token = audit, form = { poolid = "x" } }).status)
    end)
  end)

  describe("schema validation", function()
    local function errors(r)
      assert.are.equal(400, r.status, r.body)
      assert.are.equal("Parameter verification failed.", r.reason)
      assert.are.equal(json.null, r.json.data)
      return r.json.errors
    end

    it("rejects unknown parameters and out-of-range indexes", function()
      local e = errors(api("POST", "/nodes/pve1/qemu", { form = { vmid = 191, bogus = 1, scsi31 = "local-lvm:1" } }))
      assert.are.equal("property is not defined in schema and the schema does not allow additional properties", e.bogus)
      assert.are.equal("property is not defined in schema and the schema does not allow additional properties", e.scsi31)
    end)

    it("reports missing required parameters", function()
      local e = errors(api("POST", "/nodes/pve1/qemu/191/clone", { form = { name = "x" } }))
      assert.are.equal("property is missing and it is not optional", e.newid)
      assert.is_nil(e.name)
    end)

    it("checks enums, patterns, ranges, formats and 0/1 booleans", function()
      local e = errors(api("POST", "/nodes/pve1/qemu", { form = {
        vmid = 50, bios = "uefi", cores = 0, onboot = "true", net0 = "virtio,bridg=vmbr0", tags = "ok;bad!",
        ipconfig0 = "gateway=10.0.0.1" } }))
      assert.are.equal("value 'uefi' does not have a value in the enumeration 'seabios, ovmf'", e.bios)
      assert.are.equal("value must have a minimum value of 1", e.cores)
      assert.are.equal("type check ('boolean') failed - got 'true'", e.onboot)
      assert.are.equal("invalid format - invalid key in comma-separated list property: bridg\n", e.net0)
      assert.are.equal("invalid format - value does not look like a valid VM ID\n", e.vmid)
      assert.matches("invalid characters in tag 'bad!'", e.tags, 1, true)
      assert.matches("invalid key in comma-separated list property: gateway", e.ipconfig0, 1, true)
      local e2 = errors(api("PUT", "/nodes/pve1/qemu/191/resize", { form = { disk = "scsi0", size = "20 GB" } }))
      assert.are.equal("value does not match the regex pattern", e2.size)
      local e3 = errors(api("POST", "/nodes/pve1/qemu", { form = { vmid = 191, net0 = "bridge=vmbr0" } }))
      assert.are.equal("invalid format - format error\nnet0.model: property is missing and it is not optional\n", e3.net0)
    end)

    it("takes real booleans and numbers from JSON bodies", function()
      local upid = ok(api("POST", "/nodes/pve1/qemu", { body = json.encode { vmid = 192, onboot = true, cores = 2 },
        headers = { ["Content-Type"] = "application/json" } }))
      task_ok(upid)
      local c = config(192)
      assert.are.equal(1, c.onboot)
      assert.are.equal(2, c.cores)
    end)

    it("decodes forms like pveproxy: ; splits, a second = truncates, + is a space", function()
      local upid = ok(api("POST", "/nodes/pve1/qemu", {
        body = "vmid=193&description=x=y;cores=3&tags=a+b&name=dec%2Dode",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }))
      task_ok(upid)
      local c = config(193)
      assert.are.equal("x", c.description)
      assert.are.equal(3, c.cores)
      assert.are.equal("a;b", c.tags)
      assert.are.equal("dec-ode", c.name)
    end)

    it("refuses a body parameter that repeats a URI parameter", function()
      local e = errors(api("PUT", "/nodes/pve1/qemu/193/config", { form = { node = "pve2", cores = 1 } }))
      assert.are.equal("duplicate parameter (already defined in URI)", e.node)
    end)

    it("answers 501 for unknown paths and methods, like pveproxy", function()
      local r = api("GET", "/nodes/pve1/nonexistent")
      assert.are.equal(501, r.status)
      assert.are.equal("Method 'GET /nodes/pve1/nonexistent' not implemented", r.reason)
      local r2 = api("PATCH", "/version")
      assert.are.equal(501, r2.status)
      assert.are.equal("Method 'PATCH /version' not implemented", r2.reason)
    end)

    it("answers 500 'does not exist' for a missing VM, with the message in the body", function()
      local r = api("GET", "/nodes/pve1/qemu/999/config")
      assert.are.equal(500, r.status)
      assert.are.equal("Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist", r.reason)
      assert.are.equal("Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist\n", r.json.message)
      assert.are.equal("close", r.headers.connection)
    end)
  end)

  describe("tasks and locks", function()
    it("runs tasks with PVE UPIDs: 400 'no such task' first, then running, then OK", function()
      lab:profile { task_visible = 0.4, create = 0.8 }
      local upid = create(200, { name = "t200" })
      assert.matches("^UPID:pve1:%x%x%x%x%x%x%x%x:%x%x%x%x%x%x%x%x:%x%x%x%x%x%x%x%x:qmcreate:200:root@pam!tlr:$", upid)
      local first = api("GET", "/nodes/pve1/tasks/" .. upid .. "/status")
      assert.are.equal(400, first.status)
      assert.are.equal("no such task", first.json.errors.upid)
      local seen_running, seen_lock, st = false, false, nil
      local deadline = sched.now() + 10
      while sched.now() < deadline do
        local r = api("GET", "/nodes/pve1/tasks/" .. upid .. "/status")
        if r.status == 200 then
          st = r.data
          if st.status == "running" then
            seen_running = true
            -- the task may end between the two requests: one sighting is enough
            if config(200).lock == "create" then seen_lock = true end
          end
          if st.status == "stopped" then break end
        end
        sched.sleep(0.05)
      end
      assert.is_true(seen_running)
      assert.is_true(seen_lock, "the config never showed lock: create while the task ran")
      assert.are.equal("OK", st.exitstatus)
      assert.are.equal("qmcreate", st.type)
      assert.are.equal("root@pam", st.user)
      assert.are.equal("tlr", st.tokenid)
      assert.is_nil(config(200).lock)
      local log = api("GET", "/nodes/pve1/tasks/" .. upid .. "/log")
      assert.are.equal("TASK OK", log.data[#log.data].t)
      assert.are.equal(#log.data, log.json.total)
      local bad = api("GET", "/nodes/pve1/tasks/UPID:garbage/status")
      assert.are.equal("unable to parse worker upid", bad.json.errors.upid)
    end)

    it("makes a second operation on a locked VM wait, then fail with the lock timeout", function()
      lab:profile { create = 1.5, lock_timeout_config = 0.3 }
      local upid = create(201)
      local t0 = sched.now()
      local r = api("PUT", "/nodes/pve1/qemu/201/config", { form = { cores = 2 } })
      local waited = sched.now() - t0
      assert.are.equal(500, r.status)
      assert.are.equal("can't lock file '/var/lock/qemu-server/lock-201.conf' - got timeout", r.reason)
      assert.is_true(waited >= 0.28 and waited < 1.4, "waited " .. waited)
      task_ok(upid)
      assert.are.equal(200, api("PUT", "/nodes/pve1/qemu/201/config", { form = { cores = 2 } }).status)
      assert.are.equal(2, config(201).cores)
    end)

    it("makes parallel disk allocations on one storage contend for its lock", function()
      lab:profile { disk_alloc = 0.6, lock_timeout_storage = 0.2 }
      local a = create(202, { scsi0 = "local-lvm:1" })
      local b = create(203, { scsi0 = "local-lvm:1" })
      local sa, sb = lab:wait_task(a), lab:wait_task(b)
      local statuses = { sa.exitstatus, sb.exitstatus }
      table.sort(statuses)
      assert.are.equal("OK", statuses[1])
      assert.matches("can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout", statuses[2], 1, true)
      assert.matches("^unable to create VM 20[23] %- ", statuses[2])
    end)

    it("queues tasks beyond the node's workers, so overload shows as latency", function()
      lab:profile { node_workers = 1, create = 0.4 }
      local t0 = sched.now()
      local a = create(204)
      local b = create(205)
      task_ok(a)
      task_ok(b)
      assert.is_true(sched.now() - t0 >= 0.75, "tasks ran in parallel")
    end)

    it("keeps a clone target locked ('lock: clone') until the clone task ends", function()
      task_ok(create(210, { scsi0 = "local-lvm:2", name = "tmpl" }))
      task_ok(ok(api("POST", "/nodes/pve1/qemu/210/template")))
      assert.are.equal(1, config(210).template)
      lab:profile { clone_linked = 0.8 }
      local upid = ok(api("POST", "/nodes/pve1/qemu/210/clone", { form = { newid = 211, name = "c211" } }))
      assert.matches(":qmclone:210:", upid, 1, true)
      assert.are.equal("clone", config(211).lock)
      local del = api("DELETE", "/nodes/pve1/qemu/211")
      assert.are.equal(500, del.status)
      assert.are.equal("VM is locked (clone)", del.reason)
      task_ok(upid)
      local c = config(211)
      assert.is_nil(c.lock)
      assert.matches("^local%-lvm:base%-210%-disk%-0/vm%-211%-disk%-0,", c.scsi0)
      local far = api("POST", "/nodes/pve1/qemu/210/clone", { form = { newid = 212, target = "pve2" } })
      assert.are.equal(500, far.status)
      assert.are.equal("Can't clone VM to node 'pve2' (VM uses local storage)", far.reason)
    end)
  end)

  describe("VMs", function()
    local ip

    it("boots a VM; the guest agent answers only after boot, with the cloud-init address", function()
      ip = lab.net .. ".0.31"
      lab:profile { boot_agent = 0.6 }
      task_ok(create(220, { name = "cp1", agent = "enabled=1", net0 = "virtio,bridge=vmbr0",
        ide2 = "local-lvm:cloudinit", ipconfig0 = "ip=" .. ip .. "/16,gw=" .. lab.net .. ".0.1",
        nameserver = lab.net .. ".0.1", searchdomain = "lab", smbios1 = "uuid=6f1c7a02-3c4d-4e5f-8a9b-0c1d2e3f4a5b" }))
      local c = config(220)
      assert.matches("^local%-lvm:vm%-220%-cloudinit,media=cdrom$", c.ide2)
      assert.matches("^virtio=BC:24:11:%x%x:%x%x:%x%x,bridge=vmbr0$", c.net0)
      local stopped = api("POST", "/nodes/pve1/qemu/220/agent/ping")
      assert.are.equal(500, stopped.status)
      assert.are.equal("VM 220 is not running", stopped.reason)
      task_ok(ok(api("POST", "/nodes/pve1/qemu/220/status/start")))
      assert.are.equal("running", ok(api("GET", "/nodes/pve1/qemu/220/status/current")).status)
      local early = api("GET", "/nodes/pve1/qemu/220/agent/network-get-interfaces")
      assert.are.equal(500, early.status)
      assert.are.equal("QEMU guest agent is not running", early.reason)
      assert.are.equal("QEMU guest agent is not running\n", early.json.message)
      sched.sleep(0.7)
      assert.are.equal(200, api("POST", "/nodes/pve1/qemu/220/agent/ping").status)
      local ifs = ok(api("GET", "/nodes/pve1/qemu/220/agent/network-get-interfaces")).result
      local found
      for _, i in ipairs(ifs) do
        for _, a in ipairs(i["ip-addresses"] or {}) do
          if a["ip-address"] == ip then found = i end
        end
      end
      assert.is_not_nil(found)
      assert.are.equal(c.net0:match("=(%x%x:[^,]+)"):lower(), found["hardware-address"])
    end)

    it("gives a DHCP lease from the lab net for ip=dhcp, and no agent without agent=1", function()
      task_ok(create(221, { agent = "1", net0 = "virtio,bridge=vmbr0", ipconfig0 = "ip=dhcp" }))
      task_ok(create(222, { net0 = "virtio,bridge=vmbr0" }))
      task_ok(ok(api("POST", "/nodes/pve1/qemu/221/status/start")))
      task_ok(ok(api("POST", "/nodes/pve1/qemu/222/status/start")))
      sched.sleep(0.1)
      local ifs = ok(api("GET", "/nodes/pve1/qemu/221/agent/network-get-interfaces")).result
      assert.are.equal("ens18", ifs[2].name)
      assert.matches("^" .. lab.net:gsub("%.", "%%.") .. "%.1%.%d+$", ifs[2]["ip-addresses"][1]["ip-address"])
      local none = api("GET", "/nodes/pve1/qemu/222/agent/network-get-interfaces")
      assert.are.equal(500, none.status)
      assert.are.equal("No QEMU guest agent configured", none.reason)
    end)

    it("refuses to delete a running VM; stop and delete with purge remove it and its disks", function()
      task_ok(create(223, { scsi0 = "local-lvm:4" }))
      task_ok(ok(api("POST", "/nodes/pve1/qemu/223/status/start")))
      local r = api("DELETE", "/nodes/pve1/qemu/223", { query = { purge = 1, ["destroy-unreferenced-disks"] = 1 } })
      assert.are.equal(500, r.status)
      assert.are.equal("VM 223 is running - destroy failed", r.reason)
      task_ok(ok(api("POST", "/nodes/pve1/qemu/223/status/stop")))
      assert.are.equal(1, #ok(api("GET", "/nodes/pve1/storage/local-lvm/content", { query = { vmid = 223 } })))
      task_ok(ok(api("DELETE", "/nodes/pve1/qemu/223", { query = { purge = 1, ["destroy-unreferenced-disks"] = 1 } })))
      assert.are.equal(500, api("GET", "/nodes/pve1/qemu/223/config").status)
      assert.are.equal(0, #ok(api("GET", "/nodes/pve1/storage/local-lvm/content", { query = { vmid = 223 } })))
      local ev = lab:control("GET", "/events")
      local kinds = {}
      for _, e in ipairs(ev) do
        if e.vmid == 223 and e.type:match("^vm%.") then kinds[#kinds + 1] = e.type end
      end
      assert.are.same({ "vm.created", "vm.started", "vm.stopped", "vm.deleted" }, kinds)
    end)

    it("resizes disks (grow only) and imports disks with STORE:0,import-from=", function()
      lab:control("POST", "/pve/volumes", { volid = "local:import/base.qcow2", size = 2 * 1024 ^ 3 })
      local bad = api("POST", "/nodes/pve1/qemu", { form = { vmid = 224, scsi0 = "local-lvm:8,import-from=local:import/base.qcow2" } })
      assert.are.equal(400, bad.status)
      assert.matches("'import-from' requires special syntax", bad.json.errors.scsi0, 1, true)
      task_ok(create(224, { scsi0 = "local-lvm:0,import-from=local:import/base.qcow2,discard=on" }))
      assert.are.equal("local-lvm:vm-224-disk-0,discard=on,size=2G", config(224).scsi0)
      task_ok(ok(api("PUT", "/nodes/pve1/qemu/224/resize", { form = { disk = "scsi0", size = "+1G" } })))
      assert.matches(",size=3G$", config(224).scsi0)
      local shrink = lab:wait_task(ok(api("PUT", "/nodes/pve1/qemu/224/resize", { form = { disk = "scsi0", size = "1G" } })))
      assert.are.equal("shrinking disks is not supported", shrink.exitstatus)
    end)

    it("lists VMs, pools, tags and locks in /cluster/resources; nextid reserves nothing", function()
      ok(api("POST", "/pools", { form = { poolid = "talos" } }))
      task_ok(create(225, { pool = "talos", tags = "talos;cp", name = "p225" }))
      local res = ok(api("GET", "/cluster/resources", { query = { type = "vm" } }))
      local e
      for _, x in ipairs(res) do if x.vmid == 225 then e = x end end
      assert.are.equal("qemu/225", e.id)
      assert.are.equal("talos", e.pool)
      assert.are.equal("talos;cp", e.tags)
      assert.are.equal(0, e.template)
      local n1 = ok(api("GET", "/cluster/nextid"))
      assert.are.equal("string", type(n1))
      assert.are.equal(n1, ok(api("GET", "/cluster/nextid")))
      local taken = api("GET", "/cluster/nextid", { query = { vmid = 225 } })
      assert.are.equal(400, taken.status)
      assert.are.equal("VM 225 already exists", taken.json.errors.vmid)
      local dup = api("POST", "/nodes/pve1/qemu", { form = { vmid = 225 } })
      assert.are.equal(500, dup.status)
      assert.are.equal("unable to create VM 225 - VM 225 already exists on node 'pve1'", dup.reason)
    end)
  end)

  describe("download-url", function()
    local url = "http://images.lab.invalid/talos-nocloud-amd64.qcow2"
    local sha

    local function dl(form)
      form.content = form.content or "import"
      form.url = form.url or url
      return api("POST", "/nodes/pve1/storage/local/download-url", { form = form })
    end

    it("checks extensions, content types, compression and checksum pairs up front", function()
      sha = lab:control("POST", "/pve/files", { url = url, data = "qcow2 image bytes" }).sha256
      assert.matches("^%x+$", sha)
      local r = dl { filename = "talos.raw.xz" }
      assert.are.equal(400, r.status)
      assert.are.equal("invalid filename or wrong extension", r.json.errors.filename)
      assert.are.equal("wrong file extension", dl({ content = "iso", filename = "talos.qcow2" }).json.errors.filename)
      assert.matches("does not have a value in the enumeration 'gz, lzo, zst, bz2'",
        dl({ filename = "t.iso", content = "iso", compression = "xz" }).json.errors.compression, 1, true)
      assert.matches("enumeration 'iso, vztmpl, import'", dl({ filename = "t.raw", content = "images" }).json.errors.content, 1, true)
      assert.are.equal("missing property - 'checksum' requires this property",
        dl({ filename = "t.qcow2", checksum = sha }).json.errors["checksum-algorithm"])
      assert.are.equal("value does not match the regex pattern", dl({ filename = "t.qcow2", url = "ftp://x/y" }).json.errors.url)
      local lvm = api("POST", "/nodes/pve1/storage/local-lvm/download-url", { form = { url = url, content = "import", filename = "t.qcow2" } })
      assert.are.equal(500, lvm.status)
      assert.are.equal("can't upload to storage type 'lvmthin', not a file based storage!", lvm.reason)
    end)

    it("fails the task on a checksum mismatch or compression for import", function()
      local st = lab:wait_task(ok(dl { filename = "talos.qcow2", checksum = string.rep("0", 64), ["checksum-algorithm"] = "sha256" }))
      assert.are.equal("checksum mismatch: got '" .. sha .. "' != expect '" .. string.rep("0", 64) .. "'", st.exitstatus)
      local st2 = lab:wait_task(ok(dl { filename = "talos.qcow2", compression = "gz" }))
      assert.are.equal("decompression not supported for import", st2.exitstatus)
    end)

    it("downloads into the storage, verifies the checksum and refuses to overwrite", function()
      local upid = ok(dl { filename = "talos.qcow2", checksum = sha, ["checksum-algorithm"] = "sha256" })
      assert.matches(":download:talos.qcow2:root@pam!tlr:$", upid)
      task_ok(upid)
      local list = ok(api("GET", "/nodes/pve1/storage/local/content", { query = { content = "import" } }))
      local vol
      for _, v in ipairs(list) do if v.volid == "local:import/talos.qcow2" then vol = v end end
      assert.is_not_nil(vol)
      assert.are.equal(#"qcow2 image bytes", vol.size)
      assert.are.equal("qcow2", vol.format)
      local again = lab:wait_task(ok(dl { filename = "talos.qcow2" }))
      assert.are.equal("refusing to override existing file '/var/lib/vz/import/talos.qcow2'", again.exitstatus)
    end)

    it("fetches real http URLs (here: the lab's control endpoint)", function()
      task_ok(ok(dl { url = lab.env.LAB_CONTROL .. "/env", content = "iso", filename = "env copy.iso" }))
      local list = ok(api("GET", "/nodes/pve1/storage/local/content", { query = { content = "iso" } }))
      assert.are.equal("local:iso/env_copy.iso", list[1].volid)
      assert.is_true(list[1].size > 100)
    end)

    it("has no import content before PVE 8.4, and no JSON message before 8.3", function()
      lab:control("PUT", "/pve/version", { version = "8.2" })
      finally(function() lab:control("PUT", "/pve/version", { version = "9.0" }) end)
      assert.are.equal("8.2", ok(api("GET", "/version")).release)
      local r = dl { filename = "old.qcow2" }
      assert.are.equal(400, r.status)
      assert.matches("invalid content type 'import'", r.json.errors.content, 1, true)
      local missing = api("GET", "/nodes/pve1/qemu/999/config")
      assert.are.equal(500, missing.status)
      assert.is_nil(missing.json.message)
      for _, s in ipairs(ok(api("GET", "/nodes/pve1/storage"))) do
        assert.is_nil(("," .. s.content .. ","):find(",import,", 1, true), s.storage)
      end
      assert.are.equal(400, api("GET", "/nodes/pve1/storage", { query = { content = "import" } }).status)
    end)
  end)

  describe("control endpoint", function()
    it("injects status codes for a number of calls", function()
      local rule = lab:control("POST", "/faults", { path = "/nodes/*/qemu/*/config", method = "GET", status = 596,
        message = "Connection timed out", count = 1 })
      assert.are.equal(1, rule.count)
      local r = api("GET", "/nodes/pve1/qemu/220/config")
      assert.are.equal(596, r.status)
      assert.are.equal("Connection timed out", r.reason)
      assert.are.equal(200, api("GET", "/nodes/pve1/qemu/220/config").status)
      lab:control("POST", "/faults", { path = "/version", status = 500, probability = 0 })
      assert.are.equal(200, api("GET", "/version").status)
      lab:control("POST", "/faults", { path = "/nodes/pve1/qemu/220/config", method = "PUT", lock_timeout = true })
      local lt = api("PUT", "/nodes/pve1/qemu/220/config", { form = { cores = 1 } })
      assert.are.equal("can't lock file '/var/lock/qemu-server/lock-220.conf' - got timeout", lt.reason)
    end)

    it("drops connections and adds latency", function()
      lab:control("POST", "/faults", { path = "/version", drop = true, count = 1 })
      local r, _, code = lab:pve("GET", "/version")
      assert.is_nil(r)
      assert.is_truthy(code == "ECONNRESET" or code == "EPROTO" or code == "ERECV", code)
      lab:control("POST", "/faults", { path = "/version", latency = 0.3, count = 1 })
      local t0 = sched.now()
      assert.are.equal(200, api("GET", "/version").status)
      assert.is_true(sched.now() - t0 >= 0.28)
    end)

    it("fails tasks with a given exitstatus", function()
      task_ok(create(230))
      lab:control("POST", "/faults", { path = "/nodes/*/qemu/*/status/start", method = "POST",
        task_exitstatus = "start failed: QEMU exited with code 1", count = 1 })
      local st = lab:wait_task(ok(api("POST", "/nodes/pve1/qemu/230/status/start")))
      assert.are.equal("start failed: QEMU exited with code 1", st.exitstatus)
      assert.are.equal("stopped", ok(api("GET", "/nodes/pve1/qemu/230/status/current")).status)
      local log = ok(api("GET", "/nodes/pve1/tasks/" .. st.upid .. "/log"))
      assert.are.equal("TASK ERROR: start failed: QEMU exited with code 1", log[#log].t)
    end)

    it("keeps a request log with method, path, params, status and auth kind", function()
      lab:control("DELETE", "/log")
      api("GET", "/nodes/pve1/qemu/999/config")
      api("POST", "/access/ticket", { token = false, form = { username = "root@pam", password = lab.env.PVE_PASSWORD } })
      local log = lab:control("GET", "/log")
      assert.are.equal(2, #log)
      assert.are.equal("GET", log[1].method)
      assert.are.equal("/nodes/pve1/qemu/999/config", log[1].path)
      assert.are.equal(500, log[1].status)
      assert.are.equal("token", log[1].auth)
      assert.are.equal("root@pam!tlr", log[1].user)
      assert.are.equal("999", log[1].params.vmid)
      assert.are.equal("none", log[2].auth)
      assert.are.equal("<redacted>", log[2].params.password)
      lab:control("DELETE", "/log")
      assert.are.equal(0, #lab:control("GET", "/log"))
    end)

    it("shows the state: VMs per node, storages, tasks", function()
      local st = lab:control("GET", "/pve/state")
      assert.are.equal("9.0", st.version.release)
      local found
      for _, vm in ipairs(st.nodes.pve1.vms) do if vm.vmid == 220 then found = vm end end
      assert.are.equal("running", found.status)
      assert.are.equal("cp1", found.name)
      assert.is_true(#st.nodes.pve1.tasks > 0)
      assert.are.same({ "backup", "import", "iso", "snippets", "vztmpl" }, (function()
        local c = st.nodes.pve1.storages["local"].content
        table.sort(c)
        return c
      end)())
      local _, status = lab:control("GET", "/no/such/route")
      assert.are.equal(404, status)
    end)
  end)

  describe("the lab process", function()
    it("runs beside another lab and exits by itself after its TTL, removing its env file", function()
      local other = L.start { ttl = 2, net = lab.net == "127.99" and "127.98" or "127.99" }
      finally(function() other:stop() end)
      assert.are_not.equal(lab.env.PVE_ENDPOINT, other.env.PVE_ENDPOINT)
      assert.are.equal(200, assert(other:pve("GET", "/version")).status)
      assert.is_true(other:alive())
      local deadline = sched.now() + 10
      while other:alive() and sched.now() < deadline do sched.sleep(0.1) end
      assert.is_false(other:alive())
      assert.is_nil(io.open(other.dir .. "/env", "r"))
    end)

    it("stops on SIGTERM and removes its env file", function()
      local other = L.start { net = lab.net == "127.97" and "127.96" or "127.97" }
      finally(function() other:stop() end)
      local env_file = other.dir .. "/env"
      assert.is_not_nil(io.open(env_file, "r"))
      assert.are.equal(other.pid, other.env.LAB_PIDS)
      os.execute("kill -TERM " .. other.pid)
      local deadline = sched.now() + 5
      while other:alive() and sched.now() < deadline do sched.sleep(0.05) end
      assert.is_false(other:alive())
      assert.is_nil(io.open(env_file, "r"))
      assert.matches("stopping %(SIGTERM%)", H.read(other.dir .. "/out"))
    end)
  end)
end)
