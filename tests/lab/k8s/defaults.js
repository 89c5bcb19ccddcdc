// What the apiserver's registry strategies do to an object besides storing
// it: defaulting (the fields kubectl shows that nobody applied: replicas,
// strategies, clusterIP, Secret type, namespace finalizers, ...), the
// generation rule, validation with the apiserver's 422 messages for the
// common mistakes, and the JSON key order (struct order for built-in types,
// sorted keys for custom resources as for any unstructured object).
'use strict';
const { sortKeys, isObj } = require('./fields');

const META_ORDER = ['name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation',
  'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences',
  'finalizers', 'managedFields'];
const SORTED_MAPS = ['labels', 'annotations'];
const SORTED_TOP = ['data', 'binaryData', 'stringData'];

/** JSON key order as the apiserver writes the object. */
function canonical(rt, o) {
  if (!rt.builtin) return sortKeys(o);
  const out = { kind: o.kind, apiVersion: o.apiVersion };
  if (o.metadata) {
    const md = {};
    for (const k of META_ORDER) if (o.metadata[k] !== undefined) md[k] = SORTED_MAPS.includes(k) ? sortKeys(o.metadata[k]) : o.metadata[k];
    for (const k of Object.keys(o.metadata)) if (!(k in md)) md[k] = o.metadata[k];
    out.metadata = md;
  }
  for (const k of Object.keys(o)) {
    if (k in out || k === 'status') continue;
    out[k] = SORTED_TOP.includes(k) ? sortKeys(o[k]) : o[k];
  }
  if (o.status !== undefined) out.status = o.status;
  return out;
}

// ------------------------------------------------------------------ defaults
function podTemplateDefaults(tpl) {
  if (!isObj(tpl)) return;
  const s = tpl.spec = isObj(tpl.spec) ? tpl.spec : {};
  s.restartPolicy ??= 'Always';
  s.terminationGracePeriodSeconds ??= 30;
  s.dnsPolicy ??= 'ClusterFirst';
  s.securityContext ??= {};
  s.schedulerName ??= 'default-scheduler';
  for (const c of [...(s.containers || []), ...(s.initContainers || [])]) {
    if (!isObj(c)) continue;
    c.resources ??= {};
    c.terminationMessagePath ??= '/dev/termination-log';
    c.terminationMessagePolicy ??= 'File';
    if (c.imagePullPolicy === undefined && typeof c.image === 'string') {
      const tag = /:([^/:@]+)$/.exec(c.image.split('@')[0]);
      c.imagePullPolicy = c.image.includes('@') || (tag && tag[1] !== 'latest') ? 'IfNotPresent' : 'Always';
    }
    for (const p of c.ports || []) if (isObj(p)) p.protocol ??= 'TCP';
  }
}

const INITIAL_STATUS = {
  '/namespaces': () => ({ phase: 'Active' }),
  '/services': () => ({ loadBalancer: {} }),
  '/pods': () => ({ phase: 'Pending' }),
  'apiextensions.k8s.io/customresourcedefinitions': (obj) => {
    const storage = ((obj.spec && obj.spec.versions) || []).find((v) => v && v.storage);
    return { acceptedNames: { plural: '', kind: '' }, storedVersions: storage ? [storage.name] : [] };
  },
};

/**
 * Defaulting, and the status rule: writes to the main resource of a type
 * with a status subresource keep the stored status (new objects start with
 * the type's initial status); `sub` is the subresource written.
 */
