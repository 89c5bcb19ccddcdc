--- Exploring the Proxmox API from the REPL: the committed API index
--- (every path, method and parameter of the real PVE schema), `pve:help`,
--- and tab completion of API paths and parameter names.
local json = require "tlr.json"
local proxmox = require "tlr.proxmox"
local sched = require "tlr.sched"

local M = {}

local index_cache
--- The API index: {paths = {[path] = {[METHOD] = {params = {...}, returns=, ...}}}, formats = {...}}.
function M.index()
  if not index_cache then index_cache = assert(json.decode(require "tlr.proxmox.api_index")) end
  return index_cache
end

-- ========== path tree ==========

local tree_cache
-- segment tree: node.children[literal] / node.template = {name=, node=}
local function tree()
  if tree_cache then return tree_cache end
  local root = { children = {} }
  for path in pairs(M.index().paths) do
    local node = root
    for seg in path:gmatch("[^/]+") do
      local var = seg:match("^{(.+)}$")
      if var then
        node.template = node.template or { name = var, node = { children = {} } }
        node = node.template.node
      else
        node.children[seg] = node.children[seg] or { children = {} }
        node = node.children[seg]
      end
    end
    node.path = path
  end
  tree_cache = root
  return root
end

--- The schema path a concrete path matches ("/nodes/pve1/qemu" → "/nodes/{node}/qemu"),
--- and the values of its placeholders.
function M.match(path)
  local node, vars = tree(), {}
  for seg in path:gmatch("[^/]+") do
    if node.children[seg] then
      node = node.children[seg]
    elseif node.template then
      vars[node.template.name] = seg
      node = node.template.node
    else
      return nil
    end
  end
  return node.path, vars
end

