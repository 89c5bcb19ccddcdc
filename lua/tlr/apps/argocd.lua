--- Argo CD: its release install manifest (fetched, checked and given a
--- namespace), Application objects for Helm charts and Git directories, a
--- repository Secret for private Git, and the initial admin password.
---
--- Argo CD's install.yaml names no namespace: its namespaced objects get
--- `argocd`, the namespace its ClusterRoleBindings' subjects name.  It is
--- applied with server-side apply and force, as `kubectl apply
--- --server-side --force-conflicts` would (its CRDs are too big for
--- client-side apply's annotation).
local common = require "tlr.apps.common"
local crypto = require "tlr.crypto"
local fs = require "tlr.fs"
local http = require "tlr.http"
local log = require "tlr.log"
local opts = require "tlr.opts"
local versions = require "tlr.apps.versions"
local yaml = require "tlr.yaml"

local M = {}

M.NAMESPACE = "argocd"
M.API_VERSION = "argoproj.io/v1alpha1"
M.FINALIZER = "resources-finalizer.argocd.argoproj.io"
M.DESTINATION = "https://kubernetes.default.svc"
M.ADMIN_SECRET = "argocd-initial-admin-secret"

-- Kinds install.yaml (and manifests like it) hold that are cluster-scoped.
local CLUSTER_KINDS = {
  Namespace = true, CustomResourceDefinition = true, ClusterRole = true, ClusterRoleBinding = true,
  APIService = true, PriorityClass = true, StorageClass = true, IngressClass = true,
  ValidatingWebhookConfiguration = true, MutatingWebhookConfiguration = true,
}

local null = yaml.null

-- ========== the install manifest ==========

--- Where the manifest of a release comes from.  By default the release's
--- URL on GitHub; `url` is a mirror (`{version}` in it is replaced), `file` a
--- local copy.  `sha256` (hex) pins the content.
---@param version string "v3.5.1"
---@param o? {url?: string, file?: string, sha256?: string}
---@return {version: string, url?: string, file?: string, sha256?: string}
function M.source(version, o)
  o = opts.check("argocd.source", o, { url = "string", file = "string", sha256 = "string" })
  opts.arg(not (o.url and o.file), "argocd.source", "url and file exclude each other")
  opts.arg(o.url == nil or o.url:match("^https?://"), "argocd.source", "url must be an http(s) URL")
  opts.arg(o.sha256 == nil or o.sha256:match("^%x+$") and #o.sha256 == 64, "argocd.source",
    "sha256 must be 64 hex digits")
  local src = { version = version, sha256 = o.sha256 and o.sha256:lower() }
  if o.file then
    src.file = o.file
  else
    src.url = versions.argocd_manifest(version, o.url)
  end
  return src
end

--- Where a source points, for messages and plans.
---@param src table from M.source
---@return string
function M.where(src)
  return src.file or src.url
end

--- Fetches the manifest text (HTTP GET or a file read) and checks its
--- sha256 when the source pins one.
---@param src table from M.source
---@param o? {timeout?: number, ca?: string}
---@return string|nil text
---@return string? msg "argocd: GET <url>: HTTP 404 Not Found"
---@return string? code tlr.http's transport codes, "EAPI" (not 200), "EINVAL" (checksum), fs.read's codes
function M.fetch(src, o)
  o = opts.check("argocd.fetch", o, { timeout = "number", ca = "string" })
  opts.arg(type(src) == "table" and (src.url or src.file), "argocd.fetch", "source from argocd.source expected")
  local text
  if src.file then
    local msg, code
    text, msg, code = fs.read(src.file)
    if not text then return nil, "argocd: " .. msg, code end
  else
    local res, msg, code = http.get(src.url, { timeout = o.timeout or 120, ca = o.ca, max_size = 64 * 1024 * 1024 })
    if not res then return nil, "argocd: GET " .. src.url .. ": " .. msg, code end
    if res.status ~= 200 then
      return nil, string.format("argocd: GET %s: HTTP %d %s", src.url, res.status, res.reason or ""), "EAPI"
    end
    text = res.body
  end
  if src.sha256 then
    local sum = crypto.sha256(text, { hex = true })
    if sum ~= src.sha256 then
      return nil, string.format("argocd: %s: sha256 %s, expected %s", M.where(src), sum, src.sha256), "EINVAL"
    end
  end
  return text
end

--- The objects of an install manifest, each namespaced one given
--- `namespace` (default "argocd") where it names none.  Checks that the
--- text is Argo CD's: it must define the Application CRD.
---@param text string
---@param o? {namespace?: string}
---@return table[]|nil objects
---@return string? msg "argocd: install manifest: document 3: ..."
---@return string? code "EINVAL"
function M.objects(text, o)
  opts.arg(type(text) == "string", "argocd.objects", "manifest text expected")
  o = opts.check("argocd.objects", o, { namespace = "string" })
  local ns = o.namespace or M.NAMESPACE
  local docs, msg = yaml.decode_all(text)
  if not docs then return nil, "argocd: install manifest: " .. msg, "EINVAL" end
  local out, has_app_crd = {}, false
  for i, doc in ipairs(docs) do
    if doc ~= null then
      local meta = type(doc) == "table" and doc.metadata
      if type(doc) ~= "table" or type(doc.kind) ~= "string" or type(doc.apiVersion) ~= "string"
        or type(meta) ~= "table" or type(meta.name) ~= "string" then
        return nil, string.format("argocd: install manifest: document %d is not a Kubernetes object", i), "EINVAL"
      end
      if not CLUSTER_KINDS[doc.kind] then
        if meta.namespace == nil or meta.namespace == null or meta.namespace == "" then
          meta.namespace = ns
        elseif meta.namespace ~= ns then
          return nil, string.format("argocd: install manifest: %s %s is in namespace %s, not %s",
            doc.kind, meta.name, tostring(meta.namespace), ns), "EINVAL"
        end
      end
      if doc.kind == "CustomResourceDefinition" and meta.name == "applications.argoproj.io" then
        has_app_crd = true
      end
      out[#out + 1] = doc
    end
  end
  if not has_app_crd then
    return nil, "argocd: install manifest: no CustomResourceDefinition applications.argoproj.io"
      .. " (not Argo CD's install.yaml?)", "EINVAL"
  end
  return out
end

-- ========== Applications ==========

local SYNC = { automated = { prune = true, selfHeal = true } }

local function application(name, source, dest_ns, o)
  local sync_options = common.list("CreateNamespace=true", "ServerSideApply=true")
  for _, s in ipairs(o.sync_options or {}) do sync_options[#sync_options + 1] = s end
  local sync = common.merge(SYNC, { syncOptions = sync_options })
  if o.namespace_labels then
    sync.managedNamespaceMetadata = { labels = common.copy(o.namespace_labels) }
  end
  local spec = {
    project = o.project or "default",
    source = source,
    destination = { server = M.DESTINATION, namespace = dest_ns },
    syncPolicy = sync,
  }
  if o.ignore_differences then spec.ignoreDifferences = common.copy(o.ignore_differences) end
  return {
    apiVersion = M.API_VERSION, kind = "Application",
    metadata = { name = name, namespace = M.NAMESPACE, labels = common.labels(),
      finalizers = common.list(M.FINALIZER) },
    spec = spec,
  }
end

local HELM_SPEC = {
  repo = "string", chart = "string", version = "string", namespace = "string", release = "string",
  values = "table", ignore_differences = "table", namespace_labels = "table", sync_options = "table",
  project = "string",
}

--- An Application that has Argo CD render a Helm chart from a repository
--- (no helm binary anywhere): automated sync with prune and self-heal,
--- CreateNamespace and ServerSideApply, the resources finalizer.
--- `namespace_labels` become the managed namespace's labels.
---@param name string the Application's name (also the default release name)
---@param o {repo: string, chart: string, version: string, namespace: string, release?: string, values?: table, ignore_differences?: table[], namespace_labels?: table, sync_options?: string[], project?: string}
---@return table application
function M.helm_application(name, o)
  opts.arg(common.is_object_name(name), "argocd.helm_application", "bad name " .. tostring(name))
  o = opts.check("argocd.helm_application", o, HELM_SPEC)
  for _, k in ipairs { "repo", "chart", "version", "namespace" } do
    opts.arg(o[k] ~= nil, "argocd.helm_application", k .. " is required")
  end
  local helm = { releaseName = o.release or name }
  if o.values and next(o.values) ~= nil then helm.valuesObject = common.copy(o.values) end
  local source = { repoURL = o.repo, chart = o.chart, targetRevision = o.version, helm = helm }
  return application(name, source, o.namespace, o)
end

local GIT_SPEC = { repo = "string", revision = "string", path = "string", recurse = "boolean", namespace = "string",
  project = "string" }

--- An Application for a directory of a Git repository, such as the parent
--- of an app-of-apps (its manifests are Applications in `argocd`).
---@param name string
---@param o {repo: string, revision?: string, path?: string, recurse?: boolean, namespace?: string, project?: string}
---@return table application
function M.git_application(name, o)
  opts.arg(common.is_object_name(name), "argocd.git_application", "bad name " .. tostring(name))
  o = opts.check("argocd.git_application", o, GIT_SPEC)
  opts.arg(o.repo ~= nil, "argocd.git_application", "repo is required")
  local source = { repoURL = o.repo, targetRevision = o.revision or "HEAD", path = o.path or "." }
  if o.recurse then source.directory = { recurse = true } end
  return application(name, source, o.namespace or M.NAMESPACE, o)
end

--- A repository Secret (label argocd.argoproj.io/secret-type=repository)
--- that gives Argo CD access to a private Git repository.  The values are
--- resolved secrets (strings).
---@param name string
---@param o {url: string, username?: string, password?: string, ssh_private_key?: string}
---@return table secret
function M.repository_secret(name, o)
  o = opts.check("argocd.repository_secret", o, { url = "string", username = "string", password = "string",
    ssh_private_key = "string" })
  opts.arg(o.url ~= nil, "argocd.repository_secret", "url is required")
  local data = { type = "git", url = o.url }
  data.username, data.password, data.sshPrivateKey = o.username, o.password, o.ssh_private_key
  return common.secret_object(name, M.NAMESPACE, data, { ["argocd.argoproj.io/secret-type"] = "repository" },
    { type = true, url = true, username = true })
end

-- ========== the admin password ==========

--- The initial admin password argocd-server stores in the Secret
--- argocd-initial-admin-secret (key `password`), registered with
--- tlr.log.secret.  With `wait` (seconds) it waits for the Secret to appear.
--- Users are told to delete that Secret once they have changed the
--- password; then this returns ENOTFOUND.
---@param c table a tlr.k8s client
---@param o? {wait?: number, namespace?: string}
---@return string|nil password
---@return string? msg
---@return string? code "ENOTFOUND", "ETIMEDOUT", "EPROTO" (no password in it), the client's codes
function M.admin_password(c, o)
  opts.arg(type(c) == "table" and c.get, "argocd.admin_password", "a tlr.k8s client expected")
  o = opts.check("argocd.admin_password", o, { wait = "number", namespace = "string" })
  local ns = o.namespace or M.NAMESPACE
  local secret, msg, code
  if o.wait and o.wait > 0 then
    secret, msg, code = c:wait("v1", "Secret", M.ADMIN_SECRET, function(s)
      local has = type(s.data) == "table" and type(s.data.password) == "string"
      return has, has and "present" or "no password in it yet"
    end, { namespace = ns, timeout = o.wait })
  else
    secret, msg, code = c:get("v1", "Secret", M.ADMIN_SECRET, { namespace = ns })
  end
  if not secret then return nil, msg, code end
  local b64 = type(secret.data) == "table" and secret.data.password
  local password = type(b64) == "string" and crypto.base64_decode(b64)
  if not password then
    return nil, string.format("secret %s/%s: no password in it", ns, M.ADMIN_SECRET), "EPROTO"
  end
  log.secret(password)
  return password
end

return M
