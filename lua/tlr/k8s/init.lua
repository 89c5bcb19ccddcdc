--- Kubernetes API client on tlr.http.
---
--- `k8s.connect{kubeconfig = path | text | table, context = ...}` (or
--- `server` with ca/cert/key/token) returns a client; nothing is sent until
--- the first call.  Kinds map to resources through discovery only
--- (tlr.k8s.discovery).  Calls return plain tables (the API's own JSON), or
--- `nil, msg, code, status` where msg reads "<verb> <kind> <ns>/<name>:
--- <message>", code is ENOTFOUND, EINVAL (Invalid, BadRequest), EAUTH,
--- EFORBIDDEN, EAPI (Conflict, AlreadyExists, 5xx, ...) or a transport code,
--- and status is the API's Status table.  Transient failures (429, 5xx such
--- as a webhook that is not up yet, refused or reset connections) are
--- retried with backoff and jitter within the client's retry budget; every
--- call the client makes is idempotent (GET, server-side apply, DELETE).
---
--- Server-side apply with ordering lives in tlr.k8s.apply, waits in
--- tlr.k8s.wait, watches in tlr.k8s.watch; their functions are methods of
--- the client too (`c:apply`, `c:wait_rollout`, `c:watch`, ...).
local crypto = require "tlr.crypto"
local discovery = require "tlr.k8s.discovery"
local fs = require "tlr.fs"
local http = require "tlr.http"
local json = require "tlr.json"
local kubeconfig = require "tlr.k8s.kubeconfig"
local log = require "tlr.log"
local sched = require "tlr.sched"
local opts = require "tlr.opts"
local check = opts.check

local M = {}

M.kubeconfig = kubeconfig
M.discovery = discovery

local Client = {}
Client.__index = Client
Client.__name = "tlr.k8s.Client"

-- ========== connecting ==========

local CONNECT_SPEC = {
  kubeconfig = { "string", "table" }, context = "string", allow_readable = "boolean",
  server = "string", ca = "string", cert = "string", key = "string", token = "string",
  insecure = "boolean", namespace = "string", field_manager = "string", timeout = "number",
  retry_budget = "number", max_inflight = "integer", http2 = "boolean",
}

local function settings_of(o)
  if o.server then
    opts.arg(o.kubeconfig == nil and o.context == nil, "k8s.connect",
      "server excludes kubeconfig and context")
    opts.arg((o.cert == nil) == (o.key == nil), "k8s.connect", "cert and key go together")
    if o.token then log.secret(o.token) end
    if o.key then log.secret(o.key) end
    return { server = o.server:gsub("/+$", ""), ca = o.ca, cert = o.cert, key = o.key, token = o.token,
      insecure = o.insecure == true, namespace = "default", context = "" }
  end
  for _, k in ipairs { "ca", "cert", "key", "token", "insecure" } do
    opts.arg(o[k] == nil, "k8s.connect", k .. " goes with server, not with a kubeconfig")
  end
  local kc = o.kubeconfig
  if type(kc) == "table" then return kubeconfig.resolve(kc, { context = o.context }) end
  if type(kc) == "string" and (kc:find("\n", 1, true) or kc:match("^%s*{")) then
    local cfg, msg, code = kubeconfig.parse(kc)
    if not cfg then return nil, msg, code end
    return kubeconfig.resolve(cfg, { context = o.context })
  end
  local path = kc
  if not path then
    local paths = kubeconfig.default_paths()
    for _, p in ipairs(paths) do
      if fs.exists(p) then path = p break end
    end
    if not path then
      return nil, "no kubeconfig: " .. table.concat(paths, ":") .. " does not exist", "ENOENT"
    end
  end
  return kubeconfig.load(path, { context = o.context, allow_readable = o.allow_readable })
end

