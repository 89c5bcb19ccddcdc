-- tlr.protobuf (modules/protobuf.c, modules/protobuf_encode.c, lua/tlr/protobuf.lua)
-- and the Talos descriptors (lua/tlr/talos/proto.lua).  The codec is checked
-- byte for byte against protobufjs: tests/servers/protobuf_codec.js encodes
-- the same values from the repo's .proto files, and both decoders must agree
-- on the bytes.  Hand-written vectors cover what protobufjs cannot produce.
local H = require "helper"
local pb = require "tlr.protobuf"
local json = require "tlr.json"
local crypto = require "tlr.crypto"
local talos = require "tlr.talos.proto"

local TEST_PROTO = { "tests/servers/protobuf_test.proto" }
local TALOS_PROTO = {
  "tests/servers/talos/rpc_status.proto", "tests/servers/talos/common.proto",
  "tests/servers/talos/machine.proto", "tests/servers/talos/storage.proto",
  "tests/servers/talos/cosi.proto",
}

-- The messages of tests/servers/protobuf_test.proto.
local DECLS = {
  { enum = "tlrtest.Color", "RED", "GREEN", "BLUE", values = { BLAU = 2, NEGATIVE = -3 } },
  { message = "tlrtest.Scalars",
    { 1, "f_double", "double" }, { 2, "f_float", "float" }, { 3, "f_int32", "int32" },
    { 4, "f_int64", "int64" }, { 5, "f_uint32", "uint32" }, { 6, "f_uint64", "uint64" },
    { 7, "f_sint32", "sint32" }, { 8, "f_sint64", "sint64" }, { 9, "f_fixed32", "fixed32" },
    { 10, "f_fixed64", "fixed64" }, { 11, "f_sfixed32", "sfixed32" },
    { 12, "f_sfixed64", "sfixed64" }, { 13, "f_bool", "bool" }, { 14, "f_string", "string" },
    { 15, "f_bytes", "bytes" }, { 16, "f_enum", "Color" },
  },
  { message = "tlrtest.Repeated",
    { 1, "r_int32", "int32", repeated = true }, { 2, "r_sint64", "sint64", repeated = true },
    { 3, "r_double", "double", repeated = true }, { 4, "r_fixed32", "fixed32", repeated = true },
    { 5, "r_bool", "bool", repeated = true }, { 6, "r_enum", "Color", repeated = true },
    { 7, "r_string", "string", repeated = true }, { 8, "r_bytes", "bytes", repeated = true },
    { 9, "r_msg", "Scalars", repeated = true }, { 10, "r_uint64", "uint64", repeated = true },
    { 11, "r_float", "float", repeated = true }, { 12, "r_sfixed64", "sfixed64", repeated = true },
  },
  { message = "tlrtest.Unpacked",
    { 1, "r_int32", "int32", repeated = true, packed = false },
    { 2, "r_sint64", "sint64", repeated = true, packed = false },
    { 3, "r_double", "double", repeated = true, packed = false },
    { 4, "r_fixed32", "fixed32", repeated = true, packed = false },
    { 5, "r_bool", "bool", repeated = true, packed = false },
    { 6, "r_enum", "Color", repeated = true, packed = false },
    { 10, "r_uint64", "uint64", repeated = true, packed = false },
    { 11, "r_float", "float", repeated = true, packed = false },
    { 12, "r_sfixed64", "sfixed64", repeated = true, packed = false },
  },
  { message = "tlrtest.Maps",
    { 1, "ss", "map<string, string>" }, { 2, "is", "map<int32, string>" },
    { 3, "sm", "map<string, Scalars>" }, { 4, "bi", "map<bool, int64>" },
    { 5, "ue", "map<uint64, Color>" }, { 6, "sb", "map<sint32,bytes>" },
  },
  { message = "tlrtest.Nested",
    { 1, "name", "string" }, { 2, "child", "Nested" }, { 3, "scalars", "Scalars" },
    { 4, "ttl", "google.protobuf.Duration" }, { 5, "at", "google.protobuf.Timestamp" },
    { 6, "maybe", "int32", presence = true }, { 7, "maybe_enum", "Color", presence = true },
    { 8, "maybe_str", "string", presence = true }, { 9, "children", "Nested", repeated = true },
  },
  { message = "tlrtest.Small", { 3, "f_int32", "int32" }, { 14, "f_string", "string" } },
}

local S = pb.schema(DECLS)

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
  h = h:gsub("%s", "")
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Unsigned decimal of a 64-bit two's complement integer.
local function u64(v)
  if v >= 0 then return tostring(v) end
  local q = (v >> 1) // 5
  return tostring(q) .. tostring(v - q * 10)
end

local I64 = { int64 = true, sint64 = true, sfixed64 = true }
local U64 = { uint64 = true, fixed64 = true }

-- A Lua message value in the JSON shape protobufjs's fromObject takes and
-- toObject gives: 64-bit integers as decimal strings, bytes as base64, map
-- keys as strings, lists as JSON arrays.
local function to_js(schema, tname, value)
  local decl = assert(schema:type(tname), tname)
  local out = {}
  for _, f in ipairs(decl.fields) do
    local sub = schema:type(f.type)
    local function conv(x)
      if sub and sub.kind == "message" then return to_js(schema, f.type, x) end
      if f.type == "bytes" then return crypto.base64_encode(x) end
      if U64[f.type] then return u64(x) end
      if I64[f.type] then return tostring(x) end
      return x
    end
    local v = value[f.name]
    if v ~= nil then
      if f.map then
        local m = {}
        for k, x in pairs(v) do
          m[U64[f.key] and u64(k) or tostring(k)] = conv(x)
        end
        out[f.name] = m
      elseif f.repeated then
        local l = json.array()
        for i, x in ipairs(v) do l[i] = conv(x) end
        out[f.name] = l
      else
        out[f.name] = conv(v)
      end
    end
  end
  return out
