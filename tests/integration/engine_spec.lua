-- The engine and recipes end to end on a private lab (Proxmox, Image Factory,
-- Talos nodes, Kubernetes, BIND): bring-up with recipes/cluster.lua, plan
-- after run is empty, a re-run makes no mutating call (the fakes' request
-- log), an invalid site fails before any request, destroy leaves nothing.
local H = require "helper"
local SL = require "site_lab"

local bin = os.getenv("TLR_BIN") or "build/tlr"
local quote = SL.quote

describe("engine and recipes", function()
  local lab, dir, env, net, site_file

  local function tlr(mode, recipe, site, extra) return lab:tlr(mode, recipe, site, extra) end
  local function control(method, path) return lab:control(method, path) end
  local function mutating() return lab:mutating() end

  setup(function()
    lab = SL.start()
    dir, env, net, site_file = lab.dir, lab.env, lab.net, lab.site_file
  end)

  teardown(function() if lab then lab:stop() end end)

  it("refuses an invalid site before any request, exit 2", function()
    control("DELETE", "/log")
    local bad = dir .. "/bad.lua"
    H.write(bad, H.read(site_file):gsub('ip = "' .. net:gsub("%.", "%%.") .. '%.0%.12"',
      'ip = "' .. net .. '.0.11"'))
    local out, rc = tlr("run", "recipes/cluster.lua", bad)
    assert.are.equal(2, rc, out)
    assert.matches("bad%.lua: nodes", out)
    assert.are.same({}, control("GET", "/log?limit=100"))
  end)

  it("brings up the cluster: VMs, records, Talos, kubeconfig, apps, nodes", function()
    local out, rc = tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    for _, want in ipairs { "+ create vm cp1", "+ create vm w2", "+ create dns api.lab.test",
      "+ create talos config cp3", "+ create etcd bootstrap on cp1", "+ create kubeconfig",
      "+ create apps", "NAME%s+STATUS", "cp1%s+Ready" } do
      assert.matches(want, out)
    end
    assert.matches("run in [%d.]+s %(image [%d.]+s, vms", out)
    local st = control("GET", "/pve/state")
    local count = 0
    for _, node in pairs(st.nodes) do for _ in pairs(node.vms or {}) do count = count + 1 end end
    assert.are.equal(5, count)
    local dig = H.capture(string.format("dig +short -p %s @%s w2.lab.test A", env.DNS_PORT, env.DNS_SERVER))
    assert.matches(net:gsub("%.", "%%.") .. "%.0%.22", dig)
    -- state: private files, the kubeconfig works
    local mode = H.capture("stat -c %a " .. quote(dir .. "/state/kubeconfig"))
    assert.matches("^600", mode)
    assert.matches("certificate%-authority%-data", H.read(dir .. "/state/kubeconfig"))
    -- Argo CD's manifest as installed, for the drift check of idle runs (no download then)
    assert.are.equal(H.read("tests/fixtures/argocd/install.yaml"), H.read(dir .. "/state/argocd-install.yaml"))
  end)

  it("prints state files for scripts with tlr output", function()
    local vars = {}
    for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. quote(v) end
    local function output(args)
      local p = io.popen(string.format("env %s %s output %s 2>/dev/null", table.concat(vars, " "), bin, args))
      local out = p:read("a")
      local ok, _, status = p:close()
      return out, ok and 0 or status
    end
    local out, rc = output("kubeconfig " .. quote(site_file))
    assert.are.equal(0, rc)
    assert.are.equal(H.read(dir .. "/state/kubeconfig"), out)
    local inv = output("inventory --site " .. quote(site_file))
    assert.matches('"nodes"', inv)
    local _, bad = output("nonsense " .. quote(site_file))
    assert.are.equal(2, bad)
  end)

  it("plans nothing after a run", function()
    local out, rc = tlr("plan", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert.matches("No changes%.", out)
    assert.not_matches("\n[%+~!%-] ", out)
  end)

  it("re-runs without a single mutating call, every recipe alone too", function()
    control("DELETE", "/log")
    for _, r in ipairs { "cluster", "image", "control-plane", "worker", "dns", "bootstrap", "apps" } do
      local out, rc = tlr("run", "recipes/" .. r .. ".lua")
      assert.are.equal(0, rc, r .. ": " .. out)
      assert.matches("Up to date: nothing changed%.", out)
    end
    assert.are.same({}, mutating())
    assert.is_true(#control("GET", "/log?limit=5000") > 0) -- it did read
  end)

  it("puts back app objects someone deleted or changed (plan shows the drift, run repairs it)", function()
    local c = assert(require("tlr.k8s").connect { kubeconfig = H.read(dir .. "/state/kubeconfig") })
    assert(c:delete("argoproj.io/v1alpha1", "Application", "traefik", { namespace = "argocd" }))
    assert(c:request("PATCH", "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/default", {
      body = { spec = { addresses = { net .. ".0.200-" .. net .. ".0.201" } } },
      content_type = "application/merge-patch+json" }))
    local plan, rc = tlr("plan", "recipes/cluster.lua")
    assert.are.equal(0, rc, plan)
    assert.matches("~ update app object Application argocd/traefik %(drifted: missing%)", plan)
    assert.matches("~ update app object IPAddressPool metallb%-system/default %(drifted: spec%.addresses%[0%]%)", plan)
    local out
    out, rc = tlr("run", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert(c:get("argoproj.io/v1alpha1", "Application", "traefik", { namespace = "argocd" }))
    local pool = assert(c:get("metallb.io/v1beta1", "IPAddressPool", "default", { namespace = "metallb-system" }))
    assert.are.equal(net .. ".0.100-" .. net .. ".0.120", pool.spec.addresses[1])
    assert.matches("No changes%.", (tlr("plan", "recipes/cluster.lua")))
  end)

  it("destroys: no VMs, no records, the secrets kept", function()
    local secrets = H.read(dir .. "/state/secrets.yaml")
    local out, rc = tlr("destroy", "recipes/cluster.lua")
    assert.are.equal(0, rc, out)
    assert.matches("%- delete vm cp1", out)
    local st = control("GET", "/pve/state")
    for _, node in pairs(st.nodes) do assert.are.same({}, node.vms or {}) end
    local dig = H.capture(string.format("dig +short -p %s @%s cp1.lab.test A", env.DNS_PORT, env.DNS_SERVER))
    assert.are.equal("", dig)
    assert.are.equal(secrets, H.read(dir .. "/state/secrets.yaml"))
    assert.matches("%- delete dns api%.lab%.test", out)
  end)
end)
