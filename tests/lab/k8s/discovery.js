// Discovery and OpenAPI documents.  Legacy discovery (/api, /apis,
// /api/v1, /apis/G, /apis/G/V), aggregated discovery (the same /api and
// /apis asked for application/json;g=apidiscovery.k8s.io;v=v2 or v2beta1;
// as=APIGroupDiscoveryList, served from Kubernetes 1.26/1.30 on, as the real
// apiserver does), and OpenAPI: /openapi/v3 (an index of group versions and
// per group version a document whose PATCH operations carry the
// x-kubernetes-group-version-kind extension and the fieldValidation
// parameter, which is what kubectl reads to hand validation to the server)
// and /openapi/v2 (a minimal document, JSON or protobuf, for older kubectl).
'use strict';
const crypto = require('crypto');
const { GROUP_ORDER, versionPriority } = require('./types');

const SUB_VERBS = ['get', 'patch', 'update'];

/** {group -> {versions (preferred first), types: {version -> [rt]}}} in /apis order. */
function groups(types) {
  const by = new Map();
  for (const rt of types) {
    if (!by.has(rt.group)) by.set(rt.group, { name: rt.group, versions: new Set(), types: {} });
    const g = by.get(rt.group);
    for (const v of rt.versions) {
      g.versions.add(v);
      (g.types[v] = g.types[v] || []).push(rt);
    }
  }
  const rank = (name) => { const i = GROUP_ORDER.indexOf(name); return i < 0 ? GROUP_ORDER.length : i; };
  const list = [...by.values()].map((g) => ({ ...g, versions: [...g.versions].sort(versionPriority) }));
  list.sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const g of list) for (const v of Object.keys(g.types)) g.types[v].sort((a, b) => (a.plural < b.plural ? -1 : 1));
  return list;
}

const gv = (group, version) => (group ? `${group}/${version}` : version);

function apiVersions(serverAddress) {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

function apiGroup(g) {
  return {
    name: g.name,
    versions: g.versions.map((v) => ({ groupVersion: gv(g.name, v), version: v })),
    preferredVersion: { groupVersion: gv(g.name, g.versions[0]), version: g.versions[0] },
  };
}

function apiGroupList(types) {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups(types).filter((g) => g.name).map(apiGroup) };
}

// subresources served with another kind or other verbs than get/patch/update
const SUB_KINDS = { scale: { group: 'autoscaling', version: 'v1', kind: 'Scale' }, eviction: { group: 'policy', version: 'v1', kind: 'Eviction' } };
const SUB_ONLY = { finalize: ['update'], eviction: ['create'] };

