// What the apps tlr installs do in a real cluster, as the fake's Controllers
// (controllers.js) call on them:
//   charts      an Application of a chart in charts.js that syncs creates
//               that chart's objects (tracking annotation as Argo CD 3 sets
//               it), updates their pod templates and labels on a re-sync,
//               and deletes them when the resources finalizer is released;
//               its health is the worst of its objects' (workload rollouts,
//               LoadBalancer Services without an address: Progressing)
//   issuers     cert-manager ClusterIssuers and Issuers (ACME, selfSigned)
//               become Ready once a cert-manager controller Deployment is
//               available; ACME ones get an account key Secret and
//               status.acme (knobs: issuer_not_ready, issuer_needs_controller)
//   argocd      once the argocd-server Deployment is available, the Secret
//               argocd-initial-admin-secret (key password, 16 random
//               characters) and admin.passwordMtime/server.secretkey in
//               argocd-secret, once (not again after it was deleted)
'use strict';
const crypto = require('crypto');
const charts = require('./charts');

const TRACKING = 'argocd.argoproj.io/tracking-id';
const ARGO_MANAGER = 'argocd-controller';
const ISSUER_KEYS = ['cert-manager.io/clusterissuers', 'cert-manager.io/issuers'];
const WORKLOADS = ['apps/deployments', 'apps/statefulsets', 'apps/daemonsets'];
// argo-cd util/settings: InitializeSettings
const PASSWORD_LETTERS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-';
// gitops-engine pkg/health: an application is as healthy as its least healthy resource
const HEALTH_ORDER = ['Healthy', 'Suspended', 'Progressing', 'Missing', 'Degraded', 'Unknown'];

const b64 = (s) => Buffer.from(s).toString('base64');
const clean = (o) => JSON.parse(JSON.stringify(o)); // drops undefined

class Addons {
  /** ctl: the Controllers; h: {matches, setCondition, cond} from controllers.js. */
  constructor(ctl, h) {
    this.ctl = ctl;
    this.c = ctl.c;
    this.h = h;
    this.waiting = new Map(); // Application uid -> {rt, app, spec}: synced, waiting to be Healthy
  }

  type(key) { return this.c.types.get(key); }

  onEvent(ev) {
    const key = ev.rt.key;
    if (ISSUER_KEYS.includes(key)) this.issuer(ev);
    const id = (ev.obj.metadata.annotations || {})[TRACKING];
    if (id && this.waiting.size) this.recheck(id.split(':')[0]);
  }

  // ---------------------------------------------------------------- charts
  /** The tracking id Argo CD writes: app:group/Kind:namespace/name (cluster-scoped: the destination namespace). */
  static trackingId(app, rt, obj, destNs) {
    return `${app}:${rt.group}/${rt.kind}:${obj.metadata.namespace || destNs || ''}/${obj.metadata.name}`;
  }

  /** Creates (or, re-synced, updates) the objects the Application's chart makes. */
  sync(app) {
    const c = this.c;
    const list = charts.render(app);
    if (!list) return;
    const destNs = ((app.spec || {}).destination || {}).namespace || '';
    for (const [key, obj] of list) {
      const rt = this.type(key);
      if (!rt) continue;
      if (!rt.namespaced) delete obj.metadata.namespace;
      const id = Addons.trackingId(app.metadata.name, rt, obj, destNs);
      obj.metadata.annotations = { ...(obj.metadata.annotations || {}), [TRACKING]: id };
      const ns = rt.namespaced ? obj.metadata.namespace : '';
      const cur = c.get(rt, ns, obj.metadata.name);
      if (!cur) { c.createInternal(rt, obj, ARGO_MANAGER); continue; }
      if ((cur.metadata.annotations || {})[TRACKING] !== id || cur.metadata.deletionTimestamp) continue; // not this app's
      c.write(rt, ns, obj.metadata.name, ARGO_MANAGER, (x) => {
        x.metadata.labels = { ...(x.metadata.labels || {}), ...(obj.metadata.labels || {}) };
        x.metadata.annotations = { ...(x.metadata.annotations || {}), ...obj.metadata.annotations };
        if (obj.spec && obj.spec.template && x.spec) x.spec.template = obj.spec.template;
      }, { sub: '' });
    }
  }

