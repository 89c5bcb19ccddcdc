--- tlr.talos.patch: Talos config patches on document lists.
---
--- Strategic merge follows Talos's merge package: maps merge key by key; a
--- patch value replaces a scalar, except that "" and 0 leave a set value
--- alone (false always applies) and null is ignored; lists append, except
--- cluster.network.podSubnets / serviceSubnets and cluster.apiServer.auditPolicy,
--- which are replaced, and Talos's keyed lists, whose items merge into the
--- item with the same key: machine.network.interfaces (by `interface`, or
--- by an equal `deviceSelector`), their `vlans` (by `vlanId`) and
--- cluster.apiServer.admissionControl (by `name`).  `$patch: delete` removes
--- a key, a list item (matched by the item's other keys) or a whole
--- document.  Documents with a `kind` merge into the document with the same
--- kind (and name); others are appended.
---
--- JSON6902 patches (add, remove, replace, move, copy, test; RFC 6901
--- pointers) apply to the v1alpha1 document.
local yaml = require "tlr.yaml"
local opts = require "tlr.opts"

local M = {}

local null, array_mt = yaml.null, yaml.array_mt

local function is_list(t)
  return type(t) == "table" and (getmetatable(t) == array_mt or (#t > 0 and next(t, #t) == nil))
end

local function is_map(t) return type(t) == "table" and not is_list(t) end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deep_copy(x) end
  if getmetatable(v) == array_mt then setmetatable(t, array_mt) end
  return t
end
M.copy = deep_copy

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.equal = deep_equal

local function join(path, key)
  if path == "" then return key end
  return path .. "." .. key
end

-- ========== strategic merge ==========

local REPLACE = {
  ["cluster.network.podSubnets"] = true,
  ["cluster.network.serviceSubnets"] = true,
  ["cluster.apiServer.auditPolicy"] = true,
}

local function iface_key(a, b)
  if type(b.interface) == "string" and b.interface ~= "" then return a.interface == b.interface end
  if b.deviceSelector ~= nil then
    return a.deviceSelector ~= nil and deep_equal(a.deviceSelector, b.deviceSelector)
  end
  return false
end

local KEYED = {
  ["machine.network.interfaces"] = iface_key,
  ["machine.network.interfaces[].vlans"] = function(a, b) return a.vlanId == b.vlanId end,
  ["cluster.apiServer.admissionControl"] = function(a, b) return a.name == b.name end,
}

local merge

local function is_zero(v) return v == "" or v == 0 or v == null end

-- Merges list `r` into list `l` (both lists) at `path`.
local function merge_list(l, r, path)
  local same = KEYED[path]
  for _, item in ipairs(r) do
    local target
    if same and is_map(item) then
      for _, x in ipairs(l) do
        if is_map(x) and same(x, item) then target = x break end
      end
    end
    if target then
      local ok, msg = merge(target, item, path .. "[]")
      if not ok then return nil, msg end
    else
      l[#l + 1] = deep_copy(item)
    end
  end
  return true
end

-- Merges map `r` into map `l` in place; `path` names `l` in the document.
function merge(l, r, path)
  for k, rv in pairs(r) do
    local p = join(path, k)
    local lv = l[k]
    if rv == null then -- an explicit null changes nothing
    elseif lv == nil or lv == null then
      l[k] = deep_copy(rv)
    elseif REPLACE[p] then
      if not (type(rv) == "table" and next(rv) == nil) then l[k] = deep_copy(rv) end
    elseif type(rv) == "table" then
      if type(lv) ~= "table" then
        return nil, p .. ": cannot merge a " .. (is_list(rv) and "list" or "map") .. " into a " ..
          type(lv)
      end
      local ok, msg = true, nil
      if next(rv) == nil then -- an empty list or map adds nothing
      elseif next(lv) == nil then
        l[k] = deep_copy(rv)
      elseif is_list(rv) ~= is_list(lv) then
        return nil, p .. ": cannot merge a " ..
          (is_list(rv) and "list into a map" or "map into a list")
      elseif is_list(rv) then
        ok, msg = merge_list(lv, rv, p)
      else
        ok, msg = merge(lv, rv, p)
      end
      if not ok then return nil, msg end
    elseif type(lv) == "table" then
      return nil, p .. ": cannot merge a " .. type(rv) .. " into a " ..
        (is_list(lv) and "list" or "map")
    elseif not is_zero(rv) then
      l[k] = rv
    end
  end
  return true
end

-- ========== $patch: delete ==========

local function is_delete(t)
  return is_map(t) and t["$patch"] == "delete"
end

-- Pulls every `$patch: delete` out of `node` (in place) into `out` as
-- {path = {keys...}, match = {k = v} (list items only)}.  Returns true plus
-- whether the node itself is to be dropped from its parent (it is a delete
-- directive, or deletions emptied it).
local function collect(node, keys, in_list, out)
  local where = table.concat(keys, ".")
  if is_delete(node) then
    if in_list then return nil, "cannot delete an inner key in '" .. where .. "'" end
    out[#out + 1] = { path = { table.unpack(keys) } }
    return true, true
  end
  local removed = false
  if is_list(node) then
    local i = 1
    while i <= #node do
      local item = node[i]
      if is_delete(item) then
        if in_list then
          return nil, "cannot delete from a list inside a list at '" .. where .. "'"
        end
        local match = {}
        for k, v in pairs(item) do if k ~= "$patch" then match[k] = v end end
        if next(match) == nil then
          return nil, "'$patch: delete' in a list needs a key to select the item at '" ..
            where .. "'"
        end
        out[#out + 1] = { path = { table.unpack(keys) }, match = match }
        table.remove(node, i)
        removed = true
      else
        keys[#keys + 1] = "[" .. i .. "]"
        local ok, msg = collect(item, keys, true, out)
        keys[#keys] = nil
        if not ok then return nil, msg end
        i = i + 1
      end
    end
    return true, removed and #node == 0
  end
  if is_map(node) then
    local names = {}
    for k in pairs(node) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
      keys[#keys + 1] = k
      local ok, drop = collect(node[k], keys, in_list, out)
      keys[#keys] = nil
      if not ok then return nil, drop end
      if drop then
        node[k] = nil
        removed = true
      end
    end
    return true, removed and next(node) == nil
  end
  return true, false
end

local function apply_delete(doc, del)
  local path = del.path
  local name = table.concat(path, ".")
  local parent = doc
  for i = 1, #path - 1 do
    parent = is_map(parent) and parent[path[i]] or nil
    if parent == nil then return nil, "patch delete: path '" .. name .. "' not found" end
  end
  local last = path[#path]
  if not is_map(parent) or parent[last] == nil then
    return nil, "patch delete: path '" .. name .. "' not found"
  end
  if not del.match then
    parent[last] = nil
    return true
  end
  local list = parent[last]
  if is_list(list) then
    for i, item in ipairs(list) do
      local hit = is_map(item)
      for k, v in pairs(del.match) do
        if not hit then break end
        hit = deep_equal(item[k], v) or tostring(item[k]) == tostring(v)
      end
      if hit then
        table.remove(list, i)
        return true
      end
    end
  end
  return nil, "patch delete: no item of '" .. name .. "' matches"
end

-- ========== documents ==========

local function doc_id(d)
  if d.kind == nil then return "v1alpha1" end
  return tostring(d.kind) .. "/" .. tostring(d.name or "")
end

local function find_doc(docs, id)
  for i, d in ipairs(docs) do
    if type(d) == "table" and doc_id(d) == id then return i end
  end
end

-- Applies one strategic-merge patch document to docs (in place).
local function merge_doc(docs, pdoc)
  if not is_map(pdoc) then return nil, "a patch document must be a mapping" end
  pdoc = deep_copy(pdoc)
  local id = doc_id(pdoc)
  if is_delete(pdoc) then
    if id == "v1alpha1" then return nil, "patch delete: can't delete the v1alpha1 document" end
    local i = find_doc(docs, id)
    if not i then return nil, "patch delete: no document " .. id end
    table.remove(docs, i)
    return true
  end
  local dels = {}
  local ok, msg = collect(pdoc, {}, false, dels)
  if not ok then return nil, msg end
  local i = find_doc(docs, id)
  if not i then
    if #dels > 0 then return nil, "patch delete: no document " .. id end
    docs[#docs + 1] = pdoc
    return true
  end
  for _, d in ipairs(dels) do
    ok, msg = apply_delete(docs[i], d)
    if not ok then return nil, msg end
  end
  return merge(docs[i], pdoc, "")
end

-- ========== JSON6902 ==========

--- True when `p` is a JSON6902 patch: a list of operation tables.
---@param p any
---@return boolean
function M.is_json6902(p)
  if not is_list(p) or #p == 0 then return false end
  for _, op in ipairs(p) do
    if not is_map(op) or type(op.op) ~= "string" then return false end
  end
  return true
end

local function pointer(s)
  if s == "" then return {} end
  if s:sub(1, 1) ~= "/" then return nil end
  local parts = {}
  for tok in (s:sub(2) .. "/"):gmatch("(.-)/") do
    parts[#parts + 1] = tok:gsub("~1", "/"):gsub("~0", "~")
  end
  return parts
end

local function index_of(list, tok, allow_end)
  if allow_end and tok == "-" then return #list + 1 end
  if not tok:match("^%d+$") or (#tok > 1 and tok:sub(1, 1) == "0") then return nil end
  local i = tonumber(tok) + 1
  if i > #list + (allow_end and 1 or 0) then return nil end
  return i
end

-- The container of the pointer's last token, and that token.
local function locate(root, parts)
  local node = root
  for i = 1, #parts - 1 do
    local tok = parts[i]
    if is_list(node) then
      local idx = index_of(node, tok, false)
      node = idx and node[idx]
    elseif type(node) == "table" then
      node = node[tok]
    else
      node = nil
    end
    if type(node) ~= "table" then return nil end
  end
  return node, parts[#parts]
end

local function get(root, parts)
  if #parts == 0 then return root end
  local parent, tok = locate(root, parts)
  if not parent then return nil end
  if is_list(parent) then
    local i = index_of(parent, tok, false)
    return i and parent[i]
  end
  return parent[tok]
end

local function op_add(root, parts, value)
  if #parts == 0 then return value end
  local parent, tok = locate(root, parts)
  if not parent then return nil, "parent not found" end
  if is_list(parent) or (getmetatable(parent) == array_mt) then
    local i = index_of(parent, tok, true)
    if not i then return nil, "bad array index '" .. tok .. "'" end
    table.insert(parent, i, value)
  else
    parent[tok] = value
  end
  return root
end

local function op_remove(root, parts)
  if #parts == 0 then return nil, "cannot remove the whole document" end
  local parent, tok = locate(root, parts)
  if not parent then return nil, "path not found" end
  if is_list(parent) then
    local i = index_of(parent, tok, false)
    if not i then return nil, "path not found" end
    return root, table.remove(parent, i)
  end
  local old = parent[tok]
  if old == nil then return nil, "path not found" end
  parent[tok] = nil
  return root, old
end

local function apply_op(root, op)
  local name = op.op
  local parts = type(op.path) == "string" and pointer(op.path)
  if not parts then return nil, "bad or missing path" end
  local value = op.value
  if name == "add" or name == "replace" or name == "test" then
    if value == nil then return nil, "missing value" end
    value = deep_copy(value)
  end
  if name == "add" then
    return op_add(root, parts, value)
  elseif name == "remove" then
    return op_remove(root, parts)
  elseif name == "replace" then
    if get(root, parts) == nil then return nil, "path not found" end
    if #parts == 0 then return value end
    local r, msg = op_remove(root, parts)
    if not r then return nil, msg end
    return op_add(r, parts, value)
  elseif name == "move" or name == "copy" then
    local from = type(op.from) == "string" and pointer(op.from)
    if not from then return nil, "bad or missing from" end
    local v = get(root, from)
    if v == nil then return nil, "from path not found" end
    if name == "move" then
      if op.path:sub(1, #op.from + 1) == op.from .. "/" then
        return nil, "cannot move a value into itself"
      end
      local r, msg = op_remove(root, from)
      if not r then return nil, msg end
      root = r
    else
      v = deep_copy(v)
    end
    return op_add(root, parts, v)
  elseif name == "test" then
    local v = get(root, parts)
    if v == nil or not deep_equal(v, value) then return nil, "test failed" end
    return root
  end
  return nil, "unknown op '" .. tostring(name) .. "'"
end

--- Applies a JSON6902 patch to one document (a copy; the input is kept).
---@param doc table
---@param ops table[] {op=, path=, value=, from=}
---@return table? doc, string? msg, string? code
function M.json6902(doc, ops)
  opts.arg(type(doc) == "table", "patch.json6902", "document table expected")
  opts.arg(M.is_json6902(ops), "patch.json6902", "list of {op=, path=} tables expected")
  local root = deep_copy(doc)
  for i, op in ipairs(ops) do
    local r, msg = apply_op(root, op)
    if r == nil then
      return nil, string.format("json patch op %d (%s %s): %s", i, tostring(op.op),
        tostring(op.path), msg), "EINVAL"
    end
    root = r
  end
  if not is_map(root) then return nil, "json patch: the result is not a mapping", "EINVAL" end
  return root
end

-- ========== entry points ==========

--- Reads a patch from text (YAML or JSON): a JSON6902 operation list, or
--- one or more strategic-merge documents.  Returns {json6902 = ops} or
--- {docs = {...}}.
---@param text string
---@return table? patch, string? msg, string? code
function M.load(text)
  opts.arg(type(text) == "string", "patch.load", "patch text expected")
  local docs, msg = yaml.decode_all(text)
  if not docs then return nil, "patch: " .. msg, "EINVAL" end
  local list = {}
  for _, d in ipairs(docs) do if d ~= null then list[#list + 1] = d end end
  if #list == 1 and M.is_json6902(list[1]) then return { json6902 = list[1] } end
  for i, d in ipairs(list) do
    if not is_map(d) then
      return nil, string.format("patch: document %d is not a mapping", i), "EINVAL"
    end
  end
  return { docs = list }
end

--- Strategic-merges patch documents into a copy of `docs`.
---@param docs table[] config documents
---@param pdocs table|table[] one patch document or a list of them
---@return table[]? docs, string? msg, string? code
function M.merge(docs, pdocs)
  opts.arg(type(docs) == "table", "patch.merge", "list of documents expected")
  opts.arg(type(pdocs) == "table", "patch.merge", "patch table expected")
  if is_map(pdocs) then pdocs = { pdocs } end
  local out = deep_copy(docs)
  setmetatable(out, array_mt)
  for _, pd in ipairs(pdocs) do
    local ok, msg = merge_doc(out, pd)
    if not ok then return nil, msg, "EINVAL" end
  end
  return out
end

--- Applies one patch of any form to a copy of `docs`: YAML/JSON text, a
--- JSON6902 list of operations, a strategic-merge document or a list of
--- them.  JSON6902 patches change the v1alpha1 document (talosctl refuses
--- them on multi-document configs; tlr does not).
---@param docs table[]
---@param p string|table
---@return table[]? docs, string? msg, string? code
function M.apply(docs, p)
  opts.arg(type(docs) == "table", "patch.apply", "list of documents expected")
  opts.arg(type(p) == "string" or type(p) == "table", "patch.apply",
    "patch must be YAML text or a table")
  if type(p) == "string" then
    local loaded, msg, code = M.load(p)
    if not loaded then return nil, msg, code end
    p = loaded.json6902 or loaded.docs
  end
  if not M.is_json6902(p) then return M.merge(docs, p) end
  local i = find_doc(docs, "v1alpha1")
  if not i then return nil, "json patch: no v1alpha1 document", "EINVAL" end
  local doc, msg, code = M.json6902(docs[i], p)
  if not doc then return nil, msg, code end
  local out = setmetatable({}, array_mt)
  for j, d in ipairs(docs) do out[j] = j == i and doc or deep_copy(d) end
  return out
end

return M
