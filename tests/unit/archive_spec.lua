-- gzip/gunzip and untar (lua/tlr/archive.lua), cross-checked with the gzip and tar CLIs.
local archive = require "tlr.archive"
local sched = require "tlr.sched"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, "command failed: " .. cmd .. "\n" .. out)
  return out
end

local readfile = require("helper").read

local writefile = require("helper").write

-- Deterministic text that compresses, but not to nothing.
local function sample(n)
  local parts, seed, len = {}, 7, 0
  while len < n do
    seed = (seed * 1103515245 + 12345) % 2147483648
    local word = string.format("w%x ", seed % 5000)
    parts[#parts + 1] = word
    len = len + #word
  end
  return table.concat(parts):sub(1, n)
end

local dir

setup(function()
  dir = sh("mktemp -d /tmp/tlr-archive-XXXXXX"):gsub("%s+$", "")
end)

teardown(function()
  if dir then sh("rm -rf '" .. dir .. "'") end
end)

describe("tlr.archive", function()
  describe("gunzip", function()
    it("reads what the gzip CLI writes", function()
      local data = sample(100000) .. "\0\1\2\255"
      writefile(dir .. "/plain", data)
      sh("gzip -9 -c " .. dir .. "/plain > " .. dir .. "/plain.gz")
      local gz = readfile(dir .. "/plain.gz")
      assert.is_true(#gz < #data / 2)
      assert.are.equal(data, archive.gunzip(gz))
    end)

    it("reads every member of a multi-member file and tolerates zero padding", function()
      writefile(dir .. "/m1", "first member\n")
      writefile(dir .. "/m2", "second member\n")
      sh("cd " .. dir .. " && gzip -c m1 > multi.gz && gzip -c m2 >> multi.gz")
      local gz = readfile(dir .. "/multi.gz")
      assert.are.equal("first member\nsecond member\n", archive.gunzip(gz))
      local padded = gz .. string.rep("\0", 100)
      assert.are.equal(sh("gzip -dc " .. dir .. "/multi.gz"), archive.gunzip(padded))
    end)

    it("fails with EINVAL on bad magic, truncated or corrupt data, trailing garbage", function()
      local gz = assert(archive.gzip(sample(5000)))
      local corrupt = gz:sub(1, 40) .. string.char((gz:byte(41) + 1) % 256) .. gz:sub(42)
      local cases = {
        { "", "not gzip" }, { "hello world", "not gzip" },
        { gz:sub(1, #gz - 6), "truncated" }, { gz:sub(1, 12), "truncated" },
        { corrupt, "corrupt" }, { gz .. "junk!", "trailing garbage" },
      }
      for _, c in ipairs(cases) do
        local ok, out, msg, code = pcall(archive.gunzip, c[1])
        assert.is_true(ok)
        assert.is_nil(out)
        assert.are.equal("EINVAL", code)
        assert.matches(c[2], msg)
      end
    end)

    it("stops at max_size with ETOOBIG (a 10 MB bomb under a 1 MB limit)", function()
      local bomb = assert(archive.gzip(string.rep("\0", 10 * 1024 * 1024), { level = 9 }))
      assert.is_true(#bomb < 64 * 1024)
      local out, msg, code = archive.gunzip(bomb, { max_size = 1024 * 1024 })
      assert.is_nil(out)
      assert.are.equal("ETOOBIG", code)
      assert.matches("max_size", msg)
      local small = assert(archive.gzip("12345"))
      assert.are.equal("12345", archive.gunzip(small, { max_size = 5 }))
      assert.are.equal("ETOOBIG", select(3, archive.gunzip(small, { max_size = 4 })))
    end)

    it("rejects unknown options and bad limits", function()
      assert.has_error(function() archive.gunzip("x", { max = 1 }) end,
        "bad argument to 'archive.gunzip' (unknown option 'max')")
      assert.has_error(function() archive.gunzip("x", { max_size = -1 }) end)
      assert.has_error(function() archive.gunzip(42) end)
    end)
  end)

  describe("gzip", function()
    it("writes what gzip -d reads back", function()
      local data = sample(200000)
      local gz = assert(archive.gzip(data))
      writefile(dir .. "/ours.gz", gz)
      assert.are.equal(data, sh("gzip -dc " .. dir .. "/ours.gz"))
      sh("gzip -t " .. dir .. "/ours.gz")
    end)

    it("is deterministic (mtime 0, no name) and honours the level", function()
      local data = sample(50000)
      local a, b = archive.gzip(data), archive.gzip(data)
      assert.are.equal(a, b)
      assert.are.equal("\31\139\8\0\0\0\0\0", a:sub(1, 8))
      local l1, l9 = #archive.gzip(data, { level = 1 }), #archive.gzip(data, { level = 9 })
      assert.is_true(l9 < l1, "level 9 not smaller than level 1")
      assert.is_true(#archive.gzip(data, { level = 0 }) > #data)
      assert.are.equal("", archive.gunzip(archive.gzip("")))
      assert.has_error(function() archive.gzip(data, { level = 10 }) end)
      assert.has_error(function() archive.gzip(data, { fast = true }) end)
    end)

    it("runs inputs over 1 MiB on the worker pool while other tasks keep running", function()
      local data = sample(200000):rep(30) -- 6 MB; repeats lie beyond deflate's 32 KB window
      local ticks = 0
      local stop = false
      local ticker = sched.spawn(function()
        while not stop do
          sched.sleep(0.001)
          ticks = ticks + 1
        end
      end)
      local result = sched.spawn(function()
        local gz = assert(archive.gzip(data, { level = 1 }))
        local back = assert(archive.gunzip(gz))
        stop = true
        return gz, back
      end)
      local gz, back = result:wait()
      ticker:wait()
      assert.are.equal(data, back)
      assert.is_true(ticks >= 3, "the loop stalled: only " .. ticks .. " ticks")
      writefile(dir .. "/big.gz", gz)
      assert.are.equal(#data, tonumber(sh("gzip -dc " .. dir .. "/big.gz | wc -c")))
    end)

    it("also works outside a task, driving the loop itself", function()
      local data = sample(1024 * 1024 + 10)
      assert.are.equal(data, archive.gunzip(assert(archive.gzip(data))))
      local out, _, code = archive.gunzip("\31\139" .. string.rep("x", 2 * 1024 * 1024))
      assert.is_nil(out)
      assert.are.equal("EINVAL", code)
    end)
  end)

  describe("untar", function()
    local long = string.rep("d", 60) .. "/" .. string.rep("long-name-", 8) .. ".txt" -- > 100 bytes
    local files

    setup(function()
      local src = dir .. "/src"
      files = {
        ["src/a.txt"] = "hello\n",
        ["src/empty"] = "",
        ["src/sub/block512"] = string.rep("b", 512),
        ["src/sub/bin"] = "\0\1\2\3\255\254" .. sample(3000),
        ["src/" .. long] = "long\n",
      }
      sh("mkdir -p " .. src .. "/sub " .. src .. "/" .. long:match("^(.*)/"))
      for name, data in pairs(files) do writefile(dir .. "/" .. name, data) end
      sh("chmod 0640 " .. src .. "/a.txt && ln -s a.txt " .. src .. "/link")
      sh("touch -h -d @1700000000 " .. src .. "/a.txt " .. src .. "/link")
      for _, fmt in ipairs { "gnu", "posix", "ustar" } do
        local list = fmt == "ustar" and "src/a.txt src/sub src/link src/empty src/" .. long or "src"
        sh("cd " .. dir .. " && tar --format=" .. fmt .. " -cf " .. fmt .. ".tar " .. list)
      end
      sh("cd " .. dir .. " && tar -czf gnu.tar.gz src")
    end)

    local function by_name(entries)
      local t = {}
      for _, e in ipairs(entries) do t[(e.name:gsub("/$", ""))] = e end
      return t
    end

    for _, fmt in ipairs { "gnu", "posix" } do
      it("lists files, directories and symlinks made by tar --format=" .. fmt, function()
        local entries = assert(archive.untar(readfile(dir .. "/" .. fmt .. ".tar")))
        local t = by_name(entries)
        local listed = sh("cd " .. dir .. " && tar -tf " .. fmt .. ".tar")
        local n = 0
        for _ in listed:gmatch("[^\n]+") do n = n + 1 end
        assert.are.equal(n, #entries)
        for name, data in pairs(files) do
          assert.is_not_nil(t[name], "missing " .. name)
          assert.are.equal("file", t[name].type)
          assert.are.equal(data, t[name].data)
          assert.are.equal(#data, t[name].size)
        end
        assert.are.equal("dir", t["src/sub"].type)
        assert.are.equal("symlink", t["src/link"].type)
        assert.are.equal("a.txt", t["src/link"].linkname)
        assert.are.equal(0x1a0, t["src/a.txt"].mode) -- 0640
        assert.are.equal(1700000000, t["src/a.txt"].mtime)
        assert.is_true(#t["src/" .. long].name > 100)
      end)
    end

    it("joins the ustar prefix and name fields", function()
      local entries = assert(archive.untar(readfile(dir .. "/ustar.tar")))
      local t = by_name(entries)
      assert.are.equal("hello\n", t["src/a.txt"].data)
      assert.are.equal("", t["src/empty"].data)
      assert.are.equal("symlink", t["src/link"].type)
      assert.are.equal("long\n", t["src/" .. long].data) -- stored as prefix + name
    end)

    it("reads a .tar.gz made by tar -z after gunzip", function()
      local tar = assert(archive.gunzip(readfile(dir .. "/gnu.tar.gz")))
      local entries = assert(archive.untar(tar))
      assert.are.equal("hello\n", archive.find(entries, "src/a.txt").data)
      assert.are.equal("hello\n", archive.find(entries, "./src/a.txt").data)
      assert.is_nil(archive.find(entries, "src/missing"))
    end)

    it("tolerates a missing end-of-archive and missing final padding (as Talos sends)", function()
      local kubeconfig = "apiVersion: v1\nkind: Config\n" .. sample(700)
      writefile(dir .. "/kubeconfig", kubeconfig)
      sh("cd " .. dir .. " && tar -cf talos.tar kubeconfig")
      local raw = readfile(dir .. "/talos.tar")
      assert.is_true(#raw >= 512 + 1024 + 1024) -- header, data, two zero blocks at least
      for _, len in ipairs { 512 + 1024, 512 + #kubeconfig } do -- no end blocks; no padding either
        local entries = assert(archive.untar(raw:sub(1, len)))
        assert.are.equal(1, #entries)
        assert.are.equal("kubeconfig", entries[1].name)
        assert.are.equal(kubeconfig, entries[1].data)
      end
      local gz = assert(archive.gzip(raw:sub(1, 512 + #kubeconfig)))
      local entries = assert(archive.untar(assert(archive.gunzip(gz))))
      assert.are.equal(kubeconfig, archive.find(entries, "kubeconfig").data)
    end)

    it("fails with EINVAL on a truncated entry or a bad checksum", function()
      writefile(dir .. "/one", sample(2000))
      sh("cd " .. dir .. " && tar -cf one.tar one")
      local raw = readfile(dir .. "/one.tar")
      local out, msg, code = archive.untar(raw:sub(1, 512 + 1000))
      assert.is_nil(out)
      assert.are.equal("EINVAL", code)
      assert.matches("entry 'one' is truncated %(1000 of 2000 bytes%)", msg)
      local bad = "X" .. raw:sub(2)
      out, msg, code = archive.untar(bad)
      assert.is_nil(out)
      assert.are.equal("EINVAL", code)
      assert.matches("bad header checksum at offset 0", msg)
      out, msg, code = archive.untar(raw:sub(1, 300))
      assert.is_nil(out)
      assert.matches("truncated header", msg)
      assert.are.same({}, archive.untar(""))
      assert.are.same({}, archive.untar(string.rep("\0", 1024)))
    end)
  end)
end)
