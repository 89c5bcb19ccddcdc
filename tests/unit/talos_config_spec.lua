-- Talos machine configuration: generation against talosctl's output, node
-- rendering, patches and validation (lua/tlr/talos/{config,patch,validate}.lua).
local config = require "tlr.talos.config"
local patch = require "tlr.talos.patch"
local validate = require "tlr.talos.validate"
local secrets = require "tlr.talos.secrets"
local crypto = require "tlr.crypto"
local yaml = require "tlr.yaml"
local read = require("helper").read

local GEN = "tests/fixtures/talos-gen/"
-- Talos minor -> the fixture holding its `talosctl gen config` output
-- (identical outputs are kept once; see tests/fixtures/talos-gen/SOURCES).
local FIXTURE_OF = { ["1.8"] = "v1.8", ["1.9"] = "v1.8", ["1.10"] = "v1.8", ["1.11"] = "v1.8",
  ["1.12"] = "v1.12", ["1.13"] = "v1.13" }
local VERSIONS = { "1.8", "1.9", "1.10", "1.11", "1.12", "1.13" }
local ROLES = { "controlplane", "worker" }

-- Deep equality; on a difference returns false and the path.
local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

local function assert_same(a, b)
  local ok, why = same(a, b)
  assert(ok, why)
end

local function fixture(version, role)
  return assert(config.decode(read(GEN .. FIXTURE_OF[version] .. "-base-" .. role .. ".yaml")))
end

local fixture_bundle
local function bundle()
  fixture_bundle = fixture_bundle
    or assert(secrets.decode(read("tests/fixtures/talos-config/secrets.yaml")))
  return fixture_bundle
end

