-- The full bring-up bench (issue 6): `tlr run recipes/cluster.lua` on a
-- private lab (Proxmox, Image Factory, Talos nodes, Kubernetes, Cloudflare
-- fakes and a real BIND) with the `realistic` profile, jitter 0, for two
-- shapes over pve1..pve3: 3 control planes + 2 workers and 3 + 30.  Each
-- shape gets a fresh lab.  Printed per shape: wall time, the critical-path
-- bound computed from the profile read back in that run (docs/bench.md
-- derives it), their ratio, the run's per-phase timings, the requests per
-- service, and where the time goes: each step of the chain as the bound
-- has it against what the lab's request and event logs show.
-- Figures only: nothing is asserted.      build/tlr bench/bringup.lua
-- Environment: TLR_BENCH_SHAPES (default "3+2,3+30"), TLR_BIN (default
-- build/tlr), TLR_BENCH_KEEP=1 keeps the run's files (logs, events, site).
package.path = "./tests/?.lua;./bench/?.lua;" .. package.path
local L = require "lab_helper"
local H = require "helper"
local http = require "tlr.http"
local json = require "tlr.json"
local sched = require "tlr.sched"

local now = sched.now
local fmt = string.format
local BIN = os.getenv("TLR_BIN") or "build/tlr"
local SHAPES = os.getenv("TLR_BENCH_SHAPES") or "3+2,3+30"
local KEEP = os.getenv("TLR_BENCH_KEEP") == "1"
local HOSTS = { "pve1", "pve2", "pve3" } -- pve1 answers the API; the others are proxied
local STORAGE_LIMIT = 2 -- tlr.proxmox.vm's default storage_limit, unless the site sets one
local APPLY_GAP = 0.02 -- talos/node.js applyInMaintenance: the reply goes out, 20 ms later the node goes on

-- request_latency, plus proxy_latency for the hosts pve1 forwards to
local function pve_lat(pve, host) return pve.request_latency + (host ~= HOSTS[1] and pve.proxy_latency or 0) end

local out = require "out"
local report, note, quote = out.report, out.note, out.quote

-- ---------- the lab ----------

-- ctl.sh starts lab.js and BIND and lists both PIDs in DIR/env; stop kills exactly those.
local function start_lab(dir)
  local last
  for _ = 1, 3 do -- another lab may hold a random net already
    local net = "127." .. math.random(100, 250)
    local out, rc = H.capture(fmt("bash tests/lab/ctl.sh start %s %s realistic", quote(dir .. "/lab"), net))
    if rc == 0 then
      return { dir = dir .. "/lab", net = net, env_file = dir .. "/lab/env", env = assert(L.read_env(dir .. "/lab/env")) }
    end
    last = out
    H.capture("bash tests/lab/ctl.sh stop " .. quote(dir .. "/lab"))
  end
  error("lab did not start: " .. tostring(last), 0)
end

local function stop_lab(dir) H.capture("bash tests/lab/ctl.sh stop " .. quote(dir .. "/lab")) end

local function control(lab, method, path, body)
  local r, msg = http.request { method = method, url = lab.env.LAB_CONTROL .. path, timeout = 60,
    body = body and json.encode(body) or nil, headers = body and { ["Content-Type"] = "application/json" } or nil }
  if not r then error(fmt("lab %s %s: %s", method, path, tostring(msg)), 0) end
  local v = json.decode(r.body)
  if r.status ~= 200 then error(fmt("lab %s %s: %d %s", method, path, r.status, r.body), 0) end
  return v
end

-- jitter 0 in every section that has one, so each duration is the profile's value; read back.
local function exact_profile(lab)
  local patch = {}
  for section, vals in pairs(control(lab, "GET", "/profile").profile) do
    if vals.jitter ~= nil then patch[section] = { jitter = 0 } end
  end
  control(lab, "PATCH", "/profile", patch)
  return control(lab, "GET", "/profile").profile
end

