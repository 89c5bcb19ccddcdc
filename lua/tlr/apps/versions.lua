--- The pinned versions of the core apps and where they come from: the one
--- place to change when a release moves on.  A site overrides any of them
--- with `versions = {traefik = "41.3.0"}` (see tlr.apps.plan).
---
--- Chart versions are Helm chart versions (Argo CD's `targetRevision`);
--- Argo CD's is the git tag of the release whose manifests/install.yaml is
--- applied.
local opts = require "tlr.opts"

local M = {}

--- Default versions, by component.
M.defaults = {
  argocd = "v3.5.1", -- argoproj/argo-cd tag `stable` (2026-08)
  cert_manager = "v1.21.2", -- charts.jetstack.io
  traefik = "41.4.0", -- traefik/traefik-helm-chart (Traefik Proxy v3.7)
  metallb = "0.16.0", -- metallb/metallb chart
  external_dns = "1.21.1", -- kubernetes-sigs/external-dns chart (app v0.21.0)
}

--- Argo CD's install manifest of a release; `{version}` is replaced.
M.ARGOCD_MANIFEST = "https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml"

--- Helm repositories and chart names, by component.
M.charts = {
  cert_manager = { repo = "https://charts.jetstack.io", chart = "cert-manager" },
  traefik = { repo = "https://traefik.github.io/charts", chart = "traefik" },
  metallb = { repo = "https://metallb.github.io/metallb", chart = "metallb" },
  external_dns = { repo = "https://kubernetes-sigs.github.io/external-dns/", chart = "external-dns" },
}

local function valid_version(v)
  return type(v) == "string" and v:match("^[%w][%w.+_-]*$") ~= nil and #v <= 128
end

--- The defaults with `overrides` applied.  Unknown components and
--- malformed versions raise.
---@param overrides? table<string, string> {argocd?, cert_manager?, traefik?, metallb?, external_dns?}
---@return table<string, string>
function M.resolve(overrides)
  local spec = {}
  for k in pairs(M.defaults) do spec[k] = "string" end
  overrides = opts.check("apps.versions", overrides, spec)
  local out = {}
  for k, v in pairs(M.defaults) do
    local o = overrides[k]
    if o ~= nil then
      opts.arg(valid_version(o), "apps.versions", string.format("bad version %q for %s", o, k))
      v = o
    end
    out[k] = v
  end
  return out
end

--- The chart repositories with `overrides` (component -> repository URL)
--- applied, e.g. a mirror.
---@param overrides? table<string, string>
---@return table<string, {repo: string, chart: string}>
function M.repos(overrides)
  local spec = {}
  for k in pairs(M.charts) do spec[k] = "string" end
  overrides = opts.check("apps.repos", overrides, spec)
  local out = {}
  for k, c in pairs(M.charts) do
    local repo = overrides[k] or c.repo
    opts.arg(repo:match("^https?://[^%s]+$") or repo:match("^[%w.-]+[:%d]*/[^%s]*$"), "apps.repos",
      string.format("bad repository %q for %s (an http(s) URL, or host/path of an OCI registry)", repo, k))
    out[k] = { repo = repo, chart = c.chart }
  end
  return out
end

--- The install manifest URL for an Argo CD version; `template` (default
--- the GitHub release URL) may hold `{version}`.
---@param version string
---@param template? string
---@return string
function M.argocd_manifest(version, template)
  opts.arg(valid_version(version), "apps.argocd_manifest", "bad version " .. tostring(version))
  template = template or M.ARGOCD_MANIFEST
  return (template:gsub("{version}", version))
end

return M