---@class tlr.k8s.ConnectOpts
---@field kubeconfig? string|table a path, YAML/JSON text, or a parsed kubeconfig
---@field context? string
---@field allow_readable? boolean
---@field server? string
---@field ca? string
---@field cert? string
---@field key? string
---@field token? string
---@field insecure? boolean
---@field namespace? string
---@field field_manager? string
---@field timeout? number
---@field retry_budget? number
---@field max_inflight? integer
---@field http2? boolean

--- Makes a client.  Give `kubeconfig` (a path, YAML/JSON text, or a parsed
--- table; default $KUBECONFIG or ~/.kube/config) with an optional `context`,
--- or `server` with `ca`, `cert` + `key`, `token` or `insecure`.
--- `namespace` overrides the context's namespace (the default for
--- namespaced objects that name none).
---@param o? tlr.k8s.ConnectOpts
---@return table|nil client
---@return string? msg
---@return string? code "EINVAL", "ENOENT", "EPERM"
function M.connect(o)
  o = check("k8s.connect", o, CONNECT_SPEC)
  local s, msg, code = settings_of(o)
  if not s then return nil, msg, code end
  local base, resolve = s.server, nil
  if not base:match("^https?://") then
    return nil, "k8s: server must be an http(s) URL: " .. base, "EINVAL"
  end
  if s.tls_server_name then
    -- connect to the address, verify and send SNI for the name
    local scheme, host, port = base:match("^(https?)://([%d.]+):?(%d*)$")
    if not host then
      return nil, "k8s: tls-server-name needs a server given as IPv4 address and port", "EINVAL"
    end
    port = port ~= "" and port or (scheme == "https" and "443" or "80")
    base = scheme .. "://" .. s.tls_server_name .. ":" .. port
    resolve = { s.tls_server_name .. ":" .. port .. ":" .. host }
  end
  local headers = { Accept = "application/json", ["User-Agent"] = "tlr" }
  if s.token then
    headers.Authorization = log.secret("Bearer " .. s.token)
  elseif s.username then
    local basic = log.secret(crypto.base64_encode(s.username .. ":" .. s.password))
    headers.Authorization = log.secret("Basic " .. basic)
  end
  local self = setmetatable({
    server = base, context = s.context, namespace = o.namespace or s.namespace,
    tls = { ca = s.ca, cert = s.cert, key = s.key, insecure = s.insecure or nil },
    resolve = resolve, headers = headers, http2 = o.http2 ~= false,
    field_manager = o.field_manager or "tlr",
    timeout = o.timeout or 60, retry_budget = o.retry_budget or 60,
    limit = sched.semaphore(o.max_inflight or 16),
    stats = { requests = 0, retries = 0 },
  }, Client)
  self.discovery = discovery.new(self)
  return self
end

-- ========== requests ==========

--- "<verb> <kind> <ns>/<name>" for messages (kind in lower case).
---@param verb string
---@param kind string
---@param namespace? string
---@param name? string
---@return string
function M.describe(verb, kind, namespace, name)
  local s = verb .. " " .. tostring(kind):lower()
  if name then return s .. " " .. (namespace and (namespace .. "/") or "") .. name end
  if namespace then return s .. " in " .. namespace end
  return s
end

local function classify(status)
  if status == 401 then return "EAUTH" end
  if status == 403 then return "EFORBIDDEN" end
  if status == 404 then return "ENOTFOUND" end
  if status == 400 or status == 422 or status == 415 or status == 406 or status == 413 then
    return "EINVAL"
  end
  return "EAPI"
end

local TRANSIENT_CODES = { ECONNREFUSED = true, ECONNRESET = true, ETIMEDOUT = true }

--- The Status of an error reply, or one made from the status line.
local function status_of(res)
  local body = res.body or ""
  if body:match("^%s*{") then
    local st = json.decode(body)
    if type(st) == "table" and st.kind == "Status" then return st end
  end
  local text = body:match("^[^\n]*") or ""
  if text == "" then text = res.reason ~= "" and res.reason or ("HTTP " .. res.status) end
  return { kind = "Status", apiVersion = "v1", status = "Failure", code = res.status, reason = "",
    message = text }
