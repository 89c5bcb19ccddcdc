--- The site's DNS section and apps: provider settings, the TSIG key,
--- Cloudflare's limits, MetalLB's ranges (in the nodes' subnet, on no
--- node, the VIP or the gateway), the ingress address, cert-manager's
--- solver, external-dns's zone, Argo CD's repository credentials.
local yaml = require "tlr.yaml"
local fs = require "tlr.fs"
local net = require "tlr.site.net"
local F = require "tlr.site.fields"
local S = require "tlr.site.schema"
local who = require("tlr.site.nodes").who

local M = {}
local array = yaml.array
local join, hint = S.join, S.hint

local CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
local ACME = { "https://acme-v02.api.letsencrypt.org/directory",
  "https://acme-staging-v02.api.letsencrypt.org/directory" }

-- ========== DNS and apps ==========

--- The dns section (`raw` is the table as written, to tell absent from invalid).
function M.dns(ctx, site, d, raw)
  local other = d.provider == "rfc2136" and "cloudflare" or "rfc2136"
  for _, k in ipairs(F.DNS_ONLY[other]) do
    if raw[k] ~= nil then
      ctx:err(join("dns", k), "not a setting of the %s provider (it is for %s)", d.provider, other)
    end
  end
  local dns = { provider = d.provider, zone = d.zone and d.zone:lower():gsub("%.$", ""),
    ttl = d.ttl or 300, node_records = d.node_records ~= false }
  local api_name = d.api_name
  if api_name == nil then api_name = "api" end
  if api_name ~= false then
    if type(api_name) ~= "string" or F.domain(api_name) then
      ctx:err("dns.api_name", "a name in the zone (or false for no API record) expected")
      api_name = nil
    end
  else
    api_name = nil
  end
  dns.api_name = api_name
  if dns.zone and api_name then dns.api_fqdn = api_name .. "." .. dns.zone end
  if d.provider == "rfc2136" then
    dns.server, dns.port = d.server, d.port or 53
    dns.key_name, dns.key_secret, dns.transport = d.key_name, d.key_secret, d.transport
    dns.key_algorithm = d.key_algorithm or "hmac-sha256"
    if not raw.server then
      ctx:err("dns.server", "required for rfc2136 (the address of the primary server)")
    elseif d.server and not net.parse(d.server) then
      ctx:err("dns.server", "'%s' is not an IP address", d.server)
    end
    local algs = require("tlr.tsig.core").algorithms()
    local ok = false
    for _, a in ipairs(algs) do if a == dns.key_algorithm then ok = true end end
    if not ok then
      ctx:err("dns.key_algorithm", "'%s' is not one of %s%s", dns.key_algorithm, table.concat(algs, ", "),
        hint(dns.key_algorithm, algs))
    end
    if raw.key_name and not raw.key_secret then
      ctx:err("dns.key_secret", "required with key_name (e.g. env:DNS_KEY_SECRET)")
    elseif raw.key_secret and not raw.key_name then
      ctx:err("dns.key_name", "required with key_secret")
    elseif not raw.key_name then
      ctx:warn("dns", "no TSIG key (key_name, key_secret): updates go unsigned")
    end
    if d.key_secret and not d.key_secret:match("^[%w+/]+=*$") then
      ctx:err("dns.key_secret", "not base64 (as in a BIND key's secret)")
    end
  elseif d.provider == "cloudflare" then
    dns.token, dns.zone_id, dns.ca_file = d.token, d.zone_id, d.ca_file
    dns.api = (d.api or CLOUDFLARE_API):gsub("/+$", "")
    if not raw.token then
      ctx:err("dns.token", "required for cloudflare (e.g. env:CLOUDFLARE_API_TOKEN)")
    end
    if d.ttl and d.ttl ~= 1 and d.ttl < 60 then
      ctx:err("dns.ttl", "Cloudflare takes 1 (automatic) or 60..86400")
    end
  end
  site.dns = dns
  if dns.node_records and dns.zone then
    for _, n in ipairs(site.nodes or {}) do
      if n.name then n.fqdn = n.name .. "." .. dns.zone end
    end
  end
end

