--- kubeconfig files the way kubectl reads and writes them (clientcmd v1):
--- parse and check one, resolve a context into connection settings (server,
--- CA, client certificate and key, bearer token), make one for a new cluster,
--- merge one into another, remove a context, and write it privately (0600)
--- and atomically.
---
--- `*-data` fields hold base64 of PEM and win over the file forms; relative
--- file paths are relative to the kubeconfig's directory.  Tokens, passwords
--- and keys are registered with tlr.log.secret as soon as they are read.
local crypto = require "tlr.crypto"
local fs = require "tlr.fs"
local log = require "tlr.log"
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"

local M = {}

local null = yaml.null
local LISTS = { clusters = "cluster", users = "user", contexts = "context" }
local LIST_ORDER = { "clusters", "users", "contexts" }

-- Key order when writing: kubectl's layout, then alphabetical.
local ORDER = { "apiVersion", "kind", "current-context", "preferences", "clusters", "contexts", "users",
  "name", "cluster", "context", "user", "server", "certificate-authority-data",
  "certificate-authority", "tls-server-name", "insecure-skip-tls-verify", "namespace",
  "client-certificate-data", "client-certificate", "client-key-data", "client-key", "token",
  "tokenFile" }

---@class tlr.k8s.Settings
---@field context string the context's name
---@field cluster string
---@field user string|nil
---@field server string API server URL
---@field ca string|nil trusted CA, PEM
---@field cert string|nil client certificate, PEM
---@field key string|nil client key, PEM
---@field token string|nil bearer token
---@field username string|nil basic auth
---@field password string|nil
---@field insecure boolean skip server certificate verification
---@field tls_server_name string|nil
---@field namespace string the context's namespace, "default" when unset

local function fail(msg, code) return nil, "kubeconfig: " .. msg, code or "EINVAL" end

local function val(v)
  if v == null then return nil end
  return v
end

local function nonempty(v)
  v = val(v)
  if v == "" then return nil end
  return v
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return setmetatable(out, getmetatable(v))
end

local function find(list, name)
  for i, entry in ipairs(val(list) or {}) do
    if entry.name == name then return entry, i end
  end
end

--- Checks that `cfg` has the shape of a kubeconfig: clusters, users and
--- contexts are lists of `{name = <unique string>, <cluster|user|context> = table}`.
---@param cfg table
---@return table|nil cfg the same table
---@return string? msg
---@return string? code "EINVAL"
function M.check(cfg)
  if type(cfg) ~= "table" then return fail("a mapping expected at the top") end
  for _, list_name in ipairs(LIST_ORDER) do
    local field = LISTS[list_name]
    local list = val(cfg[list_name])
    if list ~= nil then
      if type(list) ~= "table" then return fail(list_name .. " must be a list") end
      local seen = {}
      for i, entry in ipairs(list) do
        if type(entry) ~= "table" or type(entry.name) ~= "string" or entry.name == "" then
          return fail(string.format("%s[%d] has no name", list_name, i))
        end
        if seen[entry.name] then
          return fail(string.format("duplicate name %q in %s", entry.name, list_name))
        end
        seen[entry.name] = true
        local body = val(entry[field])
        if body ~= nil and type(body) ~= "table" then
          return fail(string.format("%s %q: %s must be a mapping", field, entry.name, field))
        end
      end
    end
  end
  local current = val(cfg["current-context"])
  if current ~= nil and type(current) ~= "string" then return fail("current-context must be a string") end
  return cfg
end

--- Parses kubeconfig text (YAML or JSON).  An empty text is an empty config.
---@param text string
---@return table|nil cfg
---@return string? msg
---@return string? code "EINVAL"
function M.parse(text)
  opts.arg(type(text) == "string", "kubeconfig.parse", "string expected")
  local doc, msg, code = yaml.decode(text)
  if doc == nil then return fail(msg, code) end
  if doc == null then doc = {} end
  return M.check(doc)
end

--- Reads and parses a kubeconfig file.  A file that group or others can
--- read is refused (EPERM, the message says the chmod that fixes it) unless
--- `allow_readable` is set.
---@param path string
---@param o? {allow_readable?: boolean}
---@return table|nil cfg
---@return string? msg
---@return string? code "ENOENT", "EPERM", "EINVAL"
function M.read(path, o)
  opts.arg(type(path) == "string", "kubeconfig.read", "path expected")
  o = opts.check("kubeconfig.read", o, { allow_readable = "boolean" })
  local text, msg, code = fs.read(path)
  if not text then return nil, msg, code end
  if not o.allow_readable then
    local ok, pmsg, pcode = fs.check_private(path)
    if not ok then return nil, pmsg, pcode end
  end
  local cfg
  cfg, msg, code = M.parse(text)
  if not cfg then return nil, path .. ": " .. msg, code end
  return cfg
