// The HTTPS front of the Proxmox fake, in pveproxy's order: fault injection,
// form/JSON decoding (AnyEvent.pm decode_urlencoded / extract_params),
// authentication (401 after the failed-auth delay), handler lookup (501),
// URI parameters, allowtoken (403), permissions (403), node proxying,
// schema validation (400 with per-parameter errors), the handler, and the
// response envelope with the error text in the status line.
'use strict';
const https = require('https');
const { Auth, AuthError } = require('./auth');
const { ApiError } = require('./state');

const MAX_BODY = 512 * 1024;
const SECRET_PARAMS = new Set(['password', 'new-password', 'otp', 'tfa-challenge']);

/** A handler result with extra envelope fields (e.g. total for task logs). */
class Reply {
  constructor(data, extra) { this.data = data; this.extra = extra; }
}

// ------------------------------------------------------------ form decoding
function unescapeLatin1(s) {
  return s.replace(/\+/g, ' ').replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}
const utf8 = (latin1) => Buffer.from(latin1, 'latin1').toString('utf8');

/** pveproxy's decode_urlencoded: pairs split on & and ;, a second raw '=' truncates, + is space. */
function decodeUrlencoded(data) {
  const res = {};
  if (!data) return res;
  for (const kv of data.split(/[&;]/)) {
    const parts = kv.split('=');
    while (parts.length && parts[parts.length - 1] === '') parts.pop(); // Perl's split drops trailing empties
    if (!parts.length) continue;
    const k = utf8(unescapeLatin1(parts[0]));
    const v = parts.length > 1 ? utf8(unescapeLatin1(parts[1])) : undefined;
    if (Object.prototype.hasOwnProperty.call(res, k)) res[k] = [].concat(res[k], v);
    else res[k] = v;
  }
  return res;
}

function decodeJsonBody(text) {
  const obj = JSON.parse(text || '{}');
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('JSON body must be an object');
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === null) continue;
    out[k] = typeof v === 'number' ? String(v) : v;
  }
  return out;
}

