// The fake's controllers, driven by store events and the profile's delays:
//   crd         NamesAccepted + Established (then served), Terminating,
//               custom resources removed, finalizer released
//   namespace   default ServiceAccount + kube-root-ca.crt in new namespaces;
//               a Terminating namespace loses its content, then goes
//   workloads   Deployment/StatefulSet/DaemonSet/ReplicaSet status: progressing,
//               then available (knobs: rollout_stuck, progress_deadline)
//   argo        argoproj.io Applications: OutOfSync/Missing -> Synced/Progressing
//               -> Healthy (needs a ready argocd-application-controller
//               StatefulSet; knobs: argo_stuck, argo_degraded); CreateNamespace=true;
//               the objects of known charts (addons.js, charts.js) created on
//               sync, Healthy once they are, deleted before the
//               resources-finalizer is released
//   addons      cert-manager issuers Ready, Argo CD's initial admin Secret (addons.js)
//   gc          dependents of deleted owners (ownerReferences), the orphan
//               and foregroundDeletion finalizers
//   metallb     LoadBalancer Services get an address from an IPAddressPool;
//               the validating webhook is "not ready" for a while after the
//               MetalLB CRDs are established (see Cluster.webhookGate)
'use strict';
const crypto = require('crypto');
const { globToRegExp } = require('../lab');
const { CRD_KEY, NS_KEY } = require('./cluster');
const { sortKeys } = require('./fields');
const { Addons } = require('./addons');

const KCM = 'kube-controller-manager';
const WORKLOADS = ['apps/deployments', 'apps/statefulsets', 'apps/daemonsets', 'apps/replicasets'];
const APP_KEY = 'argoproj.io/applications';

function matches(patterns, obj) {
  const id = obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
  return (patterns || []).some((p) => globToRegExp(p).test(id));
}

const cond = (type, status, reason, message, now, extra = {}) => ({ type, status, lastTransitionTime: now, reason, message, ...extra });

/** Replaces or adds a condition, keeping lastTransitionTime when the status did not change. */
function setCondition(list, c) {
  const out = (list || []).filter((x) => x.type !== c.type);
  const old = (list || []).find((x) => x.type === c.type);
  if (old && old.status === c.status) c.lastTransitionTime = old.lastTransitionTime;
  if (old && old.lastUpdateTime !== undefined && c.lastUpdateTime === undefined) c.lastUpdateTime = old.lastUpdateTime;
  const i = (list || []).findIndex((x) => x.type === c.type);
  if (i >= 0) out.splice(i, 0, c); else out.push(c);
  return out;
}

const specHash = (o) => crypto.createHash('sha256').update(JSON.stringify(sortKeys(o.spec || {}))).digest('hex');
const hash = (s, n = 10) => crypto.createHash('sha256').update(s).digest('hex').replace(/[01aeiou]/g, '').slice(0, n);

class Controllers {
  constructor(cluster) {
    this.c = cluster;
    this.pending = new Map(); // key -> timer (one pending step per object and controller)
    this.handled = new Map(); // uid -> generation (workloads, issuers) or spec hash (Applications) already handled
    this.addons = new Addons(this, { matches, setCondition, cond });
    cluster.store.listeners.push((ev) => this.onEvent(ev));
  }

  type(key) { return this.c.types.get(key); }

  /** Runs fn after the profile delay `key`, replacing an earlier pending run with the same id. */
  schedule(id, key, fn) {
    const old = this.pending.get(id);
    if (old) clearTimeout(old);
    const ms = typeof key === 'number' ? key : this.c.ms(key);
    this.pending.set(id, this.c.later(ms, () => { this.pending.delete(id); fn(); }));
  }

  /** The delay of a re-poll while something blocks (finalizers): the profile's, at least 50 ms. */
  poll(key) { return Math.max(50, this.c.ms(key)); }

