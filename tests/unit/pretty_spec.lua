-- Pretty printing (lua/tlr/pretty.lua).
local pretty = require "tlr.pretty"
local json = require "tlr.json"

local function fmt(v, opts)
  opts = opts or {}
  opts.width = opts.width or 80
  return pretty.format(v, opts)
end

local function lines_of(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  return lines
end

describe("tlr.pretty", function()
  describe("scalars", function()
    it("quotes and escapes strings", function()
      assert.are.equal('"plain"', fmt("plain"))
      assert.are.equal([["say \"hi\"\n\tback\\slash\0011"]], fmt('say "hi"\n\tback\\slash\0011'))
      assert.are.equal('"grüße"', fmt("grüße"))
    end)

    it("shows numbers, booleans, nil and the null sentinel", function()
      assert.are.equal("42", fmt(42))
      assert.are.equal("1.5", fmt(1.5))
      assert.are.equal("2.0", fmt(2.0))
      assert.are.equal("true", fmt(true))
      assert.are.equal("nil", fmt(nil))
      assert.are.equal("null", fmt(json.null))
      assert.are.equal("null", fmt(require("cjson").null))
      assert.are.equal("{ a = null }", fmt(assert(json.decode('{"a": null}'))))
    end)

    it("names where a function was defined", function()
      assert.are.equal("<function: builtin>", fmt(print))
      local line = debug.getinfo(1, "l").currentline + 1
      local f = function() end
      assert.are.equal(string.format("<function tests/unit/pretty_spec.lua:%d>", line), fmt(f))
      assert.matches("^<file %(0x%x+%)>$", fmt(io.stdout))
    end)
  end)

  describe("tables", function()
    it("lists the sequence first, then keys sorted, quoting non-identifiers", function()
      assert.are.equal('{ "a", "b", [4] = "d", ["end"] = 1, x = 2, ["y z"] = 3 }',
        fmt { "a", "b", [4] = "d", x = 2, ["y z"] = 3, ["end"] = 1 })
      assert.are.equal("{}", fmt {})
      assert.are.equal("{ [1.5] = 1, [true] = 2 }", fmt { [true] = 2, [1.5] = 1 })
    end)

    it("indents nested tables, one item per line", function()
      local t = { name = "cp-1", net = { ip = "10.0.0.2", tags = { "a", "b" } }, cores = 2 }
      assert.are.equal(table.concat({
        "{",
        "  cores = 2,",
        '  name = "cp-1",',
        "  net = {",
        '    ip = "10.0.0.2",',
        '    tags = { "a", "b" }',
        "  }",
        "}",
      }, "\n"), fmt(t))
      assert.are.equal(table.concat({
        "{",
        "    a = {",
        "        b = {...}",
        "    }",
        "}",
      }, "\n"), fmt({ a = { b = { c = 1 } } }, { indent = 4, depth = 2 }))
    end)

    it("keeps lists of small lists on one line and breaks lines that do not fit", function()
      assert.are.equal("{ { 1, 2 }, { 3, 4 } }", fmt { { 1, 2 }, { 3, 4 } })
      local long = {}
      for i = 1, 30 do long[i] = i * 1000 end
      local out = fmt(long, { width = 40 })
      assert.are.equal(32, #lines_of(out))
      assert.are.equal("  1000,", lines_of(out)[2])
    end)

    it("shows cycles as <cycle> and repeats shared tables", function()
      local t = { name = "loop" }
      t.self = t
      assert.are.equal('{\n  name = "loop",\n  self = <cycle>\n}', fmt(t))
      local shared = { 1 }
      local text = fmt { a = shared, b = shared }
      assert.are.equal("{\n  a = { 1 },\n  b = { 1 }\n}", text)
    end)

    it("stops at the depth limit", function()
      local deep = { a = { b = { c = { d = 1 } } } }
      assert.are.equal("{\n  a = {\n    b = {...}\n  }\n}", fmt(deep, { depth = 2 }))
      assert.are.equal("{...}", fmt(deep, { depth = 0 }))
      assert.matches("d = 1", fmt(deep))
    end)

    it("prefixes objects with their type name, but not JSON arrays", function()
      local obj = setmetatable({ code = "EAPI" }, { __name = "tlr.Error" })
      assert.are.equal('tlr.Error { code = "EAPI" }', fmt(obj))
      assert.are.equal("{ 1, 2 }", fmt(assert(json.decode("[1, 2]"))))
    end)
  end)

  describe("lists of records", function()
    local resources = {
      { id = "qemu/100", type = "qemu", vmid = 100, name = "cp-1", node = "pve1",
        status = "running", maxmem = 4294967296 },
      { id = "node/pve1", type = "node", node = "pve1", status = "online", maxmem = 68719476736 },
      { id = "storage/pve1/local", type = "storage", node = "pve1", status = "available",
        storage = "local" },
    }

    it("prints aligned columns, id and name first, numbers right-aligned", function()
      assert.are.equal(table.concat({
        "id                  name  vmid  node  status     type          maxmem  storage",
        "------------------  ----  ----  ----  ---------  -------  -----------  -------",
        "qemu/100            cp-1   100  pve1  running    qemu      4294967296",
        "node/pve1                       pve1  online     node     68719476736",
        "storage/pve1/local              pve1  available  storage               local",
      }, "\n"), fmt(resources, { width = 100 }))
    end)

    it("shows null cells and cuts lines to the width", function()
      local rows = {
        { id = "a", note = json.null, text = string.rep("x", 200) },
        { id = "b", note = "ok", text = "short" },
      }
      local out = fmt(rows, { width = 50 })
      local lines = lines_of(out)
      assert.are.equal(4, #lines)
      assert.matches("^a   null  xxxx+…$", lines[3])
      for _, line in ipairs(lines) do assert.is_true(utf8.len(line) <= 50, line) end
      assert.are.equal("b   ok    short", lines[4])
    end)

    it("falls back to nested tables for rows that are not records", function()
      local nested = { { id = "a", spec = { cpu = 1 } }, { id = "b", spec = { cpu = 2 } } }
      assert.are.equal("{", lines_of(fmt(nested))[1])
      local unlike = { { a = 1 }, { b = 2 }, { c = 3 } }
      assert.are.equal("{ { a = 1 }, { b = 2 }, { c = 3 } }", fmt(unlike))
      assert.are.equal('{ { id = "only" } }', fmt { { id = "only" } })
      local rows = { { id = "a", n = 1 }, { id = "b", n = 2 } }
      assert.are.equal("id  n", lines_of(fmt(rows))[1])
      local plain = fmt(rows, { columns = false })
      assert.are.equal('{ { id = "a", n = 1 }, { id = "b", n = 2 } }', plain)
      local decoded = assert(json.decode('[{"id":"a","n":1},{"id":"b","n":2}]'))
      assert.are.equal("id  n", lines_of(fmt(decoded))[1])
    end)
  end)

  describe("API", function()
    it("rejects unknown and mistyped options", function()
      assert.has_error(function() pretty.format(1, { colour = true }) end)
      assert.has_error(function() pretty.format(1, { depth = "deep" }) end)
      assert.has_error(function() pretty.format(1, { depth = -1 }) end)
    end)

    it("prints like print: tab-separated, or one value per line", function()
      local f = assert(io.tmpfile())
      local saved = io.stdout
      io.stdout = f
      local ok, err = pcall(function()
        pretty.print(1, "a", { 2 })
        pretty.print({ a = { b = 1 } }, 3)
      end)
      io.stdout = saved
      assert(ok, err)
      f:seek("set")
      assert.are.equal('1\t"a"\t{ 2 }\n{\n  a = { b = 1 }\n}\n3\n', f:read("a"))
    end)
  end)
end)
