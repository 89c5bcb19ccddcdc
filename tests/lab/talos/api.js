// The gRPC API of a Talos node fake: what each method does in maintenance
// and in authenticated mode (reference/talos.md §1.2-1.6), the roles, the
// apid proxying of `node` (one-to-one) and `nodes` (one-to-many, a
// metadata.hostname on every reply message, metadata.error for a failed
// target), fault rules (service "talos") and the request log.
'use strict';
const crypto = require('crypto');
const net = require('net');
const grpc = require('@grpc/grpc-js');
const C = require('./config');
const E = require('./etcd');
const { kubeconfigChunks } = require('./kubeconfig');
const { makeCert, loadKey } = require('./x509');

const S = grpc.status;
const GO_NAMES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists',
  'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal',
  'Unavailable', 'DataLoss', 'Unauthenticated'];

class GrpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}
const fail = (code, msg) => { throw new GrpcError(code, msg); };

const ADMIN = ['os:admin'];
const OPERATOR = ['os:admin', 'os:operator'];
const READER = ['os:admin', 'os:operator', 'os:reader'];
const ETCD = [...READER, 'os:etcd:backup'];

const IN_MAINTENANCE = 'API is not implemented in maintenance mode';
const MS = '/machine.MachineService/';
const uuid = () => crypto.randomUUID();
const ts = (ms) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

function resourceProto(r) {
  return {
    metadata: {
      namespace: r.metadata.namespace, type: r.metadata.type, id: r.metadata.id, version: String(r.metadata.version),
      owner: r.metadata.owner, phase: r.metadata.phase, created: ts(r.metadata.created), updated: ts(r.metadata.updated),
    },
    spec: { yaml_spec: r.yaml },
  };
}

