#!/usr/bin/env node
// The tlr lab: fake services on loopback for the tests and `make demo`.
//
//   node tests/lab/lab.js --env build/lab/env [--net 127.77] [--profile test|realistic]
//                         [--state DIR] [--ttl SECONDS] [--pve-version 9.0] [--only pve,...]
//
// Starts the fakes (services, see SERVICES below), a plain-HTTP control
// endpoint, and when everything listens writes the env file atomically: shell
// `KEY='value'` lines (PVE_ENDPOINT, PVE_TOKEN, ..., LAB_CONTROL, LAB_PIDS,
// LAB_NET).  Prints one JSON line {"ready":true,...} on stdout as well.
// Stops on SIGTERM/SIGINT (removing the env file) and by itself after --ttl
// seconds (default 3600), so it never lingers.  README.md beside this file
// documents the control API and the profiles.
//
// A service is a module exporting {name, profiles: {test, realistic}, start(lab)}
// where start() resolves to {env: {KEY: value}, stop(), api?}.  Services share
// the Lab object: addresses in the lab net, the duration profile, fault
// rules, the request log, the control routes and the event bus.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const { EventEmitter } = require('events');

// Services in start order (talos uses pve's and factory's api; it will start API servers through k8s's).
const SERVICES = { pve: './pve', factory: './factory', k8s: './k8s', talos: './talos', cloudflare: './cloudflare' };

const USAGE = 'usage: node lab.js --env FILE [--net 127.77] [--profile test|realistic] ' +
  '[--state DIR] [--ttl SECONDS] [--pve-version 8.2|8.4|9.0|9.1] [--only pve,...]';

function parseArgs(argv) {
  const o = { net: '127.77', profile: 'test', ttl: 3600, only: null, pveVersion: '9.0' };
  const names = { '--env': 'env', '--net': 'net', '--profile': 'profile', '--state': 'state',
    '--ttl': 'ttl', '--only': 'only', '--pve-version': 'pveVersion' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    if (!names[a]) throw new Error(`unknown option ${a}\n${USAGE}`);
    if (v === undefined) v = argv[++i];
    if (v === undefined) throw new Error(`option ${a} needs a value`);
    o[names[a]] = v;
  }
  if (!o.env) throw new Error(`--env is required\n${USAGE}`);
  if (!/^127\.\d{1,3}$/.test(o.net) || Number(o.net.split('.')[1]) > 255) {
    throw new Error(`--net must look like 127.N (a /16 inside 127.0.0.0/8), got '${o.net}'`);
  }
  o.ttl = Number(o.ttl);
  if (!(o.ttl > 0)) throw new Error('--ttl must be a positive number of seconds');
  o.only = o.only ? o.only.split(',').filter(Boolean) : Object.keys(SERVICES);
  for (const s of o.only) if (!SERVICES[s]) throw new Error(`unknown service '${s}'`);
  o.env = path.resolve(o.env);
  o.state = path.resolve(o.state || `${o.env}.state`);
  return o;
}

// ------------------------------------------------------------------ helpers
function isPlainObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

function deepMerge(dst, src) {
  for (const [k, v] of Object.entries(src || {})) {
    if (isPlainObject(v) && isPlainObject(dst[k])) deepMerge(dst[k], v);
    else dst[k] = isPlainObject(v) ? deepMerge({}, v) : v;
  }
  return dst;
}

