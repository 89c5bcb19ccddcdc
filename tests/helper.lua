-- Shared test helpers: temp dirs, loopback servers started as child
-- processes (stopped by PID), certificates.
local H = {}

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok
end

--- A fresh private temporary directory.
function H.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(sh("mkdir -m 700 " .. p))
  return p
end

function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Runs a shell command and returns its output and exit status.
function H.capture(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, status = p:close()
  return out, ok and 0 or status
end

--- Starts `node script args...` in the background; waits for its first
--- stdout line (JSON) and returns it decoded, plus a stop function.
function H.start_node(script, args, env)
  local dir = H.tmpdir()
  local out, pidfile = dir .. "/out", dir .. "/pid"
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
  local cmd = string.format("%s node %s %s > %s 2>&1 & echo $! > %s",
    env or "", script, table.concat(quoted, " "), out, pidfile)
  assert(sh(cmd))
  local pid = H.read(pidfile):match("%d+")
  local sched = require "tlr.sched"
  local deadline = sched.now() + 15
  local line
  while sched.now() < deadline do
    local f = io.open(out, "r")
    if f then
      line = f:read("l")
      f:close()
      if line and line:match("^{") then break end
      line = nil
    end
    sched.sleep(0.02)
  end
  if not line then
    sh("kill " .. pid .. " 2>/dev/null")
    error("server " .. script .. " did not start: " .. (H.read(out) or ""))
  end
  local info = assert(require("tlr.json").decode(line))
  info.pid = pid
  info.stop = function() sh("kill " .. pid .. " 2>/dev/null") end
  return info
end

--- A CA and a server certificate for `names` (DNS names and IPs), written
--- as PEM files into dir; made with tlr.crypto.  Returns paths and PEMs.
function H.make_server_cert(dir, names)
  local crypto = require "tlr.crypto"
  local ca_key = assert(crypto.generate_key { type = "ecdsa" })
  local ca = assert(crypto.create_ca { key = ca_key, subject = { CN = "tlr test CA" }, days = 2 })
  local key = assert(crypto.generate_key { type = "ecdsa" })
  local dns, ips = {}, {}
  for _, n in ipairs(names) do
    if n:match("^[%d.]+$") or n:find(":") then ips[#ips + 1] = n else dns[#dns + 1] = n end
  end
  local cert = assert(crypto.sign_cert {
    ca_key = ca_key, ca_cert = ca, public_key = key, subject = { CN = names[1] },
    dns_names = dns, ip_addresses = ips, days = 2,
    key_usage = { "digital_signature", "key_encipherment" }, ext_key_usage = { "server_auth" },
  })
  local paths = { ca = dir .. "/ca.pem", cert = dir .. "/cert.pem", key = dir .. "/key.pem" }
  H.write(paths.ca, ca)
  H.write(paths.cert, cert)
  H.write(paths.key, key:pem())
  return { paths = paths, ca_pem = ca, ca_key = ca_key, cert_pem = cert, key_pem = key:pem(),
    fingerprint = crypto.parse_cert(cert).fingerprint_sha256 }
end

--- A client certificate (CN = cn, EKU clientAuth) signed by make_server_cert's CA.
function H.make_client_cert(dir, certs, cn)
  local crypto = require "tlr.crypto"
  local key = assert(crypto.generate_key { type = "ed25519" })
  local cert = assert(crypto.sign_cert {
    ca_key = certs.ca_key, ca_cert = certs.ca_pem, public_key = key, subject = { CN = cn },
    days = 2, ext_key_usage = { "client_auth" },
  })
  H.write(dir .. "/client.pem", cert)
  return { cert_pem = cert, key_pem = key:pem() }
end

return H
