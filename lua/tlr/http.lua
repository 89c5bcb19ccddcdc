--- HTTP client on libcurl's multi interface: many requests in flight from
--- many tasks, HTTP/1.1 and HTTP/2, TLS verified by default.
---
--- A request blocks only its own task; outside a task it drives the event
--- loop until done.  An HTTP error status is a response, not a failure:
--- failures are transport problems (`nil, msg, code`).
local core = require "tlr.http.core"
local sched = require "tlr.sched"
local check = require("tlr.opts").check

local M = {}

local REQUEST_SPEC = {
  method = "string", url = "string", query = "table", headers = "table",
  body = "string", form = "table", timeout = "number", connect_timeout = "number",
  ca = "string", ca_file = "string", fingerprint = "string", cert = "string", key = "string",
  insecure = "boolean", http2 = { "boolean", "string" }, max_size = "integer",
  on_data = "function", max_age_conn = "integer", resolve = "table", idempotent = "boolean",
}

--- Percent-encodes everything outside [A-Za-z0-9_.~-].  Proxmox splits
--- form values on ';' and on a second '=', so nothing else is left bare.
---@param s string|number
---@return string
function M.escape(s)
  return (tostring(s):gsub("[^A-Za-z0-9_.~-]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

local function form_value(key, v)
  local t = type(v)
  if t == "boolean" then return v and "1" or "0" end
  if t == "string" or t == "number" then return tostring(v) end
  error(string.format("bad form value for '%s' (string, number or boolean expected, got %s)",
    key, t), 4)
end

--- Encodes a table as application/x-www-form-urlencoded, keys sorted; a
--- list value repeats its key (`{a={1,2}}` → `a=1&a=2`).
---@param fields table<string, string|number|boolean|table>
---@return string
function M.encode_form(fields)
  local keys = {}
  for k in pairs(fields) do
    if type(k) ~= "string" then error("form keys must be strings", 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = fields[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do
        parts[#parts + 1] = M.escape(k) .. "=" .. M.escape(form_value(k, item))
      end
    else
      parts[#parts + 1] = M.escape(k) .. "=" .. M.escape(form_value(k, v))
    end
  end
  return table.concat(parts, "&")
end

local function start_options(req)
  local url = req.url
  if req.query and next(req.query) then
    url = url .. (url:find("?", 1, true) and "&" or "?") .. M.encode_form(req.query)
  end
  local headers, lines = {}, {}
  for k, v in pairs(req.headers or {}) do headers[k] = v end
  local body = req.body
  if req.form then
    if body then error("bad argument to 'request' (body and form exclude each other)", 3) end
    body = M.encode_form(req.form)
    local has_type = false
    for k in pairs(headers) do
      if k:lower() == "content-type" then has_type = true end
    end
    if not has_type then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  end
  -- "Name: value" lines, sorted; a list value repeats the header (gRPC metadata)
  for k, v in pairs(headers) do
    if type(k) ~= "string" or k:find("[:\r\n]") then
      error("bad argument to 'request' (header names are strings without ':' or newlines)", 3)
    end
    for _, item in ipairs(type(v) == "table" and v or { v }) do
      if type(item) ~= "string" and type(item) ~= "number" then
        error("bad argument to 'request' (header '" .. k .. "': string expected)", 3)
      end
      item = tostring(item)
      if item:find("[\r\n]") then
        error("bad argument to 'request' (header '" .. k .. "' has a newline)", 3)
      end
      lines[#lines + 1] = k .. ": " .. item
    end
  end
  table.sort(lines)
  return {
    method = req.method and req.method:upper() or (body and "POST" or "GET"),
    url = url, headers = lines, body = body,
    timeout = req.timeout or 60, connect_timeout = req.connect_timeout,
    ca = req.ca, ca_file = req.ca_file, fingerprint = req.fingerprint,
    cert = req.cert, key = req.key, insecure = req.insecure, http2 = req.http2,
    max_size = req.max_size, stream = req.on_data ~= nil, max_age_conn = req.max_age_conn,
    resolve = req.resolve,
  }
end

--- Sends one request and waits for the reply.
---
--- `on_data(chunk)` streams the body to a function (in this task) instead
--- of collecting it; returning false from it stops the transfer early.
---@param req table {method, url, query, headers, body|form, timeout, connect_timeout, ca, ca_file, fingerprint, cert, key, insecure, http2, max_size, on_data, max_age_conn, resolve, idempotent}
---@return table|nil response {status, reason, headers, trailers, body, http_version}
---@return string? msg
---@return string? code
function M.request(req)
  check("http.request", req, REQUEST_SPEC)
  if type(req.url) ~= "string" then error("bad argument to 'http.request' (url is required)", 2) end
  if not req.url:match("^https?://") then
    error("bad argument to 'http.request' (url must start with http:// or https://)", 2)
  end
  local o = start_options(req)
  local res, msg, code, retried = nil, nil, nil, false
  while true do
    local r <close>, smsg, scode = core.start(o)
    if not r then return nil, smsg, scode end
    local id, on_data = r:id(), req.on_data
    while true do
      if on_data then
        local chunk = r:take()
        if #chunk > 0 and on_data(chunk) == false then
          return { status = 0, reason = "stopped by on_data", headers = {}, trailers = {}, body = "",
            http_version = "", stopped = true }
        end
      end
      if r:done() then break end
      sched.await(id)
    end
    res, msg, code = r:result()
    -- An HTTP/2 stream reset before any reply (Node's servers do that past
    -- their reset-rate limit) is sent once more on a new connection, but only
    -- when sending it twice is harmless: GET/HEAD, or `idempotent = true`.
    local safe = o.method == "GET" or o.method == "HEAD" or req.idempotent
    if res or retried or not safe or not req.http2 or r:started()
      or (code ~= "ECONNRESET" and code ~= "EPROTO") then
      break
    end
    retried = true
    o.fresh_connect = true
  end
  return res, msg, code
end

--- Shorthand for request{method="GET", url=url, ...}.
function M.get(url, opts)
  local req = { url = url, method = "GET" }
  for k, v in pairs(opts or {}) do req[k] = v end
  return M.request(req)
end

return M