local function metallb_app(ctx, m, subnet, ips, gw, vip)
  local ranges, out = {}, array()
  for i, text in ipairs(m.range or {}) do
    local path = join("apps.metallb.range", i)
    local r, why = net.parse_range(text)
    if not r then
      ctx:err(path, "'%s' is not first-last or address/prefix (%s)", text, why)
    else
      local first, last = { family = r.family, bytes = r.first }, { family = r.family, bytes = r.last }
      local inside = subnet and net.contains(subnet, first) and net.contains(subnet, last)
      if subnet and not inside then
        ctx:err(path, "%s is outside the nodes' subnet %s (MetalLB's layer 2 mode answers only there)",
          r.text, net.format_subnet(subnet))
      end
      local held = {}
      for bytes, n in pairs(ips) do
        if net.range_contains(r, { family = #bytes == 4 and 4 or 6, bytes = bytes }) then
          held[#held + 1] = n
        end
      end
      table.sort(held, function(x, y) return x.index < y.index end)
      for _, n in ipairs(held) do
        ctx:err(path, "%s holds %s, the address of %s", r.text, n.ip or net.format(n.addr), who(n))
      end
      if vip and net.range_contains(r, vip) then
        ctx:err(path, "%s holds the VIP %s", r.text, net.format(vip))
      end
      if gw and net.range_contains(r, gw) then
        ctx:err(path, "%s holds the gateway %s", r.text, net.format(gw))
      end
      for j, other in ipairs(ranges) do
        if other.family == r.family and r.first <= other.last and other.first <= r.last then
          ctx:err(path, "%s overlaps apps.metallb.range[%d]", r.text, j)
        end
      end
      ranges[#ranges + 1] = r
      out[#out + 1] = r.text
    end
  end
  return { addresses = out }, ranges
end

--- The apps; absent or disabled ones become false.
function M.apps(ctx, site, a, subnet, ips, gw, vip)
  local apps = {}
  local ranges = {}
  if a.metallb then apps.metallb, ranges = metallb_app(ctx, a.metallb, subnet, ips, gw, vip) end
  if a.ingress then
    local i = a.ingress
    local controller = i.controller or "traefik"
    apps.ingress = { controller = controller, class = controller == "traefik" and "traefik" or "nginx",
      ip = i.ip and net.format(net.parse(i.ip)) }
    if i.ip and not apps.metallb then
      ctx:err("apps.ingress.ip", "needs apps.metallb (the address comes from its pool)")
    elseif i.ip then
      local addr, inside = net.parse(i.ip), false
      for _, r in ipairs(ranges) do if net.range_contains(r, addr) then inside = true end end
      if not inside and #ranges > 0 then
        ctx:err("apps.ingress.ip", "%s is outside apps.metallb.range", apps.ingress.ip)
      end
    end
  end
  if a.cert_manager then
    local c = a.cert_manager
    local token = c.cloudflare_token
    if not token and site.dns and site.dns.provider == "cloudflare" then token = site.dns.token end
    apps.cert_manager = { email = c.email, cloudflare_token = token, staging = c.staging == true,
      solver = token and "dns01-cloudflare" or "http01", acme_server = ACME[c.staging and 2 or 1] }
    if not token and not apps.ingress then
      ctx:err("apps.cert_manager.cloudflare_token", "required without apps.ingress: give a token "
        .. "for DNS-01 (e.g. env:CLOUDFLARE_API_TOKEN), or enable apps.ingress for HTTP-01")
    end
  end
  if a.external_dns then
    local e = a.external_dns
    local d = site.dns
    if not d then
      ctx:err("apps.external_dns", "needs a dns section (provider and zone)")
    else
      local zone = e.zone and e.zone:lower():gsub("%.$", "") or d.zone
      if zone and d.zone and zone ~= d.zone and zone:sub(-#d.zone - 1) ~= "." .. d.zone then
        ctx:err("apps.external_dns.zone", "'%s' is not inside dns.zone %s", zone, d.zone)
      end
      apps.external_dns = { provider = d.provider, zone = zone,
        sources = e.sources or array { "service", "ingress" }, policy = e.policy or "upsert-only",
        txt_owner_id = e.txt_owner_id or site.name }
    end
  end
  if a.argocd then
    local g = a.argocd
    local ssh = g.repo and not g.repo:match("^https?://")
    if g.password and not g.username then ctx:err("apps.argocd.username", "required with password") end
    if g.ssh_key and g.repo and not ssh then
      ctx:err("apps.argocd.ssh_key", "the repo is not an SSH URL (use password for https)")
    end
    if g.password and ssh then ctx:err("apps.argocd.password", "the repo is an SSH URL (use ssh_key)") end
    local manifest = g.manifest
    if manifest and not manifest:match("^https?://") then
      manifest = fs.abs(manifest)
      if not fs.exists(manifest) then ctx:err("apps.argocd.manifest", "no such file '%s'", g.manifest) end
    end
    if g.manifest_sha256 and not (#g.manifest_sha256 == 64 and g.manifest_sha256:match("^%x+$")) then
      ctx:err("apps.argocd.manifest_sha256", "must be 64 hex digits")
    end
    apps.argocd = { repo = g.repo, revision = g.revision or "HEAD", path = g.path or ".",
      version = g.version, username = g.username, password = g.password, ssh_key = g.ssh_key,
      manifest = manifest, manifest_sha256 = g.manifest_sha256 and g.manifest_sha256:lower() }
  end
  for _, k in ipairs { "metallb", "ingress", "cert_manager", "external_dns", "argocd" } do
    if apps[k] == nil then apps[k] = false end
  end
  site.apps = apps
end

return M