function defaults(cluster, rt, obj, prev, sub) {
  const spec = () => (obj.spec = isObj(obj.spec) ? obj.spec : {});
  if (rt.subresources.includes('status') && sub !== 'status') {
    if (prev) {
      if (prev.status !== undefined) obj.status = prev.status; else delete obj.status;
    } else if (INITIAL_STATUS[rt.key]) obj.status = INITIAL_STATUS[rt.key](obj);
    else if (rt.builtin) obj.status = {};
    else delete obj.status;
  }
  switch (rt.key) {
    case '/namespaces': {
      obj.metadata.labels = { ...(obj.metadata.labels || {}), 'kubernetes.io/metadata.name': obj.metadata.name };
      if (!prev) spec().finalizers ??= ['kubernetes'];
      else if (sub !== 'finalize') {
        if (prev.spec) obj.spec = { ...(obj.spec || {}), finalizers: prev.spec.finalizers }; // only through /finalize
      }
      break;
    }
    case '/pods': {
      const tpl = { spec: spec() };
      podTemplateDefaults(tpl);
      tpl.spec.enableServiceLinks ??= true;
      tpl.spec.priority ??= 0;
      // DefaultTolerationSeconds admission: 300 s on not-ready and unreachable nodes
      const tol = tpl.spec.tolerations = Array.isArray(tpl.spec.tolerations) ? tpl.spec.tolerations : [];
      for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
        if (!prev && !tol.some((t) => isObj(t) && t.key === key)) tol.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
      }
      break;
    }
    case '/secrets':
      obj.type ??= prev ? prev.type : 'Opaque';
      if (isObj(obj.stringData)) {
        obj.data = { ...(obj.data || {}) };
        for (const [k, v] of Object.entries(obj.stringData)) obj.data[k] = Buffer.from(String(v)).toString('base64');
        delete obj.stringData;
      }
      break;
    case '/services': {
      const s = spec();
      s.type ??= 'ClusterIP';
      s.sessionAffinity ??= 'None';
      if (prev && prev.spec && prev.spec.clusterIP) s.clusterIP = prev.spec.clusterIP;
      if (s.type !== 'ExternalName') {
        s.clusterIP ??= cluster.allocateServiceIP();
        s.clusterIPs = [s.clusterIP];
        s.ipFamilies ??= ['IPv4'];
        s.ipFamilyPolicy ??= 'SingleStack';
        s.internalTrafficPolicy ??= 'Cluster';
      }
      const old = prev && prev.spec && prev.spec.ports || [];
      for (const p of s.ports || []) {
        if (!isObj(p)) continue;
        p.protocol ??= 'TCP';
        p.targetPort ??= p.port;
        if ((s.type === 'NodePort' || s.type === 'LoadBalancer') && p.nodePort === undefined) {
          const was = old.find((x) => x.port === p.port);
          p.nodePort = was && was.nodePort ? was.nodePort : 30000 + Math.floor(Math.random() * 2768);
        }
      }
      if (s.type === 'LoadBalancer' || s.type === 'NodePort') {
        s.externalTrafficPolicy ??= 'Cluster';
        if (s.type === 'LoadBalancer') s.allocateLoadBalancerNodePorts ??= true;
      }
      break;
    }
    case 'apps/deployments': {
      const s = spec();
      s.replicas ??= 1;
      s.revisionHistoryLimit ??= 10;
      s.progressDeadlineSeconds ??= 600;
      s.strategy ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } };
      podTemplateDefaults(s.template);
      break;
    }
    case 'apps/statefulsets': {
      const s = spec();
      s.replicas ??= 1;
      s.podManagementPolicy ??= 'OrderedReady';
      s.updateStrategy ??= { type: 'RollingUpdate', rollingUpdate: { partition: 0 } };
      s.revisionHistoryLimit ??= 10;
      s.persistentVolumeClaimRetentionPolicy ??= { whenDeleted: 'Retain', whenScaled: 'Retain' };
      podTemplateDefaults(s.template);
      break;
    }
    case 'apps/daemonsets': {
      const s = spec();
      s.updateStrategy ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } };
      s.revisionHistoryLimit ??= 10;
      podTemplateDefaults(s.template);
      break;
    }
    case 'apps/replicasets':
      spec().replicas ??= 1;
      podTemplateDefaults(obj.spec.template);
      break;
    case 'batch/jobs':
      podTemplateDefaults(spec().template);
      obj.spec.backoffLimit ??= 6;
      obj.spec.completions ??= 1;
      obj.spec.parallelism ??= 1;
      break;
    case 'apiextensions.k8s.io/customresourcedefinitions':
      spec().conversion ??= { strategy: 'None' };
      for (const v of obj.spec.versions || []) if (isObj(v) && v.served === undefined) v.served = true;
      if (!prev) obj.metadata.finalizers = [...new Set([...(obj.metadata.finalizers || []), 'customresourcecleanup.apiextensions.k8s.io'])];
      break;
    default:
  }
}

/** metadata.generation goes up on changes outside metadata (and status, with a status subresource). */
function generationChanged(rt, prev, next) {
  const strip = (o) => {
    const c = { ...o };
    delete c.metadata;
    if (rt.subresources.includes('status')) delete c.status;
    return JSON.stringify(sortKeys(c));
  };
  return strip(prev) !== strip(next);
}

// ------------------------------------------------------------------ validation
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const MSG_SUBDOMAIN = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const MSG_LABEL = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const MSG_1035 = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const invalid = (field, value, detail) => ({ type: 'FieldValueInvalid', field, value, detail });
const required = (field, detail) => ({ type: 'FieldValueRequired', field, detail });