  /** Objects carrying the Application's tracking id: [[rt, obj]]. */
  tracked(appName) {
    const out = [];
    for (const rt of this.c.served()) {
      for (const o of this.c.list(rt)) {
        const id = (o.metadata.annotations || {})[TRACKING];
        if (id && id.split(':')[0] === appName) out.push([rt, o]);
      }
    }
    return out;
  }

  /** Deletes the Application's objects (the resources finalizer); returns how many are still there. */
  prune(app) {
    const left = this.tracked(app.metadata.name);
    for (const [rt, o] of left) if (!o.metadata.deletionTimestamp) this.c.remove(rt, o, { propagationPolicy: 'Background' });
    this.waiting.delete(app.metadata.uid);
    return this.tracked(app.metadata.name).length;
  }

  /** Argo CD's health of one object: workloads by their rollout, LoadBalancer Services by their address. */
  objectHealth(rt, o) {
    const s = o.status || {};
    const gen = o.metadata.generation;
    if (WORKLOADS.includes(rt.key)) {
      if ((o.spec || {}).paused) return 'Suspended';
      if ((s.observedGeneration || 0) < gen) return 'Progressing';
      if (rt.key === 'apps/deployments') {
        if ((s.conditions || []).some((x) => x.type === 'Progressing' && x.reason === 'ProgressDeadlineExceeded')) return 'Degraded';
        const n = (o.spec || {}).replicas ?? 1;
        return (s.updatedReplicas || 0) < n || (s.availableReplicas || 0) < n ? 'Progressing' : 'Healthy';
      }
      if (rt.key === 'apps/daemonsets') {
        const n = s.desiredNumberScheduled || 0;
        return (s.updatedNumberScheduled || 0) < n || (s.numberAvailable || 0) < n ? 'Progressing' : 'Healthy';
      }
      const n = (o.spec || {}).replicas ?? 1;
      return (s.readyReplicas || 0) < n || s.currentRevision !== s.updateRevision ? 'Progressing' : 'Healthy';
    }
    if (rt.key === '/services' && (o.spec || {}).type === 'LoadBalancer' && this.c.profile.argo_lb_health) {
      return ((s.loadBalancer || {}).ingress || []).length ? 'Healthy' : 'Progressing';
    }
    return 'Healthy';
  }

  /** The Application's health from its chart's objects ('Healthy' for charts not in the table). */
  health(app) {
    const list = charts.render(app);
    if (!list) return 'Healthy';
    let worst = 'Healthy';
    for (const [key, obj] of list) {
      const rt = this.type(key);
      const cur = rt && this.c.get(rt, rt.namespaced ? obj.metadata.namespace : '', obj.metadata.name);
      const h = cur ? this.objectHealth(rt, cur) : 'Missing';
      if (HEALTH_ORDER.indexOf(h) > HEALTH_ORDER.indexOf(worst)) worst = h;
    }
    return worst;
  }

  /**
   * The chart's objects as the Application reports them: [{result (an
   * operationState.syncResult.resources entry), status (a status.resources
   * entry, with the object's health where Argo CD has a health check)}].
   */
  resources(app) {
    const list = charts.render(app) || [];
    const ssa = (((app.spec || {}).syncPolicy || {}).syncOptions || []).includes('ServerSideApply=true');
    const out = [];
    for (const [key, obj] of list) {
      const rt = this.type(key);
      if (!rt) continue;
      const ns = rt.namespaced ? obj.metadata.namespace : undefined;
      const id = { group: rt.group || undefined, version: rt.storageVersion, kind: rt.kind, namespace: ns, name: obj.metadata.name };
      const cur = this.c.get(rt, ns || '', obj.metadata.name);
      const status = { ...id, status: cur ? 'Synced' : 'OutOfSync' };
      if (WORKLOADS.includes(key) || key === '/services') status.health = { status: cur ? this.objectHealth(rt, cur) : 'Missing' };
      const what = `${rt.kind.toLowerCase()}${rt.group ? `.${rt.group}` : ''}/${obj.metadata.name}`;
      out.push({ result: clean({ ...id, status: 'Synced', message: `${what} ${ssa ? 'serverside-applied' : 'created'}`,
        hookPhase: 'Running', syncPhase: 'Sync' }), status: clean(status) });
    }
    return out;
  }

  /** Remembers a synced Application that is not Healthy yet (or forgets it). */
  wait(rt, app, spec, healthy) {
    if (healthy) this.waiting.delete(app.metadata.uid);
    else this.waiting.set(app.metadata.uid, { rt, app, spec });
  }