  onEvent(ev) {
    const key = ev.rt.key;
    const o = ev.obj;
    const uid = o.metadata.uid;
    if (key === CRD_KEY) this.crd(ev);
    if (key === NS_KEY) this.namespace(ev);
    if (WORKLOADS.includes(key) && ev.type !== 'DELETED') this.workload(ev);
    if (key === APP_KEY) this.application(ev);
    if (key === 'apps/statefulsets' && o.metadata.name === 'argocd-application-controller') this.kickApplications();
    if (key === '/services' && ev.type !== 'DELETED') this.loadBalancer(o);
    if (key === 'metallb.io/ipaddresspools') this.schedule('lb-all', 'lb_ip', () => this.allLoadBalancers());
    this.addons.onEvent(ev);
    if (ev.type === 'DELETED') {
      this.handled.delete(uid);
      this.schedule(`gc-${uid}`, 'gc', () => this.collectDependents(uid));
      if (key === '/services' && o.spec && o.spec.clusterIP) this.c.serviceIPs.delete(o.spec.clusterIP);
    }
    if (ev.type !== 'DELETED' && o.metadata.deletionTimestamp) {
      const fin = o.metadata.finalizers || [];
      if (fin.includes('orphan') || fin.includes('foregroundDeletion')) this.schedule(`gcf-${uid}`, 'gc', () => this.finalizeOwner(ev.rt, o));
    }
  }

  // ---------------------------------------------------------------- CRDs
  crd(ev) {
    const c = this.c;
    const crd = ev.obj;
    const name = crd.metadata.name;
    c.refreshCrd(crd, ev.type === 'DELETED');
    if (ev.type === 'DELETED') return;
    if (crd.metadata.deletionTimestamp) { this.schedule(`crd-${name}`, 'gc', () => this.crdCleanup(name)); return; }
    const est = (crd.status.conditions || []).find((x) => x.type === 'Established');
    const names = crd.spec.names || {};
    const accepted = crd.status.acceptedNames || {};
    if (est && est.status === 'True' && accepted.plural === names.plural && accepted.kind === names.kind &&
        JSON.stringify(accepted.shortNames || []) === JSON.stringify(names.shortNames || [])) return;
    if (matches(c.profile.crd_stuck, crd)) return;
    this.schedule(`crd-${name}`, 'crd_establish', () => this.establish(name));
  }

  establish(name) {
    const c = this.c;
    c.write(this.type(CRD_KEY), '', name, 'kube-apiserver', (crd) => {
      const s = crd.spec;
      const names = { ...s.names, singular: s.names.singular || s.names.kind.toLowerCase(), listKind: s.names.listKind || `${s.names.kind}List` };
      const now = c.now();
      const clash = [...c.crdTypes.values()].find((rt) => rt.crd !== name && rt.group === s.group && rt.plural === names.plural);
      crd.status = crd.status || {};
      let conds = crd.status.conditions || [];
      if (clash) {
        conds = setCondition(conds, cond('NamesAccepted', 'False', 'PluralConflict', `"${names.plural}" is already in use`, now));
        conds = setCondition(conds, cond('Established', 'False', 'NotAccepted', 'not all names are accepted', now));
      } else {
        crd.status.acceptedNames = names;
        conds = setCondition(conds, cond('NamesAccepted', 'True', 'NoConflicts', 'no conflicts found', now));
        conds = setCondition(conds, cond('Established', 'True', 'InitialNamesAccepted', 'the initial names have been accepted', now));
      }
      crd.status.conditions = conds;
      const storage = (s.versions || []).find((v) => v.storage);
      if (storage && !(crd.status.storedVersions || []).includes(storage.name)) crd.status.storedVersions = [...(crd.status.storedVersions || []), storage.name];
    });
    const crd = c.get(this.type(CRD_KEY), '', name);
    if (crd && crd.spec.group === 'metallb.io' && c.webhook.establishedAt === null) c.webhook.establishedAt = Date.now();
  }

