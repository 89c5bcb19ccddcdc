-- `tlr repl` (lua/tlr/repl.lua + runtime/repl.c): the completion functions
-- directly, then the real REPL driven through tmux on a private socket, in a
-- detached session of fixed size.  $TLR_BIN picks the binary (build/tlr by
-- default; tests/ci.sh runs the suite again with the ASan build).
local sched = require "tlr.sched"
local repl = require "tlr.repl"

local BIN = os.getenv("TLR_BIN") or "build/tlr"
local DEADLINE = 8 -- seconds for one expected output (ASan start-up is slow)

local function shquote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- Runs a shell command; returns its output (stdout and stderr) and whether it succeeded.
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

-- ========== completion, without a terminal ==========

describe("tlr.repl completion", function()
  local saved_tlr
  setup(function()
    saved_tlr = rawget(_G, "tlr")
    _G.tlr = require "tlr"
  end)
  teardown(function() _G.tlr = saved_tlr end)

  it("completes globals, fields, methods and tlr's lazily loaded modules", function()
    assert.are.same({ "string.format" }, repl.complete("string.fo", "string.fo", 0))
    assert.are.same({ "tlr.http" }, repl.complete("tlr.ht", "x = tlr.ht", 4))
    assert.are.same({ "{tlr.sleep" }, repl.complete("{tlr.sl", "t = {tlr.sl", 4))
    assert.are.same({ "io.stdout:write" }, repl.complete("io.stdout:wr", "io.stdout:wr", 0))
    _G.__repl_obj = setmetatable({ mine = 1 }, { __index = { method = function() end, metal = 2 } })
    assert.are.same({ "__repl_obj:method" }, repl.complete("__repl_obj:me", "__repl_obj:me", 0))
    assert.are.same({ "__repl_obj.metal", "__repl_obj.method", "__repl_obj.mine" },
      repl.complete("__repl_obj.m", "__repl_obj.m", 0))
    _G.__repl_obj = nil
    assert.are.same({ "function" }, repl.complete("functio", "functio", 0))
  end)

  it("completes nothing inside strings and after numbers", function()
    assert.are.same({}, repl.complete("/nodes/", 'pve:get("/nodes/', 9))
    assert.are.same({}, repl.complete("tlr.ht", 'print("a tlr.ht', 7))
    assert.are.same({}, repl.complete("5tlr", "5tlr", 0))
  end)

  it("completes the REPL's commands", function()
    assert.are.same({ ":help" }, repl.complete(":he", ":he", 0))
    assert.are.same({ "off", "on" }, repl.complete("o", ":debug o", 7))
  end)

  it("merges added completers with the built-in one and survives a failing one", function()
    local calls = {}
    local function paths(word, line, start)
      calls[#calls + 1] = { word, line, start }
      if line:sub(1, start):match('pve:get%("$') then return { "/nodes/pve1", "/nodes/pve2" } end
    end
    local function broken() error("completer bug") end
    repl.add_completer(paths)
    repl.add_completer(broken)
    local got = repl.complete("/nodes/p", 'pve:get("/nodes/p', 9)
    local fields = repl.complete("string.fo", "string.fo", 0)
    assert.is_true(repl.remove_completer(paths))
    assert.is_true(repl.remove_completer(broken))
    assert.is_false(repl.remove_completer(paths))
    assert.are.same({ "/nodes/pve1", "/nodes/pve2" }, got)
    assert.are.same({ "string.format" }, fields)
    assert.are.same({ "/nodes/p", 'pve:get("/nodes/p', 9 }, calls[1])
    assert.are.same({}, repl.complete("/nodes/p", 'pve:get("/nodes/p', 9))
    assert.has_error(function() repl.add_completer("nope") end)
  end)

  it("rejects unknown options to main", function()
    assert.has_error(function() repl.main { colour = true } end, nil)
  end)
end)

-- ========== the real REPL in tmux ==========

local Term = {}
Term.__index = Term

--- Starts `BIN repl` in a detached tmux session on a private socket.
function Term.start(history)
  local path, found = sh("command -v tmux")
  if not found or path == "" then
    error("tmux is not installed: run `make deps` (this spec drives the REPL in tmux)", 2)
  end
  local self = setmetatable({}, Term)
  self.socket = string.format("tlr-repl-%d-%d", os.time(), math.random(1, 1e9))
  self.conf = os.tmpname()
  local f = assert(io.open(self.conf, "w"))
  -- keep the pane after the REPL exits, to read its exit status
  f:write("set -g remain-on-exit on\nset -g history-limit 5000\nset -g default-terminal screen\n")
  f:close()
  local env = { "TLR_HISTORY=" .. history }
  local passed = { "TLR_LUA_PATH", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "HOME" }
  for _, name in ipairs(passed) do
    local v = os.getenv(name)
    if v then env[#env + 1] = name .. "=" .. v end
  end
  -- bash reports the exit status on the screen (tmux does not always reap
  -- the pane's process in time to give it as #{pane_dead_status}); with job
  -- control (set -m) the REPL gets a foreground process group of its own, so
  -- Ctrl-C and libedit's re-sent SIGINT reach only the REPL, never bash
  local cmd = "env"
  for _, e in ipairs(env) do cmd = cmd .. " " .. shquote(e) end
  cmd = "bash -c " .. shquote("set -m; " .. cmd .. " " .. shquote(BIN) .. ' repl; echo "[exit $?]"')
  local cwd = sh("pwd"):gsub("\n$", "")
  local out, ok = self:tmux(string.format("-f %s new-session -d -s repl -x 100 -y 30 -c %s %s",
    shquote(self.conf), shquote(cwd), shquote(cmd)))
  assert(ok, "tmux new-session failed: " .. out)
  return self
end

function Term:tmux(args)
  return sh("tmux -L " .. shquote(self.socket) .. " " .. args)
end

function Term:stop()
  local socket_path = self:tmux("display -p '#{socket_path}'"):match("^(/%S+)")
  self:tmux("kill-server")
  if socket_path then os.remove(socket_path) end -- tmux leaves it behind
  os.remove(self.conf)
end

--- The pane's lines (history included), trailing blanks dropped.
function Term:lines()
  local out = self:tmux("capture-pane -p -J -S - -t repl")
  local lines = {}
  for line in (out .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = (line:gsub("%s+$", "")) end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  return lines
end

--- Polls the pane until `check(lines)` returns a value; raises with the
--- screen after the deadline, or at once when the REPL has exited.
function Term:wait(what, check)
  local deadline = sched.now() + DEADLINE
  while true do
    local lines = self:lines()
    local result = check(lines)
    if result then return result end
    local problem = sched.now() > deadline and "timed out" or nil
    for i = #lines, math.max(1, #lines - 3), -1 do
      if lines[i]:match("^%[exit %d+%]$") then problem = "the REPL exited" end
    end
    if problem then
      error(problem .. " waiting for " .. what .. "; the screen:\n" .. table.concat(lines, "\n"), 2)
    end
    sched.sleep(0.03)
  end
end

--- Waits for an idle prompt and returns its line number.
function Term:prompt()
  return self:wait("the prompt", function(lines)
    if lines[#lines] == "tlr>" then return #lines end
  end)
end

--- Types text (literally) at the prompt; returns the prompt's line number.
function Term:type(text)
  local at = self:prompt()
  self:tmux("send-keys -t repl -l " .. shquote(text))
  return at
end

function Term:key(name)
  self:tmux("send-keys -t repl " .. name)
end

--- Enters `text` and waits for the next prompt; returns the lines in between.
function Term:run(text)
  local at = self:type(text)
  self:key("Enter")
  return self:wait("the prompt after " .. text, function(lines)
    if #lines > at and lines[#lines] == "tlr>" then
      return { table.unpack(lines, at, #lines - 1) }
    end
  end)
end

--- Waits for a line matching `pattern` after line `from`.
function Term:expect(pattern, from)
  return self:wait("a line matching " .. pattern, function(lines)
    for i = from or 1, #lines do
      if lines[i]:match(pattern) then return i end
    end
  end)
end

describe("tlr repl in a terminal", function()
  local term, history

  setup(function()
    history = os.tmpname()
    os.remove(history) -- the REPL must create it
    term = Term.start(history)
  end)

  teardown(function()
    if term then term:stop() end
    os.remove(history)
  end)

  it("prints the value of an expression", function()
    assert.are.same({ "tlr> 6*7", "42" }, term:run("6*7"))
    local out = term:run('"a" .. "b", 1.5, nil')
    assert.are.equal(2, #out)
    assert.matches('^"ab"%s+1%.5%s+nil$', out[2])
  end)

  it("continues an incomplete chunk on the next lines", function()
    local at = term:type("function sq(x)")
    term:key("Enter")
    term:expect("^%.%.%.>$", at + 1)
    term:tmux("send-keys -t repl -l " .. shquote("return x * x"))
    term:key("Enter")
    term:expect("^%.%.%.>$", at + 2)
    term:tmux("send-keys -t repl -l end")
    term:key("Enter")
    term:prompt()
    assert.are.same({ "tlr> sq(12)", "144" }, term:run("sq(12)"))
  end)

  it("prints a table indented, keys sorted", function()
    assert.are.same({
      'tlr> {name="x", tags={"a","b"}, spec={cpu=2, mem={size=4096}}, ["x y"]=true}',
      "{",
      '  name = "x",',
      "  spec = {",
      "    cpu = 2,",
      "    mem = { size = 4096 }",
      "  },",
      '  tags = { "a", "b" },',
      '  ["x y"] = true',
      "}",
    }, term:run('{name="x", tags={"a","b"}, spec={cpu=2, mem={size=4096}}, ["x y"]=true}'))
  end)

  it("prints a list of records as columns", function()
    local input = '{{id="vm/100", name="cp-1", mem=2048}, {id="vm/101", name="w-1", mem=512},'
      .. ' {id="node/pve", status="online"}}'
    assert.are.same({
      "tlr> " .. input,
      "id        name  status   mem",
      "--------  ----  ------  ----",
      "vm/100    cp-1          2048",
      "vm/101    w-1            512",
      "node/pve        online",
    }, term:run(input))
  end)

  it("completes tlr.ht to tlr.http and string.fo to string.format with Tab", function()
    local at = term:type("tlr.ht")
    term:key("Tab")
    term:expect("^tlr> tlr%.http$", at)
    term:key("C-c") -- drops the line
    at = term:type("string.fo")
    term:key("Tab")
    term:expect("^tlr> string%.format$", at)
    term:key("C-c")
    assert.are.same({ "tlr> 3+4", "7" }, term:run("3+4"))
  end)

  it("cancels a running call on Ctrl-C and stays usable", function()
    local t0 = sched.now()
    local at = term:type('print("sleeping") tlr.sleep(30)')
    term:key("Enter")
    term:expect("^sleeping$", at + 1)
    term:key("C-c")
    term:expect("^interrupted$", at + 2)
    assert.are.same({ "tlr> 1+1", "2" }, term:run("1+1"))
    assert.is_true(sched.now() - t0 < 10, "the sleep was not cancelled")
  end)

  it("cancels a busy loop that never waits on Ctrl-C", function()
    local at = term:type('print("spinning") while true do end')
    term:key("Enter")
    term:expect("^spinning$", at + 1)
    term:key("C-c")
    term:expect("^interrupted$", at + 2)
    assert.are.same({ "tlr> 2+2", "4" }, term:run("2+2"))
  end)

  it("prints a runtime error as one line and continues", function()
    assert.are.same({ "tlr> nil + 1", "input:1: attempt to perform arithmetic on a nil value" },
      term:run("nil + 1"))
    assert.are.same({ 'tlr> error("boom")', "input:1: boom" }, term:run('error("boom")'))
    assert.are.same({ "tlr> 10 // 3", "3" }, term:run("10 // 3"))
  end)

  it("shows tracebacks after :debug on and lists the modules in :help", function()
    assert.are.same({ "tlr> :debug on", "debug on" }, term:run(":debug on"))
    local out = term:run('error("deep")')
    assert.are.equal("input:1: deep", out[2])
    assert.are.equal("stack traceback:", out[3])
    term:run(":debug off")
    local help = table.concat(term:run(":help"), "\n")
    assert.matches(":quit", help, 1, true)
    assert.matches("tlr.http", help, 1, true)
  end)

  it("survives Ctrl-C at an empty prompt", function()
    local at = term:prompt()
    term:key("C-c")
    term:wait("a fresh prompt", function(lines)
      if #lines > at and lines[#lines] == "tlr>" then return true end
    end)
    assert.are.same({ "tlr> 2+3", "5" }, term:run("2+3"))
  end)

  it("writes the history file on :quit and exits with status 0", function()
    local at = term:type(":quit")
    term:key("Enter")
    local status = term:wait("the REPL to exit", function(lines)
      for i = at + 1, #lines do
        local code = lines[i]:match("^%[exit (%d+)%]$")
        if code then return code end
      end
    end)
    assert.are.equal("0", status, table.concat(term:lines(), "\n"))
    local f = assert(io.open(history, "r"), "no history file at " .. history)
    local text = f:read("a")
    f:close()
    assert.matches("6*7", text, 1, true)
    assert.matches("sq(12)", text, 1, true)
    assert.matches("10 // 3", (text:gsub("\\040", " ")), 1, true)
  end)
end)
