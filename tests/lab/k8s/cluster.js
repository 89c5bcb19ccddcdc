// One Kubernetes API fake's state and the write path every request and
// controller goes through: served types (built-in + established CRDs),
// create/update/delete with the registry's rules (uid, creationTimestamp,
// generation, resourceVersion preconditions, finalizers and
// deletionTimestamp, no-op writes that change nothing), defaulting,
// validation (422 Invalid like the apiserver's), and admission (namespace
// lifecycle, the MetalLB webhook that is not ready yet).
'use strict';
const crypto = require('crypto');
const { Store } = require('./store');
const { builtinTypes, crdType } = require('./types');
const { E } = require('./status');
const F = require('./fields');
const D = require('./defaults');

const CRD_KEY = 'apiextensions.k8s.io/customresourcedefinitions';
const NS_KEY = '/namespaces';

class Cluster {
  constructor({ lab, name, address, port, version, nodes }) {
    Object.assign(this, { lab, name, address, port });
    this.info = versionInfo(version || '1.32.3');
    this.minor = Number(this.info.minor);
    this.store = new Store({ historySize: () => this.profile.watch_cache });
    this.builtin = builtinTypes();
    this.types = new Map(this.builtin.map((rt) => [rt.key, rt]));
    this.crdTypes = new Map(); // CRD name -> rt (served once Established)
    this.serviceIPs = new Set(['10.96.0.1']);
    this.nextIP = 10;
    this.webhook = { establishedAt: null, until: null, failLeft: null, failed: 0 };
    this.timers = new Set();
    this.nodeNames = nodes || ['lab-cp-1'];
    this.uids = new Set();
  }

  get profile() { return this.lab.profile.k8s; }
  ms(key) { return this.lab.ms('k8s', key); }
  now() { return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'); }

  /** setTimeout that stop() clears; a controller step that throws is logged, not fatal. */
  later(ms, fn) {
    if (this.stopped) return null; // an API server that went away runs nothing more
    const t = setTimeout(() => {
      this.timers.delete(t);
      try { fn(); } catch (err) { process.stderr.write(`k8s controller: ${err.stack || err.message}\n`); }
    }, ms);
    this.timers.add(t);
    return t;
  }

  stop() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // ---------------------------------------------------------------- types
  /** Types served right now (built-ins and Established CRDs). */
  served() { return [...this.types.values()]; }

  lookup(group, version, plural) {
    for (const rt of this.types.values()) {
      if (rt.group === group && rt.plural === plural && rt.versions.includes(version)) return rt;
    }
    return null;
  }

  byKind(group, kind) {
    for (const rt of this.types.values()) if (rt.group === group && rt.kind === kind) return rt;
    return null;
  }

  groupServed(group, version) {
    for (const rt of this.types.values()) if (rt.group === group && rt.versions.includes(version)) return true;
    return false;
  }

  /** Recomputes the type of a CRD (called when it changes); only Established CRDs are served. */
  refreshCrd(crd, gone) {
    const name = crd.metadata.name;
    const old = this.crdTypes.get(name);
    const established = !gone && (crd.status && crd.status.conditions || []).some((c) => c.type === 'Established' && c.status === 'True');
    const rt = established ? crdType(crd) : null;
    if (old && (!rt || old.key !== rt.key)) {
      this.types.delete(old.key);
      if (gone) this.store.dropType(old);
    }
    if (rt) { this.types.set(rt.key, rt); this.crdTypes.set(name, rt); } else this.crdTypes.delete(name);
  }

  schema(rt, version) { return new F.Schema(rt, version || rt.storageVersion); }

  // ---------------------------------------------------------------- objects
  get(rt, ns, name) { return this.store.get(rt, ns, name); }
  list(rt, ns) { return this.store.list(rt, ns).map((e) => e.obj); }
  namespace(name) { return this.store.get(this.types.get(NS_KEY), '', name); }

  /** The object as served at `version` (apiVersion rewritten, key order like the apiserver's). */
  serve(rt, obj, version) {
    const o = F.clone(obj);
    o.apiVersion = rt.group ? `${rt.group}/${version || rt.storageVersion}` : version || 'v1';
    o.kind = rt.kind;
    return D.canonical(rt, o);
  }

  uid() {
    let u;
    do u = crypto.randomUUID(); while (this.uids.has(u));
    this.uids.add(u);
    return u;
  }

  /**
   * Stores `next` as the new state of an object (prev: the stored state or
   * null).  o: {dryRun, op: 'create'|'update', subresource}.  Runs defaults,
   * validation and admission; a write that changes nothing is not stored;
   * an object with deletionTimestamp and no finalizers left is deleted.
   * Returns {obj, created, deleted, changed}.
   */
  commit(rt, prev, next, o = {}) {
    const md = next.metadata = next.metadata || {};
    if (!prev) {
      md.uid = this.uid();
      md.creationTimestamp = this.now();
      delete md.deletionTimestamp;
      delete md.deletionGracePeriodSeconds;
      delete md.resourceVersion;
      delete md.selfLink;
      if (rt.generation) md.generation = 1; else delete md.generation;
    } else {
      for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds']) {
        if (prev.metadata[k] !== undefined) md[k] = prev.metadata[k]; else delete md[k];
      }
      md.resourceVersion = prev.metadata.resourceVersion;
      if (rt.generation) md.generation = D.generationChanged(rt, prev, next) ? (prev.metadata.generation || 0) + 1 : prev.metadata.generation;
      else delete md.generation;
    }
    D.defaults(this, rt, next, prev, o.subresource);
    const errs = D.validate(this, rt, next, prev);
    if (errs.length) throw E.invalid({ group: rt.group, kind: rt.kind }, md.name, errs);
    this.admit(rt, prev, next, o);
    if (prev && sameObject(prev, next)) return { obj: prev, changed: false };
    if (o.dryRun) return { obj: next, created: !prev, changed: true };
    // the write that drops the last finalizer deletes (a pod in its grace period has none to drop)
    const graceful = rt.key === '/pods' && !(prev && (prev.metadata.finalizers || []).length);
    if (prev && md.deletionTimestamp && !graceful && !(md.finalizers || []).length && !(rt.key === NS_KEY && (next.spec.finalizers || []).length)) {
      return { obj: this.store.remove(rt, next), deleted: true, changed: true };
    }
    if (md.finalizers && !md.finalizers.length) delete md.finalizers;
    const obj = this.store.write(rt, next);
    return { obj, created: !prev, changed: true };
  }

