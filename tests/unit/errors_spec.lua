-- tlr.errors: error objects and the code registry.
local errors = require "tlr.errors"

describe("tlr.errors", function()
  it("lists exactly the codes of runtime/tlr_err.h in docs/errors.md", function()
    local f = assert(io.open("docs/errors.md"))
    local documented = {}
    for code in f:read("a"):gmatch("\n| `(E[A-Z]+)` |") do documented[code] = true end
    f:close()
    local n = 0
    for code in pairs(errors.codes) do
      n = n + 1
      assert.is_true(documented[code] ~= nil, code .. " is not in docs/errors.md")
    end
    for code in pairs(documented) do
      assert.is_true(errors.codes[code] ~= nil, code .. " is documented but not registered")
    end
    assert.is_true(n >= 19)
  end)

  it("builds error objects whose tostring is the message (with the step)", function()
    local e = errors.new("EAPI", "no such VM", { step = "vm web-1", host = "pve1" })
    assert.are.equal("EAPI", e.code)
    assert.are.equal("pve1", e.host)
    assert.are.equal("vm web-1: no such VM", tostring(e))
    assert.is_true(errors.is(e))
    assert.is_true(errors.is(e, "EAPI"))
    assert.is_false(errors.is(e, "EINVAL"))
    assert.is_false(errors.is("EAPI"))
  end)

  it("refuses unregistered codes", function()
    assert.has_error(function() errors.new("ENOPE", "x") end)
  end)

  it("check() passes results through and raises failures as objects", function()
    assert.are.same({ 1, 2 }, { errors.check(1, 2) })
    local ok, e = pcall(errors.check, nil, "connect failed", "ECONNREFUSED")
    assert.is_false(ok)
    assert.are.equal("ECONNREFUSED", e.code)
    assert.are.equal("connect failed", e.msg)
    local _, e2 = pcall(errors.check, nil, "odd", "EWHATEVER")
    assert.are.equal("ETRANSPORT", e2.code)
  end)

  it("message() strips tracebacks", function()
    assert.are.equal("boom", errors.message("boom\nstack traceback:\n\tx"))
    assert.are.equal("m", errors.message(errors.new("EIO", "m")))
  end)
end)
