--- Talos API client (machine, storage and COSI services) over tlr.grpc.
---
--- `client.connect(endpoint, {insecure = true})` talks to a node in
--- maintenance mode (no client certificate, the node's self-signed cert is
--- not verified, as talosctl --insecure does).  With a talosconfig (text or
--- table, optionally a context) or ca/cert/key it talks mutual TLS to apid.
--- Every call returns its result, or nil, msg, code, details; a reply
--- message whose metadata carries an error (apid's one-to-many proxying)
--- fails the call and names the node.
local archive = require "tlr.archive"
local crypto = require "tlr.crypto"
local grpc = require "tlr.grpc"
local log = require "tlr.log"
local proto = require "tlr.talos.proto"
local yaml = require "tlr.yaml"
local check = require("tlr.opts").check

local M = {}

local Client = {}
Client.__index = Client
Client.__name = "tlr.talos.Client"

M.PORT = 50000

local function b64(s, field)
  local out = crypto.base64_decode(s or "")
  if not out then error("talosconfig: " .. field .. " is not base64", 3) end
  return out
end

--- Parses a talosconfig (YAML text or table) and returns the chosen context:
--- {name, endpoints, nodes, ca, cert, key} with PEM strings.
function M.read_talosconfig(tc, context)
  if type(tc) == "string" then
    local doc, msg, code = yaml.decode(tc)
    if not doc then return nil, "talosconfig: " .. msg, code end
    tc = doc
  end
  if type(tc) ~= "table" or type(tc.contexts) ~= "table" then
    return nil, "talosconfig: no contexts", "EINVAL"
  end
  local name = context or tc.context
  local ctx = tc.contexts[name]
  if type(ctx) ~= "table" then return nil, "talosconfig: no context '" .. tostring(name) .. "'", "EINVAL" end
  local ok, res = pcall(function()
    return { name = name, endpoints = ctx.endpoints or {}, nodes = ctx.nodes or {},
      ca = b64(ctx.ca, "ca"), cert = b64(ctx.crt, "crt"), key = b64(ctx.key, "key") }
  end)
  if not ok then return nil, tostring(res):gsub("^.-: ", "", 1), "EINVAL" end
  return res
end

local CONNECT_SPEC = { insecure = "boolean", talosconfig = { "string", "table" }, context = "string",
  ca = "string", cert = "string", key = "string", timeout = "number", port = "integer",
  fingerprint = "string", node = "string", nodes = "table" }

--- Connects to a Talos endpoint (an address; ":50000" is added when no port is given).
---@param endpoint string
---@param o table {insecure | talosconfig [, context] | ca + cert + key, timeout, node, nodes}
---@return table? client, string? msg, string? code
function M.connect(endpoint, o)
  o = check("talos.connect", o, CONNECT_SPEC)
  if type(endpoint) ~= "string" or endpoint == "" then error("talos.connect: endpoint expected", 2) end
  local self = setmetatable({ timeout = o.timeout or 30, metadata = {} }, Client)
  local host = endpoint
  if not host:match(":%d+$") or host:match("^%[.*%]$") then
    host = (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. (o.port or M.PORT)
  end
  self.endpoint = host
  self.url = "https://" .. host
  if o.insecure then
    self.tls = { insecure = true }
    self.maintenance = true
  else
    local ca, cert, key = o.ca, o.cert, o.key
    if o.talosconfig then
      local ctx, msg, code = M.read_talosconfig(o.talosconfig, o.context)
      if not ctx then return nil, msg, code end
      ca, cert, key = ctx.ca, ctx.cert, ctx.key
    end
    if not (ca and cert and key) then
      error("talos.connect: give insecure = true, a talosconfig, or ca, cert and key", 2)
    end
    -- Talos writes Ed25519 keys as "ED25519 PRIVATE KEY", which curl cannot read: PKCS#8 it is
    local k, msg, code = crypto.load_key(key)
    if not k then return nil, "talos client key: " .. msg, code end
    key = k:pem { format = "pkcs8" }
    log.secret(key)
    self.tls = { ca = ca, cert = cert, key = key, fingerprint = o.fingerprint }
  end
  if o.node then self.metadata.node = o.node end
  if o.nodes then self.metadata.nodes = o.nodes end
  return self
end

--- A client that routes its calls through apid to `node` (one-to-one) or
--- to every one of `nodes` (one-to-many).
function Client:route(o)
  o = check("talos.route", o, { node = "string", nodes = "table" })
  local copy = setmetatable({}, Client)
  for k, v in pairs(self) do copy[k] = v end
  copy.metadata = { node = o.node, nodes = o.nodes }
  return copy
end

local function node_name(msg, self)
  local md = type(msg) == "table" and msg.metadata
  return (md and md.hostname ~= "" and md.hostname) or self.metadata.node or self.endpoint
end

-- A unary call: the reply's `messages`, each checked for metadata.error.
function Client:call(name, request, o)
  local m = proto.methods[name]
  local reply, meta, code, details = grpc.call {
    url = self.url, path = m.path, schema = proto.schema, request_type = m.request,
    response_type = m.response, request = request or {}, metadata = self.metadata,
    timeout = (o and o.timeout) or self.timeout, ca = self.tls.ca, cert = self.tls.cert,
    key = self.tls.key, insecure = self.tls.insecure, fingerprint = self.tls.fingerprint,
  }
  if not reply then return nil, self.endpoint .. ": " .. tostring(meta), code, details end
  local messages = reply.messages or { reply }
  for _, msg in ipairs(messages) do
    local md = msg.metadata
    if md and md.error and md.error ~= "" then
      return nil, string.format("%s: %s: %s", node_name(msg, self), name, md.error), "EAPI",
        { grpc_status = md.status and md.status.code, grpc_message = md.error, node = md.hostname }
    end
  end
  return messages
end

-- One message when talking to one node, the list with `nodes` routing.
local function one_or_all(self, messages)
  if self.metadata.nodes then return messages end
  return messages[1]
end

--- The node's disks (the maintenance-mode probe): list of {device_name, size, model, ...}.
function Client:disks()
  local messages, msg, code, details = self:call("Disks")
  if not messages then return nil, msg, code, details end
  local m = one_or_all(self, messages)
  return self.metadata.nodes and m or m.disks
end

local MODES = { auto = "AUTO", reboot = "REBOOT", no_reboot = "NO_REBOOT", staged = "STAGED", try = "TRY" }

--- Applies a machine configuration (YAML text).  mode: auto (default), reboot,
--- no_reboot, staged, try; dry_run returns what would happen.  Returns
--- {warnings, mode, mode_details}.
function Client:apply_configuration(config, o)
  o = check("talos.apply_configuration", o, { mode = "string", dry_run = "boolean", timeout = "number" })
  if type(config) ~= "string" then error("apply_configuration: config YAML text expected", 2) end
  local mode = MODES[o.mode or "auto"]
  if not mode then error("apply_configuration: unknown mode '" .. tostring(o.mode) .. "'", 2) end
  local messages, msg, code, details = self:call("ApplyConfiguration",
    { data = config, mode = mode, dry_run = o.dry_run or false }, o)
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Bootstraps etcd on this control plane.  FailedPrecondition ("not
--- available yet", "time is not in sync") is retried until `timeout`;
--- AlreadyExists counts as done.  Returns {done = true, already = bool}.
function Client:bootstrap(o)
  o = check("talos.bootstrap", o, { timeout = "number", interval = "number", max_interval = "number" })
  local sched = require "tlr.sched"
  local deadline = sched.now() + (o.timeout or 600)
  local interval = o.interval or 0.5
  while true do
    local messages, msg, code, details = self:call("Bootstrap", {})
    if messages then return { done = true, already = false } end
    local status = details and details.grpc_name
    if status == "ALREADY_EXISTS" then return { done = true, already = true } end
    if status ~= "FAILED_PRECONDITION" and status ~= "UNAVAILABLE" and code ~= "ECONNREFUSED"
      and code ~= "ECONNRESET" then
      return nil, msg, code, details
    end
    if sched.now() + interval > deadline then
      return nil, msg .. string.format(" (still failing after %gs)", o.timeout or 600), "ETIMEDOUT", details
    end
    sched.sleep(interval)
    interval = math.min(interval * 1.5, o.max_interval or 5)
  end
end

--- The admin kubeconfig from a control plane (text).  The stream carries a
--- .tar.gz without end-of-archive blocks; its one entry is the kubeconfig.
function Client:kubeconfig(o)
  o = check("talos.kubeconfig", o, { timeout = "number" })
  local m = proto.methods.Kubeconfig
  local list, meta, code, details = grpc.stream {
    url = self.url, path = m.path, schema = proto.schema, request_type = m.request,
    response_type = m.response, request = {}, metadata = self.metadata,
    timeout = o.timeout or self.timeout, ca = self.tls.ca, cert = self.tls.cert, key = self.tls.key,
    insecure = self.tls.insecure, fingerprint = self.tls.fingerprint,
  }
  if not list then return nil, self.endpoint .. ": " .. tostring(meta), code, details end
  local chunks = {}
  for _, msg in ipairs(list) do
    if msg.metadata and msg.metadata.error and msg.metadata.error ~= "" then
      return nil, node_name(msg, self) .. ": Kubeconfig: " .. msg.metadata.error, "EAPI"
    end
    chunks[#chunks + 1] = msg.bytes or ""
  end
  local tgz = table.concat(chunks)
  if tgz == "" then return nil, self.endpoint .. ": Kubeconfig: empty reply", "EPROTO" end
  local tar, msg, c = archive.gunzip(tgz)
  if not tar then return nil, "Kubeconfig: " .. msg, c end
  local entries, m2, c2 = archive.untar(tar)
  if not entries then return nil, "Kubeconfig: " .. m2, c2 end
  for _, e in ipairs(entries) do
    if e.type == "file" and (e.name == "kubeconfig" or e.name:match("/kubeconfig$")) then
      return log.secret(e.data)
    end
  end
  return nil, "Kubeconfig: the archive has no kubeconfig entry", "EPROTO"
end

--- Version information: {tag, sha, ...} (a list with `nodes` routing).
function Client:version()
  local messages, msg, code, details = self:call("Version")
  if not messages then return nil, msg, code, details end
  if self.metadata.nodes then return messages end
  local v = messages[1].version or {}
  v.platform = messages[1].platform
  return v
end

--- Services: list of {id, state, health = {healthy, ...}} (per node with `nodes`).
function Client:service_list()
  local messages, msg, code, details = self:call("ServiceList")
  if not messages then return nil, msg, code, details end
  if self.metadata.nodes then return messages end
  return messages[1].services
end

--- etcd members: list of {id, hostname, peer_urls, client_urls, is_learner}.
function Client:etcd_member_list(o)
  o = check("talos.etcd_member_list", o, { query_local = "boolean" })
  local messages, msg, code, details = self:call("EtcdMemberList", { query_local = o.query_local or false })
  if not messages then return nil, msg, code, details end
  if self.metadata.nodes then return messages end
  return messages[1].members
end

--- Makes the node leave etcd (it must be a control plane; the others keep quorum).
function Client:etcd_leave_cluster()
  local messages, msg, code, details = self:call("EtcdLeaveCluster", {})
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Removes a member by id through this node (for a member that is gone).
function Client:etcd_remove_member(id)
  if math.type(id) ~= "integer" then error("talos.etcd_remove_member: id must be an integer", 2) end
  local messages, msg, code, details = self:call("EtcdRemoveMemberByID", { member_id = id })
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Hands etcd leadership to another member if this node holds it.
function Client:etcd_forfeit_leadership()
  local messages, msg, code, details = self:call("EtcdForfeitLeadership", {})
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Starts an upgrade to `image`; returns {ack, actor_id}.
function Client:upgrade(image, o)
  o = check("talos.upgrade", o, { stage = "boolean", force = "boolean", preserve = "boolean" })
  local messages, msg, code, details = self:call("Upgrade",
    { image = image, stage = o.stage or false, force = o.force or false, preserve = o.preserve or false })
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Resets the node: graceful (leave etcd, drain), reboot, and wipe the
--- STATE and EPHEMERAL partitions (as terraform's destroy does) unless told otherwise.
function Client:reset(o)
  o = check("talos.reset", o, { graceful = "boolean", reboot = "boolean", wipe = "table" })
  local parts = {}
  for _, label in ipairs(o.wipe or { "STATE", "EPHEMERAL" }) do
    parts[#parts + 1] = { label = label, wipe = true }
  end
  local messages, msg, code, details = self:call("Reset", { graceful = o.graceful ~= false,
    reboot = o.reboot ~= false, system_partitions_to_wipe = parts })
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- Reboots the node.
function Client:reboot()
  local messages, msg, code, details = self:call("Reboot", {})
  if not messages then return nil, msg, code, details end
  return one_or_all(self, messages)
end

--- A COSI resource's spec (decoded YAML) and metadata, e.g. get("runtime",
--- "MachineStatuses.runtime.talos.dev", "machine").
function Client:get(namespace, type_, id)
  local m = proto.methods.Get
  local reply, meta, code, details = grpc.call {
    url = self.url, path = m.path, schema = proto.schema, request_type = m.request,
    response_type = m.response, request = { namespace = namespace, type = type_, id = id },
    metadata = self.metadata.node and { node = self.metadata.node } or nil, timeout = self.timeout,
    ca = self.tls.ca, cert = self.tls.cert, key = self.tls.key, insecure = self.tls.insecure,
    fingerprint = self.tls.fingerprint,
  }
  if not reply then return nil, self.endpoint .. ": " .. tostring(meta), code, details end
  local res = reply.resource or {}
  local spec = res.spec and res.spec.yaml_spec
  local decoded = spec and spec ~= "" and yaml.decode(spec, { null = "nil" }) or {}
  return decoded, res.metadata
end

--- The machine's status: {stage = "running"|"booting"|"maintenance"|..., status = {ready, ...}}.
function Client:machine_status()
  return self:get("runtime", "MachineStatuses.runtime.talos.dev", "machine")
end

function Client:__tostring()
  return "talos client " .. self.endpoint .. (self.maintenance and " (maintenance)" or "")
end

M.Client = Client
return M
