-- JSON decode (cjson + the native pass) and the native encoder (lua/tlr/json.lua).
local json = require "tlr.json"
local cjson = require "cjson"

-- Runs python3 on `input` (a string) and returns its stdout.
local function python(code, input)
  local inpath = os.tmpname()
  local f = assert(io.open(inpath, "wb"))
  f:write(input)
  f:close()
  local p = assert(io.popen("python3 -c '" .. code .. "' < " .. inpath, "r"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(inpath)
  assert(ok, "python3 failed")
  return out
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

describe("tlr.json", function()
  describe("numbers", function()
    it("decodes integral numbers as Lua integers", function()
      local v = assert(json.decode('[0, -7, 9007199254740992, -9007199254740992, 42.0, 1e3]'))
      assert.are.same({ 0, -7, 9007199254740992, -9007199254740992, 42, 1000 }, { table.unpack(v) })
      for i = 1, #v do assert.are.equal("integer", math.type(v[i])) end
      assert.are.equal("integer", math.type(json.decode("12")))
      assert.are.equal("integer", math.type(json.decode('{"a":{"b":[3]}}').a.b[1]))
    end)

    it("keeps fractions and integers beyond 2^53 as floats", function()
      local v = assert(json.decode('[2.5, 1e20, -18014398509481984, 0.1]'))
      assert.are.equal("float", math.type(v[1]))
      assert.are.equal("float", math.type(v[2]))
      assert.are.equal("float", math.type(v[3]))
      assert.are.equal(0.1, v[4])
    end)

    it("encodes integers exactly, where cjson rounds to 14 digits", function()
      assert.are.equal("1234567890123456", json.encode(1234567890123456))
      assert.are.not_equal("1234567890123456", cjson.encode(1234567890123456))
      assert.are.equal("9223372036854775807", json.encode(math.maxinteger))
      assert.are.equal("-9223372036854775808", json.encode(math.mininteger))
      assert.are.equal("[9007199254740992,-7,0]", json.encode({ 2 ^ 53 // 1, -7, 0 }))
      assert.are.equal("9007199254740992", json.encode(2.0 ^ 53))
    end)

    it("round-trips integers 2^53, -7 and 0 through encode and decode", function()
      for _, n in ipairs { 9007199254740992, -9007199254740992, -7, 0, 1, 65535 } do
        local back = json.decode(json.encode({ n = n })).n
        assert.are.equal(n, back)
        assert.are.equal("integer", math.type(back))
      end
    end)

    it("writes floats in the shortest form that reads back equal", function()
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("0.3333333333333333", json.encode(1 / 3))
      assert.are.equal("1e+300", json.encode(1e300))
      assert.are.equal("2.5", json.encode(2.5))
      assert.are.equal("5e-324", json.encode(4.9406564584124654e-324))
      assert.are.equal("1.7976931348623157e+308", json.encode(1.7976931348623157e308))
      assert.are.equal(0.1, json.decode(json.encode(0.1)))
      assert.are.equal(1 / 3, json.decode(json.encode(1 / 3)))
      assert.are.equal(1e300, json.decode(json.encode(1e300)))
    end)

    it("round-trips 2000 pseudo-random doubles bit for bit", function()
      local seed = 12345
      local function rnd()
        seed = (seed * 6364136223846793005 + 1442695040888963407)
        return seed
      end
      for _ = 1, 2000 do
        local x = string.unpack("<d", string.pack("<i8", rnd()))
        if x == x and x ~= math.huge and x ~= -math.huge then
          local back = json.decode(json.encode({ x }))[1]
          assert.are.equal(string.pack("<d", x == 0 and 0.0 or x), string.pack("<d", back + 0.0),
            "lost precision on " .. string.format("%a", x))
        end
      end
    end)

    it("refuses NaN and infinities, naming the path", function()
      local s, msg, code = json.encode({ a = { 0 / 0 } })
      assert.is_nil(s)
      assert.are.equal("EINVAL", code)
      assert.matches("NaN at %$%.a%[1%]", msg)
      s, msg = json.encode({ x = math.huge })
      assert.is_nil(s)
      assert.matches("infinity at %$%.x", msg)
    end)
  end)

  describe("strings", function()
    it("decodes \\u escapes, surrogate pairs included, to UTF-8", function()
      assert.are.equal("é😀\0A", json.decode('"\\u00e9\\ud83d\\ude00\\u0000\\u0041"'))
    end)

    it("escapes quotes, backslashes and control characters", function()
      assert.are.equal([["a\"b\\c\nd\te\r\b\f\u0001\u001f/]] .. "\127" .. [["]],
        json.encode('a"b\\c\nd\te\r\b\f\1\31/\127'))
      local s = "\0\1\2 line\nnext \"q\" \\"
      assert.are.equal(s, json.decode(json.encode(s)))
    end)

    it("passes valid UTF-8 through unescaped", function()
      local s = "é ü 中文 😀 \u{10FFFF}"
      assert.are.equal('"' .. s .. '"', json.encode(s))
      assert.are.equal(s, json.decode(json.encode(s)))
    end)

    it("refuses invalid UTF-8 in values and keys with EINVAL", function()
      local bad = {
        "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "ok\xe2\x82", "\x80", "\xc3", "\xf5\x80\x80\x80",
      }
      for _, b in ipairs(bad) do
        local s, msg, code = json.encode({ k = b })
        local hex = b:gsub(".", function(c) return string.format("\\x%02x", c:byte()) end)
        assert.is_nil(s, "accepted " .. hex)
        assert.are.equal("EINVAL", code)
        assert.matches("invalid UTF%-8 in string", msg)
      end
      local s, msg, code = json.encode({ ["a\xffb"] = 1 })
      assert.is_nil(s)
      assert.are.equal("EINVAL", code)
      assert.matches("invalid UTF%-8 in key", msg)
    end)
  end)

  describe("null", function()
    it("has one sentinel shared with cjson", function()
      assert.are.equal(cjson.null, json.null)
      assert.are.equal("userdata", type(json.null))
    end)

    it("decodes null to it and encodes it back", function()
      local v = assert(json.decode('{"a":null,"b":[1,null,3]}'))
      assert.are.equal(json.null, v.a)
      assert.are.equal(json.null, v.b[2])
      assert.are.equal(3, #v.b)
      assert.are.equal(json.null, json.decode("null"))
      assert.are.equal('{"a":null,"b":[1,null,3]}', json.encode(v))
      assert.are.equal("null", json.encode(nil))
    end)
  end)

  describe("arrays and objects", function()
    it("marks every decoded non-empty array with json.array_mt", function()
      local v = assert(json.decode('{"a":[1,[2,[3]]],"o":{"k":"v"},"e":[]}'))
      assert.are.equal(json.array_mt, getmetatable(v.a))
      assert.are.equal(json.array_mt, getmetatable(v.a[2]))
      assert.are.equal(json.array_mt, getmetatable(v.a[2][2]))
      assert.is_nil(getmetatable(v.o))
      assert.is_nil(getmetatable(v))
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.o))
    end)

    it("registers the marker as the metatable 'tlr.json.array'", function()
      assert.are.equal(debug.getregistry()["tlr.json.array"], json.array_mt)
    end)

    it("cannot tell an empty decoded array from {}: mark it with json.array", function()
      local v = assert(json.decode('{"items":[]}'))
      assert.are.equal('{"items":{}}', json.encode(v))
      json.array(v.items)
      assert.are.equal('{"items":[]}', json.encode(v))
      assert.are.equal("[]", json.encode(json.array()))
    end)

    it("encodes keys 1..n as an array and string keys as an object", function()
      assert.are.equal('[1,"x",true,false]', json.encode({ 1, "x", true, false }))
      assert.are.equal('{"k":{}}', json.encode({ k = {} }))
      assert.are.equal('{"1":"one"}', json.encode({ ["1"] = "one" }))
    end)

    it("refuses sparse, mixed and oddly keyed tables with the path", function()
      local cases = {
        { { spec = { list = { 1, nil, 3 } } },
          "sparse array %(2 values, largest index 3%) at %$%.spec%.list" },
        { { spec = { 1, x = 2 } }, "mixes string keys and indices at %$%.spec" },
        { { [true] = 1 }, "key of type boolean" },
        { { [1.5] = 1 }, "key of type non%-index number" },
        { { [0] = "zero" }, "key of type non%-index number" },
        { json.array({ a = 1 }), "array has string keys at %$" },
      }
      for _, c in ipairs(cases) do
        local s, msg, code = json.encode(c[1])
        assert.is_nil(s)
        assert.are.equal("EINVAL", code)
        assert.matches(c[2], msg)
      end
    end)

    it("refuses functions, userdata and threads, naming the path", function()
      local s, msg, code = json.encode({ spec = { x = print } })
      assert.is_nil(s)
      assert.are.equal("EINVAL", code)
      assert.are.equal("json: cannot encode a function at $.spec.x", msg)
      s, msg = json.encode({ items = { 1, io.stdout } })
      assert.are.equal("json: cannot encode a userdata at $.items[2]", msg)
      s, msg = json.encode({ ["odd key"] = { coroutine.create(print) } })
      assert.are.equal('json: cannot encode a thread at $["odd key"][1]', msg)
    end)

    it("detects cycles instead of recursing forever", function()
      local t = { name = "loop" }
      t.spec = { back = t }
      local s, msg, code = json.encode(t)
      assert.is_nil(s)
      assert.are.equal("EINVAL", code)
      assert.matches("cycle.* at %$%.spec%.back", msg)
      local shared = { 1 }
      assert.are.equal('{"a":[1],"b":[1]}', json.encode({ a = shared, b = shared }))
    end)

    it("refuses a json.array call on a table with another metatable", function()
      assert.has_error(function() json.array(setmetatable({}, {})) end)
      assert.has_error(function() json.array("x") end)
    end)
  end)

  describe("output", function()
    it("sorts keys in byte order by default, at every level", function()
      local v = { b = 1, a = 2, B = 3, c = { z = 1, y = { d = 1, ["ä"] = 2, e = 3 } } }
      assert.are.equal('{"B":3,"a":2,"b":1,"c":{"y":{"d":1,"e":3,"ä":2},"z":1}}', json.encode(v))
    end)

    it("is deterministic: equal tables built in different orders encode the same", function()
      local a, b = {}, {}
      for i = 1, 200 do a["k" .. i] = i end
      for i = 200, 1, -1 do b["k" .. i] = i end
      assert.are.equal(json.encode(a), json.encode(b))
    end)

    it("writes unsorted output that still decodes the same with sort_keys = false", function()
      local v = { b = 1, a = { 1, 2 }, c = "x" }
      local s = assert(json.encode(v, { sort_keys = false }))
      assert.is_true(deep_equal(v, json.decode(s)))
    end)

    it("pretty-prints with indent", function()
      local v = { b = { 1, { x = json.null } }, a = {}, c = json.array() }
      local want = '{\n  "a": {},\n  "b": [\n    1,\n    {\n      "x": null\n    }\n  ],\n'
        .. '  "c": []\n}'
      assert.are.equal(want, json.encode(v, { indent = 2 }))
      assert.are.equal('[\n    1\n]', json.encode({ 1 }, { indent = 4 }))
    end)

    it("rejects unknown options and wrong option types", function()
      assert.has_error(function() json.encode({}, { pretty = true }) end,
        "bad argument to 'json.encode' (unknown option 'pretty')")
      assert.has_error(function() json.encode({}, { indent = "2" }) end)
      assert.has_error(function() json.encode({}, { indent = 99 }) end)
      assert.has_error(function() json.decode(42) end)
    end)
  end)

  describe("bad input", function()
    it("returns nil, 'json: <cjson message>', EINVAL and never raises", function()
      local bad = { "", "{", "[1,]", '{"a" 1}', "[1] 2", "nan", "[NaN]", "[Infinity]", "[0x10]",
        '"\\ud800"', "tru", '{"a":1,}' }
      for _, s in ipairs(bad) do
        local ok, v, msg, code = pcall(json.decode, s)
        assert.is_true(ok, "raised on " .. s)
        assert.is_nil(v, "accepted " .. s)
        assert.matches("^json: ", msg)
        assert.are.equal("EINVAL", code)
      end
      local _, msg = json.decode("[1,")
      assert.are.equal("json: Expected value but found T_END at character 4", msg)
    end)
  end)

  describe("big documents", function()
    it("round-trips a Proxmox-sized reply (bench/json_gen.lua)", function()
      local gen = dofile("bench/json_gen.lua")
      local text = gen(300 * 1024)
      assert.is_true(#text >= 300 * 1024 - 16 and #text < 300 * 1024 + 2048)
      assert.are.equal(text, gen(300 * 1024))
      local v = assert(json.decode(text))
      assert.is_true(#v.data > 200)
      assert.are.equal("integer", math.type(v.data[60].vmid))
      assert.are.equal("integer", math.type(v.data[60].maxmem))
      local again = assert(json.encode(v))
      local v2 = assert(json.decode(again))
      assert.is_true(deep_equal(v, v2))
      assert.are.equal(again, json.encode(v2))
    end)

    it("handles deep nesting and refuses beyond 1000 levels", function()
      local deep = {}
      local cur = deep
      for _ = 1, 900 do
        cur.x = {}
        cur = cur.x
      end
      local s = assert(json.encode(deep))
      assert.are.equal(900 * 6 + 2, #s)
      assert.is_true(deep_equal(deep, assert(json.decode(s))))
      local arr = json.array()
      cur = arr
      for _ = 1, 1001 do
        local inner = json.array()
        cur[1] = inner
        cur = inner
      end
      local r, msg, code = json.encode(arr)
      assert.is_nil(r)
      assert.are.equal("EINVAL", code)
      assert.matches("nesting deeper than 1000", msg)
    end)
  end)

  describe("against python3's json", function()
    it("writes byte for byte what json.dumps(sort_keys=True) writes", function()
      local v = {
        name = "node-ü",
        tags = { "a", "b\n\"c\"", "\1" },
        num = { 0, -7, 9007199254740992, 0.1, 1 / 3, 2.5e-8 },
        nested = { z = json.null, a = { true, false }, ["中"] = "文", ["A"] = {} },
      }
      local ours = assert(json.encode(v))
      local theirs = python('import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), '
        .. 'sort_keys=True, separators=(",", ":"), ensure_ascii=False))', ours)
      assert.are.equal(theirs, ours)
    end)

    it("decodes what python3 writes with \\u escapes", function()
      local text = python('import json; print(json.dumps('
        .. '{"k": "é\\u00e9\\U0001F600\\t", "n": [1, 2.5, None]}, ensure_ascii=True))', "")
      assert.matches("\\u", text, 1, true)
      local v = assert(json.decode(text))
      assert.are.equal("éé😀\t", v.k)
      assert.are.equal(json.null, v.n[3])
      assert.are.equal("integer", math.type(v.n[1]))
    end)
  end)
end)