end

--- Sends one HTTP request to the API server with the client's TLS and
--- authentication; returns tlr.http's response (any status) or nil, msg, code.
---@param method string
---@param path string starting with "/"
---@param req? table tlr.http.request options (query, body, headers, timeout, on_data, ...)
function Client:send(method, path, req)
  local headers = {}
  for k, v in pairs(self.headers) do headers[k] = v end
  for k, v in pairs(req and req.headers or {}) do headers[k] = v end
  local r = {
    method = method, url = self.server .. path, headers = headers, timeout = self.timeout,
    ca = self.tls.ca, cert = self.tls.cert, key = self.tls.key, insecure = self.tls.insecure,
    http2 = self.http2, resolve = self.resolve,
  }
  for k, v in pairs(req or {}) do
    if k ~= "headers" then r[k] = v end
  end
  self.stats.requests = self.stats.requests + 1
  if r.on_data then return http.request(r) end -- streams do not take a permit
  return self.limit:with(http.request, r)
end

---@class tlr.k8s.RequestOpts
---@field query? table
---@field body? table|string a table is sent as JSON
---@field content_type? string
---@field timeout? number
---@field what? string the message prefix, "get deployment ns/x"
---@field retry_budget? number
---@field headers? table

local REQUEST_SPEC = { query = "table", body = { "table", "string" }, content_type = "string",
  timeout = "number", what = "string", retry_budget = "number", headers = "table" }

--- One API call with retries of transient failures.  A table body is sent
--- as JSON (content_type default application/json).  Returns the decoded
--- JSON reply (or the raw text of a non-JSON reply) and tlr.http's response.
---@param method string
---@param path string
---@param o? tlr.k8s.RequestOpts
---@return any|nil reply
---@return table|string response, or the message on failure
---@return string? code
---@return table? status the API's Status
function Client:request(method, path, o)
  o = check("k8s.request", o, REQUEST_SPEC)
  opts.arg(type(path) == "string" and path:sub(1, 1) == "/", "k8s.request", "path must start with '/'")
  local what = o.what or (method .. " " .. path)
  local body = o.body
  if type(body) == "table" then
    local text, msg = json.encode(body)
    if not text then return nil, what .. ": " .. msg, "EINVAL" end
    body = text
  end
  local headers = {}
  for k, v in pairs(o.headers or {}) do headers[k] = v end
  if body then headers["Content-Type"] = o.content_type or "application/json" end
  local req = { query = o.query, body = body, headers = headers, timeout = o.timeout }
  local deadline = sched.now() + (o.retry_budget or self.retry_budget)
  local delay = 0.1
  while true do
    local res, msg, code = self:send(method, path, req)
    local wait
    if res and res.status >= 200 and res.status < 300 then
      local reply = res.body
      if reply:match("^%s*[{%[]") then
        local err
        reply, err = json.decode(reply)
        if reply == nil then return nil, what .. ": reply is not JSON: " .. err, "EPROTO" end
      end
      return reply, res
    end
    local st
    if res then
      st = status_of(res)
      msg, code = what .. ": " .. tostring(st.message), classify(res.status)
      if res.status == 429 or res.status >= 500 then
        wait = tonumber(res.headers["retry-after"] or "")
        wait = wait and math.min(wait, 10) or true
      end
    else
      msg = what .. ": " .. msg
      wait = TRANSIENT_CODES[code]
    end
    if not wait or sched.now() + delay > deadline then return nil, msg, code, st end
    self.stats.retries = self.stats.retries + 1
    log.debug("k8s: retrying in %.1fs: %s", delay, msg)
    sched.sleep(type(wait) == "number" and wait or delay * (0.5 + math.random()))
    delay = math.min(delay * 2, 1) -- what it waits for (a webhook, a CRD) is seconds away, not minutes
  end
end

-- ========== objects ==========

