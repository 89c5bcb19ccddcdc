--- Watches a collection: a list, then the server's stream of changes
--- (`?watch=1`, one JSON event per line, read with tlr.http's on_data), with
--- the bookkeeping an informer does: reconnect from the last
--- resourceVersion when the stream ends, and on 410 Gone (the version is
--- too old) list again and hand over the difference as events.
local discovery = require "tlr.k8s.discovery"
local json = require "tlr.json"
local log = require "tlr.log"
local sched = require "tlr.sched"
local opts = require "tlr.opts"

local M = {}

---@class tlr.k8s.WatchOpts
---@field namespace? string
---@field all_namespaces? boolean
---@field label_selector? string|table
---@field field_selector? string|table
---@field resource_version? string start there instead of listing
---@field timeout? number
---@field bookmarks? boolean

local WATCH_SPEC = { namespace = "string", all_namespaces = "boolean", label_selector = { "string", "table" },
  field_selector = { "string", "table" }, resource_version = "string", timeout = "number",
  bookmarks = "boolean" }

-- transport failures after which a watch connects again
local RECONNECT = { ECONNREFUSED = true, ECONNRESET = true, ETIMEDOUT = true, ETRANSPORT = true }

local function key_of(obj)
  local meta = type(obj) == "table" and obj.metadata or {}
  return (meta.namespace or "") .. "/" .. tostring(meta.name)
end

--- Watches objects of a kind and calls `handler(type, object)` for each
--- event: "ADDED", "MODIFIED" or "DELETED".  Without `resource_version`
--- the current objects come first, as ADDED.  The handler returns nil to
--- go on; any other value ends the watch, and watch returns it.
--- Reconnects by itself; ends with ETIMEDOUT after `timeout` seconds
--- (default: never).
---@param c table the client
---@param api_version string
---@param kind string
---@param handler fun(type: string, object: table): any
---@param o? tlr.k8s.WatchOpts
---@return any|nil result what the handler returned
---@return string? msg
---@return string? code "ETIMEDOUT", "EPROTO", or an API error's code
---@return table? status
function M.watch(c, api_version, kind, handler, o)
  opts.arg(type(handler) == "function", "k8s.watch", "handler function expected")
  o = opts.check("k8s.watch", o, WATCH_SPEC)
  local k8s = require "tlr.k8s"
  local res, msg, code, st0 = c.discovery:resolve(api_version, kind)
  if not res then return nil, k8s.describe("watch", kind, o.namespace) .. ": " .. msg, code, st0 end
  local ns = (res.namespaced and not o.all_namespaces) and (o.namespace or c.namespace) or nil
  local path = discovery.path(res, ns)
  local what = k8s.describe("watch", res.name, ns)
  local deadline = o.timeout and sched.now() + o.timeout
  local known = {} -- key -> last object seen
  local rv = o.resource_version
  local list_opts = { namespace = ns, all_namespaces = o.all_namespaces, label_selector = o.label_selector,
    field_selector = o.field_selector }

  local function deliver(etype, obj)
    obj.apiVersion = obj.apiVersion or api_version
    obj.kind = obj.kind or kind
    if etype == "DELETED" then known[key_of(obj)] = nil else known[key_of(obj)] = obj end
    return handler(etype, obj)
  end

  -- lists and hands over what changed since `known`; returns stop value or nil, or false, msg, code
  local function relist()
    local list, lmsg, lcode, st = c:list(api_version, kind, list_opts)
    if not list then return false, lmsg, lcode, st end
    local seen = {}
    for _, item in ipairs(list.items) do
      local k = key_of(item)
      seen[k] = true
      local old = known[k]
      local etype = not old and "ADDED"
        or ((old.metadata or {}).resourceVersion ~= (item.metadata or {}).resourceVersion and "MODIFIED")
      if etype then
        local r = deliver(etype, item)
        if r ~= nil then return r end
      end
    end
    local gone = {}
    for k in pairs(known) do
      if not seen[k] then gone[#gone + 1] = k end
    end
    table.sort(gone)
    for _, k in ipairs(gone) do
      local r = deliver("DELETED", known[k])
      if r ~= nil then return r end
    end
    rv = list.metadata.resourceVersion
    return nil
  end

  if not rv then
    local r, lmsg, lcode, st = relist()
    if r == false then return nil, lmsg, lcode, st end
    if r ~= nil then return r end
  end
  local delay = 0.1
  while true do
    local left = deadline and deadline - sched.now()
    if left and left <= 0 then
      return nil, string.format("%s: timed out after %gs", what, o.timeout), "ETIMEDOUT"
    end
    local query = { watch = "1", resourceVersion = rv,
      allowWatchBookmarks = o.bookmarks ~= false and "true" or nil,
      labelSelector = k8s.selector(o.label_selector), fieldSelector = k8s.selector(o.field_selector),
      timeoutSeconds = tostring(math.max(1, math.floor(math.min(left or 300, 300)))) }
    local buf, pos = "", 1
    local result, failure, gone = nil, nil, false
    local started, received = sched.now(), false

    -- one line of the stream: an event, or a bare Status (an error reply)
    local function line(text)
      local ev, err = json.decode(text)
      if type(ev) ~= "table" then
        failure = { what .. ": bad event: " .. tostring(err), "EPROTO" }
        return false
      end
      local status = (ev.type == nil and ev.kind == "Status") and ev
        or (ev.type == "ERROR" and ev.object) or nil
      if status then
        if status.code == 410 then
          gone = true
        else
          local code2 = status.code == 404 and "ENOTFOUND" or status.code == 403 and "EFORBIDDEN"
            or status.code == 401 and "EAUTH" or "EAPI"
          failure = { what .. ": " .. tostring(status.message), code2, status }
        end
        return false
      end
      local obj = ev.object
      if type(obj) ~= "table" then return true end
      local ev_rv = (obj.metadata or {}).resourceVersion
      if ev_rv then rv = ev_rv end
      if ev.type == "BOOKMARK" then return true end
      local r = deliver(ev.type, obj)
      if r ~= nil then
        result = r
        return false
      end
      return true
    end

    local function on_data(chunk)
      received = true
      buf = pos > 1 and (buf:sub(pos) .. chunk) or (buf .. chunk)
      pos = 1
      while true do
        local nl = buf:find("\n", pos, true)
        if not nl then return true end
        local text = buf:sub(pos, nl - 1)
        pos = nl + 1
        if text:find("%S") and not line(text) then return false end
      end
    end

    local resp, tmsg, tcode = c:send("GET", path, {
      query = query, on_data = on_data, timeout = left and math.max(left, 0.002) or 0,
    })
    local rest = buf:sub(pos)
    if result == nil and not failure and not gone and rest:find("%S") then line(rest) end
    if result ~= nil then return result end
    if failure then return nil, failure[1], failure[2], failure[3] end
    if gone then
      log.debug("k8s: %s: resourceVersion %s is gone, listing again", what, tostring(rv))
      local r, lmsg, lcode, st = relist()
      if r == false then return nil, lmsg, lcode, st end
      if r ~= nil then return r end
      delay = 0.1
    elseif not resp then
      if tcode == "ETIMEDOUT" and deadline and sched.now() >= deadline - 0.01 then
        return nil, string.format("%s: timed out after %gs", what, o.timeout), "ETIMEDOUT"
      end
      if not RECONNECT[tcode] then
        return nil, what .. ": " .. tmsg, tcode
      end
      log.debug("k8s: %s: %s; watching again in %.1fs", what, tmsg, delay)
      sched.sleep(deadline and math.min(delay, math.max(0, deadline - sched.now())) or delay)
      delay = math.min(delay * 2, 5)
    elseif resp.status ~= 200 then
      return nil, string.format("%s: HTTP %d %s", what, resp.status, resp.reason or ""), "EAPI"
    elseif not received and sched.now() - started < 0.5 then
      -- an empty stream that ended at once: do not spin on it
      sched.sleep(deadline and math.min(delay, math.max(0, deadline - sched.now())) or delay)
      delay = math.min(delay * 2, 5)
    else
      delay = 0.1 -- the server ended the stream (timeoutSeconds): watch on from rv
    end
  end
end

return M