local function show_profile(p)
  local keys = {
    pve = { "jitter", "request_latency", "proxy_latency", "node_workers", "download", "create", "disk_alloc",
      "disk_import", "resize", "start", "task_visible" },
    factory = { "jitter", "request_latency", "build" },
    talos = { "jitter", "boot", "etcd_ready", "etcd_start", "etcd_join", "etcd_promote", "kubelet", "services" },
    k8s = { "jitter", "request_latency", "crd_establish", "rollout_start", "rollout", "argo_sync", "argo_health",
      "webhook_not_ready", "lb_ip", "issuer_ready" },
  }
  for _, section in ipairs { "pve", "factory", "talos", "k8s" } do
    local parts = {}
    for _, k in ipairs(keys[section]) do parts[#parts + 1] = fmt("%s %g", k, p[section][k]) end
    note(fmt("profile %s: %s", section, table.concat(parts, ", ")))
  end
  note(fmt("profile cloudflare: jitter %g (not on the chain: the site uses BIND)", p.cloudflare.jitter))
end

-- ---------- the site ----------

-- A Lua table as Lua source (sorted keys; strings, numbers, booleans, tables).
local function to_lua(v, indent)
  indent = indent or ""
  if type(v) == "string" then return fmt("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local inner, parts = indent .. "  ", {}
  for _, item in ipairs(v) do parts[#parts + 1] = inner .. to_lua(item, inner) end
  local keys = {}
  for k in pairs(v) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local key = k:match("^[%a_][%w_]*$") and k or fmt("[%q]", k)
    parts[#parts + 1] = inner .. key .. " = " .. to_lua(v[k], inner)
  end
  if #parts == 0 then return "{}" end
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

local function renet(v, net)
  if type(v) == "string" then return (v:gsub("127%.77%.", net .. ".")) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = renet(x, net) end
  return out
end

-- examples/lab.lua in the lab's net with a private state_dir and the shape's
-- nodes, spread round-robin over the hosts (cp1 on pve1, cp2 on pve2, ...).
local function make_site(lab, dir, cps, workers)
  local chunk = assert(load(H.read("examples/lab.lua"), "=examples/lab.lua", "t", {}))
  local site = renet(chunk(), lab.net)
  -- the bound's apps chain is the one of this site: MetalLB, Traefik on a pool address,
  -- cert-manager with an ACME issuer, external-dns, Argo CD with an app-of-apps
  local a = site.apps or {}
  if not (a.metallb and a.ingress and a.ingress.ip and a.cert_manager and a.cert_manager.email and a.external_dns
      and a.argocd and a.argocd.repo) then
    error("examples/lab.lua's apps changed: bench/bringup.lua's bound models MetalLB, Traefik with an address,"
      .. " cert-manager with ACME, external-dns and an Argo CD app-of-apps", 0)
  end
  site.state_dir = dir .. "/state"
  local nodes = {}
  for i = 1, cps + workers do
    local cp = i <= cps
    local n = cp and i or i - cps
    nodes[i] = { name = (cp and "cp" or "w") .. n, role = cp and "controlplane" or "worker",
      host = HOSTS[(i - 1) % #HOSTS + 1], ip = fmt("%s.0.%d", lab.net, (cp and 10 or 20) + n) }
  end
  assert(20 + workers < 100, "worker addresses would reach the MetalLB range")
  site.nodes = nodes
  local path = dir .. "/site.lua"
  H.write(path, "-- written by bench/bringup.lua from examples/lab.lua\nreturn " .. to_lua(site) .. "\n")
  return site, path
end

-- ---------- the run ----------

-- The lab clock (epoch seconds, what the lab's logs carry) = sched.now() + offset.
local function clock_offset()
  local p = io.popen("date +%s.%N")
  local t0 = now()
  local epoch = tonumber(p:read("a"))
  p:close()
  return epoch - (t0 + now()) / 2
end

-- Runs tlr with the lab's env sourced as `make demo` does; stderr (--json
-- events) is read as it comes and each line stamped with the lab clock.
local function run_tlr(lab, dir, site_path)
  local offset = clock_offset()
  local out_file, time_file = dir .. "/stdout", dir .. "/time"
  local timer = os.execute("command -v /usr/bin/time >/dev/null 2>&1") == true
    and fmt("/usr/bin/time -f '%%U %%S %%M' -o %s ", quote(time_file)) or ""
  -- (the site, from examples/lab.lua, takes Argo CD's manifest from a local file: the lab has no internet)
  local cmd = fmt("set -a && . %s && set +a && exec %s%s --json run recipes/cluster.lua %s"
    .. " 2>&1 >%s", quote(lab.env_file), timer, BIN, quote(site_path), quote(out_file))
  local run = { events = {}, phases = {}, errors = {} }
  local t0 = now()
  run.start = t0 + offset
  local p = assert(io.popen(cmd))
  for line in p:lines() do
    local t = now() + offset
    local ok, e = pcall(json.decode, line)
    if not (ok and type(e) == "table") or e.level == "error" then run.errors[#run.errors + 1] = line end
    if ok and type(e) == "table" then
      e.at = t
      run.events[#run.events + 1] = e
      if e.event == "phase" then
        run.phases[#run.phases + 1] = { name = e.phase, seconds = e.seconds, ends = t, starts = t - e.seconds }
      end
    end
  end
  local done = p:close()
  run.wall = now() - t0
  run.ok = done == true
  run.stdout = H.read(out_file)
  run.summary = run.stdout:match("\nrun in [^\n]+") or run.stdout:match("^run in [^\n]+")
  local tf = io.open(time_file)
  if tf then
    local u, s, kb = tf:read("a"):match("([%d.]+)%s+([%d.]+)%s+(%d+)")
    tf:close()
    run.cpu, run.rss_mb = u and tonumber(u) + tonumber(s), kb and tonumber(kb) / 1024
  end
  return run
end

local function phase(run, name)
  for _, p in ipairs(run.phases) do if p.name == name then return p end end
end

-- One SOA query to the lab's BIND: its round trip (dig's "Query time").
local function bind_rtt(lab)
  local out = H.capture(fmt("dig +tries=1 +time=2 -p %s @%s %s SOA", lab.env.DNS_PORT, lab.env.DNS_SERVER, lab.env.DNS_ZONE))
  local ms = tonumber(out:match("Query time: (%d+) msec") or "")
  return ms and ms / 1000
end

-- ---------- the bound ----------

--- The critical-path bound: the longest chain of waits the remote side
--- imposes, from the profile `p` of this run, the site's nodes and the
--- order of the flow.  Returns the bound and its milestones (lab seconds
--- from the run's start).  docs/bench.md derives every line.
local function critical_path(p, nodes, storage_slots)
  local pve, fac, tal, k = p.pve, p.factory, p.talos, p.k8s
  local function lat(host) return pve_lat(pve, host) end
  local c = pve.create + 2 * pve.disk_alloc + pve.disk_import -- qmcreate: cloud-init drive + imported scsi0
  local slots = math.min(storage_slots or STORAGE_LIMIT, pve.node_workers)
  local at, per_host = {}, {}
  for _, n in ipairs(nodes) do
    per_host[n.host] = per_host[n.host] or {}
    table.insert(per_host[n.host], n)
  end
  local image = 0
  for host, list in pairs(per_host) do
    -- schematic POST, download-url POST, then the task: the factory's answer (latency + build) and `download`
    local img = fac.request_latency + lat(host) + fac.request_latency + fac.build + pve.download
    image = math.max(image, img)
    -- control planes first (their chains are longer), then workers, each in site order
    table.sort(list, function(a, b)
      if (a.role == "controlplane") ~= (b.role == "controlplane") then return a.role == "controlplane" end
      return a.index < b.index
    end)
    for i, n in ipairs(list) do
      local round, slot = (i - 1) // slots + 1, (i - 1) % slots
      local chain = img + pve.request_latency -- the lookup before the first create
        + round * (c + pve.resize + 2 * lat(host)) -- each slot: create and resize back to back
        + slot * pve.disk_alloc -- the slots' first allocations queue on the storage lock
        + pve.start + lat(host)
      local workers = img + i * (c + pve.resize + pve.start) / pve.node_workers
      at[n.name] = { started = math.max(chain, workers), slot = slot, round = round }
    end
  end
  local boot, first_secure = nil, math.huge
  for _, n in ipairs(nodes) do
    local a = at[n.name]
    a.maintenance = a.started + tal.boot
    a.up = a.maintenance + APPLY_GAP -- ApplyConfiguration; a disk image is an installed Talos: apid at once
    if n.role == "controlplane" then
      boot = boot or n
      first_secure = math.min(first_secure, a.up)
    end
  end
  local b = at[boot.name]
  b.bootstrap = b.up + tal.etcd_ready
  b.etcd = b.bootstrap + tal.etcd_start
  local ready, last = 0, nil
  for _, n in ipairs(nodes) do
    local a = at[n.name]
    if n.role == "controlplane" then
      if n ~= boot then a.etcd = math.max(a.up + tal.etcd_join, b.etcd) + tal.etcd_start end
      a.ready = math.max(a.etcd + tal.kubelet, a.up + tal.services)
    else
      -- apid needs trustd on a control plane to sign its certificate; kubelet counts from the apply
      a.ready = math.max(a.up + tal.kubelet, first_secure, a.up + tal.services)
    end
    if a.ready > ready then ready, last = a.ready, n.name end
  end
  local m = { image = image, boot = boot.name, last = last, at = at }
  m.health = ready -- Talos health: every node's etcd/kubelet/boot checks pass
  m.kubeconfig = m.health -- the Kubeconfig call (the Talos fake adds no latency)
  -- apps (the k8s fake): Argo CD's namespace, then its objects; ready once its rollouts are done
  m.argocd = m.kubeconfig + 2 * k.request_latency + math.max(k.crd_establish, k.rollout_start + k.rollout)
  m.applications = m.argocd + 2 * k.request_latency -- namespaces and Secrets, then the Applications
  local charts = m.applications + k.argo_sync + k.rollout_start + k.rollout -- synced charts' workloads available
  m.core = math.max(m.applications + k.argo_health, charts) -- cert-manager, MetalLB, external-dns Healthy
  m.webhook = m.applications + k.argo_sync + k.crd_establish + k.webhook_not_ready
  m.pool = math.max(m.core, m.webhook) + k.request_latency -- IPAddressPool accepted by MetalLB's webhook
  -- its LoadBalancer Service gets an address: the pool's event schedules a pass over the Services
  -- after lb_ip, and that pass gives each Service its address after another lb_ip (controllers.js)
  m.traefik = math.max(m.pool + 2 * k.lb_ip, charts)
  m.issuer = math.max(m.core + k.request_latency, charts) + k.issuer_ready
  m.gitops = math.max(m.traefik, m.issuer) + k.request_latency -- the app-of-apps, after the core services
  m.apps = m.gitops + math.max(k.argo_sync, k.argo_health)
  m.bound = m.apps + k.request_latency -- the nodes, listed through the kubeconfig
  return m.bound, m
end

-- ---------- what the lab saw ----------

local function lab_logs(lab)
  local log = control(lab, "GET", "/log?limit=1000000")
  local events = control(lab, "GET", "/events?limit=1000000")
  return log, events
end

local function count_requests(log)
  local by, order = {}, {}
  for _, e in ipairs(log) do
    local s = by[e.service]
    if not s then
      s = { total = 0, methods = {}, failed = 0 }
      by[e.service] = s
      order[#order + 1] = e.service
    end
    s.total = s.total + 1
    s.methods[e.method] = (s.methods[e.method] or 0) + 1
    -- talos logs gRPC codes (0 = OK; refused handshakes as method TLS), the others HTTP statuses
    local okay
    if e.service == "talos" then okay = e.status == 0 and e.method ~= "TLS"
    else okay = (e.status or 0) >= 200 and e.status < 400 end
    if not okay then s.failed = s.failed + 1 end
  end
  table.sort(order)
  return by, order
end

-- The actual milestones (lab clock relative to the run's start) and the
-- lags: how long after the remote side was ready tlr took the next step.
local function actual_path(run, p, nodes, log, events, m)
  local t0 = run.start
  local rel = function(t) return t and t - t0 end
  local ev = {}
  for _, e in ipairs(events) do
    if e.name then
      ev[e.name] = ev[e.name] or {}
      ev[e.name][e.type] = ev[e.name][e.type] or e.time -- the first of each kind
    end
  end
  local ip_of, vmid_of = {}, {}
  for _, n in ipairs(nodes) do ip_of[n.ip] = n.name end
  for _, e in ipairs(events) do if e.type == "vm.created" and e.name then vmid_of[tostring(e.vmid)] = e.name end end
  local step = {} -- name -> {create, resize, start, apply}
  local function at(name) step[name] = step[name] or {}; return step[name] end
  local download, first_create = {}, {}
  local bootstrap_ok, pool_ok, metallb_ok, k8s_first
  local metallb_seen = {}
  local k8s_calls = {}
  for _, e in ipairs(log) do
    local path, params = e.path or "", e.params or {}
    if e.service == "pve" and e.method == "POST" and path:match("^/nodes/[^/]+/storage/[^/]+/download%-url$") then
      download[params.node] = download[params.node] or e.time
    elseif e.service == "pve" and e.method == "POST" and path:match("^/nodes/[^/]+/qemu$") and params.name then
      at(params.name).create = at(params.name).create or e.time
      first_create[params.node] = first_create[params.node] or e.time
    elseif e.service == "pve" and e.method == "PUT" and path:match("/resize$") then
      local name = vmid_of[path:match("/qemu/(%d+)/resize$")]
      if name then at(name).resize = at(name).resize or e.time end
    elseif e.service == "pve" and e.method == "POST" and path:match("/status/start$") then
      local name = vmid_of[path:match("/qemu/(%d+)/status/start$")]
      if name then at(name).start = at(name).start or e.time end
    elseif e.service == "talos" and path:match("/ApplyConfiguration$") and ip_of[e.node] then
      at(ip_of[e.node]).apply = at(ip_of[e.node]).apply or e.time
    elseif e.service == "talos" and path:match("/Bootstrap$") and e.status == 0 then
      bootstrap_ok = bootstrap_ok or e.time
    elseif e.service == "k8s" then
      k8s_first = k8s_first or e.time
      if e.method == "PATCH" then k8s_calls[#k8s_calls + 1] = e end
      -- the pool and the L2Advertisement: each accepted once MetalLB's webhook is up
      if e.method == "PATCH" and path:match("/metallb%.io/") and e.status < 300 and not metallb_seen[path] then
        metallb_seen[path] = true
        if path:match("/ipaddresspools/") then pool_ok = e.time end
        metallb_ok = math.max(metallb_ok or 0, e.time)
      end
    end
  end
  -- Argo CD's workloads applied, the Applications, the app-of-apps
  local argocd_applied, apps_applied, gitops_applied, metallb_applied
  for _, e in ipairs(k8s_calls) do
    if e.path:match("^/apis/apps/v1/namespaces/argocd/") then argocd_applied = e.time end
    if e.path:match("/applications/[^/]+$") then
      apps_applied = apps_applied or e.time
      if e.path:match("/applications/metallb$") then metallb_applied = e.time end
      if e.path:match("/applications/apps$") then gitops_applied = e.time end
    end
  end
  local pve, fac, tal, k = p.pve, p.factory, p.talos, p.k8s
  local lags = {}
  local function lag(name, list) lags[#lags + 1] = { name = name, list = list } end
  local img, cre, sta, app = {}, {}, {}, {}
  for host, t in pairs(download) do
    local ready = t + pve_lat(pve, host) + fac.request_latency + fac.build + pve.download
    if first_create[host] then img[#img + 1] = { host, first_create[host] - ready } end
  end
  for _, n in ipairs(nodes) do
    local s, e = step[n.name] or {}, ev[n.name] or {}
    if s.resize and e["vm.created"] then cre[#cre + 1] = { n.name, s.resize - e["vm.created"] } end
    if s.start and s.resize then sta[#sta + 1] = { n.name, s.start - (s.resize + pve_lat(pve, n.host) + pve.resize) } end
    if s.apply and e["talos.maintenance"] then app[#app + 1] = { n.name, s.apply - e["talos.maintenance"] } end
  end
  lag("image ready -> first qmcreate (per host)", img)
  lag("vm.created -> resize PUT", cre)
  lag("resize done -> start POST (incl. the status GET)", sta)
  lag("maintenance up -> ApplyConfiguration", app)
  local b = ev[m.boot] or {}
  local health = phase(run, "health")
  local last_started, last_up, ideal_started, ideal_up = 0, 0, 0, 0
  for _, n in ipairs(nodes) do
    local e = ev[n.name] or {}
    last_started = math.max(last_started, e["vm.started"] or 0)
    last_up = math.max(last_up, e["talos.up"] or 0)
    ideal_started = math.max(ideal_started, m.at[n.name].started)
    ideal_up = math.max(ideal_up, m.at[n.name].up)
  end
  local last_kubelet = 0
  for _, n in ipairs(nodes) do last_kubelet = math.max(last_kubelet, (ev[n.name] or {})["talos.kubelet.ready"] or 0) end
  local one = {}
  if bootstrap_ok and b["talos.up"] then one[#one + 1] = { "etcd_ready over -> Bootstrap accepted (" .. m.boot .. ")",
    bootstrap_ok - (b["talos.up"] + tal.etcd_ready) } end
  if health and last_kubelet > 0 then one[#one + 1] = { "last kubelet ready -> health phase done", health.ends - last_kubelet } end
  if argocd_applied and apps_applied then one[#one + 1] = { "Argo CD rolled out -> Applications applied",
    apps_applied - (argocd_applied + k.rollout_start + k.rollout) } end
  if metallb_applied and metallb_ok then one[#one + 1] = { "MetalLB webhook ready -> its objects accepted",
    metallb_ok - (metallb_applied + k.argo_sync + k.crd_establish + k.webhook_not_ready) } end
  if pool_ok and gitops_applied then one[#one + 1] = { "Traefik Healthy, objects applied -> app-of-apps",
    gitops_applied - math.max(pool_ok + 2 * k.lb_ip, metallb_ok) } end
  if gitops_applied then one[#one + 1] = { "app-of-apps Healthy -> tlr exits",
    run.start + run.wall - (gitops_applied + math.max(k.argo_sync, k.argo_health)) } end
  local mil = {
    { "image on every host (vms phase starts)", m.image, phase(run, "vms") and rel(phase(run, "vms").starts) },
    { m.boot .. " started", m.at[m.boot].started, rel(b["vm.started"]) },
    { m.boot .. " apid up (config applied)", m.at[m.boot].up, rel(b["talos.up"]) },
    { "last VM started", ideal_started, last_started > 0 and rel(last_started) },
    { "last node's apid up", ideal_up, last_up > 0 and rel(last_up) },
    { "etcd bootstrapped on " .. m.boot, m.at[m.boot].bootstrap, rel(bootstrap_ok) },
    { "etcd running on " .. m.boot, m.at[m.boot].etcd, rel(b["talos.etcd.running"]) },
    { "last kubelet ready", m.health, last_kubelet > 0 and rel(last_kubelet) },
    { "health done", m.health, health and rel(health.ends) },
    { "Argo CD applied", m.kubeconfig, rel(k8s_first) },
    { "Applications applied", m.applications, rel(apps_applied) },
    { "MetalLB pool, L2Advertisement accepted", m.pool, rel(metallb_ok) },
    { "app-of-apps applied", m.gitops, rel(gitops_applied) },
    { "end", m.bound, run.wall },
  }
  return mil, lags, one
end

local function show_lags(lags, one)
  for _, l in ipairs(lags) do
    if #l.list > 0 then
      local sum, worst = 0, l.list[1]
      for _, x in ipairs(l.list) do
        sum = sum + x[2]
        if x[2] > worst[2] then worst = x end
      end
      note(fmt("%-48s mean %6.2f s, max %6.2f s (%s), %d samples", l.name, sum / #l.list, worst[2], worst[1], #l.list))
    end
  end
  for _, x in ipairs(one) do note(fmt("%-48s %6.2f s", x[1], x[2])) end
end

-- ---------- one shape ----------

local function run_shape(cps, workers)
  local title = fmt("%d+%d", cps, workers)
  io.write(fmt("\n-- bring-up %s: %d control planes + %d workers over %s, realistic profile\n", title, cps, workers,
    table.concat(HOSTS, ", ")))
  io.flush()
  local dir = H.tmpdir()
  local ok, err = pcall(function()
    local lab = start_lab(dir)
    local p = exact_profile(lab)
    show_profile(p)
    local site, site_path = make_site(lab, dir, cps, workers)
    for i, n in ipairs(site.nodes) do n.index = i end
    local rtt = bind_rtt(lab)
    local run = run_tlr(lab, dir, site_path)
    if not run.ok then
      io.write(run.stdout:sub(-2000), table.concat(run.errors, "\n"):sub(-3000), "\n")
      error("tlr run failed for " .. title, 0)
    end
    local log, events = lab_logs(lab)
    local started = {}
    for _, e in ipairs(events) do if e.type == "vm.started" then started[e.name] = true end end
    for _, n in ipairs(site.nodes) do
      if not started[n.name] then error(fmt("%s: tlr exited 0 but VM %s never started", title, n.name), 0) end
    end
    local slots = site.proxmox.storage_limit or STORAGE_LIMIT
    local bound, m = critical_path(p, site.nodes, slots)
    report(fmt("bringup %s: tlr run (wall)", title), run.wall, "s")
    report(fmt("bringup %s: critical-path bound", title), bound, "s")
    report(fmt("bringup %s: tlr / bound", title), run.wall / bound, "x", "target <= 1.15")
    note((run.summary or "no summary line"):gsub("^\n", ""))
    if run.cpu then note(fmt("tlr process: %.1f s CPU (user+sys), peak RSS %.1f MB", run.cpu, run.rss_mb)) end
    local by, order = count_requests(log)
    for _, s in ipairs(order) do
      local methods = {}
      for meth, n in pairs(by[s].methods) do methods[#methods + 1] = meth .. " " .. n end
      table.sort(methods)
      report(fmt("bringup %s: requests %s", title, s), by[s].total, "req",
        fmt("(%s; %d not OK)", table.concat(methods, ", "), by[s].failed))
    end
    if log[1] and log[1].seq > 1 then note(fmt("the lab's request log dropped its first %d entries", log[1].seq - 1)) end
    if events[1] and events[1].seq > 1 then note(fmt("the lab's event log dropped its first %d events", events[1].seq - 1)) end
    note(fmt("DNS: one RFC 2136 update to BIND, a side branch (SOA round trip %s); measured dns phase %.2f s",
      rtt and (rtt < 0.001 and "< 1 ms" or fmt("%.0f ms", rtt * 1000)) or "?", (phase(run, "dns") or { seconds = 0 }).seconds))
    note(fmt("with node_workers (%d) storage slots per host instead of tlr's %d, the bound would be %.2f s",
      p.pve.node_workers, slots, (critical_path(p, site.nodes, p.pve.node_workers))))
    local b = m.at[m.boot]
    note(fmt("bound: image %.2f, %s started %.2f (round %d slot %d), apid %.2f, bootstrap %.2f, etcd %.2f; last node ready"
      .. " %s at %.2f (started %.2f); Argo CD %.2f, Applications %.2f, webhook %.2f, pool %.2f, Traefik %.2f,"
      .. " issuer %.2f, app-of-apps %.2f, Healthy %.2f", m.image, m.boot, b.started, b.round, b.slot, b.up,
      b.bootstrap, b.etcd, m.last, m.health, m.at[m.last].started, m.argocd, m.applications, m.webhook, m.pool,
      m.traefik, m.issuer, m.gitops, m.apps))
    local mil, lags, one = actual_path(run, p, site.nodes, log, events, m)
    note("milestone                                   bound      tlr   behind")
    for _, x in ipairs(mil) do
      if x[3] then note(fmt("%-40s %8.2f %8.2f %8.2f", x[1], x[2], x[3], x[3] - x[2])) end
    end
    note("where tlr waited after the remote side was ready:")
    show_lags(lags, one)
    if KEEP then
      H.write(dir .. "/log.json", json.encode(log))
      H.write(dir .. "/events.json", json.encode(events))
      H.write(dir .. "/run.json", json.encode(run.events))
      note("kept: " .. dir)
    end
  end)
  stop_lab(dir)
  if not KEEP then os.execute("rm -rf " .. quote(dir)) end
  if not ok then error(err, 0) end
end

math.randomseed(os.time() + math.floor(now() * 1000) % 100000)
for cps, workers in SHAPES:gmatch("(%d+)%+(%d+)") do run_shape(tonumber(cps), tonumber(workers)) end
io.write("bringup bench done\n")
