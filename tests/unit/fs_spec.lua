-- Files, modes, atomic writes, locks and paths (lua/tlr/fs.lua).
local fs = require "tlr.fs"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, status = p:close()
  return out, ok and 0 or status
end

local function octal(mode) return string.format("%04o", mode) end

-- The binary running this spec, for a second tlr process.
local function self_exe()
  local pid = assert(fs.read("/proc/self/stat")):match("^(%d+)")
  return (sh("readlink /proc/" .. pid .. "/exe"):gsub("%s+$", ""))
end

local is_root = sh("id -u"):match("^0") ~= nil

describe("tlr.fs", function()
  local dir

  before_each(function()
    dir = assert(fs.tmpdir("tlr-fs-spec"))
  end)

  after_each(function()
    sh("chmod -R u+rwx '" .. dir .. "'")
    assert(fs.remove(dir, { recursive = true }))
  end)

  describe("read and write", function()
    it("round-trips binary data, empty files and large files", function()
      local cases = { "", "x", "\0\1\2\255 binary\r\n", string.rep("0123456789abcdef", 70000) }
      for i, data in ipairs(cases) do
        local path = dir .. "/f" .. i
        assert.is_true(fs.write(path, data))
        assert.are.equal(data, fs.read(path))
        assert.are.equal(#data, fs.stat(path).size)
      end
    end)

    it("reads files whose size stat does not know (/proc)", function()
      local s = assert(fs.read("/proc/self/status"))
      assert.matches("Pid:%s+%d+", s)
    end)

    it("returns ENOENT, EIO and EPERM failures instead of raising", function()
      local data, msg, code = fs.read(dir .. "/missing")
      assert.is_nil(data)
      assert.are.equal("ENOENT", code)
      assert.are.equal("open " .. dir .. "/missing: No such file or directory", msg)
      assert.is_true(fs.write(dir .. "/file", "x"))
      assert.are.equal("ENOENT", select(3, fs.read(dir .. "/file/child")))
      data, msg, code = fs.read(dir)
      assert.is_nil(data)
      assert.are.equal("EIO", code)
      assert.matches("Is a directory", msg)
      assert.are.equal("ENOENT", select(3, fs.write(dir .. "/no/such/dir/f", "x")))
      sh("chmod 000 " .. dir .. "/file")
      if is_root then -- root reads everything: ask a child running as nobody
        sh("chmod 755 " .. dir)
        local out = sh("setpriv --reuid=nobody --regid=nogroup --clear-groups " .. self_exe()
          .. " -e 'print(select(3, require(\"tlr.fs\").read(\"" .. dir .. "/file\")))'")
        assert.are.equal("EPERM\n", out)
        sh("chmod 700 " .. dir)
      else
        assert.are.equal("EPERM", select(3, fs.read(dir .. "/file")))
      end
    end)

    it("applies the mode exactly, whatever the umask", function()
      local _, status = sh("umask 0777 && " .. self_exe() .. " -e '"
        .. 'local fs = require "tlr.fs"; '
        .. 'assert(fs.write("' .. dir .. '/wide", "x", {mode = 0x1ff})); '
        .. 'assert(fs.write("' .. dir .. '/plain", "x", {atomic = false, mode = 0x1a4})); '
        .. 'assert(fs.mkdir("' .. dir .. '/d1/d2", {mode = 0x1ed}))' .. "'")
      assert.are.equal(0, status)
      assert.are.equal("0777", octal(fs.stat(dir .. "/wide").mode))
      assert.are.equal("0644", octal(fs.stat(dir .. "/plain").mode))
      assert.are.equal("0755", octal(fs.stat(dir .. "/d1").mode))
      assert.are.equal("0755", octal(fs.stat(dir .. "/d1/d2").mode))
    end)

    it("writes 0600 by default, also over an existing 0644 file", function()
      local path = dir .. "/secret"
      assert.is_true(fs.write(path, "old", { mode = 0x1a4 }))
      assert.are.equal("0644", octal(fs.stat(path).mode))
      assert.is_true(fs.write(path, "new"))
      assert.are.equal("0600", octal(fs.stat(path).mode))
      assert.are.equal("new", fs.read(path))
      assert.is_true(fs.write(path, "plain", { atomic = false }))
      assert.are.equal("0600", octal(fs.stat(path).mode))
      assert.are.equal("plain", fs.read(path))
    end)

    it("leaves no temp files behind, after success and after failure", function()
      for i = 1, 20 do assert.is_true(fs.write(dir .. "/state.json", "v" .. i)) end
      assert.are.equal("v20", fs.read(dir .. "/state.json"))
      assert.is_true(fs.mkdir(dir .. "/adir"))
      local ok, msg, code = fs.write(dir .. "/adir", "cannot replace a directory")
      assert.is_nil(ok)
      assert.are.equal("EIO", code)
      assert.matches("rename", msg)
      assert.are.same({ "adir", "state.json" }, fs.list(dir))
      assert.are.same({}, fs.list(dir .. "/adir"))
    end)

    it("replaces the file by rename: a reader holding the old file keeps the old data", function()
      local path = dir .. "/config"
      assert.is_true(fs.write(path, "first version"))
      local f = assert(io.open(path, "rb"))
      assert.is_true(fs.write(path, "second version"))
      assert.are.equal("first version", f:read("a")) -- an in-place write would show the new bytes
      f:close()
      assert.are.equal("second version", fs.read(path))
    end)

    it("writes a bare file name atomically in the current directory", function()
      local lua_path = os.getenv("TLR_LUA_PATH") -- keep a development override working after cd
      local env = lua_path and ("TLR_LUA_PATH='" .. assert(fs.abs(lua_path)) .. "' ") or ""
      local out, status = sh("cd '" .. dir .. "' && " .. env .. self_exe()
        .. " -e 'print(require(\"tlr.fs\").write(\"rel.txt\", \"r\"))'")
      assert.are.equal(0, status, out)
      assert.are.equal("r", fs.read(dir .. "/rel.txt"))
      assert.are.same({ "rel.txt" }, fs.list(dir))
    end)

    it("rejects bad arguments and unknown options", function()
      assert.has_error(function() fs.write(dir .. "/x", "d", { perms = 1 }) end,
        "bad argument to 'fs.write' (unknown option 'perms')")
      assert.has_error(function() fs.write(dir .. "/x", "d", { mode = 0x1000 }) end)
      assert.has_error(function() fs.write(dir .. "/x", 42) end)
      assert.has_error(function() fs.read() end)
      assert.has_error(function() fs.mkdir(dir, { mode = "0755" }) end)
    end)
  end)

  describe("directories and metadata", function()
    it("creates parents like mkdir -p and is fine with existing directories", function()
      local deep = dir .. "/a/b//c/d/"
      assert.is_true(fs.mkdir(deep, { mode = 0x1c0 }))
      assert.are.equal("dir", fs.stat(dir .. "/a/b/c/d").type)
      assert.are.equal("0700", octal(fs.stat(dir .. "/a/b").mode))
      assert.is_true(fs.mkdir(deep))
      assert.is_true(fs.write(dir .. "/a/file", "x"))
      local ok, msg, code = fs.mkdir(dir .. "/a/file/sub")
      assert.is_nil(ok)
      assert.are.equal("EEXIST", code)
      assert.matches("not a directory", msg)
    end)

    it("stats files, directories and symlinks", function()
      assert.is_true(fs.write(dir .. "/f", "12345", { mode = 0x1a0 }))
      sh("ln -s f " .. dir .. "/link && ln -s nowhere " .. dir .. "/dangling")
      local st = assert(fs.stat(dir .. "/f"))
      assert.are.equal("file", st.type)
      assert.are.equal(5, st.size)
      assert.are.equal("0640", octal(st.mode))
      assert.is_true(math.abs(st.mtime - os.time()) < 60)
      assert.are.equal("dir", fs.stat(dir).type)
      assert.are.equal("file", fs.stat(dir .. "/link").type)
      assert.are.equal("symlink", fs.stat(dir .. "/link", { follow = false }).type)
      assert.is_true(fs.exists(dir .. "/f"))
      assert.is_true(fs.exists(dir .. "/link"))
      assert.is_false(fs.exists(dir .. "/dangling"))
      assert.is_false(fs.exists(dir .. "/missing"))
      assert.are.equal("ENOENT", select(3, fs.stat(dir .. "/missing")))
      assert.are.equal("char", fs.stat("/dev/null").type)
    end)

    it("lists a directory sorted, without . and ..", function()
      for _, n in ipairs { "zeta", "alpha", ".hidden", "Beta" } do
        assert.is_true(fs.write(dir .. "/" .. n, ""))
      end
      assert.are.same({ ".hidden", "Beta", "alpha", "zeta" }, fs.list(dir))
      assert.are.equal("ENOENT", select(3, fs.list(dir .. "/missing")))
      assert.are.equal("ENOENT", select(3, fs.list(dir .. "/zeta")))
    end)

    it("removes files, empty directories and, if asked, trees without following links", function()
      local outside = assert(fs.tmpdir("tlr-fs-outside"))
      assert.is_true(fs.write(outside .. "/keep", "k"))
      assert.is_true(fs.mkdir(dir .. "/tree/sub"))
      assert.is_true(fs.write(dir .. "/tree/sub/f", "x"))
      sh("ln -s " .. outside .. " " .. dir .. "/tree/link")
      local ok, msg, code = fs.remove(dir .. "/tree")
      assert.is_nil(ok)
      assert.are.equal("EIO", code)
      assert.matches("not empty", msg)
      assert.is_true(fs.remove(dir .. "/tree", { recursive = true }))
      assert.is_false(fs.exists(dir .. "/tree"))
      assert.are.equal("k", fs.read(outside .. "/keep"))
      assert.is_true(fs.remove(outside .. "/keep"))
      assert.is_true(fs.remove(outside))
      assert.is_false(fs.exists(outside))
      assert.are.equal("ENOENT", select(3, fs.remove(dir .. "/missing")))
      assert.has_error(function() fs.remove(dir, { force = true }) end)
    end)
  end)

  describe("check_private", function()
    it("accepts 0600 and 0400 and refuses anything group or world can reach", function()
      local path = dir .. "/talosconfig"
      assert.is_true(fs.write(path, "secret"))
      assert.is_true(fs.check_private(path))
      sh("chmod 0400 " .. path)
      assert.is_true(fs.check_private(path))
      for _, mode in ipairs { "0640", "0604", "0644", "0610", "0601" } do
        sh("chmod " .. mode .. " " .. path)
        local ok, msg, code = fs.check_private(path)
        assert.is_nil(ok, mode)
        assert.are.equal("EPERM", code)
        assert.matches("has mode " .. mode, msg)
        assert.matches("chmod 600", msg)
      end
      assert.are.equal("ENOENT", select(3, fs.check_private(dir .. "/missing")))
    end)
  end)

  describe("lock", function()
    it("holds an exclusive flock that another process (flock -n) cannot take", function()
      local path = dir .. "/cluster.lock"
      local lock = assert(fs.lock(path))
      assert.is_true(lock:held())
      assert.are.equal("0600", octal(fs.stat(path).mode))
      local pid = assert(fs.read("/proc/self/stat")):match("^(%d+)")
      assert.are.equal(pid .. "\n", fs.read(path))
      local _, status = sh("flock -n " .. path .. " true")
      assert.are.equal(1, status)
      assert.is_true(lock:unlock())
      assert.is_false(lock:held())
      assert.are.equal("", fs.read(path))
      _, status = sh("flock -n " .. path .. " true")
      assert.are.equal(0, status)
      assert.is_true(lock:unlock()) -- idempotent
      assert.is_true(lock:close())
      assert.matches("released", tostring(lock))
    end)

    it("tells a second tlr process who holds it (ELOCKED, with our pid)", function()
      local path = dir .. "/cluster.lock"
      local lock <close> = assert(fs.lock(path))
      local pid = assert(fs.read("/proc/self/stat")):match("^(%d+)")
      local out = sh(self_exe() .. " -e 'print(require(\"tlr.fs\").lock(\"" .. path .. "\"))'")
      assert.matches("^nil\t" .. path:gsub("%p", "%%%0") .. " is locked by another process %(pid "
        .. pid .. "%)\tELOCKED", out)
      local again, msg, code = fs.lock(path)
      assert.is_nil(again)
      assert.are.equal("ELOCKED", code)
      assert.matches("by this process", msg)
    end)

    it("reports a lock held elsewhere and takes it once released", function()
      local path = dir .. "/held.lock"
      local cmd = "exec flock " .. path .. " sh -c 'echo $$ > " .. path .. "; read x'"
      local holder = assert(io.popen(cmd, "w"))
      local content
      for _ = 1, 500 do
        content = fs.read(path)
        if content and content ~= "" then break end
        os.execute("sleep 0.01")
      end
      local holder_pid = assert(content):match("^(%d+)")
      assert.is_not_nil(holder_pid)
      local lock, msg, code = fs.lock(path)
      assert.is_nil(lock)
      assert.are.equal("ELOCKED", code)
      assert.are.equal(path .. " is locked by another process (pid " .. holder_pid .. ")", msg)
      holder:close() -- EOF on its stdin: it exits and the lock goes with it
      lock = assert(fs.lock(path))
      assert.is_true(lock:held())
      lock:close()
    end)

    it("releases through <close> and through the garbage collector", function()
      local path = dir .. "/gc.lock"
      do
        local l <close> = assert(fs.lock(path))
        assert.are.equal(1, select(2, sh("flock -n " .. path .. " true")))
      end
      assert.are.equal(0, select(2, sh("flock -n " .. path .. " true")))
      local l = assert(fs.lock(path))
      assert.is_true(l:held())
      l = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.are.equal(0, select(2, sh("flock -n " .. path .. " true")))
      assert.has_error(function() fs.lock(42) end)
    end)
  end)

  describe("paths and environment", function()
    it("joins, splits and absolutises paths as text", function()
      assert.are.equal("a/b/c", fs.join("a", "b", "c"))
      assert.are.equal("a/b/c", fs.join("a/", "b", "", "c"))
      assert.are.equal("/etc/x", fs.join("a", "/etc", "x"))
      assert.are.equal("a", fs.dirname("a/b"))
      assert.are.equal(".", fs.dirname("b"))
      assert.are.equal("/", fs.dirname("/a"))
      assert.are.equal("/", fs.dirname("/"))
      assert.are.equal("/x", fs.dirname("/x//y/"))
      assert.are.equal("b", fs.basename("a/b"))
      assert.are.equal("b", fs.basename("a/b/"))
      assert.are.equal("/", fs.basename("/"))
      assert.are.equal("/a/c", fs.abs("/a/b/../c/."))
      assert.are.equal("/", fs.abs("/.."))
      local cwd = sh("pwd -P"):gsub("%s+$", "")
      local here = fs.abs("x/../y")
      assert.is_true(here == cwd .. "/y" or here == (os.getenv("PWD") or "") .. "/y", here)
      assert.has_error(function() fs.join("a", 1) end)
    end)

    it("reads environment variables", function()
      assert.are.equal(os.getenv("HOME"), fs.env("HOME"))
      assert.is_nil(fs.env("TLR_SURELY_NOT_SET_42"))
    end)

    it("makes private, unique temp directories under TMPDIR", function()
      local a, b = assert(fs.tmpdir()), assert(fs.tmpdir())
      assert.are_not.equal(a, b)
      assert.are.equal("0700", octal(fs.stat(a).mode))
      assert.matches("/tlr%-[%w]+$", a)
      assert.is_true(fs.remove(a))
      assert.is_true(fs.remove(b))
      assert.has_error(function() fs.tmpdir("a/b") end)
    end)
  end)
end)
