--- Logging and the live progress view.
---
--- All output goes to stderr (stdout is for results scripts read).  On a TTY
--- running tasks are shown as a live block, one line per task (name, state,
--- elapsed), redrawn as they change; elsewhere every change is a plain line;
--- with --json every line is one JSON event.  Values registered with
--- `log.secret` are masked in everything this module prints, errors included.
local host = require "tlr.host.core"
local sched = require "tlr.sched"

local M = {}

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }
local config = {
  level = LEVELS.info,
  json = false,
  tty = host.isatty(2), -- in effect: want_tty and not json
  want_tty = host.isatty(2),
  out = io.stderr,
}
local secrets = {} -- list of strings to mask, longest first
local MASK = "<redacted>"

-- ========== secrets ==========

--- Registers a value that must never be printed; returns it unchanged.
--- Strings shorter than 4 bytes are not registered (they would mask too much).
---@param value string
---@return string
function M.secret(value)
  if type(value) == "string" and #value >= 4 then
    for _, s in ipairs(secrets) do
      if s == value then return value end
    end
    secrets[#secrets + 1] = value
    table.sort(secrets, function(a, b) return #a > #b end)
  end
  return value
end

--- Returns s with every registered secret replaced by "<redacted>".
--- Overlapping or adjacent occurrences of secrets become one mask, so no
--- part of any secret is left visible.
---@param s any
---@return string
function M.mask(s)
  s = tostring(s)
  if #secrets == 0 then return s end
  local spans = {} -- {first, last} byte ranges of every occurrence in s
  for _, secret in ipairs(secrets) do
    local from = 1
    while true do
      local i, j = s:find(secret, from, true)
      if not i then break end
      spans[#spans + 1] = { i, j }
      from = i + 1
    end
  end
  if #spans == 0 then return s end
  table.sort(spans, function(a, b) return a[1] < b[1] end)
  local out, pos = {}, 1
  local first, last = spans[1][1], spans[1][2]
  for k = 2, #spans + 1 do
    local span = spans[k]
    if span and span[1] <= last + 1 then
      if span[2] > last then last = span[2] end
    else
      out[#out + 1] = s:sub(pos, first - 1)
      out[#out + 1] = MASK
      pos = last + 1
      if span then first, last = span[1], span[2] end
    end
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- ========== output ==========

local json_encode -- loaded on first JSON event, keeps start-up light

-- A copy of v with secrets masked in every string (keys included): the
-- encoder escapes characters, so masking the encoded text alone could miss one.
local function masked_copy(v, depth)
  if type(v) == "string" then return M.mask(v) end
  if type(v) ~= "table" or depth > 16 then return v end
  local copy = {}
  for k, x in pairs(v) do copy[masked_copy(k, depth + 1)] = masked_copy(x, depth + 1) end
  local mt = getmetatable(v) -- keeps array marks such as tlr.json's
  return type(mt) == "table" and setmetatable(copy, mt) or copy
end

local function emit_json(event)
  json_encode = json_encode or require("tlr.json").encode
  local copy = masked_copy(event, 0)
  copy.ts = copy.ts or os.time()
  local text, err = json_encode(copy)
  if not text then
    text = json_encode { level = "error", msg = "log: unencodable event: " .. tostring(err) }
  end
  config.out:write(M.mask(text), "\n")
end

local view = { tasks = {}, order = {}, drawn = 0, timer = nil }

local function clear_view()
  if view.drawn > 0 then
    config.out:write(string.format("\27[%dA\27[J", view.drawn))
    view.drawn = 0
  end
end

local function fmt_elapsed(t)
  return string.format("%.1fs", t)
end

local function draw_view()
  clear_view()
  local width = host.term_width(2)
  local lines = {}
  local t = sched.now()
  for _, task in ipairs(view.order) do
    local line = string.format("  … %-28s %-30s %s", task.name, task.state or "running",
      fmt_elapsed(t - task.started_at))
    lines[#lines + 1] = M.mask(line):sub(1, width - 1)
  end
  if #lines > 0 then config.out:write(table.concat(lines, "\n"), "\n") end
  view.drawn = #lines
end

local function plain(level, text)
  if config.tty and level ~= "info" then text = level .. ": " .. text end
  if not config.tty then text = os.date("%H:%M:%S ") .. level .. " " .. text end
  clear_view()
  config.out:write(M.mask(text), "\n")
  if config.tty and #view.order > 0 then draw_view() end
end

local function log(level, fmt, ...)
  if LEVELS[level] < config.level then return end
  local text = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  if config.json then
    emit_json { level = level, msg = text }
  else
    plain(level, text)
  end
end

--- Logs at the given level; a format string with arguments, or one value.
function M.debug(fmt, ...) log("debug", fmt, ...) end
function M.info(fmt, ...) log("info", fmt, ...) end
function M.warn(fmt, ...) log("warn", fmt, ...) end
function M.error(fmt, ...) log("error", fmt, ...) end

--- Emits a structured event: a JSON line with --json, a plain line otherwise.
---@param event table with at least `event` (a short name)
function M.event(event)
  if config.json then
    emit_json(event)
  elseif LEVELS.info >= config.level then
    local parts = {}
    for k, v in pairs(event) do
      if k ~= "event" then parts[#parts + 1] = k .. "=" .. tostring(v) end
    end
    table.sort(parts)
    plain("info", tostring(event.event) .. " " .. table.concat(parts, " "))
  end
end

-- ========== the task view ==========

local function remove_from_view(task)
  for i, t in ipairs(view.order) do
    if t == task then table.remove(view.order, i) break end
  end
end

local function arm_redraw()
  if view.timer or not config.tty or #view.order == 0 then return end
  view.timer = sched.after(0.25, function()
    view.timer = nil
    if #view.order > 0 then
      draw_view()
      arm_redraw()
    end
  end)
end

local function on_task(task, what)
  if not config.progress or task.name == "main" or task.name:match("^task#") then return end
  local elapsed = sched.now() - task.started_at
  if config.json then
    emit_json { event = "task", task = task.name, status = what == "end" and task.status or what,
      state = task.state, elapsed = what == "end" and elapsed or nil,
      error = task.err and require("tlr.errors").message(task.err) or nil }
    return
  end
  if what == "start" then
    if config.tty then
      view.order[#view.order + 1] = task
      draw_view()
      arm_redraw()
    else
      plain("info", task.name .. ": started")
    end
  elseif what == "state" then
    if config.tty then draw_view() else plain("info", task.name .. ": " .. tostring(task.state)) end
  else
    remove_from_view(task)
    local mark = task.status == "done" and "done" or task.status
    local text = string.format("%s: %s in %s", task.name, mark, fmt_elapsed(elapsed))
    if task.err then text = text .. " (" .. require("tlr.errors").message(task.err) .. ")" end
    plain(task.status == "done" and "info" or "warn", text)
  end
end

--- Changes settings: level ("debug"|"info"|"warn"|"error"), json, tty,
--- progress (show named tasks), out (a file handle).
function M.configure(opts)
  require("tlr.opts").check("log.configure", opts, {
    level = "string", json = "boolean", tty = "boolean", progress = "boolean", out = "any",
  })
  if opts.level then
    config.level = LEVELS[opts.level] or error("log.configure: unknown level '" .. opts.level .. "'", 2)
  end
  for _, k in ipairs { "json", "progress", "out" } do
    if opts[k] ~= nil then config[k] = opts[k] end
  end
  if opts.tty ~= nil then config.want_tty = opts.tty end
  config.tty = config.want_tty and not config.json -- JSON lines never draw the live view
  if not config.tty then view.order, view.drawn = {}, 0 end
  sched.hooks.task = config.progress and on_task or nil
end

--- Forgets all registered secrets (tests).
function M.reset_secrets() secrets = {} end

return M