  /** Admission: namespace lifecycle (404 missing, 403 terminating) and the MetalLB webhook. */
  admit(rt, prev, next, o) {
    if (!rt.builtin && !prev) {
      const crd = this.get(this.types.get(CRD_KEY), '', rt.crd);
      if (crd && crd.metadata.deletionTimestamp) {
        throw E.methodNotSupportedMsg({ group: rt.group, resource: rt.plural }, 'create not allowed while custom resource definition is terminating');
      }
    }
    if (rt.namespaced && !prev) {
      const ns = next.metadata.namespace;
      const nsObj = this.namespace(ns);
      if (!nsObj) throw E.notFound({ group: '', resource: 'namespaces' }, ns);
      if (nsObj.metadata.deletionTimestamp) {
        throw E.forbidden({ group: rt.group, resource: rt.plural }, next.metadata.name,
          `unable to create new content in namespace ${ns} because it is being terminated`,
          [{ reason: 'NamespaceTerminating', message: `namespace ${ns} is being terminated`, field: 'metadata.namespace' }]);
      }
    }
    if (rt.group === 'metallb.io' && !o.internal && o.subresource !== 'status') this.webhookGate(rt, next);
  }

  /** 500 "failed calling webhook" while MetalLB's webhook is not ready (profile / POST /k8s/webhook). */
  webhookGate(rt, obj) {
    const w = this.webhook;
    const now = Date.now();
    const until = w.until !== null ? w.until : (w.establishedAt || now) + this.profile.webhook_not_ready * 1000;
    const left = w.failLeft !== null ? w.failLeft : this.profile.webhook_not_ready_requests - w.failed;
    if (now >= until && left <= 0) return;
    if (left > 0) { if (w.failLeft !== null) w.failLeft--; else w.failed++; }
    const version = (obj.apiVersion || '').split('/')[1] || rt.storageVersion;
    const singular = rt.kind.toLowerCase();
    const svc = this.get(this.types.get('/services'), 'metallb-system', 'metallb-webhook-service');
    const ip = svc && svc.spec && svc.spec.clusterIP ? svc.spec.clusterIP : '10.103.27.144';
    throw E.internal(`failed calling webhook "${singular}validationwebhook.metallb.io": failed to call webhook: ` +
      `Post "https://metallb-webhook-service.metallb-system.svc:443/validate-metallb-io-${version}-${singular}?timeout=10s": ` +
      `dial tcp ${ip}:443: connect: connection refused`);
  }

