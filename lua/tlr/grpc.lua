--- gRPC client calls over tlr.http's HTTP/2: unary calls and server
--- streams, with messages as bytes or encoded/decoded by a tlr.protobuf
--- schema.  A call blocks only its own task; stream messages reach the
--- calling task as they arrive.
---
--- Wire format: `POST <url><path>` with `content-type: application/grpc`,
--- `te: trailers`, ALPN h2 (`http://` URLs use HTTP/2 without TLS); every
--- message is framed as a flag byte (0: not compressed) and a big-endian
--- u32 length.  The status comes from the trailers, or from the headers of
--- a trailers-only reply.
local http = require "tlr.http"
local opts = require "tlr.opts"

local M = {}

--- Status names by code (0..16), as in grpc/status.proto.
M.STATUS = {
  [0] = "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

--- The default largest message, either way: Talos's GRPCMaxMessageSize.
M.MAX_MESSAGE_SIZE = 32 * 1024 * 1024

-- how much longer than the deadline the transfer may take, so that the
-- server's own DEADLINE_EXCEEDED gets through before libcurl gives up
local DEADLINE_GRACE = 1

-- After a framing error in the first message the reply may not be gRPC at
-- all (an HTTP error page): up to this much more is read, and dropped, so
-- that its status and content-type can be reported instead.
local DIAGNOSE_LIMIT = 64 * 1024

local CALL_SPEC = {
  url = "string", path = "string", request = { "string", "table" }, schema = "userdata",
  request_type = "string", response_type = "string", metadata = "table", timeout = "number",
  connect_timeout = "number", ca = "string", ca_file = "string", cert = "string", key = "string",
  insecure = "boolean", fingerprint = "string", resolve = "table", max_message_size = "integer",
}
local STREAM_SPEC = { on_message = "function" }
for k, v in pairs(CALL_SPEC) do STREAM_SPEC[k] = v end

-- metadata names the transport owns
local RESERVED = { ["content-type"] = true, te = true, ["user-agent"] = true, host = true,
  ["content-length"] = true, connection = true }

--- Frames one message: flag 0, big-endian u32 length, the bytes.
---@param msg string
---@return string
function M.frame(msg)
  return string.pack(">BI4", 0, #msg) .. msg
end

--- Returns a deframer: `d.push(chunk)` splits gRPC frames out of a byte
--- stream cut anywhere (one frame over many chunks, many frames in one)
--- and calls `on_message(bytes)` for each; it returns true, false when
--- on_message returned false, or nil, msg, code (EPROTO for a compressed or
--- bad frame, ETOOBIG for a message over `max_size`).  `d.pending()` tells
--- whether a frame is incomplete.
---@param on_message fun(msg: string): boolean|nil
---@param max_size integer
function M.deframer(on_message, max_size)
  local head, parts, want = "", {}, nil
  local d = {}
  function d.push(chunk)
    local i, n = 1, #chunk
    while i <= n or want == 0 do
      if want == nil then
        local take = math.min(5 - #head, n - i + 1)
        head = head .. chunk:sub(i, i + take - 1)
        i = i + take
        if #head == 5 then
          local flag, len = string.unpack(">BI4", head)
          head = ""
          if flag == 1 then
            return nil, "compressed message, but no compression was negotiated", "EPROTO"
          end
          if flag ~= 0 then return nil, "bad frame flag " .. flag, "EPROTO" end
          if len > max_size then
            return nil, string.format("message of %d bytes exceeds max_message_size %d",
              len, max_size), "ETOOBIG"
          end
          want = len
        end
      elseif want > 0 then
        local take = math.min(want, n - i + 1)
        parts[#parts + 1] = (i == 1 and take == n) and chunk or chunk:sub(i, i + take - 1)
        i, want = i + take, want - take
      else
        local msg = #parts == 1 and parts[1] or table.concat(parts)
        parts, want = {}, nil
        if on_message(msg) == false then return false end
      end
    end
    return true
  end
  function d.pending() return head ~= "" or want ~= nil end
  return d
end

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The grpc-timeout header value for `seconds`: milliseconds, or whole
--- seconds past eight digits.
---@param seconds number
---@return string
function M.timeout_header(seconds)
  local ms = math.ceil(seconds * 1000)
  if ms < 100000000 then return string.format("%dm", ms) end
  return string.format("%dS", math.min(math.ceil(seconds), 99999999))
end

local function check_call(fname, o, spec)
  opts.check(fname, o, spec)
  local function need(cond, msg) opts.arg(cond, fname, msg) end
  need(type(o) == "table", "options table expected")
  need(type(o.url) == "string" and o.url:match("^https?://[^/]"),
    "url must start with https:// or http://")
  need(type(o.path) == "string" and o.path:match("^/[^/]+/[^/]+$"),
    "path must look like /pkg.Service/Method")
  need(type(o.request) ~= "table" or (o.schema and o.request_type),
    "a request table needs schema and request_type")
  need(not o.response_type or o.schema, "response_type needs schema")
  need(not o.timeout or o.timeout >= 0, "timeout must be >= 0")
  need(not o.max_message_size or o.max_message_size > 0, "max_message_size must be > 0")
  for k, v in pairs(o.metadata or {}) do
    need(type(k) == "string" and k:match("^[0-9a-z_.-]+$"),
      "metadata names are lower case [0-9a-z_.-], got " .. tostring(k))
    need(not RESERVED[k] and not k:match("^grpc%-"), "metadata name '" .. k .. "' is reserved")
    local ok_value = type(v) == "string"
    if type(v) == "table" then -- a list: the header repeats (Talos's `nodes`)
      ok_value = #v > 0
      for _, item in ipairs(v) do ok_value = ok_value and type(item) == "string" end
    end
    need(ok_value, "metadata '" .. k .. "' must be a string or a list of strings")
  end
end

-- Runs one call; every reply message goes to on_message(decoded) in this task.
local function invoke(o, on_message)
  local path = o.path
  local request = o.request or ""
  if type(request) == "table" then request = o.schema:encode(o.request_type, request) end
  local max = o.max_message_size or M.MAX_MESSAGE_SIZE
  if #request > max then
    return nil, string.format("%s: request of %d bytes exceeds max_message_size %d",
      path, #request, max), "ETOOBIG"
  end
  local headers = { ["content-type"] = "application/grpc", te = "trailers" }
  for k, v in pairs(o.metadata or {}) do headers[k] = v end
  local timeout = o.timeout or 0
  if timeout > 0 then headers["grpc-timeout"] = M.timeout_header(timeout) end

  local failure, count, stopped, discarded = nil, 0, nil, 0
  local schema, rtype = o.schema, o.response_type
  local deframer = M.deframer(function(bytes)
    local msg = bytes
    if rtype then
      local m, err, code = schema:decode(rtype, bytes)
      if not m then
        failure = { err, code }
        return false
      end
      msg = m
    end
    count = count + 1
    if on_message(msg) == false then
      stopped = true
      return false
    end
  end, max)
  local res, msg, code = http.request {
    method = "POST", url = o.url:gsub("/+$", "") .. path, headers = headers,
    body = M.frame(request), timeout = timeout > 0 and timeout + DEADLINE_GRACE or 0,
    connect_timeout = o.connect_timeout, ca = o.ca, ca_file = o.ca_file, cert = o.cert, key = o.key,
    insecure = o.insecure, fingerprint = o.fingerprint, resolve = o.resolve,
    http2 = o.url:match("^https:") and true or "prior", max_size = 0,
    on_data = function(chunk)
      if failure then
        discarded = discarded + #chunk
        return discarded < DIAGNOSE_LIMIT
      end
      local ok, err, ecode = deframer.push(chunk)
      if ok == nil then
        failure = { err, ecode }
        return count == 0
      end
      return ok
    end,
  }
  if res and not res.stopped then
    if res.status ~= 200 then
      return nil, string.format("%s: HTTP %d %s (not a gRPC reply)", path, res.status, res.reason),
        "EPROTO"
    end
    local ctype = res.headers["content-type"] or ""
    if not ctype:match("^application/grpc") then
      return nil, string.format("%s: content-type '%s' is not gRPC", path, ctype), "EPROTO"
    end
  end
  if failure then return nil, path .. ": " .. failure[1], failure[2] end
  if not res then return nil, msg, code end
  local meta = { headers = res.headers, trailers = res.trailers, count = count }
  if stopped then
    meta.stopped = true
    return count, meta
  end
  local status = res.trailers["grpc-status"] or res.headers["grpc-status"]
  local message = res.trailers["grpc-message"] or res.headers["grpc-message"]
  if not status then return nil, path .. ": reply without grpc-status (cut short?)", "EPROTO" end
  status = math.tointeger(tonumber(status))
  if not status then return nil, path .. ": bad grpc-status", "EPROTO" end
  if deframer.pending() then return nil, path .. ": stream ended inside a message", "EPROTO" end
  if status ~= 0 then
    local name = M.STATUS[status] or ("STATUS_" .. status)
    message = message and percent_decode(message) or ""
    local text = path .. ": " .. name .. (message ~= "" and ": " .. message or "")
    return nil, text, status == 4 and "ETIMEDOUT" or "EAPI",
      { grpc_status = status, grpc_name = name, grpc_message = message }
  end
  return count, meta
end

--- Makes a unary call and returns its reply.
---
--- `request` is the encoded message (default: empty), or a table encoded
--- with `schema` as `request_type`; with `response_type` the reply is
--- decoded, otherwise returned as bytes.  `metadata` adds request headers
--- (lower-case names, string values or lists of them, which repeat the
--- header), e.g. `{ node = "10.0.0.10" }` or `{ nodes = { "a", "b" } }`.
--- `timeout` (seconds, default 60; 0 = none) is sent as grpc-timeout.
--- TLS options are tlr.http's: ca, ca_file, cert, key, insecure, fingerprint.
---@param o table {url, path, request, schema, request_type, response_type, metadata, timeout,
---  connect_timeout, ca, ca_file, cert, key, insecure, fingerprint, resolve, max_message_size}
---@return table|string|nil reply
---@return table|string meta {headers, trailers} or msg
---@return string? code EAPI (a gRPC error status), ETIMEDOUT (DEADLINE_EXCEEDED or no reply
---  in time), ETOOBIG, EPROTO, or a tlr.http transport code
---@return table? details {grpc_status, grpc_name, grpc_message} for a gRPC error status
function M.call(o)
  check_call("grpc.call", o, CALL_SPEC)
  local reply
  local with_timeout = setmetatable({ timeout = o.timeout or 60 }, { __index = o })
  local n, meta, code, details = invoke(with_timeout, function(msg)
    if reply ~= nil then return false end
    reply = msg
  end)
  if not n then return nil, meta, code, details end
  if meta.stopped or n ~= 1 then
    return nil, string.format("%s: a unary call got %s reply messages", o.path,
      meta.stopped and "several" or tostring(n)), "EPROTO"
  end
  meta.count = nil
  return reply, meta
end

--- Makes a server-streaming call.  With `on_message`, every reply message
--- is passed to it (in this task) as soon as it has arrived, and the call
--- returns their count; returning false from on_message ends the stream
--- early (meta.stopped = true).  Without it, the call returns the list of
--- messages.  Options as in call; `timeout` defaults to none here.
---@param o table call's options plus on_message
---@return integer|table|nil count_or_list
---@return table|string meta {headers, trailers, stopped} or msg
---@return string? code as for call
---@return table? details as for call
function M.stream(o)
  check_call("grpc.stream", o, STREAM_SPEC)
  local list = {}
  local on_message = o.on_message or function(msg) list[#list + 1] = msg end
  local n, meta, code, details = invoke(o, on_message)
  if not n then return nil, meta, code, details end
  meta.count = nil
  if o.on_message then return n, meta end
  return list, meta
end

return M
