-- Tasks, waits, timers, semaphores and cancellation (lua/tlr/sched.lua).
local sched = require "tlr.sched"
local errors = require "tlr.errors"

describe("tlr.sched", function()
  it("runs a task and returns its results through wait", function()
    local t = sched.spawn(function(a, b) return a + b, "x" end, 2, 3)
    local sum, x = t:wait()
    assert.are.equal(5, sum)
    assert.are.equal("x", x)
    assert.are.equal("done", t.status)
  end)

  it("sleeps concurrently: ten 50 ms sleeps take about 50 ms, not 500", function()
    local t0 = sched.now()
    local tasks = {}
    for i = 1, 10 do tasks[i] = sched.spawn(function() sched.sleep(0.05) return i end) end
    local results = sched.all(tasks)
    local elapsed = sched.now() - t0
    for i = 1, 10 do assert.are.equal(i, results[i]) end
    assert.is_true(elapsed >= 0.05)
    assert.is_true(elapsed < 0.4, "sleeps ran one after another: " .. elapsed)
  end)

  it("wakes timers in deadline order", function()
    local order = {}
    local tasks = {}
    for _, d in ipairs { 0.03, 0.01, 0.02 } do
      tasks[#tasks + 1] = sched.spawn(function() sched.sleep(d) order[#order + 1] = d end)
    end
    sched.all(tasks)
    assert.are.same({ 0.01, 0.02, 0.03 }, order)
  end)

  it("re-raises a task's error with its traceback on wait", function()
    local t = sched.spawn("failing", function() error("kaput") end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.matches("kaput", err)
    assert.matches("in task 'failing'", err)
    assert.matches("stack traceback", err)
    assert.are.equal("failed", t.status)
  end)

  it("keeps error objects as objects and adds a traceback", function()
    local t = sched.spawn(function() errors.raise("EAPI", "nope") end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "EAPI"))
    assert.matches("stack traceback", err.traceback)
  end)

  it("times out a wait with ETIMEDOUT and leaves the task running", function()
    local t = sched.spawn(function() sched.sleep(0.2) return "late" end)
    local ok, err = pcall(t.wait, t, 0.02)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ETIMEDOUT"))
    assert.are.equal("late", t:wait())
  end)

  it("cancels a sleeping task: its wait raises ECANCELED and cleanups run", function()
    local cleaned = false
    local t = sched.spawn(function()
      local guard <close> = setmetatable({}, { __close = function() cleaned = true end })
      sched.sleep(10)
      return "never"
    end)
    sched.sleep(0.01)
    assert.is_true(t:cancel())
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ECANCELED"))
    assert.is_true(cleaned)
    assert.are.equal("cancelled", t.status)
    assert.is_false(t:cancel())
  end)

  it("cancels a task before it started", function()
    local ran = false
    local t = sched.spawn(function() sched.sleep(0) ran = true end)
    t:cancel()
    assert.has_error(function() t:wait() end)
    assert.is_false(ran)
  end)

  it("all() cancels the others and raises when one fails", function()
    local slow = sched.spawn(function() sched.sleep(5) end)
    local bad = sched.spawn(function() sched.sleep(0.01) error("bad one") end)
    local t0 = sched.now()
    local ok, err = pcall(sched.all, { slow, bad })
    assert.is_false(ok)
    assert.matches("bad one", tostring(err))
    assert.are.equal("cancelled", slow.status)
    assert.is_true(sched.now() - t0 < 1)
  end)

  it("timeout() returns results in time and cancels otherwise", function()
    assert.are.equal(7, sched.timeout(1, function() return 7 end))
    local ok, err = pcall(sched.timeout, 0.02, function() sched.sleep(5) end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ETIMEDOUT"))
  end)

  it("limits concurrency with a semaphore, FIFO", function()
    local sem = sched.semaphore(2)
    local active, peak, order = 0, 0, {}
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = sched.spawn(function()
        sem:with(function()
          active = active + 1
          peak = math.max(peak, active)
          order[#order + 1] = i
          sched.sleep(0.01)
          active = active - 1
        end)
      end)
    end
    sched.all(tasks)
    assert.are.equal(2, peak)
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, order)
    assert.are.equal(2, sem.permits)
  end)

  it("returns the permit when the function raises", function()
    local sem = sched.semaphore(1)
    assert.has_error(function() sem:with(function() error("x") end) end)
    assert.are.equal(1, sem.permits)
    assert.has_error(function() sem:release() end, nil)
  end)

  it("times out a semaphore acquire", function()
    local sem = sched.semaphore(1)
    sem:acquire()
    local ok, err = pcall(sem.acquire, sem, 0.01)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ETIMEDOUT"))
    sem:release()
    assert.are.equal(1, sem.permits)
  end)

  it("rejects bad arguments as programmer errors", function()
    assert.has_error(function() sched.spawn(42) end)
    assert.has_error(function() sched.sleep(-1) end)
    assert.has_error(function() sched.semaphore(0) end)
  end)

  it("reports failed tasks nobody waited for", function()
    sched.take_unobserved()
    local t = sched.spawn("orphan", function() error("lost") end)
    sched.sleep(0)
    sched.sleep(0)
    local list = sched.take_unobserved()
    assert.are.equal(1, #list)
    assert.are.equal(t, list[1])
  end)

  it("measures time on a monotonic clock", function()
    local a = sched.now()
    sched.sleep(0.02)
    local b = sched.now()
    assert.is_true(b - a >= 0.02)
  end)
end)
