// meta.k8s.io Table answers (what `kubectl get` asks for with
// Accept: application/json;as=Table;v=v1;g=meta.k8s.io): the columns the
// apiserver's printers give the common built-in types, "Name, Created At"
// for the rest, and a CRD's additionalPrinterColumns (default: Age) for
// custom resources.
'use strict';

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration */
function humanDuration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < -1) return '<invalid>';
  if (s < 0) return '0s';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  if (h < 192) return h % 24 ? `${Math.floor(h / 24)}d${h % 24}h` : `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 8) { const y = Math.floor(h / 24 / 365); const d = Math.floor(h / 24) - y * 365; return d ? `${y}y${d}d` : `${y}y`; }
  return `${Math.floor(h / 24 / 365)}y`;
}

const age = (o) => humanDuration(Date.now() - Date.parse(o.metadata.creationTimestamp));
const col = (name, type, description, priority = 0, format = '') => ({ name, type, format, description, priority });
const NAME = col('Name', 'string', 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names', 0, 'name');
const AGE = col('Age', 'string', 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata');
const CREATED = col('Created At', 'date', 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata');

const containers = (o) => ((((o.spec || {}).template || {}).spec || {}).containers || []);
const selectorText = (sel) => Object.entries((sel && sel.matchLabels) || sel || {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>';

const PRINTERS = {
  '/configmaps': [[NAME, col('Data', 'integer', 'Data'), AGE],
    (o) => [o.metadata.name, Object.keys(o.data || {}).length + Object.keys(o.binaryData || {}).length, age(o)]],
  '/secrets': [[NAME, col('Type', 'string', 'Type'), col('Data', 'integer', 'Data'), AGE],
    (o) => [o.metadata.name, o.type, Object.keys(o.data || {}).length, age(o)]],
  '/namespaces': [[NAME, col('Status', 'string', 'The status of the namespace'), AGE],
    (o) => [o.metadata.name, (o.status || {}).phase || '', age(o)]],
  '/serviceaccounts': [[NAME, col('Secrets', 'string', 'Secrets'), AGE],
    (o) => [o.metadata.name, (o.secrets || []).length, age(o)]],
  '/services': [[NAME, col('Type', 'string', 'Type'), col('Cluster-IP', 'string', 'Cluster IP'), col('External-IP', 'string', 'External IP'),
    col('Port(s)', 'string', 'Ports'), AGE, col('Selector', 'string', 'Selector', 1)],
  (o) => {
    const s = o.spec || {};
    const ing = (((o.status || {}).loadBalancer || {}).ingress || []).map((i) => i.ip || i.hostname);
    const ext = ing.length ? ing.join(',') : s.type === 'LoadBalancer' ? '<pending>' : '<none>';
    const ports = (s.ports || []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol || 'TCP'}`).join(',') || '<none>';
    return [o.metadata.name, s.type, s.clusterIP || '<none>', ext, ports, age(o), selectorText(s.selector)];
  }],
  '/nodes': [[NAME, col('Status', 'string', 'The status of the node'), col('Roles', 'string', 'The roles of the node'), AGE,
    col('Version', 'string', 'Kubelet Version')],
  (o) => {
    const ready = ((o.status || {}).conditions || []).find((c) => c.type === 'Ready');
    const roles = Object.keys(o.metadata.labels || {}).filter((k) => k.startsWith('node-role.kubernetes.io/')).map((k) => k.split('/')[1]);
    const status = [ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown', ...((o.spec || {}).unschedulable ? ['SchedulingDisabled'] : [])];
    return [o.metadata.name, status.join(','), roles.join(',') || '<none>', age(o),
      (((o.status || {}).nodeInfo) || {}).kubeletVersion || ''];
  }],
  'apps/deployments': [[NAME, col('Ready', 'string', 'Number of the pod with ready state'), col('Up-to-date', 'string', 'Total number of non-terminated pods targeted by this deployment that have the desired template spec.'),
    col('Available', 'string', 'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.'), AGE,
    col('Containers', 'string', 'Names of each container in the template.', 1), col('Images', 'string', 'Images referenced by each container in the template.', 1),
    col('Selector', 'string', 'Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.', 1)],
  (o) => {
    const s = o.status || {};
    return [o.metadata.name, `${s.readyReplicas || 0}/${(o.spec || {}).replicas}`, s.updatedReplicas || 0, s.availableReplicas || 0, age(o),
      containers(o).map((c) => c.name).join(','), containers(o).map((c) => c.image).join(','), selectorText((o.spec || {}).selector)];
  }],
  'apps/statefulsets': [[NAME, col('Ready', 'string', 'Number of the pod with ready state'), AGE,
    col('Containers', 'string', 'Names of each container in the template.', 1), col('Images', 'string', 'Images referenced by each container in the template.', 1)],
  (o) => [o.metadata.name, `${(o.status || {}).readyReplicas || 0}/${(o.spec || {}).replicas}`, age(o),
    containers(o).map((c) => c.name).join(','), containers(o).map((c) => c.image).join(',')]],
  'apps/daemonsets': [[NAME, col('Desired', 'integer', 'The desired number of daemon pods.'), col('Current', 'integer', 'The current number of daemon pods.'),
    col('Ready', 'integer', 'The number of daemon pods ready.'), col('Up-to-date', 'integer', 'The number of daemon pods that are up to date.'),
    col('Available', 'integer', 'The number of daemon pods available.'), col('Node Selector', 'string', 'Node selector'), AGE],
  (o) => {
    const s = o.status || {};
    const ns = (((o.spec || {}).template || {}).spec || {}).nodeSelector;
    return [o.metadata.name, s.desiredNumberScheduled || 0, s.currentNumberScheduled || 0, s.numberReady || 0,
      s.updatedNumberScheduled || 0, s.numberAvailable || 0, ns ? selectorText(ns) : '<none>', age(o)];
  }],
};