  crdCleanup(name) {
    const c = this.c;
    const crdRt = this.type(CRD_KEY);
    const crd = c.get(crdRt, '', name);
    if (!crd) return;
    if (!(crd.status.conditions || []).some((x) => x.type === 'Terminating')) {
      c.write(crdRt, '', name, 'kube-apiserver', (o) => {
        o.status.conditions = setCondition(o.status.conditions, cond('Terminating', 'True', 'InstanceDeletionInProgress', 'CustomResource deletion is in progress', c.now()));
      });
    }
    const rt = c.crdTypes.get(name);
    const left = rt ? c.list(rt) : [];
    for (const o of left) if (!o.metadata.deletionTimestamp) c.remove(rt, o, {});
    if (rt && c.list(rt).length) { this.schedule(`crd-${name}`, this.poll('gc'), () => this.crdCleanup(name)); return; }
    c.write(crdRt, '', name, 'kube-apiserver', (o) => {
      o.metadata.finalizers = (o.metadata.finalizers || []).filter((f) => f !== 'customresourcecleanup.apiextensions.k8s.io');
    }, { sub: '' });
  }

  // ---------------------------------------------------------------- namespaces
  namespace(ev) {
    const ns = ev.obj.metadata.name;
    if (ev.type === 'ADDED') this.schedule(`ns-${ns}`, 'namespace_content', () => this.seedNamespace(ns));
    if (ev.type !== 'DELETED' && ev.obj.metadata.deletionTimestamp) this.schedule(`nsdel-${ns}`, 'namespace_delete', () => this.drainNamespace(ns));
  }

  seedNamespace(ns) {
    const c = this.c;
    const nsObj = c.namespace(ns);
    if (!nsObj || nsObj.metadata.deletionTimestamp) return;
    c.createInternal(this.type('/serviceaccounts'), { metadata: { name: 'default', namespace: ns } }, 'kube-controller-manager');
    c.createInternal(this.type('/configmaps'), {
      metadata: { name: 'kube-root-ca.crt', namespace: ns, annotations: { 'kubernetes.io/description': 'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.' } },
      data: { 'ca.crt': c.caPem },
    }, 'kube-controller-manager');
  }

  drainNamespace(ns) {
    const c = this.c;
    const nsRt = this.type(NS_KEY);
    const left = [];
    for (const rt of c.served()) {
      if (!rt.namespaced) continue;
      for (const o of c.list(rt, ns)) {
        if (!o.metadata.deletionTimestamp) c.remove(rt, o, {});
        const still = c.get(rt, ns, o.metadata.name);
        if (still) left.push([rt, still]);
      }
    }
    const now = c.now();
    const withFin = left.filter(([, o]) => (o.metadata.finalizers || []).length);
    const resource = ([rt]) => (rt.group ? `${rt.plural}.${rt.group}` : `${rt.plural}.`);
    const count = (list, key) => {
      const n = new Map();
      for (const x of list) for (const k of [].concat(key(x))) n.set(k, (n.get(k) || 0) + 1);
      return [...n].map(([k, v]) => `${k} ${v}`);
    };
    c.write(nsRt, '', ns, 'kube-controller-manager', (o) => {
      let conds = o.status.conditions || [];
      conds = setCondition(conds, left.length
        ? cond('NamespaceContentRemaining', 'True', 'SomeResourcesRemain', `Some resources are remaining: ${count(left, resource)
          .map((t) => t.replace(/ (\d+)$/, ' has $1 resource instances')).join(', ')}`, now)
        : cond('NamespaceContentRemaining', 'False', 'ContentDeleted', 'All content successfully deleted, may be waiting on finalization', now));
      conds = setCondition(conds, withFin.length
        ? cond('NamespaceFinalizersRemaining', 'True', 'SomeFinalizersRemain', `Some content in the namespace has finalizers remaining: ${
          count(withFin, ([, x]) => x.metadata.finalizers).map((t) => t.replace(/ (\d+)$/, ' in $1 resource instances')).join(', ')}`, now)
        : cond('NamespaceFinalizersRemaining', 'False', 'ContentHasNoFinalizers', 'All content-preserving finalizers finished', now));
      o.status.conditions = conds;
    });
    if (left.length) {
      this.schedule(`nsdel-${ns}`, this.poll('namespace_delete'), () => this.drainNamespace(ns));
      return;
    }
    c.write(nsRt, '', ns, 'kube-controller-manager', (o) => {
      o.spec.finalizers = (o.spec.finalizers || []).filter((f) => f !== 'kubernetes');
    }, { sub: 'finalize' });
  }

