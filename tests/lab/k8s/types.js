// The resource types the fake serves: the built-in groups a Talos cluster
// answers discovery with, and types derived from applied
// CustomResourceDefinitions.  A type ("rt") carries what discovery, routing,
// the store and server-side apply need: group, versions, plural, kind,
// scope, short names, categories, subresources, and apiserver traits
// (generation, what DELETE answers, field selectors, associative lists).
'use strict';
const crypto = require('crypto');

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const CR_VERBS = ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'];

// [group, version, plural, kind, namespaced, shortNames, opts]
// opts: sub (subresources), cat (categories), gen (metadata.generation),
// ret (DELETE answers the object), verbs, fields (extra field selectors)
const BUILTIN = [
  ['', 'v1', 'configmaps', 'ConfigMap', true, ['cm']],
  ['', 'v1', 'endpoints', 'Endpoints', true, ['ep']],
  ['', 'v1', 'events', 'Event', true, ['ev']],
  ['', 'v1', 'limitranges', 'LimitRange', true, ['limits']],
  ['', 'v1', 'namespaces', 'Namespace', false, ['ns'], { sub: ['finalize', 'status'], ret: true,
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], fields: ['status.phase'] }],
  ['', 'v1', 'nodes', 'Node', false, ['no'], { sub: ['status'], fields: ['spec.unschedulable'] }],
  ['', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', true, ['pvc'], { sub: ['status'] }],
  ['', 'v1', 'persistentvolumes', 'PersistentVolume', false, ['pv'], { sub: ['status'] }],
  ['', 'v1', 'pods', 'Pod', true, ['po'], { sub: ['eviction', 'status'], cat: ['all'], ret: true,
    fields: ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'status.phase', 'status.podIP', 'status.nominatedNodeName'] }],
  ['', 'v1', 'resourcequotas', 'ResourceQuota', true, ['quota'], { sub: ['status'] }],
  ['', 'v1', 'secrets', 'Secret', true, [], { fields: ['type'] }],
  ['', 'v1', 'serviceaccounts', 'ServiceAccount', true, ['sa'], { ret: true }],
  ['', 'v1', 'services', 'Service', true, ['svc'], { sub: ['status'], cat: ['all'] }],
  ['apiregistration.k8s.io', 'v1', 'apiservices', 'APIService', false, [], { sub: ['status'], cat: ['api-extensions'] }],
  ['apps', 'v1', 'controllerrevisions', 'ControllerRevision', true, []],
  ['apps', 'v1', 'daemonsets', 'DaemonSet', true, ['ds'], { sub: ['status'], cat: ['all'], gen: true }],
  ['apps', 'v1', 'deployments', 'Deployment', true, ['deploy'], { sub: ['scale', 'status'], cat: ['all'], gen: true }],
  ['apps', 'v1', 'replicasets', 'ReplicaSet', true, ['rs'], { sub: ['scale', 'status'], cat: ['all'], gen: true }],
  ['apps', 'v1', 'statefulsets', 'StatefulSet', true, ['sts'], { sub: ['scale', 'status'], cat: ['all'], gen: true }],
  ['autoscaling', 'v2', 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', true, ['hpa'], { sub: ['status'], cat: ['all'] }],
  ['batch', 'v1', 'cronjobs', 'CronJob', true, ['cj'], { sub: ['status'], cat: ['all'], gen: true }],
  ['batch', 'v1', 'jobs', 'Job', true, [], { sub: ['status'], cat: ['all'], gen: true, fields: ['status.successful'] }],
  ['networking.k8s.io', 'v1', 'ingressclasses', 'IngressClass', false, [], { gen: true }],
  ['networking.k8s.io', 'v1', 'ingresses', 'Ingress', true, ['ing'], { sub: ['status'], gen: true }],
  ['networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', true, ['netpol'], { gen: true }],
  ['policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', true, ['pdb'], { sub: ['status'], gen: true }],
  ['rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', false, []],
  ['rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', false, []],
  ['rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', true, []],
  ['rbac.authorization.k8s.io', 'v1', 'roles', 'Role', true, []],
  ['storage.k8s.io', 'v1', 'csidrivers', 'CSIDriver', false, []],
  ['storage.k8s.io', 'v1', 'storageclasses', 'StorageClass', false, ['sc'], { ret: true }],
  ['admissionregistration.k8s.io', 'v1', 'mutatingwebhookconfigurations', 'MutatingWebhookConfiguration', false, [], { cat: ['api-extensions'], gen: true }],
  ['admissionregistration.k8s.io', 'v1', 'validatingadmissionpolicies', 'ValidatingAdmissionPolicy', false, [], { sub: ['status'], cat: ['api-extensions'], gen: true }],
  ['admissionregistration.k8s.io', 'v1', 'validatingadmissionpolicybindings', 'ValidatingAdmissionPolicyBinding', false, [], { cat: ['api-extensions'], gen: true }],
  ['admissionregistration.k8s.io', 'v1', 'validatingwebhookconfigurations', 'ValidatingWebhookConfiguration', false, [], { cat: ['api-extensions'], gen: true }],
  ['apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', false, ['crd', 'crds'], { sub: ['status'], cat: ['api-extensions'], gen: true }],
  ['scheduling.k8s.io', 'v1', 'priorityclasses', 'PriorityClass', false, ['pc']],
  ['coordination.k8s.io', 'v1', 'leases', 'Lease', true, []],
  ['discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice', true, []],
];

