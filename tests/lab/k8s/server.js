// The HTTPS front of a Kubernetes API fake: HTTP/2 and HTTP/1.1 over TLS
// with client-certificate authentication (no valid certificate: 401; a
// certificate outside system:masters may only read discovery: 403), lab
// fault rules (service "k8s"), the request log, routing of /api and /apis
// paths to discovery and the resource verbs (unknown group versions:
// "404 page not found", unknown resources: a NotFound Status), and the
// apiserver's response headers (Audit-Id, Cache-Control, the priority
// and fairness uids), JSON with a trailing newline (pretty for curl or
// ?pretty=true) or YAML.
'use strict';
const crypto = require('crypto');
const http2 = require('http2');
const YAML = require('yaml');
const D = require('./discovery');
const A = require('./api');
const { watch } = require('./watch');
const { table } = require('./tables');
const { E, faultStatus, ApiError } = require('./status');

const MAX_BODY = 3 * 1024 * 1024;
const VERBS = { get: A.get, list: A.list, create: A.create, update: A.update, patch: A.patch, delete: A.del, deletecollection: A.deleteCollection };
const DISCOVERY_PATHS = /^\/(api|apis|openapi|version|healthz|livez|readyz)(\/|$)/;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class K8sServer {
  constructor(cluster, { tls }) {
    this.cluster = cluster;
    this.lab = cluster.lab;
    this.tls = tls;
    this.flowSchema = crypto.randomUUID();
    this.priorityLevel = crypto.randomUUID();
    this.sockets = new Set();
  }

  listen(host, port) {
    this.server = http2.createSecureServer({
      key: this.tls.key, cert: this.tls.cert, ca: this.tls.ca, requestCert: true, rejectUnauthorized: false,
      allowHTTP1: true, settings: { maxConcurrentStreams: 250 },
    }, (req, res) => this.handle(req, res));
    this.server.on('secureConnection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
    this.server.on('sessionError', () => {});
    return this.lab.listen(this.server, host, port);
  }

  /** Stops listening and drops every connection; resolves once the port is free again. */
  close() {
    if (!this.server) return Promise.resolve();
    for (const w of [...this.cluster.store.watchers]) w.end();
    const closed = new Promise((resolve) => {
      this.server.close(() => resolve());
      setTimeout(resolve, 2000).unref(); // a session that lingers does not hold the lab up
    });
    for (const s of this.sockets) s.destroy();
    return closed;
  }

  handle(req, res) {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => { size += c.length; if (size <= MAX_BODY) chunks.push(c); });
    req.on('end', () => {
      this.process(req, res, Buffer.concat(chunks), size > MAX_BODY).catch((err) => {
        process.stderr.write(`k8s: ${err.stack || err.message}\n`);
        this.sendStatus(req, res, E.plain(err.message).status, {});
      });
    });
    req.on('error', () => {});
  }

  /** The client certificate's user: {name, groups} or null. */
  user(req) {
    const sock = req.stream && req.stream.session ? req.stream.session.socket : req.socket;
    if (!sock || !sock.authorized) return null;
    const cert = sock.getPeerCertificate();
    if (!cert || !cert.subject || !cert.subject.CN) return null;
    const org = cert.subject.O === undefined ? [] : [].concat(cert.subject.O);
    return { name: cert.subject.CN, groups: [...org, 'system:authenticated'] };
  }

  async process(req, res, body, tooBig) {
    const start = Date.now();
    const url = new URL(req.url, 'https://k8s');
    const query = {};
    for (const [k, v] of url.searchParams) query[k] = k in query ? [].concat(query[k], v) : v;
    const info = { start, path: url.pathname, query, user: null, fault: null };
    const c = this.cluster;
    const fault = this.lab.faults.match('k8s', req.method, url.pathname, {});
    if (fault) {
      info.fault = fault.id;
      if (fault.latency) await sleep(fault.latency * 1000);
      if (fault.drop) {
        this.log(req, 0, 'dropped', info);
        if (req.stream && req.stream.session) req.stream.session.destroy(); else req.socket.destroy();
        return;
      }
      if (fault.status) return this.send(req, res, fault.status, fault.body || faultStatus(fault.status, fault.message), {}, info);
    }
    if (c.profile.request_latency) await sleep(c.ms('request_latency'));
    const user = this.user(req);
    info.user = user;
    if (!user) return this.sendStatus(req, res, E.unauthorized().status, info);
    if (tooBig) return this.sendStatus(req, res, E.tooLarge(`limit is ${MAX_BODY}`).status, info);
    const master = user.groups.includes('system:masters');
    try {
      const r = this.route(url.pathname, req.method, query);
      if (r.text) return this.sendText(req, res, r.code, r.text, info);
      if (r.discovery) {
        const out = r.discovery(req.headers.accept);
        return this.send(req, res, 200, out.body, out.headers || {}, info);
      }
      const { rt, version } = r;
      Object.assign(info, { verb: r.verb, resource: rt.plural, namespace: r.ns, name: r.name });
      if (!master) {
        const where = !rt.namespaced || !r.ns ? 'at the cluster scope' : `in the namespace "${r.ns}"`;
        throw E.forbidden({ group: rt.group, resource: rt.plural }, r.name,
          `User "${user.name}" cannot ${r.verb} resource "${rt.plural}${r.sub ? `/${r.sub}` : ''}" in API group "${rt.group}" ${where}`);
      }
      const ctx = { cluster: c, rt, version, ns: r.ns, name: r.name, sub: r.sub, query, headers: req.headers, body, user, warnings: [] };
      if (r.verb === 'watch') return this.startWatch(req, res, ctx, info);
      const out = VERBS[r.verb](ctx);
      const headers = {};
      if (ctx.warnings.length) headers.Warning = ctx.warnings.map((w) => `299 - ${JSON.stringify(w)}`);
      return this.send(req, res, out.code, out.body, headers, info);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return this.sendStatus(req, res, err.status, info);
    }
  }

  /**
   * What a path is: {text} (plain 404), {discovery(accept)}, or a resource
   * request {rt, version, ns, name, sub, verb}.  Throws the apiserver's
   * errors for unknown resources and methods.
   */
  route(path, method, query) {
    const c = this.cluster;
    const segs = path.split('/').filter(Boolean);
    const get = method === 'GET' || method === 'HEAD';
    const info = c.info;
    if (path === '/version' || path === '/version/') return get ? { discovery: () => ({ body: info }) } : notFound();
    if (['/healthz', '/livez', '/readyz'].includes(path)) return { text: 'ok', code: 200 };
    if (segs[0] === 'openapi') return get ? this.openapi(segs) : notFound();
    let group;
    let version;
    let rest;
    if (segs[0] === 'api') {
      if (segs.length === 1) return get ? this.discovery(true, () => D.apiVersions(`${c.address}:${c.port}`)) : notFound();
      [group, version, rest] = ['', segs[1], segs.slice(2)];
      if (version !== 'v1') return notFound();
    } else if (segs[0] === 'apis') {
      if (segs.length === 1) return get ? this.discovery(false, () => D.apiGroupList(c.served())) : notFound();
      const g = D.groups(c.served()).find((x) => x.name === segs[1]);
      if (!g) return notFound();
      if (segs.length === 2) return get ? { discovery: () => ({ body: { kind: 'APIGroup', apiVersion: 'v1', ...D.apiGroup(g) } }) } : notFound();
      [group, version, rest] = [segs[1], segs[2], segs.slice(3)];
      if (!c.groupServed(group, version)) return notFound();
    } else return notFound();
    if (!rest.length) return get ? { discovery: () => ({ body: D.resourceList(c.served(), group, version) }) } : notFound();
    let isWatch = query.watch === 'true' || query.watch === '1';
    if (rest[0] === 'watch') { isWatch = true; rest = rest.slice(1); }
    let ns = '';
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      const nsType = c.lookup(group, version, rest[2]);
      if (group !== '' || (nsType && nsType.namespaced)) { ns = rest[1]; rest = rest.slice(2); }
    }
    const rt = c.lookup(group, version, rest[0]);
    if (!rt || rest.length > 3) throw E.genericNotFound();
    if (ns && !rt.namespaced) throw E.genericNotFound();
    const name = rest[1] || '';
    const sub = rest[2] || '';
    if (sub && !rt.subresources.includes(sub)) throw E.genericNotFound();
    if (!ns && rt.namespaced && name) throw E.genericNotFound();
    if (isWatch && name) query.fieldSelector = [`metadata.name=${name}`, ...[].concat(query.fieldSelector || [])].join(',');
    let verb;
    if (get) verb = isWatch ? 'watch' : name ? 'get' : 'list';
    else if (method === 'POST' && !name && (ns || !rt.namespaced)) verb = 'create';
    else if (method === 'POST' && name && sub === 'eviction') verb = 'create';
    else if (method === 'PUT' && name) verb = 'update';
    else if (method === 'PATCH' && name) verb = 'patch';
    else if (method === 'DELETE' && name && !sub) verb = 'delete';
    else if (method === 'DELETE' && !name && rt.verbs.includes('deletecollection')) verb = 'deletecollection';
    if (!verb || (sub === 'finalize' && verb !== 'update') || (sub === 'eviction' && verb !== 'create') || !rt.verbs.includes(verb)) {
      throw methodNotAllowed();
    }
    return { rt, version, ns, name: isWatch ? '' : name, sub, verb };
  }

  /** /api and /apis: aggregated discovery when asked for and offered, else the legacy document. */
  discovery(core, legacy) {
    return {
      discovery: (accept) => {
        const v = D.negotiateAggregated(accept, this.cluster.minor);
        if (!v) return { body: legacy() };
        return {
          body: D.aggregated(this.cluster.served(), core, `apidiscovery.k8s.io/${v}`),
          headers: { 'Content-Type': `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`, Vary: 'Accept' },
        };
      },
    };
  }

  openapi(segs) {
    const c = this.cluster;
    if (segs[1] === 'v2' && segs.length === 2) {
      return {
        discovery: (accept) => {
          const pb = /protobuf/.test(accept || '');
          // kube-openapi answers ".v1.0" where the Accept had "@v1.0": Go's mime parser refuses '@'
          const type = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf';
          return { body: D.openapiV2(c.info, pb), headers: pb ? { 'Content-Type': type } : {} };
        },
      };
    }
    if (segs[1] === 'v3' && segs.length === 2) return { discovery: () => ({ body: D.openapiIndex(c.served(), c.info) }) };
    if (segs[1] === 'v3') {
      const gv = segs[2] === 'api' ? ['', segs[3]] : segs[2] === 'apis' ? [segs[3], segs[4]] : null;
      const doc = gv && segs.length === (gv[0] ? 5 : 4) && D.openapiGroupVersion(c.served(), gv[0], gv[1], c.info);
      const immutable = { 'Cache-Control': 'public, immutable', Expires: new Date(Date.now() + 31536000000).toUTCString() };
      if (doc) return { discovery: () => ({ body: doc, headers: immutable }) };
    }
    return notFound();
  }

  startWatch(req, res, ctx, info) {
    let headSent = false;
    const out = {
      head: (code, headers) => {
        res.writeHead(code, { ...this.baseHeaders(), ...headers });
        headSent = true;
        this.log(req, code, 'OK', { ...info, watch: true });
      },
      write: (text) => { if (!res.writableEnded && !res.destroyed) res.write(text); },
      end: () => { if (!res.writableEnded) res.end(); },
      onClose: (fn) => res.on('close', fn), // (an HTTP/1 request emits 'close' once its body is read)
    };
    try {
      const how = A.negotiate(req.headers.accept);
      // kubectl get -w asks for Tables: one row per event, the columns in the first one only
      const wrap = how.kind !== 'table' ? null : (o, first) => {
        const t = table(ctx.rt, ctx.version, [o], { resourceVersion: o.metadata.resourceVersion,
          includeObject: ctx.query.includeObject, apiVersion: how.apiVersion });
        if (!first) t.columnDefinitions = null;
        return t;
      };
      watch(ctx, out, { selector: A.selector, served: (o) => ctx.cluster.serve(ctx.rt, o, ctx.version), wrap });
    } catch (err) {
      if (!(err instanceof ApiError) || headSent) throw err;
      this.sendStatus(req, res, err.status, info);
    }
  }

  baseHeaders() {
    return {
      'Audit-Id': crypto.randomUUID(), 'Cache-Control': 'no-cache, private',
      'X-Kubernetes-Pf-Flowschema-Uid': this.flowSchema, 'X-Kubernetes-Pf-Prioritylevel-Uid': this.priorityLevel,
    };
  }

  send(req, res, code, body, headers, info) {
    if (res.headersSent || res.destroyed) return;
    let data;
    let type = 'application/json';
    const url = new URL(req.url, 'https://k8s');
    if (Buffer.isBuffer(body)) data = body;
    else if (/^application\/yaml/.test(req.headers.accept || '') && !headers['Content-Type']) {
      data = YAML.stringify(body);
      type = 'application/yaml';
    } else {
      const pretty = url.searchParams.get('pretty') === 'true' || /^(curl|Wget)/.test(req.headers['user-agent'] || '');
      data = `${JSON.stringify(body, null, pretty ? 2 : undefined)}\n`;
    }
    const h = { ...this.baseHeaders(), 'Content-Type': type, ...headers, 'Content-Length': Buffer.byteLength(data) };
    res.writeHead(code, h);
    res.end(req.method === 'HEAD' ? undefined : data);
    this.log(req, code, body && body.kind === 'Status' ? body.reason || '' : 'OK', info);
  }

  sendStatus(req, res, status, info) { return this.send(req, res, status.code, status, {}, info); }

  sendText(req, res, code, text, info) {
    if (res.headersSent) return;
    const data = `${text}\n`.replace(/\n\n$/, '\n');
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff',
      'Content-Length': Buffer.byteLength(data) });
    res.end(data);
    this.log(req, code, code === 404 ? 'NotFound' : 'OK', info);
  }

  log(req, status, reason, info) {
    const headers = {};
    for (const k of ['content-type', 'accept', 'user-agent']) if (req.headers[k]) headers[k] = req.headers[k];
    this.lab.logRequest({
      service: 'k8s', server: `${this.cluster.address}:${this.cluster.port}`, time: info.start / 1000, method: req.method,
      path: info.path, params: info.query, status, reason, auth: info.user ? 'cert' : 'none',
      user: info.user ? info.user.name : null, ms: Date.now() - info.start, fault: info.fault,
      verb: info.verb, resource: info.resource, namespace: info.namespace || undefined, name: info.name || undefined,
      watch: info.watch || undefined, http: req.httpVersion, headers,
    });
  }
}

function notFound() { return { text: '404 page not found', code: 404 }; }

function methodNotAllowed() {
  return new ApiError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
    message: 'the server does not allow this method on the requested resource', reason: 'MethodNotAllowed', details: {}, code: 405 });
}

module.exports = { K8sServer, DISCOVERY_PATHS };
