-- The Proxmox explorer in `tlr repl`: `pve` from the lab's environment, API
-- path and parameter completion, pve:help, results as columns.  The
-- completer directly, then the real REPL in tmux against the lab.
local L = require "lab_helper"
local H = require "helper"
local sched = require "tlr.sched"
local explore = require "tlr.proxmox.explore"

local BIN = os.getenv("TLR_BIN") or "build/tlr"

describe("proxmox explorer", function()
  local lab, pve

  setup(function()
    lab = L.shared()
    pve = assert(explore.connect_from_env(function(k) return lab.env[k] end))
  end)
  teardown(function() lab:stop() end)

  it("matches concrete paths to the schema's templates", function()
    assert.are.same({ "/nodes/{node}/qemu/{vmid}/config", { node = "pve1", vmid = "100" } },
      { explore.match("/nodes/pve1/qemu/100/config") })
    assert.is_nil(explore.match("/nodes/pve1/bogus/x"))
  end)

  it("completes API paths with live node names and parameter names from the index", function()
    _G.pve = pve
    local complete = explore.completer("pve")
    assert.are.same({ "/nodes" }, complete("/no", 'pve:get("/no', 9))
    assert.are.same({ "/nodes/pve1", "/nodes/pve2", "/nodes/pve3" },
      complete("/nodes/", 'x = pve:get("/nodes/', 13))
    local params = complete("memo", 'pve:post("/nodes/pve1/qemu", {memo', 30)
    assert.are.same({ "memory" }, params)
    assert.are.same({}, complete("memo", 'pve:post("/nodes/pve1/qemu", {memory = 1, memo', 42))
    _G.pve = nil
    assert.are.same({}, complete("/no", 'pve:get("/no', 9))
  end)

  it("describes an endpoint's parameters and a path's methods", function()
    local rows = assert(pve:help("/nodes/pve1/qemu", "POST"))
    local vmid
    for _, r in ipairs(rows) do
      if r.name == "vmid" then vmid = r end
    end
    assert.are.equal("yes", vmid.required)
    assert.are.equal("integer", vmid.type)
    assert.are.equal("node", rows[1].name) -- required ones first, then by name
    local methods = assert(pve:help("/nodes/{node}/qemu"))
    assert.are.same({ "GET", "POST" }, { methods[1].method, methods[2].method })
    local none, msg = pve:help("/nodes/pve1/qemu", "PATCH")
    assert.is_nil(none)
    assert.matches("has no PATCH", msg)
  end)

  it("works in the real REPL: pve connected, completion, help and tables", function()
    local sock = "tlr-pve-repl-" .. math.random(1e9)
    local tmux = "tmux -L " .. sock .. " "
    local env = {}
    for _, k in ipairs { "PVE_ENDPOINT", "PVE_TOKEN", "PVE_FINGERPRINT" } do
      env[#env + 1] = k .. "='" .. lab.env[k] .. "'"
    end
    local hist = os.tmpname()
    assert(os.execute(tmux .. "new-session -d -x 160 -y 50 \"env " .. table.concat(env, " ")
      .. " TLR_HISTORY=" .. hist .. " " .. BIN .. " repl; sleep 30\""))
    local function screen() return (H.capture(tmux .. "capture-pane -p -S -200")) end
    local function wait_for(pattern)
      local deadline, s = sched.now() + 10, ""
      while sched.now() < deadline do
        s = screen()
        if s:find(pattern) then return s end
        sched.sleep(0.05)
      end
      error("never saw " .. pattern .. " on the screen:\n" .. s)
    end
    local ok, err = pcall(function()
      wait_for("pve: connected to https://")
      wait_for("\ntlr>")
      os.execute(tmux .. "send-keys 'pve:get(\"/nodes/pve2/qe' Tab")
      wait_for('pve:get%("/nodes/pve2/qemu')
      os.execute(tmux .. "send-keys C-u 'pve:get(\"/nodes\")' Enter")
      local s = wait_for("pve3 +online")
      assert.matches("node%s+status", s)
      os.execute(tmux .. "send-keys 'pve:help(\"/nodes/{node}/qemu/{vmid}/status/start\", \"POST\")' Enter")
      s = wait_for("skiplock")
      assert.matches("vmid%s+.-yes", s)
      os.execute(tmux .. "send-keys ':quit' Enter")
    end)
    os.execute(tmux .. "kill-server 2>/dev/null")
    os.remove(hist)
    if not ok then error(err, 0) end
  end)
end)