/**
 * A JSONPath of additionalPrinterColumns (".status.sync.status",
 * ".spec.items[0].x", and filters as cert-manager's columns use them:
 * '.status.conditions[?(@.type == "Ready")].status', first match).
 */
function jsonPath(obj, path) {
  let cur = obj;
  const filters = [];
  const text = String(path).replace(/^\{?\.?/, '').replace(/\}$/, '')
    .replace(/\[\?\(@\.([\w-]+)\s*==\s*(?:"([^"]*)"|'([^']*)')\)\]/g, (_, k, a, b) => { filters.push([k, a ?? b]); return `[?${filters.length - 1}]`; });
  for (const part of text.split('.').filter(Boolean)) {
    const m = /^([^[]*)((?:\[(?:\d+|\?\d+)\])*)$/.exec(part);
    if (!m) return undefined;
    if (m[1]) cur = cur && typeof cur === 'object' ? cur[m[1]] : undefined;
    for (const [, q, idx] of m[2].matchAll(/\[(\??)(\d+)\]/g)) {
      if (!Array.isArray(cur)) return undefined;
      if (q) {
        const [k, v] = filters[Number(idx)];
        cur = cur.find((x) => x && typeof x === 'object' && String(x[k]) === v);
      } else cur = cur[Number(idx)];
    }
  }
  return cur;
}

/** cellForJSONValue: dates become ages ("5m"), integers integers. */
function cell(type, v) {
  if (v === undefined || v === null) return null;
  if (type === 'date' && typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? '<invalid>' : humanDuration(Date.now() - t);
  }
  if (type === 'integer' && typeof v === 'number') return Math.trunc(v);
  return v;
}

/** [columnDefinitions, row(obj) -> cells] for a type at a version. */
function columns(rt, version) {
  if (PRINTERS[rt.key]) return PRINTERS[rt.key];
  if (!rt.builtin) {
    let cols = (rt.columns && rt.columns[version]) || [];
    if (!cols.length) cols = [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }];
    return [[NAME, ...cols.map((c) => col(c.name, c.type, c.description || '', c.priority || 0, c.format || ''))],
      (o) => [o.metadata.name, ...cols.map((c) => cell(c.type, jsonPath(o, c.jsonPath)))]];
  }
  return [[NAME, CREATED], (o) => [o.metadata.name, o.metadata.creationTimestamp]];
}

/** The Table of objects; includeObject: None | Metadata (default) | Object. */
function table(rt, version, objs, { resourceVersion, cont, includeObject = 'Metadata', apiVersion = 'meta.k8s.io/v1' }) {
  const [defs, row] = columns(rt, version);
  const metadata = { resourceVersion };
  if (cont) metadata.continue = cont;
  return {
    kind: 'Table', apiVersion, metadata, columnDefinitions: defs,
    rows: objs.map((o) => {
      const r = { cells: row(o) };
      if (includeObject === 'Object') r.object = o;
      else if (includeObject !== 'None') r.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
      return r;
    }),
  };
}

module.exports = { table, humanDuration, jsonPath };
