-- tlr.grpc against a loopback @grpc/grpc-js server (tests/servers/grpc_server.js)
-- whose certificates tlr itself generated; framing checks need no network.
local H = require "helper"
local grpc = require "tlr.grpc"
local pb = require "tlr.protobuf"
local sched = require "tlr.sched"
local talos = require "tlr.talos.proto"

-- tests/servers/grpc_test.proto
local S = pb.schema {
  { message = "tlrtest.EchoRequest",
    { 1, "text", "string" }, { 2, "payload", "bytes" }, { 3, "count", "int32" },
    { 4, "size", "int32" }, { 5, "delay_ms", "int32" }, { 6, "status", "int32" },
    { 7, "message", "string" },
  },
  { message = "tlrtest.EchoReply",
    { 1, "text", "string" }, { 2, "payload", "bytes" }, { 3, "index", "int32" },
    { 4, "metadata", "map<string, string>" }, { 5, "deadline_ms", "int64" }, { 6, "peer", "string" },
  },
}

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

describe("tlr.grpc framing", function()
  local function frames(list)
    local out = {}
    for i, m in ipairs(list) do out[i] = grpc.frame(m) end
    return table.concat(out)
  end

  local function collect(max)
    local got = {}
    return got, grpc.deframer(function(m) got[#got + 1] = m end, max or 1e9)
  end

  it("frames a message with flag 0 and a big-endian length", function()
    assert.are.equal("0000000000", hex(grpc.frame("")))
    assert.are.equal("0000000003616263", hex(grpc.frame("abc")))
    assert.are.equal("0000000100", hex(grpc.frame(string.rep("x", 256))):sub(1, 10))
  end)

  it("reassembles frames split at every position and several frames per chunk", function()
    local msgs = { "", "a", "hello", string.rep("z", 300), "\0\0\0" }
    local stream = frames(msgs)
    for cut1 = 0, #stream do
      for cut2 = cut1, #stream, 7 do
        local got, d = collect()
        assert.is_true(d.push(stream:sub(1, cut1)))
        assert.is_true(d.push(stream:sub(cut1 + 1, cut2)))
        assert.is_true(d.push(stream:sub(cut2 + 1)))
        assert.are.same(msgs, got)
        assert.is_false(d.pending())
      end
    end
  end)

  it("reassembles a large message from small chunks", function()
    local big = string.rep("0123456789abcdef", 100000)
    local stream = frames { big, "tail" }
    local got, d = collect()
    for i = 1, #stream, 16384 do assert.is_true(d.push(stream:sub(i, i + 16383))) end
    assert.are.equal(2, #got)
    assert.are.equal(big, got[1])
    assert.are.equal("tail", got[2])
  end)

  it("tells whether a frame is incomplete", function()
    local _, d = collect()
    d.push("\0\0\0")
    assert.is_true(d.pending())
    d.push("\0\2a")
    assert.is_true(d.pending())
    d.push("b")
    assert.is_false(d.pending())
  end)

  it("refuses compressed and bad frames, and messages over the limit from the header alone", function()
    local _, d = collect()
    assert.are.same({ nil, "compressed message, but no compression was negotiated", "EPROTO" },
      { d.push("\1\0\0\0\1x") })
    _, d = collect()
    local ok, msg, code = d.push("\2\0\0\0\0")
    assert.is_nil(ok)
    assert.are.equal("EPROTO", code)
    assert.matches("bad frame flag 2", msg)
    _, d = collect(1000)
    ok, msg, code = d.push("\0\0\0\3\233")
    assert.is_nil(ok)
    assert.are.equal("ETOOBIG", code)
    assert.matches("message of 1001 bytes exceeds max_message_size 1000", msg, 1, true)
  end)

  it("stops when on_message returns false", function()
    local n = 0
    local d = grpc.deframer(function() n = n + 1; return n < 2 end, 100)
    assert.is_false(d.push(frames { "a", "b", "c" }))
    assert.are.equal(2, n)
  end)

  it("writes grpc-timeout in milliseconds, or seconds past eight digits", function()
    assert.are.equal("5000m", grpc.timeout_header(5))
    assert.are.equal("1m", grpc.timeout_header(0.0004))
    assert.are.equal("99999999m", grpc.timeout_header(99999.999))
    assert.are.equal("200000S", grpc.timeout_header(200000))
  end)
end)

describe("tlr.grpc", function()
  local dir, certs, client, server, web, tls, mtls, h2c

  setup(function()
    dir = H.tmpdir()
    certs = H.make_server_cert(dir, { "localhost", "127.0.0.1" })
    client = H.make_client_cert(dir, certs, "tlr-client")
    server = H.start_node("tests/servers/grpc_server.js",
      { certs.paths.cert, certs.paths.key, certs.paths.ca })
    web = H.start_node("tests/servers/http_server.js", { certs.paths.cert, certs.paths.key })
    tls = "https://127.0.0.1:" .. server.tls
    mtls = "https://127.0.0.1:" .. server.mtls
    h2c = "http://127.0.0.1:" .. server.h2c
  end)

  teardown(function()
    if server then server.stop() end
    if web then web.stop() end
    os.execute("rm -rf " .. dir)
  end)

  local function echo(method, request, extra)
    local o = { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/" .. method, schema = S,
      request_type = "tlrtest.EchoRequest", response_type = "tlrtest.EchoReply", request = request }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  describe("unary calls", function()
    it("encode the request, decode the reply and report the headers", function()
      local reply, meta = assert(grpc.call(echo("Echo", { text = "hi", payload = "\0\1\0" })))
      assert.are.equal("hi", reply.text)
      assert.are.equal("\0\1\0", reply.payload)
      assert.matches("^application/grpc", meta.headers["content-type"])
      assert.are.equal("0", meta.trailers["grpc-status"])
    end)

    it("send and return raw bytes when no types are given", function()
      local bytes = S:encode("tlrtest.EchoRequest", { text = "raw", payload = "\0\255" })
      local reply = assert(grpc.call { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/Raw",
        request = bytes })
      assert.are.equal(bytes, reply)
      assert.are.equal("", assert(grpc.call { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/Raw" }))
      local decoded = assert(S:decode("tlrtest.EchoReply", assert(grpc.call { url = tls, ca = certs.ca_pem,
        path = "/tlrtest.Test/Echo", request = bytes })))
      assert.are.equal("raw", decoded.text)
    end)

    it("return a trailers-only error with its status and percent-decoded message", function()
      local text = "bootstrap is not available yet: 100% sure, 'ok'?"
      local r, msg, code, details = grpc.call(echo("Fail", { message = text }))
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.are.equal("/tlrtest.Test/Fail: FAILED_PRECONDITION: " .. text, msg)
      assert.are.same({ grpc_status = 9, grpc_name = "FAILED_PRECONDITION", grpc_message = text }, details)
      local _, _, code2, d2 = grpc.call(echo("Fail", { status = 6, message = "etcd data directory is not empty" }))
      assert.are.equal("EAPI", code2)
      assert.are.equal("ALREADY_EXISTS", d2.grpc_name)
    end)

    it("(premise) the server answers Fail trailers-only and a failing stream with trailers", function()
      local http = require "tlr.http"
      local function raw(path, req)
        return assert(http.request { method = "POST", url = tls .. path, ca = certs.ca_pem, http2 = true,
          headers = { ["content-type"] = "application/grpc", te = "trailers" },
          body = grpc.frame(S:encode("tlrtest.EchoRequest", req)) })
      end
      local r = raw("/tlrtest.Test/Fail", { message = "x" })
      assert.are.equal("9", r.headers["grpc-status"])
      assert.is_nil(r.trailers["grpc-status"])
      assert.are.equal("", r.body)
      r = raw("/tlrtest.Test/Stream", { count = 1, status = 10 })
      assert.is_nil(r.headers["grpc-status"])
      assert.are.equal("10", r.trailers["grpc-status"])
    end)

    it("report an unknown method as UNIMPLEMENTED", function()
      local r, msg, code, details = grpc.call { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/Nope" }
      assert.is_nil(r)
      assert.are.equal("EAPI", code)
      assert.are.equal(12, details.grpc_status)
      assert.matches("^/tlrtest.Test/Nope: UNIMPLEMENTED", msg)
    end)

    it("send the deadline as grpc-timeout and map DEADLINE_EXCEEDED to ETIMEDOUT", function()
      local reply = assert(grpc.call(echo("Metadata", {}, { timeout = 5 })))
      assert.is_true(reply.deadline_ms > 4000 and reply.deadline_ms <= 5000, tostring(reply.deadline_ms))
      reply = assert(grpc.call(echo("Metadata", {})))
      assert.is_true(reply.deadline_ms > 55000 and reply.deadline_ms <= 60000, "default 60 s")
      reply = assert(grpc.call(echo("Metadata", {}, { timeout = 0 })))
      assert.are.equal(-1, reply.deadline_ms)
      local t0 = sched.now()
      local r, msg, code, details = grpc.call(echo("Slow", { delay_ms = 5000 }, { timeout = 0.3 }))
      local elapsed = sched.now() - t0
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.are.equal("DEADLINE_EXCEEDED", details.grpc_name)
      assert.matches("DEADLINE_EXCEEDED", msg)
      assert.is_true(elapsed >= 0.25 and elapsed < 1.2, tostring(elapsed))
    end)

    it("pass metadata (the Talos node header) to the server", function()
      local reply = assert(grpc.call(echo("Metadata", {}, { metadata = { node = "10.5.0.1", ["x-trace"] = "a b" } })))
      assert.are.equal("10.5.0.1", reply.metadata.node)
      assert.are.equal("a b", reply.metadata["x-trace"])
    end)

    it("refuse replies and requests over max_message_size with ETOOBIG", function()
      local r, msg, code = grpc.call(echo("Echo", { size = 100000 }, { max_message_size = 1000 }))
      assert.is_nil(r)
      assert.are.equal("ETOOBIG", code)
      assert.matches("/tlrtest.Test/Echo: message of %d+ bytes exceeds max_message_size 1000", msg)
      local ok = assert(grpc.call(echo("Echo", { size = 100000 }, { max_message_size = 200000 })))
      assert.are.equal(100000, #ok.payload)
      r, msg, code = grpc.call(echo("Echo", { payload = string.rep("x", 2000) }, { max_message_size = 1000 }))
      assert.is_nil(r)
      assert.are.equal("ETOOBIG", code)
      assert.matches("request of %d+ bytes", msg)
    end)

    it("return EPROTO for a reply that does not decode, and for a second reply message", function()
      local r, msg, code = grpc.call { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/Raw",
        request = "\10", schema = S, response_type = "tlrtest.EchoReply" }
      assert.is_nil(r)
      assert.are.equal("EPROTO", code)
      assert.matches("^/tlrtest.Test/Raw: decode tlrtest.EchoReply.text: truncated varint", msg)
      r, msg, code = grpc.call { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/RawSplit", request = "x" }
      assert.is_nil(r)
      assert.are.equal("EPROTO", code)
      assert.matches("a unary call got several reply messages", msg)
    end)

    it("return EPROTO from a server that is not gRPC", function()
      local base = "https://127.0.0.1:" .. web.https
      local r, msg, code = grpc.call { url = base, ca = certs.ca_pem, path = "/echo/x" }
      assert.is_nil(r)
      assert.are.equal("EPROTO", code)
      assert.matches("HTTP 404", msg)
      r, msg, code = grpc.call { url = base, ca = certs.ca_pem, path = "/status/200" }
      assert.is_nil(r)
      assert.are.equal("EPROTO", code)
      assert.matches("is not gRPC", msg)
    end)

    it("pass transport failures through", function()
      local r, _, code = grpc.call { url = "https://127.0.0.1:1", path = "/a.B/C", insecure = true }
      assert.is_nil(r)
      assert.are.equal("ECONNREFUSED", code)
    end)

    it("reject bad options as programmer errors", function()
      local base = { url = tls, path = "/a.B/C" }
      local function with(k, v)
        local o = {}
        for key, val in pairs(base) do o[key] = val end
        o[k] = v
        return o
      end
      assert.has_error(function() grpc.call(with("bogus", 1)) end)
      assert.has_error(function() grpc.call(with("path", "a.B/C")) end)
      assert.has_error(function() grpc.call(with("url", "ftp://x")) end)
      assert.has_error(function() grpc.call(with("request", { text = "x" })) end)
      assert.has_error(function() grpc.call(with("response_type", "x.Y")) end)
      assert.has_error(function() grpc.call(with("metadata", { Node = "x" })) end)
      assert.has_error(function() grpc.call(with("metadata", { ["grpc-timeout"] = "1S" })) end)
      assert.has_error(function() grpc.call(with("metadata", { te = "x" })) end)
      assert.has_error(function() grpc.call(with("metadata", { node = 1 })) end)
      assert.has_error(function() grpc.call(with("on_message", print)) end)
      assert.has_error(function() grpc.call(echo("Echo", { bogus = 1 })) end, nil)
      assert.has_error(function() grpc.call() end)
    end)
  end)

  describe("TLS", function()
    it("verifies the server by default", function()
      local r, _, code = grpc.call { url = tls, path = "/tlrtest.Test/Raw" }
      assert.is_nil(r)
      assert.are.equal("ETLS", code)
    end)

    it("accepts a pinned fingerprint or insecure = true", function()
      assert.are.equal("a", grpc.call { url = tls, path = "/tlrtest.Test/Raw", request = "a",
        fingerprint = certs.fingerprint })
      assert.are.equal("b", grpc.call { url = tls, path = "/tlrtest.Test/Raw", request = "b", insecure = true })
    end)

    it("presents a client certificate for mutual TLS", function()
      local reply = assert(grpc.call(echo("Metadata", {}, { url = mtls, cert = client.cert_pem,
        key = client.key_pem })))
      assert.are.equal("tlr-client", reply.peer)
      local r = grpc.call(echo("Metadata", {}, { url = mtls }))
      assert.is_nil(r)
    end)

    it("speaks HTTP/2 without TLS to http:// URLs", function()
      assert.are.equal("c", grpc.call { url = h2c, path = "/tlrtest.Test/Raw", request = "c" })
    end)
  end)

  describe("server streams", function()
    it("return the list of messages", function()
      local list = assert(grpc.stream(echo("Stream", { text = "m", count = 5 })))
      assert.are.equal(5, #list)
      for i, m in ipairs(list) do
        assert.are.equal(i - 1, m.index)
        assert.are.equal("m-" .. (i - 1), m.text)
      end
      assert.are.same({}, assert(grpc.stream(echo("Stream", { count = 0 }))))
    end)

    it("deliver messages to the calling task as they arrive", function()
      local times, ticks = {}, 0
      local ticker = sched.spawn(function()
        while true do
          sched.sleep(0.05)
          ticks = ticks + 1
        end
      end)
      local t0 = sched.now()
      local n = assert(grpc.stream(echo("Stream", { count = 3, delay_ms = 250 }, {
        on_message = function(m)
          times[#times + 1] = sched.now() - t0
          assert.are.equal(#times - 1, m.index)
        end })))
      local total = sched.now() - t0
      ticker:cancel()
      assert.are.equal(3, n)
      assert.is_true(times[1] >= 0.2 and times[2] - times[1] >= 0.2 and times[3] - times[2] >= 0.2,
        table.concat(times, " "))
      assert.is_true(total - times[1] >= 0.4)
      assert.is_true(ticks >= 8, "other tasks ran meanwhile: " .. ticks)
    end)

    it("reassemble messages bigger than a curl chunk and many small ones per chunk", function()
      local big = assert(grpc.stream(echo("Stream", { count = 4, size = 100000 })))
      assert.are.equal(4, #big)
      for i, m in ipairs(big) do
        assert.are.equal(string.rep("x", 100000), m.payload)
        assert.are.equal(i - 1, m.index)
      end
      local small = assert(grpc.stream(echo("Stream", { count = 500, size = 3 })))
      assert.are.equal(500, #small)
      assert.are.equal(499, small[500].index)
      local raw = assert(grpc.stream { url = tls, ca = certs.ca_pem, path = "/tlrtest.Test/RawSplit",
        request = "abc" })
      assert.are.same({ "abc", "" }, raw)
    end)

    it("return an error status that follows messages (in the trailers)", function()
      local got = {}
      local r, msg, code, details = grpc.stream(echo("Stream", { count = 2, status = 10, message = "gone away" },
        { on_message = function(m) got[#got + 1] = m.index end }))
      assert.is_nil(r)
      assert.are.same({ 0, 1 }, got)
      assert.are.equal("EAPI", code)
      assert.are.equal("/tlrtest.Test/Stream: ABORTED: gone away", msg)
      assert.are.equal("ABORTED", details.grpc_name)
    end)

    it("stop early when on_message returns false; the connection stays usable", function()
      local seen = 0
      local n, meta = grpc.stream(echo("Stream", { count = 100, delay_ms = 10 }, {
        on_message = function() seen = seen + 1; return seen < 3 end }))
      assert.are.equal(3, n)
      assert.is_true(meta.stopped)
      assert.are.equal(3, seen)
      assert.are.equal("again", assert(grpc.call(echo("Echo", { text = "again" }))).text)
    end)

    it("apply the size limit per message", function()
      local got = 0
      local r, _, code = grpc.stream(echo("Stream", { count = 3, size = 5000 },
        { max_message_size = 4000, on_message = function() got = got + 1 end }))
      assert.is_nil(r)
      assert.are.equal("ETOOBIG", code)
      assert.are.equal(0, got)
      assert.are.equal(3, #assert(grpc.stream(echo("Stream", { count = 3, size = 5000 },
        { max_message_size = 6000 }))))
    end)

    it("run many calls at once over one connection", function()
      local tasks = {}
      for i = 1, 20 do
        tasks[i] = sched.spawn(function()
          return assert(grpc.call(echo("Echo", { text = "t" .. i }))).text
        end)
      end
      local results = sched.all(tasks)
      for i = 1, 20 do assert.are.equal("t" .. i, results[i]) end
    end)
  end)

  describe("with the Talos descriptors", function()
    local function talos_call(name, request, extra)
      local m = talos.methods[name]
      local o = { url = tls, ca = certs.ca_pem, path = m.path, schema = talos.schema,
        request_type = m.request, response_type = m.response, request = request }
      for k, v in pairs(extra or {}) do o[k] = v end
      return m.stream and grpc.stream(o) or grpc.call(o)
    end

    it("applies a configuration with mode AUTO and the node header", function()
      local yaml = "version: v1alpha1\nmachine:\n  type: controlplane\n"
      local reply = assert(talos_call("ApplyConfiguration", { data = yaml, mode = "AUTO", dry_run = true },
        { metadata = { node = "10.5.0.11" } }))
      local m = reply.messages[1]
      assert.are.same({ yaml }, m.warnings)
      assert.are.equal("AUTO", m.mode)
      assert.are.equal("dry_run=true node=10.5.0.11", m.mode_details)
    end)

    it("streams Kubeconfig as common.Data chunks", function()
      local chunks = assert(talos_call("Kubeconfig", {}))
      local parts = {}
      for i, c in ipairs(chunks) do parts[i] = c.bytes end
      assert.are.equal(3, #chunks)
      assert.are.equal("kubeconfig-data", table.concat(parts))
    end)
  end)
end)
