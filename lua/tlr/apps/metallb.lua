--- MetalLB in layer-2 mode: its Application, its namespace labelled
--- privileged (Talos enforces the `baseline` Pod Security level on every
--- namespace but kube-system, and MetalLB's speaker needs host networking
--- and NET_RAW), and the IPAddressPool and L2Advertisement for the site's
--- address range.
---
--- The pool can only be applied once the chart's CRDs are Established and
--- its validating webhook answers: until then the API server replies 500
--- `failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io"`,
--- which tlr.k8s retries.  The controller rewrites the `caBundle` of the
--- CRDs' conversion webhook, so the Application ignores that field, or it
--- would flap OutOfSync (metallb#2571).
local argocd = require "tlr.apps.argocd"
local common = require "tlr.apps.common"
local opts = require "tlr.opts"

local M = {}

M.NAMESPACE = "metallb-system"
M.API_VERSION = "metallb.io/v1beta1"

--- The namespace's Pod Security labels.
M.POD_SECURITY = {
  ["pod-security.kubernetes.io/enforce"] = "privileged",
  ["pod-security.kubernetes.io/audit"] = "privileged",
  ["pod-security.kubernetes.io/warn"] = "privileged",
}

--- The CRDs the pool and the advertisement need.
M.CRDS = { "ipaddresspools.metallb.io", "l2advertisements.metallb.io" }

--- What Argo CD must not compare: the CRDs' webhook caBundle.
M.IGNORE_DIFFERENCES = {
  { group = "apiextensions.k8s.io", kind = "CustomResourceDefinition",
    jsonPointers = { "/spec/conversion/webhook/clientConfig/caBundle" } },
}

--- The metallb-system Namespace with its Pod Security labels (tlr makes it
--- before Argo CD syncs, so no pod ever starts under `baseline`).
---@return table namespace
function M.namespace()
  return { apiVersion = "v1", kind = "Namespace",
    metadata = { name = M.NAMESPACE, labels = common.labels(M.POD_SECURITY) } }
end

--- The MetalLB Application.
---@param o {version: string, repo: string, chart: string, values?: table}
---@return table application
function M.application(o)
  o = opts.check("metallb.application", o, { version = "string", repo = "string", chart = "string",
    values = "table" })
  return argocd.helm_application("metallb", {
    repo = o.repo, chart = o.chart, version = o.version, namespace = M.NAMESPACE,
    values = common.copy(o.values), namespace_labels = M.POD_SECURITY,
    ignore_differences = M.IGNORE_DIFFERENCES,
    -- the ignored field is left alone when syncing too
    sync_options = { "RespectIgnoreDifferences=true" },
  })
end

--- Raises unless `addresses` is a non-empty list of CIDRs or
--- "first-last" ranges.
---@param fname string
---@param addresses any
function M.check_addresses(fname, addresses)
  opts.arg(type(addresses) == "table" and #addresses > 0, fname, "metallb.addresses must be a non-empty list")
  for i, a in ipairs(addresses) do
    opts.arg(common.is_address_range(a), fname, string.format(
      "metallb.addresses[%d]: %q is not a CIDR or an address range (\"10.0.0.240-10.0.0.250\")", i, tostring(a)))
  end
end

--- The IPAddressPool and (unless `l2 = false`) the L2Advertisement that
--- announces it.
---@param o {addresses: string[], name?: string, l2?: boolean, auto_assign?: boolean}
---@return table[] objects
function M.pool(o)
  o = opts.check("metallb.pool", o, { addresses = "table", name = "string", l2 = "boolean", auto_assign = "boolean" })
  M.check_addresses("metallb.pool", o.addresses)
  local name = o.name or "default"
  opts.arg(common.is_object_name(name), "metallb.pool", "bad pool name " .. name)
  local spec = { addresses = common.list(table.unpack(o.addresses)) }
  if o.auto_assign == false then spec.autoAssign = false end
  local out = {
    { apiVersion = M.API_VERSION, kind = "IPAddressPool",
      metadata = { name = name, namespace = M.NAMESPACE, labels = common.labels() }, spec = spec },
  }
  if o.l2 ~= false then
    out[2] = { apiVersion = M.API_VERSION, kind = "L2Advertisement",
      metadata = { name = name, namespace = M.NAMESPACE, labels = common.labels() },
      spec = { ipAddressPools = common.list(name) } }
  end
  return out
end

return M
