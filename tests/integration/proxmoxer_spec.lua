-- Cross-check of the lab's Proxmox fake with a real client: Debian's
-- python3-proxmoxer, unchanged (tests/lab/proxmoxer_check.py).
local H = require "helper"
local L = require "lab_helper"
local json = require "tlr.json"

describe("lab: Proxmox VE fake with proxmoxer", function()
  local lab

  setup(function() lab = L.start { profile = "test" } end)
  teardown(function() if lab then lab:stop() end end)

  it("lists nodes, creates a VM and waits for its task", function()
    local probe, status = H.capture("/usr/bin/python3 -c 'import proxmoxer'")
    assert.are.equal(0, status, "python3-proxmoxer is missing (apt-get install python3-proxmoxer): " .. probe)
    lab:profile { task_visible = 0.2 }
    local out, rc = H.capture("/usr/bin/python3 tests/lab/proxmoxer_check.py '" .. lab.dir .. "/env'")
    assert.are.equal(0, rc, out)
    local r = json.decode(out:match("{.*}"))
    assert.are.same({ "pve1", "pve2", "pve3" }, r.nodes)
    assert.are.equal("9.0", r.version)
    assert.are.equal(100, r.vmid)
    assert.matches("^UPID:pve1:%x+:%x+:%x+:qmcreate:100:root@pam!tlr:$", r.upid)
    assert.are.equal("OK", r.exitstatus)
    assert.are.equal("qmcreate", r.task_type)
    assert.are.equal("proxmoxer", r.config.name)
    assert.are.equal(2, r.config.cores)
    assert.are.equal("1024", r.config.memory)
    assert.are.equal(1, r.config.onboot)
    assert.are.equal("local-lvm:vm-100-disk-0,discard=on,size=1G", r.config.scsi0)
    assert.are.equal("local-lvm:vm-100-cloudinit,media=cdrom", r.config.ide2)
    assert.matches("^virtio=BC:24:11:%x%x:%x%x:%x%x,bridge=vmbr0$", r.config.net0)
    assert.are.equal("px;check", r.config.tags)
    assert.are.equal(500, r.missing.status)
    assert.are.equal("Configuration file 'nodes/pve1/qemu-server/999999.conf' does not exist", r.missing.reason)
    assert.are.equal(400, r.invalid.status)
    assert.are.equal("Parameter verification failed.", r.invalid.reason)
    assert.are.equal("written with a ticket", r.description)
    -- what proxmoxer sent, as the fake logged it
    local log = lab:control("GET", "/log?path=/nodes/pve1/qemu&method=POST")
    assert.are.equal(2, #log)
    assert.are.equal("virtio,bridge=vmbr0", log[1].params.net0)
    assert.are.equal("token", log[1].auth)
    local put = lab:control("GET", "/log?path=/nodes/pve1/qemu/*/config&method=PUT")
    assert.are.equal("ticket", put[1].auth)
    assert.are.equal(200, put[1].status)
  end)
end)
