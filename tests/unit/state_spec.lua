-- tlr.state: the per-cluster state directory.
local H = require "helper"
local state = require "tlr.state"
local fs = require "tlr.fs"
local secrets = require "tlr.talos.secrets"

describe("tlr.state", function()
  local dir
  before_each(function() dir = H.tmpdir() .. "/cluster" end)
  after_each(function() os.execute("rm -rf " .. fs.dirname(dir)) end)

  local function mode(path) return fs.stat(path).mode & 511 end

  it("creates the directory 0700 and refuses a second run while locked", function()
    local st = assert(state.open(dir))
    assert.are.equal(448, mode(dir))
    local again, msg, code = state.open(dir)
    assert.is_nil(again)
    assert.are.equal("ELOCKED", code)
    assert.matches("is locked by", msg)
    st:close()
    st:close() -- idempotent
    local later = assert(state.open(dir))
    later:close()
  end)

  it("holds the lock against another tlr process", function()
    local st = assert(state.open(dir))
    local bin = os.getenv("TLR_BIN") or "build/tlr"
    local out = H.capture(bin .. " -e \"print(select(3, require('tlr.state').open('" .. dir .. "')))\"")
    assert.are.equal("ELOCKED\n", out)
    st:close()
  end)

  it("generates secrets once and reads the same ones back after that", function()
    local st = assert(state.open(dir))
    local calls = 0
    local function gen()
      calls = calls + 1
      return secrets.generate {}
    end
    local a, created = assert(st:secrets(gen))
    assert.is_true(created)
    local b, created2 = assert(st:secrets(gen))
    assert.is_false(created2)
    assert.are.equal(1, calls)
    assert.are.equal(a.certs.os.crt, b.certs.os.crt)
    assert.are.equal(384, mode(st:path("secrets")))
    st:close()
  end)

  it("writes files 0600 atomically and refuses ones others can read", function()
    local st = assert(state.open(dir))
    assert(st:write("kubeconfig", "apiVersion: v1\n"))
    assert.are.equal(384, mode(st:path("kubeconfig")))
    assert.are.equal("apiVersion: v1\n", st:read("kubeconfig"))
    os.execute("chmod 644 " .. st:path("kubeconfig"))
    local text, msg, code = st:read("kubeconfig")
    assert.is_nil(text)
    assert.are.equal("EPERM", code)
    assert.matches("kubeconfig", msg)
    assert.is_nil(st:read("talosconfig")) -- not there yet: nil, no error
    assert.is_nil(select(2, st:read("talosconfig")))
    assert.has_error(function() st:read("nope") end)
    st:close()
  end)

  it("keeps an inventory as sorted JSON", function()
    local st = assert(state.open(dir))
    assert.are.same({ nodes = {} }, st:inventory())
    assert(st:save_inventory { nodes = { cp1 = { vmid = 101, mac = "BC:24:11:00:00:01" } } })
    local inv = assert(st:inventory())
    assert.are.equal(101, inv.nodes.cp1.vmid)
    local first = H.read(st:path("inventory"))
    assert(st:save_inventory(inv))
    assert.are.equal(first, H.read(st:path("inventory")))
    H.write(st:path("inventory"), "{broken")
    local bad, _, code = st:inventory()
    assert.is_nil(bad)
    assert.are.equal("EINVAL", code)
    st:close()
  end)
end)
