-- tlr.http against a loopback Node server (tests/servers/http_server.js)
-- whose certificates tlr itself generated.
local H = require "helper"
local http = require "tlr.http"
local json = require "tlr.json"
local sched = require "tlr.sched"
local loop = require "tlr.loop.core"

describe("tlr.http", function()
  local dir, certs, server, base, tls, mtls

  setup(function()
    dir = H.tmpdir()
    certs = H.make_server_cert(dir, { "localhost", "127.0.0.1" })
    local client = H.make_client_cert(dir, certs, "tlr-client")
    certs.client = client
    server = H.start_node("tests/servers/http_server.js", { certs.paths.cert, certs.paths.key },
      "CLIENT_CA=" .. certs.paths.ca)
    base = "http://127.0.0.1:" .. server.http
    tls = "https://127.0.0.1:" .. server.https
    mtls = "https://127.0.0.1:" .. server.mtls
  end)

  teardown(function()
    if server then server.stop() end
    os.execute("rm -rf " .. dir)
  end)

  local function stats()
    local r = assert(http.get(base .. "/stats"))
    return json.decode(r.body)
  end

  local function reset_stats()
    assert(http.get(base .. "/stats/reset"))
  end

  describe("requests", function()
    it("GETs over HTTP/1.1 and returns status, headers and body", function()
      local r = assert(http.get(base .. "/echo", { headers = { ["X-Test"] = "yes" } }))
      assert.are.equal(200, r.status)
      assert.are.equal("1.1", r.http_version)
      assert.are.equal("application/json", r.headers["content-type"])
      local echo = json.decode(r.body)
      assert.are.equal("GET", echo.method)
      assert.are.equal("yes", echo.headers["x-test"])
      assert.is_nil(echo.headers.expect)
    end)

    it("encodes query parameters", function()
      local r = assert(http.get(base .. "/echo", { query = { a = "x y", b = "1;2=3", c = 5 } }))
      local echo = json.decode(r.body)
      assert.are.same({ a = "x y", b = "1;2=3", c = "5" }, echo.query)
    end)

    it("posts forms with everything outside [A-Za-z0-9_.~-] percent-encoded", function()
      local r = assert(http.request {
        method = "POST", url = base .. "/echo",
        form = { net0 = "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0", tags = "a;b", on = true, n = 3,
          list = { "x", "y" } },
      })
      local echo = json.decode(r.body)
      assert.are.equal("application/x-www-form-urlencoded", echo.headers["content-type"])
      assert.are.equal("list=x&list=y&n=3&net0=virtio%3DAA%3ABB%3ACC%3ADD%3AEE%3AFF%2Cbridge%3Dvmbr0"
        .. "&on=1&tags=a%3Bb", echo.body)
    end)

    it("escapes exactly the reserved characters", function()
      assert.are.equal("Az09_.~-%20%2F%3B%3D%26%25%C3%A9", http.escape("Az09_.~- /;=&%é"))
    end)

    it("sends PUT and DELETE with bodies", function()
      for _, method in ipairs { "PUT", "DELETE", "PATCH" } do
        local r = assert(http.request { method = method, url = base .. "/echo", body = "payload" })
        local echo = json.decode(r.body)
        assert.are.equal(method, echo.method)
        assert.are.equal("payload", echo.body)
      end
    end)

    it("returns error statuses as responses, with the status-line text as reason", function()
      local r = assert(http.get(base .. "/status/500", {
        query = { reason = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout" } }))
      assert.are.equal(500, r.status)
      assert.are.equal("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout", r.reason)
      local r2 = assert(http.get(base .. "/nope"))
      assert.are.equal(404, r2.status)
      assert.are.equal("Not Found", r2.reason)
    end)

    it("rejects unknown options, a missing url and bad values as programmer errors", function()
      assert.has_error(function() http.request { url = base, bogus = 1 } end)
      assert.has_error(function() http.request { method = "GET" } end)
      assert.has_error(function() http.request { url = "ftp://x" } end)
      assert.has_error(function() http.request { url = tls, fingerprint = "AB:CD" } end)
      assert.has_error(function() http.request { url = base, headers = { x = { {} } } } end)
      assert.has_error(function() http.request { url = base, headers = { x = "a\r\nInjected: 1" } } end)
      assert.has_error(function() http.request { url = base, form = { a = {} }, body = "x" } end)
    end)
  end)

  describe("TLS", function()
    it("verifies the server against a CA given as a PEM string or a file", function()
      local r = assert(http.get(tls .. "/echo", { ca = certs.ca_pem }))
      assert.are.equal(200, r.status)
      local r2 = assert(http.get("https://localhost:" .. server.https .. "/echo",
        { ca_file = certs.paths.ca }))
      assert.are.equal(200, r2.status)
    end)

    it("fails verification without the CA (verification is on by default)", function()
      local r, msg, code = http.get(tls .. "/echo")
      assert.is_nil(r)
      assert.are.equal("ETLS", code)
      assert.matches("127.0.0.1", msg)
    end)

    it("fails when the name does not match the certificate", function()
      local r, _, code = http.get("https://wrong.example:" .. server.https .. "/echo", {
        ca = certs.ca_pem, resolve = { "wrong.example:" .. server.https .. ":127.0.0.1" } })
      assert.is_nil(r)
      assert.are.equal("ETLS", code)
    end)

    it("accepts insecure = true explicitly", function()
      local r = assert(http.get(tls .. "/echo", { insecure = true }))
      assert.are.equal(200, r.status)
    end)

    it("accepts the pinned SHA-256 fingerprint instead of a CA", function()
      assert.matches("^%x%x:", certs.fingerprint)
      local r = assert(http.get(tls .. "/echo", { fingerprint = certs.fingerprint }))
      assert.are.equal(200, r.status)
      -- lower case and no colons work as well
      local bare = certs.fingerprint:gsub(":", ""):lower()
      assert(http.get(tls .. "/echo", { fingerprint = bare }))
    end)

    it("refuses a wrong fingerprint before sending any request byte", function()
      reset_stats()
      local wrong = certs.fingerprint:sub(1, -3) .. (certs.fingerprint:sub(-2) == "00" and "01" or "00")
      local r, msg, code = http.get(tls .. "/echo", { fingerprint = wrong })
      assert.is_nil(r)
      assert.are.equal("EPIN", code)
      assert.matches("pinned fingerprint", msg)
      assert.are.equal(0, stats().requests)
    end)

    it("checks the pin again on a reused connection", function()
      -- an unpinned request leaves a connection to the same host in the cache
      assert(http.get(tls .. "/echo", { insecure = true }))
      reset_stats()
      local wrong = string.rep("00:", 31) .. "00"
      local r, _, code = http.get(tls .. "/echo", { fingerprint = wrong })
      assert.is_nil(r)
      assert.are.equal("EPIN", code)
      assert.are.equal(0, stats().requests)
    end)

    it("presents a client certificate and key given as PEM strings", function()
      local r = assert(http.get(mtls .. "/echo", {
        ca = certs.ca_pem, cert = certs.client.cert_pem, key = certs.client.key_pem }))
      assert.are.equal(200, r.status)
      assert.are.equal("tlr-client", json.decode(r.body).peer)
      local none = http.get(mtls .. "/echo", { ca = certs.ca_pem })
      assert.is_nil(none)
    end)
  end)

  describe("HTTP/2", function()
    it("negotiates h2 by ALPN when asked", function()
      local r = assert(http.get(tls .. "/echo", { ca = certs.ca_pem, http2 = true }))
      assert.are.equal("2", r.http_version)
      assert.are.equal("2.0", json.decode(r.body).httpVersion)
    end)

    it("sends a list header value as repeated headers (gRPC metadata)", function()
      local r = assert(http.get(tls .. "/echo", { ca = certs.ca_pem, http2 = true,
        headers = { nodes = { "10.0.0.1", "10.0.0.2" } } }))
      assert.are.equal("10.0.0.1, 10.0.0.2", json.decode(r.body).headers.nodes)
    end)

    it("sends a stream the server reset before answering once more on a new connection", function()
      reset_stats()
      local r = assert(http.get(tls .. "/reset-first", { ca = certs.ca_pem, http2 = true,
        query = { key = tostring(math.random(1e9)) } }))
      assert.are.equal(200, r.status)
      assert.are.equal("second try", r.body)
      assert.are.equal(2, stats().requests)
      -- HTTP/1.1 requests are never sent twice
      local once, _, code = http.get(tls .. "/drop", { ca = certs.ca_pem })
      assert.is_nil(once)
      assert.are.equal("ECONNRESET", code)
    end)

    it("returns trailers separately from headers", function()
      local r = assert(http.get(tls .. "/trailers", { ca = certs.ca_pem, http2 = true }))
      assert.are.equal("data", r.body)
      assert.are.equal("ok", r.trailers["x-result"])
      assert.is_nil(r.headers["x-result"])
      assert.are.equal("application/grpc", r.headers["content-type"])
    end)

    it("multiplexes concurrent requests over one connection", function()
      reset_stats()
      local tasks = {}
      for i = 1, 20 do
        tasks[i] = sched.spawn(function()
          local r = assert(http.get(tls .. "/echo", { ca = certs.ca_pem, http2 = true }))
          return json.decode(r.body).connection
        end)
      end
      local conns = sched.all(tasks)
      local distinct = {}
      for _, c in ipairs(conns) do distinct[c] = true end
      local n = 0
      for _ in pairs(distinct) do n = n + 1 end
      assert.are.equal(1, n)
    end)
  end)

  describe("failures", function()
    it("times out a server that never answers", function()
      local t0 = sched.now()
      local r, msg, code = http.get(base .. "/hang", { timeout = 0.3 })
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("/hang", msg)
      assert.is_true(sched.now() - t0 < 5)
    end)

    it("reports a dropped connection", function()
      local r, _, code = http.get(base .. "/drop")
      assert.is_nil(r)
      assert.are.equal("ECONNRESET", code)
    end)

    it("reports garbage that is not HTTP", function()
      local r, _, code = http.get(base .. "/garbage")
      assert.is_nil(r)
      assert.are.equal("EPROTO", code)
    end)

    it("reports a refused connection", function()
      local r, msg, code = http.get("http://127.0.0.1:1/")
      assert.is_nil(r)
      assert.are.equal("ECONNREFUSED", code)
      assert.matches("127.0.0.1:1", msg)
    end)

    it("reports an unknown host", function()
      local r, _, code = http.get("http://no-such-host.invalid/")
      assert.is_nil(r)
      assert.are.equal("ERESOLVE", code)
    end)

    it("keeps the query (where tokens may hide) out of error messages", function()
      local _, msg = http.get("http://127.0.0.1:1/x", { query = { token = "s3cr3t" } })
      assert.is_nil(msg:find("s3cr3t", 1, true))
    end)

    it("stops a reply larger than max_size, with and without Content-Length", function()
      local r, _, code = http.get(base .. "/big", { query = { bytes = 200000 }, max_size = 1000 })
      assert.is_nil(r)
      assert.are.equal("ETOOBIG", code)
      r, _, code = http.get(base .. "/big", { query = { bytes = 200000, chunked = 1 }, max_size = 1000 })
      assert.is_nil(r)
      assert.are.equal("ETOOBIG", code)
      local ok = assert(http.get(base .. "/big", { query = { bytes = 200000 } }))
      assert.are.equal(200000, #ok.body)
    end)
  end)

  describe("streaming", function()
    it("hands chunks to on_data as they arrive", function()
      local chunks, times = {}, {}
      local r = assert(http.get(base .. "/stream", {
        query = { chunks = 5, ms = 40 },
        on_data = function(c)
          chunks[#chunks + 1] = c
          times[#times + 1] = sched.now()
        end,
      }))
      assert.are.equal(200, r.status)
      assert.are.equal("", r.body)
      assert.are.equal("chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n", table.concat(chunks))
      assert.is_true(#chunks >= 3, "chunks were not delivered incrementally")
      assert.is_true(times[#times] - times[1] > 0.08)
    end)

    it("stops the transfer when on_data returns false", function()
      local got = 0
      local r = assert(http.get(base .. "/stream", {
        query = { chunks = 50, ms = 20 },
        on_data = function() got = got + 1 return false end,
      }))
      assert.is_true(r.stopped)
      assert.are.equal(1, got)
      assert.are.equal(0, loop.pending())
    end)
  end)

  describe("concurrency", function()
    it("keeps one connection alive across sequential requests", function()
      local conn
      for _ = 1, 20 do
        local r = assert(http.get(base .. "/echo"))
        local c = json.decode(r.body).connection
        conn = conn or c
        assert.are.equal(conn, c)
      end
    end)

    it("has 100 requests from 100 tasks in flight at once", function()
      reset_stats()
      local tasks = {}
      for i = 1, 100 do
        tasks[i] = sched.spawn(function()
          local r = assert(http.get(base .. "/delay", { query = { ms = 300 } }))
          return r.body
        end)
      end
      local bodies = sched.all(tasks)
      for i = 1, 100 do assert.are.equal("ok", bodies[i]) end
      assert.is_true(stats().max_inflight >= 90, "requests did not overlap")
    end)

    it("cancelling a task aborts its request and frees the transfer", function()
      local t = sched.spawn(function() return http.get(base .. "/hang", { timeout = 30 }) end)
      sched.sleep(0.1)
      assert.are.equal(1, loop.pending())
      t:cancel()
      assert.are.equal("cancelled", t.status)
      assert.are.equal(0, loop.pending())
    end)
  end)
end)
