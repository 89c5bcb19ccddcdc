-- The cluster's life after bring-up, end to end on a private lab: add a
-- worker (exactly that node changes), remove it (cordon, drain, Node, reset,
-- VM, record), refuse to lose etcd quorum, take a control plane out through
-- etcd and bring it back, resize in place one node at a time, move a node to
-- another host, kill -9 at several points and converge, converge through
-- injected transient faults.
local H = require "helper"
local SL = require "site_lab"

local function has(list, pattern)
  for _, v in ipairs(list) do if v:match(pattern) then return true end end
  return false
end

local function lines(out, prefix)
  local list = {}
  for l in out:gmatch("[^\n]+") do if l:sub(1, #prefix) == prefix then list[#list + 1] = l end end
  return list
end

describe("cluster lifecycle", function()
  local lab, secrets

  -- the site with `fn` applied to the text of examples/lab.lua (on the lab's net)
  local function site(fn) return lab:edit_site(fn) end
  local function ip(host) return lab.net .. ".0." .. host end
  local function add_w3(text)
    return text:gsub('(\n    { name = "w2",[^\n]+\n)', '%1    { name = "w3", role = "worker", host = "pve3", ip = "'
      .. ip(23) .. '" },\n')
  end
  local function without(name)
    return function(text) return (text:gsub('\n    { name = "' .. name .. '",[^\n]+', "")) end
  end

  local function k8s()
    return assert(require("tlr.k8s").connect { kubeconfig = H.read(lab.dir .. "/state/kubeconfig") })
  end
  local function talos(host)
    return assert(require("tlr.talos.client").connect(ip(host), { talosconfig = H.read(lab.dir .. "/state/talosconfig") }))
  end

  setup(function()
    lab = SL.start()
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert(rc == 0, out)
    secrets = H.read(lab.dir .. "/state/secrets.yaml")
  end)

  teardown(function() if lab then lab:stop() end end)

  it("adds a worker: exactly that node is created, configured, joined and registered", function()
    site(add_w3)
    lab:control("DELETE", "/log")
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local creates = lines(out, "+ ")
    table.sort(creates) -- the record goes in while the node is being configured
    assert.are.same({ "+ create dns w3.lab.test. A " .. ip(23), "+ create talos config w3",
      "+ create vm w3 (pve3, 2 cores, 4096 MiB, 20 GiB)" }, creates)
    assert.are.same({}, lines(out, "~ "))
    assert.are.same({}, lines(out, "- "))
    local w3 = lab:vms().w3
    for _, req in ipairs(lab:mutating()) do
      if req:match("^pve") then assert.matches("/nodes/pve3/", req) end
    end
    assert.is_truthy(w3)
    assert.matches(ip(23):gsub("%.", "%%.") .. "\n", lab:dig("w3.lab.test"))
    local node = assert(k8s():get("v1", "Node", "w3"))
    assert.are.equal("w3", node.metadata.name)
  end)

  it("removes a worker: cordon, drain, Node object, Talos reset, VM and record", function()
    local c = k8s()
    assert(c:request("POST", "/api/v1/namespaces/default/pods", { body = { apiVersion = "v1", kind = "Pod",
      metadata = { name = "on-w3", namespace = "default" },
      spec = { nodeName = "w3", containers = { { name = "c", image = "registry.k8s.io/pause:3.10" } } } } }))
    site(function(t) return t end) -- the site without w3
    local plan = lab:tlr("plan", "recipes/cluster.lua")
    assert.matches("%- delete node w3 %(worker: cordon, drain, Talos reset, vm %d+ on pve3, dns%)", plan)
    lab:control("DELETE", "/log")
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert.is_nil(lab:vms().w3)
    assert.are.equal("", lab:dig("w3.lab.test"))
    assert.is_nil((c:get("v1", "Node", "w3")))
    assert.is_nil((c:get("v1", "Pod", "on-w3", { namespace = "default" })))
    local mutating = lab:mutating()
    assert.is_true(has(mutating, "^k8s POST /api/v1/namespaces/default/pods/on%-w3/eviction"), table.concat(mutating, "\n"))
    assert.is_true(has(mutating, "^talos POST /machine%.MachineService/Reset"))
    assert.is_nil(require("tlr.json").decode(H.read(lab.dir .. "/state/inventory.json")).nodes.w3)
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("refuses to take two of three control planes out at once, before any change", function()
    local bad = site(function(t) return without("cp3")(without("cp2")(t)) end)
    assert.is_truthy(bad)
    lab:control("DELETE", "/log")
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(2, rc, out)
    assert.matches("below the quorum of 2", out)
    assert.are.same({}, lab:mutating())
  end)

  it("takes a control plane out through etcd, then brings it back", function()
    site(without("cp3"))
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert.matches("%- delete node cp3 %(controlplane: cordon, drain, leave etcd", out)
    assert.is_true(has(lab:mutating(), "^talos POST /machine%.MachineService/EtcdLeaveCluster"))
    local members = assert(talos(11):etcd_member_list())
    assert.are.equal(2, #members)
    assert.is_nil(lab:vms().cp3)
    local yaml = require "tlr.yaml"
    local tc = yaml.decode(H.read(lab.dir .. "/state/talosconfig"))
    assert.are.same({ ip(11), ip(12) }, tc.contexts[tc.context].endpoints) -- talosctl goes where etcd is
    site(function(t) return t end)
    out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert.matches("%+ create vm cp3", out)
    members = assert(talos(11):etcd_member_list())
    assert.are.equal(3, #members)
    tc = yaml.decode(H.read(lab.dir .. "/state/talosconfig"))
    assert.are.same({ ip(11), ip(12), ip(13) }, tc.contexts[tc.context].endpoints)
  end)

  it("resizes in place: one node at a time, a cold restart each, uncordoned after", function()
    site(function(t)
      return (t:gsub('(name = "w[12]", role = "worker", host = "pve%d", ip = "[%d.]+")', '%1, memory = "6G"'))
    end)
    local plan = lab:tlr("plan", "recipes/cluster.lua")
    assert.matches("~ update vm w1 %(cold restart, one node at a time with health gates%)\n    memory: 4096 → 6144", plan)
    lab:control("DELETE", "/events")
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local pve = lab:pve()
    local vms = lab:vms()
    for _, name in ipairs { "w1", "w2" } do
      local v = vms[name]
      local cur = assert(pve:get("/nodes/{node}/qemu/{vmid}/config", { node = v.node, vmid = v.vmid, current = true }))
      assert.are.equal(6144, tonumber(cur.memory))
      assert.are.equal("running", v.status)
    end
    -- one at a time: w1 stopped and started again before w2 stopped
    local order = {}
    for _, e in ipairs(lab:control("GET", "/events?limit=2000") or {}) do
      if (e.type == "vm.stopped" or e.type == "vm.started") and (e.name == "w1" or e.name == "w2") then
        order[#order + 1] = e.name .. " " .. e.type
      end
    end
    assert.are.same({ "w1 vm.stopped", "w1 vm.started", "w2 vm.stopped", "w2 vm.started" }, order)
    -- w1 is uncordoned before w2 is cordoned and drained (its pods need somewhere to go)
    local patches = {}
    for _, req in ipairs(lab:mutating()) do
      local node = req:match("^k8s PATCH /api/v1/nodes/(w%d)$")
      if node then patches[#patches + 1] = node end
    end
    assert.are.same({ "w1", "w1", "w2", "w2" }, patches)
    for _, name in ipairs { "w1", "w2" } do
      local node = assert(k8s():get("v1", "Node", name))
      assert.is_not_true(node.spec.unschedulable)
    end
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("moves a worker to another host: the old machine goes, a new one is made there", function()
    site(function(t) return (t:gsub('name = "w2", role = "worker", host = "pve2"', 'name = "w2", role = "worker", host = "pve3"')) end)
    local plan = lab:tlr("plan", "recipes/cluster.lua")
    assert.matches("! replace node w2 %(moved from pve2 to pve3%)", plan)
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local w2 = lab:vms().w2
    assert.are.equal("pve3", w2.node)
    assert.are.equal(1, w2.count)
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("destroys and comes up again after kill -9 at several points: no duplicates, same secrets", function()
    site(function(t) return t end)
    local out, rc = lab:tlr("destroy", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local _, total = lab:vms()
    assert.are.equal(0, total)
    -- the first VM made, the first node configured, etcd bootstrapped, the apps being applied
    for _, point in ipairs { "/events?type=vm.created", "/events?type=talos.up", "/events?type=talos.bootstrapped",
      "/log?service=k8s&method=PATCH" } do
      lab:control("DELETE", "/events")
      lab:control("DELETE", "/log")
      local pid = lab:spawn("run", "recipes/cluster.lua")
      local deadline = os.time() + 60
      while os.time() < deadline and #(lab:control("GET", point) or {}) == 0 do H.capture("sleep 0.01") end
      assert.is_true(os.execute("kill -9 " .. pid) == true, "the run ended before " .. point)
      H.capture("sleep 0.2")
    end
    out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local vms, count = lab:vms()
    assert.are.equal(5, count)
    for _, name in ipairs { "cp1", "cp2", "cp3", "w1", "w2" } do assert.are.equal(1, vms[name].count) end
    assert.are.equal(secrets, H.read(lab.dir .. "/state/secrets.yaml"))
    assert.matches(ip(22):gsub("%.", "%%.") .. "\n", lab:dig("w2.lab.test"))
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("converges through transient faults: lock timeouts, 596, dropped connections, a failing task", function()
    local out, rc = lab:tlr("destroy", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    for _, rule in ipairs {
      { path = "/nodes/*/qemu/*/resize", method = "PUT", lock_timeout = true, count = 2 },
      { path = "/cluster/resources", status = 596, message = "Connection timed out", count = 3 },
      { path = "/nodes/*/qemu/*/status/start", method = "POST", task_exitstatus = "start failed: QEMU exited with code 1", count = 1 },
      { path = "/nodes/*/qemu", method = "POST", drop = true, count = 1 },
      { service = "talos", path = "/machine.MachineService/ApplyConfiguration", status = 14, message = "connection reset", count = 2 },
    } do
      assert(lab:control("POST", "/faults", rule))
    end
    local runs = 0
    repeat
      out, rc = lab:tlr("run", "recipes/cluster.lua")
      runs = runs + 1
    until rc == 0 or runs == 4
    assert.are.equal(0, rc, out)
    assert.are.same({}, lab:control("GET", "/faults")) -- every rule fired its count
    local vms, count = lab:vms()
    assert.are.equal(5, count)
    for _, name in ipairs { "cp1", "cp2", "cp3", "w1", "w2" } do assert.are.equal(1, vms[name].count) end
    assert.are.equal(secrets, H.read(lab.dir .. "/state/secrets.yaml"))
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("gives two new nodes two ids when a removal frees one in between", function()
    site(function(t)
      t = without("w1")(t)
      return (t:gsub('(\n    { name = "w2",[^\n]+\n)', '%1    { name = "w3", role = "worker", host = "pve3", ip = "'
        .. ip(23) .. '" },\n    { name = "w4", role = "worker", host = "pve1", ip = "' .. ip(24) .. '" },\n'))
    end)
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local vms = lab:vms()
    assert.is_nil(vms.w1)
    assert.is_truthy(vms.w3 and vms.w4)
    assert.are_not.equal(vms.w3.vmid, vms.w4.vmid)
    assert.are_not.equal(vms.w2.vmid, vms.w3.vmid)
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)

  it("destroys the workers alone the graceful way; the cluster stays", function()
    site(function(t) return t end)
    lab:control("DELETE", "/log")
    local out, rc = lab:tlr("destroy", "recipes/worker.lua")
    assert.are.equal(0, rc, out)
    assert.matches("%- delete node w1 %(worker: cordon, drain, Talos reset", out)
    local vms = lab:vms()
    assert.is_nil(vms.w1)
    assert.is_nil(vms.w2)
    assert.is_truthy(vms.cp1)
    local mutating = lab:mutating()
    assert.is_true(has(mutating, "^k8s PATCH /api/v1/nodes/w1"), table.concat(mutating, "\n")) -- cordoned
    assert.is_nil((k8s():get("v1", "Node", "w2")))
    assert.are.equal("", lab:dig("w2.lab.test"))
    assert.are.equal(3, #assert(talos(11):etcd_member_list()))
    local plan = lab:tlr("plan", "recipes/cluster.lua")
    assert.matches("%+ create vm w1", plan)
    assert.not_matches("create vm cp", plan)
  end)
end)

describe("a DHCP site", function()
  local lab
  setup(function()
    lab = SL.start()
    lab:edit_site(function(t)
      return (t:gsub('(role = "%a+", host = "pve%d", )ip = "[%d.]+"', '%1ip = "dhcp"')
        :gsub('cidr = "([%d.]+)%.0%.0/24"', 'cidr = "%1.0.0/16"'))
    end)
  end)
  teardown(function() if lab then lab:stop() end end)

  it("learns the addresses from the guest agent, registers them and converges", function()
    local out, rc = lab:tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    local inv = require("tlr.json").decode(H.read(lab.dir .. "/state/inventory.json"))
    local prefix = lab.net:gsub("%.", "%%.") .. "%.1%.%d+$" -- the lab's DHCP pool
    for _, name in ipairs { "cp1", "cp2", "cp3", "w1", "w2" } do
      local addr = inv.nodes[name].ip
      assert.matches(prefix, addr)
      assert.are.equal(addr .. "\n", lab:dig(name .. ".lab.test"))
    end
    assert.matches("cp1%s+Ready", out)
    assert.matches("No changes%.", (lab:tlr("plan", "recipes/cluster.lua")))
  end)
end)
