-- tlr.proxmox and tlr.proxmox.vm against the lab's Proxmox fake.
local L = require "lab_helper"
local proxmox = require "tlr.proxmox"
local vm = require "tlr.proxmox.vm"
local sched = require "tlr.sched"
local log = require "tlr.log"

describe("tlr.proxmox", function()
  local lab, pve, log_since
  -- the shared lab outlives this run (CI runs the suite twice): unique names and ids
  local RUN = string.format("%05x", math.floor(sched.now() * 1000) % 0xfffff)
  local VMID -- a free id range, found in setup
  local function name(base) return base .. "-" .. RUN end

  local function connect(extra)
    local o = { endpoint = lab.env.PVE_ENDPOINT, token = lab.env.PVE_TOKEN,
      fingerprint = lab.env.PVE_FINGERPRINT, retry_budget = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(proxmox.connect(o))
  end

  -- requests the fake saw since the mark, optionally only one method
  local function requests(method)
    local list = lab:control("GET", "/log?service=pve&since=" .. log_since .. "&limit=100000")
    local out = {}
    for _, e in ipairs(list.entries or list) do
      if not method or e.method == method then out[#out + 1] = e end
    end
    return out
  end

  local function mark()
    local list = lab:control("GET", "/log?service=pve&limit=1")
    local entries = list.entries or list
    log_since = entries[#entries] and entries[#entries].seq or 0
  end

  local function fault(rule) return lab:control("POST", "/faults", rule) end

  setup(function()
    lab = L.shared()
    lab:reset("test")
    pve = connect()
    VMID = math.tointeger(tonumber(assert(pve:get("/cluster/nextid")))) + 500
    mark()
  end)

  teardown(function()
    lab:stop()
  end)

  before_each(function()
    lab:control("DELETE", "/faults")
    mark()
  end)

  describe("requests", function()
    it("authenticates with a token over a pinned certificate and coerces numbers", function()
      local nodes = assert(pve:get("/nodes"))
      assert.are.equal(3, #nodes)
      table.sort(nodes, function(a, b) return a.node < b.node end)
      assert.are.equal("pve1", nodes[1].node)
      assert.are.equal("integer", math.type(nodes[1].maxmem))
      local v = assert(pve:version())
      assert.is_true(v.major >= 8)
    end)

    it("fills {placeholders} from the parameters", function()
      local st = assert(pve:get("/nodes/{node}/status", { node = "pve2" }))
      assert.is_table(st)
      local entries = requests("GET")
      assert.are.equal("/nodes/pve2/status", entries[#entries].path)
      assert.has_error(function() pve:get("/nodes/{node}/status") end)
    end)

    it("logs in with user and password and sends the CSRF token on writes", function()
      local c = assert(proxmox.connect { endpoint = lab.env.PVE_ENDPOINT, user = lab.env.PVE_USER,
        password = lab.env.PVE_PASSWORD, fingerprint = lab.env.PVE_FINGERPRINT })
      assert(c:get("/nodes"))
      assert(c:post("/pools", { poolid = "tlr-ticket-test" }))
      local entries = requests("POST")
      assert.are.equal("ticket", entries[#entries].auth)
      assert(c:delete("/pools", { poolid = "tlr-ticket-test" }))
      -- an hour later the next call renews the ticket first (PVE tickets live 2 h)
      c.ticket_time = c.ticket_time - 3601
      mark()
      assert(c:get("/nodes"))
      local posts = requests("POST")
      assert.are.equal(1, #posts)
      assert.are.equal("/access/ticket", posts[1].path)
      assert.are.equal("<redacted>", posts[1].params.password) -- renewed with the ticket itself
      assert.is_true(c.ticket_time > sched.now() - 5)
    end)

    it("reports a wrong token as EAUTH and a missing right as EFORBIDDEN", function()
      local bad = connect { token = "root@pam!tlr=00000000-0000-0000-0000-000000000000" }
      local data, msg, code = bad:get("/nodes")
      assert.is_nil(data)
      assert.are.equal("EAUTH", code)
      assert.matches("401", msg)
      assert.is_nil(msg:find("00000000-0000", 1, true), "the token secret leaked into the error")
      local weak = connect { token = lab.env.PVE_TOKEN_NOPERM }
      local _, _, c2 = weak:post("/nodes/{node}/qemu", { node = "pve1", vmid = 990, name = "nope" })
      assert.are.equal("EFORBIDDEN", c2)
    end)

    it("returns invalid parameters as EINVAL with the per-parameter messages", function()
      local data, msg, code, details = pve:post("/nodes/{node}/qemu",
        { node = "pve1", vmid = 991, cores = 0, net0 = { virtio = "BC:24:11:00:00:01", bridg = "vmbr0" } })
      assert.is_nil(data)
      assert.are.equal("EINVAL", code)
      assert.is_table(details)
      assert.is_string(details.cores)
      assert.matches("bridg", details.net0)
      assert.matches("cores:", msg)
    end)

    it("returns a missing VM as ENOTFOUND", function()
      local _, msg, code = pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = 98765 })
      assert.are.equal("ENOTFOUND", code)
      assert.matches("does not exist", msg)
    end)

    it("encodes booleans as 0/1, tables as property strings and lists with ';'", function()
      assert.are.equal("1", proxmox.encode_value(true))
      assert.are.equal("0", proxmox.encode_value(false))
      assert.are.equal("a;b", proxmox.encode_value { "a", "b" })
      assert.are.equal("local-lvm:0,discard=on,import-from=local:import/t.qcow2",
        proxmox.encode_value { "local-lvm:0", ["import-from"] = "local:import/t.qcow2", discard = "on" })
      assert.are.equal("order=scsi0;net0", proxmox.encode_value { order = { "scsi0", "net0" } })
      local t = proxmox.parse_value("virtio=BC:24:11:00:00:01,bridge=vmbr0")
      assert.are.equal("vmbr0", t.bridge)
      assert.are.equal("BC:24:11:00:00:01", t.virtio)
    end)

    it("registers the token secret so it is never printed", function()
      local secret = lab.env.PVE_TOKEN:match("=(.+)$")
      assert.are.equal("x <redacted> y", log.mask("x " .. secret .. " y"))
    end)
  end)

  describe("retries", function()
    it("retries lock timeouts with backoff and succeeds", function()
      fault { path = "/nodes/*/status", lock_timeout = true, count = 2 }
      local before = pve.stats.retries
      assert(pve:get("/nodes/{node}/status", { node = "pve1" }))
      assert.are.equal(2, pve.stats.retries - before)
    end)

    it("retries 596 and 'got no worker upid', but not other errors", function()
      fault { path = "/nodes/*/status", status = 596, message = "Connection timed out", count = 1 }
      local before = pve.stats.retries
      assert(pve:get("/nodes/{node}/status", { node = "pve1" }))
      assert.are.equal(1, pve.stats.retries - before)
      fault { path = "/pools", method = "POST", status = 500,
        message = "got no worker upid - start worker failed", count = 1 }
      assert(pve:post("/pools", { poolid = "tlr-retry" }))
      assert.are.equal(2, pve.stats.retries - before)
      assert(pve:delete("/pools", { poolid = "tlr-retry" }))
      fault { path = "/pools", method = "POST", status = 500, message = "something broke", count = 1 }
      local _, _, code = pve:post("/pools", { poolid = "tlr-retry2" })
      assert.are.equal("EAPI", code)
      assert.are.equal(2, pve.stats.retries - before)
    end)

    it("retries a dropped connection on GET", function()
      fault { path = "/version", drop = true, count = 1 }
      pve.cached_version = nil
      assert(pve:version())
    end)

    it("gives up when the retry budget is spent", function()
      fault { path = "/nodes/*/status", lock_timeout = true }
      local quick = connect { retry_budget = 0.5 }
      local t0 = sched.now()
      local _, msg, code = quick:get("/nodes/{node}/status", { node = "pve1" })
      assert.are.equal("ELOCKTIMEOUT", code)
      assert.matches("got timeout", msg)
      assert.is_true(sched.now() - t0 < 3)
    end)
  end)

  describe("tasks", function()
    it("parses UPIDs", function()
      local t = proxmox.parse_upid("UPID:pve1:000B2C4F:0A1D7E83:67E3A0B1:qmcreate:201:root@pam!tlr:")
      assert.are.same({ node = "pve1", pid = 0xB2C4F, pstart = 0xA1D7E83, starttime = 0x67E3A0B1,
        type = "qmcreate", id = "201", user = "root@pam!tlr",
        upid = "UPID:pve1:000B2C4F:0A1D7E83:67E3A0B1:qmcreate:201:root@pam!tlr:" }, t)
      assert.is_nil(proxmox.parse_upid("UPID:nope"))
      assert.is_true(proxmox.task_ok("OK"))
      assert.is_true(proxmox.task_ok("WARNINGS: 2"))
      assert.is_false(proxmox.task_ok("unexpected status"))
    end)

    it("fails a task with its exit status and the end of its log", function()
      fault { path = "/nodes/*/qemu", method = "POST", task_exitstatus = "storage 'local-lvm' is full" }
      local st, msg, code = pve:run_task("POST", "/nodes/{node}/qemu",
        { node = "pve1", vmid = 992, name = "fails", memory = 512 })
      assert.is_nil(st)
      assert.are.equal("ETASK", code)
      assert.matches("qmcreate 992 on pve1 failed: storage 'local%-lvm' is full", msg)
      assert.matches("TASK ERROR", msg)
    end)
  end)

  describe("vm operations", function()
    local image

    local function spec(name, extra)
      local s = { node = "pve1", name = name, cores = 2, memory = 2048,
        disk = { storage = "local-lvm", size = 12, image = image.volid },
        cloudinit = { ip = "10.9.0.21/24", gw = "10.9.0.1", nameserver = { "10.9.0.1" } },
        tags = { "talos", "tlr-test" } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end

    setup(function()
      lab:control("POST", "/pve/files", { url = "http://images.lab/talos.qcow2", size = 1048576 })
      for _, node in ipairs { "pve3", "pve2", "pve1" } do -- local storage is per node
        image = assert(vm.ensure_image(pve, { node = node, storage = "local", content = "import",
          url = "http://images.lab/talos.qcow2", filename = "talos-test.qcow2" }))
      end
    end)

    it("downloads an image once; a second call changes nothing", function()
      assert.are.equal("local:import/talos-test.qcow2", image.volid)
      local again = assert(vm.ensure_image(pve, { node = "pve1", storage = "local", content = "import",
        url = "http://images.lab/talos.qcow2", filename = "talos-test.qcow2" }))
      assert.is_false(again.changed)
      assert.are.equal(0, #requests("POST"))
    end)

    it("shares one download between concurrent callers", function()
      lab:control("POST", "/pve/files", { url = "http://images.lab/other-" .. RUN .. ".qcow2", size = 2048 })
      local tasks = {}
      for i = 1, 4 do
        tasks[i] = sched.spawn(function()
          return assert(vm.ensure_image(pve, { node = "pve2", storage = "local", content = "import",
            url = "http://images.lab/other-" .. RUN .. ".qcow2", filename = "other-" .. RUN .. ".qcow2" })).volid
        end)
      end
      local got = sched.all(tasks)
      for i = 1, 4 do assert.are.equal("local:import/other-" .. RUN .. ".qcow2", got[i]) end
      local downloads = 0
      for _, e in ipairs(requests("POST")) do
        if e.path:match("download%-url$") then downloads = downloads + 1 end
      end
      assert.are.equal(1, downloads)
    end)

    it("builds the image URL and import/ISO choice from the PVE version", function()
      local s = vm.image_source { factory = "https://factory.example", schematic = string.rep("ab", 32),
        version = "1.11.2", pve_version = { major = 8, minor = 4 } }
      assert.are.equal("https://factory.example/image/" .. string.rep("ab", 32) .. "/v1.11.2/nocloud-amd64.qcow2", s.url)
      assert.are.equal("import", s.content)
      local old = vm.image_source { factory = "https://f", schematic = "cd", version = "v1.10.0",
        pve_version = { major = 8, minor = 2 } }
      assert.are.equal("iso", old.content)
      assert.matches("%.iso$", old.filename)
    end)

    it("creates a VM with the expected configuration", function()
      local res = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID })))
      assert.are.equal("create", res.action)
      assert.are.equal(VMID, res.vmid)
      local cfg = assert(pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = VMID }))
      assert.are.equal(name("tlr-cp-1"), cfg.name)
      assert.are.equal(2, tonumber(cfg.cores))
      assert.are.equal("host", cfg.cpu)
      assert.are.equal("q35", cfg.machine)
      assert.are.equal("virtio-scsi-single", cfg.scsihw)
      assert.are.equal("socket", cfg.serial0)
      assert.matches("^virtio=" .. vm.mac_for(name("tlr-cp-1")) .. ",bridge=vmbr0", cfg.net0)
      assert.matches("ip=10%.9%.0%.21/24,gw=10%.9%.0%.1", cfg.ipconfig0)
      assert.matches("cloudinit", cfg.ide2)
      assert.matches("size=12G", cfg.scsi0)
      assert.are.equal("talos;tlr-test", cfg.tags)
      assert.matches("enabled=1", tostring(cfg.agent))
    end)

    it("changes nothing when run again: no mutating request at all", function()
      local res = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID })))
      assert.are.equal("none", res.action)
      assert.are.same({}, res.changes)
      assert.are.equal(0, #requests("POST") + #requests("PUT") + #requests("DELETE"))
    end)

    it("updates what differs; on a running VM memory waits as a pending change until a cold start", function()
      local stopped = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 3072 })))
      assert.are.equal("update", stopped.action)
      assert.is_false(stopped.restart) -- a stopped VM takes it at its next start
      assert(vm.start(pve, "pve1", VMID))
      local res = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 4096,
        tags = { "talos", "tlr-test", "new" } })))
      assert.are.equal("update", res.action)
      assert.is_true(res.restart)
      local keys = {}
      for _, c in ipairs(res.changes) do keys[#keys + 1] = c.key end
      table.sort(keys)
      assert.are.same({ "memory", "tags" }, keys)
      local cfg = assert(pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = VMID }))
      assert.are.equal(4096, tonumber(cfg.memory))
      local current = assert(pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = VMID, current = true }))
      assert.are.equal(3072, tonumber(current.memory))
      assert.are.equal("new;talos;tlr-test", current.tags) -- tags apply at once
      -- run again (say after a crash before the restart): the pending change still asks for one
      local again = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 4096,
        tags = { "talos", "tlr-test", "new" } })))
      assert.is_true(again.restart)
      local c = again.changes[1]
      assert.are.same({ "memory", "3072", "4096", true }, { c.key, tostring(c.old), tostring(c.new), c.pending })
      -- a hard reset keeps the QEMU process: still pending
      assert(pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/status/reset", { node = "pve1", vmid = VMID }))
      assert.is_true(assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 4096,
        tags = { "talos", "tlr-test", "new" } }))).restart)
      assert(vm.stop(pve, "pve1", VMID))
      assert(vm.start(pve, "pve1", VMID))
      local after = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 4096,
        tags = { "talos", "tlr-test", "new" } })))
      assert.are.equal("none", after.action)
      -- setting the running value again drops a pending change instead of keeping a stale one
      assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 5120, tags = { "talos", "tlr-test", "new" } })))
      local back = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, memory = 4096,
        tags = { "talos", "tlr-test", "new" } })))
      assert.is_false(back.restart)
      local cfg2 = assert(pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = VMID }))
      assert.are.equal(4096, tonumber(cfg2.memory))
      assert(vm.stop(pve, "pve1", VMID))
    end)

    it("plans without changing anything (dry_run)", function()
      local res = assert(vm.ensure(pve, spec(name("tlr-cp-1"), { vmid = VMID, cores = 4 }), { dry_run = true }))
      assert.are.equal("update", res.action)
      assert.are.equal(0, #requests("POST") + #requests("PUT"))
      local new = assert(vm.ensure(pve, spec(name("tlr-planned"), { vmid = VMID + 98 }), { dry_run = true }))
      assert.are.equal("create", new.action)
      assert.are.equal(0, #requests("POST"))
    end)

    it("refuses a vmid that belongs to a VM of another name", function()
      local res, msg, code = vm.ensure(pve, spec(name("tlr-intruder"), { vmid = VMID }))
      assert.is_nil(res)
      assert.are.equal("EINVAL", code)
      assert.are.equal(string.format("vmid %d is taken by VM '%s' on pve1, not '%s'", VMID,
        name("tlr-cp-1"), name("tlr-intruder")), msg)
    end)

    it("allocates ids that cannot collide when many VMs are created at once", function()
      local tasks = {}
      for i = 1, 6 do
        tasks[i] = sched.spawn(function()
          return assert(vm.ensure(pve, spec(name("tlr-w-" .. i), { node = "pve" .. (i % 3 + 1),
            cloudinit = { ip = "dhcp" } }))).vmid
        end)
      end
      local ids = sched.all(tasks)
      local seen = {}
      for _, id in ipairs(ids) do
        assert.is_nil(seen[id], "duplicate vmid " .. id)
        seen[id] = true
      end
      -- found again by name, not re-created
      local again = assert(vm.ensure(pve, spec(name("tlr-w-1"), { node = "pve2", cloudinit = { ip = "dhcp" } })))
      assert.are.equal("none", again.action)
      assert.are.equal(ids[1], again.vmid)
    end)

    it("starts a VM and reads its address from the guest agent", function()
      assert.is_true(assert(vm.start(pve, "pve1", VMID)).changed)
      assert.is_false(assert(vm.start(pve, "pve1", VMID)).changed)
      local ips = assert(vm.wait_ip(pve, "pve1", VMID, { timeout = 20 }))
      assert.are.same({ "10.9.0.21" }, ips.ipv4)
    end)

    it("waits out 'guest agent is not running' while the VM boots", function()
      lab:profile { boot_agent = 0.4 }
      local id = assert(vm.ensure(pve, spec(name("tlr-boot"), { node = "pve3", cloudinit = { ip = "dhcp" } }))).vmid
      assert(vm.start(pve, "pve3", id))
      local ips = assert(vm.wait_ip(pve, "pve3", id, { timeout = 20 }))
      assert.matches("^127%.", ips.ipv4[1])
      lab:reset("test")
    end)

    it("shuts down, stops and deletes with purge; deleting again changes nothing", function()
      assert.is_true(assert(vm.shutdown(pve, "pve1", VMID, 5)).changed)
      assert.is_true(assert(vm.delete(pve, "pve1", VMID)).changed)
      assert.is_false(assert(vm.delete(pve, "pve1", VMID)).changed)
      local _, _, code = pve:get("/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = VMID })
      assert.are.equal("ENOTFOUND", code)
    end)

    it("never has more than 2 disk-creating operations per storage in flight", function()
      lab:profile { create = 0.2 }
      local active, peak = 0, 0
      local real = pve.run_task
      pve.run_task = function(self, method, path, ...)
        local disk = method == "POST" and path == "/nodes/{node}/qemu"
        if disk then active = active + 1 peak = math.max(peak, active) end
        local r = table.pack(real(self, method, path, ...))
        if disk then active = active - 1 end
        return table.unpack(r, 1, r.n)
      end
      local tasks = {}
      for i = 1, 6 do
        tasks[i] = sched.spawn(function()
          return assert(vm.ensure(pve, spec(name("tlr-par-" .. i), { cloudinit = { ip = "dhcp" } }))).vmid
        end)
      end
      sched.all(tasks)
      pve.run_task = real
      lab:reset("test")
      assert.are.equal(2, peak)
    end)
  end)

  it("sent only requests that pass the API schema (no 400 from the fake's validator)", function()
    -- the mark was reset before this test, so look at the whole log
    log_since = 0
    local bad = {}
    for _, e in ipairs(requests()) do
      -- a task status answers 400 {upid: "no such task"} right after the start: expected
      local task_status = e.path:match("^/nodes/[^/]+/tasks/[^/]+/status$")
      if e.status == 400 and e.reason == "Parameter verification failed." and not task_status then
        local p = e.path .. " " .. table.concat((function()
          local ks = {}
          for k in pairs(e.params or {}) do ks[#ks + 1] = k end
          return ks
        end)(), ",")
        -- the EINVAL test above sends an invalid create on purpose (vmid 991)
        if not tostring((e.params or {}).vmid):match("^991") then bad[#bad + 1] = p end
      end
    end
    assert.are.same({}, bad)
  end)
end)