  // ---------------------------------------------------------------- workloads
  workload(ev) {
    const o = ev.obj;
    const uid = o.metadata.uid;
    const gen = o.metadata.generation;
    if (o.metadata.deletionTimestamp || this.handled.get(uid) === gen) return;
    this.handled.set(uid, gen);
    const id = `wl-${uid}`;
    this.schedule(id, 'rollout_start', () => {
      this.workloadStatus(ev.rt, o, gen, false);
      const cur = this.c.get(ev.rt, o.metadata.namespace, o.metadata.name);
      if (!cur || matches(this.c.profile.rollout_stuck, cur)) return;
      this.schedule(id, 'rollout', () => this.workloadStatus(ev.rt, o, gen, true));
    });
  }

  desired(rt, o) {
    if (rt.key === 'apps/daemonsets') return this.c.nodes.names().length; // one pod per Node
    return o.spec && typeof o.spec.replicas === 'number' ? o.spec.replicas : 1;
  }

  isAvailable(rt, o, s, n) {
    if (rt.key === 'apps/daemonsets') return s.numberAvailable === n && s.updatedNumberScheduled === n;
    if (rt.key === 'apps/statefulsets') return s.readyReplicas === n && s.currentRevision === s.updateRevision;
    return s.availableReplicas === n && s.updatedReplicas === n && !(s.conditions || []).some((x) => x.reason === 'ProgressDeadlineExceeded');
  }

  /** Writes the status of a workload for generation `gen`: rolled out (done) or in progress. */
  workloadStatus(rt, orig, gen, done) {
    const c = this.c;
    const failed = done && matches(c.profile.progress_deadline, orig);
    c.write(rt, orig.metadata.namespace, orig.metadata.name, KCM, (o) => {
      if (o.metadata.generation !== gen || o.metadata.deletionTimestamp) return false;
      const n = this.desired(rt, o);
      const ok = done && !failed ? n : 0;
      const now = c.now();
      const rev = `${o.metadata.name}-${hash(JSON.stringify((o.spec || {}).template || {}))}`;
      const s = o.status || {};
      if (rt.key === 'apps/deployments' || rt.key === 'apps/replicasets') {
        Object.assign(s, { observedGeneration: gen, replicas: n, updatedReplicas: n, readyReplicas: ok, availableReplicas: ok });
        if (n - ok > 0) s.unavailableReplicas = n - ok; else delete s.unavailableReplicas;
        if (!ok) { delete s.readyReplicas; delete s.availableReplicas; }
        if (rt.key === 'apps/deployments') s.conditions = this.deploymentConditions(s.conditions, rev, { done, failed, available: ok >= n, now });
        else s.fullyLabeledReplicas = n;
      } else if (rt.key === 'apps/statefulsets') {
        // a new revision becomes current once rolled out; a new StatefulSet starts with both equal
        Object.assign(s, { observedGeneration: gen, replicas: n, readyReplicas: ok, currentReplicas: ok, updatedReplicas: ok,
          availableReplicas: ok, currentRevision: done && !failed ? rev : s.currentRevision || rev, updateRevision: rev, collisionCount: 0 });
      } else if (rt.key === 'apps/daemonsets') {
        Object.assign(s, { currentNumberScheduled: n, desiredNumberScheduled: n, numberAvailable: ok, numberMisscheduled: 0,
          numberReady: ok, observedGeneration: gen, updatedNumberScheduled: n });
        if (n - ok > 0) s.numberUnavailable = n - ok; else delete s.numberUnavailable;
      }
      o.status = s;
      return undefined;
    });
    if (rt.key === 'apps/statefulsets' && orig.metadata.name === 'argocd-application-controller') this.kickApplications();
    this.addons.workloadChanged(rt, orig.metadata.namespace, orig.metadata.name);
  }

