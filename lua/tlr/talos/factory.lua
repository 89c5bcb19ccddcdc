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

-- A YAML scalar as yaml.v3 writes it: plain when that reads back as the same
-- string, else double-quoted.
local function scalar(s)
  s = tostring(s)
  local ambiguous = s == "" or s:match("^[%s]") or s:match("[%s]$") or s:match("^[-?:,%[%]{}#&*!|>'\"%%@`]")
    or s:find(": ", 1, true) or s:find(" #", 1, true) or s:match("^[%d.+-]")
    or ({ ["true"] = 1, ["false"] = 1, ["null"] = 1, ["~"] = 1, yes = 1, no = 1, on = 1, off = 1,
      y = 1, n = 1 })[s:lower()]
  if not ambiguous and not s:find("[%c]") then return s end
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("\n", "\\n"):gsub("\t", "\\t") .. '"'
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