end

local function deep_equal(a, b, path)
  path = path or "$"
  if type(a) == "table" and type(b) == "table" then
    for k, v in pairs(a) do
      local ok, where = deep_equal(v, b[k], path .. "." .. tostring(k))
      if not ok then return false, where end
    end
    for k in pairs(b) do
      if a[k] == nil then return false, path .. "." .. tostring(k) .. " (missing on the left)" end
    end
    return true
  end
  if a == b then return true end
  return false, string.format("%s: %s ~= %s", path, tostring(a), tostring(b))
end

local function assert_same(expected, actual)
  local ok, where = deep_equal(expected, actual)
  assert(ok, where)
end

-- Runs protobufjs over a list of cases (see tests/servers/protobuf_codec.js).
local function protobufjs(protos, cases)
  local dir = H.tmpdir()
  H.write(dir .. "/cases.json", assert(json.encode(json.array(cases))))
  local out, status = H.capture("node tests/servers/protobuf_codec.js " .. table.concat(protos, " ")
    .. " < " .. dir .. "/cases.json")
  os.execute("rm -rf " .. dir)
  assert(status == 0, out)
  local last = out:match("([^\n]+)\n?$")
  return assert(json.decode(last), out)
end

-- Values tlr encodes; protobufjs encodes the same and each decodes the other's bytes.
local CASES = {
  { "every scalar type", "tlrtest.Scalars", {
    f_double = 1.5, f_float = -2.25, f_int32 = 123456, f_int64 = -9007199254740993,
    f_uint32 = 4294967295, f_uint64 = -1, f_sint32 = -2147483648, f_sint64 = math.mininteger,
    f_fixed32 = 4294967295, f_fixed64 = math.mininteger, f_sfixed32 = -5,
    f_sfixed64 = -(1 << 62), f_bool = true, f_string = "héllo ✓", f_bytes = "\0\1\255\0",
    f_enum = "BLUE" } },
  { "negative int32 as a 10-byte varint", "tlrtest.Scalars", { f_int32 = -1 } },
  { "int32 limits", "tlrtest.Scalars", { f_int32 = -2147483648, f_uint32 = 2147483648 } },
  { "int64 limits", "tlrtest.Scalars", { f_int64 = math.maxinteger, f_sfixed64 = math.mininteger } },
  { "sint32 zigzag", "tlrtest.Scalars", { f_sint32 = -1, f_sint64 = -2 } },
  { "sint zigzag positive", "tlrtest.Scalars", { f_sint32 = 2147483647, f_sint64 = math.maxinteger } },
  { "zero values left out", "tlrtest.Scalars", {
    f_double = 0.0, f_float = 0.0, f_int32 = 0, f_int64 = 0, f_uint64 = 0, f_sint32 = 0,
    f_fixed32 = 0, f_fixed64 = 0, f_bool = false, f_string = "", f_bytes = "", f_enum = "RED" } },
  { "negative zero double kept", "tlrtest.Scalars", { f_double = -0.0 } },
  { "enum given as a number", "tlrtest.Scalars", { f_enum = 1 } },
  { "unknown enum number", "tlrtest.Scalars", { f_enum = 7 } },
  { "negative enum", "tlrtest.Scalars", { f_enum = "NEGATIVE" } },
  { "float rounding", "tlrtest.Scalars", { f_float = 0.1, f_double = 0.1 } },
  { "large values", "tlrtest.Scalars", { f_double = 1e300, f_float = 3.4028234663852886e38,
    f_uint64 = 1 << 63, f_fixed32 = 1 } },
  { "strings with 2- and 3-byte lengths", "tlrtest.Scalars", {
    f_string = string.rep("s", 200), f_bytes = string.rep("\0\255", 10000) } },
  { "repeated, packed", "tlrtest.Repeated", {
    r_int32 = { 1, -1, 0, 2147483647 }, r_sint64 = { -1, 1, math.mininteger },
    r_double = { 0.5, -0.0, 1e300 }, r_fixed32 = { 0, 1 }, r_bool = { true, false, true },
    r_enum = { "GREEN", "RED", 9, "NEGATIVE" }, r_string = { "a", "", "ccc" },
    r_bytes = { "\0", "" }, r_msg = { { f_int32 = 1 }, {}, { f_string = "x" } },
    r_uint64 = { -1, 0, 1 }, r_float = { 1.5 }, r_sfixed64 = { -1 } } },
  { "empty lists left out", "tlrtest.Repeated", { r_int32 = {}, r_msg = {}, r_string = {} } },
  { "long packed list", "tlrtest.Repeated", { r_int32 = (function()
    local l = {}
    for i = 1, 1000 do l[i] = i * 1000 - 500000 end
    return l
  end)() } },
  { "unpacked", "tlrtest.Unpacked", {
    r_int32 = { 1, -1, 0 }, r_sint64 = { -5 }, r_double = { 2.5 }, r_fixed32 = { 7 },
    r_bool = { false, true }, r_enum = { "BLUE", 0 }, r_uint64 = { -1 }, r_float = { -1.5 },
    r_sfixed64 = { 3 } } },
  { "maps", "tlrtest.Maps", {
    ss = { b = "2", a = "1", [""] = "empty", ["ä"] = "umlaut", B = "upper" },
    is = { [1] = "one", [300] = "big", [0] = "zero" },
    sm = { k = { f_int32 = 1 }, e = {} }, bi = { [true] = 5 },
    ue = { [1] = "BLUE", [7] = "RED", [300] = 5 }, sb = { [0] = "\0\1", [5] = "" } } },
  { "nested messages", "tlrtest.Nested", {
    name = "root", child = { name = "kid", child = { child = {} } },
    scalars = { f_bool = true }, ttl = { seconds = 5, nanos = 500 },
    at = { seconds = 1700000000 }, children = { { name = "a" }, {} } } },
  { "presence: zero values are sent", "tlrtest.Nested", {
    maybe = 0, maybe_enum = "RED", maybe_str = "" } },
  { "nested lengths above 127 bytes at several levels", "tlrtest.Nested", {
    child = { child = { child = { name = string.rep("n", 20000) }, name = string.rep("m", 150) } } } },
  { "an empty message", "tlrtest.Nested", {} },
}