  /** Available and Progressing as the deployment controller writes them (rs: the new ReplicaSet). */
  deploymentConditions(list, rs, { done, failed, available, now }) {
    const at = { lastUpdateTime: now };
    let conds = setCondition(list, available
      ? cond('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.', now, at)
      : cond('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.', now, at));
    let p;
    if (failed) p = cond('Progressing', 'False', 'ProgressDeadlineExceeded', `ReplicaSet "${rs}" has timed out progressing.`, now, at);
    else if (done) p = cond('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${rs}" has successfully progressed.`, now, at);
    else p = cond('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${rs}" is progressing.`, now, at);
    conds = setCondition(conds, p);
    // the apiserver's field order: type, status, lastUpdateTime, lastTransitionTime, reason, message
    return conds.map((x) => ({ type: x.type, status: x.status, lastUpdateTime: x.lastUpdateTime, lastTransitionTime: x.lastTransitionTime,
      reason: x.reason, message: x.message }));
  }

  // ---------------------------------------------------------------- Argo CD
  argoReady() {
    if (!this.c.profile.argo_needs_controller) return true;
    const rt = this.type('apps/statefulsets');
    return this.c.list(rt).some((s) => s.metadata.name === 'argocd-application-controller' && !s.metadata.deletionTimestamp &&
      (s.status || {}).readyReplicas >= ((s.spec || {}).replicas ?? 1) && (s.status || {}).observedGeneration === s.metadata.generation);
  }

  kickApplications() {
    const rt = this.type(APP_KEY);
    if (!rt) return;
    for (const a of this.c.list(rt)) this.application({ rt, obj: a, type: 'MODIFIED' });
  }

  application(ev) {
    const a = ev.obj;
    const id = `app-${a.metadata.uid}`;
    if (ev.type === 'DELETED') return;
    if (a.metadata.deletionTimestamp) {
      if ((a.metadata.finalizers || []).some((f) => f.startsWith('resources-finalizer.argocd.argoproj.io'))) {
        if (this.argoReady()) this.schedule(id, 'argo_sync', () => this.releaseApplication(ev.rt, a));
      }
      return;
    }
    if (!(a.status || {}).sync) this.schedule(`${id}-init`, 0, () => this.appStatus(ev.rt, a, 'init'));
    const spec = specHash(a);
    if (this.handled.get(a.metadata.uid) === spec || !this.argoReady() || matches(this.c.profile.argo_stuck, a)) return;
    this.handled.set(a.metadata.uid, spec);
    this.schedule(id, 'argo_sync', () => {
      this.appStatus(ev.rt, a, 'synced', spec);
      this.schedule(id, Math.max(0, this.c.ms('argo_health') - this.c.ms('argo_sync')), () => this.appStatus(ev.rt, a, 'healthy', spec));
    });
  }

  /** What a sync applies: the destination namespace (CreateNamespace=true), then the chart's objects. */
  syncResources(a) {
    const c = this.c;
    const spec = a.spec || {};
    const dest = spec.destination || {};
    const sp = spec.syncPolicy || {};
    if (dest.namespace && (sp.syncOptions || []).includes('CreateNamespace=true') && !c.namespace(dest.namespace)) {
      const meta = sp.managedNamespaceMetadata || {};
      c.createInternal(this.type(NS_KEY), { metadata: { name: dest.namespace, labels: meta.labels, annotations: meta.annotations } }, 'argocd-controller');
    }
    this.addons.sync(a);
  }

  appStatus(rt, orig, phase, gen) {
    const c = this.c;
    const ns = orig.metadata.namespace;
    const name = orig.metadata.name;
    if (phase === 'synced') {
      const cur = c.get(rt, ns, name);
      if (!cur || cur.metadata.deletionTimestamp || specHash(cur) !== gen) return;
      this.syncResources(cur);
    }
    let health = null;
    c.write(rt, ns, name, 'argocd-application-controller', (a) => {
      if (a.metadata.deletionTimestamp || (gen !== undefined && specHash(a) !== gen)) return false;
      const spec = a.spec || {};
      const src = spec.source || (spec.sources || [])[0] || {};
      const dest = spec.destination || {};
      const now = c.now();
      const revision = src.chart ? src.targetRevision || '' : hash(`${src.repoURL}${src.targetRevision}`, 40).padEnd(40, '0');
      const st = a.status || {};
      const comparedTo = { source: src, destination: dest };
      if (phase === 'init') {
        if (st.sync) return false;
        a.status = { sync: { status: 'OutOfSync', comparedTo }, health: { status: 'Missing' }, reconciledAt: now, sourceType: src.chart ? 'Helm' : 'Directory' };
        return undefined;
      }
      const degraded = matches(c.profile.argo_degraded, a);
      const objects = this.addons.resources(a);
      health = phase === 'healthy' ? (degraded ? 'Degraded' : this.addons.health(a)) : 'Progressing';
      st.sync = { status: 'Synced', comparedTo, revision };
      if (phase === 'synced' || !st.operationState) {
        st.operationState = {
          operation: { sync: { revision, syncOptions: (spec.syncPolicy || {}).syncOptions }, initiatedBy: { automated: true } },
          phase: 'Succeeded', message: 'successfully synced (all tasks run)', startedAt: (st.operationState || {}).startedAt || now,
          finishedAt: now, syncResult: { revision, source: src, resources: objects.map((r) => r.result) },
        };
      }
      const prevHealth = st.health || {};
      st.health = { status: health, lastTransitionTime: prevHealth.status === health && prevHealth.lastTransitionTime ? prevHealth.lastTransitionTime : now };
      st.resources = objects.map((r) => r.status);
      if (!st.resources.length) delete st.resources;
      st.reconciledAt = now;
      st.sourceType = src.chart ? 'Helm' : 'Directory';
      st.summary = st.summary || {};
      a.status = st;
      return undefined;
    });
    if (phase === 'healthy' && health) this.addons.wait(rt, orig, gen, health === 'Healthy' || matches(c.profile.argo_degraded, orig));
  }

  /** The resources finalizer: the Application's objects are deleted first, then the finalizer goes. */
  releaseApplication(rt, a) {
    const left = this.addons.prune(a);
    if (left) {
      this.schedule(`app-${a.metadata.uid}`, this.poll('gc'), () => this.releaseApplication(rt, a));
      return;
    }
    this.c.write(rt, a.metadata.namespace, a.metadata.name, 'argocd-application-controller', (o) => {
      o.metadata.finalizers = (o.metadata.finalizers || []).filter((f) => !f.startsWith('resources-finalizer.argocd.argoproj.io'));
    }, { sub: '' });
  }

  // ---------------------------------------------------------------- garbage collector
  dependents(uid) {
    const out = [];
    for (const rt of this.c.served()) {
      for (const o of this.c.list(rt)) if ((o.metadata.ownerReferences || []).some((r) => r.uid === uid)) out.push([rt, o]);
    }
    return out;
  }

  alive(ref, ns) {
    for (const rt of this.c.served()) {
      if (rt.kind !== ref.kind || !(ref.apiVersion || '').startsWith(rt.group ? `${rt.group}/` : 'v')) continue;
      const o = this.c.get(rt, ns, ref.name);
      if (o && o.metadata.uid === ref.uid) return true;
    }
    return false;
  }

  /** Background deletion: dependents whose owners are all gone are deleted; dangling references dropped. */
  collectDependents(uid) {
    for (const [rt, o] of this.dependents(uid)) {
      const refs = o.metadata.ownerReferences || [];
      if (refs.some((r) => r.uid !== uid && this.alive(r, o.metadata.namespace))) {
        this.c.write(rt, o.metadata.namespace, o.metadata.name, 'generic-garbage-collector', (x) => {
          x.metadata.ownerReferences = refs.filter((r) => r.uid !== uid);
        }, { sub: '' });
      } else if (!o.metadata.deletionTimestamp) this.c.remove(rt, o, { propagationPolicy: 'Background' });
    }
  }

  finalizeOwner(rt, owner) {
    const c = this.c;
    const cur = c.get(rt, owner.metadata.namespace, owner.metadata.name);
    if (!cur || !cur.metadata.deletionTimestamp) return;
    const fin = cur.metadata.finalizers || [];
    const uid = cur.metadata.uid;
    if (fin.includes('orphan')) {
      for (const [drt, d] of this.dependents(uid)) {
        c.write(drt, d.metadata.namespace, d.metadata.name, 'generic-garbage-collector', (x) => {
          x.metadata.ownerReferences = x.metadata.ownerReferences.filter((r) => r.uid !== uid);
          if (!x.metadata.ownerReferences.length) delete x.metadata.ownerReferences;
        }, { sub: '' });
      }
      c.write(rt, cur.metadata.namespace, cur.metadata.name, 'generic-garbage-collector', (x) => {
        x.metadata.finalizers = x.metadata.finalizers.filter((f) => f !== 'orphan');
      }, { sub: '' });
    } else if (fin.includes('foregroundDeletion')) {
      const deps = this.dependents(uid);
      for (const [drt, d] of deps) if (!d.metadata.deletionTimestamp) c.remove(drt, d, { propagationPolicy: 'Foreground' });
      if (this.dependents(uid).length) { this.schedule(`gcf-${uid}`, this.poll('gc'), () => this.finalizeOwner(rt, cur)); return; }
      c.write(rt, cur.metadata.namespace, cur.metadata.name, 'generic-garbage-collector', (x) => {
        x.metadata.finalizers = x.metadata.finalizers.filter((f) => f !== 'foregroundDeletion');
      }, { sub: '' });
    }
  }

  // ---------------------------------------------------------------- MetalLB
  pools() {
    const rt = this.c.types.get('metallb.io/ipaddresspools');
    if (!rt) return [];
    const ips = [];
    for (const p of this.c.list(rt)) {
      if (p.metadata.deletionTimestamp) continue;
      for (const a of (p.spec || {}).addresses || []) ips.push(...expand(a));
    }
    return ips;
  }

  allLoadBalancers() { for (const s of this.c.list(this.type('/services'))) this.loadBalancer(s); }

  loadBalancer(svc) {
    if (!svc.spec || svc.spec.type !== 'LoadBalancer' || svc.metadata.deletionTimestamp) return;
    if ((((svc.status || {}).loadBalancer || {}).ingress || []).length) return;
    this.schedule(`lb-${svc.metadata.uid}`, 'lb_ip', () => {
      const c = this.c;
      const used = new Set();
      for (const s of c.list(this.type('/services'))) for (const i of ((s.status || {}).loadBalancer || {}).ingress || []) used.add(i.ip);
      const ann = svc.metadata.annotations || {};
      const asked = ann['metallb.io/loadBalancerIPs'] || ann['metallb.universe.tf/loadBalancerIPs'];
      const wanted = (asked && asked.split(',')[0].trim()) || svc.spec.loadBalancerIP;
      const pool = this.pools();
      // an address asked for must be in a pool and free (MetalLB: AllocationFailed otherwise)
      const ip = wanted ? (pool.includes(wanted) && !used.has(wanted) ? wanted : null) : pool.find((x) => !used.has(x));
      if (!ip) return;
      c.write(this.type('/services'), svc.metadata.namespace, svc.metadata.name, 'metallb-controller', (s) => {
        if (s.spec.type !== 'LoadBalancer') return false;
        s.status = { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } };
        return undefined;
      });
    });
  }
}

/** The addresses of an IPAddressPool entry ("10.0.0.1/32", "10.0.0.1-10.0.0.5", "10.0.0.0/30"), at most 256. */
function expand(a) {
  const toN = (ip) => ip.split('.').reduce((n, x) => n * 256 + Number(x), 0);
  const toIp = (n) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
  let lo;
  let hi;
  const m = /^([\d.]+)\/(\d+)$/.exec(a);
  if (m) { const size = 2 ** (32 - Number(m[2])); lo = Math.floor(toN(m[1]) / size) * size; hi = lo + size - 1; } else if (a.includes('-')) {
    const [x, y] = a.split('-').map((s) => s.trim());
    [lo, hi] = [toN(x), toN(y)];
  } else return [];
  const out = [];
  for (let n = lo; n <= hi && out.length < 256; n++) out.push(toIp(n));
  return out;
}

module.exports = { Controllers, expand, setCondition };
