// The pods/eviction subresource (what `kubectl drain` and tlr's drain
// POST) and the disruption controller that keeps PodDisruptionBudget
// status, following k8s.io/kubernetes pkg/registry/core/pod/storage/
// eviction.go and pkg/controller/disruption: the body is a policy/v1 (or
// v1beta1) Eviction whose name must match the URL; a missing pod is a 404;
// pods that are not running (or already terminating) are deleted without
// looking at budgets; otherwise the pod's one budget must allow a
// disruption (429 TooManyRequests "Cannot evict pod as it would violate
// the pod's disruption budget." when not, also while the controller has
// not seen the budget's generation yet), which the eviction then uses up.
// The pod is deleted gracefully (deletionTimestamp; the kubelet finishes
// it, see nodes.js).  Answer: 201 with a Success Status.
'use strict';
const { E, status, ApiError } = require('./status');
const { setCondition } = require('./controllers');

const POD = '/pods';
const PDB = 'policy/poddisruptionbudgets';

/** Whether a LabelSelector object matches labels (policy/v1: an empty selector matches every pod). */
function selects(sel, labels) {
  if (!sel) return false;
  const l = labels || {};
  for (const [k, v] of Object.entries(sel.matchLabels || {})) if (l[k] !== v) return false;
  for (const r of sel.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const vals = r.values || [];
    if (r.operator === 'In' && !(has && vals.includes(l[r.key]))) return false;
    if (r.operator === 'NotIn' && has && vals.includes(l[r.key])) return false;
    if (r.operator === 'Exists' && !has) return false;
    if (r.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

const isReady = (p) => ((p.status || {}).conditions || []).some((x) => x.type === 'Ready' && x.status === 'True');

/** minAvailable / maxUnavailable: an integer or "N%" of `total` (rounded up). */
function scaled(v, total) {
  const m = /^(\d+)%$/.exec(String(v));
  return m ? Math.ceil((Number(m[1]) * total) / 100) : Number(v) || 0;
}

function tooManyRequests(message, cause) {
  const s = status(429, 'TooManyRequests', message, { causes: [{ reason: 'DisruptionBudget', message: cause }] });
  return new ApiError(s);
}

function decode(ctx) {
  let body;
  try { body = JSON.parse(ctx.body.toString('utf8')); } catch (err) {
    throw E.badRequest(`the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: ${err.message}`);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw E.badRequest('the object provided is unrecognized (must be of type Eviction): couldn\'t get version/kind; json parse error: cannot unmarshal into an object');
  }
  const gv = body.apiVersion || 'policy/v1';
  if ((body.kind && body.kind !== 'Eviction') || !['policy/v1', 'policy/v1beta1'].includes(gv)) {
    const [g, v] = gv.includes('/') ? gv.split('/') : ['', gv];
    throw E.badRequest(`${body.kind || ''} in version "${v}" cannot be handled as a Eviction: no kind "${body.kind || ''}" is registered for version "${g ? `${g}/${v}` : v}" in scheme "pkg/api/legacyscheme/scheme.go:30"`);
  }
  return body;
}

/** POST .../pods/NAME/eviction. */
function evict(ctx, { dryRun }) {
  ctx.optsKind = 'CreateOptions';
  const dry = dryRun(ctx);
  const c = ctx.cluster;
  const ev = decode(ctx);
  const md = ev.metadata || {};
  if (md.namespace && md.namespace !== ctx.ns) throw E.badRequest('the namespace of the provided object does not match the namespace sent on the request');
  if ((md.name || '') !== ctx.name) throw E.badRequest('name in URL does not match name in Eviction object');
  const opts = ev.deleteOptions || {};
  const pod = c.get(c.types.get(POD), ctx.ns, ctx.name);
  if (!pod) throw E.notFound({ group: '', resource: 'pods' }, ctx.name);
  const phase = (pod.status || {}).phase;
  const ignoreBudgets = ['Succeeded', 'Failed', 'Pending'].includes(phase) || pod.metadata.deletionTimestamp;
  const rt = c.types.get(PDB);
  if (!ignoreBudgets) {
    const pdbs = c.list(rt, ctx.ns).filter((b) => selects(b.spec && b.spec.selector, pod.metadata.labels));
    if (pdbs.length > 1) throw E.internal('This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.');
    const pdb = pdbs[0];
    const st = (pdb && pdb.status) || {};
    const unhealthyOk = pdb && !isReady(pod) && (pdb.spec.unhealthyPodEvictionPolicy === 'AlwaysAllow' ||
      (st.currentHealthy >= st.desiredHealthy && st.desiredHealthy > 0));
    if (pdb && !unhealthyOk) {
      const message = "Cannot evict pod as it would violate the pod's disruption budget.";
      if ((st.observedGeneration || 0) < pdb.metadata.generation) {
        throw tooManyRequests(message, `The disruption budget ${pdb.metadata.name} is still being processed by the server.`);
      }
      if ((st.disruptionsAllowed || 0) <= 0) {
        throw tooManyRequests(message, `The disruption budget ${pdb.metadata.name} needs ${st.desiredHealthy || 0} healthy pods and has ${st.currentHealthy || 0} currently`);
      }
      if (!dry) {
        c.write(rt, ctx.ns, pdb.metadata.name, 'kube-apiserver', (b) => {
          b.status.disruptionsAllowed--;
          b.status.disruptedPods = { ...(b.status.disruptedPods || {}), [pod.metadata.name]: c.now() };
          if (b.status.disruptionsAllowed === 0) {
            b.status.conditions = setCondition(b.status.conditions, { type: 'DisruptionAllowed', status: 'False',
              observedGeneration: b.metadata.generation, lastTransitionTime: c.now(), reason: 'InsufficientPods', message: '' });
          }
        });
      }
    }
  }
  const grace = opts.gracePeriodSeconds;
  c.remove(c.types.get(POD), pod, { dryRun: dry, gracePeriodSeconds: grace === undefined ? undefined : Number(grace),
    preconditions: opts.preconditions });
  return { code: 201, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 } };
}

/** The disruption controller: keeps the status of every budget in step with its pods. */
class Disruption {
  constructor(cluster) {
    this.c = cluster;
    this.timer = null;
    cluster.store.listeners.push((ev) => {
      if (ev.rt.key === PDB || ev.rt.key === POD) this.kick();
    });
  }

  kick() {
    if (this.timer) return;
    this.timer = this.c.later(this.c.ms('gc'), () => { this.timer = null; this.syncAll(); });
  }

  syncAll() {
    const rt = this.c.types.get(PDB);
    for (const b of this.c.list(rt)) if (!b.metadata.deletionTimestamp) this.sync(rt, b);
  }

  sync(rt, pdb) {
    const c = this.c;
    const pods = c.list(c.types.get(POD), pdb.metadata.namespace).filter((p) => selects(pdb.spec.selector, p.metadata.labels));
    const live = new Set(pods.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name));
    c.write(rt, pdb.metadata.namespace, pdb.metadata.name, 'kube-controller-manager', (b) => {
      const disrupted = {};
      for (const [k, v] of Object.entries((b.status || {}).disruptedPods || {})) if (live.has(k)) disrupted[k] = v;
      const expected = pods.length;
      const healthy = pods.filter((p) => !p.metadata.deletionTimestamp && isReady(p) && !disrupted[p.metadata.name]).length;
      const s = b.spec || {};
      const desired = s.maxUnavailable !== undefined ? Math.max(0, expected - scaled(s.maxUnavailable, expected))
        : scaled(s.minAvailable === undefined ? 0 : s.minAvailable, expected);
      const allowed = Math.max(0, healthy - desired);
      const now = c.now();
      const st = b.status || {};
      b.status = {
        observedGeneration: b.metadata.generation, ...(Object.keys(disrupted).length ? { disruptedPods: disrupted } : {}),
        disruptionsAllowed: allowed, currentHealthy: healthy, desiredHealthy: desired, expectedPods: expected,
        conditions: setCondition(st.conditions, { type: 'DisruptionAllowed', status: allowed > 0 ? 'True' : 'False',
          observedGeneration: b.metadata.generation, lastTransitionTime: now, reason: allowed > 0 ? 'SufficientPods' : 'InsufficientPods', message: '' }),
      };
    });
  }
}

module.exports = { evict, Disruption, selects };
