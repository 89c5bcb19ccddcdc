-- Logging: secret masking, plain and JSON lines, levels, task progress (lua/tlr/log.lua).
local log = require "tlr.log"
local json = require "tlr.json"
local sched = require "tlr.sched"
local errors = require "tlr.errors"
local host = require "tlr.host.core"

--- Points the log at a fresh temporary file with `opts`; returns a reader of what was written.
local function capture(opts)
  local f = assert(io.tmpfile())
  opts.out = f
  log.configure(opts)
  return function()
    f:flush()
    f:seek("set")
    return f:read("a")
  end
end

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

describe("tlr.log", function()
  after_each(function()
    log.configure {
      out = io.stderr, json = false, progress = false, level = "info", tty = host.isatty(2),
    }
    log.reset_secrets()
  end)

  describe("secrets", function()
    it("masks a registered secret wherever it appears in a message", function()
      local read = capture { tty = false }
      assert.are.equal("s3cr3t-token", log.secret("s3cr3t-token"))
      log.info("token=%s, again s3cr3t-token.", "s3cr3t-token")
      local out = read()
      assert.is_nil(out:find("s3cr3t", 1, true))
      local _, n = out:gsub("<redacted>", "")
      assert.are.equal(2, n)
      assert.matches("token=<redacted>, again <redacted>%.", out)
    end)

    it("masks secrets in formatted errors and error objects", function()
      local read = capture { tty = false }
      log.secret("hunter22")
      local err = errors.new("EAPI", "login with hunter22 refused")
      log.error(err)
      log.error("step failed: %s", err)
      log.warn("%s", select(2, pcall(error, "password hunter22 rejected")))
      local out = read()
      assert.is_nil(out:find("hunter22", 1, true))
      assert.are.equal(3, #lines_of(out))
      assert.matches("error login with <redacted> refused", out)
      assert.matches("step failed: login with <redacted> refused", out)
      assert.matches("password <redacted> rejected", out)
    end)

    it("masks overlapping and nested secrets completely", function()
      log.secret("abcdef")
      log.secret("defghi")
      log.secret("cdefgh")
      assert.are.equal("x<redacted>y", log.mask("xabcdefghiy"))
      log.secret("long-secret-value")
      log.secret("secret")
      assert.are.equal("<redacted> and <redacted>", log.mask("long-secret-value and secret"))
      assert.are.equal("<redacted>", log.mask("abcdefabcdef"))
    end)

    it("ignores values too short to mask and registers each secret once", function()
      assert.are.equal("abc", log.secret("abc"))
      assert.are.equal("abc abc", log.mask("abc abc"))
      log.secret("secret-1")
      log.secret("secret-1")
      assert.are.equal("<redacted> <redacted>", log.mask("secret-1 secret-1"))
      log.reset_secrets()
      assert.are.equal("secret-1", log.mask("secret-1"))
    end)
  end)

  describe("output", function()
    it("writes plain lines with time and level off a terminal", function()
      local read = capture { tty = false }
      log.info("hello %d", 5)
      log.warn("careful")
      local lines = lines_of(read())
      assert.are.equal(2, #lines)
      assert.matches("^%d%d:%d%d:%d%d info hello 5$", lines[1])
      assert.matches("^%d%d:%d%d:%d%d warn careful$", lines[2])
    end)

    it("writes bare info lines and prefixed others on a terminal", function()
      local read = capture { tty = true }
      log.info("ready")
      log.error("broken")
      assert.are.same({ "ready", "error: broken" }, lines_of(read()))
    end)

    it("writes one JSON object per line, secrets masked before encoding", function()
      local read = capture { json = true }
      log.secret('pa"ss\\word')
      log.info("user %s", "admin")
      log.warn('key pa"ss\\word leaked')
      log.event { event = "vm", vmid = 101, note = 'with pa"ss\\word' }
      local lines = lines_of(read())
      assert.are.equal(3, #lines)
      local first = assert(json.decode(lines[1]))
      assert.are.equal("info", first.level)
      assert.are.equal("user admin", first.msg)
      assert.are.equal("number", type(first.ts))
      local second = assert(json.decode(lines[2]))
      assert.are.equal("warn", second.level)
      assert.are.equal("key <redacted> leaked", second.msg)
      local third = assert(json.decode(lines[3]))
      assert.are.equal("vm", third.event)
      assert.are.equal(101, third.vmid)
      assert.are.equal("with <redacted>", third.note)
      assert.is_nil(table.concat(lines, "\n"):find("ss\\\\word", 1, true))
    end)

    it("leaves the caller's event table unchanged", function()
      capture { json = true }
      local event = { event = "x", n = 1 }
      log.event(event)
      assert.are.same({ event = "x", n = 1 }, event)
    end)

    it("filters by level", function()
      local read = capture { tty = false, level = "warn" }
      log.debug("d")
      log.info("i")
      log.warn("w")
      log.error("e")
      local lines = lines_of(read())
      assert.are.equal(2, #lines)
      assert.matches(" warn w$", lines[1])
      assert.matches(" error e$", lines[2])
      read = capture { level = "debug" }
      log.debug("now visible")
      assert.matches(" debug now visible\n$", read())
    end)

    it("rejects unknown options and levels", function()
      assert.has_error(function() log.configure { colour = true } end)
      assert.has_error(function() log.configure { level = "loud" } end)
      assert.has_error(function() log.configure { json = "yes" } end)
    end)

    it("draws the terminal view again after JSON mode is switched off", function()
      local read = capture { json = true, tty = true }
      log.info("as json")
      log.configure { json = false }
      log.warn("as text")
      local lines = lines_of(read())
      assert.are.equal("info", assert(json.decode(lines[1])).level)
      assert.are.equal("warn: as text", lines[2])
    end)
  end)

  describe("progress", function()
    it("emits JSON events for named tasks only", function()
      local read = capture { json = true, progress = true }
      local t = sched.spawn("fetch image", function()
        sched.current():set_state("downloading")
        sched.sleep(0.01)
        return "ok"
      end)
      local anonymous = sched.spawn(function() return 1 end)
      assert.are.equal("ok", t:wait())
      anonymous:wait()
      local events = {}
      for _, line in ipairs(lines_of(read())) do events[#events + 1] = assert(json.decode(line)) end
      assert.are.equal(3, #events)
      for _, e in ipairs(events) do
        assert.are.equal("task", e.event)
        assert.are.equal("fetch image", e.task)
      end
      local statuses = { events[1].status, events[2].status, events[3].status }
      assert.are.same({ "start", "state", "done" }, statuses)
      assert.are.equal("downloading", events[2].state)
      assert.is_true(events[3].elapsed >= 0.01)
    end)

    it("reports a failed task with its masked error", function()
      local read = capture { json = true, progress = true }
      log.secret("topsecret")
      local t = sched.spawn("apply", function() errors.raise("EAPI", "denied for topsecret") end)
      assert.has_error(function() t:wait() end)
      local lines = lines_of(read())
      local last = assert(json.decode(lines[#lines]))
      assert.are.equal("failed", last.status)
      assert.are.equal("denied for <redacted>", last.error)
    end)

    it("writes plain progress lines off a terminal and nothing once progress is off", function()
      local read = capture { tty = false, progress = true }
      sched.spawn("boot", function() sched.sleep(0) end):wait()
      log.configure { progress = false }
      sched.spawn("quiet", function() end):wait()
      local lines = lines_of(read())
      assert.are.equal(2, #lines)
      assert.matches("info boot: started$", lines[1])
      assert.matches("info boot: done in %d+%.%ds$", lines[2])
    end)
  end)
end)
