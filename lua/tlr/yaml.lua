--- YAML: decode and encode on libyaml (modules/yaml.c decodes,
--- modules/yaml_encode.c encodes).
---
--- Decoding types plain scalars by the YAML 1.2 core schema, the way the Go
--- readers of Kubernetes and Talos do: `true`/`false` (any case form) are
--- booleans but `yes`/`no`/`on`/`off` are strings; `~`, `null` and empty
--- values are `yaml.null`; 12, 0o14, 0xC and the old-style octal 014 are
--- integers; 1.5, 1e3, .inf and .nan are floats; quoted scalars are strings;
--- explicit tags (!!str, !!int, !!float, !!bool, !!null) are honoured.
--- Mapping keys are always strings.  Sequences carry `yaml.array_mt`, the
--- metatable tlr.json uses too ("tlr.json.array"), so `[]` re-encodes as `[]`.
--- `yaml.null` is the light userdata NULL, the same value as `cjson.null`
--- and `json.null`.
local core = require "tlr.yaml.core"
local enc = require "tlr.yaml_encode.core"
local opts = require "tlr.opts"
local json = require "tlr.json"

local M = {}

--- The null sentinel (light userdata NULL; == cjson.null == json.null).
M.null = core.null

--- The metatable marking a table as a sequence; shared with tlr.json.
M.array_mt = core.array_mt

local decode, decode_all = core.decode, core.decode_all
local encode, encode_all = enc.encode, enc.encode_all

local DECODE_OPTS = { null = "string", max_nodes = "integer" }
local ENCODE_OPTS = { order = { "table", "function" }, indent = "integer" }

local function check_string(fname, s)
  if type(s) ~= "string" then
    error(string.format("bad argument #1 to '%s' (string expected, got %s)", fname, type(s)), 3)
  end
end

local function bad_option(fname, msg)
  error(string.format("bad argument to '%s' (%s)", fname, msg), 4)
end

-- Checks what opts.check cannot; raises at the public function's caller.
local function check_decode_opts(fname, o)
  if o.null ~= nil and o.null ~= "sentinel" and o.null ~= "nil" then
    bad_option(fname, "option 'null': \"sentinel\" or \"nil\" expected")
  end
  if o.max_nodes ~= nil and o.max_nodes < 1 then
    bad_option(fname, "option 'max_nodes': positive integer expected")
  end
  return o
end

local function check_encode_opts(fname, o)
  if o.indent ~= nil and (o.indent < 2 or o.indent > 9) then
    bad_option(fname, "option 'indent': 2..9 expected")
  end
  if type(o.order) == "table" then
    for i, k in ipairs(o.order) do
      if type(k) ~= "string" then
        bad_option(fname, "option 'order': string expected at index " .. i)
      end
    end
  end
  return o
end

--- Decodes the first (usually the only) document of a YAML stream.
--- An empty stream decodes to `yaml.null`.
---@param s string YAML text
--- Options: `null = "nil"` drops nulls (their map keys are absent, sequences
--- get holes); `max_nodes` caps the node count after alias expansion
--- (default: 10^6, or 2 * #s for inputs over 500 kB).
---@param o? {null?: "sentinel"|"nil", max_nodes?: integer}
---@return any|nil value
---@return string? msg "line L, column C: <problem>" on bad input
---@return string? code "EINVAL"
function M.decode(s, o)
  check_string("yaml.decode", s)
  o = check_decode_opts("yaml.decode", opts.check("yaml.decode", o, DECODE_OPTS))
  return decode(s, o)
end

--- Decodes every document of a YAML stream into a list (marked as a sequence).
--- A document that is empty or null is `yaml.null` in the list (also with
--- null = "nil"), so the list has one entry per document.
---@param s string YAML text
---@param o? {null?: "sentinel"|"nil", max_nodes?: integer} as for decode
---@return any[]|nil docs
---@return string? msg "line L, column C: <problem>" on bad input
---@return string? code "EINVAL"
function M.decode_all(s, o)
  check_string("yaml.decode_all", s)
  o = check_decode_opts("yaml.decode_all", opts.check("yaml.decode_all", o, DECODE_OPTS))
  return decode_all(s, o)
end

--- Encodes a value as one YAML document in block style.
--- Keys are sorted (byte order) unless `order` lists keys that come first,
--- in that order, at every level, or is a comparator `function(a, b)`.
--- Strings that would read back as something else (also under YAML 1.1:
--- "on", "yes", "0700", "1e3", "1:30") are quoted; multi-line strings are
--- literal blocks.  Tables with `yaml.array_mt`, or exactly the keys 1..n,
--- are sequences; tables with string keys are mappings; `{}` is an empty
--- mapping unless marked.
---@param v any
--- Options: `order` (see above), `indent` spaces per level, 2..9 (default 2).
---@param o? {order?: string[]|fun(a: string, b: string): boolean, indent?: integer}
---@return string|nil text
---@return string? msg "<problem> at $.path[1].to.value"
---@return string? code "EINVAL"
function M.encode(v, o)
  o = check_encode_opts("yaml.encode", opts.check("yaml.encode", o, ENCODE_OPTS))
  return encode(v, o)
end

--- Encodes a list of values as a multi-document stream separated by `---`.
---@param list any[] the documents
---@param o? {order?: string[]|fun(a: string, b: string): boolean, indent?: integer} as for encode
---@return string|nil text
---@return string? msg "<problem> at $[2].path" (the document's index first)
---@return string? code "EINVAL"
function M.encode_all(list, o)
  if type(list) ~= "table" then
    error("bad argument #1 to 'yaml.encode_all' (table expected, got " .. type(list) .. ")", 2)
  end
  local n = 0
  for _ in pairs(list) do n = n + 1 end
  if n ~= #list then
    error("bad argument #1 to 'yaml.encode_all' (list of documents expected)", 2)
  end
  o = check_encode_opts("yaml.encode_all", opts.check("yaml.encode_all", o, ENCODE_OPTS))
  return encode_all(list, o)
end

--- Marks `t` (or a new empty table) as a sequence; the same function and
--- metatable as json.array, so YAML and JSON agree on what an array is.
M.array = json.array

--- True when `t` is marked as a sequence (json.is_array).
M.is_array = json.is_array

--- The version of the linked libyaml.
M.libyaml_version = core.libyaml

return M