function reasonPhrase(msg) {
  const first = String(msg).split('\n')[0] || 'Error';
  return first.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class PveServer {
  constructor({ lab, schema, auth, cluster, tasks, routes, selfNode }) {
    Object.assign(this, { lab, schema, auth, cluster, tasks, routes, selfNode });
  }

  listen(host, port, tls) {
    this.server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 5000; // pveproxy closes idle connections after 5 s
    this.server.headersTimeout = 10000;
    return this.lab.listen(this.server, host, port);
  }

  close() {
    if (!this.server) return;
    this.server.close();
    if (this.server.closeAllConnections) this.server.closeAllConnections();
  }

  handle(req, res) {
    const chunks = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) tooBig = true; else chunks.push(c);
    });
    req.on('end', () => {
      this.process(req, res, Buffer.concat(chunks), tooBig).catch((err) => {
        this.send(req, res, 500, err.message, { data: null }, {});
      });
    });
  }

  send(req, res, status, reason, body, info) {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    const headers = {
      'Content-Type': 'application/json;charset=UTF-8', Server: 'pve-api-daemon/3.0',
      'Cache-Control': 'max-age=0', Pragma: 'no-cache', Expires: new Date().toUTCString(),
      'Content-Length': Buffer.byteLength(text),
    };
    if (status >= 400) headers.Connection = 'close'; // pveproxy closes after an error
    res.writeHead(status, reasonPhrase(reason), headers);
    res.end(text);
    this.log(req, status, reason, info);
  }

  error(req, res, status, message, info, errors) {
    const body = { data: null };
    const msg = String(message).endsWith('\n') ? String(message) : `${message}\n`;
    if (this.cluster.atLeast('8.3')) body.message = msg; // since libpve-http-server-perl 5.2.0
    if (errors) body.errors = errors;
    this.send(req, res, status, message, body, info);
  }

  log(req, status, reason, info) {
    const params = {};
    for (const [k, v] of Object.entries(info.params || {})) params[k] = SECRET_PARAMS.has(k) ? '<redacted>' : v;
    this.lab.logRequest({
      service: 'pve', time: info.start / 1000, method: req.method, path: info.relUri || req.url, params,
      status, reason: status >= 400 ? reasonPhrase(reason) : 'OK', auth: info.auth ? info.auth.kind : 'none',
      user: info.auth ? Auth.who(info.auth) || null : null, ms: Date.now() - info.start,
      fault: info.fault ? info.fault.id : undefined,
    });
  }

  async process(req, res, body, tooBig) {
    const info = { start: Date.now() };
    const url = new URL(req.url, 'https://pve');
    const method = req.method;
    const m = /^\/api2\/json(\/.*)?$/.exec(url.pathname);
    if (!m) return this.error(req, res, 501, 'no such uri', info);
    const relUri = `/${(m[1] || '/').split('/').filter(Boolean).join('/')}`;
    info.relUri = relUri;
    if (tooBig) return this.error(req, res, 501, 'for data too large', info);

    // parameters: body (POST/PUT only) then the query string over it
    let params = {};
    try {
      if (method === 'POST' || method === 'PUT') {
        const ct = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
        params = ct === 'application/json' ? decodeJsonBody(body.toString('utf8')) : decodeUrlencoded(body.toString('latin1'));
      }
    } catch (err) {
      return this.error(req, res, 400, `malformed JSON string: ${err.message}`, info);
    }
    Object.assign(params, decodeUrlencoded(url.search.slice(1)));
    info.params = params;

    // fault injection (control endpoint)
    const fault = this.lab.faults.match('pve', method, relUri);
    info.fault = fault;
    if (fault) {
      if (fault.latency) await sleep(fault.latency * 1000);
      if (fault.drop) { this.log(req, 0, 'dropped', info); req.socket.destroy(); return undefined; }
      if (fault.lock_timeout) {
        const vm = /\/(?:qemu|lxc)\/(\d+)/.exec(relUri);
        return this.error(req, res, 500, `can't lock file '/var/lock/qemu-server/lock-${vm ? vm[1] : 0}.conf' - got timeout`, info);
      }
      if (fault.status) {
        return this.error(req, res, fault.status, fault.message || 'injected fault', info, fault.body && fault.body.errors);
      }
    }
    const latency = this.lab.ms('pve', 'request_latency');
    if (latency) await sleep(latency);

    // authentication
    let auth;
    try {
      auth = this.auth.authenticate(req, method, relUri);
      info.auth = auth;
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      const delay = this.lab.ms('pve', 'auth_fail_delay') - (Date.now() - info.start);
      if (delay > 0) await sleep(delay);
      return this.error(req, res, 401, err.message, info);
    }

    try {
      const data = await this.dispatch({ req, method, relUri, params, auth, fault, info });
      const env = data instanceof Reply ? { data: data.data, ...data.extra } : { data: data === undefined ? null : data };
      return this.send(req, res, 200, 'OK', env, info);
    } catch (err) {
      if (err instanceof AuthError) {
        const delay = this.lab.ms('pve', 'auth_fail_delay') - (Date.now() - info.start);
        if (delay > 0) await sleep(delay);
        return this.error(req, res, 401, err.message, info);
      }
      if (err.status) return this.error(req, res, err.status, err.message, info, err.errors);
      process.stderr.write(`pve fake: ${method} ${relUri}: ${err.stack}\n`);
      return this.error(req, res, 500, err.message, info);
    }
  }

  async dispatch({ method, relUri, params, auth, fault, info }) {
    const r = this.schema.resolve(relUri);
    const ep = r && this.schema.endpoint(r.tpl, method);
    if (!ep) throw new ApiError(501, `Method '${method} ${relUri}' not implemented`);
    for (const k of Object.keys(r.uri)) {
      if (params[k] !== undefined) throw new ApiError(400, 'Parameter verification failed.', { [k]: 'duplicate parameter (already defined in URI)' });
      params[k] = r.uri[k];
    }
    if (auth.apiToken && !ep.allowtoken) {
      throw new ApiError(403, `URI '${relUri}' not available with API token, need proper ticket.`);
    }
    if (auth.kind !== 'none') this.auth.checkApi(auth, ep.permissions, params);

    if (ep.proxyto && params[ep.proxyto] !== undefined) {
      const node = this.cluster.node(String(params[ep.proxyto]));
      if (node.name !== this.selfNode) {
        if (node.status !== 'online') throw new ApiError(595, `Connection refused`);
        const pl = this.lab.ms('pve', 'proxy_latency');
        if (pl) await sleep(pl);
      }
    }

    const errors = this.schema.validate(ep, params);
    if (errors) throw new ApiError(400, 'Parameter verification failed.', errors);

    const handler = this.routes[`${method} ${r.tpl}`];
    if (!handler) throw new ApiError(501, `Method '${method} ${relUri}' not implemented in the lab's Proxmox fake`);
    info.params = params;
    const ctx = {
      method, relUri, tpl: r.tpl, raw: params, params: this.schema.typed(ep, params), auth,
      user: Auth.who(auth), authApi: this.auth, fault, cluster: this.cluster, tasks: this.tasks, lab: this.lab, schema: this.schema,
      check: (aclPath, privs, any) => this.auth.check(auth, aclPath, privs, any),
      can: (aclPath, priv) => this.auth.has(auth, aclPath, priv),
      /** Starts a worker task as this request's user (with an injected task failure). */
      task: (opts) => this.tasks.start({ user: Auth.who(auth), fault: fault && fault.task_exitstatus, ...opts }),
    };
    return handler(ctx);
  }
}

module.exports = { PveServer, Reply, decodeUrlencoded };