function validateName(rt, name) {
  if (rt.key === '/namespaces') {
    if (!DNS1123_LABEL.test(name) || name.length > 63) return [invalid('metadata.name', name, MSG_LABEL)];
  } else if (rt.key === '/services') {
    if (!DNS1035_LABEL.test(name) || name.length > 63) return [invalid('metadata.name', name, MSG_1035)];
  } else if (rt.group === 'rbac.authorization.k8s.io') {
    if (name.includes('/') || name.includes('%') || name === '.' || name === '..') {
      return [invalid('metadata.name', name, 'may not contain \'/\'')];
    }
  } else if (!DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
    return [invalid('metadata.name', name, MSG_SUBDOMAIN)];
  }
  return [];
}

function validate(cluster, rt, obj, prev) {
  const errs = [];
  const md = obj.metadata;
  if (!md.name) errs.push(required('metadata.name', 'name or generateName is required'));
  else errs.push(...validateName(rt, md.name));
  if (rt.namespaced && !md.namespace) errs.push(required('metadata.namespace', ''));
  for (const [k, v] of Object.entries(md.labels || {})) {
    if (!LABEL_NAME.test(k)) errs.push(invalid('metadata.labels', k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
    if (typeof v !== 'string' || !LABEL_VALUE.test(v) || v.length > 63) {
      errs.push(invalid('metadata.labels', v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
    }
  }
  for (const k of Object.keys(md.annotations || {})) {
    if (!LABEL_NAME.test(k)) errs.push(invalid('metadata.annotations', k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
  }
  if (['apps/deployments', 'apps/statefulsets', 'apps/daemonsets', 'apps/replicasets'].includes(rt.key)) {
    const s = obj.spec || {};
    if (!isObj(s.selector)) errs.push(required('spec.selector', ''));
    const tpl = s.template || {};
    const labels = (tpl.metadata && tpl.metadata.labels) || {};
    const ml = (s.selector && s.selector.matchLabels) || {};
    if (isObj(s.selector) && Object.entries(ml).some(([k, v]) => labels[k] !== v)) {
      errs.push(invalid('spec.template.metadata.labels', `map[string]string{${Object.entries(labels).map(([k, v]) => `"${k}":"${v}"`).join(', ')}}`, '`selector` does not match template `labels`'));
    }
    if (!(tpl.spec && Array.isArray(tpl.spec.containers) && tpl.spec.containers.length)) errs.push(required('spec.template.spec.containers', ''));
    if (prev && JSON.stringify(sortKeys(prev.spec.selector || {})) !== JSON.stringify(sortKeys(s.selector || {}))) {
      errs.push(invalid('spec.selector', 'v1.LabelSelector{...}', 'field is immutable'));
    }
    if (rt.key === 'apps/statefulsets' && !s.serviceName && cluster.minor < 33) { /* optional since 1.33; earlier apiservers accept "" as well */ }
  }
  if (rt.key === 'apiextensions.k8s.io/customresourcedefinitions') errs.push(...validateCrd(cluster, obj, prev));
  return errs;
}

function validateCrd(cluster, obj, prev) {
  const errs = [];
  const s = obj.spec || {};
  const n = s.names || {};
  if (!s.group) errs.push(required('spec.group', ''));
  if (!n.plural) errs.push(required('spec.names.plural', ''));
  if (!n.kind) errs.push(required('spec.names.kind', ''));
  if (!['Namespaced', 'Cluster'].includes(s.scope)) {
    errs.push(s.scope ? { type: 'FieldValueNotSupported', field: 'spec.scope', value: s.scope, detail: 'supported values: "Cluster", "Namespaced"' } : required('spec.scope', ''));
  }
  if (s.group && n.plural && obj.metadata.name !== `${n.plural}.${s.group}`) {
    errs.push(invalid('metadata.name', obj.metadata.name, 'must be spec.names.plural+"."+spec.group'));
  }
  const versions = Array.isArray(s.versions) ? s.versions : [];
  if (!versions.length) errs.push(invalid('spec.versions', '[]', 'must have exactly one version marked as storage version'));
  else if (versions.filter((v) => v && v.storage).length !== 1) {
    errs.push(invalid('spec.versions', `[]apiextensions.CustomResourceDefinitionVersion{...}`, 'must have exactly one version marked as storage version'));
  }
  versions.forEach((v, i) => {
    if (!v || !v.schema || !v.schema.openAPIV3Schema) errs.push(required(`spec.versions[${i}].schema.openAPIV3Schema`, 'schemas are required'));
  });
  if (prev && prev.spec && prev.spec.group !== s.group) errs.push(invalid('spec.group', s.group, 'field is immutable'));
  if (prev && prev.spec && prev.spec.scope !== s.scope) errs.push(invalid('spec.scope', s.scope, 'field is immutable'));
  return errs;
}

module.exports = { canonical, defaults, validate, generationChanged };
