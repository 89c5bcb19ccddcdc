--- The task scheduler: coroutines driven by the C event loop (tlr.loop.core).
---
--- Every task is a coroutine.  A task that has to wait calls `block`, which
--- yields to the scheduler; the loop reports ready ids (transfers, jobs, fds)
--- and timers fire, and the scheduler resumes whoever waits on them.
--- Code that is not inside a task (the REPL prompt, a busted spec, a foreign
--- coroutine) may block too: it drives the loop itself until its wait ends,
--- running the other tasks meanwhile.
local core = require "tlr.loop.core"
local errors = require "tlr.errors"

local M = {}

local now = core.now
local SUSPEND = setmetatable({}, { __name = "tlr.sched.SUSPEND" })

local task_of = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local ready = {} -- FIFO of {task, n, ...values}
local ready_head, ready_tail = 1, 0
local waiters = {} -- loop id -> wake function
local timers = {} -- binary min-heap of {at=, fn=, dead=}
local unobserved = {} -- failed tasks nobody has waited for (task -> true)
local task_seq = 0

M.hooks = {} -- observers: hooks.task(task, event) with event "start"|"state"|"end"

local function emit(task, event)
  local hook = M.hooks.task
  if hook then hook(task, event) end
end

-- ========== timers ==========

local function heap_push(entry)
  local i = #timers + 1
  timers[i] = entry
  while i > 1 do
    local parent = i // 2
    if timers[parent].at <= entry.at then break end
    timers[i], timers[parent] = timers[parent], entry
    i = parent
  end
end