  /**
   * DELETE: finalizers (plus orphan/foregroundDeletion for those policies)
   * keep the object with deletionTimestamp; a pod bound to a node is deleted
   * gracefully (its kubelet finishes it, see nodes.js); otherwise it goes at
   * once.  Returns {obj, deleted}.
   */
  remove(rt, prev, { propagationPolicy, dryRun, preconditions, gracePeriodSeconds } = {}) {
    const gr = { group: rt.group, resource: rt.plural };
    if (preconditions) {
      if (preconditions.uid && preconditions.uid !== prev.metadata.uid) {
        throw E.conflict(gr, prev.metadata.name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${prev.metadata.uid}`);
      }
      if (preconditions.resourceVersion && preconditions.resourceVersion !== prev.metadata.resourceVersion) {
        throw E.conflict(gr, prev.metadata.name, `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${prev.metadata.resourceVersion}`);
      }
    }
    const next = F.clone(prev);
    const md = next.metadata;
    if (rt.key === '/pods') {
      const grace = podGrace(prev, gracePeriodSeconds);
      // pending graceful deletion: a second DELETE may only shorten it
      if (grace > 0 && (md.deletionGracePeriodSeconds === undefined || grace < md.deletionGracePeriodSeconds)) {
        md.deletionTimestamp = new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
        md.deletionGracePeriodSeconds = grace;
        if (dryRun) return { obj: next, deleted: false };
        return { obj: this.store.write(rt, next), deleted: false };
      }
      if (grace > 0) return { obj: prev, deleted: false };
    }
    const fin = new Set(md.finalizers || []);
    if (propagationPolicy === 'Orphan') fin.add('orphan');
    if (propagationPolicy === 'Foreground') fin.add('foregroundDeletion');
    const nsFinal = rt.key === NS_KEY && (next.spec && next.spec.finalizers || []).length;
    if (!fin.size && !nsFinal) {
      if (dryRun) return { obj: prev, deleted: true };
      return { obj: this.store.remove(rt, next), deleted: true };
    }
    if (md.deletionTimestamp && sameSet(fin, new Set(md.finalizers || []))) return { obj: prev, deleted: false };
    md.finalizers = [...(md.finalizers || []), ...[...fin].filter((f) => !(md.finalizers || []).includes(f))];
    if (!md.deletionTimestamp) {
      md.deletionTimestamp = this.now();
      md.deletionGracePeriodSeconds = 0;
      if (md.generation) md.generation++;
      if (rt.key === NS_KEY) next.status = { ...(next.status || {}), phase: 'Terminating' };
    }
    if (!md.finalizers.length) delete md.finalizers;
    if (dryRun) return { obj: next, deleted: false };
    return { obj: this.store.write(rt, next), deleted: false };
  }

  /**
   * A controller's write: mutate(copy) changes a copy of the object, which
   * is stored as an Update by `manager` through subresource `sub` ('status',
   * '' for the main resource, 'finalize').  Returns the new object, or null
   * when it is gone.
   */
  write(rt, ns, name, manager, mutate, { sub = 'status' } = {}) {
    if (sub === 'status' && !rt.subresources.includes('status')) sub = ''; // e.g. Argo CD Applications
    const prev = this.get(rt, ns, name);
    if (!prev) return null;
    const next = F.clone(prev);
    if (mutate(next) === false) return prev;
    const id = { manager, apiVersion: rt.group ? `${rt.group}/${rt.storageVersion}` : rt.storageVersion, subresource: sub };
    const ignore = sub === 'status' ? (k) => !k.startsWith('f:status') : null;
    const withFields = F.update(prev, next, this.schema(rt), id, { now: this.now(), ignore });
    return this.commit(rt, prev, withFields, { internal: true, subresource: sub }).obj;
  }

  /** Creates an object on behalf of a controller (skips it when it exists). */
  createInternal(rt, obj, manager) {
    if (this.get(rt, obj.metadata.namespace, obj.metadata.name)) return null;
    const id = { manager, apiVersion: rt.group ? `${rt.group}/${rt.storageVersion}` : rt.storageVersion };
    obj.apiVersion = id.apiVersion;
    obj.kind = rt.kind;
    const withFields = F.update(null, obj, this.schema(rt), id, { now: this.now() });
    try {
      return this.commit(rt, null, withFields, { internal: true }).obj;
    } catch (err) {
      if (err.status) return null; // e.g. its namespace went away meanwhile
      throw err;
    }
  }

  allocateServiceIP() {
    for (;;) {
      const n = this.nextIP++;
      const ip = `10.96.${Math.floor(n / 256) % 256}.${n % 256}`;
      if (n % 256 === 0 || n % 256 === 255) continue;
      if (!this.serviceIPs.has(ip)) { this.serviceIPs.add(ip); return ip; }
    }
  }
}

/** The grace period of a pod's deletion (the pod strategy's CheckGracefulDelete): 0 for unbound or finished pods. */
function podGrace(pod, asked) {
  const spec = pod.spec || {};
  let g = asked !== undefined && asked !== null ? Number(asked) : spec.terminationGracePeriodSeconds ?? 30;
  if (!spec.nodeName || ['Succeeded', 'Failed'].includes((pod.status || {}).phase)) g = 0;
  return Math.max(0, g);
}

function sameSet(a, b) { return a.size === b.size && [...a].every((x) => b.has(x)); }

/** Equal apart from resourceVersion (what a no-op write leaves unchanged). */
function sameObject(a, b) {
  const strip = (o) => { const c = F.clone(o); delete c.metadata.resourceVersion; return JSON.stringify(F.sortKeys(c)); };
  return strip(a) === strip(b);
}

function versionInfo(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v);
  if (!m) throw new Error(`bad Kubernetes version '${v}'`);
  return {
    major: m[1], minor: m[2], gitVersion: `v${m[1]}.${m[2]}.${m[3]}`,
    gitCommit: crypto.createHash('sha1').update(v).digest('hex'), gitTreeState: 'clean', buildDate: '2025-04-22T16:03:05Z',
    goVersion: 'go1.23.8', compiler: 'gc', platform: 'linux/amd64',
  };
}

module.exports = { Cluster, CRD_KEY, NS_KEY, sameObject };
