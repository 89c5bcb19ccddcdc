// The Cloudflare API v4 fake: a lab service (see ../lab.js).  HTTPS at
// <net>.0.7 (port 443 when free) under /client/v4, the part of the API
// tlr's DNS provider and cert-manager/external-dns style clients use:
//
//   GET  /user/tokens/verify
//   GET  /zones[?name=&status=&page=&per_page=]      GET /zones/:zone_id
//   GET  /zones/:zone_id/dns_records[?type=&name=&content=&page=&per_page=...]
//   POST /zones/:zone_id/dns_records
//   GET|PUT|PATCH|DELETE /zones/:zone_id/dns_records/:id
//
// Bearer-token auth, the JSON envelope, Cloudflare's error codes, a rate
// limiter (profile knobs) and the lab's fault rules (service "cloudflare").
// README.md beside this file lists what is modelled and the sources.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const path = require('path');
const { execFileSync } = require('child_process');
const { Store, CfError, err } = require('./store');

const BASE = '/client/v4';

const profiles = {
  // seconds; rate_limit 0 = no limiter
  test: { request_latency: 0, rate_limit: 0, rate_window: 300, retry_after: 1, record_quota: 1000, jitter: 0 },
  realistic: {
    request_latency: 0.12, // api.cloudflare.com from a home lab
    rate_limit: 1200, // requests per rate_window per token, then 429 until the window frees up
    rate_window: 300,
    retry_after: 1, // Retry-After of 429s made by fault rules
    record_quota: 1000, // records per zone (free plan)
    jitter: 0.2,
  },
};

/** A CA and a server certificate for `host` (openssl CLI, P-256), reused while the address matches. */
function makeCertificate(dir, host) {
  const f = (n) => path.join(dir, n);
  const have = ['ca.pem', 'server.pem', 'server.key', 'stamp'].every((n) => fs.existsSync(f(n)));
  if (!have || fs.readFileSync(f('stamp'), 'utf8') !== host) {
    const run = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    run(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '3650',
      '-subj', '/CN=tlr lab Cloudflare CA', '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    run(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=api.cloudflare.com']);
    fs.writeFileSync(f('server.ext'), [`subjectAltName=IP:${host},DNS:api.cloudflare.com,DNS:localhost`,
      'basicConstraints=CA:FALSE', 'keyUsage=digitalSignature', 'extendedKeyUsage=serverAuth', ''].join('\n'));
    run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-days', '730', '-sha256', '-out', f('server.pem'), '-extfile', f('server.ext')]);
    fs.chmodSync(f('server.key'), 0o600);
    fs.chmodSync(f('ca.key'), 0o600);
    fs.writeFileSync(f('stamp'), host);
  }
  return { cert: fs.readFileSync(f('server.pem')), key: fs.readFileSync(f('server.key')), caFile: f('ca.pem') };
}

/** A token as Cloudflare makes them: 40 characters of [A-Za-z0-9_-]. */
function newToken() { return crypto.randomBytes(30).toString('base64url'); }

class Cloudflare {
  constructor(lab) {
    this.lab = lab;
    this.store = new Store({ quota: () => lab.profile.cloudflare.record_quota });
    this.tokens = new Map(); // value -> {id, name, write}
    this.window = new Map(); // token id -> request times (ms) in the current window
  }

  addToken(name, write) {
    const value = newToken();
    this.tokens.set(value, { id: crypto.randomBytes(16).toString('hex'), name, write });
    return value;
  }

  /** Authenticates a request: the token entry, or throws the error Cloudflare answers. */
  authenticate(req, p) {
    const h = req.headers.authorization;
    if (h === undefined) {
      if (req.headers['x-auth-key'] !== undefined || req.headers['x-auth-email'] !== undefined) {
        // the lab issues no Global API Keys
        throw new CfError(400, [{ code: 6003, message: 'Invalid request headers',
          error_chain: [{ code: 6103, message: 'Invalid format for X-Auth-Key header' }] }]);
      }
      throw err(400, 9106, 'Missing X-Auth-Key, X-Auth-Email or Authorization headers', { bare: true });
    }
    const m = /^Bearer ([A-Za-z0-9_-]{40})$/.exec(h);
    if (!m) {
      throw new CfError(400, [{ code: 6003, message: 'Invalid request headers',
        error_chain: [{ code: 6111, message: 'Invalid format for Authorization header' }] }]);
    }
    const tok = this.tokens.get(m[1]);
    if (tok) return tok;
    if (p === '/user/tokens/verify') throw err(401, 1000, 'Invalid API Token');
    if (/^\/zones\/[^/]+\/./.test(p)) throw err(401, 10000, 'Authentication error', { bare: true });
    throw err(403, 9109, 'Invalid access token');
  }