function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') { re += '.*'; i++; } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function shellQuote(v) { return `'${String(v).replace(/'/g, `'\\''`)}'`; }

/** Writes a file atomically: temp file in the same directory, fsync, rename. */
function writeAtomic(file, data, mode = 0o600) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp.${process.pid}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try { fs.writeSync(fd, data); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  fs.renameSync(tmp, file);
}

// ------------------------------------------------------------------ faults
// A rule: {id, service, method?, path (glob, * within a segment, ** across) |
// path_regex, status?, message?, probability?, count?, latency? (s), drop?,
// task_exitstatus?, lock_timeout?, node?}.  count: times it still fires (null = always).
// node (talos): only calls handled by that node; rules without it fire only
// where a call enters the lab, not again on the nodes it is proxied to.
class Faults {
  constructor() { this.rules = []; this.nextId = 1; }

  add(spec) {
    if (!isPlainObject(spec)) throw new Error('a fault rule is a JSON object');
    const known = ['service', 'method', 'path', 'path_regex', 'status', 'message', 'probability',
      'count', 'latency', 'drop', 'task_exitstatus', 'lock_timeout', 'body', 'node'];
    for (const k of Object.keys(spec)) if (!known.includes(k)) throw new Error(`unknown fault key '${k}'`);
    if (!spec.path && !spec.path_regex) throw new Error('a fault rule needs path or path_regex');
    if (!spec.status && !spec.drop && !spec.latency && !spec.task_exitstatus && !spec.lock_timeout) {
      throw new Error('a fault rule needs status, drop, latency, task_exitstatus or lock_timeout');
    }
    const rule = { id: this.nextId++, service: 'pve', probability: 1, count: null, hits: 0, ...spec };
    rule.re = spec.path_regex ? new RegExp(spec.path_regex) : globToRegExp(spec.path);
    this.rules.push(rule);
    return this.view(rule);
  }

  view(r) {
    const { re, ...rest } = r; // eslint-disable-line no-unused-vars
    return rest;
  }

  list() { return this.rules.map((r) => this.view(r)); }
  remove(id) { const n = this.rules.length; this.rules = this.rules.filter((r) => r.id !== id); return n !== this.rules.length; }
  clear() { this.rules = []; }

  /** First rule that fires for this request (consumes one count), or null. */
  match(service, method, reqPath, ctx = {}) {
    for (const r of this.rules) {
      if (r.service !== service) continue;
      if (r.node !== undefined ? r.node !== ctx.node : ctx.proxied) continue;
      if (r.method && r.method.toUpperCase() !== method) continue;
      if (!r.re.test(reqPath)) continue;
      if (r.count !== null && r.count <= 0) continue;
      if (Math.random() >= r.probability) continue;
      r.hits++;
      if (r.count !== null) r.count--;
      if (r.count === 0) this.rules = this.rules.filter((x) => x !== r);
      return { ...r };
    }
    return null;
  }
}

// ------------------------------------------------------------------ ring log
class Ring {
  constructor(max) { this.max = max; this.items = []; this.seq = 0; }
  push(item) {
    const e = { seq: ++this.seq, ...item };
    this.items.push(e);
    if (this.items.length > this.max) this.items.splice(0, this.items.length - this.max);
    return e;
  }
  list(filter = {}) {
    let out = this.items;
    if (filter.since) out = out.filter((e) => e.seq > Number(filter.since));
    for (const k of ['service', 'method', 'type']) {
      if (filter[k]) out = out.filter((e) => e[k] === filter[k]);
    }
    if (filter.path) { const re = globToRegExp(filter.path); out = out.filter((e) => re.test(e.path)); }
    if (filter.limit) out = out.slice(-Number(filter.limit));
    return out;
  }
  clear() { this.items = []; }
}

// ------------------------------------------------------------------ the lab
class Lab {
  constructor(opts) {
    this.opts = opts;
    this.net = opts.net;
    this.stateDir = opts.state;
    this.events = new EventEmitter(); // 'vm.started', 'vm.stopped', 'vm.deleted', ... (see README)
    this.events.setMaxListeners(100);
    this.eventLog = new Ring(2000);
    this.requestLog = new Ring(20000);
    this.faults = new Faults();
    this.profileName = opts.profile;
    this.profile = {};
    this.presets = {}; // service -> {test, realistic}
    this.routes = [];
    this.services = {}; // name -> {env, stop, api}
    this.env = {};
    this.nextDynamic = 1;
    this.stopping = false;
  }

  /** Address number `host` in the lab net: addr(2) = 127.77.0.2. */
  addr(host, sub = 0) { return `${this.net}.${sub}.${host}`; }

  /** A fresh address from the dynamic pool 127.N.1.1-127.N.1.254 (DHCP leases). */
  allocAddr() {
    if (this.nextDynamic > 254) throw new Error('lab address pool exhausted');
    return this.addr(this.nextDynamic++, 1);
  }

  registerProfiles(service, presets) {
    this.presets[service] = presets;
    this.profile[service] = deepMerge({}, presets[this.profileName] || presets.test);
  }

  /** Replaces the profile by a preset (`test`/`realistic`), then merges overrides. */
  setProfile(name, overrides) {
    if (name) {
      for (const [svc, presets] of Object.entries(this.presets)) {
        if (!presets[name]) throw new Error(`unknown profile '${name}'`);
        this.profile[svc] = deepMerge({}, presets[name]);
      }
      this.profileName = name;
    }
    this.mergeProfile(overrides);
  }

  mergeProfile(overrides) {
    for (const [svc, vals] of Object.entries(overrides || {})) {
      if (!this.profile[svc]) throw new Error(`unknown profile section '${svc}'`);
      if (!isPlainObject(vals)) throw new Error(`profile section '${svc}' must be an object`);
      for (const k of Object.keys(vals)) {
        if (!(k in this.profile[svc])) throw new Error(`unknown profile key '${svc}.${k}'`);
      }
      deepMerge(this.profile[svc], vals);
    }
  }

  /** A duration in milliseconds from the profile, with the profile's jitter. */
  ms(service, key) {
    const p = this.profile[service];
    const v = p[key];
    if (typeof v !== 'number') throw new Error(`profile ${service}.${key} is not a number`);
    const jitter = p.jitter || 0;
    const f = jitter ? 1 + (Math.random() * 2 - 1) * jitter : 1;
    return Math.max(0, v * f * 1000);
  }

  /** Emits an event on the bus and keeps it in the event log (GET /events). */
  emit(type, data) {
    const e = this.eventLog.push({ type, time: Date.now() / 1000, ...data });
    this.events.emit(type, e);
    this.events.emit('*', e);
    return e;
  }

  logRequest(entry) { return this.requestLog.push(entry); }

  /** Registers a control route: pattern like '/pve/vms/:vmid/agent'. */
  route(method, pattern, handler) {
    const keys = [];
    const re = new RegExp('^' + pattern.replace(/:(\w+)/g, (_, k) => { keys.push(k); return '([^/]+)'; }) + '$');
    this.routes.push({ method, re, keys, handler });
  }

  /** Listens on host:port, falling back to a free port when `port` is taken. */
  listen(server, host, port = 0) {
    return new Promise((resolve, reject) => {
      const tryPort = (p) => {
        const onError = (err) => {
          server.removeListener('listening', onListening);
          if (err.code === 'EADDRINUSE' && p !== 0) tryPort(0);
          else reject(err);
        };
        const onListening = () => { server.removeListener('error', onError); resolve(server.address().port); };
        server.once('error', onError);
        server.once('listening', onListening);
        server.listen(p, host);
      };
      tryPort(port);
    });
  }

  async start() {
    fs.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    const control = await this.startControl();
    for (const name of this.opts.only) {
      const mod = require(SERVICES[name]);
      if (mod.profiles) this.registerProfiles(name, mod.profiles);
      const svc = await mod.start(this);
      this.services[name] = svc;
      Object.assign(this.env, svc.env || {});
    }
    Object.assign(this.env, {
      LAB_CONTROL: control, LAB_PIDS: String(process.pid), LAB_NET: this.net,
      LAB_PROFILE: this.profileName, LAB_STATE: this.stateDir,
    });
    this.writeEnv();
    this.ttlTimer = setTimeout(() => this.stop('ttl expired'), this.opts.ttl * 1000);
    process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, env: this.opts.env, control }) + '\n');
  }

  writeEnv() {
    const lines = ['# tlr lab: written by tests/lab/lab.js; removed when the lab stops'];
    for (const k of Object.keys(this.env).sort()) lines.push(`${k}=${shellQuote(this.env[k])}`);
    writeAtomic(this.opts.env, lines.join('\n') + '\n');
  }

  async startControl() {
    this.control = http.createServer((req, res) => this.handleControl(req, res));
    const host = this.addr(1);
    const port = await this.listen(this.control, host, 0);
    this.controlUrl = `http://${host}:${port}`;
    this.addControlRoutes();
    return this.controlUrl;
  }

  handleControl(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const send = (status, body) => {
        const text = JSON.stringify(body === undefined ? null : body, null, 1) + '\n';
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      try {
        const url = new URL(req.url, 'http://lab');
        const raw = Buffer.concat(chunks).toString('utf8');
        let body = {};
        if (raw.trim()) body = JSON.parse(raw);
        const query = Object.fromEntries(url.searchParams);
        for (const r of this.routes) {
          const m = r.re.exec(url.pathname);
          if (!m || (r.method !== req.method && !(r.method === 'GET' && req.method === 'HEAD'))) continue;
          const params = {};
          r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]); });
          const out = await r.handler({ params, query, body, req });
          return send(200, out === undefined ? { ok: true } : out);
        }
        send(404, { error: `no control route ${req.method} ${url.pathname}` });
      } catch (err) {
        send(err.status || 400, { error: err.message });
      }
    });
  }

  addControlRoutes() {
    this.route('GET', '/', () => ({
      pid: process.pid, net: this.net, profile: this.profileName, services: Object.keys(this.services),
      env: this.env, ttl: this.opts.ttl,
    }));
    this.route('GET', '/env', () => this.env);
    this.route('GET', '/profile', () => ({ name: this.profileName, profile: this.profile }));
    this.route('PATCH', '/profile', ({ body }) => { this.mergeProfile(body); return this.profile; });
    this.route('POST', '/profile', ({ body }) => { this.mergeProfile(body); return this.profile; });
    this.route('PUT', '/profile', ({ body }) => {
      const { name, ...rest } = body;
      this.setProfile(name || this.profileName, rest);
      return { name: this.profileName, profile: this.profile };
    });
    this.route('GET', '/faults', () => this.faults.list());
    this.route('POST', '/faults', ({ body }) => this.faults.add(body));
    this.route('DELETE', '/faults', () => { this.faults.clear(); });
    this.route('DELETE', '/faults/:id', ({ params }) => ({ removed: this.faults.remove(Number(params.id)) }));
    this.route('GET', '/log', ({ query }) => this.requestLog.list(query));
    this.route('DELETE', '/log', () => { this.requestLog.clear(); });
    this.route('GET', '/events', ({ query }) => this.eventLog.list(query));
    this.route('DELETE', '/events', () => { this.eventLog.clear(); });
    this.route('POST', '/stop', () => { setImmediate(() => this.stop('stopped through the control endpoint')); });
  }

  async stop(why, code = 0) {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.ttlTimer);
    process.stderr.write(`lab ${process.pid}: stopping (${why})\n`);
    const hard = setTimeout(() => process.exit(code), 3000);
    hard.unref();
    try {
      const cur = fs.readFileSync(this.opts.env, 'utf8');
      if (cur.includes(`LAB_PIDS='${process.pid}'`)) fs.unlinkSync(this.opts.env);
    } catch (_) { /* not written or already gone */ }
    for (const name of Object.keys(this.services).reverse()) {
      try { await this.services[name].stop(); } catch (err) { process.stderr.write(`${name}: ${err.message}\n`); }
    }
    if (this.control) {
      this.control.close();
      if (this.control.closeAllConnections) this.control.closeAllConnections();
    }
    process.exit(code);
  }
}

async function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (err) {
    process.stderr.write(`lab: ${err.message}\n`);
    process.exit(2);
  }
  const lab = new Lab(opts);
  process.on('SIGTERM', () => lab.stop('SIGTERM'));
  process.on('SIGINT', () => lab.stop('SIGINT'));
  process.on('SIGHUP', () => lab.stop('SIGHUP'));
  try {
    await lab.start();
  } catch (err) {
    process.stderr.write(`lab: ${err.stack || err.message}\n`);
    await lab.stop('start failed', 1);
  }
}

module.exports = { Lab, Faults, Ring, deepMerge, globToRegExp, writeAtomic };

if (require.main === module) main();
