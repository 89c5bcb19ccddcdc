--- gzip and tar: what tlr needs to read Talos' kubeconfig tarball and to
--- compress uploads.  Inputs over 1 MiB are (de)compressed on the worker
--- pool, so other tasks keep running meanwhile.
local core = require "tlr.archive.core"
local opts = require "tlr.opts"
local sched = require "tlr.sched"

local M = {}

--- Inputs larger than this many bytes go to a worker thread.
M.ASYNC_MIN = 1024 * 1024

--- The default output limit of gunzip (256 MiB).
M.MAX_SIZE = 256 * 1024 * 1024

local function check_data(fname, data)
  if type(data) ~= "string" then
    error(string.format("bad argument #1 to '%s' (string expected, got %s)", fname, type(data)), 3)
  end
end

--- Decompresses gzip data (every member of a multi-member file).
---@param data string
---@param o? {max_size?: integer} max_size: output limit in bytes (default 256 MiB)
---@return string|nil data
---@return string? msg
---@return string? code "EINVAL" (not gzip, corrupt, truncated), "ETOOBIG" (over max_size)
function M.gunzip(data, o)
  check_data("archive.gunzip", data)
  o = opts.check("archive.gunzip", o, { max_size = "integer" })
  local max = o.max_size or M.MAX_SIZE
  if max < 0 then error("bad argument to 'archive.gunzip' (max_size must be >= 0)", 2) end
  if #data > M.ASYNC_MIN then return sched.await_job(core.gunzip(data, max, true)) end
  return core.gunzip(data, max, false)
end

--- Compresses data as one gzip member (no file name, mtime 0: the output
--- depends only on the input and the level).
---@param data string
---@param o? {level?: integer} level: 0 (store) .. 9 (smallest), default 6
---@return string|nil gz
---@return string? msg
---@return string? code
function M.gzip(data, o)
  check_data("archive.gzip", data)
  o = opts.check("archive.gzip", o, { level = "integer" })
  local level = o.level or 6
  if level < 0 or level > 9 then error("bad argument to 'archive.gzip' (level must be 0..9)", 2) end
  if #data > M.ASYNC_MIN then return sched.await_job(core.gzip(data, level, true)) end
  return core.gzip(data, level, false)
end

---@class tlr.archive.Entry
---@field name string the path as stored ("dir/" for directories written by tar)
---@field type "file"|"dir"|"symlink"|"hardlink"|"char"|"block"|"fifo"|"other"
---@field size integer
---@field mode integer permission bits (0x1a4 is 0644)
---@field mtime integer seconds since the epoch
---@field uid integer
---@field gid integer
---@field data? string the contents (files only)
---@field linkname? string the target (symlinks and hard links)

--- Lists the entries of a tar archive (ustar, GNU long names, pax paths).
--- A missing end-of-archive is fine; a cut-off entry or a bad checksum is not.
---@param data string the tar bytes (gunzip a .tar.gz first)
---@return tlr.archive.Entry[]|nil entries in archive order
---@return string? msg
---@return string? code "EINVAL"
function M.untar(data)
  check_data("archive.untar", data)
  return core.untar(data)
end

--- Finds the entry called `name` (with or without a leading "./").
---@param entries tlr.archive.Entry[]
---@param name string
---@return tlr.archive.Entry|nil
function M.find(entries, name)
  if type(entries) ~= "table" then
    error("bad argument #1 to 'archive.find' (table expected, got " .. type(entries) .. ")", 2)
  end
  local bare = name:gsub("^%./", "")
  for _, e in ipairs(entries) do
    if e.name == bare or e.name == "./" .. bare then return e end
  end
  return nil
end

return M