// ------------------------------------------------------------------ methods
// Each: path, roles (authenticated mode), maintenance: 'open' | 'admin' (needs
// admin: Unimplemented for plain clients) | 'unimplemented' | a message;
// wrap: the reply is {messages: [X]} (proxying adds metadata to X);
// stream: server streaming.  fn(node, req, ctx) returns X (wrap), the
// reply (not wrap), or for streams calls ctx.write(msg) and resolves when done
// (or returns {unsubscribe} for a stream that stays open).
const METHODS = {
  ApplyConfiguration: {
    path: `${MS}ApplyConfiguration`, roles: ADMIN, maintenance: 'open', wrap: true,
    fn(node, req, ctx) {
      const mode = req.mode || 'REBOOT';
      if (ctx.maintenance && !['REBOOT', 'AUTO', 'TRY'].includes(mode)) {
        fail(S.UNIMPLEMENTED, `apply configuration --mode='${mode.toLowerCase().replace(/_/g, '-')}' is not supported in maintenance mode`);
      }
      let cfg;
      try { cfg = C.parse(req.data); } catch (err) {
        if (err instanceof C.ParseError) fail(S.UNKNOWN, `failed to parse config: ${err.message}`);
        throw err;
      }
      let warnings;
      try { ({ warnings } = C.validate(cfg, { mode: node.platform() === 'metal' ? 'metal' : 'cloud', disks: node.diskNames() })); } catch (err) {
        if (err instanceof C.ValidationError) fail(S.INVALID_ARGUMENT, `configuration validation failed: ${err.message}`);
        throw err;
      }
      if (ctx.maintenance) {
        if (req.dry_run) return { warnings, mode_details: 'Dry run summary:\nNode is running in maintenance mode and does not have a config yet.' };
        node.applyInMaintenance(cfg);
        return { warnings };
      }
      // authenticated: a new config for a configured node
      const old = node.disk.facts;
      const f = C.facts(cfg);
      if (old && old.type !== f.type) fail(S.INVALID_ARGUMENT, `configuration validation failed: ${C.fmtMulti([`machine type can't be changed from "${old.type}" to "${f.type}"`])}`);
      if (req.dry_run) return { warnings, mode, mode_details: 'Dry run summary:\nApplied configuration without a reboot (dry run)' };
      if (mode === 'STAGED') { node.disk.stagedCfg = cfg; return { warnings, mode, mode_details: 'Staged configuration to be applied after the next reboot' }; }
      node.disk.cfg = cfg;
      node.disk.facts = f;
      if (mode === 'REBOOT') { setTimeout(() => node.reboot(), 20); return { warnings, mode, mode_details: 'Applied configuration with a reboot' }; }
      const tlsChanged = JSON.stringify([old.machineCA, old.acceptedCAs, old.certSANs, old.hostname, old.interfaces, old.checkEku]) !==
        JSON.stringify([f.machineCA, f.acceptedCAs, f.certSANs, f.hostname, f.interfaces, f.checkEku]);
      if (tlsChanged) setTimeout(() => node.restartApi(), 20);
      return { warnings, mode: mode === 'TRY' ? 'TRY' : 'NO_REBOOT', mode_details: 'Applied configuration without a reboot' };
    },
  },
  Bootstrap: {
    path: `${MS}Bootstrap`, roles: ADMIN, maintenance: 'unimplemented', wrap: true,
    fn(node) {
      if (!node.isControlPlane()) fail(S.FAILED_PRECONDITION, 'bootstrap can only be performed on a control plane node');
      const why = E.bootstrapCheck(node);
      if (why) fail(why.code, why.msg);
      E.bootstrap(node);
      return {};
    },
  },
  Kubeconfig: {
    path: `${MS}Kubeconfig`, roles: ADMIN, maintenance: 'unimplemented', stream: true,
    async fn(node, req, ctx) {
      if (!node.isControlPlane()) fail(S.UNIMPLEMENTED, 'kubeconfig is only available on control plane nodes');
      for (const chunk of kubeconfigChunks(node.disk.facts)) ctx.write({ bytes: chunk });
    },
  },
  Version: {
    path: `${MS}Version`, roles: READER, maintenance: 'admin', wrap: true,
    fn(node) {
      const v = node.version();
      const sha = crypto.createHash('sha1').update(`talos ${v}`).digest('hex').slice(0, 8);
      return {
        version: { tag: v, sha, built: '', go_version: 'go1.24.11', os: 'linux', arch: 'amd64' },
        platform: { name: node.platform(), mode: node.platform() === 'metal' ? 'metal' : 'cloud' },
        features: { rbac: true },
      };
    },
  },
  ServiceList: {
    path: `${MS}ServiceList`, roles: READER, maintenance: 'unimplemented', wrap: true,
    fn(node) { return { services: node.services() }; },
  },
  EtcdMemberList: {
    path: `${MS}EtcdMemberList`, roles: ETCD, maintenance: 'unimplemented', wrap: true,
    fn(node, req) {
      const cl = node.cluster();
      if (node.isControlPlane() ? !(node.etcdState && node.etcdState.state === 'running') : !!req.query_local) {
        fail(S.UNKNOWN, 'failed to create etcd client: etcd is not running on this node');
      }
      if (!cl || ![...cl.members.values()].some(E.running)) fail(S.UNKNOWN, 'failed to create etcd client: context deadline exceeded');
      return {
        // etcd lists its members ordered by id
        members: [...cl.members.values()].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)).map((m) => ({
          id: m.id, hostname: m.hostname, peer_urls: [`https://${hostPort(m.ip, 2380)}`],
          client_urls: [`https://${hostPort(m.ip, 2379)}`], is_learner: m.learner,
        })),
      };
    },
  },
  EtcdLeaveCluster: {
    path: `${MS}EtcdLeaveCluster`, roles: ADMIN, maintenance: 'unimplemented', wrap: true,
    fn(node) { E.leave(node); return {}; },
  },
  EtcdRemoveMemberByID: {
    path: `${MS}EtcdRemoveMemberByID`, roles: ADMIN, maintenance: 'unimplemented', wrap: true,
    fn(node, req) { E.removeById(node, req.member_id || '0'); return {}; },
  },
  EtcdForfeitLeadership: {
    path: `${MS}EtcdForfeitLeadership`, roles: OPERATOR, maintenance: 'unimplemented', wrap: true,
    fn(node) { return { member: E.forfeit(node) }; },
  },
  Upgrade: {
    path: `${MS}Upgrade`, roles: ADMIN, maintenance: 'admin', wrap: true,
    fn(node, req) {
      const image = req.image || '';
      if (!/^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+:[A-Za-z0-9._-]+$/.test(image)) {
        fail(S.UNKNOWN, `error validating installer image "${image}": failed to resolve reference "${image}": invalid reference format`);
      }
      if (node.isControlPlane() && !req.force && !(node.etcdState && node.etcdState.state === 'running')) {
        fail(S.UNKNOWN, 'error validating etcd for upgrade: etcd member is not healthy; use --force to skip the check');
      }
      setTimeout(() => node.upgrade(image, !!req.stage), 10);
      return { ack: 'Upgrade request received', actor_id: uuid() };
    },
  },
  Reset: {
    path: `${MS}Reset`, roles: ADMIN, maintenance: 'admin', wrap: true,
    fn(node, req) {
      const parts = (req.system_partitions_to_wipe || []);
      for (const p of parts) {
        if (!['STATE', 'EPHEMERAL', 'META', 'BOOT', 'EFI'].includes(p.label)) fail(S.INVALID_ARGUMENT, `failed to find partition with label "${p.label}"`);
      }
      let labels = parts.filter((p) => p.wipe).map((p) => p.label);
      if (parts.length && !labels.length) labels = ['(none)'];
      if (req.mode === 'USER_DISKS') labels = ['(none)'];
      setTimeout(() => node.reset({ graceful: !!req.graceful, reboot: !!req.reboot, labels }), 10);
      return { actor_id: uuid() };
    },
  },
  Reboot: {
    path: `${MS}Reboot`, roles: OPERATOR, maintenance: 'unimplemented', wrap: true,
    fn(node) {
      setTimeout(() => node.reboot(), 10);
      return { actor_id: uuid() };
    },
  },
  GenerateClientConfiguration: {
    path: `${MS}GenerateClientConfiguration`, roles: ADMIN, wrap: true,
    maintenance: "client configuration (talosconfig) can't be generated in the maintenance mode",
    fn(node, req) {
      const f = node.disk.facts;
      if (!f.machineCA.key) fail(S.FAILED_PRECONDITION, 'client configuration can only be generated on control plane nodes');
      const roles = req.roles || [];
      if (!roles.length) fail(S.INVALID_ARGUMENT, 'roles are required');
      for (const r of roles) if (!['os:admin', 'os:operator', 'os:reader', 'os:etcd:backup', 'os:impersonator'].includes(r)) fail(S.INVALID_ARGUMENT, `unknown role "${r}"`);
      const ttl = req.crt_ttl && req.crt_ttl.seconds ? Number(req.crt_ttl.seconds) * 1000 : 365 * 86400000;
      const caKey = loadKey(f.machineCA.key);
      const key = caKey.asymmetricKeyType === 'ed25519' ? crypto.generateKeyPairSync('ed25519') : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const now = Date.now();
      const crt = makeCert({ subject: roles.map((r) => ['O', r]), publicKey: key.publicKey, signKey: caKey, issuerCert: f.machineCA.crt,
        notBefore: new Date(now), notAfter: new Date(now + ttl), keyUsage: ['digitalSignature'], extKeyUsage: ['clientAuth'] });
      let keyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' });
      if (caKey.asymmetricKeyType === 'ed25519') keyPem = keyPem.replace(/PRIVATE KEY-----/g, 'ED25519 PRIVATE KEY-----');
      const b = (s) => Buffer.from(s).toString('base64');
      const talosconfig = `context: ${f.clusterName}\ncontexts:\n    ${f.clusterName}:\n        endpoints:\n            - ${node.ip()}\n        ca: ${b(f.machineCA.crt)}\n        crt: ${b(crt)}\n        key: ${b(keyPem)}\n`;
      return { ca: Buffer.from(f.machineCA.crt), crt: Buffer.from(crt), key: Buffer.from(keyPem), talosconfig: Buffer.from(talosconfig) };
    },
  },
  Disks: {
    path: '/storage.StorageService/Disks', roles: READER, maintenance: 'open', wrap: true,
    fn(node) {
      const sys = node.isSecure() && node.disk.facts ? node.disk.facts.installDisk : null;
      return {
        disks: node.blockDevices().map((d, i) => ({
          size: String(d.size), model: d.model, device_name: d.dev, name: '', serial: d.serial || '',
          modalias: d.cd ? 'scsi:t-0x05' : d.dev.startsWith('/dev/vd') ? 'virtio:d00000002v00001AF4' : 'scsi:t-0x00',
          type: d.cd ? 'CD' : d.ssd ? 'SSD' : 'HDD',
          bus_path: `/pci0000:00/0000:00:${(5 + i).toString(16).padStart(2, '0')}.0/virtio${i}`,
          system_disk: d.dev === sys, subsystem: '/sys/class/block', readonly: d.cd,
        })),
      };
    },
  },
  Get: {
    path: '/cosi.resource.State/Get', roles: READER, maintenance: 'open',
    fn(node, req) {
      const r = node.resources.get(`${req.namespace}/${req.type}/${req.id}`);
      if (!r) fail(S.NOT_FOUND, `resource ${req.type}(${req.namespace}/${req.id}@undefined) doesn't exist`);
      return { resource: resourceProto(r) };
    },
  },
  List: {
    path: '/cosi.resource.State/List', roles: READER, maintenance: 'open', stream: true,
    async fn(node, req, ctx) {
      const list = [...node.resources.values()].filter((r) => r.metadata.namespace === req.namespace && r.metadata.type === req.type)
        .sort((a, b) => (a.metadata.id < b.metadata.id ? -1 : 1));
      for (const r of list) ctx.write({ resource: resourceProto(r) });
    },
  },
  Watch: {
    path: '/cosi.resource.State/Watch', roles: READER, maintenance: 'open', stream: true,
    fn(node, req, ctx) {
      const match = (r) => r.metadata.namespace === req.namespace && r.metadata.type === req.type &&
        (req.id === undefined || req.id === null || req.id === '' || r.metadata.id === req.id);
      const single = req.id !== undefined && req.id !== null && req.id !== '';
      const current = [...node.resources.values()].filter(match);
      if (single || (req.options && req.options.bootstrap_contents)) {
        for (const r of current) ctx.write({ event: [{ resource: resourceProto(r), event_type: 'CREATED' }] });
        if (!single && Number(req.api_version || 0) >= 1) ctx.write({ event: [{ event_type: 'BOOTSTRAPPED' }] });
      }
      const unsubscribe = ctx.svc.watch(node, (type, r, old) => {
        if (!match(r)) return;
        const ev = { resource: resourceProto(r), event_type: type };
        if (old) ev.old = resourceProto(old);
        ctx.write({ event: [ev] });
      });
      return { unsubscribe };
    },
  },
};

