-- YAML decode and encode (lua/tlr/yaml.lua, modules/yaml.c).
local yaml = require "tlr.yaml"
local cjson = require "cjson"

local ARRAY_MT = yaml.array_mt

-- Deep equality that also compares number subtypes, NaN and array marks.
local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false, path .. ": integer vs float" end
    if a ~= a and b ~= b then return true end
    return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if type(a) ~= "table" then return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  if (getmetatable(a) == ARRAY_MT) ~= (getmetatable(b) == ARRAY_MT) then
    return false, path .. ": array mark differs"
  end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

local function assert_same(a, b)
  local ok, why = same(a, b)
  assert(ok, why)
end

local function assert_fails(pattern, v, msg, code)
  assert.is_nil(v)
  assert.are.equal("EINVAL", code)
  assert.is_string(msg)
  assert.matches(pattern, msg)
end

local readfile = require("helper").read

describe("tlr.yaml", function()
  describe("decode", function()
    it("types plain scalars by the YAML 1.2 core schema", function()
      local cases = {
        { "~", yaml.null }, { "null", yaml.null }, { "Null", yaml.null }, { "NULL", yaml.null },
        { "", yaml.null }, { "true", true }, { "True", true }, { "TRUE", true },
        { "false", false }, { "False", false }, { "FALSE", false },
        { "yes", "yes" }, { "no", "no" }, { "on", "on" }, { "off", "off" }, { "y", "y" },
        { "0", 0 }, { "42", 42 }, { "-17", -17 }, { "+5", 5 }, { "0o17", 15 }, { "0x1F", 31 },
        { "0xff", 255 }, { "0644", 420 }, { "09", 9 },
        { "1.5", 1.5 }, { "-0.25", -0.25 }, { "1e3", 1000.0 }, { "2.5E-1", 0.25 },
        { ".5", 0.5 }, { "1.", 1.0 }, { ".inf", math.huge }, { "-.Inf", -math.huge },
        { "+.INF", math.huge }, { "1_000", "1_000" }, { "0b101", "0b101" }, { "1:30", "1:30" },
        { "1.2.3", "1.2.3" }, { "10.0.0.1", "10.0.0.1" }, { "0x", "0x" }, { ".", "." },
        { "nulls", "nulls" }, { "-x", "-x" }, { "e3", "e3" }, { "1e", "1e" }, { "+", "+" },
      }
      for _, c in ipairs(cases) do
        local v = yaml.decode("v: " .. c[1] .. "\n").v
        assert(same(v, c[2]), string.format("%q decoded as %s (%s)", c[1], tostring(v),
          math.type(v) or type(v)))
      end
      local nan = yaml.decode("v: .nan").v
      assert.are.equal("float", math.type(nan))
      assert.is_true(nan ~= nan)
    end)

    it("gives Lua integers, and floats beyond the integer range", function()
      local v = yaml.decode("[9223372036854775807, -9223372036854775808, 9223372036854775808, 3.0]")
      assert.are.equal(math.maxinteger, v[1])
      assert.are.equal("integer", math.type(v[1]))
      assert.are.equal(math.mininteger, v[2])
      assert.are.equal("integer", math.type(v[2]))
      assert.are.equal("float", math.type(v[3]))
      assert.are.equal(2.0 ^ 63, v[3])
      assert.are.equal("float", math.type(v[4]))
    end)

    it("keeps quoted scalars and block scalars as strings", function()
      local v = yaml.decode([[
a: "true"
b: '42'
c: "~"
d: ''
e: "on"
f: |
  line 1
  line 2
g: >
  folded
  text
]])
      assert_same({ a = "true", b = "42", c = "~", d = "", e = "on",
        f = "line 1\nline 2\n", g = "folded text\n" }, v)
    end)

    it("honours explicit tags", function()
      local v = yaml.decode([[
s: !!str 42
t: !!str true
i: !!int "7"
f: !!float 3
b: !!bool "false"
n: !!null ""
bin: !!binary aGVsbG8=
app: !custom 12
bang: ! 12
]])
      assert_same({ s = "42", t = "true", i = 7, f = 3.0, b = false, n = yaml.null,
        bin = "aGVsbG8=", app = 12, bang = "12" }, v)
      assert_fails("^line 1, column 4: 'x' is not a valid !!int", yaml.decode("a: !!int x"))
      assert_fails("not a valid !!bool", yaml.decode("a: !!bool yes"))
    end)

    it("uses one null sentinel, the same as cjson.null", function()
      assert.are.equal("userdata", type(yaml.null))
      assert.are.equal(cjson.null, yaml.null)
      assert.are.equal(cjson.null, yaml.decode("a: ~").a)
      assert.are.equal(yaml.null, yaml.decode(""))
      assert.are.equal(yaml.null, yaml.decode("# only a comment\n"))
    end)

    it("drops nulls with null = 'nil'", function()
      local v = yaml.decode("a: ~\nb: 1\nc: [1, null, 3]\nd: {e: }\n", { null = "nil" })
      assert.is_nil(v.a)
      assert.are.equal(1, v.b)
      assert.are.equal(1, v.c[1])
      assert.is_nil(v.c[2])
      assert.are.equal(3, v.c[3])
      assert.is_nil(next(v.d))
      assert.is_nil(yaml.decode("~", { null = "nil" }))
      -- duplicates are still found when the first value is null
      assert_fails("duplicate key 'a'", yaml.decode("a: ~\na: 1\n", { null = "nil" }))
    end)

    it("marks sequences with the array metatable shared with tlr.json", function()
      local v = yaml.decode("list: [1, 2]\nempty: []\nmap: {a: 1}\nnested: [[], {}]\n")
      assert.are.equal(ARRAY_MT, getmetatable(v.list))
      assert.are.equal(ARRAY_MT, getmetatable(v.empty))
      assert.are.equal(ARRAY_MT, getmetatable(v.nested[1]))
      assert.is_nil(getmetatable(v.map))
      assert.is_nil(getmetatable(v.nested[2]))
      assert.is_nil(getmetatable(v))
      assert.are.equal(debug.getregistry()["tlr.json.array"], ARRAY_MT)
      assert.is_true(yaml.is_array(v.empty))
      assert.is_false(yaml.is_array(v.map))
    end)

    it("resolves anchors and aliases to the same value", function()
      local v = yaml.decode([[
base: &b {x: 1}
copy: *b
name: &n hello
again: *n
&k key: 1
other: *k
]])
      assert.are.equal(v.base, v.copy)
      assert.are.equal(1, v.copy.x)
      assert.are.equal("hello", v.again)
      assert.are.equal("key", v.other)
    end)

    it("merges << keys: one mapping or a list, explicit keys win, earlier maps win", function()
      local v = yaml.decode([[
a: &a {x: 1, y: 1}
b: &b {y: 2, z: 2}
one:
  x: 0
  <<: *a
list:
  <<: [*a, *b]
  w: 3
inline:
  <<: {p: 1}
  q: 2
]])
      assert_same({ x = 0, y = 1 }, v.one)
      assert_same({ x = 1, y = 1, z = 2, w = 3 }, v.list)
      assert_same({ p = 1, q = 2 }, v.inline)
      assert.are.equal("<<", next(yaml.decode("'<<': 1")))
      assert_fails("^line 1, column 5: a merge key '<<' needs a mapping",
        yaml.decode("a: {<<: 3}"))
      assert_fails("merge key", yaml.decode("a: {<<: [1]}"))
    end)

    it("decodes the first document, or all of them", function()
      local s = "a: 1\n---\n- x\n---\n---\nlast\n"
      assert_same({ a = 1 }, yaml.decode(s))
      local docs = yaml.decode_all(s)
      assert.are.equal(ARRAY_MT, getmetatable(docs))
      assert.are.equal(4, #docs)
      assert_same({ a = 1 }, docs[1])
      assert_same(yaml.array { "x" }, docs[2])
      assert.are.equal(yaml.null, docs[3])
      assert.are.equal("last", docs[4])
      assert.are.equal(0, #yaml.decode_all(""))
      -- anchors belong to their document
      assert_fails("^line 3, column 4: unknown anchor 'x'",
        yaml.decode_all("a: &x 1\n---\nb: *x\n"))
    end)

    it("reports bad input as 'line L, column C: problem' with EINVAL", function()
      assert_fails("^line 2, column 1: found character that cannot start any token",
        yaml.decode("a:\n\tb: 1\n"))
      assert_fails("^line 3, column 1: found unexpected end of stream %(while scanning a " ..
        "quoted scalar at line 1, column 4%)", yaml.decode("a: 'unclosed\nb: 2\n"))
      assert_fails("^line 2, column 4: unknown anchor 'nope'", yaml.decode("a: 1\nb: *nope\n"))
      assert_fails("^line 2, column 1: duplicate key 'a'", yaml.decode("a: 1\na: 2\n"))
      assert_fails("^line 4, column 5: duplicate key 'k'",
        yaml.decode("top:\n  inner:\n    k: 1\n    k: 2\n"))
      assert_fails("^line 1, column 8: duplicate key 'a'", yaml.decode("{a: 1, a: 2}"))
      assert_fails("^line 3, column 2: did not find expected key",
        yaml.decode("a:\n  b: 1\n c: 2\n"))
      assert_fails("^line 1, column 3: complex mapping keys", yaml.decode("? [a]\n: 1\n"))
      assert_fails("^line 2, column 5: invalid trailing UTF%-8 octet",
        yaml.decode("a: 1\nb: \xe9t\n"))
    end)

    it("stops alias bombs by counting expanded nodes", function()
      local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
      local prev = "a"
      for i = 1, 9 do
        local name = "l" .. i
        lines[#lines + 1] = string.format("%s: &%s [%s]", name, name,
          string.rep("*" .. prev, 10, ", "))
        prev = name
      end
      local bomb = table.concat(lines, "\n")
      assert_fails("^line %d+, column %d+: the document expands to more than 1000000 nodes",
        yaml.decode(bomb))
      local small = "a: &x [1, 2]\nb: *x\nc: *x\n" -- 13 nodes counted after expansion
      assert_fails("more than 12 nodes", yaml.decode(small, { max_nodes = 12 }))
      assert.are.equal(2, yaml.decode(small, { max_nodes = 13 }).c[2])
    end)

    it("refuses nesting deeper than 1000 levels", function()
      assert_fails("nesting deeper than 1000",
        yaml.decode(string.rep("[", 1500) .. string.rep("]", 1500)))
      local ok = yaml.decode(string.rep("[", 900) .. "1" .. string.rep("]", 900))
      for _ = 1, 900 do ok = ok[1] end
      assert.are.equal(1, ok)
    end)

    it("raises on programmer errors", function()
      assert.has_error(function() yaml.decode(42) end,
        "bad argument #1 to 'yaml.decode' (string expected, got number)")
      assert.has_error(function() yaml.decode("a", { bogus = true }) end,
        "bad argument to 'yaml.decode' (unknown option 'bogus')")
      assert.has_error(function() yaml.decode("a", { null = "none" }) end)
      assert.has_error(function() yaml.decode_all("a", { max_nodes = 0 }) end)
      assert.has_error(function() yaml.decode_all("a", { max_nodes = 1.5 }) end)
    end)
  end)

  describe("encode", function()
    it("writes block style with sorted keys", function()
      local out = yaml.encode({
        kind = "Pod", apiVersion = "v1",
        metadata = { name = "web", labels = { b = "2", a = "x" } },
        spec = { containers = { { name = "c", ports = { { containerPort = 80 } } } } },
      })
      assert.are.equal([[
apiVersion: v1
kind: Pod
metadata:
  labels:
    a: x
    b: '2'
  name: web
spec:
  containers:
  - name: c
    ports:
    - containerPort: 80
]], out)
    end)

    it("puts the keys of opts.order first at every level, or sorts with a function", function()
      local v = { spec = { z = 1, kind = 2, a = 3 }, metadata = { name = "n" }, kind = "K",
        apiVersion = "v1", extra = true }
      assert.are.equal([[
apiVersion: v1
kind: K
metadata:
  name: 'n'
spec:
  kind: 2
  a: 3
  z: 1
extra: true
]], yaml.encode(v, { order = { "apiVersion", "kind", "metadata", "spec" } }))
      assert.are.equal("c: 1\nb: 2\na: 3\n",
        yaml.encode({ a = 3, b = 2, c = 1 }, { order = function(x, y) return x > y end }))
      local err = select(2, pcall(yaml.encode, { a = 1, b = 2 },
        { order = function() error("no order today") end }))
      assert.matches("no order today", err)
    end)

    it("quotes strings that would read back as something else", function()
      local tricky = {
        "on", "On", "ON", "off", "yes", "Yes", "no", "NO", "y", "n", "true", "False", "null",
        "Null", "~", "", "0700", "0o17", "0x1F", "12", "-3", "1e3", "1.5", ".5", ".inf", "-.inf",
        ".nan", "1_000", "0b101", "1:30", "190:20:30.15", "1.0e+3", "2001-12-14", "<<", "=",
      }
      for _, s in ipairs(tricky) do
        local out = assert(yaml.encode({ v = s }))
        assert(out:match("^v: '") or out:match('^v: "'), "not quoted: " .. out)
        assert.are.equal(s, yaml.decode(out).v)
      end
    end)

    it("round-trips strings with YAML syntax in them", function()
      local strings = {
        ":", "- x", "-", "#", "# comment", "a #b", "a: b", "key:", "[x]", "{x}", "*ref", "&a",
        "!tag", "|", ">", "%x", "@x", "`x", "'quoted'", '"dq"', " lead", "trail ", " both ",
        "tab\there", "\tlead", "ctl\1x", "nul\0x", "é ü ✓", "?", "? x", ",", "a,b",
        "line\n", "two\nlines", "  indented\nfirst", "trailing \nspace", "end\n\n\n", "\n",
        "\nstart", "crlf\r\nx", "plain text", "10.0.0.1", "1.2.3", "v1.28.0",
      }
      for _, s in ipairs(strings) do
        local out = assert(yaml.encode({ s, k = nil }))
        local back, err = yaml.decode(out)
        assert(back, err)
        assert(back[1] == s, string.format("%q came back as %q via %q", s, tostring(back[1]), out))
        local key_out = assert(yaml.encode({ [s] = 1 }))
        assert.are.equal(1, yaml.decode(key_out)[s])
      end
    end)

    it("writes multi-line strings as literal blocks and short safe strings plain", function()
      assert.are.equal("script: |\n  #!/bin/sh\n  echo hi\n",
        yaml.encode({ script = "#!/bin/sh\necho hi\n" }))
      assert.are.equal("s: |-\n  a\n  b\n", yaml.encode({ s = "a\nb" }))
      assert.are.equal("- 10.0.0.1\n- plain text\n- v1.2.3\n",
        yaml.encode({ "10.0.0.1", "plain text", "v1.2.3" }))
    end)

    it("writes integers exactly and floats that re-read as floats", function()
      local nums = { 0, 7, -7, math.maxinteger, math.mininteger, 1.0, -0.0, 0.1, 1 / 3, 1e20,
        1.5e-300, 2 ^ 63, 123456789.125, math.huge, -math.huge, 3.0e15 }
      local back = yaml.decode(assert(yaml.encode(nums)))
      for i, n in ipairs(nums) do
        assert.are.equal(math.type(n), math.type(back[i]), "subtype of " .. tostring(n))
        assert.are.equal(n, back[i])
      end
      assert.are.equal("- 1.0\n- 1.0e+20\n- .inf\n- .nan\n- 42\n",
        yaml.encode({ 1.0, 1e20, math.huge, 0 / 0, 42 }))
      assert.are.equal("float", math.type(yaml.decode(yaml.encode(0 / 0))))
    end)

    it("writes booleans, nulls and empty tables", function()
      assert.are.equal("a: true\nb: false\nc: null\nd: {}\ne: []\n",
        yaml.encode({ a = true, b = false, c = yaml.null, d = {}, e = yaml.array() }))
      assert.are.equal("null\n", yaml.encode(nil))
      local v = yaml.decode("e: []\nm: {}\n")
      assert.are.equal("e: []\nm: {}\n", yaml.encode(v))
    end)

    it("fails with EINVAL naming the path of values it cannot write", function()
      assert_fails("^table mixes string keys and indices at %$%.spec%.items$",
        yaml.encode({ spec = { items = { 1, 2, x = 3 } } }))
      assert_fails("^array has string keys at %$%.a$", yaml.encode({ a = yaml.array({ x = 1 }) }))
      assert_fails("^sparse array %(2 integer keys, length %d%) at %$%.a%[2%]$",
        yaml.encode({ a = { 1, { [1] = 1, [3] = 3 } } }))
      assert_fails("^table has a key that is neither a string nor an integer at %$$",
        yaml.encode({ [true] = 1 }))
      assert_fails("^cannot encode a function at %$%.x%[1%]%.f$",
        yaml.encode({ x = { { f = print } } }))
      assert_fails("^cannot encode a userdata at %$%[\"a%.b\"%]$",
        yaml.encode({ ["a.b"] = io.stdout }))
      assert_fails("^string is not valid UTF%-8 at %$%.bin$", yaml.encode({ bin = "\xff\xfe" }))
      local cycle = {}
      cycle.self = cycle
      assert_fails("^nesting deeper than 1000 levels %(a cycle%?%)", yaml.encode(cycle))
    end)

    it("writes a multi-document stream separated by ---", function()
      local out = yaml.encode_all({ { a = 1 }, yaml.array { "x" }, "text", 3 })
      assert.are.equal("a: 1\n---\n- x\n--- text\n--- 3\n", out)
      local docs = yaml.decode_all(out)
      assert.are.equal(4, #docs)
      assert.are.equal("text", docs[3])
      assert.are.equal("", yaml.encode_all({}))
      assert_fails("^cannot encode a function at %$%[2%]%.f$",
        yaml.encode_all({ {}, { f = print } }))
    end)

    it("indents by opts.indent", function()
      assert.are.equal("a:\n    b:\n        c: 1\n",
        yaml.encode({ a = { b = { c = 1 } } }, { indent = 4 }))
    end)

    it("raises on programmer errors", function()
      assert.has_error(function() yaml.encode({}, { sort = true }) end,
        "bad argument to 'yaml.encode' (unknown option 'sort')")
      assert.has_error(function() yaml.encode({}, { order = 3 }) end)
      assert.has_error(function() yaml.encode({}, { order = { 1 } }) end)
      assert.has_error(function() yaml.encode({}, { indent = 12 }) end)
      assert.has_error(function() yaml.encode_all("x") end)
      assert.has_error(function() yaml.encode_all({ a = 1 }) end)
      assert.has_error(function() yaml.array(setmetatable({}, {})) end)
    end)

    it("is read back as the same data by a YAML 1.1 reader (PyYAML)", function()
      local value = {
        strings = { "on", "off", "yes", "no", "y", "n", "true", "null", "~", "", "0700",
          "0o17", "1e3", "1_000", "0b11", "1:30", "2001-12-14", "=", "<<", " x", "a: b", "#",
          "multi\nline\n", "10.0.0.1" },
        ints = { 0, 420, -5, 1234567890123 },
        floats = { 0.5, 1.0, 1e20, -2.25 },
        flags = { true, false },
        nothing = yaml.null,
        nested = { empty_map = {}, empty_list = yaml.array() },
      }
      local text = assert(yaml.encode(value))
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(text)
      f:close()
      local py = io.popen("/usr/bin/python3 -c 'import json, sys, yaml; " ..
        "print(json.dumps(yaml.safe_load(open(sys.argv[1])), sort_keys=True))' " .. path)
      local json = py:read("a")
      py:close()
      os.remove(path)
      assert(json:match("^{"), "needs /usr/bin/python3 with python3-yaml (make deps): " .. json)
      local back = cjson.decode(json)
      assert.are.same(value.strings, back.strings)
      for i, n in ipairs(value.ints) do assert.are.equal(n, back.ints[i]) end
      for i, n in ipairs(value.floats) do assert.are.equal(n, back.floats[i]) end
      assert.are.same(value.flags, back.flags)
      assert.are.equal(cjson.null, back.nothing)
      assert.are.same({}, back.nested.empty_map)
      assert.matches("empty_list: %[%]", text)
    end)
  end)

  describe("round trips", function()
    local dir = "tests/fixtures/talos-gen/"

    local function fixtures()
      local names, seen = {}, {}
      for line in io.lines(dir .. "SOURCES") do
        local name = line:match("^%x+%s+%S+%s+(%S+)$")
        if name and not seen[name] then
          seen[name] = true
          names[#names + 1] = name
        end
      end
      return names
    end

    it("decode, encode, decode gives the same value for every talos-gen fixture", function()
      local names = fixtures()
      assert.is_true(#names >= 8)
      for _, name in ipairs(names) do
        local docs, err = yaml.decode_all(readfile(dir .. name))
        assert(docs, name .. ": " .. tostring(err))
        assert.is_true(#docs >= 1)
        local text = assert(yaml.encode_all(docs))
        local again = assert(yaml.decode_all(text))
        local ok, why = same(docs, again)
        assert(ok, name .. ": " .. tostring(why))
        assert.are.equal(text, yaml.encode_all(again))
      end
    end)

    it("reads Talos configs with the expected values", function()
      local cp = yaml.decode(readfile(dir .. "v1.8-base-controlplane.yaml"))
      assert.are.equal("v1alpha1", cp.version)
      assert.is_false(cp.debug)
      assert.is_true(cp.persist)
      assert.are.equal("controlplane", cp.machine.type)
      assert.are.equal(7445, cp.machine.features.kubePrism.port)
      assert.are.equal("integer", math.type(cp.machine.features.kubePrism.port))
      local labels = cp.machine.nodeLabels
      assert.are.equal("", labels["node.kubernetes.io/exclude-from-external-load-balancers"])
      assert.are.equal(ARRAY_MT, getmetatable(cp.machine.certSANs))
      assert.are.equal(0, #cp.machine.certSANs)
      assert.are.equal("10.244.0.0/16", cp.cluster.network.podSubnets[1])
      assert.are.equal("https://base:6443", cp.cluster.controlPlane.endpoint)
      local docs = yaml.decode_all(readfile(dir .. "v1.12-base-controlplane.yaml"))
      assert.are.equal(2, #docs)
      assert.are.equal("HostnameConfig", docs[2].kind)
      assert.are.equal("stable", docs[2].auto)
      local patch = yaml.decode(readfile(dir .. "overrides-patch.yaml"))
      assert.are.equal("rshared", patch.machine.kubelet.extraMounts[1].options[1])
    end)

    it("round-trips a generated 1 MB multi-document manifest", function()
      local gen = dofile("bench/yaml_gen.lua")
      local text, ndocs = gen(1024 * 1024)
      assert.is_true(#text >= 1024 * 1024)
      assert.are.equal(text, (gen(1024 * 1024))) -- deterministic
      local docs, err = yaml.decode_all(text)
      assert(docs, err)
      assert.are.equal(ndocs, #docs)
      for i = 1, ndocs // 2, 97 do
        local cm, dep = docs[2 * i - 1], docs[2 * i]
        local name = string.format("app-%05d", i)
        assert.are.equal("ConfigMap", cm.kind)
        assert.are.equal(name .. "-config", cm.metadata.name)
        assert.are.equal("on", cm.metadata.annotations.enabled)
        assert.are.equal("yes", cm.metadata.annotations.legacy)
        assert.are.equal("a: b # not a comment", cm.metadata.annotations.note)
        assert.are.equal("0700", cm.data.mode)
        assert.are.equal("1e3", cm.data.ratio)
        assert.are.equal("", cm.data.empty)
        assert.are.equal("~", cm.data.tilde)
        assert.are.equal("1.10", cm.data.version)
        assert.are.equal("true", cm.data["bool-text"])
        local script = '#!/bin/sh\nset -eu\necho "starting ' .. name .. '"\nrun-step --id 1 '
        assert.are.equal(script, cm.data["script.sh"]:sub(1, #script))
        assert.are.equal("Deployment", dep.kind)
        assert.are.equal(name, dep.metadata.name)
        assert.are.equal(i % 5 + 1, dep.spec.replicas)
        assert.are.equal("integer", math.type(dep.spec.replicas))
        assert.is_false(dep.spec.paused)
        assert.are.equal(yaml.null, dep.spec.progressDeadlineSeconds)
        local pod = dep.spec.template.spec
        assert.are.equal(yaml.null, pod.nodeSelector)
        assert.are.equal((i % 4) / 4 + 0.125, pod.weight)
        local weight = dep.spec.template.metadata.annotations.weight
        assert.are.equal(tostring((i % 4) / 4 + 0.125), weight)
        assert.are.equal(8000 + i % 100, pod.containers[1].ports[1].containerPort)
        assert.are.equal("--enabled=true", pod.containers[1].args[4])
        assert.are.equal(420, pod.volumes[1].configMap.defaultMode)
        assert.are.equal(ARRAY_MT, getmetatable(pod.tolerations))
        assert.is_nil(next(pod.tolerations))
      end
      local out = assert(yaml.encode_all(docs, { order = { "apiVersion", "kind", "metadata" } }))
      assert.matches("^apiVersion: v1\nkind: ConfigMap\nmetadata:\n", out)
      assert.matches("\ntolerations: %[%]\n", out:gsub("\n +", "\n"))
      local again = assert(yaml.decode_all(out))
      assert_same(docs, again)
    end)
  end)
end)
