-- The lab's Image Factory fake (tests/lab/factory): schematic ids equal to
-- the real factory's (the vectors of reference/talos.md §4), strict
-- decoding, stand-in images, and the Proxmox fake's download-url fetching
-- from it.  Raw tlr.http requests against a private lab.
local L = require "lab_helper"
local crypto = require "tlr.crypto"
local http = require "tlr.http"
local json = require "tlr.json"

local DEFAULT = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
local QEMU = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
local QEMU_YAML = "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n"

describe("lab: Image Factory fake", function()
  local lab, base

  setup(function()
    lab = L.start { profile = "test" }
    base = lab.env.FACTORY_URL
  end)
  teardown(function() if lab then lab:stop() end end)
  before_each(function() lab:reset() end)

  local function post(body, ctype)
    return assert(http.request { method = "POST", url = base .. "/schematics", body = body,
      headers = { ["Content-Type"] = ctype or "application/yaml" } })
  end
  local function get(path, method)
    return assert(http.request { method = method or "GET", url = base .. path })
  end
  local function ok(r)
    assert.are.equal(200, r.status, r.body)
    return r.json and r.json.data or r.data
  end

  it("is in the env file as an http URL on a lab address", function()
    assert.matches("^http://" .. lab.net:gsub("%.", "%%.") .. "%.0%.%d+:%d+$", base)
    assert.are.equal(base, "http://" .. lab.env.FACTORY_HOST .. ":" .. lab.env.FACTORY_PORT)
  end)

  describe("POST /schematics", function()
    it("gives the default schematic the real factory's id", function()
      local r = post("customization: {}\n")
      assert.are.equal(201, r.status)
      assert.are.same({ id = DEFAULT }, json.decode(r.body))
    end)

    it("gives the qemu-guest-agent schematic the id of the Talos docs, from YAML in any layout or JSON", function()
      assert.are.equal(QEMU, crypto.sha256(QEMU_YAML, { hex = true }))
      for _, body in ipairs {
        QEMU_YAML,
        "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n",
        '{"customization": {"systemExtensions": {"officialExtensions": ["siderolabs/qemu-guest-agent"]}}}',
      } do
        local r = post(body)
        assert.are.equal(201, r.status, r.body)
        assert.are.equal(QEMU, json.decode(r.body).id, body)
      end
    end)

    it("leaves empty and false fields out of the canonical form (omitempty)", function()
      local r = post("customization:\n  extraKernelArgs: []\n  systemExtensions: {officialExtensions: []}\n" ..
        "  secureboot: {includeWellKnownCertificates: false}\n")
      assert.are.equal(DEFAULT, json.decode(r.body).id)
      local kargs = json.decode(post("customization:\n  extraKernelArgs: [console=ttyS0]\n").body).id
      assert.are_not.equal(DEFAULT, kargs)
      assert.are.equal(crypto.sha256("customization:\n    extraKernelArgs:\n        - console=ttyS0\n", { hex = true }), kargs)
    end)

    it("rejects unknown fields and wrong types with 400 and yaml.v3's message", function()
      local r = post("customization:\n  systemExtension:\n    officialExtensions: [x]\n")
      assert.are.equal(400, r.status)
      assert.matches("line 2: field systemExtension not found in type schematic.Customization", r.body, 1, true)
      local top = post("customisation: {}\n")
      assert.are.equal(400, top.status)
      assert.matches("field customisation not found in type schematic.Schematic", top.body, 1, true)
      local typ = post("customization:\n  meta:\n    - key: 300\n      value: x\n")
      assert.are.equal(400, typ.status)
      assert.matches("cannot unmarshal !!int `300` into uint8", typ.body, 1, true)
      local syntax = post("customization: [\n")
      assert.are.equal(400, syntax.status)
      assert.matches("^yaml: line %d+:", syntax.body)
    end)
  end)

  describe("images", function()
    local function image(id, version, file, method)
      return get(string.format("/image/%s/%s/%s", id, version, file), method)
    end

    it("serves small deterministic stand-ins per schematic, version and file; HEAD gives the size", function()
      assert.are.equal(201, post(QEMU_YAML).status)
      local iso = image(QEMU, "v1.11.6", "nocloud-amd64.iso")
      assert.are.equal(200, iso.status)
      assert.are.equal("application/octet-stream", iso.headers["content-type"])
      assert.is_true(#iso.body > 1024 and #iso.body < 64 * 1024, tostring(#iso.body))
      assert.matches("talos v1.11.6\nschematic " .. QEMU .. "\nfile nocloud-amd64.iso\n", iso.body, 1, true)
      assert.are.equal(iso.body, image(QEMU, "v1.11.6", "nocloud-amd64.iso").body)
      assert.are_not.equal(iso.body, image(QEMU, "v1.11.5", "nocloud-amd64.iso").body)
      assert.are_not.equal(iso.body, image(DEFAULT, "v1.11.6", "nocloud-amd64.iso").body)
      local head = image(QEMU, "v1.11.6", "nocloud-amd64.iso", "HEAD")
      assert.are.equal(200, head.status)
      assert.are.equal(tostring(#iso.body), head.headers["content-length"])
      assert.are.equal("", head.body or "")
      local qcow2 = image(QEMU, "v1.11.6", "nocloud-amd64.qcow2")
      assert.are.equal("QFI\xfb", qcow2.body:sub(1, 4))
      assert.are.equal("\xfd7zXZ\0", image(QEMU, "v1.11.6", "nocloud-amd64.raw.xz").body:sub(1, 6))
      assert.are.equal("\x28\xb5\x2f\xfd", image(QEMU, "v1.11.6", "metal-amd64.raw.zst").body:sub(1, 4))
      for _, f in ipairs { "metal-arm64-secureboot.iso", "kernel-amd64", "initramfs-amd64.xz", "cmdline-metal-amd64",
        "nocloud-amd64-uki.efi", "aws-amd64.raw.xz" } do
        assert.are.equal(200, image(QEMU, "v1.11.6", f, "HEAD").status, f)
      end
    end)

    it("answers 404 for an id it was never given, an unknown version or an unknown file", function()
      local never = crypto.sha256("never posted", { hex = true })
      local r = image(never, "v1.11.6", "nocloud-amd64.iso")
      assert.are.equal(404, r.status)
      assert.matches("schematic ID", r.body, 1, true)
      assert.are.equal(200, image(DEFAULT, "v1.11.6", "metal-amd64.iso", "HEAD").status) -- the default one is always known
      assert.are.equal(404, image(DEFAULT, "v9.9.9", "metal-amd64.iso").status)
      assert.are.equal(404, image(DEFAULT, "v1.11.6", "nocloud-amd64.exe").status)
      assert.are.equal(404, image(DEFAULT, "v1.11.6", "windows-amd64.iso").status)
    end)

    it("lists the versions and the official extensions", function()
      local v = json.decode(get("/versions").body)
      local has = {}
      for _, x in ipairs(v) do has[x] = true end
      assert.is_true(has["v1.11.6"] and has["v1.8.0"] and has["v1.12.0"])
      local ext = json.decode(get("/version/v1.11.6/extensions/official").body)
      local names = {}
      for _, e in ipairs(ext) do names[e.name] = e.ref end
      assert.matches("^ghcr%.io/siderolabs/qemu%-guest%-agent:", names["siderolabs/qemu-guest-agent"])
      assert.are.equal(404, get("/version/v0.1.0/extensions/official").status)
    end)

    it("redirects to a CDN path when the profile says so (clients must follow)", function()
      lab:control("PATCH", "/profile", { factory = { redirect = 1 } })
      local r = image(DEFAULT, "v1.11.6", "nocloud-amd64.iso")
      assert.are.equal(302, r.status)
      assert.are.equal("/cdn/image/" .. DEFAULT .. "/v1.11.6/nocloud-amd64.iso", r.headers.location)
      assert.are.equal(200, get(r.headers.location).status)
    end)
  end)

  describe("with the Proxmox fake's download-url", function()
    local function dl(storage_content, file, filename)
      return lab:pve("POST", "/nodes/pve1/storage/local/download-url", { form = {
        url = string.format("%s/image/%s/v1.11.6/%s", base, QEMU, file),
        content = storage_content, filename = filename } })
    end
    local function volume(content, volid)
      local list = assert(lab:pve("GET", "/nodes/pve1/storage/local/content", { query = { content = content } })).data
      for _, v in ipairs(list) do if v.volid == volid then return v end end
    end

    it("puts the ISO and the import image into storage, with the image's size", function()
      assert.are.equal(201, post(QEMU_YAML).status)
      local iso = get(string.format("/image/%s/v1.11.6/nocloud-amd64.iso", QEMU))
      local st = lab:wait_task(ok(dl("iso", "nocloud-amd64.iso", "talos-v1.11.6-nocloud-amd64.iso")))
      assert.are.equal("OK", st.exitstatus)
      local vol = volume("iso", "local:iso/talos-v1.11.6-nocloud-amd64.iso")
      assert.is_not_nil(vol)
      assert.are.equal(#iso.body, vol.size)
      local qcow2 = get(string.format("/image/%s/v1.11.6/nocloud-amd64.qcow2", QEMU))
      assert.are.equal("OK", lab:wait_task(ok(dl("import", "nocloud-amd64.qcow2", "talos-v1.11.6.qcow2"))).exitstatus)
      local imp = volume("import", "local:import/talos-v1.11.6.qcow2")
      assert.is_not_nil(imp)
      assert.are.equal(#qcow2.body, imp.size)
      assert.are.equal("qcow2", imp.format)
      local log = lab:control("GET", "/log?service=factory&path=/image/**")
      assert.is_true(#log >= 4)
      assert.are.equal("GET", log[#log].method)
    end)

    it("fails the task when the factory answers 404 or a fault", function()
      local never = crypto.sha256("unknown", { hex = true })
      local r = lab:pve("POST", "/nodes/pve1/storage/local/download-url", { form = {
        url = string.format("%s/image/%s/v1.11.6/nocloud-amd64.iso", base, never), content = "iso", filename = "x.iso" } })
      local st = lab:wait_task(ok(r))
      assert.matches("^download failed: 404", st.exitstatus)
      lab:control("POST", "/faults", { service = "factory", path = "/image/**", status = 503, message = "Service Unavailable", count = 1 })
      local st2 = lab:wait_task(ok(dl("iso", "metal-amd64.iso", "metal.iso")))
      assert.are.equal("download failed: 503 Service Unavailable", st2.exitstatus)
      assert.are.equal("OK", lab:wait_task(ok(dl("iso", "metal-amd64.iso", "metal.iso"))).exitstatus)
    end)
  end)

  it("takes faults for POST /schematics (status, count) and logs the requests", function()
    lab:control("POST", "/faults", { service = "factory", path = "/schematics", status = 500, message = "boom", count = 1 })
    local r = post("customization: {}\n")
    assert.are.equal(500, r.status)
    assert.are.equal(201, post("customization: {}\n").status)
    local log = lab:control("GET", "/log?service=factory&path=/schematics&limit=2")
    assert.are.equal(500, log[1].status)
    assert.is_not_nil(log[1].fault)
    assert.are.equal(201, log[2].status)
  end)
end)
