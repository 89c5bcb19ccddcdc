// Worker tasks of the Proxmox fake: UPIDs in PVE's format, a limited number
// of workers per node (more tasks wait: overload shows as latency), task
// logs ending in TASK OK / TASK WARNINGS: n / TASK ERROR: msg, the window
// right after start where the status answers 400 "no such task", and the
// flock-like locks with timeouts that operations take.
'use strict';

const hex8 = (n) => Math.floor(n).toString(16).toUpperCase().padStart(8, '0');

/** A FIFO lock like PVE's flock with a timeout (lock_file_full). */
class Mutex {
  constructor() { this.held = false; this.queue = []; }

  /** Resolves to a release function; rejects with code 'ETIMEOUT' after timeoutMs. */
  acquire(timeoutMs) {
    if (!this.held) { this.held = true; return Promise.resolve(this.releaser()); }
    return new Promise((resolve, reject) => {
      const w = { resolve };
      w.timer = setTimeout(() => {
        this.queue = this.queue.filter((x) => x !== w);
        const err = new Error('got timeout');
        err.code = 'ETIMEOUT';
        reject(err);
      }, timeoutMs);
      this.queue.push(w);
    });
  }

  releaser() {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) { clearTimeout(next.timer); next.resolve(this.releaser()); } else this.held = false;
    };
  }
}

/** Counting semaphore whose limit is read on every acquire (the profile may change). */
class Workers {
  constructor(limit) { this.limit = limit; this.busy = 0; this.queue = []; }
  acquire() {
    if (this.busy < this.limit()) { this.busy++; return Promise.resolve(); }
    return new Promise((resolve) => this.queue.push(resolve));
  }
  release() {
    this.busy--;
    while (this.queue.length && this.busy < this.limit()) { this.busy++; this.queue.shift()(); }
  }
}

class TaskError extends Error {}

class Tasks {
  /** @param {{ms: (key) => number, workers: () => number, nodeStart: number}} opts */
  constructor(opts) {
    this.ms = opts.ms;
    this.workersLimit = opts.workers;
    this.tasks = new Map();
    this.order = [];
    this.workers = new Map();
    this.pid = 0x1000 + Math.floor(Math.random() * 0x40000);
    this.bootTicks = 0x1A2B3 + Math.floor(Math.random() * 0x10000);
    this.nodeStart = opts.nodeStart;
  }

  nodeWorkers(node) {
    if (!this.workers.has(node)) this.workers.set(node, new Workers(this.workersLimit));
    return this.workers.get(node);
  }

  /**
   * Starts a worker task and returns its UPID at once.
   *   run(ctx): async; ctx.log(line), ctx.warn(line), ctx.sleep(ms) (aborts with the task)
   *   onFail(err): async clean-up when run throws
   *   always(): called when the task ends, whatever happened (releases locks)
   *   fault: an exitstatus to fail with (fault injection)
   */
  start({ node, type, id = '', user, run, onFail, always, fault }) {
    const now = Date.now();
    const pid = ++this.pid;
    const pstart = this.bootTicks + Math.floor((now - this.nodeStart) / 10);
    const starttime = Math.floor(now / 1000);
    const upid = `UPID:${node}:${hex8(pid)}:${hex8(pstart)}:${hex8(starttime)}:${type}:${id}:${user}:`;
    const task = {
      upid, node, pid, pstart, starttime, type, id: String(id), user, status: 'running', log: [],
      visibleAt: now + this.ms('task_visible'), warnings: 0, aborted: false, sleepers: new Set(),
    };
    this.tasks.set(upid, task);
    this.order.push(task);
    if (this.order.length > 5000) this.tasks.delete(this.order.shift().upid);
    const ctx = {
      upid, task,
      log: (line) => { task.log.push(String(line)); },
      warn: (line) => { task.warnings++; task.log.push(`WARN: ${line}`); },
      sleep: (ms) => new Promise((resolve, reject) => {
        if (task.aborted) { reject(new TaskError('interrupted by signal')); return; }
        const s = { reject };
        s.timer = setTimeout(() => { task.sleepers.delete(s); resolve(); }, ms);
        task.sleepers.add(s);
      }),
    };
    const body = fault
      ? async () => { await ctx.sleep(0); throw new TaskError(fault); }
      : run;
    const workers = this.nodeWorkers(node);
    (async () => {
      await workers.acquire();
      try {
        await body(ctx);
        this.finish(task, task.warnings ? `WARNINGS: ${task.warnings}` : 'OK');
      } catch (err) {
        const msg = String(err.message || err).replace(/\n+$/, '');
        if (onFail) { try { await onFail(err); } catch (e2) { task.log.push(`cleanup failed: ${e2.message}`); } }
        this.finish(task, msg.split('\n')[0], msg);
      } finally {
        workers.release();
        if (always) always();
      }
    })();
    return upid;
  }

  finish(task, exitstatus, fullError) {
    task.status = 'stopped';
    task.exitstatus = exitstatus;
    task.endtime = Math.floor(Date.now() / 1000);
    if (fullError !== undefined) task.log.push(`TASK ERROR: ${fullError}`);
    else task.log.push(exitstatus === 'OK' ? 'TASK OK' : `TASK ${exitstatus}`);
  }

  /** Aborts a running task (DELETE /nodes/{node}/tasks/{upid}). */
  abort(upid) {
    const t = this.tasks.get(upid);
    if (!t || t.status !== 'running') return false;
    t.aborted = true;
    for (const s of t.sleepers) { clearTimeout(s.timer); s.reject(new TaskError('interrupted by signal')); }
    t.sleepers.clear();
    return true;
  }

  /** The task if it exists and is visible yet (else undefined: "no such task"). */
  visible(upid) {
    const t = this.tasks.get(upid);
    return t && Date.now() >= t.visibleAt ? t : undefined;
  }

  /** The status object of GET /nodes/{node}/tasks/{upid}/status. */
  static view(t, forList = false) {
    const out = {
      upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type,
      id: t.id, user: t.user,
    };
    const bang = t.user.indexOf('!');
    if (bang >= 0) { out.user = t.user.slice(0, bang); out.tokenid = t.user.slice(bang + 1); }
    if (forList) {
      if (t.status === 'stopped') { out.status = t.exitstatus; out.endtime = t.endtime; }
    } else {
      out.status = t.status;
      if (t.status === 'stopped') out.exitstatus = t.exitstatus;
    }
    return out;
  }

  list(node) { return this.order.filter((t) => t.node === node && Date.now() >= t.visibleAt); }

  /** Running tasks holding a node's workers and waiting for one. */
  load(node) { const w = this.nodeWorkers(node); return { busy: w.busy, waiting: w.queue.length }; }
}

module.exports = { Tasks, Mutex, TaskError, hex8 };
