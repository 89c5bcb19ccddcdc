--- Proxmox VE API client on tlr.http.
---
--- `proxmox.connect{...}` returns a client with get/post/put/delete and task
--- helpers.  Results are the reply's `data`, with numbers that PVE sends as
--- strings coerced (a `null` reply is `tlr.json.null`, which is truthy);
--- failures are `nil, msg, code, details` with codes
--- EAUTH, EFORBIDDEN, ENOTFOUND, EINVAL (details = the per-parameter
--- messages), ELOCKTIMEOUT, EUNREACHABLE, EAPI, ETASK or a transport code.
--- Transient failures are retried with backoff and jitter within a budget.
local http = require "tlr.http"
local json = require "tlr.json"
local log = require "tlr.log"
local sched = require "tlr.sched"
local check = require("tlr.opts").check

local M = {}

local Client = {}
Client.__index = Client
Client.__name = "tlr.proxmox.Client"

local TICKET_RENEW_AFTER = 3600 -- PVE tickets live 2 h; renew after 1 h like pve-apiclient

-- Keys whose values PVE sends as strings at times; they come back as numbers.
local NUMERIC = {}
for k in ([[vmid maxmem mem maxdisk disk cpus maxcpu uptime netin netout diskread diskwrite
  template size used avail total pid pstart starttime cores sockets balloon level exitcode
  maxswap swap shared active enabled]]):gmatch("%S+") do NUMERIC[k] = true end

local function coerce(v)
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do
    if type(x) == "table" then
      coerce(x)
    elseif type(x) == "string" and NUMERIC[k] then
      local n = tonumber(x)
      if n then v[k] = math.tointeger(n) or n end
    end
  end
  return v
end
M.coerce = coerce

-- ========== encoding ==========

local function scalar(v)
  local t = type(v)
  if t == "boolean" then return v and "1" or "0" end
  if t == "number" then return tostring(math.tointeger(v) or v) end
  if t == "string" then return v end
  error("cannot encode a " .. t .. " as a Proxmox value", 4)
end