  /** Sliding-window limiter per token; returns {limited, retryAfter, headers}. */
  limit(tok) {
    const { rate_limit: max, rate_window: win } = this.lab.profile.cloudflare;
    if (!max) return { limited: false, headers: {} };
    const t = Date.now();
    const list = (this.window.get(tok.id) || []).filter((x) => x > t - win * 1000);
    this.window.set(tok.id, list);
    const reset = list.length ? Math.ceil((list[0] + win * 1000 - t) / 1000) : win;
    const headers = { ratelimit: `"default";r=${Math.max(0, max - list.length - 1)};t=${reset}`,
      'ratelimit-policy': `"default";q=${max};w=${win}` };
    if (list.length >= max) return { limited: true, retryAfter: Math.max(1, reset), headers };
    list.push(t);
    return { limited: false, headers };
  }

  async handle(req, res, raw) {
    const started = Date.now();
    const url = new URL(req.url, 'https://api.cloudflare.com');
    const p = url.pathname.startsWith(BASE) ? url.pathname.slice(BASE.length) || '/' : url.pathname;
    const query = Object.fromEntries(url.searchParams);
    const entry = { service: 'cloudflare', time: started / 1000, method: req.method, path: p, params: { ...query },
      auth: 'none', token: null };
    let extra = {};
    const send = (status, body, fault) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text),
        server: 'cloudflare', 'cf-ray': `${crypto.randomBytes(8).toString('hex')}-LAB`, ...extra });
      res.end(text);
      const codes = body && Array.isArray(body.errors) ? body.errors.map((e) => e.code) : [];
      this.lab.logRequest({ ...entry, status, reason: codes.length ? body.errors[0].message : 'OK', codes,
        ms: Date.now() - started, fault: fault || null });
    };
    const fail = (e, fault) => {
      const body = e.bare ? { success: false, errors: e.errors }
        : { success: false, errors: e.errors, messages: [], result: null };
      send(e.status, body, fault);
    };

    const fault = this.lab.faults.match('cloudflare', req.method, p);
    const latency = this.lab.ms('cloudflare', 'request_latency') + (fault && fault.latency ? fault.latency * 1000 : 0);
    if (latency) await sleep(latency);
    if (fault && fault.drop) {
      req.socket.destroy();
      this.lab.logRequest({ ...entry, status: 0, reason: 'dropped', ms: Date.now() - started, fault: fault.id });
      return;
    }
    if (fault && fault.status) {
      if (fault.status === 429) extra = { 'retry-after': String(this.lab.profile.cloudflare.retry_after) };
      if (fault.body !== undefined) return send(fault.status, fault.body, fault.id);
      const message = fault.status === 429 ? 'Please wait and consider throttling your request speed'
        : fault.message || 'Internal Server Error';
      return fail(new CfError(fault.status, [{ code: fault.status === 429 ? 971 : 10001, message }]), fault.id);
    }

    try {
      let tok;
      try {
        tok = this.authenticate(req, p);
      } catch (e) {
        entry.auth = req.headers.authorization === undefined ? 'none' : 'invalid';
        throw e;
      }
      entry.auth = 'token';
      entry.token = tok.name;
      const lim = this.limit(tok);
      extra = lim.headers;
      if (lim.limited) {
        extra = { ...extra, 'retry-after': String(lim.retryAfter) };
        throw err(429, 971, 'Please wait and consider throttling your request speed');
      }
      let body;
      if (raw.length && (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH')) {
        try { body = JSON.parse(raw.toString('utf8')); } catch (_) { throw err(400, 9207, 'Request body is invalid.'); }
        // record fields only: nothing secret travels in a body
        if (body && typeof body === 'object' && !Array.isArray(body)) entry.params = { ...entry.params, ...body };
      }
      const out = this.route(req.method, p, query, body, tok);
      const env = { success: true, errors: [], messages: out.messages || [], result: out.result };
      if (out.result_info) env.result_info = out.result_info;
      send(200, env);
    } catch (e) {
      if (!(e instanceof CfError)) throw e;
      fail(e);
    }
  }

  /** Dispatches an authenticated call; returns {result, result_info?, messages?}. */
  route(method, p, q, body, tok) {
    const s = this.store;
    const notAllowed = () => err(405, 10000, `${method} method not allowed for the api_token authentication scheme`);
    const writeCheck = () => { if (!tok.write) throw err(403, 10000, 'Authentication error'); };
    if (p === '/user/tokens/verify') {
      if (method !== 'GET') throw notAllowed();
      return { result: { id: tok.id, status: 'active' },
        messages: [{ code: 10000, message: 'This API Token is valid and active', type: null }] };
    }
    if (p === '/zones') {
      if (method !== 'GET') throw notAllowed();
      return s.listZones(q);
    }
    let m = /^\/zones\/([^/]+)(\/.*)?$/.exec(p);
    if (!m) throw err(400, 7000, 'No route for that URI');
    const zone = s.zone(m[1], p);
    if (!zone) throw err(403, 10000, 'Authentication error');
    const rest = m[2] || '';
    if (rest === '') {
      if (method !== 'GET') throw notAllowed();
      return { result: zone.view() };
    }
    if (rest === '/dns_records') {
      if (method === 'GET') return s.listRecords(zone, q);
      if (method === 'POST') { writeCheck(); return { result: s.view(zone, s.create(zone, body)) }; }
      throw notAllowed();
    }
    if ((m = /^\/dns_records\/([^/]+)$/.exec(rest))) {
      const id = m[1];
      if (!/^[0-9a-f]{32}$/.test(id)) {
        throw new CfError(400, [
          { code: 7003, message: `Could not route to ${p}, perhaps your object identifier is invalid?` },
          { code: 7000, message: 'No route for that URI' }]);
      }
      if (method === 'GET') return { result: s.view(zone, s.getRecord(zone, id)) };
      if (method === 'PUT' || method === 'PATCH') {
        writeCheck();
        return { result: s.view(zone, s.update(zone, id, body, method === 'PATCH')) };
      }
      if (method === 'DELETE') { writeCheck(); return { result: s.remove(zone, id) }; }
      throw notAllowed();
    }
    throw err(400, 7000, 'No route for that URI');
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function start(lab) {
  const dir = path.join(lab.stateDir, 'cloudflare');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const host = lab.addr(7);
  const tls = makeCertificate(dir, host);
  const cf = new Cloudflare(lab);
  const zone = cf.store.addZone('tlr.test');
  cf.store.addZone('other.test');
  const token = cf.addToken('edit', true); // Zone:Read + DNS:Edit on all zones
  const readToken = cf.addToken('read', false); // Zone:Read + DNS:Read
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      cf.handle(req, res, Buffer.concat(chunks)).catch((e) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ success: false, errors: [{ code: 10001, message: e.message }], messages: [], result: null }));
        }
        lab.logRequest({ service: 'cloudflare', time: Date.now() / 1000, method: req.method, path: req.url,
          status: 500, reason: e.message });
      });
    });
  });
  server.keepAliveTimeout = 5000;
  const port = await lab.listen(server, host, 443);

  // control routes: state, out-of-band records (as if made in the dashboard), zones
  const zoneOf = (name) => {
    const z = name ? cf.store.zoneByName(name) : zone;
    if (!z) throw Object.assign(new Error(`no zone '${name}'`), { status: 404 });
    return z;
  };
  lab.route('GET', '/cloudflare/state', () => ({ zones: cf.store.state(),
    tokens: [...cf.tokens.values()].map((t) => ({ id: t.id, name: t.name, write: t.write })) }));
  lab.route('POST', '/cloudflare/records', ({ body }) => {
    const z = zoneOf(body.zone);
    const ids = [];
    for (const r of body.records || []) {
      try { ids.push(cf.store.create(z, r).id); } catch (e) { throw Object.assign(new Error(e.message), { status: 400 }); }
    }
    return { ids };
  });
  lab.route('DELETE', '/cloudflare/records', ({ query }) => {
    const z = zoneOf(query.zone);
    let removed = 0;
    for (const r of [...z.records.values()]) {
      if (!query.suffix || r.name === query.suffix || r.name.endsWith(`.${query.suffix}`)) {
        z.records.delete(r.id);
        removed++;
      }
    }
    return { removed };
  });
  lab.route('POST', '/cloudflare/zones', ({ body }) => cf.store.addZone(body.name).view());

  return {
    env: {
      CLOUDFLARE_API: `https://${host}:${port}${BASE}`,
      CLOUDFLARE_HOST: host,
      CLOUDFLARE_PORT: String(port),
      CLOUDFLARE_CA_FILE: tls.caFile,
      CLOUDFLARE_TOKEN: token,
      CLOUDFLARE_TOKEN_READ: readToken,
      CLOUDFLARE_ZONE: zone.name,
      CLOUDFLARE_ZONE_ID: zone.id,
    },
    stop: async () => { server.close(); if (server.closeAllConnections) server.closeAllConnections(); },
    api: { cf, store: cf.store },
  };
}

module.exports = { name: 'cloudflare', profiles, start };