--- The resource for a kind (discovery).
---@param api_version string
---@param kind string
---@return tlr.k8s.Resource|nil res
---@return string? msg
---@return string? code
function Client:resource(api_version, kind)
  opts.arg(type(api_version) == "string", "k8s.resource", "apiVersion expected")
  opts.arg(type(kind) == "string", "k8s.resource", "kind expected")
  return self.discovery:resolve(api_version, kind)
end

--- Finds a resource by kind, plural, singular, short name or plural.group.
---@param name string
function Client:find(name)
  opts.arg(type(name) == "string", "k8s.find", "resource name expected")
  return self.discovery:find(name)
end

-- res, namespace (nil for cluster-scoped), path; or nil, msg, code, status
local function locate(self, verb, api_version, kind, name, o)
  local res, msg, code, st = self.discovery:resolve(api_version, kind)
  if not res then return nil, M.describe(verb, kind, o.namespace, name) .. ": " .. msg, code, st end
  local ns = nil
  if res.namespaced and not o.all_namespaces then ns = o.namespace or self.namespace end
  return res, ns, discovery.path(res, ns, name)
end

--- Gets one object.
---@param api_version string
---@param kind string
---@param name string
---@param o? {namespace?: string, timeout?: number}
---@return table|nil object
---@return string? msg "get deployment argocd/x: deployments.apps \"x\" not found"
---@return string? code "ENOTFOUND", ...
---@return table? status
function Client:get(api_version, kind, name, o)
  opts.arg(type(name) == "string" and name ~= "", "k8s.get", "name expected")
  o = check("k8s.get", o, { namespace = "string", timeout = "number" })
  local res, ns, path, st0 = locate(self, "get", api_version, kind, name, o)
  if not res then return nil, ns, path, st0 end
  local obj, msg, code, st = self:request("GET", path, { what = M.describe("get", kind, ns, name),
    timeout = o.timeout })
  if obj == nil then return nil, msg, code, st end
  return obj
end

