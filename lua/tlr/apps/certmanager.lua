--- cert-manager: its Application (the jetstack chart with `crds.enabled`),
--- the Secret with the Cloudflare API token, and Let's Encrypt
--- ClusterIssuers that solve ACME DNS-01 challenges through Cloudflare.
---
--- A ClusterIssuer reads its Secrets from cert-manager's "cluster resource
--- namespace", `cert-manager` by default, so the token Secret lives there.
--- The token needs Zone:DNS:Edit and Zone:Zone:Read; without the latter
--- cert-manager fails with "requires permission
--- com.cloudflare.api.account.zone.list".
local argocd = require "tlr.apps.argocd"
local common = require "tlr.apps.common"
local opts = require "tlr.opts"

local M = {}

M.NAMESPACE = "cert-manager"
M.API_VERSION = "cert-manager.io/v1"
M.TOKEN_SECRET = "cloudflare-api-token"
M.TOKEN_KEY = "api-token"

--- Let's Encrypt's ACME directories.
M.SERVERS = {
  staging = "https://acme-staging-v02.api.letsencrypt.org/directory",
  production = "https://acme-v02.api.letsencrypt.org/directory",
}

--- The CRD a ClusterIssuer needs before it can be applied.
M.ISSUER_CRD = "clusterissuers.cert-manager.io"

--- The cert-manager Application.
---@param o {version: string, repo: string, chart: string, values?: table}
---@return table application
function M.application(o)
  o = opts.check("certmanager.application", o, { version = "string", repo = "string", chart = "string",
    values = "table" })
  return argocd.helm_application("cert-manager", {
    repo = o.repo, chart = o.chart, version = o.version, namespace = M.NAMESPACE,
    values = common.merge({ crds = { enabled = true } }, o.values),
  })
end

--- The Secret holding the Cloudflare API token (a resolved value).
---@param token string
---@param o? {name?: string, key?: string}
---@return table secret
function M.token_secret(token, o)
  opts.arg(type(token) == "string" and token ~= "", "certmanager.token_secret", "token expected")
  o = opts.check("certmanager.token_secret", o, { name = "string", key = "string" })
  return common.secret_object(o.name or M.TOKEN_SECRET, M.NAMESPACE, { [o.key or M.TOKEN_KEY] = token })
end

--- A ClusterIssuer "letsencrypt-<env>" for ACME DNS-01 through Cloudflare.
--- `zones` limits the solver to those DNS zones (and their subdomains).
---@param env "staging"|"production"
---@param o {email: string, zones?: string[], secret?: string, key?: string, server?: string}
---@return table issuer
function M.cluster_issuer(env, o)
  opts.arg(M.SERVERS[env] ~= nil, "certmanager.cluster_issuer", "env must be staging or production")
  o = opts.check("certmanager.cluster_issuer", o, { email = "string", zones = "table", secret = "string",
    key = "string", server = "string" })
  opts.arg(type(o.email) == "string" and o.email:match("^[^@%s]+@[^@%s]+$"), "certmanager.cluster_issuer",
    "email must be an address")
  local name = "letsencrypt-" .. env
  local solver = {
    dns01 = { cloudflare = { apiTokenSecretRef = { name = o.secret or M.TOKEN_SECRET, key = o.key or M.TOKEN_KEY } } },
  }
  if o.zones and #o.zones > 0 then solver.selector = { dnsZones = common.copy(o.zones) } end
  return {
    apiVersion = M.API_VERSION, kind = "ClusterIssuer",
    metadata = { name = name, labels = common.labels() },
    spec = { acme = {
      email = o.email,
      server = o.server or M.SERVERS[env],
      privateKeySecretRef = { name = name .. "-account-key" },
      solvers = common.list(solver),
    } },
  }
end

return M
