--- Files and paths: reads, atomic writes with exact modes, mkdir -p, stat,
--- listing, removal, the check that secrets files are private, the lock
--- file that keeps two runs off one cluster, and path helpers.
---
--- Lua has no octal literals: modes are written in hex or decimal
--- (0x180 = 0600, 0x1a4 = 0644, 0x1c0 = 0700, 0x1ed = 0755).
local core = require "tlr.fs.core"
local opts = require "tlr.opts"

local M = {}

local function check_string(fname, n, v)
  if type(v) ~= "string" then
    error(string.format("bad argument #%d to '%s' (string expected, got %s)", n, fname, type(v)), 3)
  end
end

local function check_mode(fname, mode)
  if mode ~= nil and (mode < 0 or mode > 0xfff) then
    error(string.format("bad argument to '%s' (mode must be 0..0xfff)", fname), 3)
  end
end

-- ========== files ==========

--- Reads a whole file.
---@param path string
---@return string|nil data
---@return string? msg
---@return string? code "ENOENT", "EPERM" or "EIO"
function M.read(path)
  check_string("fs.read", 1, path)
  return core.read(path)
end

--- Writes a whole file with exactly `mode` (the umask does not apply).
--- By default atomically: a temp file in the same directory, fsync, rename
--- over `path`, fsync of the directory; readers see the old or the new file.
---@param path string
---@param data string
---@param o? {mode?: integer, atomic?: boolean} mode default 0x180 (0600); atomic default true
---@return true|nil ok
---@return string? msg
---@return string? code "ENOENT" (no such directory), "EPERM", "EIO"
function M.write(path, data, o)
  check_string("fs.write", 1, path)
  check_string("fs.write", 2, data)
  o = opts.check("fs.write", o, { mode = "integer", atomic = "boolean" })
  check_mode("fs.write", o.mode)
  return core.write(path, data, o.mode or 0x180, o.atomic ~= false)
end

--- Creates a directory and any missing parents (mkdir -p).  Directories it
--- creates get exactly `mode`; existing ones are left alone.
---@param path string
---@param o? {mode?: integer} default 0x1ed (0755)
---@return true|nil ok
---@return string? msg
---@return string? code "EEXIST" (a file is in the way), "EPERM", "EIO"
function M.mkdir(path, o)
  check_string("fs.mkdir", 1, path)
  o = opts.check("fs.mkdir", o, { mode = "integer" })
  check_mode("fs.mkdir", o.mode)
  return core.mkdir(path, o.mode or 0x1ed)
end

--- True when `path` exists (a dangling symlink does not).
---@param path string
---@return boolean
function M.exists(path)
  check_string("fs.exists", 1, path)
  return core.exists(path)
end

---@class tlr.fs.Stat
---@field type "file"|"dir"|"symlink"|"char"|"block"|"fifo"|"socket"|"other"
---@field size integer
---@field mode integer permission bits, e.g. 0x180 for 0600
---@field mtime integer seconds since the epoch
---@field uid integer
---@field gid integer

--- Describes a file.
---@param path string
---@param o? {follow?: boolean} follow symlinks (default true); false describes the link itself
---@return tlr.fs.Stat|nil st
---@return string? msg
---@return string? code "ENOENT", "EPERM", "EIO"
function M.stat(path, o)
  check_string("fs.stat", 1, path)
  o = opts.check("fs.stat", o, { follow = "boolean" })
  return core.stat(path, o.follow ~= false)
end

--- Removes a file, a symlink or an empty directory; with `recursive`, a tree.
--- Symlinks are removed, never followed.
---@param path string
---@param o? {recursive?: boolean}
---@return true|nil ok
---@return string? msg
---@return string? code "ENOENT" (missing), "EPERM", "EIO" (e.g. directory not empty)
function M.remove(path, o)
  check_string("fs.remove", 1, path)
  o = opts.check("fs.remove", o, { recursive = "boolean" })
  return core.remove(path, o.recursive == true)
end

