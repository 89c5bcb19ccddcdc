-- The lab's Talos and Kubernetes fakes across a cluster's life, on a private
-- lab with the cluster of examples/lab.lua brought up by `tlr run`: every
-- node registers a Node (roles, taints, the site's kubelet version), a
-- deleted Node comes back while its kubelet runs, a stopped machine's Node
-- goes NotReady, drain support (fieldSelector, eviction, disruption budgets,
-- cordon by every patch type), etcd leave / remove by id / forfeit
-- leadership with etcd's quorum rule, and destroy then run again: the same
-- cluster comes up with a fresh etcd and a fresh API server.
local H = require "helper"
local L = require "lab_helper"
local json = require "tlr.json"
local sched = require "tlr.sched"

local bin = os.getenv("TLR_BIN") or "build/tlr"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function eventually(what, fn, timeout)
  local deadline = sched.now() + (timeout or 10)
  local last
  while sched.now() < deadline do
    local ok, v, why = pcall(fn)
    if ok and v then return v end
    last = ok and tostring(why or v) or v
    sched.sleep(0.03)
  end
  error("timed out waiting for " .. what .. " (last: " .. tostring(last) .. ")")
end

local function by_name(items)
  local out = {}
  for _, x in ipairs(items) do out[x.metadata.name] = x end
  return out
end

local function condition(obj, type_)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == type_ then return c end
  end
end

describe("the lab's Talos and Kubernetes fakes through a cluster's life", function()
  local dir, env, net, site_file, kube_version

  local function tlr(mode)
    local vars = {}
    for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. quote(v) end
    return H.capture(string.format("env %s %s %s recipes/cluster.lua %s", table.concat(vars, " "), bin, mode,
      quote(site_file)))
  end

  local function control(method, path)
    return json.decode((H.capture(string.format("curl -s -X %s %s", method, quote(env.LAB_CONTROL .. path)))))
  end

  local function ip(host) return net .. ".0." .. host end
  local function k8s()
    return assert(require("tlr.k8s").connect { kubeconfig = H.read(dir .. "/state/kubeconfig"), retry_budget = 0 })
  end
  local function talos(host)
    return assert(require("tlr.talos.client").connect(ip(host), { talosconfig = H.read(dir .. "/state/talosconfig") }))
  end
  local function members(host)
    local list = assert(talos(host):etcd_member_list())
    local names = {}
    for _, m in ipairs(list) do names[#names + 1] = m.hostname end
    table.sort(names)
    return names, list
  end
  local function service(host, id)
    for _, s in ipairs(assert(talos(host):service_list())) do
      if s.id == id then return s end
    end
  end
  local function node(c, name) return (c:get("v1", "Node", name)) end

  -- powers a VM off or on through the Proxmox API
  local function power(host, action)
    local st = control("GET", "/talos/nodes/" .. ip(host))
    local pve = assert(require("tlr.proxmox").connect { endpoint = env.PVE_ENDPOINT, token = env.PVE_TOKEN,
      fingerprint = env.PVE_FINGERPRINT })
    assert(pve:run_task("POST", "/nodes/{node}/qemu/{vmid}/status/" .. action,
      { node = st.pve_node, vmid = st.vmid }))
  end

  setup(function()
    local t0 = sched.now()
    dir = H.tmpdir()
    math.randomseed(os.time() + math.floor(sched.now() * 1000) % 100000)
    net = "127." .. math.random(100, 250)
    local out, rc = H.capture("bash tests/lab/ctl.sh start " .. quote(dir .. "/lab") .. " " .. net .. " test")
    assert(rc == 0, out)
    env = assert(L.read_env(dir .. "/lab/env"))
    local text = H.read("examples/lab.lua"):gsub("127%.77%.", net .. ".")
    text = text:gsub('\n  name = "lab",\n', '\n  name = "lab",\n  state_dir = "' .. dir .. '/state",\n', 1)
    kube_version = "v" .. assert(text:match('kubernetes = {%s*version = "([%d.]+)"'))
    site_file = dir .. "/site.lua"
    H.write(site_file, text)
    out, rc = tlr("run")
    assert(rc == 0, out)
    io.stderr:write(string.format("lab_cluster_spec: lab and bring-up in %.1fs\n", sched.now() - t0))
  end)

  teardown(function()
    if dir then H.capture("bash tests/lab/ctl.sh stop " .. quote(dir .. "/lab")) end
  end)

  it("registers every node: Ready, roles, taints, addresses, the site's kubelet and API server versions", function()
    local c = k8s()
    local nodes = by_name(assert(c:list("v1", "Node")).items)
    local hosts = { cp1 = 11, cp2 = 12, cp3 = 13, w1 = 21, w2 = 22 }
    local count = 0
    for name, host in pairs(hosts) do
      local n = assert(nodes[name], name)
      count = count + 1
      local cp = name:match("^cp") ~= nil
      assert.are.equal("True", condition(n, "Ready").status, name)
      assert.are.equal(name, n.metadata.labels["kubernetes.io/hostname"])
      assert.are.equal("linux", n.metadata.labels["kubernetes.io/os"])
      assert.are.equal("amd64", n.metadata.labels["kubernetes.io/arch"])
      assert.are.equal(cp, n.metadata.labels["node-role.kubernetes.io/control-plane"] == "", name)
      local tainted = false
      for _, t in ipairs(n.spec.taints or {}) do
        if t.key == "node-role.kubernetes.io/control-plane" and t.effect == "NoSchedule" then tainted = true end
      end
      assert.are.equal(cp, tainted, name)
      assert.are.same({ type = "InternalIP", address = ip(host) }, n.status.addresses[1])
      assert.are.equal(kube_version, n.status.nodeInfo.kubeletVersion)
      assert.are.equal("Talos (v1.11.6)", n.status.nodeInfo.osImage)
      assert.matches("^10%.244%.%d+%.0/24$", n.spec.podCIDR)
    end
    assert.are.equal(5, count)
    assert.are.equal(5, #assert(c:list("v1", "Node")).items)
    assert.are.equal(kube_version, assert(c:version()).gitVersion)
    -- a control plane's kubelet keeps the mirror pods of its static pods
    local mirror = assert(c:get("v1", "Pod", "kube-apiserver-cp1", { namespace = "kube-system" }))
    assert.are.equal("cp1", mirror.spec.nodeName)
    assert.is_string(mirror.metadata.annotations["kubernetes.io/config.mirror"])
  end)

  it("registers a deleted Node again while its kubelet runs", function()
    local c = k8s()
    local uid = node(c, "w1").metadata.uid
    assert(c:delete("v1", "Node", "w1"))
    local back = eventually("w1 registered again", function()
      local n = node(c, "w1")
      return n and n.metadata.uid ~= uid and condition(n, "Ready").status == "True" and n
    end)
    assert.are.equal(ip(21), back.status.addresses[1].address)
  end)

  it("evicts a pod bound to w2 (found with a field selector), within its disruption budget", function()
    local c = k8s()
    assert(c:apply { apiVersion = "v1", kind = "Namespace", metadata = { name = "drain" } })
    local function pod(name, node_name)
      return { apiVersion = "v1", kind = "Pod", metadata = { name = name, namespace = "drain", labels = { app = "web" } },
        spec = { nodeName = node_name, containers = { { name = "web", image = "nginx:1.27" } } } }
    end
    assert(c:apply { pod("web-a", "w2"), pod("web-b", "w2"), pod("web-c", "w1") })
    eventually("pods running", function()
      for _, p in ipairs(assert(c:list("v1", "Pod", { namespace = "drain" })).items) do
        if (condition(p, "Ready") or {}).status ~= "True" then return false, p.metadata.name end
      end
      return true
    end)
    local on_w2 = assert(c:list("v1", "Pod", { all_namespaces = true, field_selector = "spec.nodeName=w2" })).items
    local names = {}
    for _, p in ipairs(on_w2) do names[#names + 1] = p.metadata.name end
    table.sort(names)
    assert.are.same({ "web-a", "web-b" }, names)

    local function evict(name, body)
      return c:request("POST", "/api/v1/namespaces/drain/pods/" .. name .. "/eviction", { body = body or
        { apiVersion = "policy/v1", kind = "Eviction", metadata = { name = name, namespace = "drain" } } })
    end
    local _, msg, code, st = evict("web-a", { apiVersion = "policy/v1", kind = "Eviction", metadata = { name = "web-b" } })
    assert.are.equal("EINVAL", code, msg)
    assert.are.equal("name in URL does not match name in Eviction object", st.message)
    _, msg, code = evict("nope")
    assert.are.equal("ENOTFOUND", code, msg)
    assert.matches('pods "nope" not found', msg, 1, true)

    -- a budget that needs all three pods: 429 once the disruption controller has seen it
    local pdb = { apiVersion = "policy/v1", kind = "PodDisruptionBudget", metadata = { name = "web", namespace = "drain" },
      spec = { minAvailable = 3, selector = { matchLabels = { app = "web" } } } }
    assert(c:apply(pdb))
    local function budget(allowed)
      return eventually("budget status", function()
        local b = assert(c:get("policy/v1", "PodDisruptionBudget", "web", { namespace = "drain" }))
        return b.status.observedGeneration == b.metadata.generation and b.status.disruptionsAllowed == allowed and b
      end)
    end
    assert.are.equal(3, budget(0).status.currentHealthy)
    _, msg, code, st = evict("web-a")
    assert.are.equal(429, st.code, msg)
    assert.are.equal("TooManyRequests", st.reason)
    assert.are.equal("Cannot evict pod as it would violate the pod's disruption budget.", st.message)
    assert.are.equal("The disruption budget web needs 3 healthy pods and has 3 currently", st.details.causes[1].message)

    pdb.spec.minAvailable = 2
    assert(c:apply(pdb))
    budget(1)
    local reply, res = evict("web-a")
    assert.are.equal(201, res.status)
    assert.are.equal("Success", reply.status)
    local p = c:get("v1", "Pod", "web-a", { namespace = "drain" })
    assert.is_true(p == nil or p.metadata.deletionTimestamp ~= nil) -- terminating, or already gone
    eventually("web-a gone", function() return c:get("v1", "Pod", "web-a", { namespace = "drain" }) == nil end)
    assert.are.equal(0, budget(0).status.disruptionsAllowed)
    _, msg, code, st = evict("web-b")
    assert.are.equal(429, st.code, msg)
  end)

  it("deletes the pods of a Node deleted while its machine is off; the Node returns with the machine", function()
    local c = k8s()
    assert(c:get("v1", "Pod", "web-c", { namespace = "drain" }))
    power(21, "stop")
    eventually("w1 NotReady", function() return condition(node(c, "w1"), "Ready").status == "Unknown" end)
    assert(c:delete("v1", "Node", "w1"))
    eventually("web-c collected", function() return c:get("v1", "Pod", "web-c", { namespace = "drain" }) == nil end)
    sched.sleep(0.3) -- several node_register periods: no kubelet to register it
    assert.is_nil((node(c, "w1")))
    power(21, "start")
    eventually("w1 Ready again", function()
      local n = node(c, "w1")
      return n and condition(n, "Ready").status == "True"
    end)
  end)

  it("cordons a node with a strategic merge patch, a JSON merge patch or server-side apply", function()
    local c = k8s()
    local path = "/api/v1/nodes/w2"
    local function unschedulable_taint()
      for _, t in ipairs(node(c, "w2").spec.taints or {}) do
        if t.key == "node.kubernetes.io/unschedulable" and t.effect == "NoSchedule" then return true end
      end
      return false
    end
    assert(c:request("PATCH", path, { body = { spec = { unschedulable = true } },
      content_type = "application/strategic-merge-patch+json" }))
    assert.is_true(node(c, "w2").spec.unschedulable)
    eventually("unschedulable taint", unschedulable_taint)
    assert(c:request("PATCH", path, { body = { spec = { unschedulable = json.null } },
      content_type = "application/merge-patch+json" }))
    assert.is_nil(node(c, "w2").spec.unschedulable)
    eventually("taint gone", function() return not unschedulable_taint() end)
    assert(c:request("PATCH", path, { query = { fieldManager = "drainer", force = "true" },
      body = { apiVersion = "v1", kind = "Node", metadata = { name = "w2" }, spec = { unschedulable = true } },
      content_type = "application/apply-patch+yaml" }))
    assert.is_true(node(c, "w2").spec.unschedulable)
    assert(c:request("PATCH", path, { body = { { op = "replace", path = "/spec/unschedulable", value = false } },
      content_type = "application/json-patch+json" }))
    assert.is_false(node(c, "w2").spec.unschedulable)
  end)

  it("marks a stopped machine's Node NotReady; etcd refuses a leave that would break its quorum", function()
    local c = k8s()
    power(13, "stop")
    local n = eventually("cp3 NotReady", function()
      local x = node(c, "cp3")
      return condition(x, "Ready").status == "Unknown" and x
    end)
    assert.are.equal("Kubelet stopped posting node status.", condition(n, "Ready").message)
    assert.are.same({ "cp1", "cp2", "cp3" }, (members(11))) -- cp3 is down, still a member
    local ok, msg, code, details = talos(12):etcd_leave_cluster()
    assert.is_nil(ok)
    assert.are.equal("EAPI", code)
    assert.are.equal(2, details.grpc_status) -- Unknown
    assert.matches("failed to leave cluster: failed to remove member %d+: "
      .. "etcdserver: re%-configuration failed due to not enough started members", msg)
    power(13, "start")
    eventually("cp3's etcd healthy", function()
      local ok2, s = pcall(service, 13, "etcd")
      return ok2 and s and s.health.healthy
    end)
    eventually("cp3 Ready", function() return condition(node(c, "cp3"), "Ready").status == "True" end)
  end)

  it("lets cp3 leave etcd, forfeits leadership and removes a member by id", function()
    assert(talos(13):etcd_leave_cluster())
    assert.are.same({ "cp1", "cp2" }, (members(11)))
    assert.are.equal("Finished", service(13, "etcd").state)
    local _, msg, code, details = talos(21):etcd_leave_cluster()
    assert.are.equal(12, details.grpc_status, msg) -- Unimplemented
    assert.matches("etcd leave is only available on control plane nodes", msg, 1, true)
    assert.are.equal("EAPI", code)
    -- cp1 bootstrapped etcd and leads it
    assert.are.equal("", assert(talos(12):etcd_forfeit_leadership()).member)
    assert.are.equal("cp2", assert(talos(11):etcd_forfeit_leadership()).member)
    assert.are.equal("", assert(talos(11):etcd_forfeit_leadership()).member)
    _, msg, code, details = talos(11):etcd_remove_member(4242)
    assert.are.equal(5, details.grpc_status, msg) -- NotFound
    assert.matches("failed to remove member 4242: etcdserver: member not found", msg, 1, true)
    local _, list = members(11)
    local cp2
    for _, m in ipairs(list) do if m.hostname == "cp2" then cp2 = m.id end end
    assert(talos(11):etcd_remove_member(cp2))
    assert.are.same({ "cp1" }, (members(11)))
    assert.is_false(service(12, "etcd").health.healthy) -- its etcd was removed under it
  end)

  it("brings the same cluster up again after destroy: fresh etcd, fresh API server", function()
    local c = k8s()
    assert(c:apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "before-destroy", namespace = "default" },
      data = { a = "1" } })
    local secrets = H.read(dir .. "/state/secrets.yaml")
    local out, rc = tlr("destroy")
    assert.are.equal(0, rc, out)
    local st = control("GET", "/talos/state")
    assert.are.equal(1, #st.clusters)
    assert.is_false(st.clusters[1].bootstrapped)
    assert.are.same({}, st.clusters[1].members)
    out, rc = tlr("run")
    assert.are.equal(0, rc, out)
    assert.are.equal(secrets, H.read(dir .. "/state/secrets.yaml"))
    c = k8s()
    local _, _, code = c:get("v1", "ConfigMap", "before-destroy", { namespace = "default" })
    assert.are.equal("ENOTFOUND", code)
    assert.are.equal(5, #assert(c:list("v1", "Node")).items)
    assert.are.same({ "cp1", "cp2", "cp3" }, (members(11)))
    st = control("GET", "/talos/state")
    assert.is_true(st.clusters[1].bootstrapped)
    assert.are.equal("cp1", st.clusters[1].leader)
  end)
end)
