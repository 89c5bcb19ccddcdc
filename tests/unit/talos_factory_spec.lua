-- tlr.talos.factory: schematic ids computed offline must equal the Image
-- Factory's (the two known ids from the reference are the test vectors).
local factory = require "tlr.talos.factory"

describe("tlr.talos.factory", function()
  it("computes the factory's id of the default schematic", function()
    assert.are.equal("customization: {}\n", factory.canonical {})
    assert.are.equal("376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba", factory.id {})
  end)

  it("computes the factory's id of the qemu-guest-agent schematic", function()
    assert.are.equal("customization:\n    systemExtensions:\n        officialExtensions:\n"
      .. "            - siderolabs/qemu-guest-agent\n",
      factory.canonical { extensions = { "siderolabs/qemu-guest-agent" } })
    assert.are.equal("ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
      factory.id { extensions = { "siderolabs/qemu-guest-agent" } })
  end)

  it("writes kernel args and meta in yaml.v3's layout, quoting what needs it", function()
    assert.are.equal(table.concat({
      "customization:",
      "    extraKernelArgs:",
      "        - net.ifnames=0",
      "    meta:",
      "        - key: 10",
      "          value: 'a: b'",
      "    systemExtensions:",
      "        officialExtensions:",
      "            - siderolabs/iscsi-tools",
      "            - siderolabs/qemu-guest-agent",
      "",
    }, "\n"), factory.canonical { extra_kernel_args = { "net.ifnames=0" },
      meta = { { key = 10, value = "a: b" } },
      extensions = { "siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools" } })
  end)

  it("quotes scalars as yaml.v3 does", function()
    local function one(v)
      return factory.canonical({ extra_kernel_args = { v } }):match("\n        %- (.-)\n$")
    end
    assert.are.equal("console=ttyS0", one("console=ttyS0"))
    assert.are.equal("1.2.3", one("1.2.3"))
    assert.are.equal('"123"', one("123"))
    assert.are.equal('"1.5"', one("1.5"))
    assert.are.equal('"true"', one("true"))
    assert.are.equal('"yes"', one("yes"))
    assert.are.equal('""', one(""))
    assert.are.equal("'a: b'", one("a: b"))
    assert.are.equal("'#x'", one("#x"))
    assert.are.equal("'-'", one("-"))
    assert.are.equal("-x", one("-x"))
  end)

  it("gives the same id whatever order the extensions are listed in", function()
    assert.are.equal(factory.id { extensions = { "a/x", "b/y" } }, factory.id { extensions = { "b/y", "a/x" } })
    assert.are_not.equal(factory.id { extensions = { "a/x" } }, factory.id { extensions = { "b/y" } })
  end)

  it("builds image and installer URLs", function()
    local id = factory.id {}
    assert.are.equal("https://factory.talos.dev/image/" .. id .. "/v1.11.2/nocloud-amd64.qcow2",
      factory.image_url(factory.DEFAULT_URL, id, "1.11.2"))
    assert.are.equal("http://f/image/x/v1.9.0/metal-arm64.iso",
      factory.image_url("http://f/", "x", "v1.9.0", { platform = "metal", arch = "arm64", format = "iso" }))
    assert.are.equal("factory.talos.dev/nocloud-installer/" .. id .. ":v1.11.2", factory.installer_image(id, "1.11.2"))
    assert.are.equal("factory.talos.dev/installer/" .. id .. ":v1.9.1", factory.installer_image(id, "1.9.1"))
  end)

  it("rejects unknown schematic fields", function()
    assert.has_error(function() factory.canonical { extension = { "x" } } end)
  end)
end)
