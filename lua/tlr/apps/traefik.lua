--- Traefik, the ingress controller (ingress-nginx is retired: best effort
--- until March 2026, then no fixes).  The chart's Service is a
--- LoadBalancer, so MetalLB gives it an address from the site's range; its
--- IngressClass `traefik` is the cluster default, and Ingresses get the
--- Service's address in their status, which external-dns publishes.
local argocd = require "tlr.apps.argocd"
local common = require "tlr.apps.common"
local opts = require "tlr.opts"

local M = {}

M.NAMESPACE = "traefik"

--- The values tlr sets; a site's `values` are merged over them.
M.VALUES = {
  ingressClass = { enabled = true, isDefaultClass = true },
  providers = { kubernetesIngress = { publishedService = { enabled = true } } },
}

--- The annotation that asks MetalLB for a given address.
M.LB_IPS = "metallb.io/loadBalancerIPs"

--- The Traefik Application.  `ip` asks MetalLB for that address for the
--- LoadBalancer Service (so DNS can point at a fixed address).
---@param o {version: string, repo: string, chart: string, values?: table, ip?: string}
---@return table application
function M.application(o)
  o = opts.check("traefik.application", o, { version = "string", repo = "string", chart = "string",
    values = "table", ip = "string" })
  local values = common.copy(M.VALUES)
  if o.ip then
    opts.arg(common.is_ip(o.ip), "traefik.application", "ip must be an IP address")
    values.service = { annotations = { [M.LB_IPS] = o.ip } }
  end
  return argocd.helm_application("traefik", {
    repo = o.repo, chart = o.chart, version = o.version, namespace = M.NAMESPACE,
    values = common.merge(values, o.values),
  })
end

return M