// Group order of /apis (the apiserver's group priorities), CRD groups after these.
const GROUP_ORDER = ['', 'apiregistration.k8s.io', 'apps', 'autoscaling', 'batch', 'networking.k8s.io', 'policy',
  'rbac.authorization.k8s.io', 'storage.k8s.io', 'admissionregistration.k8s.io', 'apiextensions.k8s.io',
  'scheduling.k8s.io', 'coordination.k8s.io', 'discovery.k8s.io'];

// Associative lists of built-in types (structured-merge-diff's list types):
// path suffix -> keys ([] = a set of scalars).  Everything else is atomic.
const LISTS = [
  [/(^|\.)metadata\.ownerReferences$/, ['uid']],
  [/(^|\.)metadata\.finalizers$/, []],
  [/(^|\.)(containers|initContainers|ephemeralContainers)$/, ['name']],
  [/(containers|initContainers|ephemeralContainers)\[\]\.env$/, ['name']],
  [/(containers|initContainers|ephemeralContainers)\[\]\.ports$/, ['containerPort', 'protocol']],
  [/(containers|initContainers|ephemeralContainers)\[\]\.volumeMounts$/, ['mountPath']],
  [/\.volumes$/, ['name']],
  [/\.imagePullSecrets$/, ['name']],
  [/\.hostAliases$/, ['ip']],
  [/\.topologySpreadConstraints$/, ['topologyKey', 'whenUnsatisfiable']],
  [/^spec\.ports$/, ['port', 'protocol']],
  [/^status\.conditions$/, ['type']],
  [/^webhooks$/, ['name']],
];

/** The storage version hash discovery shows (base64 of 8 bytes of sha256 of "group/version/kind"). */
function versionHash(group, version, kind) {
  return crypto.createHash('sha256').update(`${group}/${version}/${kind}`).digest().subarray(0, 8).toString('base64');
}

function builtinTypes() {
  return BUILTIN.map(([group, version, plural, kind, namespaced, shortNames, o = {}]) => ({
    group, versions: [version], storageVersion: version, plural, kind, listKind: `${kind}List`,
    singular: kind.toLowerCase(), namespaced, shortNames, categories: o.cat || [], verbs: o.verbs || VERBS,
    subresources: o.sub || [], generation: !!o.gen, returnsDeleted: !!o.ret, fieldSelectors: o.fields || [],
    builtin: true, hash: versionHash(group, version, kind), key: `${group}/${plural}`,
  }));
}

// ------------------------------------------------------------------ versions
/** kube-aware version order: v1 > v1beta2 > v1beta1 > v1alpha1 > other (by name). */
function versionPriority(a, b) {
  const parse = (v) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [0, 0, 0, v];
    return [1, m[2] ? (m[2] === 'beta' ? 1 : 0) : 2, Number(m[1]) * 1000 + (m[3] ? Number(m[3]) : 0), v];
  };
  const [pa, pb] = [parse(a), parse(b)];
  if (pa[0] !== pb[0]) return pb[0] - pa[0];
  if (pa[0] === 0) return a < b ? -1 : a > b ? 1 : 0;
  if (pa[1] !== pb[1]) return pb[1] - pa[1];
  return pb[2] - pa[2];
}

/** The type a CustomResourceDefinition defines (null for one without served versions). */
function crdType(crd) {
  const s = crd.spec || {};
  const names = s.names || {};
  const versions = (s.versions || []).filter((v) => v.served).map((v) => v.name).sort(versionPriority);
  if (!versions.length || !names.plural || !names.kind) return null;
  const storage = (s.versions || []).find((v) => v.storage) || s.versions[0];
  const schemas = {};
  const subs = {};
  const columns = {};
  for (const v of s.versions || []) {
    schemas[v.name] = (v.schema && v.schema.openAPIV3Schema) || null;
    subs[v.name] = v.subresources || {};
    columns[v.name] = v.additionalPrinterColumns || [];
  }
  const sub0 = subs[versions[0]];
  const subresources = [];
  if (sub0.scale) subresources.push('scale');
  if (sub0.status) subresources.push('status');
  return {
    group: s.group, versions, storageVersion: storage.name, plural: names.plural, kind: names.kind,
    listKind: names.listKind || `${names.kind}List`, singular: names.singular || names.kind.toLowerCase(),
    namespaced: s.scope !== 'Cluster', shortNames: names.shortNames || [], categories: names.categories || [],
    verbs: CR_VERBS, subresources, generation: true, returnsDeleted: false, fieldSelectors: [],
    builtin: false, crd: crd.metadata.name, schemas, subs, columns, scale: sub0.scale || null,
    hash: versionHash(s.group, storage.name, names.kind), key: `${s.group}/${names.plural}`,
  };
}

/** [keys] for an associative list of a built-in type at `path` ("spec.template.spec.containers"), else null. */
function builtinListKeys(path) {
  for (const [re, keys] of LISTS) if (re.test(path)) return keys;
  return null;
}

module.exports = { builtinTypes, crdType, versionPriority, builtinListKeys, GROUP_ORDER, versionHash };