local function heap_pop()
  local top, last = timers[1], timers[#timers]
  timers[#timers] = nil
  if #timers == 0 then return top end
  local i, n = 1, #timers
  timers[1] = last
  while true do
    local l, r, small = 2 * i, 2 * i + 1, i
    if l <= n and timers[l].at < timers[small].at then small = l end
    if r <= n and timers[r].at < timers[small].at then small = r end
    if small == i then break end
    timers[i], timers[small] = timers[small], timers[i]
    i = small
  end
  return top
end

--- Calls fn after `seconds`; returns a handle whose `dead = true` disarms it.
local function after(seconds, fn)
  local entry = { at = now() + seconds, fn = fn }
  heap_push(entry)
  return entry
end

local function fire_timers()
  local t = now()
  while timers[1] and timers[1].at <= t do
    local entry = heap_pop()
    if not entry.dead then entry.fn() end
  end
end

-- ========== the ready queue ==========

-- Each entry carries the task's wake sequence number: an entry made stale
-- (the task was resumed another way, e.g. by cancel) is skipped.
local function make_ready(task, ...)
  task.seq = (task.seq or 0) + 1
  local entry = table.pack(task, ...)
  entry.seq = task.seq
  ready_tail = ready_tail + 1
  ready[ready_tail] = entry
end

local function finish(task, ok, ...)
  if ok then
    task.status = "done"
    task.results = table.pack(...)
  else
    local err = ...
    task.err = err
    task.status = errors.is(err, "ECANCELED") and "cancelled" or "failed"
    if task.status == "failed" and not task.observed then unobserved[task] = true end
  end
  task.finished_at = now()
  emit(task, "end")
  local joiners = task.joiners
  task.joiners = nil
  for _, wake in ipairs(joiners) do wake() end
end

local function resume(task, ...)
  task.status = "running"
  task.started = true
  local ok, first = coroutine.resume(task.co, ...)
  if coroutine.status(task.co) == "dead" then
    if not ok then -- an error escaped the task's own xpcall: the scheduler's bug
      finish(task, false, debug.traceback(task.co, tostring(first)))
    end
  elseif first == SUSPEND then
    if task.status == "running" then task.status = "suspended" end -- else woken already
  else -- a bare coroutine.yield() inside a task: let the others run
    make_ready(task)
    task.status = "ready"
  end
end

local function run_ready()
  local stop = ready_tail -- tasks made ready while running wait for the next round
  while ready_head <= stop do
    local entry = ready[ready_head]
    ready[ready_head] = nil
    ready_head = ready_head + 1
    local task = entry[1]
    if task.status == "ready" and entry.seq == task.seq then
      resume(task, table.unpack(entry, 2, entry.n))
    end
  end
end

--- Runs one round: ready tasks, due timers, one poll of the loop.
--- With `may_sleep` false the poll does not wait; it does not wait either
--- once `finished()` holds after the ready tasks ran.
local function step(may_sleep, finished)
  run_ready()
  fire_timers()
  if finished and finished() then return end -- nothing to wait for: skip the loop
  local timeout
  if ready_head <= ready_tail or not may_sleep then
    timeout = 0
  elseif timers[1] then
    timeout = math.max(0, timers[1].at - now())
  end
  local ids, interrupted = core.poll(timeout)
  for i = 1, #ids do
    local wake = waiters[ids[i]]
    if wake then
      waiters[ids[i]] = nil
      wake(ids[i])
    end
  end
  if interrupted and M.on_interrupt then M.on_interrupt() end
  fire_timers()
end

-- ========== blocking ==========

--- The task running right now, or nil outside of tasks (or in a foreign coroutine).
function M.current()
  local co = coroutine.running()
  return task_of[co]
end

--- Waits until `register`'s wake function is called, a timeout passes or
--- the task is cancelled.
--- `register(wake)` arranges for wake(...) to be called later and returns a
--- cleanup function (run when the wait ends another way).
--- Returns true, ... (wake's arguments) or false on timeout; raises ECANCELED.
function M.block(register, timeout)
  local task = M.current()
  if task then
    if task.cancelled then errors.raise("ECANCELED", "task '" .. task.name .. "' was cancelled") end
    local finished = false
    local timer
    local function wake(...)
      if finished then return end
      finished = true
      if timer then timer.dead = true end
      make_ready(task, true, ...)
      task.status = "ready"
    end
    local cleanup = register(wake)
    if timeout then
      timer = after(timeout, function()
        if finished then return end
        finished = true
        if cleanup then cleanup() end
        make_ready(task, false)
        task.status = "ready"
      end)
    end
    task.cancel_wait = function()
      if finished then return end
      finished = true
      if timer then timer.dead = true end
      if cleanup then cleanup() end
      make_ready(task, false)
      task.status = "ready"
    end
    local results = table.pack(coroutine.yield(SUSPEND))
    task.cancel_wait = nil
    if task.cancelled then errors.raise("ECANCELED", "task '" .. task.name .. "' was cancelled") end
    return table.unpack(results, 1, results.n)
  end
  -- Not inside a task: drive the loop right here until woken.
  local woken
  local cleanup = register(function(...) if not woken then woken = table.pack(...) end end)
  local deadline = timeout and now() + timeout
  local function is_woken() return woken ~= nil end
  while not woken do
    if deadline and now() >= deadline then
      if cleanup then cleanup() end
      return false
    end
    if deadline and not timers[1] then -- make the poll wake up for our deadline
      local entry = after(math.max(0, deadline - now()), function() end)
      step(true, is_woken)
      entry.dead = true
    else
      step(true, is_woken)
    end
  end
  return true, table.unpack(woken, 1, woken.n)
end

--- Waits for loop id `id` to be notified; returns true, or false on timeout.
function M.await(id, timeout)
  return (M.block(function(wake)
    waiters[id] = wake
    return function() waiters[id] = nil end
  end, timeout))
end

--- Waits for a worker-pool job and returns its results.
function M.await_job(job)
  local id = job:id()
  while not job:done() do M.await(id) end
  return job:result()
end

-- ========== tasks ==========

local Task = {}
Task.__index = Task
Task.__name = "tlr.Task"

function Task:__tostring()
  return string.format("task %s (%s)", self.name, self.status)
end

local function observe(task)
  task.observed = true
  unobserved[task] = nil
end

--- Waits for the task and returns its results; raises its error (with the
--- task's traceback) if it failed, and ETIMEDOUT if `timeout` passes first.
function Task:wait(timeout)
  if self.status ~= "done" and self.status ~= "failed" and self.status ~= "cancelled" then
    if self == M.current() then error("a task cannot wait for itself", 2) end
    local ok = M.block(function(wake)
      table.insert(self.joiners, wake)
      return function()
        for i, w in ipairs(self.joiners or {}) do
          if w == wake then table.remove(self.joiners, i) break end
        end
      end
    end, timeout)
    if not ok then
      errors.raise("ETIMEDOUT", string.format("task '%s' did not finish within %gs", self.name, timeout))
    end
  end
  observe(self)
  if self.status == "done" then return table.unpack(self.results, 1, self.results.n) end
  error(self.err, 0)
end

--- Cancels the task: its current or next wait raises ECANCELED inside it, so
--- its cleanups run.  Returns false if it had finished already.
function Task:cancel()
  if self.status == "done" or self.status == "failed" or self.status == "cancelled" then
    return false
  end
  self.cancelled = true
  if not self.started then -- never ran: it finishes without running
    self.status = "running"
    self.seq = (self.seq or 0) + 1
    finish(self, false, errors.new("ECANCELED", "task '" .. self.name .. "' was cancelled"))
    return true
  end
  if self.status == "suspended" and self.cancel_wait then self.cancel_wait() end
  if self.status == "ready" then
    -- resume it right away so it has unwound when cancel returns
    self.seq = self.seq + 1
    resume(self)
  end
  return true
end

--- True once the task has finished (in any way).
function Task:done()
  return self.status == "done" or self.status == "failed" or self.status == "cancelled"
end

--- Sets the short state text shown in the progress view.
function Task:set_state(text)
  self.state = text
  emit(self, "state")
end

local function traceback_handler(err)
  local co = coroutine.running()
  local task = task_of[co]
  local where = task and ("in task '" .. task.name .. "'") or ""
  if type(err) == "table" then
    if rawget(err, "traceback") == nil then pcall(function() err.traceback = debug.traceback(where, 2) end) end
    return err
  end
  return debug.traceback(tostring(err) .. (where ~= "" and " (" .. where .. ")" or ""), 2)
end

--- Starts fn(...) as a new task and returns it.  `name` (optional first
--- argument) labels it in the progress view and in errors.
function M.spawn(name, fn, ...)
  local args
  if type(name) ~= "string" then
    args = table.pack(fn, ...)
    fn, name = name, nil
  else
    args = table.pack(...)
  end
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("bad argument to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  task_seq = task_seq + 1
  local task = setmetatable({
    id = task_seq,
    name = name or ("task#" .. task_seq),
    status = "ready",
    joiners = {},
    started_at = now(),
  }, Task)
  task.co = coroutine.create(function()
    finish(task, xpcall(fn, traceback_handler, table.unpack(args, 1, args.n)))
  end)
  task_of[task.co] = task
  emit(task, "start")
  make_ready(task)
  return task
end

--- Waits for every task; returns a list with each task's first result.
--- As soon as one fails, the others are cancelled and its error is raised;
--- after `timeout` seconds they are cancelled and ETIMEDOUT is raised.
function M.all(list, timeout)
  local deadline = timeout and now() + timeout
  local function cancel_all()
    for _, other in ipairs(list) do
      other:cancel()
      observe(other)
    end
  end
  while true do
    local pending = {}
    for _, task in ipairs(list) do
      if task.status == "failed" or task.status == "cancelled" then
        cancel_all()
        error(task.err, 0)
      elseif not task:done() then
        pending[#pending + 1] = task
      end
    end
    if #pending == 0 then break end
    local ok = M.block(function(wake)
      for _, task in ipairs(pending) do table.insert(task.joiners, wake) end
      return function()
        for _, task in ipairs(pending) do
          for i, w in ipairs(task.joiners or {}) do
            if w == wake then table.remove(task.joiners, i) break end
          end
        end
      end
    end, deadline and math.max(0, deadline - now()))
    if not ok then
      cancel_all()
      errors.raise("ETIMEDOUT", string.format("%d of %d tasks did not finish within %gs",
        #pending, #list, timeout))
    end
  end
  local out = {}
  for i, task in ipairs(list) do
    observe(task)
    out[i] = task.results[1]
  end
  return out
end

--- Sleeps for `seconds` (other tasks run meanwhile).
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    error("bad argument #1 to 'sleep' (non-negative number expected)", 2)
  end
  M.block(function(wake)
    local entry = after(seconds, wake)
    return function() entry.dead = true end
  end)
end

--- Runs fn(...) in a task with a time limit: returns its results, or cancels
--- it and raises ETIMEDOUT when `seconds` pass first.
function M.timeout(seconds, fn, ...)
  local task = M.spawn("timeout", fn, ...)
  local ok, err = pcall(Task.wait, task, seconds)
  if ok then return Task.wait(task) end
  if errors.is(err, "ETIMEDOUT") and not task:done() then
    task:cancel()
    observe(task)
  end
  error(err, 0)
end

-- ========== semaphores ==========

local Semaphore = {}
Semaphore.__index = Semaphore
Semaphore.__name = "tlr.Semaphore"

--- A counting semaphore with `n` permits; waiters are served in FIFO order.
function M.semaphore(n)
  if math.type(n) ~= "integer" or n < 1 then
    error("bad argument #1 to 'semaphore' (positive integer expected)", 2)
  end
  return setmetatable({ permits = n, size = n, queue = {} }, Semaphore)
end

--- Takes a permit, waiting if none is free; raises ETIMEDOUT after `timeout`.
function Semaphore:acquire(timeout)
  if self.permits > 0 and #self.queue == 0 then
    self.permits = self.permits - 1
    return
  end
  local ok = M.block(function(wake)
    local entry = { wake = wake }
    table.insert(self.queue, entry)
    return function()
      for i, e in ipairs(self.queue) do
        if e == entry then table.remove(self.queue, i) break end
      end
    end
  end, timeout)
  if not ok then errors.raise("ETIMEDOUT", string.format("no semaphore permit within %gs", timeout)) end
end

--- Returns a permit, handing it straight to the longest waiter.
function Semaphore:release()
  local entry = table.remove(self.queue, 1)
  if entry then
    entry.wake() -- the permit passes to the waiter without touching the count
  elseif self.permits < self.size then
    self.permits = self.permits + 1
  else
    error("semaphore released more often than acquired", 2)
  end
end

--- Runs fn(...) holding a permit; the permit is returned even if fn raises.
function Semaphore:with(fn, ...)
  self:acquire()
  local r = table.pack(pcall(fn, ...))
  self:release()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- ========== running ==========

--- Runs fn(...) as the main task, driving the loop until it finishes, and
--- returns its results (raising its error).  Other tasks still waiting when
--- it ends are left as they are.
function M.run(fn, ...)
  local main = M.spawn("main", fn, ...)
  observe(main)
  if M.current() then return main:wait() end
  local function finished() return main:done() end
  while not main:done() do step(true, finished) end
  return main:wait()
end

--- Runs until nothing is ready, no timer is armed and the loop has nothing pending.
function M.drain()
  repeat
    step(false)
  until ready_head > ready_tail and not timers[1] and core.pending() == 0
end

--- Failed tasks whose errors nobody looked at; clears the list.
function M.take_unobserved()
  local list = {}
  for task in pairs(unobserved) do list[#list + 1] = task end
  unobserved = {}
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

M.now = now
M.after = after

return M