  recheck(appName) {
    for (const [uid, w] of this.waiting) {
      if (w.app.metadata.name !== appName) continue;
      this.ctl.schedule(`app-${uid}-health`, 0, () => this.ctl.appStatus(w.rt, w.app, 'healthy', w.spec));
    }
  }

  // ---------------------------------------------------------------- workloads
  /** Called after a workload's status changed: cert-manager or argocd-server may have become available. */
  workloadChanged(rt, ns, name) {
    if (rt.key !== 'apps/deployments') return;
    const d = this.c.get(rt, ns, name);
    if (!d || this.objectHealth(rt, d) !== 'Healthy') return;
    if (isCertManager(d)) this.kickIssuers();
    if (name === 'argocd-server') this.ctl.schedule(`argo-admin-${ns}`, 'argo_admin_secret', () => this.initialAdmin(ns));
  }

  // ---------------------------------------------------------------- Argo CD's admin password
  /** argocd-server's first start: the initial admin password, unless argocd-secret has one already. */
  initialAdmin(ns) {
    const c = this.c;
    const secrets = this.type('/secrets');
    const d = c.get(this.type('apps/deployments'), ns, 'argocd-server');
    if (!d || d.metadata.deletionTimestamp || this.objectHealth(this.type('apps/deployments'), d) !== 'Healthy') return;
    const cm = c.get(this.type('/configmaps'), ns, 'argocd-cm');
    if (cm && (cm.data || {})['admin.enabled'] === 'false') return;
    const sec = c.get(secrets, ns, 'argocd-secret');
    const data = (sec && sec.data) || {};
    if (data['admin.password'] || data['admin.passwordMtime']) return;
    let password = '';
    for (let i = 0; i < 16; i++) password += PASSWORD_LETTERS[crypto.randomInt(PASSWORD_LETTERS.length)];
    if (!c.get(secrets, ns, 'argocd-initial-admin-secret')) {
      c.createInternal(secrets, { metadata: { name: 'argocd-initial-admin-secret', namespace: ns }, data: { password: b64(password) } }, 'argocd-server');
    } else {
      c.write(secrets, ns, 'argocd-initial-admin-secret', 'argocd-server', (s) => { s.data = { ...(s.data || {}), password: b64(password) }; }, { sub: '' });
    }
    const fields = { 'admin.passwordMtime': b64(c.now()) };
    if (!data['server.secretkey']) fields['server.secretkey'] = crypto.randomBytes(32).toString('base64');
    if (sec) c.write(secrets, ns, 'argocd-secret', 'argocd-server', (s) => { s.data = { ...(s.data || {}), ...fields }; }, { sub: '' });
    else {
      c.createInternal(secrets, { metadata: { name: 'argocd-secret', namespace: ns, labels: { 'app.kubernetes.io/name': 'argocd-secret',
        'app.kubernetes.io/part-of': 'argocd' } }, data: fields }, 'argocd-server');
    }
  }

  // ---------------------------------------------------------------- cert-manager issuers
  /** The cert-manager controller Deployment (the chart's labels), or null. */
  certManager() {
    const rt = this.type('apps/deployments');
    return this.c.list(rt).find((d) => isCertManager(d) && !d.metadata.deletionTimestamp) || null;
  }

  certManagerRunning() {
    if (!this.c.profile.issuer_needs_controller) return true;
    const d = this.certManager();
    return !!d && this.objectHealth(this.type('apps/deployments'), d) === 'Healthy';
  }

  kickIssuers() {
    for (const key of ISSUER_KEYS) {
      const rt = this.type(key);
      if (rt) for (const o of this.c.list(rt)) this.issuer({ rt, obj: o, type: 'MODIFIED' });
    }
  }

  issuer(ev) {
    const o = ev.obj;
    if (ev.type === 'DELETED' || o.metadata.deletionTimestamp) return;
    const gen = o.metadata.generation;
    if (this.ctl.handled.get(o.metadata.uid) === gen || !this.certManagerRunning()) return;
    this.ctl.handled.set(o.metadata.uid, gen);
    this.ctl.schedule(`issuer-${o.metadata.uid}`, 'issuer_ready', () => this.setupIssuer(ev.rt, o.metadata.namespace || '', o.metadata.name, gen));
  }

