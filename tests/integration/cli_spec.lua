-- The tlr executable: commands, exit codes, error lines, --lua-dir.
local H = require "helper"
local bin = os.getenv("TLR_BIN") or "build/tlr"

local function run(args, env)
  local out, status = H.capture((env or "") .. " " .. bin .. " " .. args)
  return out, status
end

describe("tlr CLI", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("prints the versions of tlr and its libraries", function()
    local out, status = run("version")
    assert.are.equal(0, status)
    assert.matches("^tlr %d+%.%d+%.%d+\n", out)
    assert.matches("Lua 5%.4", out)
    assert.matches("libcurl %d", out)
    assert.matches("OpenSSL 3", out)
    assert.matches("libyaml 0%.2", out)
  end)

  it("prints help, and help for one command", function()
    local out, status = run("help")
    assert.are.equal(0, status)
    assert.matches("run FILE", out)
    out, status = run("help plan")
    assert.are.equal(0, status)
    assert.matches("nothing is changed", out)
    out, status = run("help nope")
    assert.are.equal(2, status)
  end)

  it("exits 2 on usage errors", function()
    local out, status = run("frobnicate")
    assert.are.equal(2, status)
    assert.matches("unknown command 'frobnicate'", out)
    assert.are.equal(2, select(2, run("--bogus version")))
    assert.are.equal(2, select(2, run("run")))
    assert.are.equal(2, select(2, run("")))
    out, status = run("run " .. dir .. "/missing.lua")
    assert.are.equal(2, status)
    assert.matches("missing.lua", out)
  end)

  it("runs -e chunks with the tlr global and blocking calls", function()
    local out, status = run([[-e "tlr.sleep(0.01) print(type(tlr.spawn), 6*7)"]])
    assert.are.equal(0, status)
    assert.are.equal("function\t42\n", out)
  end)

  it("runs scripts with arguments and passes the mode of run/plan/destroy", function()
    local script = dir .. "/s.lua"
    H.write(script, "print(tlr.mode, table.concat({...}, ','), arg[0] ~= nil, select('#', ...))")
    for _, mode in ipairs { "run", "plan", "destroy" } do
      local out, status = run(mode .. " " .. script .. " a b")
      assert.are.equal(0, status)
      assert.are.equal(mode .. "\ta,b\ttrue\t2\n", out)
    end
    local out = run(script .. " x")
    assert.are.equal("run\tx\ttrue\t1\n", out)
  end)

  it("prints one clear line on failure and exits 1; --debug adds the traceback", function()
    local script = dir .. "/fail.lua"
    H.write(script, "local function f() error('disk on fire') end\nf()\n")
    local out, status = run(script)
    assert.are.equal(1, status)
    assert.matches("disk on fire", out)
    assert.is_nil(out:find("stack traceback", 1, true))
    assert.are.equal(1, select(2, out:gsub("\n", "")))
    out, status = run("--debug " .. script)
    assert.are.equal(1, status)
    assert.matches("stack traceback", out)
  end)

  it("exits 2 for invalid-input error objects and names the code", function()
    local script = dir .. "/inval.lua"
    H.write(script, "tlr.errors.raise('EINVAL', 'site.lua: nodes[2].ip: not in 10.0.0.0/24')")
    local out, status = run(script)
    assert.are.equal(2, status)
    assert.matches("nodes%[2%]%.ip: not in 10%.0%.0%.0/24 %[EINVAL%]", out)
  end)

  it("reports syntax errors with the file name", function()
    local script = dir .. "/syntax.lua"
    H.write(script, "local x = = 1")
    local out, status = run(script)
    assert.are.equal(2, status)
    assert.matches("syntax.lua:1", out)
  end)

  it("loads Lua modules from --lua-dir and TLR_LUA_PATH before the embedded ones", function()
    os.execute("mkdir -p " .. dir .. "/lua/tlr")
    H.write(dir .. "/lua/tlr/errors.lua", "return setmetatable({codes={}, overridden=true}, {__index=function() return function() end end})")
    local out = run("--lua-dir " .. dir .. "/lua -e \"print(require('tlr.errors').overridden)\"")
    assert.are.equal("true\n", out)
    out = run("-e \"print(require('tlr.errors').overridden)\"", "TLR_LUA_PATH=" .. dir .. "/lua")
    assert.are.equal("true\n", out)
    out = run("-e \"print(require('tlr.errors').overridden)\"")
    assert.are.equal("nil\n", out)
  end)

  it("warns about failed tasks nobody waited for", function()
    local out, status = run([[-e "tlr.spawn('lost', function() error('oops') end) tlr.sleep(0)"]])
    assert.are.equal(0, status)
    assert.matches("task 'lost' failed and nobody waited for it: .*oops", out)
  end)

  it("masks registered secrets in error output", function()
    local script = dir .. "/secret.lua"
    H.write(script, "local tok = tlr.log.secret('PVEAPIToken=root@pam!x=abcd-1234') error('auth failed with ' .. tok)")
    local out, status = run(script)
    assert.are.equal(1, status)
    assert.is_nil(out:find("abcd-1234", 1, true))
    assert.matches("<redacted>", out)
  end)

  it("shows running named tasks live on a terminal, one line each", function()
    local script = dir .. "/progress.lua"
    H.write(script, [[
local ts = {}
for i = 1, 3 do
  ts[i] = tlr.spawn("vm cp-" .. i, function()
    tlr.current():set_state("creating")
    tlr.sleep(i == 1 and 0.2 or 3)
  end)
end
tlr.all(ts)
]])
    local sock = "tlr-progress-" .. os.time() .. "-" .. math.random(1e6)
    local tmux = "tmux -L " .. sock .. " "
    assert(os.execute(tmux .. "new-session -d -x 100 -y 20 '" .. bin .. " run " .. script .. "; sleep 10'"))
    local sched = require "tlr.sched"
    local screen, deadline = "", sched.now() + 8
    while sched.now() < deadline do
      screen = H.capture(tmux .. "capture-pane -p")
      if screen:find("vm cp-1: done", 1, true) then break end
      sched.sleep(0.05)
    end
    os.execute(tmux .. "kill-server 2>/dev/null")
    os.remove("/tmp/tmux-0/" .. sock)
    assert.matches("vm cp%-1: done in 0%.%ds", screen)
    assert.matches("… vm cp%-2%s+creating%s+%d+%.%ds", screen)
    assert.matches("… vm cp%-3%s+creating%s+%d+%.%ds", screen)
    assert.is_nil(screen:find("cp-1%s+creating"))
  end)
end)