end

--- The names of the contexts, in file order.
---@param cfg table
---@return string[]
function M.contexts(cfg)
  local out = {}
  for _, c in ipairs(val(cfg.contexts) or {}) do out[#out + 1] = c.name end
  return out
end

-- PEM from a `*-data` field (base64) or its file form.
local function pem_field(body, field, dir, what)
  local data = nonempty(body[field .. "-data"])
  if data then
    if type(data) ~= "string" then return fail(what .. ": " .. field .. "-data must be a string") end
    local pem = crypto.base64_decode(data)
    if not pem then return fail(what .. ": " .. field .. "-data is not base64") end
    return pem
  end
  local path = nonempty(body[field])
  if path == nil then return false end
  if type(path) ~= "string" then return fail(what .. ": " .. field .. " must be a path") end
  if dir and path:sub(1, 1) ~= "/" then path = fs.join(dir, path) end
  local pem, msg, code = fs.read(path)
  if not pem then return fail(what .. ": " .. field .. ": " .. msg, code) end
  return pem
end

-- curl (OpenSSL's PEM reader) does not know Talos' "ED25519 PRIVATE KEY": PKCS#8 it is.
local function usable_key(pem)
  if pem:find("-----BEGIN ED25519 PRIVATE KEY-----", 1, true) then
    local key, msg = crypto.load_key(pem)
    if not key then return fail("client key: " .. msg) end
    local out = key:pem { format = "pkcs8" }
    key:close()
    return out
  end
  return pem
end

--- Resolves a context into the settings a client needs.  `context` defaults
--- to current-context; `dir` is where relative file paths start (read()
--- callers pass the file's directory).  Exec and auth-provider plugins are
--- not run: a user that has nothing else fails with EINVAL.
---@param cfg table a parsed kubeconfig
---@param o? {context?: string, dir?: string}
---@return tlr.k8s.Settings|nil settings
---@return string? msg
---@return string? code "EINVAL", "ENOENT" (a referenced file)
function M.resolve(cfg, o)
  opts.arg(type(cfg) == "table", "kubeconfig.resolve", "config table expected")
  o = opts.check("kubeconfig.resolve", o, { context = "string", dir = "string" })
  local ok, msg, code = M.check(cfg)
  if not ok then return nil, msg, code end
  local name = o.context or nonempty(cfg["current-context"])
  if not name then return fail("no current-context set and no context given") end
  local entry = find(cfg.contexts, name)
  if not entry then return fail(string.format("no context %q", name)) end
  local ctx = val(entry.context) or {}
  local cluster_name = nonempty(ctx.cluster)
  local cluster_entry = cluster_name and find(cfg.clusters, cluster_name)
  if not cluster_entry then
    return fail(string.format("context %q: cluster %q is not defined", name, tostring(cluster_name)))
  end
  local cluster = val(cluster_entry.cluster) or {}
  local where = string.format("cluster %q", cluster_name)
  local server = nonempty(cluster.server)
  if type(server) ~= "string" then return fail(where .. " has no server") end
  if nonempty(cluster["proxy-url"]) then return fail(where .. ": proxy-url is not supported") end
  local s = {
    context = name, cluster = cluster_name, server = server:gsub("/+$", ""),
    insecure = val(cluster["insecure-skip-tls-verify"]) == true,
    tls_server_name = nonempty(cluster["tls-server-name"]),
    namespace = nonempty(ctx.namespace) or "default",
  }
  local ca
  ca, msg, code = pem_field(cluster, "certificate-authority", o.dir, where)
  if ca == nil then return nil, msg, code end
  if ca and s.insecure then
    return fail(where .. ": specifying a root certificates file with the insecure flag is not allowed")
  end
  s.ca = ca or nil
  local user_name = nonempty(ctx.user)
  if user_name then
    local user_entry = find(cfg.users, user_name)
    if not user_entry then
      return fail(string.format("context %q: user %q is not defined", name, user_name))
    end
    s.user = user_name
    local user = val(user_entry.user) or {}
    local uwhere = string.format("user %q", user_name)
    local cert, key
    cert, msg, code = pem_field(user, "client-certificate", o.dir, uwhere)
    if cert == nil then return nil, msg, code end
    key, msg, code = pem_field(user, "client-key", o.dir, uwhere)
    if key == nil then return nil, msg, code end
    if (cert and not key) or (key and not cert) then
      return fail(uwhere .. ": a client certificate needs its key and the other way round")
    end
    if key then
      log.secret(key)
      log.secret(nonempty(user["client-key-data"]))
      key, msg, code = usable_key(key)
      if not key then return nil, msg, code end
      s.cert, s.key = cert, log.secret(key)
    end
    local token = nonempty(user.token)
    local token_file = nonempty(user.tokenFile)
    if not token and token_file then
      if o.dir and token_file:sub(1, 1) ~= "/" then token_file = fs.join(o.dir, token_file) end
      token, msg, code = fs.read(token_file)
      if not token then return fail(uwhere .. ": tokenFile: " .. msg, code) end
      token = token:gsub("%s+$", "")
    end
    if token then s.token = log.secret(token) end
    if nonempty(user.username) then
      s.username = user.username
      s.password = log.secret(nonempty(user.password) or "")
    end
    if not (s.cert or s.token or s.username) and (nonempty(user.exec) or nonempty(user["auth-provider"])) then
      return fail(uwhere .. " uses an exec or auth-provider plugin, which tlr does not run")
    end
  end
  return s
end

--- Reads a kubeconfig file and resolves a context of it (relative paths
--- start at the file's directory).
---@param path string
---@param o? {context?: string, allow_readable?: boolean}
---@return tlr.k8s.Settings|nil settings
---@return string? msg
---@return string? code
function M.load(path, o)
  opts.arg(type(path) == "string", "kubeconfig.load", "path expected")
  o = opts.check("kubeconfig.load", o, { context = "string", allow_readable = "boolean" })
  local cfg, msg, code = M.read(path, { allow_readable = o.allow_readable })
  if not cfg then return nil, msg, code end
  local s
  s, msg, code = M.resolve(cfg, { context = o.context, dir = fs.dirname(path) })
  if not s then return nil, path .. ": " .. msg:gsub("^kubeconfig: ", ""), code end
  return s
end

--- The kubeconfig paths kubectl would use: the entries of $KUBECONFIG
--- (colon-separated), else ~/.kube/config.
---@return string[]
function M.default_paths()
  local env = os.getenv("KUBECONFIG")
  local out = {}
  if env and env ~= "" then
    for p in env:gmatch("[^:]+") do out[#out + 1] = p end
    return out
  end
  return { fs.join(os.getenv("HOME") or ".", ".kube/config") }
end

local function b64(pem) return crypto.base64_encode(pem) end

---@class tlr.k8s.MakeOpts
---@field server string
---@field ca? string PEM
---@field cert? string PEM
---@field key? string PEM
---@field token? string
---@field insecure? boolean
---@field namespace? string
---@field user? string
---@field context? string

--- Makes a kubeconfig with one cluster, one user and one context, named the
--- way `talosctl kubeconfig` names them: cluster `name`, user and context
--- `admin@<name>` (override with `user` and `context`).
---@param name string the cluster's name
---@param o tlr.k8s.MakeOpts
---@return table cfg
function M.make(name, o)
  opts.arg(type(name) == "string" and name ~= "", "kubeconfig.make", "cluster name expected")
  o = opts.check("kubeconfig.make", o, { server = "string", ca = "string", cert = "string", key = "string",
    token = "string", insecure = "boolean", namespace = "string", user = "string", context = "string" })
  opts.arg(o.server ~= nil, "kubeconfig.make", "server is required")
  opts.arg((o.cert == nil) == (o.key == nil), "kubeconfig.make", "cert and key go together")
  opts.arg(not (o.ca and o.insecure), "kubeconfig.make", "ca and insecure exclude each other")
  local user_name = o.user or ("admin@" .. name)
  local ctx_name = o.context or ("admin@" .. name)
  local cluster = { server = o.server }
  if o.ca then cluster["certificate-authority-data"] = b64(o.ca) end
  if o.insecure then cluster["insecure-skip-tls-verify"] = true end
  local user = {}
  if o.cert then
    user["client-certificate-data"] = b64(o.cert)
    user["client-key-data"] = log.secret(b64(log.secret(o.key)))
  end
  if o.token then user.token = log.secret(o.token) end
  local ctx = { cluster = name, user = user_name, namespace = o.namespace }
  return {
    apiVersion = "v1", kind = "Config", preferences = {},
    clusters = yaml.array { { name = name, cluster = cluster } },
    users = yaml.array { { name = user_name, user = user } },
    contexts = yaml.array { { name = ctx_name, context = ctx } },
    ["current-context"] = ctx_name,
  }
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

--- Merges `add` into a copy of `base`: every cluster, user and context of
--- `add` is appended, or replaces the entry of the same name (with
--- `replace = false` a differing entry of the same name fails with EEXIST).
--- `add`'s current-context becomes current unless `current = false`.
---@param base table|nil
---@param add table
---@param o? {replace?: boolean, current?: boolean}
---@return table|nil cfg a new table (base and add are not changed)
---@return string? msg
---@return string? code "EEXIST", "EINVAL"
function M.merge(base, add, o)
  opts.arg(base == nil or type(base) == "table", "kubeconfig.merge", "base config table expected")
  opts.arg(type(add) == "table", "kubeconfig.merge", "config table expected")
  o = opts.check("kubeconfig.merge", o, { replace = "boolean", current = "boolean" })
  local ok, msg, code = M.check(base or {})
  if ok then ok, msg, code = M.check(add) end
  if not ok then return nil, msg, code end
  local out = copy(base or {})
  out.apiVersion = val(out.apiVersion) or "v1"
  out.kind = val(out.kind) or "Config"
  for _, list_name in ipairs(LIST_ORDER) do
    local list = val(out[list_name]) or {}
    out[list_name] = yaml.array(list)
    for _, entry in ipairs(val(add[list_name]) or {}) do
      local old, i = find(list, entry.name)
      if not old then
        list[#list + 1] = copy(entry)
      elseif not same(old, entry) then
        if o.replace == false then
          return fail(string.format("%s %q exists already", LISTS[list_name], entry.name), "EEXIST")
        end
        list[i] = copy(entry)
      end
    end
  end
  local current = nonempty(add["current-context"])
  if current and o.current ~= false then out["current-context"] = current end
  return out
end

--- Removes a context from a copy of `cfg`, with its cluster and user unless
--- another context still uses them; current-context is cleared when it
--- named the context.  Removing an absent context changes nothing.
---@param cfg table
---@param context string
---@return table cfg a new table
function M.remove(cfg, context)
  opts.arg(type(cfg) == "table", "kubeconfig.remove", "config table expected")
  opts.arg(type(context) == "string", "kubeconfig.remove", "context name expected")
  local out = copy(cfg)
  local entry, i = find(out.contexts, context)
  if not entry then return out end
  table.remove(out.contexts, i)
  local ctx = val(entry.context) or {}
  for list_name, field in pairs { clusters = "cluster", users = "user" } do
    local name = nonempty(ctx[field])
    local used = false
    for _, other in ipairs(out.contexts) do
      if (val(other.context) or {})[field] == name then used = true end
    end
    local _, j = find(out[list_name], name)
    if name and j and not used then table.remove(out[list_name], j) end
  end
  if out["current-context"] == context then out["current-context"] = "" end
  return out
end

--- Encodes a kubeconfig as YAML text (kubectl's key order first).
---@param cfg table
---@return string|nil text
---@return string? msg
---@return string? code
function M.encode(cfg)
  local ok, msg, code = M.check(cfg)
  if not ok then return nil, msg, code end
  return yaml.encode(cfg, { order = ORDER })
end

--- Writes a kubeconfig file: mode 0600, atomically (temp file, fsync,
--- rename); a missing parent directory is made 0700.
---@param path string
---@param cfg table
---@return true|nil ok
---@return string? msg
---@return string? code "EINVAL", "EPERM", "EIO"
function M.write(path, cfg)
  opts.arg(type(path) == "string", "kubeconfig.write", "path expected")
  opts.arg(type(cfg) == "table", "kubeconfig.write", "config table expected")
  local text, msg, code = M.encode(cfg)
  if not text then return nil, msg, code end
  local dir = fs.dirname(path)
  if not fs.exists(dir) then
    local ok
    ok, msg, code = fs.mkdir(dir, { mode = 0x1c0 })
    if not ok then return nil, msg, code end
  end
  return fs.write(path, text, { mode = 0x180 })
end

--- Merges `add` into the kubeconfig at `path` (a missing file counts as
--- empty) and writes the result back; see merge() for `replace` and `current`.
---@param path string
---@param add table
---@param o? {replace?: boolean, current?: boolean, allow_readable?: boolean}
---@return true|nil ok
---@return string? msg
---@return string? code
function M.update(path, add, o)
  opts.arg(type(path) == "string", "kubeconfig.update", "path expected")
  o = opts.check("kubeconfig.update", o,
    { replace = "boolean", current = "boolean", allow_readable = "boolean" })
  local base, msg, code
  if fs.exists(path) then
    base, msg, code = M.read(path, { allow_readable = o.allow_readable })
    if not base then return nil, msg, code end
  end
  local cfg
  cfg, msg, code = M.merge(base, add, { replace = o.replace, current = o.current })
  if not cfg then return nil, msg, code end
  return M.write(path, cfg)
end

return M