  /** What cert-manager's issuer Setup does: ACME account registration, selfSigned at once. */
  setupIssuer(rt, ns, name, gen) {
    const c = this.c;
    const cur = c.get(rt, ns, name);
    if (!cur || cur.metadata.generation !== gen || cur.metadata.deletionTimestamp) return;
    const spec = cur.spec || {};
    const retry = () => this.ctl.schedule(`issuer-${cur.metadata.uid}`, this.ctl.poll('issuer_ready'), () => this.setupIssuer(rt, ns, name, gen));
    if (spec.acme) {
      const server = spec.acme.server || '';
      if (this.h.matches(c.profile.issuer_not_ready, cur)) {
        const host = (/^https?:\/\/([^/:]+)/.exec(server) || [])[1] || server;
        this.issuerCondition(rt, ns, name, gen, 'False', 'ErrRegisterACMEAccount',
          `Failed to register ACME account: Get "${server}": dial tcp: lookup ${host} on 10.96.0.10:53: no such host`, null);
        retry(); // cert-manager retries with a backoff
        return;
      }
      const resNs = rt.namespaced ? ns : this.clusterResourceNamespace();
      const ref = spec.acme.privateKeySecretRef || {};
      const done = (err) => {
        if (err) {
          this.issuerCondition(rt, ns, name, gen, 'False', 'ErrRegisterACMEAccount', `Failed to register ACME account: ${err}`, null);
          retry();
          return;
        }
        const origin = (/^(https?:\/\/[^/]+)/.exec(server) || [])[1] || server;
        const account = parseInt(crypto.createHash('sha256').update(cur.metadata.uid).digest('hex').slice(0, 8), 16) % 900000000 + 100000000;
        this.issuerCondition(rt, ns, name, gen, 'True', 'ACMEAccountRegistered', 'The ACME account was registered with the ACME server',
          { uri: `${origin}/acme/acct/${account}`, lastRegisteredEmail: spec.acme.email });
      };
      this.accountKey(resNs, ref.name, ref.key || 'tls.key', rt.namespaced ? 'cert-manager-issuers' : 'cert-manager-clusterissuers', done);
    } else if (spec.selfSigned) {
      this.issuerCondition(rt, ns, name, gen, 'True', 'IsReady', undefined);
    } else if (this.h.matches(c.profile.issuer_not_ready, cur)) {
      this.issuerCondition(rt, ns, name, gen, 'False', 'ErrInitIssuer', 'Error initializing issuer: lab: issuer_not_ready');
      retry();
    }
  }

  /** The Secret with the ACME account key (an RSA 2048 key, PKCS#1) exists or is made; done(errorText|null). */
  accountKey(ns, name, key, manager, done) {
    const c = this.c;
    const secrets = this.type('/secrets');
    if (!name) { done('spec.acme.privateKeySecretRef.name is required'); return; }
    const have = c.get(secrets, ns, name);
    if (have && (have.data || {})[key]) { done(null); return; }
    if (!c.namespace(ns)) { done(`namespaces "${ns}" not found`); return; }
    crypto.generateKeyPair('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' } }, (err, _pub, pem) => {
      try {
        if (err) { done(err.message); return; }
        if (!c.get(secrets, ns, name)) {
          c.createInternal(secrets, { metadata: { name, namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'cert-manager' } },
            data: { [key]: b64(pem) } }, manager);
        }
        done(null);
      } catch (e) { process.stderr.write(`k8s controller: ${e.stack || e.message}\n`); }
    });
  }

  /** The namespace ClusterIssuers read their Secrets from: cert-manager's own (--cluster-resource-namespace). */
  clusterResourceNamespace() {
    const d = this.certManager();
    return d ? d.metadata.namespace : 'cert-manager';
  }

  issuerCondition(rt, ns, name, gen, status, reason, message, acme) {
    const c = this.c;
    c.write(rt, ns, name, rt.namespaced ? 'cert-manager-issuers' : 'cert-manager-clusterissuers', (o) => {
      if (o.metadata.generation !== gen) return false;
      o.status = o.status || {};
      if (acme === null) delete o.status.acme;
      else if (acme) o.status.acme = acme;
      const cond = { type: 'Ready', status, lastTransitionTime: c.now(), reason, observedGeneration: gen };
      if (message) cond.message = message;
      o.status.conditions = this.h.setCondition(o.status.conditions, cond);
      return undefined;
    });
  }
}

function isCertManager(d) {
  const l = d.metadata.labels || {};
  return l['app.kubernetes.io/name'] === 'cert-manager' && l['app.kubernetes.io/component'] === 'controller';
}

module.exports = { Addons, TRACKING };