--- Encodes one parameter value: booleans as 0/1; a list as `a;b`; a table
--- as a property string: positional entries first (the default key, e.g.
--- "local-lvm:0"), then `key=value` sorted by key, lists inside joined by ';'.
---@param v any
---@return string
function M.encode_value(v)
  if type(v) ~= "table" then return scalar(v) end
  local parts, nkeys = {}, 0
  for _, item in ipairs(v) do parts[#parts + 1] = scalar(item) end
  for _ in pairs(v) do nkeys = nkeys + 1 end
  if nkeys == #parts then return table.concat(parts, ";") end -- a plain list
  local keys = {}
  for k in pairs(v) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local x = v[k]
    if type(x) == "table" then
      local items = {}
      for i, item in ipairs(x) do items[i] = scalar(item) end
      x = table.concat(items, ";")
    else
      x = scalar(x)
    end
    parts[#parts + 1] = k .. "=" .. x
  end
  return table.concat(parts, ",")
end

--- Parses a property string ("virtio=BC:24:..,bridge=vmbr0") into a table;
--- parts without '=' are kept in order as positional entries.
---@param s string
---@return table
function M.parse_value(s)
  local t = {}
  for part in tostring(s):gmatch("[^,]+") do
    local k, v = part:match("^([^=]+)=(.*)$")
    if k then t[k] = v else t[#t + 1] = part end
  end
  return t
end

-- A path segment: RFC 3986 pchar characters stay as they are (UPIDs carry
-- ':', '@' and '!', which pveproxy does not expect escaped).
local function escape_segment(s)
  return (s:gsub("[^A-Za-z0-9_.~!$&'()*+,;=:@-]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- "/nodes/{node}/qemu/{vmid}" with params {node=, vmid=} -> path, remaining params
local function expand(path, params)
  local rest = {}
  for k, v in pairs(params or {}) do rest[k] = v end
  local out = path:gsub("{([%w_-]+)}", function(name)
    local v = rest[name]
    if v == nil then error("path " .. path .. " needs parameter '" .. name .. "'", 4) end
    rest[name] = nil
    return escape_segment(scalar(v))
  end)
  if out:sub(1, 1) ~= "/" then error("API paths start with '/': " .. path, 4) end
  return out, rest
end

local function encode_params(params)
  local form = {}
  for k, v in pairs(params) do
    if type(k) ~= "string" then error("parameter names must be strings", 4) end
    form[k] = M.encode_value(v)
  end
  return form
end

-- ========== errors ==========

local function first_line(s)
  return (tostring(s or ""):match("^[^\n]*"))
end

local function classify(status, message)
  if status == 401 then return "EAUTH" end
  if status == 403 then return "EFORBIDDEN" end
  if status == 400 then return "EINVAL" end
  if status >= 595 and status <= 599 then return "EUNREACHABLE" end
  if message:find("does not exist", 1, true) or status == 404 then return "ENOTFOUND" end
  if message:find("got timeout", 1, true) or message:find("got lock request timeout", 1, true)
    or message:match("VM is locked") then
    return "ELOCKTIMEOUT"
  end
  return "EAPI"
end

-- Transient: worth retrying after a pause.
local function is_transient(method, code, status, message)
  if code == "ELOCKTIMEOUT" then return true end
  if message and message:find("got no worker upid", 1, true) then return true end
  if status == 596 then return true end
  if code == "ECONNRESET" then return true end
  if method == "GET" and (code == "EAPI" and status and status >= 500 or code == "ETIMEDOUT"
    or code == "EUNREACHABLE") then
    return true
  end
  return false
end

-- ========== the client ==========

local CONNECT_SPEC = {
  endpoint = "string", token = "string", user = "string", password = "string",
  fingerprint = "string", ca = "string", ca_file = "string", insecure = "boolean",
  timeout = "number", retry_budget = "number", max_inflight = "integer", name = "string",
}

--- Connects to a Proxmox VE endpoint ("https://host:8006"); with a token
--- ("user@realm!id=secret") nothing is sent yet; with user+password a
--- ticket is fetched now.  TLS: fingerprint (pin), ca / ca_file, or an
--- explicit insecure = true.
---@param o table
---@return table? client, string? msg, string? code
function M.connect(o)
  check("proxmox.connect", o, CONNECT_SPEC)
  if type(o) ~= "table" or not o.endpoint then error("proxmox.connect: endpoint is required", 2) end
  if not (o.token or (o.user and o.password)) then
    error("proxmox.connect: give token, or user and password", 2)
  end
  if o.token and not o.token:match("^[^!]+@[^!]+![^=]+=.+$") then
    error("proxmox.connect: token must look like user@realm!tokenid=secret", 2)
  end
  local base = o.endpoint:gsub("/+$", ""):gsub("/api2/json$", "")
  if not base:match("^https?://") then base = "https://" .. base end
  if not base:match("^https?://[^/]+:%d+$") and not base:match("^https?://%[.*%]:%d+$") then
    base = base .. ":8006"
  end
  local self = setmetatable({
    base = base .. "/api2/json",
    endpoint = base,
    name = o.name or base,
    tls = { fingerprint = o.fingerprint, ca = o.ca, ca_file = o.ca_file, insecure = o.insecure },
    timeout = o.timeout or 30,
    retry_budget = o.retry_budget or 60,
    limit = sched.semaphore(o.max_inflight or 8),
    stats = { requests = 0, retries = 0, mutating = 0 },
  }, Client)
  if o.token then
    log.secret(o.token:match("=(.+)$"))
    self.auth_header = "PVEAPIToken=" .. o.token
    log.secret(self.auth_header)
  else
    log.secret(o.password)
    self.user, self.password = o.user, o.password
    local ok, msg, code = self:login()
    if not ok then return nil, msg, code end
  end
  return self
end

--- Fetches (or renews) a ticket with the password, or with the current ticket.
function Client:login()
  local secret = self.ticket or self.password
  local res, msg, code = self:raw("POST", "/access/ticket",
    { username = self.user, password = secret }, { no_auth = true, no_retry = true })
  if not res then return nil, msg, code end
  self.ticket = log.secret(res.ticket)
  self.csrf = log.secret(res.CSRFPreventionToken)
  self.ticket_time = sched.now()
  return true
end

local function request_options(self, method, path, params, opts)
  local url = self.base .. path
  local req = {
    method = method, url = url, timeout = opts.timeout or self.timeout,
    fingerprint = self.tls.fingerprint, ca = self.tls.ca, ca_file = self.tls.ca_file,
    insecure = self.tls.insecure, headers = { Accept = "application/json" },
    max_age_conn = 3, -- pveproxy drops idle keep-alive connections after 5 s
  }
  if not opts.no_auth then
    if self.auth_header then
      req.headers.Authorization = self.auth_header
    else
      req.headers.Cookie = "PVEAuthCookie=" .. self.ticket
      if method ~= "GET" then req.headers.CSRFPreventionToken = self.csrf end
    end
  end
  local form = encode_params(params)
  if method == "GET" or method == "DELETE" then
    req.query = form
  elseif next(form) then
    req.form = form
  end
  return req
end

--- One request without retries: data, or nil, msg, code, details.
function Client:raw(method, path, params, opts)
  opts = opts or {}
  local req = request_options(self, method, path, params or {}, opts)
  self.stats.requests = self.stats.requests + 1
  if method ~= "GET" then self.stats.mutating = self.stats.mutating + 1 end
  local res, msg, code = self.limit:with(http.request, req)
  local where = method .. " " .. path
  if not res then return nil, where .. ": " .. msg, code end
  local body
  if res.body ~= "" then
    local err
    body, err = json.decode(res.body)
    if not body and res.status < 300 then
      return nil, where .. ": reply is not JSON: " .. err, "EPROTO"
    end
  end
  if res.status >= 200 and res.status < 300 then
    if type(body) ~= "table" then return nil, where .. ": reply has no data envelope", "EPROTO" end
    local data = body.data
    if data == nil then data = json.null end -- success with no data is still truthy
    return coerce(data), nil, nil, res
  end
  local message = first_line(res.reason ~= "" and res.reason or (body and body.message) or "")
  if type(body) == "table" and type(body.message) == "string" and #body.message > #message then
    message = first_line(body.message)
  end
  local code2 = classify(res.status, message)
  local details = type(body) == "table" and type(body.errors) == "table" and body.errors or nil
  if details then
    local keys = {}
    for k in pairs(details) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. ": " .. first_line(details[k]) end
    message = message .. " (" .. table.concat(parts, "; ") .. ")"
  end
  return nil, string.format("%s: %d %s", where, res.status, message), code2, details, res.status
end

--- A request with retries of transient failures (lock timeouts, "got no
--- worker upid", 596, resets, 5xx on GET), backoff with jitter, within the
--- client's retry budget.  `{node}`-style placeholders in `path` are filled
--- from `params` (and removed from them).
---@return any data
---@return string? msg
---@return string? code
---@return table? details per-parameter messages for EINVAL
function Client:call(method, path, params, opts)
  opts = opts or {}
  local real_path, rest = expand(path, params)
  if self.ticket and sched.now() - self.ticket_time > TICKET_RENEW_AFTER then
    local ok, msg, code = self:login()
    if not ok then return nil, msg, code end
  end
  local deadline = sched.now() + (opts.retry_budget or self.retry_budget)
  local delay = 0.2
  while true do
    local data, msg, code, details, status = self:raw(method, real_path, rest, opts)
    if msg == nil then return data end
    if opts.no_retry or not is_transient(method, code, status, msg) or sched.now() + delay > deadline then
      return nil, msg, code, details
    end
    self.stats.retries = self.stats.retries + 1
    log.debug("%s: retrying in %.1fs: %s", self.name, delay, msg)
    sched.sleep(delay * (0.5 + math.random()))
    delay = math.min(delay * 2, 5)
  end
end

function Client:get(path, params, opts) return self:call("GET", path, params, opts) end
function Client:post(path, params, opts) return self:call("POST", path, params, opts) end
function Client:put(path, params, opts) return self:call("PUT", path, params, opts) end
function Client:delete(path, params, opts) return self:call("DELETE", path, params, opts) end

-- ========== tasks ==========

--- Parses "UPID:node:pid:pstart:starttime:type:id:user:" into a table.
---@param upid string
---@return table? task {node, pid, pstart, starttime, type, id, user, upid}
function M.parse_upid(upid)
  if type(upid) ~= "string" then return nil end
  local node, pid, pstart, start, typ, id, user =
    upid:match("^UPID:([^:]+):(%x+):(%x+):(%x+):([^:]*):([^:]*):([^:]*):$")
  if not node then return nil end
  return { node = node, pid = tonumber(pid, 16), pstart = tonumber(pstart, 16),
    starttime = tonumber(start, 16), type = typ, id = id, user = user, upid = upid }
end

--- True for exit statuses that count as success: "OK" and "WARNINGS: n".
function M.task_ok(exitstatus)
  return exitstatus == "OK" or (type(exitstatus) == "string" and exitstatus:match("^WARNINGS") ~= nil)
end

--- Waits for a task to stop; returns its final status table, or nil, msg,
--- "ETASK" with the last lines of its log when it failed.
---@param upid string
---@param opts? {timeout?: number, interval?: number}
function Client:wait_task(upid, opts)
  opts = check("wait_task", opts, { timeout = "number", interval = "number" })
  local task = M.parse_upid(upid)
  if not task then return nil, "not a task id: " .. tostring(upid), "EPROTO" end
  local deadline = sched.now() + (opts.timeout or 600)
  local interval = opts.interval or 0.05
  local grace = sched.now() + 10 -- "no such task" is normal right after the start
  while true do
    local st, msg, code = self:get("/nodes/{node}/tasks/{upid}/status", { node = task.node, upid = upid })
    if st then
      if st.status == "stopped" then
        if M.task_ok(st.exitstatus) then return st end
        local lines = self:get("/nodes/{node}/tasks/{upid}/log",
          { node = task.node, upid = upid, start = 0, limit = 1000 }) or {}
        local tail = {}
        for i = math.max(1, #lines - 4), #lines do tail[#tail + 1] = lines[i].t end
        return nil, string.format("task %s %s on %s failed: %s%s", task.type, task.id, task.node,
          tostring(st.exitstatus), #tail > 0 and (" (log: " .. table.concat(tail, " | ") .. ")") or ""),
          "ETASK", st
      end
    elseif not (code == "EINVAL" and sched.now() < grace) then
      return nil, msg, code
    end
    if sched.now() > deadline then
      return nil, string.format("task %s %s on %s still running after %gs", task.type, task.id,
        task.node, opts.timeout or 600), "ETIMEDOUT"
    end
    sched.sleep(interval)
    interval = math.min(interval * 1.5, 1)
  end
end

--- Runs a call that starts a task and waits for it: status table or nil, msg, code.
function Client:run_task(method, path, params, opts)
  local upid, msg, code, details = self:call(method, path, params)
  if msg then return nil, msg, code, details end
  if type(upid) ~= "string" then return {} end -- finished synchronously (data null)
  return self:wait_task(upid, opts)
end

--- The server's version: {version=, release=, major=, minor=}.
function Client:version()
  if self.cached_version then return self.cached_version end
  local v, msg, code = self:get("/version")
  if not v then return nil, msg, code end
  local major, minor = tostring(v.version or v.release or ""):match("^(%d+)%.(%d+)")
  v.major, v.minor = tonumber(major), tonumber(minor)
  self.cached_version = v
  return v
end

function Client:__tostring()
  return "proxmox client " .. self.endpoint
end

M.Client = Client
return M