--- Lists a directory's entries (names only, without "." and ".."), sorted.
---@param path string
---@return string[]|nil names
---@return string? msg
---@return string? code "ENOENT", "EPERM", "EIO"
function M.list(path)
  check_string("fs.list", 1, path)
  local names, msg, code = core.list(path)
  if not names then return nil, msg, code end
  table.sort(names)
  return names
end

--- Checks that a secrets file is private: no access at all for group or others.
---@param path string
---@return true|nil ok
---@return string? msg says the mode found and the chmod that fixes it
---@return string? code "EPERM" (too open), "ENOENT"
function M.check_private(path)
  check_string("fs.check_private", 1, path)
  return core.check_private(path)
end

---@class tlr.fs.Lock
---@field unlock fun(self: tlr.fs.Lock): true releases it (idempotent; also close/__gc/__close)
---@field close fun(self: tlr.fs.Lock): true
---@field held fun(self: tlr.fs.Lock): boolean

--- Takes an exclusive lock on `path` (created 0600) without waiting, and
--- writes our pid into it.  Release it with `:unlock()`, or hold it in a
--- `<close>` variable; it is also released when the process exits.
---@param path string
---@return tlr.fs.Lock|nil lock
---@return string? msg "<path> is locked by another process (pid N)"
---@return string? code "ELOCKED", or "ENOENT"/"EPERM"/"EIO" when it cannot be opened
function M.lock(path)
  check_string("fs.lock", 1, path)
  return core.lock(path)
end

--- The value of an environment variable, or nil.
---@param name string
---@return string|nil
function M.env(name)
  check_string("fs.env", 1, name)
  return os.getenv(name)
end

--- Creates a fresh private (0700) directory under $TMPDIR (or /tmp) and
--- returns its path; remove it with `fs.remove(dir, {recursive = true})`.
---@param prefix? string default "tlr"
---@return string|nil dir
---@return string? msg
---@return string? code
function M.tmpdir(prefix)
  if prefix ~= nil then check_string("fs.tmpdir", 1, prefix) end
  if prefix and prefix:find("/", 1, true) then
    error("bad argument #1 to 'fs.tmpdir' (prefix must not contain '/')", 2)
  end
  local base = os.getenv("TMPDIR")
  if not base or base == "" then base = "/tmp" end
  return core.mkdtemp(M.join(base, (prefix or "tlr") .. "-XXXXXX"))
end

-- ========== paths (strings only; the file system is not consulted) ==========

--- Joins path parts with "/"; an absolute part starts over ("a", "/b" -> "/b").
---@param ... string
---@return string
function M.join(...)
  local out = ""
  for i = 1, select("#", ...) do
    local part = select(i, ...)
    check_string("fs.join", i, part)
    if part:sub(1, 1) == "/" or out == "" then
      out = part
    elseif part ~= "" then
      out = (out:sub(-1) == "/" and out or out .. "/") .. part
    end
  end
  return out
end

--- The directory part of a path, like dirname(1): "a/b" -> "a", "b" -> ".", "/a" -> "/".
---@param path string
---@return string
function M.dirname(path)
  check_string("fs.dirname", 1, path)
  local p = path:gsub("/+$", "")
  if p == "" then return path:sub(1, 1) == "/" and "/" or "." end
  local dir = p:match("^(.*)/[^/]*$")
  if not dir then return "." end
  dir = dir:gsub("/+$", "")
  return dir == "" and "/" or dir
end

--- The last part of a path, like basename(1): "a/b/" -> "b", "/" -> "/".
---@param path string
---@return string
function M.basename(path)
  check_string("fs.basename", 1, path)
  local p = path:gsub("/+$", "")
  if p == "" then return path:sub(1, 1) == "/" and "/" or "" end
  return (p:match("([^/]*)$"))
end

--- An absolute, normalised form of `path` (relative to the current
--- directory); "." and ".." are resolved as text, symlinks are not.
---@param path string
---@return string|nil abs
---@return string? msg when the current directory cannot be read
---@return string? code
function M.abs(path)
  check_string("fs.abs", 1, path)
  if path:sub(1, 1) ~= "/" then
    local cwd, msg, code = core.cwd()
    if not cwd then return nil, msg, code end
    path = cwd .. "/" .. path
  end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

return M
