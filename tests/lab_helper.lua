-- Starts a private lab (tests/lab/lab.js) for a spec and talks to it:
--   local lab = L.start { profile = "test" }     -- waits for the env file
--   lab.env.PVE_ENDPOINT, lab:pve("GET", "/version"), lab:control("GET", "/pve/state")
--   lab:stop()                                    -- SIGTERM by PID, waits for the exit
local H = require "helper"
local http = require "tlr.http"
local json = require "tlr.json"
local sched = require "tlr.sched"

local L = {}
local Lab = {}
Lab.__index = Lab

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Reads a lab env file: KEY='value' lines (values single-quoted for sh).
function L.read_env(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local env = {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then
      env[k] = v:gsub("^'", ""):gsub("'$", ""):gsub("'\\''", "'")
    end
  end
  return env
end

local function alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

--- Starts a lab; opts: profile, net (default: a random 127.N), ttl (default 600),
--- pve_version, args (extra arguments).  Returns a lab object.
function L.start(opts)
  opts = opts or {}
  local dir = H.tmpdir()
  math.randomseed(os.time() + math.floor(sched.now() * 1000) % 100000)
  local net = opts.net or ("127." .. math.random(100, 250))
  local args = { "--env", dir .. "/env", "--net", net, "--ttl", tostring(opts.ttl or 600),
    "--profile", opts.profile or "test" }
  if opts.pve_version then
    args[#args + 1] = "--pve-version"
    args[#args + 1] = opts.pve_version
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = quote(a) end
  assert(os.execute(string.format("node tests/lab/lab.js %s > %s 2>&1 & echo $! > %s",
    table.concat(quoted, " "), quote(dir .. "/out"), quote(dir .. "/pid"))))
  local pid = H.read(dir .. "/pid"):match("%d+")
  local deadline = sched.now() + 30
  local env
  while sched.now() < deadline do
    env = L.read_env(dir .. "/env")
    if env and env.LAB_CONTROL then break end
    if not alive(pid) then break end
    sched.sleep(0.05)
  end
  if not (env and env.LAB_CONTROL) then
    os.execute("kill " .. pid .. " 2>/dev/null")
    error("lab did not start: " .. (H.read(dir .. "/out") or ""))
  end
  return setmetatable({ dir = dir, pid = pid, env = env, net = net }, Lab)
end

--- The lab `make lab` started (build/lab/env, as CI runs it), or a private
--- one when none is running (a spec run on its own).  Stopping the shared lab
--- is left to `make lab-stop`.
function L.shared(opts)
  local env = L.read_env(os.getenv("TLR_LAB_ENV") or "build/lab/env")
  if env and env.LAB_PIDS and alive(env.LAB_PIDS) then
    return setmetatable({ env = env, net = env.LAB_NET, shared = true }, Lab)
  end
  return L.start(opts)
end

function Lab:alive() return alive(self.pid) end

--- SIGTERM, then waits (up to 5 s) for the process to go.
function Lab:stop()
  if self.shared then return self:reset() end
  if not self.pid then return end
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  local deadline = sched.now() + 5
  while alive(self.pid) and sched.now() < deadline do sched.sleep(0.05) end
  if alive(self.pid) then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  os.execute("rm -rf " .. quote(self.dir))
  self.pid = nil
end

--- A control-endpoint call; returns the decoded JSON body and the status.
function Lab:control(method, path, body)
  local r = assert(http.request {
    method = method, url = self.env.LAB_CONTROL .. path,
    body = body and json.encode(body) or nil,
    headers = body and { ["Content-Type"] = "application/json" } or nil,
  })
  return json.decode(r.body), r.status
end

--- Merges duration-profile keys for the Proxmox fake (PATCH /profile).
function Lab:profile(vals) return self:control("PATCH", "/profile", { pve = vals }) end

--- Back to the named profile, no faults.
function Lab:reset(name)
  self:control("PUT", "/profile", { name = name or "test" })
  self:control("DELETE", "/faults")
end

--- A raw Proxmox API call (token auth unless opts.token = false / another token).
--- opts: query, form, body, headers, token, cookie, csrf, timeout.  Returns the
--- response with .json decoded (or nil, msg, code for transport failures).
function Lab:pve(method, path, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local token = opts.token
  if token == nil then token = self.env.PVE_TOKEN end
  if token then headers.Authorization = "PVEAPIToken=" .. token end
  if opts.cookie then headers.Cookie = "PVEAuthCookie=" .. opts.cookie end
  if opts.csrf then headers.CSRFPreventionToken = opts.csrf end
  local r, msg, code = http.request {
    method = method, url = self.env.PVE_ENDPOINT .. "/api2/json" .. path, query = opts.query,
    form = opts.form, body = opts.body, headers = headers, fingerprint = self.env.PVE_FINGERPRINT,
    timeout = opts.timeout or 30,
  }
  if not r then return nil, msg, code end
  if r.body and r.body:sub(1, 1) == "{" then r.json = json.decode(r.body) end
  r.data = r.json and r.json.data
  return r
end

--- Waits for a task: returns the final status table (polls like bpg: 400 = not yet).
function Lab:wait_task(upid, timeout)
  local node = upid:match("^UPID:([^:]+):")
  local deadline = sched.now() + (timeout or 20)
  while sched.now() < deadline do
    local r = assert(self:pve("GET", "/nodes/" .. node .. "/tasks/" .. upid .. "/status"))
    if r.status == 200 and r.data.status == "stopped" then return r.data end
    sched.sleep(0.02)
  end
  error("task did not finish: " .. upid)
end

return L