/** APIResourceList of one group version (with the status/scale subresources as "x/status"). */
function resourceList(types, group, version) {
  const g = groups(types).find((x) => x.name === group);
  if (!g || !g.types[version]) return null;
  const resources = [];
  for (const rt of g.types[version]) {
    const r = { name: rt.plural, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: rt.verbs };
    if (rt.shortNames.length) r.shortNames = rt.shortNames;
    if (rt.categories.length) r.categories = rt.categories;
    r.storageVersionHash = rt.hash;
    resources.push(r);
    for (const s of rt.subresources) {
      if (s === 'scale') {
        resources.push({ name: `${rt.plural}/scale`, singularName: '', namespaced: rt.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: SUB_VERBS });
      } else if (s === 'eviction') {
        resources.push({ name: `${rt.plural}/eviction`, singularName: '', namespaced: rt.namespaced, group: 'policy', version: 'v1', kind: 'Eviction', verbs: ['create'] });
      } else if (s === 'finalize') {
        resources.push({ name: `${rt.plural}/finalize`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['update'] });
      } else {
        resources.push({ name: `${rt.plural}/${s}`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: SUB_VERBS });
      }
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv(group, version), resources };
}

/** APIGroupDiscoveryList for /api (core) or /apis (everything else). */
function aggregated(types, core, apiVersion) {
  const items = [];
  for (const g of groups(types)) {
    if ((g.name === '') !== core) continue;
    const versions = g.versions.map((v) => ({
      version: v,
      resources: g.types[v].map((rt) => {
        const r = {
          resource: rt.plural, responseKind: { group: '', version: '', kind: rt.kind },
          scope: rt.namespaced ? 'Namespaced' : 'Cluster', singularResource: rt.singular, verbs: rt.verbs,
        };
        if (rt.shortNames.length) r.shortNames = rt.shortNames;
        if (rt.categories.length) r.categories = rt.categories;
        const subs = rt.subresources.map((s) => ({
          subresource: s, responseKind: SUB_KINDS[s] || { group: '', version: '', kind: rt.kind },
          verbs: SUB_ONLY[s] || SUB_VERBS,
        }));
        if (subs.length) r.subresources = subs;
        return r;
      }),
      freshness: 'Current',
    }));
    const metadata = g.name ? { name: g.name, creationTimestamp: null } : { creationTimestamp: null };
    items.push({ metadata, versions });
  }
  return { kind: 'APIGroupDiscoveryList', apiVersion, metadata: {}, items };
}

/**
 * The aggregated discovery version a request asks for and the server
 * offers (v2 from 1.30, v2beta1 from 1.26 to 1.32), or null for legacy.
 */
function negotiateAggregated(accept, minor) {
  if (!accept) return null;
  for (const part of accept.split(',')) {
    const p = part.trim().toLowerCase().replace(/\s+/g, '');
    if (!p.includes('as=apigroupdiscoverylist') || !p.includes('g=apidiscovery.k8s.io')) continue;
    if (p.includes('v=v2beta1') && minor >= 26 && minor <= 32) return 'v2beta1';
    if (/v=v2(;|$)/.test(p) && minor >= 30) return 'v2';
  }
  return null;
}

// ------------------------------------------------------------------ OpenAPI
const PATCH_PARAMS = ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map((name) => ({
  name, in: 'query', schema: { type: name === 'force' ? 'boolean' : 'string' },
}));

/** The /openapi/v3 document of one group version (paths and PATCH operations only). */
function openapiGroupVersion(types, group, version, info) {
  const g = groups(types).find((x) => x.name === group);
  if (!g || !g.types[version]) return null;
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const paths = {};
  for (const rt of g.types[version]) {
    const p = rt.namespaced ? `${base}/namespaces/{namespace}/${rt.plural}/{name}` : `${base}/${rt.plural}/{name}`;
    const gvk = { group, version, kind: rt.kind };
    const op = (verb) => ({
      tags: [`${group || 'core'}_${version}`], operationId: `${verb}${rt.kind}`,
      'x-kubernetes-action': verb === 'patch' ? 'patch' : 'get', 'x-kubernetes-group-version-kind': gvk,
      responses: { 200: { description: 'OK' } },
    });
    paths[p] = {
      get: op('read'),
      patch: { ...op('patch'), parameters: PATCH_PARAMS, requestBody: { content: {
        'application/apply-patch+yaml': {}, 'application/json-patch+json': {}, 'application/merge-patch+json': {},
        ...(rt.builtin ? { 'application/strategic-merge-patch+json': {} } : {}),
      } } },
      parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } },
        ...(rt.namespaced ? [{ name: 'namespace', in: 'path', required: true, schema: { type: 'string' } }] : [])],
    };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: info.gitVersion }, paths, components: { schemas: {} } };
}

/** /openapi/v3: {paths: {"api/v1": {serverRelativeURL: "/openapi/v3/api/v1?hash=..."}}}. */
function openapiIndex(types, info) {
  const paths = {};
  for (const g of groups(types)) {
    for (const v of g.versions) {
      const key = g.name ? `apis/${g.name}/${v}` : `api/${v}`;
      const doc = JSON.stringify(openapiGroupVersion(types, g.name, v, info));
      const hash = crypto.createHash('sha512').update(doc).digest('hex').slice(0, 128).toUpperCase();
      paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
    }
  }
  return { paths };
}

/** A minimal OpenAPI v2 document: JSON, or gnostic's protobuf for Accept: ...protobuf. */
function openapiV2(info, protobuf) {
  if (!protobuf) return { swagger: '2.0', info: { title: 'Kubernetes', version: info.gitVersion }, paths: {}, definitions: {} };
  const str = (field, s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from([(field << 3) | 2, b.length]), b]); };
  const infoMsg = Buffer.concat([str(1, 'Kubernetes'), str(2, info.gitVersion)]);
  return Buffer.concat([str(1, '2.0'), Buffer.from([(2 << 3) | 2, infoMsg.length]), infoMsg]);
}

module.exports = {
  groups, apiVersions, apiGroup, apiGroupList, resourceList, aggregated, negotiateAggregated,
  openapiGroupVersion, openapiIndex, openapiV2,
};