function hostPort(ip, port) { return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`; }

function goError(code, message) { return `rpc error: code = ${GO_NAMES[code] || code} desc = ${message}`; }

const FAULT_CODES = Object.fromEntries(Object.entries(S).map(([k, v]) => [k, v]));
function faultCode(f) {
  if (typeof f.status === 'number') return f.status;
  const k = String(f.status).toUpperCase().replace(/-/g, '_');
  if (k in FAULT_CODES) return FAULT_CODES[k];
  const i = GO_NAMES.findIndex((n) => n.toUpperCase() === k.replace(/_/g, ''));
  return i >= 0 ? i : S.UNKNOWN;
}

function metaValues(md, key) {
  return md.get(key).flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
}

function rolesOf(call) {
  const a = call.getAuthContext ? call.getAuthContext() : null;
  const cert = a && a.sslPeerCertificate;
  if (!cert) return { roles: new Set(), user: null };
  const o = cert.subject && cert.subject.O;
  const orgs = o === undefined ? [] : [].concat(o);
  return { roles: new Set(orgs), user: orgs.join('+') || (cert.subject && cert.subject.CN) || '' };
}

/** Builds the grpc-js handler maps of one node server. */
function handlers(svc, node, server) {
  const unaryOf = (name) => (call, callback) => {
    run(svc, node, server, name, call, null).then((reply) => callback(null, reply), (err) => callback(toStatus(err)));
  };
  const streamOf = (name) => (call) => {
    run(svc, node, server, name, call, call).catch((err) => {
      if (!call.cancelled) call.emit('error', toStatus(err));
    });
  };
  const out = { machine: {}, storage: {}, state: {} };
  for (const [name, def] of Object.entries(METHODS)) {
    const group = def.path.startsWith(MS) ? 'machine' : def.path.startsWith('/storage.') ? 'storage' : 'state';
    out[group][name] = def.stream ? streamOf(name) : unaryOf(name);
  }
  return out;
}

function toStatus(err) {
  if (err instanceof GrpcError) return { code: err.code, details: err.message };
  if (err instanceof E.EtcdFailure) return { code: err.grpcCode, details: err.message };
  return { code: S.INTERNAL, details: err && err.message ? err.message : String(err) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Why a proxied call cannot reach `target` (apid dialing it with its mTLS identity), or null. */
function unreachable(svc, entry, target, name) {
  const t = svc.findNode(target);
  const refused = `connection error: desc = "transport: Error while dialing: dial tcp ${hostPort(target, 50000)}: connect: connection refused"`;
  if (!t || !t.server) return { code: S.UNAVAILABLE, msg: refused };
  const untrusted = 'connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"';
  if (t.server.mode !== 'secure') return { code: S.UNAVAILABLE, msg: untrusted };
  if (t !== entry && t.disk.facts.machineCA.crt !== entry.disk.facts.machineCA.crt) return { code: S.UNAVAILABLE, msg: untrusted };
  return { node: t, name };
}

/** Runs a method on `target` as proxied by apid (roles carried along); faults with `node` apply. */
async function runOn(svc, def, target, req, ctx) {
  const fault = svc.lab.faults.match('talos', 'POST', def.path, { node: target.ip(), proxied: true });
  if (fault && fault.latency) await sleep(fault.latency * 1000);
  if (fault && (fault.status || fault.drop)) {
    ctx.fault = fault.id;
    if (fault.drop) fail(S.UNAVAILABLE, 'error reading from server: EOF');
    fail(faultCode(fault), fault.message || GO_NAMES[faultCode(fault)]);
  }
  if (!def.roles.some((r) => ctx.roles.has(r))) fail(S.PERMISSION_DENIED, 'not authorized');
  return def.fn(target, req, { ...ctx, maintenance: false });
}

async function run(svc, node, server, name, call, stream) {
  const def = METHODS[name];
  const started = Date.now();
  const entryIp = node.ip();
  const md = call.metadata;
  const nodes = metaValues(md, 'nodes');
  const one = metaValues(md, 'node')[0];
  const secure = server.mode === 'secure';
  const { roles, user } = secure ? rolesOf(call) : { roles: new Set(['os:reader']), user: null };
  const entry = { service: 'talos', time: started / 1000, method: 'POST', path: def.path, node: entryIp,
    params: {}, auth: secure ? 'mtls' : 'none', user };
  if (secure && nodes.length) entry.params.nodes = nodes;
  if (secure && one) entry.params.node = one;
  const ctx = { svc, roles, maintenance: !secure, fault: null, write: null };
  let status = 0;
  let reason = 'OK';
  try {
    const local = !secure || (!nodes.length && !one);
    const fault = svc.lab.faults.match('talos', 'POST', def.path, { node: local ? entryIp : null });
    if (fault) ctx.fault = fault.id;
    if (fault && fault.latency) await sleep(fault.latency * 1000);
    if (fault && fault.drop) {
      status = -1;
      reason = 'dropped';
      server.drop(call.getPeer());
      return new Promise(() => {});
    }
    if (fault && fault.status) fail(faultCode(fault), fault.message || GO_NAMES[faultCode(fault)]);
    if (!secure) {
      if (def.maintenance === 'admin') fail(S.UNIMPLEMENTED, IN_MAINTENANCE);
      if (def.maintenance === 'unimplemented') fail(S.UNIMPLEMENTED, `method ${name} not implemented`);
      if (def.maintenance !== 'open') fail(S.UNIMPLEMENTED, def.maintenance);
    } else if (!def.roles.some((r) => roles.has(r))) {
      fail(S.PERMISSION_DENIED, 'not authorized');
    }
    const req = call.request || {};
    // one-to-many: every target answers with its hostname in the metadata, failures as metadata.error
    if (secure && nodes.length) {
      if (def.path.startsWith('/cosi.')) fail(S.INVALID_ARGUMENT, 'one-2-many proxying is not supported for COSI API');
      const metaErr = (t, code, msg) => ({ metadata: { hostname: t, error: goError(code, msg), status: { code, message: msg } } });
      if (!def.stream) {
        const messages = await Promise.all(nodes.map(async (t) => {
          const u = unreachable(svc, node, t, name);
          if (!u.node) return metaErr(t, u.code, u.msg);
          try {
            const x = await runOn(svc, def, u.node, req, ctx);
            return { ...x, metadata: { hostname: t } };
          } catch (err) {
            const s = toStatus(err);
            return metaErr(t, s.code, s.details);
          }
        }));
        return { messages };
      }
      for (const t of nodes) {
        const u = unreachable(svc, node, t, name);
        if (!u.node) { stream.write(metaErr(t, u.code, u.msg)); continue; }
        try {
          await runOn(svc, def, u.node, req, { ...ctx, write: (m) => stream.write({ ...m, metadata: { hostname: t } }) });
        } catch (err) {
          const s = toStatus(err);
          stream.write(metaErr(t, s.code, s.details));
        }
      }
      stream.end();
      return undefined;
    }
    // one-to-one: the reply passes through unchanged, errors too
    let target = node;
    if (secure && one) {
      const u = unreachable(svc, node, one, name);
      if (!u.node) fail(u.code, u.msg);
      target = u.node;
    }
    if (stream) {
      const res = await (target === node ? def.fn(target, req, { ...ctx, write: (m) => stream.write(m) })
        : runOn(svc, def, target, req, { ...ctx, write: (m) => stream.write(m) }));
      if (res && res.unsubscribe) {
        const stop = () => { res.unsubscribe(); };
        call.on('cancelled', stop);
        call.on('close', stop);
        call.on('finish', stop);
        return undefined;
      }
      stream.end();
      return undefined;
    }
    const x = target === node ? await def.fn(target, req, ctx) : await runOn(svc, def, target, req, ctx);
    return def.wrap ? { messages: [x] } : x;
  } catch (err) {
    const s = toStatus(err);
    status = s.code;
    reason = s.details;
    throw err;
  } finally {
    svc.lab.logRequest({ ...entry, status, reason, ms: Date.now() - started, fault: ctx.fault });
  }
}

module.exports = { handlers, METHODS, GrpcError, goError };