local function case(name)
  for _, c in ipairs(CASES) do
    if c[1] == name then return c[3] end
  end
  error("no case " .. name)
end

describe("tlr.protobuf", function()
  local results

  -- one protobufjs run for all CASES: its encoding, and its decoding of that encoding
  local function reference()
    if results then return results end
    local req = {}
    for i, c in ipairs(CASES) do
      req[i] = { op = "encode", type = c[2], value = to_js(S, c[2], c[3]) }
    end
    local enc = protobufjs(TEST_PROTO, req)
    local dec = {}
    for i, c in ipairs(CASES) do
      dec[i] = { op = "decode", type = c[2], hex = enc[i].hex or "" }
    end
    dec = protobufjs(TEST_PROTO, dec)
    results = {}
    for i = 1, #CASES do results[i] = { hex = enc[i].hex, error = enc[i].error, value = dec[i].value } end
    return results
  end

  describe("against protobufjs", function()
    for i, c in ipairs(CASES) do
      it("encodes and decodes " .. c[1] .. " as protobufjs does", function()
        local js = reference()[i]
        assert.is_nil(js.error)
        local mine = S:encode(c[2], c[3])
        assert.are.equal(js.hex, hex(mine))
        local back = assert(S:decode(c[2], unhex(js.hex)))
        assert_same(js.value, to_js(S, c[2], back))
      end)
    end

    it("decodes unpacked repeated scalars into a packed field, and packed into unpacked", function()
      local value = {
        r_int32 = { 1, -1, 0 }, r_sint64 = { -5, 6 }, r_double = { 2.5 }, r_fixed32 = { 7, 0 },
        r_bool = { false, true }, r_enum = { "BLUE", 0, 42 }, r_uint64 = { -1 },
        r_float = { -1.5 }, r_sfixed64 = { 3 },
      }
      local unpacked = S:encode("tlrtest.Unpacked", value)
      local packed = S:encode("tlrtest.Repeated", value)
      assert.are_not.equal(hex(unpacked), hex(packed))
      local js = protobufjs(TEST_PROTO, {
        { op = "decode", type = "tlrtest.Repeated", hex = hex(unpacked) },
        { op = "decode", type = "tlrtest.Unpacked", hex = hex(packed) },
      })
      assert_same(js[1].value, to_js(S, "tlrtest.Repeated", assert(S:decode("tlrtest.Repeated", unpacked))))
      assert_same(js[2].value, to_js(S, "tlrtest.Unpacked", assert(S:decode("tlrtest.Unpacked", packed))))
      assert.are.same({ "BLUE", "RED", 42 }, S:decode("tlrtest.Repeated", unpacked).r_enum)
    end)

    it("skips unknown fields of every wire type", function()
      local bytes = S:encode("tlrtest.Scalars", case("every scalar type"))
      local small = assert(S:decode("tlrtest.Small", bytes))
      assert.are.same({ f_int32 = 123456, f_string = "héllo ✓" }, small)
      local js = protobufjs(TEST_PROTO, { { op = "decode", type = "tlrtest.Small", hex = hex(bytes) } })
      assert_same(js[1].value, to_js(S, "tlrtest.Small", small))
    end)

    it("agrees on maps with negative, false and 64-bit keys (decoding tlr's bytes)", function()
      local value = { is = { [-1] = "minus", [2] = "two" }, bi = { [false] = -1, [true] = 1 },
        ue = { [-1] = "GREEN", [math.mininteger] = "BLUE" }, sb = { [-7] = "x", [7] = "y" } }
      local bytes = S:encode("tlrtest.Maps", value)
      local js = protobufjs(TEST_PROTO, { { op = "decode", type = "tlrtest.Maps", hex = hex(bytes) } })
      local back = assert(S:decode("tlrtest.Maps", bytes))
      assert_same(js[1].value, to_js(S, "tlrtest.Maps", back))
      for k, v in pairs(value) do assert_same(v, back[k]) end
    end)
  end)

  describe("encoding", function()
    it("sends ApplyConfiguration mode AUTO as the reference shows: 0a <len> <yaml> 20 01", function()
      local T = talos.schema
      local yaml = "version: v1alpha1\n"
      assert.are.equal("0a" .. string.format("%02x", #yaml) .. hex(yaml) .. "2001",
        hex(T:encode("machine.ApplyConfigurationRequest", { data = yaml, mode = "AUTO" })))
      -- with presence even the zero value REBOOT is written
      assert.are.equal("0a01782000", hex(T:encode("machine.ApplyConfigurationRequest",
        { data = "x", mode = "REBOOT" })))
      assert.are.equal("0a0178", hex(T:encode("machine.ApplyConfigurationRequest", { data = "x" })))
    end)

    it("writes known vectors", function()
      assert.are.equal("18ac02", hex(S:encode("tlrtest.Scalars", { f_int32 = 300 })))
      assert.are.equal("18ffffffffffffffffff01", hex(S:encode("tlrtest.Scalars", { f_int32 = -1 })))
      assert.are.equal("3801", hex(S:encode("tlrtest.Scalars", { f_sint32 = -1 })))
      assert.are.equal("3803", hex(S:encode("tlrtest.Scalars", { f_sint32 = -2 })))
      assert.are.equal("4dffffffff", hex(S:encode("tlrtest.Scalars", { f_fixed32 = 4294967295 })))
      assert.are.equal("150000c03f", hex(S:encode("tlrtest.Scalars", { f_float = 1.5 })))
      assert.are.equal("0a03010203", hex(S:encode("tlrtest.Repeated", { r_int32 = { 1, 2, 3 } })))
      assert.are.equal("080108020803", hex(S:encode("tlrtest.Unpacked", { r_int32 = { 1, 2, 3 } })))
      assert.are.equal("", hex(S:encode("google.protobuf.Empty", {})))
      assert.are.equal("8001fdffffffffffffffff01", hex(S:encode("tlrtest.Scalars", { f_enum = "NEGATIVE" })))
      assert.are.equal("1a021809", hex(S:encode("tlrtest.Nested", { scalars = { f_int32 = 9 } })))
      assert.are.equal("1a00", hex(S:encode("tlrtest.Nested", { scalars = {} })))
    end)

    it("encodes an enum alias as its number", function()
      assert.are.equal(hex(S:encode("tlrtest.Scalars", { f_enum = "BLUE" })),
        hex(S:encode("tlrtest.Scalars", { f_enum = "BLAU" })))
      assert.are.equal("BLUE", S:decode("tlrtest.Scalars", S:encode("tlrtest.Scalars",
        { f_enum = "BLAU" })).f_enum)
    end)

    it("accepts integral floats for integer fields", function()
      assert.are.equal(hex(S:encode("tlrtest.Scalars", { f_int32 = 3 })),
        hex(S:encode("tlrtest.Scalars", { f_int32 = 3.0 })))
    end)

    it("gives equal tables equal bytes (map keys sorted)", function()
      local a, b = { ss = {} }, { ss = {} }
      for i = 1, 50 do a.ss["k" .. i] = tostring(i) end
      for i = 50, 1, -1 do b.ss["k" .. i] = tostring(i) end
      assert.are.equal(S:encode("tlrtest.Maps", a), S:encode("tlrtest.Maps", b))
      local bytes = S:encode("tlrtest.Maps", { is = { [3] = "c", [-2] = "a", [1] = "b" } })
      assert.are.equal("120e08feffffffffffffffff01120161" .. "12050801120162" .. "12050803120163",
        hex(bytes))
    end)

    it("round-trips a 1 MB bytes field and 64-bit extremes", function()
      local big = crypto.random(1024 * 1024)
      local back = assert(S:decode("tlrtest.Scalars", S:encode("tlrtest.Scalars", {
        f_bytes = big, f_uint64 = -1, f_fixed64 = math.mininteger, f_int64 = math.mininteger })))
      assert.are.equal(big, back.f_bytes)
      assert.are.equal(-1, back.f_uint64) -- 2^64-1 as two's complement
      assert.are.equal("ffffffffffffffff", string.format("%x", back.f_uint64))
      assert.are.equal(math.mininteger, back.f_fixed64)
      assert.are.equal(math.mininteger, back.f_int64)
    end)

    it("raises on unknown fields, naming the path", function()
      local ok, err = pcall(S.encode, S, "tlrtest.Nested", { child = { children = { {}, { nme = "x" } } } })
      assert.is_false(ok)
      assert.matches("encode tlrtest.Nested.child.children[2]: unknown field 'nme'", err, 1, true)
      ok, err = pcall(S.encode, S, "tlrtest.Nested", { [1] = "x" })
      assert.is_false(ok)
      assert.matches("field names are strings", err)
    end)

    it("raises on values of the wrong type or range", function()
      local bad = {
        { "tlrtest.Scalars", { f_int32 = "1" }, "f_int32: int32 expected, got string" },
        { "tlrtest.Scalars", { f_int32 = 2147483648 }, "out of range for int32" },
        { "tlrtest.Scalars", { f_uint32 = -1 }, "out of range for uint32" },
        { "tlrtest.Scalars", { f_int64 = 1.5 }, "with a fraction" },
        { "tlrtest.Scalars", { f_bool = 1 }, "boolean expected" },
        { "tlrtest.Scalars", { f_string = 5 }, "string expected, got number" },
        { "tlrtest.Scalars", { f_double = "1" }, "number expected" },
        { "tlrtest.Scalars", { f_enum = "PURPLE" }, "unknown tlrtest.Color name 'PURPLE'" },
        { "tlrtest.Scalars", { f_enum = true }, "tlrtest.Color name or number expected" },
        { "tlrtest.Nested", { child = "x" }, "child: table expected" },
        { "tlrtest.Repeated", { r_int32 = 1 }, "r_int32: list expected" },
        { "tlrtest.Repeated", { r_int32 = { a = 1 } }, "list expected, got a table with keys" },
        { "tlrtest.Repeated", { r_string = { "a", 2 } }, "r_string[2]: string expected" },
        { "tlrtest.Maps", { ss = { a = 1 } }, "ss: string expected, got number" },
        { "tlrtest.Maps", { ss = { [1] = "a" } }, "map key: string expected" },
        { "tlrtest.Maps", { is = { x = "a" } }, "int32 expected, got string" },
      }
      for _, b in ipairs(bad) do
        local ok, err = pcall(S.encode, S, b[1], b[2])
        assert.is_false(ok)
        assert.matches(b[3], err, 1, true)
      end
      assert.has_error(function() S:encode("tlrtest.Nope", {}) end, "unknown message type 'tlrtest.Nope'")
      assert.has_error(function() S:encode("tlrtest.Scalars", "x") end)
    end)

    it("raises on a cycle instead of recursing forever", function()
      local t = { name = "loop" }
      t.child = t
      local ok, err = pcall(S.encode, S, "tlrtest.Nested", t)
      assert.is_false(ok)
      assert.matches("nested more than 100 levels", err)
    end)
  end)

  describe("decoding", function()
    it("fills proto3 defaults; absent messages and presence fields stay nil", function()
      local v = assert(S:decode("tlrtest.Nested", ""))
      assert.are.same({ name = "", children = {} }, v)
      local s = assert(S:decode("tlrtest.Scalars", ""))
      assert.are.equal(0, s.f_int64)
      assert.are.equal("integer", math.type(s.f_int64))
      assert.are.equal(0.0, s.f_double)
      assert.are.equal("float", math.type(s.f_double))
      assert.is_false(s.f_bool)
      assert.are.equal("", s.f_bytes)
      assert.are.equal("RED", s.f_enum)
      local r = assert(S:decode("tlrtest.Maps", ""))
      assert.are.same({ ss = {}, is = {}, sm = {}, bi = {}, ue = {}, sb = {} }, r)
    end)

    it("merges a repeated singular message field and keeps the last scalar", function()
      local a = S:encode("tlrtest.Nested", { name = "a", scalars = { f_int32 = 1, f_string = "x" } })
      local b = S:encode("tlrtest.Nested", { name = "b", scalars = { f_int32 = 2, f_bool = true } })
      local v = assert(S:decode("tlrtest.Nested", a .. b))
      assert.are.equal("b", v.name)
      assert.are.equal(2, v.scalars.f_int32)
      assert.are.equal("x", v.scalars.f_string)
      assert.is_true(v.scalars.f_bool)
    end)

    it("decodes a map entry with key or value missing as zero values", function()
      local v = assert(S:decode("tlrtest.Maps", unhex("0a00 0a03 0a0161 1a00 2a021001")))
      assert.are.same({ [""] = "", a = "" }, v.ss)
      assert.are.same({ [""] = S:decode("tlrtest.Scalars", "") }, v.sm)
      assert.are.same({ [0] = "GREEN" }, v.ue)
    end)

    it("skips unknown groups", function()
      -- field 20 as a group holding a varint and a nested group, then f_int32 = 3
      local v = assert(S:decode("tlrtest.Small", unhex("a301 0801 ab01 1002 ac01 a401 1803")))
      assert.are.same({ f_int32 = 3, f_string = "" }, v)
    end)

    it("returns nil, msg, EPROTO naming the message and field for malformed input", function()
      local bad = {
        { "tlrtest.Scalars", "18", "tlrtest.Scalars.f_int32: truncated varint" },
        { "tlrtest.Scalars", "18ffffffffffffffffffff01", "varint longer than 10 bytes" },
        { "tlrtest.Scalars", "72 05 6162", "tlrtest.Scalars.f_string: length 5 past the end" },
        { "tlrtest.Scalars", "1a 01 00", "tlrtest.Scalars.f_int32: wire type 2, expected 0" },
        { "tlrtest.Scalars", "15 0000", "f_float: truncated 4-byte value" },
        { "tlrtest.Scalars", "0d 0000", "f_double: wire type 5, expected 1" },
        { "tlrtest.Scalars", "09 00", "f_double: truncated 8-byte value" },
        { "tlrtest.Nested", "12 03 1a 02 18", "tlrtest.Nested.child.scalars: length 2 past the end" },
        { "tlrtest.Nested", "12 04 1a 02 18 ff", "tlrtest.Nested.child.scalars.f_int32: truncated varint" },
        { "tlrtest.Small", "0f", "invalid wire type 7" },
        { "tlrtest.Small", "00", "bad field number 0" },
        { "tlrtest.Small", "0c", "end of group 1 without a start" },
        { "tlrtest.Small", "0b 14", "mismatched end of group" },
        { "tlrtest.Small", "a0", "tlrtest.Small: truncated varint" },
        { "tlrtest.Small", "2a 05 00", "tlrtest.Small: length 5 past the end" },
        { "tlrtest.Repeated", "0a 02 01", "r_int32: length 2 past the end" },
        { "tlrtest.Repeated", "0a 01 ff", "r_int32: truncated varint" },
        { "tlrtest.Repeated", "3a 01 08 3d", "r_string: wire type 5, expected 2" },
        { "tlrtest.Maps", "0a 02 08 01", "tlrtest.Maps.ss: map key: wire type 0, expected 2" },
        { "tlrtest.Maps", "0a 04 0a 0161 12", "tlrtest.Maps.ss: truncated varint" },
      }
      for _, b in ipairs(bad) do
        local v, msg, code = S:decode(b[1], unhex(b[2]))
        assert.is_nil(v, b[2])
        assert.are.equal("EPROTO", code)
        assert.matches(b[3], msg, 1, true)
        assert.matches("^decode ", msg)
      end
    end)

    it("refuses nesting deeper than 100 levels without raising", function()
      -- Nested.child (field 2) inside Nested.child, n deep; lengths grow past 127
      local function chain(n)
        local bytes = ""
        for _ = 1, n do
          local len, rest = "", #bytes
          repeat
            local b = rest & 0x7f
            rest = rest >> 7
            len = len .. string.char(rest > 0 and (b | 0x80) or b)
          until rest == 0
          bytes = "\x12" .. len .. bytes
        end
        return bytes
      end
      local v, msg, code = S:decode("tlrtest.Nested", chain(100))
      assert.is_nil(v)
      assert.are.equal("EPROTO", code)
      assert.matches("nested more than 100 levels", msg)
      v = assert(S:decode("tlrtest.Nested", chain(99)))
      local depth = 0
      while v.child do
        v, depth = v.child, depth + 1
      end
      assert.are.equal(99, depth)
    end)

    it("never raises or crashes on mutated input: a table or nil, msg, EPROTO", function()
      local seeds = {
        talos.schema:encode("cosi.resource.GetResponse", { resource = { metadata = { id = "m",
          labels = { a = "b" }, created = { seconds = 5 }, finalizers = { "x" } }, spec = { yaml_spec = "x: 1" } } }),
        S:encode("tlrtest.Nested", case("nested messages")),
        S:encode("tlrtest.Maps", case("maps")),
      }
      local types = { { talos.schema, "cosi.resource.GetResponse" }, { talos.schema, "storage.DisksResponse" },
        { S, "tlrtest.Nested" }, { S, "tlrtest.Maps" }, { S, "tlrtest.Repeated" }, { S, "tlrtest.Scalars" } }
      math.randomseed(7)
      local decoded, failed = 0, 0
      for i = 1, 3000 do
        local b = { seeds[i % #seeds + 1]:byte(1, -1) }
        for _ = 1, math.random(1, 4) do
          local p, r = math.random(1, #b), math.random(3)
          if r == 1 then b[p] = math.random(0, 255)
          elseif r == 2 then table.remove(b, p)
          else table.insert(b, p, math.random(0, 255)) end
        end
        local data = string.char(table.unpack(b))
        for _, t in ipairs(types) do
          local v, msg, code = t[1]:decode(t[2], data)
          if v then
            assert.are.equal("table", type(v))
            decoded = decoded + 1
          else
            assert.are.equal("EPROTO", code, msg)
            failed = failed + 1
          end
        end
      end
      assert.is_true(decoded > 100 and failed > 100, decoded .. " / " .. failed)
    end)

    it("decodes unknown enum numbers as numbers and aliases as the first name", function()
      assert.are.equal(42, S:decode("tlrtest.Scalars", unhex("80012a")).f_enum)
      assert.are.equal("BLUE", S:decode("tlrtest.Scalars", unhex("800102")).f_enum)
      assert.are.equal("NEGATIVE", S:decode("tlrtest.Scalars", unhex("8001fdffffffffffffffff01")).f_enum)
    end)

    it("keeps only the low 32 bits of a 64-bit varint in int32 fields, as protoc does", function()
      assert.are.equal(-1, S:decode("tlrtest.Scalars", unhex("18ffffffffffffffffff01")).f_int32)
      assert.are.equal(1, S:decode("tlrtest.Scalars", unhex("188180808010")).f_int32)
    end)
  end)

  describe("declarations", function()
    local function bad(decls, pattern)
      local ok, err = pcall(pb.schema, decls)
      assert.is_false(ok)
      assert.matches(pattern, err, 1, true)
    end

    it("rejects mistakes with the message and field named", function()
      bad({ message = "a.B", { 1, "x", "int32" }, { 1, "y", "int32" } }, "message 'a.B': field number 1 used twice")
      bad({ message = "a.B", { 1, "x", "int32" }, { 2, "x", "int32" } }, "field 'x' declared twice")
      bad({ message = "a.B", { 1, "x", "Nope" } }, "message 'a.B' field x: unknown type 'Nope'")
      bad({ message = "a.B", { 19000, "x", "int32" } }, "bad field number 19000")
      bad({ message = "a.B", { 0, "x", "int32" } }, "bad field number 0")
      bad({ message = "a.B", { 1, "x", "map<double, int32>" } }, "bad map key type 'double'")
      bad({ message = "a.B", { 1, "x", "int32", repeated = true, presence = true } }, "no presence")
      bad({ message = "a.B", { 1, "x", "int32", packed = true } }, "packed applies to repeated fields")
      bad({ message = "a.B", { 1, "x", "int32", requred = true } }, "unknown option 'requred'")
      bad({ message = "a.B", { 1, "x", "int32", repeated = 1 } }, "option 'repeated' must be a boolean")
      bad({ message = "a.B", { 1, "2x", "int32" } }, "field 1 needs a name")
      bad({ message = "a.B", fields = {} }, "unknown key 'fields'")
      bad({ message = "a..B" }, "bad type name a..B")
      bad({ { message = "a.B" }, { enum = "a.B", "X" } }, "type 'a.B' declared twice")
      bad({ enum = "a.E" }, "enum 'a.E' has no values")
      bad({ enum = "a.E", "X", values = { X = 1 } }, "value X declared twice")
      bad({ enum = "a.E", values = { X = 2 ^ 31 } }, "needs an int32 number")
      bad({ { name = "a.B" } }, "needs message= or enum=")
    end)

    it("resolves type names from the inner scope outwards, and fully qualified ones", function()
      local s = pb.schema {
        { message = "a.X", { 1, "v", "int32" } },
        { message = "a.b.X", { 1, "w", "string" } },
        { message = "a.b.C", { 1, "inner", "X" }, { 2, "outer", ".a.X" }, { 3, "up", "a.X" } },
      }
      local fields = s:type("a.b.C").fields
      assert.are.equal("a.b.X", fields[1].type)
      assert.are.equal("a.X", fields[2].type)
      assert.are.equal("a.X", fields[3].type)
      assert.are.same({ inner = { w = "s" }, outer = { v = 1 }, up = { v = 2 } },
        s:decode("a.b.C", s:encode("a.b.C", { inner = { w = "s" }, outer = { v = 1 }, up = { v = 2 } })))
    end)

    it("describes types with schema:type()", function()
      local d = S:type("tlrtest.Maps")
      assert.are.equal("message", d.kind)
      assert.are.same({ number = 3, name = "sm", type = "tlrtest.Scalars", map = true, key = "string",
        repeated = false, presence = false }, d.fields[3])
      local e = S:type("tlrtest.Color")
      assert.are.equal("enum", e.kind)
      assert.are.same({ { name = "RED", number = 0 }, { name = "GREEN", number = 1 },
        { name = "BLUE", number = 2 }, { name = "NEGATIVE", number = -3 }, { name = "BLAU", number = 2 } },
        e.values)
      assert.is_nil(S:type("tlrtest.Nope"))
      assert.matches("tlr.protobuf.Schema %(%d+ messages, 1 enums%)", tostring(S))
    end)

    it("accepts a single declaration and several lists", function()
      local s = pb.schema({ message = "x.A", { 1, "b", "x.B" } }, { { message = "x.B", { 1, "c", "bool" } } })
      assert.are.equal("0a020801", hex(s:encode("x.A", { b = { c = true } })))
    end)
  end)

  describe("Talos descriptors", function()
    local T = talos.schema
    -- requests tlr sends, and replies shaped as Talos sends them
    local TALOS_CASES = {
      { "machine.ApplyConfigurationRequest", { data = "version: v1alpha1\nmachine: {}\n", mode = "AUTO",
        dry_run = true, try_mode_timeout = { seconds = 60 } } },
      { "machine.ApplyConfigurationRequest", { data = string.rep("# padding\n", 40), mode = "TRY" } },
      { "machine.ApplyConfigurationResponse", { messages = { { metadata = { hostname = "cp-1" },
        warnings = { "w1", "w2" }, mode = "NO_REBOOT", mode_details = "applied" } } } },
      { "machine.BootstrapRequest", { recover_etcd = true } },
      { "machine.BootstrapResponse", { messages = { { metadata = { hostname = "cp-1", error = "x",
        status = { code = 9, message = "bootstrap is not available yet" } } } } } },
      { "common.Data", { metadata = { hostname = "cp-1" }, bytes = "\31\139\8\0\0\0\0\0" } },
      { "machine.VersionResponse", { messages = { { metadata = { hostname = "n1" },
        version = { tag = "v1.11.6", sha = "abc", built = "now", go_version = "go1.24", os = "linux",
          arch = "amd64" }, platform = { name = "nocloud", mode = "cloud" }, features = { rbac = true } } } } },
      { "machine.ServiceListResponse", { messages = { { services = {
        { id = "etcd", state = "Running", events = { events = { { msg = "started", state = "Running",
          ts = { seconds = 1700000000, nanos = 5 } } } },
          health = { healthy = true, last_message = "ok", last_change = { seconds = 1 } } },
        { id = "kubelet", state = "Waiting", health = { unknown = true } } } } } } },
      { "machine.EtcdMemberListRequest", { query_local = true } },
      { "machine.EtcdMemberListResponse", { messages = { { members = {
        { id = -2401053088876216593, hostname = "cp-1", peer_urls = { "https://10.0.0.10:2380" },
          client_urls = { "https://10.0.0.10:2379" } },
        { id = 42, hostname = "cp-2", is_learner = true } } } } } },
      { "machine.UpgradeRequest", { image = "ghcr.io/siderolabs/installer:v1.11.6", stage = true,
        force = true, reboot_mode = "POWERCYCLE" } },
      { "machine.UpgradeResponse", { messages = { { ack = "Upgrade request received", actor_id = "a1" } } } },
      { "machine.ResetRequest", { graceful = true, reboot = true, system_partitions_to_wipe = {
        { label = "STATE", wipe = true }, { label = "EPHEMERAL", wipe = true } },
        user_disks_to_wipe = { "/dev/sdb" }, mode = "SYSTEM_DISK" } },
      { "machine.ResetResponse", { messages = { { actor_id = "r1" } } } },
      { "machine.RebootRequest", { mode = "POWERCYCLE" } },
      { "machine.RebootResponse", { messages = { { actor_id = "b1" } } } },
      { "storage.DisksResponse", { messages = { { disks = {
        { size = 10737418240, model = "QEMU HARDDISK", device_name = "/dev/sda", name = "sda",
          serial = "drive-scsi0", modalias = "scsi:t-0x00", uuid = "u", wwid = "w", type = "HDD",
          bus_path = "/pci0000:00", system_disk = true, subsystem = "/sys/class/block", readonly = true },
        { size = -1, type = "NVME" } } } } } },
      { "cosi.resource.GetRequest", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev",
        id = "machine", options = {} } },
      { "cosi.resource.GetResponse", { resource = {
        metadata = { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev", id = "machine",
          version = "3", owner = "runtime.MachineStatusController", phase = "running",
          created = { seconds = 1700000000 }, updated = { seconds = 1700000001, nanos = 7 },
          finalizers = { "f1" }, labels = { b = "2", a = "1" }, annotations = { x = "y" } },
        spec = { proto_spec = "\8\1", yaml_spec = "stage: running\nstatus:\n  ready: true\n" } } } },
      { "cosi.resource.ListRequest", { namespace = "runtime", type = "Diagnostics.runtime.talos.dev" } },
      { "cosi.resource.WatchRequest", { namespace = "runtime", type = "MachineStatuses.runtime.talos.dev",
        id = "", options = { bootstrap_contents = true }, api_version = 1 } },
      { "cosi.resource.WatchResponse", { event = { { resource = { metadata = { id = "machine" } },
        event_type = "BOOTSTRAPPED" }, { event_type = "UPDATED", old = {}, error = "" } } } },
      { "common.EmptyResponse", { messages = { { metadata = { hostname = "w1" } } } } },
    }

    it("encode as protobufjs does from .proto files written from the same field tables", function()
      local req = {}
      for i, c in ipairs(TALOS_CASES) do
        req[i] = { op = "encode", type = c[1], value = to_js(T, c[1], c[2]) }
      end
      local js = protobufjs(TALOS_PROTO, req)
      local dec = {}
      for i, c in ipairs(TALOS_CASES) do
        assert.is_nil(js[i].error, c[1])
        assert.are.equal(js[i].hex, hex(T:encode(c[1], c[2])), c[1])
        dec[i] = { op = "decode", type = c[1], hex = js[i].hex }
      end
      local back = protobufjs(TALOS_PROTO, dec)
      for i, c in ipairs(TALOS_CASES) do
        assert_same(back[i].value, to_js(T, c[1], assert(T:decode(c[1], unhex(js[i].hex)))))
      end
    end)

    it("use the reference's field numbers", function()
      local function numbers(name)
        local out = {}
        for _, f in ipairs(T:type(name).fields) do out[f.name] = f.number end
        return out
      end
      assert.are.same({ data = 1, mode = 4, dry_run = 5, try_mode_timeout = 6 },
        numbers("machine.ApplyConfigurationRequest"))
      assert.are.same({ id = 2, hostname = 3, peer_urls = 4, client_urls = 5, is_learner = 6 },
        numbers("machine.EtcdMember"))
      assert.are.same({ graceful = 1, reboot = 2, system_partitions_to_wipe = 3,
        user_disks_to_wipe = 4, mode = 5 }, numbers("machine.ResetRequest"))
      assert.are.same({ hostname = 1, error = 2, status = 3 }, numbers("common.Metadata"))
      assert.are.equal(13, numbers("storage.Disk").readonly)
      assert.are.same({ namespace = 1, type = 2, id = 3, version = 4, owner = 5, phase = 6, created = 7,
        updated = 8, finalizers = 9, labels = 10, annotations = 11 }, numbers("cosi.resource.Metadata"))
    end)

    it("list every method with existing request and response types", function()
      local n = 0
      for name, m in pairs(talos.methods) do
        n = n + 1
        assert.matches("^/[%w.]+/" .. name .. "$", m.path)
        assert.are.equal("message", T:type(m.request).kind)
        assert.are.equal("message", T:type(m.response).kind)
      end
      assert.are.equal(16, n)
      local fields = {}
      for _, f in ipairs(T:type("machine.EtcdForfeitLeadership").fields) do fields[f.name] = f.number end
      assert.are.same({ metadata = 1, member = 2 }, fields)
      assert.are.equal(1, T:type("machine.EtcdRemoveMemberByIDRequest").fields[1].number)
      assert.are.equal("/machine.MachineService/EtcdLeaveCluster", talos.methods.EtcdLeaveCluster.path)
      assert.is_true(talos.methods.Kubeconfig.stream)
      assert.is_false(talos.methods.Version.stream)
    end)
  end)
end)