-- The stability test's input: NewInput("base", "https://base:6443", "1.28.0").
local function base(version, extra)
  local c = { name = "base", endpoint = "https://base:6443", secrets = bundle(),
    talos_version = version, kubernetes_version = "1.28.0" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Secret values replaced by placeholders (empty worker keys stay empty).
local SECRET_PATHS = {
  { "machine", "token" }, { "machine", "ca", "crt" }, { "machine", "ca", "key" },
  { "cluster", "id" }, { "cluster", "secret" }, { "cluster", "token" },
  { "cluster", "secretboxEncryptionSecret" },
  { "cluster", "ca", "crt" }, { "cluster", "ca", "key" },
  { "cluster", "aggregatorCA", "crt" }, { "cluster", "aggregatorCA", "key" },
  { "cluster", "serviceAccount", "key" }, { "cluster", "etcd", "ca", "crt" },
  { "cluster", "etcd", "ca", "key" },
}
local function redact(docs)
  for _, p in ipairs(SECRET_PATHS) do
    local t = docs[1]
    for i = 1, #p - 1 do t = t and t[p[i]] end
    if t and t[p[#p]] and t[p[#p]] ~= "" then t[p[#p]] = "<" .. table.concat(p, ".") .. ">" end
  end
  return docs
end

local function fails(pattern, ok, msg, code)
  assert.is_nil(ok)
  assert.are.equal("EINVAL", code)
  assert.matches(pattern, msg)
end

local function b64(s) return crypto.base64_encode(s) end

-- A lab cluster for render.
local CILIUM = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cilium\n"
local function lab(version, extra)
  local c = {
    name = "lab", endpoint = "https://k8s.lab.example:6443", secrets = bundle(),
    talos_version = version, vip = "10.0.0.10", dns_name = "api.lab.example",
    install_disk = "/dev/vda",
    schematic = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
    nameservers = { "10.0.0.1" },
  }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end
local function cp1(extra)
  local n = { name = "cp1", role = "controlplane",
    network = { mac = "BC:24:11:00:00:01", addresses = { "10.0.0.11/24" }, gateway = "10.0.0.1" } }
  for k, v in pairs(extra or {}) do n[k] = v end
  return n
end
local function w1(extra)
  local n = { name = "w1", role = "worker", network = { mac = "BC:24:11:00:00:21", dhcp = true } }
  for k, v in pairs(extra or {}) do n[k] = v end
  return n
end

describe("tlr.talos.config", function()
  describe("generate matches talosctl gen config", function()
    for _, v in ipairs(VERSIONS) do
      for _, role in ipairs(ROLES) do
        it("for Talos " .. v .. " " .. role .. " with the fixture's secrets, exactly", function()
          local docs = assert(config.generate(base(v), role))
          assert_same(fixture(v, role), docs)
          assert.are.equal(tonumber(v:match("%.(%d+)")) >= 12 and 2 or 1, #docs)
        end)

        it("for Talos " .. v .. " " .. role .. " with fresh secrets as placeholders", function()
          local fresh = assert(secrets.generate { talos_version = v,
            from = { certs = { k8sserviceaccount = bundle().certs.k8sserviceaccount } } })
          local docs = assert(config.generate(base(v, { secrets = fresh }), role))
          assert.are_not.equal(fixture(v, role)[1].cluster.id, docs[1].cluster.id)
          assert_same(redact(fixture(v, role)), redact(docs))
        end)
      end
    end

    it("for talosctl's overrides (SANs, disk, sysctls, mirror, CNI, domain, ...)", function()
      local docs = assert(config.generate(base("v1.11.6", {
        additional_sans = { "foo", "bar" }, install_disk = "/dev/vda",
        install_extra_kernel_args = { "foo=bar", "bar=baz" }, sysctls = { foo = "bar" },
        registry_mirrors = { ["ghcr.io"] = { "https://ghcr.io.my-mirror.com" } },
        local_api_server_port = 5443, dns_domain = "example.com",
        cni = { name = "custom", urls = { "https://example.com/cni.yaml" } },
        allow_scheduling_on_control_planes = true,
      }), "controlplane"))
      docs = assert(patch.apply(docs, read(GEN .. "overrides-patch.yaml")))
      assert_same(assert(config.decode(read(GEN .. "v1.11-overrides-controlplane.yaml"))), docs)
    end)

    it("follows the version contract", function()
      local v11 = assert(config.generate(base("1.11"), "controlplane"))[1]
      local v12 = assert(config.generate(base("1.12"), "controlplane"))
      local v13 = assert(config.generate(base("1.13"), "controlplane"))
      assert.is_true(v11.machine.features.rbac)
      assert.are.same({ "base" }, v11.cluster.apiServer.certSANs)
      assert.is_nil(v11.machine.install.grubUseUKICmdline)
      assert.is_nil(v12[1].machine.features.rbac)
      assert.is_nil(v12[1].cluster.apiServer.certSANs)
      assert.is_true(v12[1].machine.install.grubUseUKICmdline)
      assert.are.same({ apiVersion = "v1alpha1", kind = "HostnameConfig", auto = "stable" }, v12[2])
      assert.is_table(v12[1].machine.network)
      assert.is_nil(v13[1].machine.network)
    end)

    it("defaults Kubernetes to the version talosctl of that release uses", function()
      local c = base("v1.11.6")
      c.kubernetes_version = nil
      local docs = assert(config.generate(c, "worker"))
      assert.are.equal("ghcr.io/siderolabs/kubelet:v1.34.1", docs[1].machine.kubelet.image)
      local con = assert(config.contract("v1.8.4"))
      assert.are.equal("1.31.4", con.kubernetes)
      assert.are.equal("v1.8.4", con.version)
    end)

    it("supports only Talos 1.8 to 1.13", function()
      fails("not supported", config.contract("v1.7.7"))
      fails("not supported", config.contract("1.14"))
      fails("bad Talos version", config.contract("latest"))
      fails("not supported", config.generate(base("v1.14.0"), "worker"))
    end)

    it("rejects bad input", function()
      fails("https:// URL", config.generate(base("1.11", { endpoint = "base:6443" }), "worker"))
      fails("cluster.cni must be", config.generate(base("1.11", { cni = "calico" }), "worker"))
      local broken = {}
      for k, v in pairs(bundle()) do broken[k] = v end
      broken.trustdinfo = { token = "nope" }
      fails("cluster.secrets: trustdinfo.token",
        config.generate(base("1.11", { secrets = broken }), "worker"))
      assert.has_error(function() config.generate(base("1.11", { hostname = "x" }), "worker") end)
      assert.has_error(function() config.generate(base("1.11"), "master") end)
      assert.has_error(function() config.generate(base("1.11", { name = false }), "worker") end)
    end)
  end)

  describe("encode", function()
    it("writes Talos's key order, 4-space indent, one document per config document", function()
      local docs = assert(config.generate(base("1.12"), "controlplane"))
      local text = assert(config.encode(docs))
      assert.matches("^version: v1alpha1\ndebug: false\npersist: true\nmachine:\n" ..
        "    type: controlplane\n    token: d8cwfa%.eyvpi0xwxyarbfid\n    ca:\n        crt: ", text)
      assert.matches("\ncluster:\n    id: [^\n]+\n    secret: [^\n]+\n    controlPlane:\n", text)
      assert.matches("\n    install:\n        wipe: false\n        grubUseUKICmdline: true\n", text)
      local raw = read(GEN .. "v1.12-base-controlplane.yaml")
      local tail = "\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"
      assert.are.equal(tail, text:sub(-#tail))
      assert.are.equal(tail, raw:sub(-#tail))
      assert_same(docs, assert(config.decode(text)))
    end)

    it("reads multi-document YAML and rejects non-mappings", function()
      local docs = assert(config.decode("a: 1\n---\n---\nkind: X\n"))
      assert.are.equal(2, #docs)
      fails("document 2 is not a mapping", config.decode("a: 1\n---\n- x\n"))
      fails("line", config.decode("a: [\n"))
    end)
  end)

  describe("render", function()
    for _, v in ipairs { "v1.8.4", "v1.11.6", "v1.12.1", "v1.13.0" } do
      it("makes a valid control plane with static addressing and the VIP for " .. v, function()
        local r = assert(config.render(lab(v), cp1()))
        local doc = r.docs[1]
        local m, c = doc.machine, doc.cluster
        local iface = m.network.interfaces[1]
        assert.are.same({ hardwareAddr = "bc:24:11:00:00:01" }, iface.deviceSelector)
        assert.are.same({ "10.0.0.11/24" }, iface.addresses)
        assert.are.same({ { network = "0.0.0.0/0", gateway = "10.0.0.1" } }, iface.routes)
        assert.are.same({ ip = "10.0.0.10" }, iface.vip)
        assert.is_nil(iface.dhcp)
        assert.are.same({ "10.0.0.1" }, m.network.nameservers)
        assert.are.equal("/dev/vda", m.install.disk)
        local installer = v == "v1.8.4" and "installer" or "nocloud-installer"
        assert.are.equal("factory.talos.dev/" .. installer .. "/" ..
          "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:" .. v, m.install.image)
        assert.are.same({ "10.0.0.10", "api.lab.example", "k8s.lab.example" }, m.certSANs)
        local api = {}
        for _, s in ipairs(c.apiServer.certSANs) do api[s] = true end
        assert.are.same({ ["10.0.0.10"] = true, ["api.lab.example"] = true,
          ["k8s.lab.example"] = true }, api)
        if v:match("^v1%.1[23]") then
          assert.is_nil(m.network.hostname)
          assert.are.same({ apiVersion = "v1alpha1", kind = "HostnameConfig", hostname = "cp1",
            auto = "off" }, r.docs[2])
        else
          assert.are.equal("cp1", m.network.hostname)
          assert.are.equal(1, #r.docs)
        end
        assert_same(r.docs, assert(config.decode(r.yaml)))
        assert.are.same({}, r.warnings)
      end)
    end

    it("takes routes, an interface name, an MTU and an IPv6 default gateway", function()
      local r = assert(config.render(lab("v1.11.6"), cp1 { network = { interface = "eth1",
        addresses = { "fd00::11/64" }, gateway = "fd00::1", mtu = 9000, nameservers = { "fd00::53" },
        routes = { { network = "192.168.0.0/16", gateway = "fd00::254", metric = 100 } } } }))
      local m = r.docs[1].machine
      local iface = m.network.interfaces[1]
      assert.are.equal("eth1", iface.interface)
      assert.is_nil(iface.deviceSelector)
      assert.are.equal(9000, iface.mtu)
      assert.are.same({ { network = "192.168.0.0/16", gateway = "fd00::254", metric = 100 },
        { network = "::/0", gateway = "fd00::1" } }, iface.routes)
      assert.are.same({ "fd00::53" }, m.network.nameservers)
      assert.are.same({ ip = "10.0.0.10" }, iface.vip)
    end)

    it("makes a DHCP worker without VIP or control-plane settings", function()
      local r = assert(config.render(lab("v1.11.6", { cni = "none", kube_proxy = false,
        inline_manifests = { { name = "cilium", contents = CILIUM } } }), w1()))
      local m, c = r.docs[1].machine, r.docs[1].cluster
      assert.are.same({ { deviceSelector = { hardwareAddr = "bc:24:11:00:00:21" }, dhcp = true } },
        m.network.interfaces)
      assert.are.equal("w1", m.network.hostname)
      assert.are.equal("", m.ca.key)
      assert.is_nil(c.inlineManifests)
      assert.is_nil(c.proxy)
      assert.are.same({ name = "none" }, c.network.cni)
      local plain = assert(config.render(lab("v1.11.6"), w1 { network = {} }))
      assert.is_nil(plain.docs[1].machine.network.interfaces)
    end)

    it("sets the CNI, Cilium manifest, manifests, scheduling, labels and kubelet args", function()
      local r = assert(config.render(lab("v1.12.1", {
        cni = "none", kube_proxy = false,
        inline_manifests = { { name = "cilium", contents = CILIUM } },
        extra_manifests = { "https://example.com/a.yaml" },
        allow_scheduling_on_control_planes = true,
        node_labels = { zone = "a" }, kubelet_extra_args = { ["max-pods"] = 200 },
      }), cp1 { node_labels = { rack = "r1" }, kubelet_extra_args = { ["v"] = "2" } }))
      local m, c = r.docs[1].machine, r.docs[1].cluster
      assert.are.same({ name = "none" }, c.network.cni)
      assert.are.same({ { name = "cilium", contents = CILIUM } }, c.inlineManifests)
      assert.are.same({ "https://example.com/a.yaml" }, c.extraManifests)
      assert.is_true(c.proxy.disabled)
      assert.is_true(c.allowSchedulingOnControlPlanes)
      assert.are.same({ ["node.kubernetes.io/exclude-from-external-load-balancers"] = "",
        zone = "a", rack = "r1" }, m.nodeLabels)
      assert.are.same({ ["max-pods"] = "200", v = "2" }, m.kubelet.extraArgs)
      assert.matches("\n        extraArgs:\n            max%-pods: '200'\n", r.yaml)
    end)

    it("applies cluster, role and node patches in that order (YAML, tables, JSON6902)", function()
      local cluster = lab("v1.11.6", {
        patches = "machine:\n  sysctls:\n    vm.max_map_count: '262144'\n" ..
          "  network:\n    hostname: from-cluster\n",
        controlplane_patches = { { op = "add", path = "/machine/sysctls/net.core.somaxconn",
          value = "1024" } },
        worker_patches = { machine = { sysctls = { worker = "yes" } } },
      })
      local node = cp1 { patches = { machine = { network = { hostname = "node-wins" } } } }
      local m = assert(config.render(cluster, node)).docs[1].machine
      assert.are.same({ ["vm.max_map_count"] = "262144", ["net.core.somaxconn"] = "1024" },
        m.sysctls)
      assert.are.equal("node-wins", m.network.hostname)
      local w = assert(config.render(cluster, w1()))
      assert.are.same({ ["vm.max_map_count"] = "262144", worker = "yes" },
        w.docs[1].machine.sysctls)
    end)

    it("reports patch and validation errors with the node, the path and the rule", function()
      local cluster = lab("v1.11.6")
      local ok, msg, code, errs = config.render(cluster, w1 { patches = {
        machine = { network = { interfaces = { {
          deviceSelector = { hardwareAddr = "bc:24:11:00:00:21" }, vip = { ip = "10.0.0.10" },
        } } } } } })
      fails("^w1: machine%.network%.interfaces%[0%]%.vip: a virtual %(shared%) IP is not allowed",
        ok, msg, code)
      assert.are.equal(msg, errs[1])
      fails("^cp1: machine%.install%.disk: either install disk or diskSelector",
        config.render(lab("v1.11.6", { install_disk = "" }), cp1()))
      fails("^cp1: machine%.bogus: schema: unknown key",
        config.render(cluster, cp1 { patches = { machine = { bogus = 1 } } }))
      fails("^cp1: machine%.install%.wipe: schema: boolean expected, got string",
        config.render(cluster, cp1 { patches = "machine:\n  install:\n    wipe: 'no'\n" }))
      fails("^cp1: machine%.network%.interfaces%[0%]%.addresses%[0%]: not an IP address or CIDR",
        config.render(cluster, cp1 { network = { mac = "bc:24:11:00:00:01",
          addresses = { "10.0.0.300/24" } } }))
      fails("^cp1: patch 1: json patch op 1 %(remove /machine/nope%): path not found",
        config.render(cluster, cp1 { patches = { { op = "remove", path = "/machine/nope" } } }))
      fails("^cp1: network: give mac or interface",
        config.render(cluster, cp1 { network = { addresses = { "10.0.0.11/24" } } }))
      fails("^cp1: .*not supported", config.render(lab("v1.7.0"), cp1()))
      assert.has_error(function()
        config.render(cluster, cp1 { network = { ip = "10.0.0.11" } })
      end)
      assert.has_error(function() config.render(cluster, { name = "x" }) end)
    end)
  end)

  describe("talosconfig", function()
    it("has the context, endpoints, nodes, the OS CA and an admin client certificate", function()
      local b = bundle()
      local text, tc = config.talosconfig("lab", b, { endpoints = { "10.0.0.11", "10.0.0.12" },
        nodes = { "10.0.0.11" } })
      assert.is_string(text)
      assert.are.equal("lab", tc.context)
      local ctx = tc.contexts.lab
      assert.are.same({ "10.0.0.11", "10.0.0.12" }, ctx.endpoints)
      assert.are.same({ "10.0.0.11" }, ctx.nodes)
      assert.are.equal(b64(b.certs.os.crt), ctx.ca)
      local crt = crypto.base64_decode(ctx.crt)
      assert.is_true(crypto.verify_chain(crt, { b.certs.os.crt }, { purpose = "client" }))
      assert.are.equal("O=os:admin", crypto.parse_cert(crt).subject_text)
      assert.matches("^%-%-%-%-%-BEGIN ED25519 PRIVATE KEY", crypto.base64_decode(ctx.key))
      assert.matches("^context: lab\ncontexts:\n    lab:\n        endpoints:\n", text)
      assert.matches("\n        ca: [^\n]+\n        crt: [^\n]+\n        key: [^\n]+\n$", text)
      assert.are.same(tc, yaml.decode(text))
    end)

    it("uses the admin certificate it is given and checks its input", function()
      local b = bundle()
      local admin = assert(secrets.admin_cert(b))
      local _, tc = config.talosconfig("lab", b, { endpoints = { "10.0.0.10" }, admin = admin })
      assert.are.equal(b64(admin.crt), tc.contexts.lab.crt)
      assert.is_nil(tc.contexts.lab.nodes)
      assert.has_error(function() config.talosconfig("lab", b, { endpoints = {} }) end)
      assert.has_error(function() config.talosconfig("lab", b, { endpoint = "x" }) end)
      fails("no OS CA", config.talosconfig("lab", { certs = {} }, { endpoints = { "x" } }))
    end)
  end)

  it("names Image Factory installer images", function()
    local id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    assert.are.equal("factory.talos.dev/nocloud-installer/" .. id .. ":v1.11.6",
      config.installer_image(id, "1.11.6"))
    assert.are.equal("factory.talos.dev/metal-installer-secureboot/" .. id .. ":v1.10.0",
      config.installer_image(id, "v1.10.0", { platform = "metal", secureboot = true }))
    assert.are.equal("factory.talos.dev/installer/" .. id .. ":v1.9.5",
      config.installer_image(id, "v1.9.5", { platform = "metal" }))
    assert.are.equal("f.example/installer/" .. id .. ":v1.9.5",
      config.installer_image(id, "v1.9.5", { host = "f.example", platform = "nocloud" }))
    assert.are.equal("f.example/metal-installer/" .. id .. ":v1.13.0",
      config.installer_image(id, "v1.13.0", { host = "f.example", platform = "metal" }))
    assert.has_error(function() config.installer_image("not hex", "v1.9.5") end)
  end)
end)

describe("tlr.talos.patch", function()
  local function doc()
    return {
      version = "v1alpha1",
      machine = {
        type = "worker", certSANs = yaml.array { "a" },
        network = { hostname = "h", interfaces = yaml.array {
          { interface = "eth0", addresses = yaml.array { "10.0.0.1/24" },
            vlans = yaml.array { { vlanId = 10, mtu = 1500 } } },
          { deviceSelector = { hardwareAddr = "aa:*" }, dhcp = true },
        } },
        install = { disk = "/dev/sda", wipe = true },
        nodeLabels = { a = "1" },
      },
      cluster = {
        network = { podSubnets = yaml.array { "10.244.0.0/16" } },
        apiServer = { auditPolicy = { rules = yaml.array { { level = "Metadata" } } },
          admissionControl = yaml.array { { name = "PodSecurity",
            configuration = { a = 1, b = 2 } } } },
      },
    }
  end

  describe("strategic merge", function()
    it("merges maps, replaces scalars, appends lists, and leaves the input alone", function()
      local d = doc()
      local out = assert(patch.merge({ d }, { machine = { certSANs = { "b" },
        install = { disk = "/dev/vda" }, nodeLabels = { b = "2" },
        kubelet = { extraArgs = { x = "y" } } } }))
      local m = out[1].machine
      assert.are.same({ "a", "b" }, m.certSANs)
      assert.is_true(yaml.is_array(m.certSANs))
      assert.are.equal("/dev/vda", m.install.disk)
      assert.are.same({ a = "1", b = "2" }, m.nodeLabels)
      assert.are.same({ x = "y" }, m.kubelet.extraArgs)
      assert.are.equal("/dev/sda", d.machine.install.disk)
      assert.are.same({ "a" }, d.machine.certSANs)
    end)

    it("keeps values on \"\", 0 and null but applies false", function()
      local out = assert(patch.merge({ doc() }, { machine = { type = "",
        install = { disk = yaml.null, wipe = false }, nodeLabels = { a = 0 } } }))
      local m = out[1].machine
      assert.are.equal("worker", m.type)
      assert.are.equal("/dev/sda", m.install.disk)
      assert.is_false(m.install.wipe)
      assert.are.equal("1", m.nodeLabels.a)
    end)

    it("replaces podSubnets, serviceSubnets and auditPolicy", function()
      local out = assert(patch.merge({ doc() }, { cluster = {
        network = { podSubnets = { "10.1.0.0/16" }, serviceSubnets = { "10.2.0.0/16" } },
        apiServer = { auditPolicy = { kind = "Policy" } } } }))
      local c = out[1].cluster
      assert.are.same({ "10.1.0.0/16" }, c.network.podSubnets)
      assert.are.same({ "10.2.0.0/16" }, c.network.serviceSubnets)
      assert.are.same({ kind = "Policy" }, c.apiServer.auditPolicy)
    end)

    it("merges interfaces by name or selector, vlans by id, admission plugins by name", function()
      local out = assert(patch.apply({ doc() }, [[
machine:
  network:
    interfaces:
      - interface: eth0
        addresses: [10.0.0.2/24]
        vlans:
          - vlanId: 10
            mtu: 9000
          - vlanId: 20
      - deviceSelector: {hardwareAddr: "aa:*"}
        mtu: 9000
      - interface: eth1
        dhcp: true
cluster:
  apiServer:
    admissionControl:
      - name: PodSecurity
        configuration: {b: 3}
      - name: Other
        configuration: {}
]]))
      local ifs = out[1].machine.network.interfaces
      assert.are.equal(3, #ifs)
      assert.are.same({ "10.0.0.1/24", "10.0.0.2/24" }, ifs[1].addresses)
      assert.are.same({ { vlanId = 10, mtu = 9000 }, { vlanId = 20 } }, ifs[1].vlans)
      assert.are.equal(9000, ifs[2].mtu)
      assert.is_true(ifs[2].dhcp)
      assert.are.equal("eth1", ifs[3].interface)
      local ac = out[1].cluster.apiServer.admissionControl
      assert.are.equal(2, #ac)
      assert.are.same({ a = 1, b = 3 }, ac[1].configuration)
    end)

    it("merges documents by kind and name and appends new ones", function()
      local docs = { doc(), { apiVersion = "v1alpha1", kind = "HostnameConfig", auto = "stable" } }
      local out = assert(patch.apply(docs, "apiVersion: v1alpha1\nkind: HostnameConfig\n" ..
        "hostname: x\nauto: 'off'\n---\n" ..
        "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\n"))
      assert.are.equal(3, #out)
      assert.are.same({ apiVersion = "v1alpha1", kind = "HostnameConfig", hostname = "x",
        auto = "off" }, out[2])
      assert.are.equal("data", out[3].name)
    end)

    it("refuses to merge a map into a list or a scalar", function()
      fails("machine%.certSANs: cannot merge a map into a list",
        patch.merge({ doc() }, { machine = { certSANs = { x = 1 } } }))
      fails("machine%.type: cannot merge a map into a string",
        patch.merge({ doc() }, { machine = { type = { x = 1 } } }))
    end)
  end)

  describe("$patch: delete", function()
    it("deletes keys, list items and documents", function()
      local docs = { doc(), { apiVersion = "v1alpha1", kind = "HostnameConfig", auto = "stable" } }
      local out = assert(patch.apply(docs, [[
machine:
  network:
    hostname:
      $patch: delete
    interfaces:
      - interface: eth0
        $patch: delete
  nodeLabels:
    c: "3"
---
apiVersion: v1alpha1
kind: HostnameConfig
$patch: delete
]]))
      assert.are.equal(1, #out)
      local net = out[1].machine.network
      assert.is_nil(net.hostname)
      assert.are.equal(1, #net.interfaces)
      assert.is_not_nil(net.interfaces[1].deviceSelector)
      assert.are.same({ a = "1", c = "3" }, out[1].machine.nodeLabels)
    end)

    it("fails for missing targets and unsupported places", function()
      local ifaces = "machine:\n  network:\n    interfaces:\n      - interface: "
      fails("path 'machine%.nope' not found",
        patch.apply({ doc() }, "machine:\n  nope:\n    $patch: delete\n"))
      fails("no item of 'machine%.network%.interfaces' matches",
        patch.apply({ doc() }, ifaces .. "eth9\n        $patch: delete\n"))
      fails("can't delete the v1alpha1 document",
        patch.apply({ doc() }, "version: v1alpha1\n$patch: delete\n"))
      fails("no document Foo/",
        patch.apply({ doc() }, "apiVersion: v1alpha1\nkind: Foo\n$patch: delete\n"))
      fails("cannot delete an inner key", patch.apply({ doc() },
        ifaces .. "eth0\n        vlans:\n          $patch: delete\n"))
    end)
  end)

  describe("JSON6902", function()
    it("adds, removes, replaces, moves, copies and tests", function()
      local out = assert(patch.apply({ doc() }, {
        { op = "add", path = "/machine/certSANs/0", value = "first" },
        { op = "add", path = "/machine/certSANs/-", value = "last" },
        { op = "add", path = "/machine/nodeLabels/example.com~1role", value = "x" },
        { op = "remove", path = "/machine/network/interfaces/1" },
        { op = "replace", path = "/machine/install/disk", value = "/dev/nvme0n1" },
        { op = "move", from = "/machine/nodeLabels/a", path = "/machine/nodeLabels/moved" },
        { op = "copy", from = "/machine/install", path = "/machine/installCopy" },
        { op = "test", path = "/machine/type", value = "worker" },
      }))
      local m = out[1].machine
      assert.are.same({ "first", "a", "last" }, m.certSANs)
      assert.are.same({ ["example.com/role"] = "x", moved = "1" }, m.nodeLabels)
      assert.are.equal(1, #m.network.interfaces)
      assert.are.equal("/dev/nvme0n1", m.install.disk)
      assert.are.same(m.install, m.installCopy)
      assert.are_not.equal(m.install, m.installCopy)
    end)

    it("reads operation lists from YAML and JSON text", function()
      local out = assert(patch.apply({ doc() },
        "- op: replace\n  path: /machine/type\n  value: controlplane\n"))
      assert.are.equal("controlplane", out[1].machine.type)
      out = assert(patch.apply({ doc() }, '[{"op":"add","path":"/debug","value":true}]'))
      assert.is_true(out[1].debug)
    end)

    it("fails on a failed test, missing paths and bad indices", function()
      fails("op 1 %(test /machine/type%): test failed",
        patch.apply({ doc() }, { { op = "test", path = "/machine/type", value = "controlplane" } }))
      fails("replace /machine/nope%): path not found",
        patch.apply({ doc() }, { { op = "replace", path = "/machine/nope", value = 1 } }))
      fails("bad array index '9'",
        patch.apply({ doc() }, { { op = "add", path = "/machine/certSANs/9", value = "x" } }))
      fails("unknown op 'merge'", patch.apply({ doc() }, { { op = "merge", path = "/machine" } }))
      fails("cannot move a value into itself",
        patch.apply({ doc() }, { { op = "move", from = "/machine", path = "/machine/x" } }))
      assert.has_error(function() patch.json6902(doc(), { { path = "/x" } }) end)
    end)
  end)
end)

describe("tlr.talos.validate", function()
  local function gen(v, role)
    return assert(config.generate(base(v, { install_disk = "/dev/sda" }), role))
  end
  local function cp() return gen("v1.11.6", "controlplane") end
  local function worker() return gen("v1.11.6", "worker") end
  local function check(docs, v)
    return validate.config(docs, { node = "n1", talos_version = v or "v1.11.6" })
  end

  it("accepts talosctl's output for every version and role", function()
    for _, v in ipairs(VERSIONS) do
      for _, role in ipairs(ROLES) do
        local ok, warnings = validate.config(fixture(v, role),
          { talos_version = v, mode = "container" })
        assert(ok, v .. " " .. role .. ": " .. tostring(warnings))
        assert.are.same({}, warnings)
      end
      local ok, msg = validate.config(fixture(v, "worker"), { talos_version = v })
      assert.is_nil(ok)
      assert.are.equal("config: machine.install.disk: " ..
        "either install disk or diskSelector should be defined", msg)
    end
  end)

  it("enforces the CA key rules by role", function()
    local w = worker()
    w[1].machine.ca.key = cp()[1].machine.ca.key
    w[1].cluster.ca.key = cp()[1].cluster.ca.key
    w[1].cluster.etcd = cp()[1].cluster.etcd
    local ok, msg, code, errs = check(w)
    fails("^n1: ", ok, msg, code)
    local all = table.concat(errs, "\n")
    assert.matches("n1: machine%.ca%.key: issuing Talos API CA key is not allowed on " ..
      "non%-controlplane nodes", all)
    assert.matches("n1: cluster%.ca%.key: issuing Kubernetes API CA key is not allowed", all)
    assert.matches("n1: cluster%.etcd: etcd config is only allowed on control plane machines", all)
    local c = cp()
    c[1].machine.ca.key = ""
    fails("n1: machine%.ca%.key: issuing CA key is required for controlplane nodes", check(c))
    c = cp()
    c[1].machine.ca.crt = b64("garbage")
    fails("n1: machine%.ca%.crt: not a certificate", check(c))
  end)

  it("checks tokens, persist, endpoint, DNS domain, CNI, manifests and discovery", function()
    local cases = {
      { "machine%.token: trustd token", function(d) d.machine.token = "short" end },
      { "cluster%.token: bootstrap token", function(d)
        d.cluster.token = "ABCDEF.0123456789abcdef" end },
      { "persist: must be true", function(d) d.persist = false end },
      { "cluster%.controlPlane%.endpoint: schema: must match %^https://", function(d)
        d.cluster.controlPlane.endpoint = "http://base:6443" end },
      { "cluster%.network%.dnsDomain: 'bad_%-%.%.x' is not a valid DNS name", function(d)
        d.cluster.network.dnsDomain = "bad_-..x" end },
      { "cluster%.network%.cni%.urls: must be empty for the flannel CNI", function(d)
        d.cluster.network.cni = { name = "flannel", urls = yaml.array { "https://x" } } end },
      { "cluster%.inlineManifests%[1%]%.name: inline manifest name 'a' is duplicate", function(d)
        d.cluster.inlineManifests = yaml.array { { name = "a", contents = "" },
          { name = "a", contents = "" } } end },
      { "cluster%.id: cluster discovery service requires %.cluster%.id", function(d)
        d.cluster.id = nil end },
      { "machine%.features%.hostDNS: forwardKubeDNSToHost requires", function(d)
        d.machine.features.hostDNS.enabled = false end },
      { "machine%.nodeLabels%.bad label: invalid label name", function(d)
        d.machine.nodeLabels["bad label"] = "x" end },
      { "machine%.type: schema: must be one of controlplane, worker, got 'master'", function(d)
        d.machine.type = "master" end },
      { "machine%.network%.interfaces%[0%]: interface or deviceSelector is required", function(d)
        d.machine.network.interfaces = yaml.array { { dhcp = true } } end },
      { "machine%.network%.interfaces%[0%]%.routes%[0%]%.gateway: not an IP address", function(d)
        d.machine.network.interfaces = yaml.array { { interface = "eth0",
          routes = yaml.array { { network = "0.0.0.0/0", gateway = "gw" } } } } end },
    }
    for _, case in ipairs(cases) do
      local docs = cp()
      case[2](docs[1])
      local ok, msg, code, errs = check(docs)
      assert.is_nil(ok, case[1])
      assert.are.equal("EINVAL", code)
      assert(table.concat(errs, "\n"):match("n1: " .. case[1]),
        case[1] .. " not in:\n" .. tostring(msg))
    end
  end)

  it("knows the 1.12 documents and rules", function()
    local docs = gen("v1.12.0", "controlplane")
    assert.is_true((check(docs, "v1.12.0")))
    docs[1].machine.install.extraKernelArgs = yaml.array { "console=ttyS0" }
    fails("n1: machine%.install%.extraKernelArgs: install%.extraKernelArgs and " ..
      "install%.grubUseUKICmdline", check(docs, "v1.12.0"))
    docs = gen("v1.12.0", "controlplane")
    docs[2].hostname = "cp1"
    fails("n1: HostnameConfig%.auto: 'auto' and 'hostname' cannot be set at the same time",
      check(docs, "v1.12.0"))
    docs[2].auto = "off"
    docs[1].machine.network.hostname = "cp1"
    fails("n1: machine%.network%.hostname: static hostname is already set", check(docs, "v1.12.0"))
    docs[1].machine.network.hostname = nil
    docs[2].auto = "sometimes"
    fails("n1: HostnameConfig%.auto: schema: must be one of stable, off", check(docs, "v1.12.0"))
    -- grubUseUKICmdline is not in the 1.11 schema
    fails("n1: machine%.install%.grubUseUKICmdline: schema: unknown key",
      check(gen("v1.12.0", "worker"), "v1.11.0"))
  end)

  it("checks other documents against their schema and handles unknown kinds by version", function()
    local docs = cp()
    docs[2] = { apiVersion = "v1alpha1", kind = "NetworkRuleConfig", name = "r",
      portSelector = { ports = yaml.array { 80, "1000-2000", true }, protocol = "tcp" } }
    fails("n1: NetworkRuleConfig%.portSelector%.ports%[2%]: schema: matches 0 of the allowed forms",
      check(docs))
    docs[2] = { apiVersion = "v1alpha1", kind = "WatchdogTimerConfig", device = "/dev/watchdog0",
      timeout = "2 minutes" }
    fails("n1: WatchdogTimerConfig%.timeout: schema: must match", check(docs))
    docs[2].timeout = "2m30s"
    assert.is_true((check(docs)))
    docs[3] = { apiVersion = "v1alpha1", kind = "LinkConfig", name = "eth0" }
    fails("n1: LinkConfig: unknown document kind", check(docs))
    docs = gen("v1.12.0", "worker")
    docs[3] = { apiVersion = "v1alpha1", kind = "LinkConfig", name = "eth0" }
    local ok, warnings = check(docs, "v1.12.0")
    assert.is_true(ok)
    assert.are.same({ "n1: LinkConfig: not checked against a schema (the schema copy is " ..
      "Talos 1.11's)" }, warnings)
    docs[4] = { apiVersion = "v1alpha1", kind = "LinkConfig", name = "eth0" }
    fails("n1: LinkConfig: duplicate document", check(docs, "v1.12.0"))
    fails("n1: v1alpha1: the v1alpha1 document is missing", check({ docs[2] }, "v1.12.0"))
  end)

  it("matches the schema's regular expressions", function()
    local dur = "^[-+]?(((\\d+(\\.\\d*)?|\\d*(\\.\\d+)+)([nuµm]?s|m|h))|0)+$"
    for _, s in ipairs { "10s", "1h30m", "1.5µs", "0", "-2m", ".5h", "300ms" } do
      assert.is_true(validate.regex(dur, s), s)
    end
    for _, s in ipairs { "10", "abc", "1x", "", "1h 30m" } do
      assert.is_false(validate.regex(dur, s), s)
    end
    assert.is_true(validate.regex("^[0-9a-f.:]+/\\d{1,3}$", "fd00::1/64"))
    assert.is_false(validate.regex("^[0-9a-f.:]+/\\d{1,3}$", "fd00::1/1234"))
    assert.is_true(validate.regex("^(tcp|udp)://", "udp://10.0.0.1:514"))
    assert.is_true(validate.regex("b+c", "aabbbcc"))
    assert.is_false(validate.regex("^b+c", "aabbbcc"))
  end)

  it("parses IP addresses and CIDRs", function()
    for _, s in ipairs { "10.0.0.1", "::1", "fd00::10", "2001:db8:0:0:0:0:2:1",
      "::ffff:10.0.0.1" } do
      assert.is_true(validate.is_ip(s), s)
    end
    for _, s in ipairs { "10.0.0.256", "10.0.0", "01.2.3.4", "fd00:::1", "1:2:3:4:5:6:7:8:9",
      "x" } do
      assert.is_false(validate.is_ip(s), s)
    end
    assert.is_true(validate.is_cidr("10.0.0.0/8"))
    assert.is_true(validate.is_cidr("fd00::/64"))
    assert.is_false(validate.is_cidr("10.0.0.0/33"))
    assert.is_false(validate.is_cidr("10.0.0.0"))
  end)

  it("rejects bad options", function()
    assert.has_error(function() validate.config({}, { strict = true }) end)
    assert.has_error(function() validate.config({}, { mode = "cloud" }) end)
    assert.has_error(function() validate.config({}, { talos_version = "latest" }) end)
  end)
end)
