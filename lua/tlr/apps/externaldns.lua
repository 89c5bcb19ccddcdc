--- external-dns: publishes the addresses of LoadBalancer Services and
--- Ingresses in the site's zone, through RFC 2136 dynamic updates (BIND and
--- the like, TSIG-signed) or the Cloudflare API.
---
--- Secrets never go on the command line: the TSIG secret reaches
--- external-dns as EXTERNAL_DNS_RFC2136_TSIG_SECRET (external-dns reads every
--- flag from EXTERNAL_DNS_<FLAG>), the Cloudflare token as CF_API_TOKEN,
--- both from a Secret in the `external-dns` namespace.  With RFC 2136,
--- `--rfc2136-axfr` lets it read the zone (the server must allow the key to
--- transfer it); without it external-dns behaves as if the policy were
--- create-only.
local argocd = require "tlr.apps.argocd"
local common = require "tlr.apps.common"
local opts = require "tlr.opts"

local M = {}

M.NAMESPACE = "external-dns"
M.TSIG_SECRET = "external-dns-rfc2136"
M.TSIG_KEY = "tsig-secret"
M.TOKEN_SECRET = "cloudflare-api-token"
M.TOKEN_KEY = "api-token"

M.ALGORITHMS = { ["hmac-md5"] = true, ["hmac-sha1"] = true, ["hmac-sha224"] = true, ["hmac-sha256"] = true,
  ["hmac-sha384"] = true, ["hmac-sha512"] = true }
M.POLICIES = { sync = true, ["upsert-only"] = true, ["create-only"] = true }

local APP_SPEC = {
  version = "string", repo = "string", chart = "string", values = "table",
  provider = "string", zone = "string", server = "string", port = "integer", key_name = "string",
  key_algorithm = "string", axfr = "boolean", proxied = "boolean", secret = "string", key = "string",
  policy = "string", owner_id = "string", sources = "table", domain_filters = "table", interval = "string",
}

local function env_from(name, secret, key)
  return { name = name, valueFrom = { secretKeyRef = { name = secret, key = key } } }
end

--- The chart values for a provider (without a site's own values).
---@param o table as for M.application
---@return table values
function M.values(o)
  local fname = "externaldns.values"
  opts.arg(o.provider == "rfc2136" or o.provider == "cloudflare", fname, "provider must be rfc2136 or cloudflare")
  opts.arg(common.is_dns_name(o.zone), fname, "zone must be a DNS name")
  local policy = o.policy or "sync"
  opts.arg(M.POLICIES[policy], fname, "policy must be sync, upsert-only or create-only")
  local zone = o.zone:gsub("%.$", "")
  local values = {
    provider = { name = o.provider },
    policy = policy,
    registry = "txt",
    txtOwnerId = o.owner_id or "tlr",
    sources = common.list(table.unpack(o.sources or { "service", "ingress" })),
    domainFilters = common.list(table.unpack(o.domain_filters or { zone })),
  }
  if o.interval then values.interval = o.interval end
  local args = common.list()
  if o.provider == "rfc2136" then
    opts.arg(common.is_ip(o.server) or common.is_dns_name(o.server), fname, "server must be an address or a name")
    opts.arg(type(o.key_name) == "string" and o.key_name ~= "", fname, "key_name is required for rfc2136")
    local alg = o.key_algorithm or "hmac-sha256"
    opts.arg(M.ALGORITHMS[alg], fname, "unknown key_algorithm " .. alg)
    opts.arg(o.port == nil or (o.port > 0 and o.port < 65536), fname, "port must be 1..65535")
    for _, a in ipairs {
      "--rfc2136-host=" .. o.server,
      "--rfc2136-port=" .. (o.port or 53),
      "--rfc2136-zone=" .. zone,
      "--rfc2136-tsig-keyname=" .. o.key_name,
      "--rfc2136-tsig-secret-alg=" .. alg,
    } do args[#args + 1] = a end
    if o.axfr ~= false then args[#args + 1] = "--rfc2136-axfr" end
    values.env = common.list(env_from("EXTERNAL_DNS_RFC2136_TSIG_SECRET", o.secret or M.TSIG_SECRET,
      o.key or M.TSIG_KEY))
  else
    if o.proxied then args[#args + 1] = "--cloudflare-proxied" end
    values.env = common.list(env_from("CF_API_TOKEN", o.secret or M.TOKEN_SECRET, o.key or M.TOKEN_KEY))
  end
  if #args > 0 then values.extraArgs = args end
  return values
end

--- The external-dns Application.  `secret`/`key` name the Secret with the
--- TSIG secret or the API token (defaults external-dns-rfc2136/tsig-secret
--- and cloudflare-api-token/api-token).
---@param o {version: string, repo: string, chart: string, values?: table, provider: "rfc2136"|"cloudflare", zone: string, server?: string, port?: integer, key_name?: string, key_algorithm?: string, axfr?: boolean, proxied?: boolean, secret?: string, key?: string, policy?: string, owner_id?: string, sources?: string[], domain_filters?: string[], interval?: string}
---@return table application
function M.application(o)
  o = opts.check("externaldns.application", o, APP_SPEC)
  return argocd.helm_application("external-dns", {
    repo = o.repo, chart = o.chart, version = o.version, namespace = M.NAMESPACE,
    values = common.merge(M.values(o), o.values),
  })
end

--- The Secret with the TSIG secret (rfc2136) or the API token
--- (cloudflare); `value` is resolved.
---@param provider "rfc2136"|"cloudflare"
---@param value string
---@param o? {name?: string, key?: string}
---@return table secret
function M.secret(provider, value, o)
  opts.arg(provider == "rfc2136" or provider == "cloudflare", "externaldns.secret",
    "provider must be rfc2136 or cloudflare")
  opts.arg(type(value) == "string" and value ~= "", "externaldns.secret", "value expected")
  o = opts.check("externaldns.secret", o, { name = "string", key = "string" })
  local rfc = provider == "rfc2136"
  return common.secret_object(o.name or (rfc and M.TSIG_SECRET or M.TOKEN_SECRET), M.NAMESPACE,
    { [o.key or (rfc and M.TSIG_KEY or M.TOKEN_KEY)] = value })
end

return M
