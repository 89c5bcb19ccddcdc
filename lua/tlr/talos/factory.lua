--- Talos Image Factory: schematic ids computed offline exactly as the
--- factory does, registration (POST /schematics), and image / installer URLs.
---
--- The factory's id is the SHA-256 of the schematic marshalled by Go's
--- yaml.v3 with a 4-space indent, fields in the Go struct's order, empty
--- ones left out, and the top-level `customization` always present.  That
--- layout is small and fixed, so it is written here by hand rather than
--- through the general YAML encoder (whose indentation differs).
local crypto = require "tlr.crypto"
local http = require "tlr.http"
local json = require "tlr.json"
local opts = require "tlr.opts"

local M = {}

M.DEFAULT_URL = "https://factory.talos.dev"

-- yaml.v3 would read these as something other than a string (its resolve
-- table, plus the YAML 1.1 booleans it also refuses to leave bare).
local function resolves_as_non_string(s)
  if s == "" or s == "~" then return true end
  local lower = s:lower()
  if lower == "null" or lower == "true" or lower == "false" then return true end
  for _, b in ipairs { "y", "yes", "on", "n", "no", "off" } do
    if s == b or s == b:upper() or s == b:sub(1, 1):upper() .. b:sub(2) then return true end
  end
  if s:match("^[-+]?[0-9_]+$") or s:match("^[-+]?0[xX][0-9a-fA-F_]+$") or s:match("^0[oO][0-7_]+$")
    or s:match("^[-+]?0[bB][01_]+$") then
    return true
  end
  if s:match("^[-+]?%.?[0-9][0-9_]*%.?[0-9_]*$") and s:find("%.") and not s:match("%..*%.") then return true end
  if s:match("^[-+]?[0-9][0-9_]*%.?[0-9_]*[eE][-+]?[0-9]+$") then return true end
  if lower:match("^[-+]?%.inf$") or lower == ".nan" then return true end
  if s:match("^[-+]?[0-9][0-9_]*:[0-5]?[0-9]") then return true end -- base 60
  return false
end

-- libyaml's emitter refuses a plain block scalar for these.
local function plain_forbidden(s)
  return s:match("^%s") or s:match("%s$") or s:match("^[#,%[%]{}&*!|>'\"%%@`]")
    or s:match("^[-?:]%s") or s:match("^[-?:]$") or s:find(": ", 1, true) or s:match(":$")
    or s:find(" #", 1, true) or s:find("[%c]")
end

-- A scalar as yaml.v3 writes it: double-quoted when it would resolve to
-- another type, single-quoted when the emitter cannot leave it plain, else plain.
local function scalar(s)
  s = tostring(s)
  if resolves_as_non_string(s) then
    return '"' .. s:gsub('[\\"]', "\\%0"):gsub("\n", "\\n"):gsub("\t", "\\t") .. '"'
  end
  if plain_forbidden(s) then return "'" .. s:gsub("'", "''") .. "'" end
  return s
end

local function list(lines, indent, key, items)
  if not items or #items == 0 then return end
  lines[#lines + 1] = indent .. key .. ":"
  for _, item in ipairs(items) do lines[#lines + 1] = indent .. "    - " .. scalar(item) end
end

--- The canonical YAML of a schematic ({extensions=, extra_kernel_args=, meta=}).
---@param s {extensions?: string[], extra_kernel_args?: string[], meta?: {key: integer, value: string}[], secureboot_auto_enroll?: boolean}
---@return string
function M.canonical(s)
  s = opts.check("factory.canonical", s, { extensions = "table", extra_kernel_args = "table",
    meta = "table", secureboot_auto_enroll = "boolean" })
  local lines = {}
  local body = {}
  list(body, "    ", "extraKernelArgs", s.extra_kernel_args)
  if s.meta and #s.meta > 0 then
    body[#body + 1] = "    meta:"
    for _, m in ipairs(s.meta) do
      body[#body + 1] = "        - key: " .. tostring(m.key)
      body[#body + 1] = "          value: " .. scalar(m.value)
    end
  end
  if s.extensions and #s.extensions > 0 then
    local ext = {}
    for i, e in ipairs(s.extensions) do ext[i] = e end
    table.sort(ext) -- the same set gives the same id, whatever order the site lists it in
    body[#body + 1] = "    systemExtensions:"
    list(body, "        ", "officialExtensions", ext)
  end
  if s.secureboot_auto_enroll then
    body[#body + 1] = "    secureboot:"
    body[#body + 1] = "        includeWellKnownCertificates: true"
  end
  if #body == 0 then
    lines[1] = "customization: {}"
  else
    lines[1] = "customization:"
    for _, l in ipairs(body) do lines[#lines + 1] = l end
  end
  return table.concat(lines, "\n") .. "\n"
end

--- The schematic id the factory will give this schematic (hex SHA-256).
function M.id(s)
  return crypto.sha256(M.canonical(s), { hex = true })
end

--- Registers the schematic with a factory; returns its id (checked against
--- the offline one), or nil, msg, code.
---@param url string factory base URL
function M.register(url, s, o)
  o = opts.check("factory.register", o, { timeout = "number", ca = "string", insecure = "boolean" })
  local body = M.canonical(s)
  local res, msg, code = http.request { method = "POST", url = url:gsub("/+$", "") .. "/schematics",
    body = body, headers = { ["Content-Type"] = "application/yaml" }, timeout = o.timeout or 30,
    ca = o.ca, insecure = o.insecure }
  if not res then return nil, msg, code end
  if res.status ~= 201 and res.status ~= 200 then
    return nil, string.format("POST %s/schematics: %d %s", url, res.status,
      (res.body or ""):sub(1, 200)), "EAPI"
  end
  local reply = json.decode(res.body)
  local id = type(reply) == "table" and reply.id
  if type(id) ~= "string" then return nil, "factory reply has no schematic id", "EPROTO" end
  local want = M.id(s)
  if id ~= want then
    return nil, string.format("factory returned schematic %s, expected %s", id, want), "EPROTO"
  end
  return id
end

--- The URL of an image file: `<url>/image/<id>/<version>/<platform>-<arch>.<format>`.
---@param o? {platform?: string, arch?: string, format?: string, secureboot?: boolean}
function M.image_url(url, id, version, o)
  o = opts.check("factory.image_url", o, { platform = "string", arch = "string", format = "string",
    secureboot = "boolean" })
  local v = version:sub(1, 1) == "v" and version or ("v" .. version)
  return string.format("%s/image/%s/%s/%s-%s%s.%s", url:gsub("/+$", ""), id, v, o.platform or "nocloud",
    o.arch or "amd64", o.secureboot and "-secureboot" or "", o.format or "qcow2")
end

--- The installer image for machine.install.image (see tlr.talos.config.installer_image).
function M.installer_image(id, version, o)
  return require("tlr.talos.config").installer_image(id, version, o)
end

return M