--- Parameters of one endpoint as rows {name, type, required, values, default}, sorted
--- (required first); nil, msg when the path or method is unknown.
function M.params(path, method)
  method = (method or "GET"):upper()
  local schema_path = M.index().paths[path] and path or M.match(path)
  local entry = schema_path and M.index().paths[schema_path]
  if not entry then return nil, "no such API path: " .. path end
  local info = entry[method]
  if not info then
    local have = {}
    for m in pairs(entry) do have[#have + 1] = m end
    table.sort(have)
    return nil, string.format("%s has no %s (it has %s)", schema_path, method, table.concat(have, ", "))
  end
  local rows = {}
  for name, p in pairs(info.params or {}) do
    local values = p.enum and table.concat(p.enum, "|") or p.format or p.pattern or ""
    if type(values) == "string" and values:sub(1, 2) == "@F" then values = "property string" end
    if p.minimum or p.maximum then
      values = string.format("%s%s..%s", values ~= "" and (values .. " ") or "",
        tostring(p.minimum or ""), tostring(p.maximum or ""))
    end
    rows[#rows + 1] = { name = name, type = p.type or "string",
      required = (p.optional == 1 or p.optional == "1" or p.optional == true) and "" or "yes",
      values = values, default = p.default ~= nil and tostring(p.default) or "" }
  end
  table.sort(rows, function(a, b)
    if a.required ~= b.required then return a.required == "yes" end
    return a.name < b.name
  end)
  return rows, schema_path, info
end

--- pve:help(path [, method]): the parameters of an endpoint as a table the
--- REPL prints in columns; without a method, the methods of the path.
function proxmox.Client:help(path, method)
  if type(path) ~= "string" then error("usage: pve:help(path [, method])", 2) end
  if not method then
    local schema_path = M.index().paths[path] and path or M.match(path)
    local entry = schema_path and M.index().paths[schema_path]
    if not entry then return nil, "no such API path: " .. path end
    local rows = {}
    for m, info in pairs(entry) do
      rows[#rows + 1] = { method = m, name = info.name or "", returns = tostring(info.returns or "") }
    end
    table.sort(rows, function(a, b) return a.method < b.method end)
    return rows
  end
  local rows, msg = M.params(path, method)
  if not rows then return nil, msg end
  return rows
end

-- ========== completion ==========

local live = {} -- "kind:key" -> {at=, values=}

-- Live values for a placeholder where they are cheap to get (cached 10 s).
local function live_values(pve, var, vars)
  local key
  local fetch
  if var == "node" then
    key, fetch = "node", function()
      local out = {}
      for _, n in ipairs(pve:get("/nodes", nil, { timeout = 3, retry_budget = 0 }) or {}) do
        out[#out + 1] = n.node
      end
      return out
    end
  elseif var == "vmid" and vars.node then
    key, fetch = "vmid:" .. vars.node, function()
      local out = {}
      for _, v in ipairs(pve:get("/nodes/{node}/qemu", { node = vars.node },
        { timeout = 3, retry_budget = 0 }) or {}) do
        out[#out + 1] = tostring(v.vmid)
      end
      return out
    end
  elseif var == "storage" and vars.node then
    key, fetch = "storage:" .. vars.node, function()
      local out = {}
      for _, s in ipairs(pve:get("/nodes/{node}/storage", { node = vars.node },
        { timeout = 3, retry_budget = 0 }) or {}) do
        out[#out + 1] = s.storage
      end
      return out
    end
  end
  if not key then return nil end
  local c = live[key]
  if c and sched.now() - c.at < 10 then return c.values end
  local ok, values = pcall(fetch)
  values = ok and values or {}
  table.sort(values)
  live[key] = { at = sched.now(), values = values }
  return values
end

--- Completions of an API path prefix ("/nodes/pv" → "/nodes/pve1", ...).
function M.complete_path(pve, word)
  if word:sub(1, 1) ~= "/" then return {} end
  local node, vars = tree(), {}
  local done, last = {}, word:match("([^/]*)$")
  local prefix_path = word:sub(1, #word - #last)
  for seg in prefix_path:gmatch("[^/]+") do
    done[#done + 1] = seg
    if node.children[seg] then
      node = node.children[seg]
    elseif node.template then
      vars[node.template.name] = seg
      node = node.template.node
    else
      return {}
    end
  end
  local out = {}
  local function add(seg, child)
    if seg:sub(1, #last) == last then
      -- a path that only leads further gets its "/" (an endpoint itself does not)
      local further = not child.path and (next(child.children) or child.template)
      out[#out + 1] = prefix_path .. seg .. (further and "/" or "")
    end
  end
  for seg, child in pairs(node.children) do add(seg, child) end
  if node.template then
    local values = pve and live_values(pve, node.template.name, vars)
    if values and #values > 0 then
      for _, v in ipairs(values) do add(v, node.template.node) end
    else
      add("{" .. node.template.name .. "}", node.template.node)
    end
  end
  table.sort(out)
  return out
end

local METHODS = { get = "GET", post = "POST", put = "PUT", delete = "DELETE" }

--- A REPL completer for `NAME:get("/path` and `NAME:post("/path", {param`.
---@param name string the global the client lives in ("pve")
function M.completer(name)
  return function(word, line, start)
    local before = line:sub(1, start)
    local client = rawget(_G, name)
    if getmetatable(client) ~= proxmox.Client then return {} end
    local esc = name:gsub("%p", "%%%0")
    if before:match(esc .. "[:.]%a+%(%s*[\"']$") then return M.complete_path(client, word) end
    if before:match(esc .. ":help%(%s*[\"']$") then return M.complete_path(client, word) end
    local method, path = before:match(esc .. ":(%a+)%(%s*[\"']([^\"']+)[\"']%s*,%s*{[^}]*$")
    if method and METHODS[method] then
      local rows = M.params(path, METHODS[method])
      local out = {}
      for _, r in ipairs(rows or {}) do
        if r.name:sub(1, #word) == word and not before:match("[{,]%s*" .. r.name:gsub("%p", "%%%0") .. "%s*=") then
          out[#out + 1] = r.name:match("^[%a_][%w_]*$") and r.name or ('["' .. r.name .. '"]')
        end
      end
      table.sort(out)
      return out
    end
    return {}
  end
end

--- A client from the environment (the variables of build/lab/env):
--- PVE_ENDPOINT with PVE_TOKEN or PVE_USER + PVE_PASSWORD, and PVE_FINGERPRINT or PVE_CA_FILE.
function M.connect_from_env(getenv)
  getenv = getenv or os.getenv
  local endpoint = getenv("PVE_ENDPOINT")
  if not endpoint then return nil, "PVE_ENDPOINT is not set" end
  local o = { endpoint = endpoint, token = getenv("PVE_TOKEN"), fingerprint = getenv("PVE_FINGERPRINT"),
    ca_file = getenv("PVE_CA_FILE") }
  if not o.token then o.user, o.password = getenv("PVE_USER"), getenv("PVE_PASSWORD") end
  if o.fingerprint then o.ca_file = nil end
  if not o.fingerprint and not o.ca_file and getenv("PVE_INSECURE") == "1" then o.insecure = true end
  return proxmox.connect(o)
end

return M