local function selector(v)
  if type(v) ~= "table" then return v end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local x = v[k]
    parts[#parts + 1] = x == true and k or (k .. "=" .. tostring(x))
  end
  return table.concat(parts, ",")
end
M.selector = selector

---@class tlr.k8s.ListOpts
---@field namespace? string
---@field all_namespaces? boolean
---@field label_selector? string|table
---@field field_selector? string|table
---@field limit? integer page size
---@field continue? string
---@field pages? integer
---@field timeout? number

local LIST_SPEC = { namespace = "string", all_namespaces = "boolean", label_selector = { "string", "table" },
  field_selector = { "string", "table" }, limit = "integer", continue = "string", pages = "integer",
  timeout = "number" }

--- Lists objects, page by page (`limit` per page, default 500) until the
--- server has no more, or `pages` pages.  Selectors are strings
--- ("app=x,tier!=db") or tables ({app = "x"}; true means "the label exists").
--- Items get apiVersion and kind filled in.
---@param api_version string
---@param kind string
---@param o? tlr.k8s.ListOpts
---@return table|nil list {apiVersion, kind, metadata = {resourceVersion, continue?}, items}
---@return string? msg
---@return string? code
---@return table? status
function Client:list(api_version, kind, o)
  o = check("k8s.list", o, LIST_SPEC)
  local res, ns, path, st0 = locate(self, "list", api_version, kind, nil, o)
  if not res then return nil, ns, path, st0 end
  local what = M.describe("list", res.name, ns)
  local items, token, pages, first = json.array(), o.continue, 0, nil
  local limit = o.limit or 500
  while true do
    local query = { limit = limit > 0 and tostring(limit) or nil, continue = token,
      labelSelector = selector(o.label_selector), fieldSelector = selector(o.field_selector) }
    local page, msg, code, st = self:request("GET", path, { query = query, what = what, timeout = o.timeout })
    if page == nil then
      if code == "EAPI" and st and st.code == 410 and token and not o.continue then
        -- the continue token expired: start over with one unpaged list
        items, token, pages, first, limit = json.array(), nil, 0, nil, 0
      else
        return nil, msg, code, st
      end
    else
      first = first or page
      for _, item in ipairs(page.items or {}) do
        item.apiVersion = item.apiVersion or api_version
        item.kind = item.kind or kind
        items[#items + 1] = item
      end
      pages = pages + 1
      local meta = page.metadata or {}
      token = meta.continue ~= "" and meta.continue or nil
      if not token or (o.pages and pages >= o.pages) then break end
    end
  end
  local meta = first.metadata or {}
  return { apiVersion = first.apiVersion or "v1", kind = first.kind or (kind .. "List"),
    metadata = { resourceVersion = meta.resourceVersion, continue = token }, items = items }
end

---@class tlr.k8s.DeleteOpts
---@field namespace? string
---@field propagation? "Background"|"Foreground"|"Orphan"
---@field grace_period? integer
---@field wait? boolean
---@field timeout? number

local DELETE_SPEC = { namespace = "string", propagation = "string", grace_period = "integer",
  wait = "boolean", timeout = "number" }

--- Deletes an object.  `propagation` is Background (default), Foreground or
--- Orphan.  With `wait` (default true) it returns once the object is gone:
--- finalizers run first, and the wait names those still pending.  An
--- object that does not exist counts as deleted.
---@param api_version string
---@param kind string
---@param name string
---@param o? tlr.k8s.DeleteOpts
---@return true|nil ok
---@return string state "deleted", "absent" (not there), "deleting" (wait = false); or the message
---@return string? code
---@return table? status
function Client:delete(api_version, kind, name, o)
  opts.arg(type(name) == "string" and name ~= "", "k8s.delete", "name expected")
  o = check("k8s.delete", o, DELETE_SPEC)
  local p = o.propagation or "Background"
  opts.arg(p == "Background" or p == "Foreground" or p == "Orphan", "k8s.delete",
    "propagation must be Background, Foreground or Orphan")
  local res, ns, path, st0 = locate(self, "delete", api_version, kind, name, o)
  if not res then return nil, ns, path, st0 end
  local body = { apiVersion = "v1", kind = "DeleteOptions", propagationPolicy = p,
    gracePeriodSeconds = o.grace_period }
  local obj, msg, code, st = self:request("DELETE", path,
    { body = body, what = M.describe("delete", kind, ns, name) })
  if obj == nil then
    if code == "ENOTFOUND" then return true, "absent" end
    return nil, msg, code, st
  end
  if o.wait == false then return true, "deleting" end
  local uid = type(obj) == "table" and ((obj.metadata or {}).uid or (obj.details or {}).uid) or nil
  local ok
  ok, msg, code, st = require("tlr.k8s.wait").deleted(self, api_version, kind, name,
    { namespace = ns, uid = uid, timeout = o.timeout or 120 })
  if not ok then return nil, msg, code, st end
  return true, "deleted"
end

--- The server's version (`GET /version`): {major, minor, gitVersion, ...}.
function Client:version()
  local v, msg, code = self:request("GET", "/version", { what = "get version" })
  if v == nil then return nil, msg, code end
  return v
end

function Client:__tostring()
  return "k8s client " .. self.server .. (self.context ~= "" and (" (" .. self.context .. ")") or "")
end

-- ========== the other modules' methods ==========

local function bind(modname, names)
  for method, fname in pairs(names) do
    Client[method] = function(...) return require(modname)[fname](...) end
  end
end
bind("tlr.k8s.apply", { apply = "apply", documents = "documents" })
bind("tlr.k8s.watch", { watch = "watch" })
bind("tlr.k8s.wait", { wait = "wait", wait_rollout = "rollout", wait_condition = "condition",
  wait_crd = "crd", wait_application = "application", wait_deleted = "deleted", wait_ready = "ready" })

M.Client = Client
return M
