--- `tlr repl`: interactive Lua with the tlr modules.
---
--- Reads lines with libedit (tlr.repl.core), runs each complete chunk as a
--- task so blocking calls (tlr.sleep, HTTP, the API clients) work, prints
--- results with tlr.pretty and errors as one line.  Ctrl-C cancels the running
--- chunk; at the prompt it drops the line.  Completion is extensible: a module
--- registers `fn(word, line, start)` with `repl.add_completer` (see docs/repl.md).
local core = require "tlr.repl.core"
local loop = require "tlr.loop.core"
local sched = require "tlr.sched"
local errors = require "tlr.errors"
local pretty = require "tlr.pretty"
local opts_check = require("tlr.opts").check

local M = {}

local PROMPT, CONTINUE = "tlr> ", "...> "
local CHUNKNAME = "=input"

-- ========== completion ==========

local completers = {} -- added by modules, asked before the built-in one

--- Adds a completer: `fn(word, line, start)` returns a list of candidates
--- that replace `word` (the text before the cursor back to the last of
--- ` \t\n"'(),=[]+*<>~;`), or nil.  `line` is the whole line and
--- `line:sub(1, start)` the text before the word.  Completers run outside
--- any task, so a blocking call in one drives the loop; keep them quick.
---@param fn fun(word: string, line: string, start: integer): string[]|nil
function M.add_completer(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'repl.add_completer' (function expected, got " .. type(fn) .. ")", 2)
  end
  for _, f in ipairs(completers) do
    if f == fn then return end
  end
  completers[#completers + 1] = fn
end

--- Removes a completer added with add_completer; returns whether it was there.
---@param fn function
---@return boolean
function M.remove_completer(fn)
  for i, f in ipairs(completers) do
    if f == fn then
      table.remove(completers, i)
      return true
    end
  end
  return false
end

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}

local COMMANDS = { ":debug", ":help", ":quit" }

--- True when `text` ends inside a string literal or a comment.
local function in_string(text)
  local i, n, quote = 1, #text, nil
  while i <= n do
    local c = text:sub(i, i)
    if quote then
      if c == "\\" then i = i + 1 elseif c == quote then quote = nil end
    elseif c == '"' or c == "'" then
      quote = c
    elseif text:sub(i, i + 1) == "--" or text:sub(i, i + 1) == "[[" then
      return true
    end
    i = i + 1
  end
  return quote ~= nil
end

--- The names `tlr.<name>` loads on first use and has not loaded yet
--- (init.lua lists them as its metatable's `modules`).
local function tlr_module_names(t)
  local mt = getmetatable(t)
  local lazy = type(mt) == "table" and rawget(mt, "modules") or {}
  local names = {}
  for name in pairs(lazy) do
    if type(name) == "string" and rawget(t, name) == nil then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

--- t[key] without running __index functions (the tlr table's lazy modules aside).
local function peek(t, key)
  for _ = 1, 16 do -- follows an __index chain of tables
    local v
    if type(t) == "table" then
      v = rawget(t, key)
      if v ~= nil then return v end
    end
    local mt = getmetatable(t)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(index) == "function" and t == rawget(_G, "tlr") then
      local ok, mod = pcall(index, t, key)
      return ok and mod or nil
    end
    if type(index) ~= "table" then return nil end
    t = index
  end
end

--- The identifier keys reachable from value v (methods only when `methods`).
local function field_names(v, methods)
  local names, seen = {}, {}
  local function add(k, value)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k]
        and (not methods or type(value) == "function") then
      seen[k] = true
      names[#names + 1] = k
    end
  end
  local t = v
  for _ = 1, 16 do
    if type(t) == "table" then
      for k, value in next, t do add(k, value) end
    end
    local mt = getmetatable(t)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(index) ~= "table" then break end
    t = index
  end
  if type(v) == "table" and v == rawget(_G, "tlr") and not methods then
    for _, name in ipairs(tlr_module_names(v)) do add(name, true) end
  end
  return names
end

--- The built-in completer: global names, keywords, fields (`tlr.ht`),
--- methods (`s:fo`) and the REPL's commands.
local function complete_lua(word, line, start)
  local before = line:sub(1, start)
  if before:match("^%s*$") and word:sub(1, 1) == ":" then
    local out = {}
    for _, c in ipairs(COMMANDS) do
      if c:sub(1, #word) == word then out[#out + 1] = c end
    end
    return out
  end
  if before:match("^%s*:debug%s+$") then return { "off", "on" } end
  if in_string(before) then return nil end
  local lead, expr = word:match("^(.-)([%a_][%w_%.:]*)$")
  if not lead then
    if word ~= "" and word:match("[%w_%.:]$") then return nil end
    lead, expr = word, ""
  elseif lead:match("[%w_%.:]$") then
    return nil -- 5abc, x..y and the like
  end
  local out = {}
  local base, sep, partial = expr:match("^(.*)([%.:])([%w_]*)$")
  if not base then
    for k in next, _G do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and k:sub(1, #expr) == expr then
        out[#out + 1] = lead .. k
      end
    end
    for _, k in ipairs(KEYWORDS) do
      if k:sub(1, #expr) == expr then out[#out + 1] = lead .. k end
    end
    return out
  end
  local v = _G
  for segment in (base .. "."):gmatch("(.-)%.") do
    if not segment:match("^[%a_][%w_]*$") then return nil end
    v = peek(v, segment)
    if v == nil then return nil end
  end
  if sep == ":" and type(v) == "string" then v = string end
  for _, k in ipairs(field_names(v, sep == ":")) do
    if k:sub(1, #partial) == partial then out[#out + 1] = lead .. base .. sep .. k end
  end
  return out
end

--- All candidates for `word`: the added completers' and the built-in ones,
--- sorted, without duplicates.  A completer that raises is skipped.
---@param word string
---@param line string
---@param start integer the byte offset of word in line (0-based)
---@return string[]
function M.complete(word, line, start)
  local seen, out = {}, {}
  local function take(list)
    if type(list) ~= "table" then return end
    for _, c in ipairs(list) do
      if type(c) == "string" and not seen[c] then
        seen[c] = true
        out[#out + 1] = c
      end
    end
  end
  for _, fn in ipairs(completers) do
    local ok, list = pcall(fn, word, line, start)
    if ok then take(list) end
  end
  take(complete_lua(word, line, start))
  table.sort(out)
  return out
end

-- ========== evaluation ==========

--- Compiles `text`, first as an expression.  Returns a function that runs
--- it and returns its results packed, or nil and either "incomplete" or the
--- syntax error.
local function compile(text)
  local fn, err_expr = load("return " .. text, CHUNKNAME, "t")
  if fn then
    -- the same expression, not as a tail call: its frame stays in tracebacks
    fn = load("local pack = ...; return pack(" .. text .. "\n)", CHUNKNAME, "t")
    if fn then return function() return fn(table.pack) end end
  end
  local err
  fn, err = load(text, CHUNKNAME, "t")
  if fn then return function() return table.pack(fn()) end end
  -- lua.c's rule: a chunk that fails at <eof> may be completed by more lines
  if err:sub(-5) == "<eof>" or (err_expr and err_expr:sub(-5) == "<eof>") then
    return nil, "incomplete"
  end
  return nil, err
end

--- A traceback without the REPL's own frames below the input chunk.
local function traceback(msg)
  local tb = debug.traceback(msg, 3)
  return tb:match("^(.*in main chunk)") or tb
end

local function traceback_handler(err)
  if type(err) == "table" then
    if rawget(err, "traceback") == nil then
      local tb = traceback("")
      pcall(function() err.traceback = tb end) -- a read-only table keeps none
    end
    return err
  end
  return traceback(tostring(err))
end

--- Runs fn as a task; Ctrl-C cancels it.  Returns ok, results (packed) or
--- false, err, interrupted.
local function evaluate(fn)
  local task = sched.spawn(function() return table.pack(xpcall(fn, traceback_handler)) end)
  local interrupted = false
  sched.on_interrupt = function()
    interrupted = true
    task:cancel()
  end
  -- a chunk that never waits never reaches the loop's poll: check for
  -- Ctrl-C every 10000 instructions too
  debug.sethook(task.co, function()
    if loop.interrupted() then
      interrupted = true
      errors.raise("ECANCELED", "interrupted")
    end
  end, "", 10000)
  local ok, packed = pcall(task.wait, task)
  sched.on_interrupt = nil
  if not ok then return false, packed, interrupted end
  if not packed[1] then
    local err = packed[2]
    return false, err, interrupted and errors.is(err, "ECANCELED")
  end
  return true, packed[2]
end

-- ========== the session ==========

local function mask(text)
  return require("tlr.log").mask(text)
end

local function write_err(text)
  io.stdout:flush()
  io.stderr:write(mask(text), "\n")
  io.stderr:flush()
end

--- One line (message and code), plus the traceback in debug mode.
local function error_text(err, debug_on)
  local text = errors.message(err)
  if not debug_on then text = text:gsub("\n.*", "") end
  if errors.is(err) and err.code then text = text .. " [" .. err.code .. "]" end
  if debug_on then
    local tb = type(err) == "string" and err:match("\n(stack traceback:.*)$")
      or type(err) == "table" and rawget(err, "traceback")
    if tb then text = text .. "\n" .. (tostring(tb):gsub("^\n", "")) end
  end
  return text
end

local function print_results(results)
  if results.n == 0 then return end
  local parts, multiline = {}, false
  for i = 1, results.n do
    parts[i] = pretty.format(results[i])
    if parts[i]:find("\n", 1, true) then multiline = true end
  end
  io.stdout:write(mask(table.concat(parts, multiline and "\n" or "\t")), "\n")
  io.stdout:flush()
end

local function help_text(session)
  local tlr = rawget(_G, "tlr") or require("tlr")
  local modules = {}
  for _, name in ipairs(tlr_module_names(tlr)) do modules[#modules + 1] = "tlr." .. name end
  for k, v in pairs(tlr) do
    if type(v) == "table" and k:match("^[%a_][%w_]*$") and k ~= "options" then
      modules[#modules + 1] = "tlr." .. k
    end
  end
  table.sort(modules)
  local funcs = {}
  for k, v in pairs(tlr) do
    if type(v) == "function" then funcs[#funcs + 1] = "tlr." .. k end
  end
  table.sort(funcs)
  return table.concat({
    "commands:",
    "  :help          this text",
    "  :quit          leave (also Ctrl-D)",
    "  :debug on|off  tracebacks with errors (now " .. (session.debug and "on" or "off") .. ")",
    "keys: Tab completes names, fields and methods; Up/Down walk the history;",
    "      Ctrl-C cancels the running call or drops the line being typed",
    "modules: " .. table.concat(modules, " "),
    "tasks: " .. table.concat(funcs, " "),
  }, "\n")
end

--- Runs a `:command`; returns true when the REPL should end.
local function command(session, text)
  local name, arg = text:match("^:(%a*)%s*(.-)%s*$")
  if name == "quit" or name == "q" or name == "exit" then
    return true
  elseif name == "help" or name == "h" then
    io.stdout:write(help_text(session), "\n")
  elseif name == "debug" then
    if arg == "on" then session.debug = true
    elseif arg == "off" then session.debug = false
    elseif arg ~= "" then write_err("usage: :debug on|off")
    end
    io.stdout:write("debug ", session.debug and "on" or "off", "\n")
  else
    write_err("unknown command '" .. text .. "' (try :help)")
  end
  io.stdout:flush()
  return false
end

local function history_path(opts)
  if opts.history then return opts.history end
  local env = os.getenv("TLR_HISTORY")
  if env and env ~= "" then return env end
  local home = os.getenv("HOME")
  return home and home ~= "" and (home .. "/.tlr_history") or nil
end

--- Adds a chunk to the history unless it repeats the last entry.
local function remember(session, text)
  if text ~= session.last_entry then
    core.add_history(text)
    session.last_entry = text
  end
end

--- Compiles and runs one chunk and prints what came of it.
local function run_chunk(session, fn)
  local ok, result, interrupted = evaluate(fn)
  if ok then
    local printed, err = pcall(print_results, result)
    if not printed then write_err("tlr: cannot print the result: " .. errors.message(err)) end
  elseif interrupted then
    write_err(session.tty and "\ninterrupted" or "interrupted") -- after the tty's ^C
  else
    write_err(error_text(result, session.debug))
  end
end

--- Handles one line of input; returns true when the REPL should end.
local function submit(session, line)
  local text = session.buffer and (session.buffer .. "\n" .. line) or line
  session.buffer = nil
  if text:match("^%s*$") then return false end
  if text:match("^%s*:[^:]") or text:match("^%s*:$") then
    remember(session, text)
    return command(session, text:match("^%s*(.-)%s*$"))
  end
  local fn, err = compile(text)
  if err == "incomplete" then
    session.buffer = text
    return false
  end
  remember(session, text)
  if fn then run_chunk(session, fn) else write_err(err) end
  return false
end

--- Runs the REPL until :quit or end of input; returns the exit status.
---@param opts? {debug?: boolean, json?: boolean, history?: string}
---  debug: tracebacks with errors; json: accepted for the CLI, ignored;
---  history: the history file (default $TLR_HISTORY, else ~/.tlr_history)
---@return integer
function M.main(opts)
  opts = opts_check("repl.main", opts, { debug = "boolean", json = "boolean", history = "string" })
  local session = {
    debug = opts.debug == true,
    tty = require("tlr.host.core").isatty(0),
    buffer = nil, -- the unfinished chunk so far
    last_entry = nil,
  }
  local history = history_path(opts)
  if history then core.load_history(history) end
  core.set_completer(M.complete)
  if os.getenv("PVE_ENDPOINT") then -- `pve` from the environment (build/lab/env works)
    local explore = require "tlr.proxmox.explore"
    local client, err = explore.connect_from_env()
    if client then
      rawset(_G, "pve", client)
      M.add_completer(explore.completer("pve"))
      io.stdout:write("pve: connected to ", client.endpoint, " (try pve:get(\"/nodes\"), pve:help(path, method))\n")
    else
      write_err("pve: " .. mask(tostring(err)))
    end
  end
  loop.catch_sigint(true)
  while true do
    io.stdout:flush()
    local line, why = core.readline(session.buffer and CONTINUE or PROMPT)
    if line then
      if submit(session, line) then break end
    elseif why == "interrupted" then -- Ctrl-C at the prompt drops the line
      session.buffer = nil
      io.stdout:write("\n")
    else -- end of input
      io.stdout:write("\n")
      break
    end
  end
  loop.catch_sigint(false)
  if history then
    local ok, err = core.save_history(history)
    if not ok then write_err("tlr: history not saved: " .. tostring(err)) end
  end
  return 0
end

return M
